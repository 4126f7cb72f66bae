"""``Kontext``: the synchronous client. It executes the commands of the protocol's flows (blocking) and nothing else;
the verbs, their arguments and checks are ``base.BaseKontext``'s and ``protocol.verbs``'.

``client.py`` and ``aio.py`` are written line for line alike, as httpx's ``sync_auth_flow``/``async_auth_flow``:
the same driver over the same flow, one blocking, one awaited.
"""

from __future__ import annotations

import contextlib
from collections.abc import Generator, Iterator
from pathlib import Path
from typing import Any, TypeVar

import httpx
from fal_kontext_api.client import AuthenticatedClient, Client
from fal_kontext_api.models import CancelStatus

from . import files, sse
from .base import BaseHandle, BaseKontext, OnUpdate
from .config import ClientConfig
from .protocol import commands as cmd
from .protocol.commands import Flow
from .protocol.queue import HandleState
from .results import EditResult
from .signatures import concrete_verbs
from .status import Status
from .transport import Connections, HttpOptions, record

__all__ = ["Handle", "Kontext"]

_T = TypeVar("_T")

# How many lines a completed status stream is read for its end (see ``commands.CloseStream.drain``).
_DRAIN_LINES = 2


@concrete_verbs
class Handle(BaseHandle[EditResult, Status, CancelStatus, Iterator[Status]]):
    """A queued request (blocking verbs). Get one from ``Kontext.submit`` or ``Kontext.handle(request_id)``."""


class _Stream:
    """The one status stream a flow may have open."""

    def __init__(self, connections: Connections[httpx.Client]) -> None:
        self.connections = connections
        self.response: httpx.Response | None = None
        self.lines: Iterator[str] | None = None

    def read_line(self) -> str | cmd.NoAnswer | None:
        try:
            return next(self.lines, None) if self.lines is not None else None
        except httpx.HTTPError as err:
            return self.connections.no_answer(err)

    def close(self, *, drain: bool = False) -> None:
        if self.response is None:
            return
        if drain:
            # fal ends the stream right after COMPLETED: reading that end leaves the connection in the pool for the
            # result request and the next job, rather than a new TLS handshake each (about 3 ms of CPU per side).
            with contextlib.suppress(httpx.HTTPError):
                self._read_to_end()
        response, self.response, self.lines = self.response, None, None
        response.close()

    def _read_to_end(self) -> None:
        for _ in range(_DRAIN_LINES):
            if self.read_line() is None:
                return


