"""Connection limits uvicorn lacks: a deadline for a request's headers, and a cap on idle connections.

uvicorn closes a keep-alive connection that stays silent after a response (`timeout_keep_alive`), but not a
fresh connection that never sends a request, nor one that sends part of its headers and stops: 200 such
connections would stay open forever. Here, a request's headers must be complete within `header_timeout` of
the connection opening or of its first byte after a response, and when more than `max_idle_connections`
connections hold no request in progress, the oldest idle ones are closed. Both are our choices (fal
documents its gateway's limits nowhere).
"""

from __future__ import annotations

import asyncio

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol


class GuardedHttpProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with the header deadline and the idle cap (set by `guarded_protocol`)."""

    header_timeout: float = 10.0
    max_idle_connections: int = 512

    _header_timer: asyncio.TimerHandle | None = None
    _idle_since: float = 0.0

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._idle_since = self.loop.time()
        self._arm_header_timer()
        self._close_excess_idle()

    def data_received(self, data: bytes) -> None:
        if self._header_timer is None and self._is_idle():
            self._arm_header_timer()
        super().data_received(data)

    def on_headers_complete(self) -> None:
        self._cancel_header_timer()
        super().on_headers_complete()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self._idle_since = self.loop.time()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_header_timer()
        super().connection_lost(exc)

    def _is_idle(self) -> bool:
        return self.cycle is None or self.cycle.response_complete

    def _arm_header_timer(self) -> None:
        self._cancel_header_timer()
        self._header_timer = self.loop.call_later(self.header_timeout, self._headers_too_late)

    def _cancel_header_timer(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _headers_too_late(self) -> None:
        self._header_timer = None
        if self._is_idle() and not self.transport.is_closing():
            self.transport.close()

    def _close_excess_idle(self) -> None:
        idle = [
            connection
            for connection in self.connections
            if isinstance(connection, GuardedHttpProtocol) and connection._is_idle()
        ]
        excess = len(idle) - self.max_idle_connections
        if excess > 0:
            for connection in sorted(idle, key=lambda held: held._idle_since)[:excess]:
                connection.transport.close()


def guarded_protocol(header_timeout: float, max_idle_connections: int) -> type[GuardedHttpProtocol]:
    """The protocol class to give uvicorn as `http=`, with these limits."""
    return type(
        "GuardedHttpProtocol",
        (GuardedHttpProtocol,),
        {"header_timeout": header_timeout, "max_idle_connections": max_idle_connections},
    )
