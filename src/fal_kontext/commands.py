"""The command protocol between the flows (pure decisions) and the two executors (``Kontext``, ``AsyncKontext``).

A flow is a generator: it yields a command, the executor performs it and sends back the outcome, and the flow's
return value is the verb's result (``Flow[T]``). Only ``Call``, ``Download`` and the stream commands touch the
network; each executor differs from the other only in how it performs them (blocking or awaited), as httpx drives
one ``Auth.auth_flow`` with ``sync_auth_flow`` and ``async_auth_flow``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Generator, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

import httpx

from .retry import Operation
from .status import Status

__all__ = [
    "INTERRUPTS",
    "Answer",
    "Call",
    "CloseStream",
    "Command",
    "Download",
    "Exchange",
    "Flow",
    "NoAnswer",
    "Notify",
    "OpenStream",
    "Outcome",
    "ReadLine",
    "ResponseParser",
    "Sleep",
    "exchange",
    "no_answer",
    "read_line",
]

_T = TypeVar("_T")

# What a generated ``parse_response`` is: the parsed model for a documented status, else None; raises ValueError,
# KeyError or TypeError on a body that does not fit (an HTML 502 from a gateway, an aggregator's own envelope).
ResponseParser = Callable[..., object]

# How a caller stops a wait: Ctrl-C in a blocking call, task cancellation under asyncio. The executors throw these
# into the flow, so that the flow can cancel its request before the interruption goes on.
INTERRUPTS = (KeyboardInterrupt, asyncio.CancelledError)


@dataclass(frozen=True, slots=True)
class Call:
    """Send one generated operation's request (``request``, from its ``request_kwargs``) to ``base_url``, with the
    client's credentials; outcome: ``Answer`` (parsed with ``parse``) or ``NoAnswer``."""

    operation: Operation
    base_url: str
    request_id: str | None
    request: Mapping[str, Any]
    parse: ResponseParser


@dataclass(frozen=True, slots=True)
class Download:
    """GET ``url`` without credentials (a result image); outcome: ``Answer`` (nothing parsed) or ``NoAnswer``."""

    url: str
    request_id: str


@dataclass(frozen=True, slots=True)
class OpenStream:
    """Open the status stream (the generated stream operation's ``request`` with ``Accept: text/event-stream``);
    outcome: ``Answer`` (no body when it is 200) or ``NoAnswer``. ``read_timeout`` bounds each read."""

    base_url: str
    request: Mapping[str, Any]
    read_timeout: float


@dataclass(frozen=True, slots=True)
class ReadLine:
    """Read the next line of the open stream; outcome: the line, None at the end, or ``NoAnswer``."""


@dataclass(frozen=True, slots=True)
class CloseStream:
    """Close the open stream (if any). ``drain``: COMPLETED was read; fal ends the stream right after it, so the
    executor reads that end, and the connection goes back to the pool for the next request (no new TLS
    handshake)."""

    drain: bool = False


@dataclass(frozen=True, slots=True)
class Sleep:
    """Wait this many seconds."""

    seconds: float


@dataclass(frozen=True, slots=True)
class Notify:
    """Report a status to the caller (``on_update`` or the ``stream()`` iterator)."""

    status: Status


# What an executor performs (everything but ``Notify``, which goes to the caller).
Exchange = Call | Download | OpenStream | ReadLine | CloseStream | Sleep
Command = Exchange | Notify


@dataclass(frozen=True, slots=True)
class Answer:
    """An HTTP answer, the secret already redacted. ``parsed`` is the generated model, or None when the status is
    undocumented or the body did not match the spec."""

    status_code: int
    headers: Mapping[str, str]
    content: bytes
    parsed: object | None = None


@dataclass(frozen=True, slots=True)
class NoAnswer:
    """No HTTP answer: the connection failed or timed out.

    Attributes:
        error: What happened, in words (never headers or credentials).
        reached_server: False only when the request certainly never reached the server.
        timed_out: Whether a timeout caused it.
    """

    error: str
    reached_server: bool
    timed_out: bool = False


Outcome = Answer | NoAnswer | str | None
Flow = Generator[Command, Outcome, _T]


def exchange(command: Call | Download | OpenStream) -> Flow[Answer | NoAnswer]:
    """Yield ``command``; returns its outcome."""
    outcome = yield command
    if not isinstance(outcome, (Answer, NoAnswer)):
        raise TypeError(f"an executor answered {type(command).__name__} with {type(outcome).__name__}")
    return outcome


def read_line() -> Flow[str | NoAnswer | None]:
    """Yield ``ReadLine``; returns the line, None at the end of the stream, or ``NoAnswer``."""
    outcome = yield ReadLine()
    if isinstance(outcome, Answer):
        raise TypeError("an executor answered ReadLine with an Answer")
    return outcome


def no_answer(error: httpx.HTTPError) -> NoAnswer:
    """An httpx exception as ``NoAnswer``; ``reached_server`` is False only when nothing can have been sent."""
    never_sent = isinstance(
        error, (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout, httpx.UnsupportedProtocol)
    )
    timed_out = isinstance(error, httpx.TimeoutException)
    text = f"{type(error).__name__}: {str(error) or 'no detail'}"
    return NoAnswer(text, reached_server=not never_sent, timed_out=timed_out)
