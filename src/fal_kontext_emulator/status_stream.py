"""The status stream: server-sent QueueStatus events, one per change, with keep-alive comments."""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
from collections.abc import AsyncIterator

from fal_kontext_emulator.request_queue import QueuedRequest
from fal_kontext_emulator.state import EmulatorState


async def status_events(state: EmulatorState, request: QueuedRequest, with_logs: bool) -> AsyncIterator[str]:
    """SSE lines for `request`: a `data:` event per change (logs since the previous event), `: keep-alive`
    every `keepalive_interval`, and the end after the COMPLETED event
    (https://fal.ai/docs/inference-api/queue/status-stream)."""
    last: tuple[object, ...] | None = None
    logs_sent = 0
    last_sent_at = state.now()
    while True:
        now = state.now()
        state.queue.advance(now)
        log_count = len(state.queue.logs(request, state.queue.now)) if with_logs else 0
        key = (request.status, state.queue.queue_position(request), log_count)
        if key != last:
            body = state.status_of(request, with_logs=with_logs, logs_after=logs_sent)
            logs_sent = log_count
            last = key
            last_sent_at = now
            yield f"data: {json.dumps(body, separators=(',', ':'))}\n\n"
            if request.status == "COMPLETED":
                return
        elif now - last_sent_at >= state.config.keepalive_interval:
            last_sent_at = now
            yield ": keep-alive\n\n"
        # A running request changes only when it ends (or logs); a waiting one with any start in the queue.
        next_change = request.ends_at if request.status == "IN_PROGRESS" else state.queue.next_event_at()
        wait = min(
            next_change - now,
            state.queue.next_log_at(request, now) - now if with_logs else math.inf,
            state.config.keepalive_interval - (now - last_sent_at),
            state.config.stream_poll_interval,
        )
        changed = state.streams_changed
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(changed.wait(), timeout=max(wait, 0.001))


async def until_completed(state: EmulatorState, request: QueuedRequest) -> None:
    """Wait until `request` is COMPLETED (for the synchronous endpoint), waking at each queue event."""
    while True:
        now = state.now()
        state.queue.advance(now)
        if request.status == "COMPLETED":
            return
        next_change = request.ends_at if request.status == "IN_PROGRESS" else state.queue.next_event_at()
        wait = min(next_change - now, state.config.stream_poll_interval)
        changed = state.streams_changed
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(changed.wait(), timeout=max(wait, 0.001))
