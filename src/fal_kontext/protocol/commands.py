"""The commands between the protocol (pure decisions) and the two executors (``Kontext``, ``AsyncKontext``).

A flow is a generator: it yields a command, the executor performs it and sends back its outcome, and the flow's
return value is the verb's result (``Flow[T]``). Every command says what its outcome is (``Command[T]``), and
``perform`` hands it back typed, so a flow never sees an outcome of another command's kind. Only the executors
touch the network, the file system and the clock's sleep; the protocol only decides, as h11's ``Connection``
speaks in events and the caller does the I/O (https://h11.readthedocs.io/en/latest/api.html).
"""

from __future__ import annotations

import asyncio
import enum
from collections.abc import Generator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Generic, TypeVar

from fal_kontext.status import Status

from .images import LocalFile

if TYPE_CHECKING:
    from os import PathLike  # noqa: F401 - named in WriteFile's outcome type

__all__ = [
    "INTERRUPTS",
    "THROWN_IN",
    "Answer",
    "Call",
    "CloseStream",
    "Command",
    "Download",
    "Flow",
    "HttpGet",
    "LocalSize",
    "NoAnswer",
    "Notify",
    "OpenStream",
    "Operation",
    "ReadFile",
    "ReadLine",
    "ResponseParser",
    "Send",
    "Sleep",
    "WriteFile",
    "perform",
]

_T = TypeVar("_T")
_O = TypeVar("_O")


class Operation(enum.StrEnum):
    """The queue operations, named as in the spec's operationIds."""

    SUBMIT = "submit"
    STATUS = "get_request_status"
    STREAM = "stream_request_status"
    RESULT = "get_request_result"
    CANCEL = "cancel_request"


# What a generated ``parse_response`` is: the parsed model for a documented status, else None; raises ValueError,
# KeyError or TypeError on a body that does not fit (an HTML 502 from a gateway, an aggregator's own envelope).
ResponseParser = Any

# How a caller stops a wait: Ctrl-C in a blocking call, task cancellation under asyncio. The executors throw these
# into the flow, so that the flow can cancel its request before the interruption goes on.
INTERRUPTS = (KeyboardInterrupt, asyncio.CancelledError)
# What the executors throw into a flow when executing its command fails: the interruptions, and errors (a local
# file refused while reading it). Not GeneratorExit or SystemExit: those end the flow as they are.
THROWN_IN = (Exception, *INTERRUPTS)


class Command(Generic[_O]):
    """A request to the executor whose outcome is an ``_O``; ``outcome`` lists the types it may be."""

    __slots__ = ()
    outcome: ClassVar[tuple[type, ...]]

    def received(self, outcome: object) -> _O:
        """``outcome`` as this command's outcome. Raises TypeError for an executor that answered another kind."""
        if not isinstance(outcome, self.outcome):
            raise TypeError(f"an executor answered {type(self).__name__} with {type(outcome).__name__}")
        return outcome  # type: ignore[return-value]


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


@dataclass(frozen=True, slots=True)
class Call(Command[Answer | NoAnswer]):
    """Send one generated operation's request (``request``, from its ``request_kwargs``) to ``base_url``, with the
    client's credentials; the answer is parsed with ``parse``. ``timeout``: seconds it may take at most (what is
    left of the verb's deadline), besides the client's own per-request timeouts; None for those alone."""

    outcome: ClassVar[tuple[type, ...]] = (Answer, NoAnswer)
    operation: Operation
    base_url: str
    request_id: str | None
    request: Mapping[str, Any]
    parse: ResponseParser
    timeout: float | None = None


@dataclass(frozen=True, slots=True)
class Download(Command[Answer | NoAnswer]):
    """GET ``url`` without credentials (a result image); nothing parsed. ``timeout`` as ``Call``'s."""

    outcome: ClassVar[tuple[type, ...]] = (Answer, NoAnswer)
    url: str
    request_id: str
    timeout: float | None = None


