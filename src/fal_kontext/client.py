"""``Kontext``: the synchronous client. It executes the commands of the flows (blocking) and nothing else; the
verbs, their arguments and checks are ``base.BaseKontext``'s."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Generator, Iterator
from pathlib import Path
from typing import Any, TypeVar, assert_never

import httpx
from fal_kontext_api.client import AuthenticatedClient, Client
from fal_kontext_api.models import CancelStatus

from . import commands as cmd
from . import sse
from .base import BaseHandle, BaseKontext, OnUpdate
from .commands import Flow
from .flows import HandleState
from .results import EditResult
from .signatures import concrete_verbs
from .status import Status

__all__ = ["Handle", "Kontext"]

_T = TypeVar("_T")

# How many lines a completed status stream is read for its end (see ``commands.CloseStream.drain``).
_DRAIN_LINES = 2


@concrete_verbs
class Handle(BaseHandle[EditResult, Status, CancelStatus, Iterator[Status]]):
    """A queued request (blocking verbs). Get one from ``Kontext.submit`` or ``Kontext.handle(request_id)``."""


class _Stream:
    """The one status stream a flow may have open."""

    def __init__(self, no_answer: Callable[[httpx.HTTPError], cmd.NoAnswer]) -> None:
        self.no_answer = no_answer
        self.response: httpx.Response | None = None
        self.lines: Iterator[str] = iter(())

    def read_line(self) -> str | cmd.NoAnswer | None:
        try:
            return next(self.lines, None)
        except httpx.HTTPError as err:
            return self.no_answer(err)

    def close(self, *, drain: bool = False) -> None:
        if self.response is None:
            return
        if drain:
            # fal ends the stream right after COMPLETED: reading that end leaves the connection in the pool for the
            # result request and the next job, rather than a new TLS handshake each (about 3 ms of CPU per side).
            with contextlib.suppress(httpx.HTTPError):
                for _ in range(_DRAIN_LINES):
                    if next(self.lines, None) is None:
                        break
        self.response.close()
        self.response, self.lines = None, iter(())


@concrete_verbs
class Kontext(
    BaseKontext[httpx.Client, Handle, Handle, EditResult, list[Path], str, Status, CancelStatus, Iterator[Status]]
):
    """Synchronous client for FLUX.1 Kontext on fal's queue API or an aggregator that re-exposes it.

    Example::

        with Kontext() as kontext:                       # FAL_KEY from the environment
            result = kontext.edit("Put a donut next to the flour", image="kitchen.jpg")
            kontext.save(result, "out/")
    """

    def close(self) -> None:
        """Close the connections."""
        for http in self._opened_clients():
            http.close()

    def __enter__(self) -> Kontext:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- the executor -------------------------------------------------------------------------------------------

    def _open(self, generated: AuthenticatedClient | Client) -> httpx.Client:
        return generated.get_httpx_client()

    def _new_client(self, args: dict[str, Any]) -> httpx.Client:
        return httpx.Client(**args)

    def _handle(self, state: HandleState, pool: int) -> Handle:
        return Handle(self, state, pool)

    def _exchange(
        self, command: cmd.Call | cmd.Download | cmd.HttpGet | cmd.Send, pool: int
    ) -> cmd.Answer | cmd.NoAnswer:
        http, request, parse = self._prepare(command, pool)
        try:
            response = http.send(request, stream=True)
        except httpx.HTTPError as err:
            return self._no_answer(err)
        recording = cmd.record(response)  # an answer cut off in its body still gives what came (recovery)
        try:
            response.read()
        except httpx.HTTPError as err:
            return cmd.cut_off(err, response, recording, self._secret)
        finally:
            response.close()
        return self._answer(response, parse)

    def _open_stream(self, command: cmd.OpenStream, pool: int, stream: _Stream) -> cmd.Answer | cmd.NoAnswer:
        http, request, _ = self._prepare(command, pool)
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
            return self._no_answer(err)
        return self._answer(response, None)

    def _perform(self, command: cmd.Exchange, pool: int, stream: _Stream) -> cmd.Outcome:
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
            case _:
                assert_never(command)
        return None

    def _iterate(self, flow: Flow[_T], pool: int, on_update: OnUpdate | None = None) -> Generator[Status, None, _T]:
        """Execute ``flow``: yields (and passes to ``on_update``) each status it reports, returns its value. An
        interruption (Ctrl-C) while executing a command is thrown into the flow, which may cancel its request."""
        stream = _Stream(self._no_answer)
        outcome: cmd.Outcome = None
        interrupt: BaseException | None = None
        try:
            while True:
                command = flow.send(outcome) if interrupt is None else flow.throw(interrupt)
                outcome, interrupt = None, None
                try:
                    if not isinstance(command, cmd.Notify):
                        outcome = self._perform(command, pool, stream)
                        continue
                    if on_update is not None:
                        on_update(command.status)
                    yield command.status
                except cmd.INTERRUPTS as caught:
                    interrupt = caught
        except StopIteration as done:
            value: _T = done.value
            return value
        finally:
            stream.close()
            flow.close()

    def _run(self, flow: Flow[_T], pool: int = 0, on_update: OnUpdate | None = None) -> _T:
        with contextlib.closing(self._iterate(flow, pool, on_update)) as statuses:
            while True:
                try:
                    next(statuses)
                except StopIteration as done:
                    value: _T = done.value
                    return value

    def _run_handle(self, flow: Flow[Handle], pool: int) -> Handle:
        return self._run(flow, pool)

    def _run_result(self, flow: Flow[EditResult], pool: int, on_update: OnUpdate | None = None) -> EditResult:
        return self._run(flow, pool, on_update)

    def _run_paths(self, flow: Flow[list[Path]]) -> list[Path]:
        return self._run(flow)

    def _run_upload(self, flow: Flow[str]) -> str:
        return self._run(flow)

    def _run_status(self, flow: Flow[Status], pool: int) -> Status:
        return self._run(flow, pool)

    def _run_cancel(self, flow: Flow[CancelStatus], pool: int) -> CancelStatus:
        return self._run(flow, pool)

    def _statuses(self, flow: Flow[object], pool: int) -> Iterator[Status]:
        return self._iterate(flow, pool)
