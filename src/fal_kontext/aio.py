"""``AsyncKontext``: the asyncio client. It executes the commands of the protocol's flows (awaited) and nothing
else; the verbs, their arguments and checks are ``base.BaseKontext``'s and ``protocol.verbs``', and return
awaitables here.

``client.py`` and ``aio.py`` are written line for line alike, as httpx's ``sync_auth_flow``/``async_auth_flow``:
the same driver over the same flow, one blocking, one awaited.

Connections: with hundreds of requests in flight, the CPU cost of httpx's connection-pool bookkeeping grows with
the number of connections in one pool (docs/benchmarks.md). Each job is therefore pinned to one small pool, created
lazily and sharing one TLS context; by default as many pools as the load needs (a new one once every pool has
``transport.JOBS_PER_POOL`` flows under way), or ``connection_pools`` of them taken in turn.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable
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

__all__ = ["AsyncHandle", "AsyncKontext"]

_T = TypeVar("_T")

# How long, and how many lines, a completed status stream is read for its end (see ``commands.CloseStream.drain``).
_DRAIN_SECONDS = 0.05
_DRAIN_LINES = 2


@concrete_verbs
class AsyncHandle(BaseHandle[Awaitable[EditResult], Awaitable[Status], Awaitable[CancelStatus], AsyncIterator[Status]]):
    """A queued request (asyncio): the verbs of ``Handle``, awaited; ``stream()`` is an async iterator.

    Get one from ``AsyncKontext.submit`` or ``AsyncKontext.handle(request_id)``.
    """


class _Stream:
    """The one status stream a flow may have open."""

    def __init__(self, connections: Connections[httpx.AsyncClient]) -> None:
        self.connections = connections
        self.response: httpx.Response | None = None
        self.lines: AsyncIterator[str] | None = None

    async def read_line(self) -> str | cmd.NoAnswer | None:
        try:
            return await anext(self.lines, None) if self.lines is not None else None
        except httpx.HTTPError as err:
            return self.connections.no_answer(err)

    async def close(self, *, drain: bool = False) -> None:
        if self.response is None:
            return
        if drain:
            # fal ends the stream right after COMPLETED: reading that end (briefly: a proxy may hold it open) leaves
            # the connection in the pool for the result request, rather than a new TLS handshake.
            with contextlib.suppress(httpx.HTTPError, TimeoutError):
                await asyncio.wait_for(self._read_to_end(), timeout=_DRAIN_SECONDS)
        response, self.response, self.lines = self.response, None, None
        await response.aclose()

    async def _read_to_end(self) -> None:
        for _ in range(_DRAIN_LINES):
            if await self.read_line() is None:
                return


@concrete_verbs
class AsyncKontext(
    BaseKontext[
        AsyncHandle,
        Awaitable[AsyncHandle],
        Awaitable[EditResult],
        Awaitable[list[Path]],
        Awaitable[str],
        Awaitable[Status],
        Awaitable[CancelStatus],
        AsyncIterator[Status],
    ]
):
    """Asyncio client for FLUX.1 Kontext: the verbs and arguments of ``Kontext``, awaited.

    Example::

        async with AsyncKontext() as kontext:
            handles = [await kontext.submit("fal-ai/flux-pro/kontext", {...}) for _ in range(100)]
            results = await asyncio.gather(*(h.wait() for h in handles))

    The arguments are ``Kontext``'s, except that ``transport`` is an ``httpx.AsyncBaseTransport``, ``sleep`` a
    coroutine function, and ``connection_pools`` defaults to as many as the load needs (see the module docstring).
    """

    _default_sleep = asyncio.sleep
    _default_pools = None
    # Requests in flight hold a connection each while streaming; the pool count, not a connection cap, keeps each
    # pool small.
    _default_limits = httpx.Limits(max_connections=None, max_keepalive_connections=None)
    _asynchronous = True

    async def close(self) -> None:
        """Close the connections."""
        for http in self._connections.opened():
            await http.aclose()

    async def __aenter__(self) -> AsyncKontext:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # --- the executor -------------------------------------------------------------------------------------------

    def _connections_of(
        self, config: ClientConfig, http: HttpOptions, pools: int | None
    ) -> Connections[httpx.AsyncClient]:
        return Connections(
            config,
            http,
            pools=pools,
            open_generated=_open_generated,
            new_client=httpx.AsyncClient,
            default_limits=self._default_limits,
        )

    def _handle(self, state: HandleState, pool: int | None = None) -> AsyncHandle:
        return AsyncHandle(self, state, self._connections.next_pool() if pool is None else pool)

    async def _exchange(
        self, command: cmd.Call | cmd.Download | cmd.HttpGet | cmd.Send, pool: int
    ) -> cmd.Answer | cmd.NoAnswer:
        http, request, parse = self._connections.prepare(command, pool)
        try:
            response = await http.send(request, stream=True)
        except httpx.HTTPError as err:
            return self._connections.no_answer(err)
        recording = record(response)  # an answer cut off in its body still gives what came (recovery)
        try:
            await response.aread()
        except httpx.HTTPError as err:
            return self._connections.cut_off(err, response, recording)
        finally:
            await response.aclose()
        return self._connections.answer(response, parse)

    async def _open_stream(self, command: cmd.OpenStream, pool: int, stream: _Stream) -> cmd.Answer | cmd.NoAnswer:
        http, request, _ = self._connections.prepare(command, pool)
        try:
            response = await http.send(request, stream=True)
            if response.status_code == 200:
                stream.response, stream.lines = response, sse.aiter_lines(response.aiter_bytes())
                return cmd.Answer(200, response.headers, b"")
            # The error body can be cut off too (a dropped connection): that is no answer, not an escaped httpx error.
            try:
                await response.aread()
            finally:
                await response.aclose()
        except httpx.HTTPError as err:
            return self._connections.no_answer(err)
        return self._connections.answer(response, None)

    async def _perform(self, command: cmd.Command[Any], pool: int, stream: _Stream) -> object:
        match command:
            case cmd.Call() | cmd.Download() | cmd.HttpGet() | cmd.Send():
                return await self._exchange(command, pool)
            case cmd.OpenStream():
                return await self._open_stream(command, pool, stream)
            case cmd.ReadLine():
                return await stream.read_line()
            case cmd.CloseStream(drain=drain):
                await stream.close(drain=drain)
            case cmd.Sleep(seconds=seconds):
                if inspect.isawaitable(pause := self._sleep(seconds)):
                    await pause
            case cmd.LocalSize() | cmd.ReadFile() | cmd.WriteFile():
                return files.perform(command)
            case _:
                raise AssertionError(f"no executor for {type(command).__name__}")
        return None

    async def _iterate(
        self, flow: Flow[_T], pool: int, on_update: OnUpdate | None, sink: list[_T]
    ) -> AsyncGenerator[Status, None]:
        """Execute ``flow``: yields (and passes to ``on_update``, awaited if need be) each status it reports; puts
        its value in ``sink``. What goes wrong while executing a command (the task cancelled, a refused local file)
        is thrown into the flow, which may cancel its request before it goes on."""
        stream = _Stream(self._connections)
        try:
            command = next(flow)
            while True:
                try:
                    if isinstance(command, cmd.Notify):
                        if on_update is not None and inspect.isawaitable(reply := on_update(command.status)):
                            await reply
                        yield command.status
                        outcome: object = None
                    else:
                        outcome = await self._perform(command, pool, stream)
                except cmd.THROWN_IN as error:
                    command = flow.throw(error)
                else:
                    command = flow.send(outcome)
        except StopIteration as done:
            sink.append(done.value)
        finally:
            await asyncio.shield(stream.close())
            flow.close()

    async def _run(self, flow: Flow[_T], pool: int, on_update: OnUpdate | None = None) -> _T:
        sink: list[_T] = []
        self._connections.started(pool)
        try:
            async with contextlib.aclosing(self._iterate(flow, pool, on_update, sink)) as statuses:
                async for _ in statuses:
                    pass
        finally:
            self._connections.ended(pool)
        return sink[0]

    async def _run_handle(self, flow: Flow[HandleState]) -> AsyncHandle:
        pool = self._connections.next_pool()
        return self._handle(await self._run(flow, pool), pool)

    async def _run_result(
        self, flow: Flow[EditResult], on_update: OnUpdate | None = None, pool: int | None = None
    ) -> EditResult:
        return await self._run(flow, self._connections.next_pool() if pool is None else pool, on_update)

    async def _run_paths(self, flow: Flow[list[Any]]) -> list[Path]:
        return await self._run(flow, 0)

    async def _run_upload(self, flow: Flow[str]) -> str:
        return await self._run(flow, 0)

    async def _run_status(self, flow: Flow[Status], pool: int) -> Status:
        return await self._run(flow, pool)

    async def _run_cancel(self, flow: Flow[CancelStatus], pool: int) -> CancelStatus:
        return await self._run(flow, pool)

    def _statuses(self, flow: Flow[object], pool: int) -> AsyncIterator[Status]:
        return self._iterate(flow, pool, None, [])


def _open_generated(generated: AuthenticatedClient | Client) -> httpx.AsyncClient:
    return generated.get_async_httpx_client()
