"""A pure decoder of server-sent events (the status stream), fed one line at a time.

It knows nothing about sockets: the drivers read lines and feed them here. Events become the generated
``QueueStatusEvent`` model; comment lines (fal's keep-alive every 15 s) are reported so a waiter can check its
deadline while the stream is quiet.
"""

from __future__ import annotations

from dataclasses import dataclass

from fal_kontext_api.models import QueueStatusEvent

__all__ = ["KeepAlive", "SSEDecoder"]


@dataclass(frozen=True, slots=True)
class KeepAlive:
    """A comment line (``: ...``): the stream is alive but has nothing new."""

    comment: str


class SSEDecoder:
    """Turns lines of a ``text/event-stream`` into events, per the WHATWG rules (data lines joined by newlines)."""

    def __init__(self) -> None:
        self._data: list[str] = []
        self._event = ""
        self._id = ""
        self._retry: int | None = None

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
        elif name == "id" and "\0" not in value:
            self._id = value
        elif name == "retry" and value.isdigit():
            self._retry = int(value)
        return None

    def flush(self) -> QueueStatusEvent | None:
        """At the end of the stream: an event that was not followed by a blank line, if any."""
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
        self._data, self._event = [], ""
        return event