@dataclass(frozen=True, slots=True)
class HttpGet(Command[Answer | NoAnswer]):
    """GET ``url`` with ``params``, with the client's key only where ``hosts.may_send_key`` allows (fal's request
    list, for recovery; a redirect off that origin loses the key, as httpx drops it); nothing parsed.

    Attributes:
        url: The absolute URL, without query.
        params: The query, in order (a name may repeat).
        timeout: Seconds this request may take at most (the client's own timeouts still apply).
    """

    outcome: ClassVar[tuple[type, ...]] = (Answer, NoAnswer)
    url: str
    params: tuple[tuple[str, str], ...]
    timeout: float


@dataclass(frozen=True, slots=True)
class Send(Command[Answer | NoAnswer]):
    """Send one HTTP request that is not a generated operation (fal storage, the synchronous endpoint), with the
    headers given and no others but the User-Agent; nothing parsed.

    Attributes:
        method: ``POST``, ``PUT``, ...
        url: The absolute URL, query included.
        headers: Everything to send, credentials included (so never shown in ``repr``).
        content: The body.
        read_timeout: Seconds to wait for the answer (and to write the body); None waits without limit.
    """

    outcome: ClassVar[tuple[type, ...]] = (Answer, NoAnswer)
    method: str
    url: str
    headers: Mapping[str, str] = field(repr=False)
    content: bytes = field(default=b"", repr=False)
    read_timeout: float | None = 60.0


@dataclass(frozen=True, slots=True)
class OpenStream(Command[Answer | NoAnswer]):
    """Open the status stream (the generated stream operation's ``request`` with ``Accept: text/event-stream``); a
    200 answer has no body (its lines are read with ``ReadLine``). ``read_timeout`` bounds each read."""

    outcome: ClassVar[tuple[type, ...]] = (Answer, NoAnswer)
    base_url: str
    request: Mapping[str, Any]
    read_timeout: float


@dataclass(frozen=True, slots=True)
class ReadLine(Command["str | NoAnswer | None"]):
    """Read the next line of the open stream: the line, None at the end, or ``NoAnswer``."""

    outcome: ClassVar[tuple[type, ...]] = (str, NoAnswer, type(None))


@dataclass(frozen=True, slots=True)
class CloseStream(Command[None]):
    """Close the open stream (if any). ``drain``: COMPLETED was read; fal ends the stream right after it, so the
    executor reads that end, and the connection goes back to the pool for the next request (no new TLS
    handshake)."""

    outcome: ClassVar[tuple[type, ...]] = (type(None),)
    drain: bool = False


@dataclass(frozen=True, slots=True)
class Sleep(Command[None]):
    """Wait this many seconds."""

    outcome: ClassVar[tuple[type, ...]] = (type(None),)
    seconds: float


@dataclass(frozen=True, slots=True)
class Notify(Command[None]):
    """Report a status to the caller (``on_update`` or the ``stream()`` iterator)."""

    outcome: ClassVar[tuple[type, ...]] = (type(None),)
    status: Status


@dataclass(frozen=True, slots=True)
class LocalSize(Command["int | None"]):
    """The size in bytes of a local path or bytes without reading the file; None for a PIL image or a missing file.
    ``source`` is what the caller gave (a path, bytes, a PIL image)."""

    outcome: ClassVar[tuple[type, ...]] = (int, type(None))
    source: object = field(repr=False)


@dataclass(frozen=True, slots=True)
class ReadFile(Command[LocalFile]):
    """Read a local path, bytes or a PIL image; the executor raises ``InvalidInputError`` naming ``field`` for a
    missing file, a directory, or (``images_only``) bytes that are not an image."""

    outcome: ClassVar[tuple[type, ...]] = (LocalFile,)
    source: object = field(repr=False)
    field_name: str = "image_url"
    images_only: bool = True


@dataclass(frozen=True, slots=True)
class WriteFile(Command["PathLike[str]"]):
    """Write ``data`` as ``name`` in the folder ``directory`` (made if missing), atomically (a temporary file, then a
    rename: never half a file); the outcome is the path written."""

    outcome: ClassVar[tuple[type, ...]] = (object,)
    directory: object
    name: str
    data: bytes = field(repr=False)


Flow = Generator[Command[Any], object, _T]


def perform(command: Command[_O]) -> Flow[_O]:
    """Yield ``command``; returns its outcome, as the command types it."""
    outcome = yield command
    return command.received(outcome)
