"""Status stream endings (found by the benchmarks, bench/): a stream whose connection drops mid-answer falls back to
polling with no httpx exception reaching the caller; a stream read up to COMPLETED is closed with `drain`, so a driver
can keep its connection for the result request."""

from __future__ import annotations

import base64
import io
from collections.abc import Iterator

import pytest
from PIL import Image

from fal_kontext import Endpoint, RetryPolicy
from fal_kontext.protocol.commands import Answer, CloseStream, OpenStream, ReadLine
from fal_kontext.protocol.queue import resume_state
from fal_kontext.protocol.settings import Settings
from fal_kontext.protocol.wait import stream_flow
from fal_kontext_emulator import EmulatorConfig, RunningEmulator, run_emulator
from tests.client.client_fakes import real_client


def _input() -> dict[str, str]:
    buffer = io.BytesIO()
    Image.new("RGB", (8, 8), "red").save(buffer, format="PNG")
    return {"prompt": "a prompt", "image_url": "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()}


@pytest.fixture(scope="module")
def emulator() -> Iterator[RunningEmulator]:
    with run_emulator(EmulatorConfig(queue_wait=0, run_time=0.05)) as running:
        yield running


def test_wait_survives_a_dropped_stream(emulator: RunningEmulator, kind: str) -> None:
    emulator.reset_counters()
    emulator.add_fault("stream=drop")
    with real_client(kind, emulator.key, base_url=emulator.base_url) as kontext:
        result = kontext.submit(Endpoint.PRO, _input()).wait()
    assert result.images
    calls = emulator.counters()["calls"]
    assert calls["stream_request_status"] >= 1 and calls["get_request_result"] == 1
    assert emulator.counters()["faults"] == {"stream_request_status": 1}


def _settings() -> Settings:
    return Settings("https://q.test", retry=RetryPolicy.disabled(), clock=lambda: 0.0, random=lambda: 0.5)


def _commands_after_open(lines: list[str | None]) -> list[object]:
    """Drive stream_flow with an open stream that yields `lines`; the commands it gives after opening."""
    settings = _settings()
    flow = stream_flow(resume_state("rid", settings), settings, logs=False)
    command = next(flow)
    assert isinstance(command, OpenStream)
    commands: list[object] = []
    outcome: object = Answer(200, {}, b"")
    feed = iter(lines)
    try:
        while True:
            command = flow.send(outcome)
            commands.append(command)
            outcome = next(feed, None) if isinstance(command, ReadLine) else None
    except StopIteration:
        return commands


def test_a_stream_that_reached_completed_is_closed_with_drain() -> None:
    completed = '{"status": "COMPLETED", "request_id": "rid", "logs": null, "metrics": {}}'
    commands = _commands_after_open([f"data: {completed}", ""])
    assert commands[-1] == CloseStream(drain=True)


def test_a_stream_that_ended_early_is_closed_without_drain() -> None:
    in_progress = '{"status": "IN_PROGRESS", "request_id": "rid", "logs": null}'
    commands = _commands_after_open([f"data: {in_progress}", "", None])
    assert commands[-1] == CloseStream(drain=False)
