"""What happens with nobody asking: the queue advances and completed requests' webhooks go out on time."""

from __future__ import annotations

import asyncio
import contextlib

from fal_kontext_emulator.fal_bodies import webhook_payload
from fal_kontext_emulator.outputs import Outputs
from fal_kontext_emulator.request_queue import QueuedRequest
from fal_kontext_emulator.state import EmulatorState


class Timers:
    """A background task (run with the app's lifespan) that advances the queue and dispatches webhooks."""

    def __init__(self, state: EmulatorState, outputs: Outputs) -> None:
        self.state = state
        self.outputs = outputs
        self._tasks: set[asyncio.Task[None]] = set()

    async def run(self) -> None:
        """Loop until cancelled: advance the queue to each event and dispatch due webhooks."""
        state = self.state
        while True:
            now = state.now()
            state.queue.advance(now)
            for request in state.queue.take_completed():
                task = asyncio.create_task(self._deliver(request))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)
            state.persist(always=True)
            # Wake for the next event, or sooner when a submit, cancel or clock jump changes the schedule.
            wait = min(state.queue.next_event_at() - now, 1.0)
            changed = state.changed
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(changed.wait(), timeout=max(wait, 0.001))

    async def _deliver(self, request: QueuedRequest) -> None:
        assert request.webhook_url is not None
        status, body, _ = await self.outputs.outcome_of(request)
        payload = webhook_payload(request, status, body)
        await self.state.webhooks.deliver(request.webhook_url, request.request_id, request.owner, payload)
        self.state.queue.mark_webhook_finished(request.request_id)

    async def stop(self) -> None:
        """Cancel pending deliveries."""
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
