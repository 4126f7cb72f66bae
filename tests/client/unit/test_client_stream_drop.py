"""Status stream endings (found by the benchmarks, bench/), in the stream flow: a stream read up to COMPLETED is
closed with `drain`, so a driver can keep its connection for the result request; one that ended early is closed
without (a connection dropped mid-stream: integration/test_client_stream_drop.py)."""

from __future__ import annotations

from fal_kontext import RetryPolicy
from fal_kontext.protocol.commands import Answer, CloseStream, OpenStream, ReadLine
from fal_kontext.protocol.queue import resume_state
from fal_kontext.protocol.settings import Settings
from fal_kontext.protocol.wait import stream_flow


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
