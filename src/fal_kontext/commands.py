"""The command protocol between the flows (pure decisions) and the two executors (``Kontext``, ``AsyncKontext``).

A flow is a generator: it yields a command, the executor performs it and sends back the outcome, and the flow's
return value is the verb's result (``Flow[T]``). Only ``Call``, ``Download``, ``HttpGet``, ``Send`` and the
stream commands touch the network; each executor differs from the other only in how it performs them
(blocking or awaited), as httpx drives one ``Auth.auth_flow`` with ``sync_auth_flow`` and ``async_auth_flow``.
"""

from __future__ import annotations

import asyncio
import ssl
import zlib
from collections.abc import AsyncIterator, Callable, Generator, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

import httpx

from .retry import Operation
from .status import Status

__all__ = [
    "CERTIFICATE_ADVICE",
    "INTERRUPTS",
    "Answer",
    "Call",
    "CloseStream",
    "Command",
    "Download",
    "Exchange",
    "Flow",
    "HttpGet",
    "NoAnswer",
    "Notify",
    "OpenStream",
    "Outcome",
    "ReadLine",
    "Recording",
    "ResponseParser",
    "Send",
    "Sleep",
    "cut_off",
    "exchange",
    "no_answer",
    "read_line",
    "record",
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
class HttpGet:
    """GET ``url`` with ``params``, with the client's key only where ``recovery.may_send_key`` allows (fal's request
    list, for recovery; a redirect off that origin loses the key, as httpx drops it); outcome: ``Answer`` (nothing
    parsed) or ``NoAnswer``.

    Attributes:
        url: The absolute URL, without query.
        params: The query, in order (a name may repeat).
        timeout: Seconds this request may take at most (the client's own timeouts still apply).
    """

    url: str
    params: tuple[tuple[str, str], ...]
    timeout: float


@dataclass(frozen=True, slots=True)
class Send:
    """Send one HTTP request that is not a generated operation (fal storage, the synchronous endpoint), with the
    headers given and no others but the User-Agent; outcome: ``Answer`` (nothing parsed) or ``NoAnswer``.

    Attributes:
        method: ``POST``, ``PUT``, ...
        url: The absolute URL, query included.
        headers: Everything to send, credentials included (so never shown in ``repr``).
        content: The body.
        read_timeout: Seconds to wait for the answer (and to write the body); None waits without limit.
    """

    method: str
    url: str
    headers: Mapping[str, str] = field(repr=False)
    content: bytes = field(default=b"", repr=False)
    read_timeout: float | None = 60.0


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
Exchange = Call | Download | HttpGet | Send | OpenStream | ReadLine | CloseStream | Sleep
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
    """No whole HTTP answer: the connection failed or timed out, before an answer or in the middle of its body.

    Attributes:
        error: What happened, in words (never headers or credentials).
        reached_server: False only when the request certainly never reached the server.
        timed_out: Whether a timeout caused it.
        status_code: The status of an answer cut off in its body, else None.
        headers: That answer's headers (the secret redacted).
        body: What of its body arrived (the secret redacted): a submit's request id may be in it (``recovery``).
        certificate_rejected: The server's TLS certificate did not verify: asking again cannot help.
    """

    error: str
    reached_server: bool
    timed_out: bool = False
    status_code: int | None = None
    headers: Mapping[str, str] = field(default_factory=dict)
    body: bytes = b""
    certificate_rejected: bool = False


Outcome = Answer | NoAnswer | str | None
Flow = Generator[Command, Outcome, _T]


def exchange(command: Call | Download | HttpGet | Send | OpenStream) -> Flow[Answer | NoAnswer]:
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


class Recording(httpx.SyncByteStream, httpx.AsyncByteStream):
    """A response body stream that keeps what arrives, so that an answer cut off in its body still gives what came
    (a submit's request id may be in it). Wrap ``response.stream`` before reading the body."""

    def __init__(self, inner: httpx.SyncByteStream | httpx.AsyncByteStream) -> None:
        self._inner = inner
        self._chunks: list[bytes] = []

    def __iter__(self) -> Iterator[bytes]:
        assert isinstance(self._inner, httpx.SyncByteStream)
        for chunk in self._inner:
            self._chunks.append(chunk)
            yield chunk

    async def __aiter__(self) -> AsyncIterator[bytes]:
        assert isinstance(self._inner, httpx.AsyncByteStream)
        async for chunk in self._inner:
            self._chunks.append(chunk)
            yield chunk

    def close(self) -> None:
        if isinstance(self._inner, httpx.SyncByteStream):
            self._inner.close()

    async def aclose(self) -> None:
        if isinstance(self._inner, httpx.AsyncByteStream):
            await self._inner.aclose()

    def received(self, content_encoding: str | None) -> bytes:
        """The body bytes that arrived, decoded when the encoding is identity, gzip or deflate (else empty)."""
        raw = b"".join(self._chunks)
        encoding = (content_encoding or "identity").strip().lower()
        if encoding == "identity":
            return raw
        if encoding not in ("gzip", "deflate"):
            return b""
        try:  # a cut-off stream decodes as far as it goes
            return zlib.decompressobj(wbits=31 if encoding == "gzip" else 15).decompress(raw)
        except zlib.error:
            return b""


def record(response: httpx.Response) -> Recording:
    """Keep what arrives of ``response``'s body (see ``Recording``); call before reading it."""
    recording = Recording(response.stream)
    response.stream = recording
    return recording


def cut_off(error: httpx.HTTPError, response: httpx.Response, recording: Recording, secret: str | None) -> NoAnswer:
    """``NoAnswer`` for an answer whose body was cut off: its status, headers and what of its body arrived, with the
    secret redacted should the server echo it."""
    body = recording.received(response.headers.get("content-encoding"))
    headers = dict(response.headers)
    if secret:
        body = body.replace(secret.encode(), b"***")
        headers = {name: value.replace(secret, "***") for name, value in headers.items()}
    lost = no_answer(error)
    return NoAnswer(lost.error, True, lost.timed_out, response.status_code, headers, body)


# What a certificate that does not verify (self-signed, another name, an unknown CA) needs: the CA to be trusted.
# httpx reads SSL_CERT_FILE (and SSL_CERT_DIR) when it builds its TLS context (https://www.python-httpx.org/environment_variables/).
CERTIFICATE_ADVICE = (
    "the server's TLS certificate did not verify; asking again cannot help, so it was not retried. If you trust "
    "the server, point SSL_CERT_FILE at its CA bundle (the command line, and Python), or in Python pass "
    "httpx_args={'verify': '/path/to/ca.pem'} (verify=) to the client"
)


def _certificate_rejected(error: BaseException) -> bool:
    """Whether ``error`` was caused by a certificate that did not verify (``ssl.SSLCertVerificationError``)."""
    seen: set[int] = set()
    cause: BaseException | None = error
    while cause is not None and id(cause) not in seen:
        if isinstance(cause, ssl.SSLCertVerificationError):
            return True
        seen.add(id(cause))
        cause = cause.__cause__ or cause.__context__
    return False


def no_answer(error: httpx.HTTPError) -> NoAnswer:
    """An httpx exception as ``NoAnswer``; ``reached_server`` is False only when nothing can have been sent."""
    never_sent = isinstance(
        error, (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout, httpx.UnsupportedProtocol)
    )
    timed_out = isinstance(error, httpx.TimeoutException)
    text = f"{type(error).__name__}: {str(error) or 'no detail'}"
    if _certificate_rejected(error):
        return NoAnswer(f"{text}; {CERTIFICATE_ADVICE}", reached_server=False, certificate_rejected=True)
    return NoAnswer(text, reached_server=not never_sent, timed_out=timed_out)