@concrete_verbs
class Kontext(BaseKontext[Handle, Handle, EditResult, list[Path], str, Status, CancelStatus, Iterator[Status]]):
    """Synchronous client for FLUX.1 Kontext on fal's queue API or an aggregator that re-exposes it.

    Example::

        with Kontext() as kontext:                       # FAL_KEY from the environment
            result = kontext.edit("Put a donut next to the flour", image="kitchen.jpg")
            kontext.save(result, "out/")
    """

    def close(self) -> None:
        """Close the connections."""
        for http in self._connections.opened():
            http.close()

    def __enter__(self) -> Kontext:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- the executor -------------------------------------------------------------------------------------------

    def _connections_of(self, config: ClientConfig, http: HttpOptions, pools: int | None) -> Connections[httpx.Client]:
        return Connections(config, http, pools=pools, open_generated=_open_generated, new_client=httpx.Client)

    def _handle(self, state: HandleState, pool: int | None = None) -> Handle:
        return Handle(self, state, self._connections.next_pool() if pool is None else pool)

    def _exchange(
        self, command: cmd.Call | cmd.Download | cmd.HttpGet | cmd.Send, pool: int
    ) -> cmd.Answer | cmd.NoAnswer:
        http, request, parse = self._connections.prepare(command, pool)
        try:
            response = http.send(request, stream=True)
        except httpx.HTTPError as err:
            return self._connections.no_answer(err)
        recording = record(response)  # an answer cut off in its body still gives what came (recovery)
        try:
            response.read()
        except httpx.HTTPError as err:
            return self._connections.cut_off(err, response, recording)
        finally:
            response.close()
        return self._connections.answer(response, parse)

    def _open_stream(self, command: cmd.OpenStream, pool: int, stream: _Stream) -> cmd.Answer | cmd.NoAnswer:
        http, request, _ = self._connections.prepare(command, pool)
        try:
            response = http.send(request, stream=True)
            if response.status_code == 200:
                stream.response, stream.lines = response, sse.iter_lines(response.iter_bytes())
                return cmd.Answer(200, response.headers, b"")
            # The error body can be cut off too (a dropped connection): that is no answer, not an escaped httpx error.
            try:
                response.read()
            finally:
                response.close()
        except httpx.HTTPError as err:
            return self._connections.no_answer(err)
        return self._connections.answer(response, None)

    def _perform(self, command: cmd.Command[Any], pool: int, stream: _Stream) -> object:
        match command:
            case cmd.Call() | cmd.Download() | cmd.HttpGet() | cmd.Send():
                return self._exchange(command, pool)
            case cmd.OpenStream():
                return self._open_stream(command, pool, stream)
            case cmd.ReadLine():
                return stream.read_line()
            case cmd.CloseStream(drain=drain):
                stream.close(drain=drain)
            case cmd.Sleep(seconds=seconds):
                self._sleep(seconds)
            case cmd.LocalSize() | cmd.ReadFile() | cmd.WriteFile():
                return files.perform(command)
            case _:
                raise AssertionError(f"no executor for {type(command).__name__}")
        return None

    def _iterate(
        self, flow: Flow[_T], pool: int, on_update: OnUpdate | None, sink: list[_T]
    ) -> Generator[Status, None, None]:
        """Execute ``flow``: yields (and passes to ``on_update``) each status it reports; puts its value in ``sink``.
        What goes wrong while executing a command (Ctrl-C, a refused local file) is thrown into the flow, which may
        cancel its request before it goes on."""
        stream = _Stream(self._connections)
        try:
            command = next(flow)
            while True:
                try:
                    if isinstance(command, cmd.Notify):
                        if on_update is not None:
                            on_update(command.status)
                        yield command.status
                        outcome: object = None
                    else:
                        outcome = self._perform(command, pool, stream)
                except cmd.THROWN_IN as error:
                    command = flow.throw(error)
                else:
                    command = flow.send(outcome)
        except StopIteration as done:
            sink.append(done.value)
        finally:
            stream.close()
            flow.close()

    def _run(self, flow: Flow[_T], pool: int, on_update: OnUpdate | None = None) -> _T:
        sink: list[_T] = []
        self._connections.started(pool)
        try:
            with contextlib.closing(self._iterate(flow, pool, on_update, sink)) as statuses:
                for _ in statuses:
                    pass
        finally:
            self._connections.ended(pool)
        return sink[0]

    def _run_handle(self, flow: Flow[HandleState]) -> Handle:
        pool = self._connections.next_pool()
        return self._handle(self._run(flow, pool), pool)

    def _run_result(
        self, flow: Flow[EditResult], on_update: OnUpdate | None = None, pool: int | None = None
    ) -> EditResult:
        return self._run(flow, self._connections.next_pool() if pool is None else pool, on_update)

    def _run_paths(self, flow: Flow[list[Any]]) -> list[Path]:
        return self._run(flow, 0)

    def _run_upload(self, flow: Flow[str]) -> str:
        return self._run(flow, 0)

    def _run_status(self, flow: Flow[Status], pool: int) -> Status:
        return self._run(flow, pool)

    def _run_cancel(self, flow: Flow[CancelStatus], pool: int) -> CancelStatus:
        return self._run(flow, pool)

    def _statuses(self, flow: Flow[object], pool: int) -> Iterator[Status]:
        return self._iterate(flow, pool, None, [])


def _open_generated(generated: AuthenticatedClient | Client) -> httpx.Client:
    return generated.get_httpx_client()
