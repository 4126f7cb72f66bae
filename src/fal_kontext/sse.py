"""The one parser of server-sent events in the project (the status stream): pure, fed bytes or lines, no I/O.

The client's waiter (``fal_kontext.protocol.wait``), the contract suite's recorder and rules probe, and the
validating proxy (``queue_rules.parse_event_stream``) all read the status stream through it, so they agree on what an
event is. It follows the WHATWG event-stream rules (https://html.spec.whatwg.org/multipage/server-sent-events.html#parsing-an-event-stream):
the stream is UTF-8 with an optional leading BOM; lines end with CRLF, LF or CR and nothing else (not the other
characters ``str.splitlines`` and httpx's ``iter_lines`` split on, such as U+2028, which JSON may carry raw); the
``data:`` lines of one event are joined with newlines; ``id:`` is kept across events and ``retry:`` takes ASCII
digits only; comment lines (``: ...``, fal's keep-alive every 15 s) are reported so a waiter can check its deadline
while the stream is quiet; lines with another field name are ignored, and listed for the framing rule.

Written here rather than taken from httpx-sse (checked: 0.4.3): its decoder is private, its public API parses only
from a live httpx response, and it drops comments and unknown fields, which the keep-alive handling and the framing
rule need; it also dispatches an event for an ``id:`` alone, which the standard does not.
"""

from __future__ import annotations

import codecs
from collections.abc import AsyncIterable, AsyncIterator, Iterable, Iterator
from dataclasses import dataclass, field

from fal_kontext_api.models import QueueStatusEvent

__all__ = [
    "DecodedStream",
    "KeepAlive",
    "LineSplitter",
    "SSEDecoder",
    "aiter_lines",
    "decode_stream",
    "iter_lines",
]

_BOM = "\ufeff"


@dataclass(frozen=True, slots=True)
class KeepAlive:
    """A comment line (``: ...``): the stream is alive but has nothing new."""

    comment: str


class LineSplitter:
    """Cuts a byte stream into lines the way the standard does: UTF-8 decoded incrementally (a character split
    across chunks is kept whole), a leading BOM dropped, lines ended by CRLF, LF or CR (a CR at the end of a chunk
    waits for the next one, which may start with its LF)."""

    def __init__(self) -> None:
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._pending = ""
        self._started = False
        self._skip_lf = False

    def feed(self, chunk: bytes) -> list[str]:
        """The lines that ``chunk`` completes, without their line endings."""
        return self._split(self._decoder.decode(chunk))

    def flush(self) -> list[str]:
        """At the end of the stream: the last line if it had no line ending (the client still reads it)."""
        lines = self._split(self._decoder.decode(b"", final=True))
        rest, self._pending = self._pending, ""
        return [*lines, rest] if rest else lines

    def _split(self, text: str) -> list[str]:
        if not text:
            return []
        if not self._started:
            self._started = True
            text = text.removeprefix(_BOM)
        if self._skip_lf:
            text = text.removeprefix("\n")  # the LF of a CRLF whose CR ended the previous chunk
        # A CR ends a line at once; whether an LF follows it (CRLF, one line ending) shows in the next chunk.
        self._skip_lf = text.endswith("\r")
        *lines, self._pending = (self._pending + text).replace("\r\n", "\n").replace("\r", "\n").split("\n")
        return lines


class SSEDecoder:
    """Turns lines of a ``text/event-stream`` into events (the generated ``QueueStatusEvent``) and keep-alives.

    ``ignored_lines`` lists the lines whose field name the standard does not know (it ignores them; a status
    stream whose events are not on ``data:`` lines shows up there).
    """

    def __init__(self) -> None:
        self._data: list[str] = []
        self._event = ""
        self._id = ""
        self._retry: int | None = None
        self.ignored_lines: list[str] = []

    def feed(self, line: str) -> QueueStatusEvent | KeepAlive | None:
        """Feed one line without its line ending; returns an event when a blank line completes one."""
        if not line:
            return self._dispatch()
        if line.startswith(":"):
            return KeepAlive(line[1:].strip())
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if name == "data":
            self._data.append(value)
        elif name == "event":
            self._event = value
        elif name == "id":
            if "\0" not in value:
                self._id = value
        elif name == "retry":
            if value.isascii() and value.isdigit():
                self._retry = int(value)
        else:
            self.ignored_lines.append(line)
        return None

    @property
    def pending(self) -> bool:
        """Whether data lines were fed that no blank line has completed yet."""
        return bool(self._data)

    def flush(self) -> QueueStatusEvent | None:
        """At the end of the stream: an event that was not followed by a blank line, if any.

        The standard discards it; the client takes it (a server that closes right after its COMPLETED line has
        still said COMPLETED), and ``decode_stream`` says it was unterminated.
        """
        return self._dispatch()

    def _dispatch(self) -> QueueStatusEvent | None:
        if not self._data:
            self._event = ""
            return None
        event = QueueStatusEvent(data="\n".join(self._data))
        if self._event:
            event.event = self._event
        if self._id:
            event.id = self._id
        if self._retry is not None:
            event.retry = self._retry
        self._data, self._event, self._retry = [], "", None
        return event


def iter_lines(chunks: Iterable[bytes]) -> Iterator[str]:
    """The lines of a byte stream (e.g. ``response.iter_bytes()``, which undoes any ``Content-Encoding``)."""
    splitter = LineSplitter()
    for chunk in chunks:
        yield from splitter.feed(chunk)
    yield from splitter.flush()


async def aiter_lines(chunks: AsyncIterable[bytes]) -> AsyncIterator[str]:
    """``iter_lines`` for an async byte stream (e.g. ``response.aiter_bytes()``)."""
    splitter = LineSplitter()
    async for chunk in chunks:
        for line in splitter.feed(chunk):
            yield line
    for line in splitter.flush():
        yield line


@dataclass
class DecodedStream:
    """A whole event stream, decoded.

    Attributes:
        events: Every event, in order (the last one included when the stream ended without its blank line).
        comments: The comment lines' texts.
        ignored_lines: Lines with a field name the standard does not know.
        unterminated: The stream ended inside an event (data lines with no blank line after them).
    """

    events: list[QueueStatusEvent] = field(default_factory=list)
    comments: list[str] = field(default_factory=list)
    ignored_lines: list[str] = field(default_factory=list)
    unterminated: bool = False


def decode_stream(raw: bytes) -> DecodedStream:
    """Decode a whole event stream body (already undone of any ``Content-Encoding``)."""
    decoded = DecodedStream()
    decoder = SSEDecoder()
    for line in iter_lines([raw]):
        item = decoder.feed(line)
        if isinstance(item, KeepAlive):
            decoded.comments.append(item.comment)
        elif item is not None:
            decoded.events.append(item)
    decoded.unterminated = decoder.pending
    last = decoder.flush()
    if last is not None:
        decoded.events.append(last)
    decoded.ignored_lines = decoder.ignored_lines
    return decoded
