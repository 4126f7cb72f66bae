"""``AsyncKontext``: the asyncio client, the same verbs as ``Kontext`` over the same flows.

Connections: with hundreds of requests in flight, the CPU cost of httpx's connection-pool bookkeeping grows with
the number of connections in one pool (performance-notes.md). Each request is therefore pinned to one of
``connection_pools`` small pools (round robin at submit/resume), created lazily and sharing one TLS context.
Measured with 1,000 concurrent jobs against the emulator on 2 cores (client CPU per job, status stream):
1 pool 57.6 ms, 16 pools 12.8 ms, 64 pools 7.0 ms, 128 pools 5.9 ms; hence the default of 64.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import itertools
import logging
import ssl
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import httpx
from fal_kontext_api.client import AuthenticatedClient, Client
from fal_kontext_api.models import CancelStatus

from .calls import (
    answer,
    aremember_response,
    call_arguments,
    captured_responses,
    download_failed,
    downloaded,
    no_answer,
    operation_module,
    raw_answer,
)
from .config import (
    DEFAULT_POLL,
    DEFAULT_RETRY,
    DEFAULT_TIMEOUTS,
    AuthScheme,
    ClientConfig,
    Credentials,
    RequestTimeouts,
)
from .endpoints import Endpoint, parse_endpoint
from .errors import KontextError
from .files import DEFAULT_MAX_IMAGE_BYTES, ImageSource
from .inputs import EditInput, build_edit_input, build_input
from .queue import (
    Answer,
    Call,
    CloseStream,
    Command,
    Flow,
    HandleState,
    NoAnswer,
    Notify,
    OpenStream,
    PollSchedule,
    ReadLine,
    Sleep,
    cancel_flow,
    result_flow,
    resume_state,
    status_flow,
    stream_flow,
    submit_flow,
    wait_flow,
)
from .results import EditResult, save_flow
from .retry import RetryPolicy
from .status import Status, logs_of, status_from_model

__all__ = ["AsyncHandle", "AsyncKontext"]

logger = logging.getLogger("fal_kontext")

OnUpdate = Callable[[Status], object] | Callable[[Status], Awaitable[object]]


# How long, and how many lines, a completed status stream is read for its end (see ``CloseStream.drain``).
_DRAIN_SECONDS = 0.05
_DRAIN_LINES = 2


class _Stream:
    def __init__(self, response: httpx.Response) -> None:
        self.response = response
        self.lines = response.aiter_lines()

    async def close(self, *, drain: bool = False) -> None:
        if drain:
            # A stream read to its end leaves its connection in the pool for the result request; one closed early
            # is dropped, and the result request pays a new TLS handshake (about 3 ms of CPU on each side).
            with contextlib.suppress(httpx.HTTPError, TimeoutError):
                await asyncio.wait_for(self._read_to_end(), timeout=_DRAIN_SECONDS)
        await self.response.aclose()

    async def _read_to_end(self) -> None:
        for _ in range(_DRAIN_LINES):
            if await anext(self.lines, None) is None:
                return


class AsyncHandle:
    """A queued request (asyncio): the same verbs as ``Handle``, awaited.

    Get one from ``AsyncKontext.submit`` or ``AsyncKontext.handle(request_id)``.
    """

    def __init__(self, kontext: AsyncKontext, state: HandleState, pool: int) -> None:
        self._kontext = kontext
        self._state = state
        self._pool = pool

    @property
    def request_id(self) -> str:
        """The request id (keep it to resume later)."""
        return self._state.request_id

    @property
    def endpoint(self) -> Endpoint | None:
        """The endpoint the request was submitted to, if known."""
        return self._state.endpoint

    def __repr__(self) -> str:
        endpoint = self.endpoint.value if self.endpoint else None
        return f"AsyncHandle(request_id={self.request_id!r}, endpoint={endpoint!r})"

    async def status(self, *, logs: bool = False) -> Status:
        """The current status. See ``Handle.status``."""
        model = await self._kontext._run(status_flow(self._state, self._kontext._settings, logs=logs), self._pool)
        return status_from_model(model, tuple(logs_of(model)))

    async def stream(self, *, logs: bool = True) -> AsyncIterator[Status]:
        """Status changes from the status stream, up to and including ``Completed``. See ``Handle.stream``."""
        flow = stream_flow(self._state, self._kontext._settings, logs=logs)
        async with contextlib.aclosing(self._kontext._iterate(flow, self._pool)) as statuses:
            async for status in statuses:
                yield status

    async def wait(
        self,
        *,
        timeout: float | None = None,
        on_update: OnUpdate | None = None,
        logs: bool = True,
        stream: bool | None = None,
        cancel_on_timeout: bool = True,
        cancel_on_interrupt: bool = True,
    ) -> EditResult:
        """Wait until the request completes and return its result. See ``Handle.wait``.

        ``on_update`` may be a plain function or a coroutine function. ``cancel_on_interrupt``: when the waiting task
        is cancelled (Ctrl-C under ``asyncio.run``), the request is cancelled on the server first.
        """
        config = self._kontext._config
        flow = wait_flow(
            self._state,
            self._kontext._settings,
            timeout=config.wait_deadline(timeout),
            logs=logs,
            use_stream=config.stream_status if stream is None else stream,
            cancel_on_timeout=cancel_on_timeout,
        )
        try:
            result: EditResult = await self._kontext._run(flow, self._pool, on_update)
        except (asyncio.CancelledError, KeyboardInterrupt):
            if cancel_on_interrupt:
                await asyncio.shield(self._kontext._cancel_quietly(self._state, self._pool))
            raise
        return result

    async def result(self) -> EditResult:
        """The result of a completed request (does not wait). See ``Handle.result``."""
        result: EditResult = await self._kontext._run(result_flow(self._state, self._kontext._settings), self._pool)
        return result

    async def cancel(self) -> CancelStatus:
        """Ask the server to cancel the request. See ``Handle.cancel``."""
        status: CancelStatus = await self._kontext._run(cancel_flow(self._state, self._kontext._settings), self._pool)
        return status


class AsyncKontext:
    """Asyncio client for FLUX.1 Kontext; the arguments of ``Kontext`` plus ``connection_pools``.

    Example::

        async with AsyncKontext() as kontext:
            handles = [await kontext.submit("fal-ai/flux-pro/kontext", {...}) for _ in range(100)]
            results = await asyncio.gather(*(h.wait() for h in handles))

    Args:
        connection_pools: Number of small connection pools requests are spread over (see the module docstring).
        sleep: Coroutine function to sleep (tests inject a fake).
        transport: An ``httpx.AsyncBaseTransport`` (tests: ``httpx.MockTransport``).
        Others: as ``Kontext``.
    """

    def __init__(
        self,
        key: str | None = None,
        *,
        auth: AuthScheme | Credentials | None = None,
        base_url: str | None = None,
        timeouts: RequestTimeouts = DEFAULT_TIMEOUTS,
        retry: RetryPolicy = DEFAULT_RETRY,
        poll: PollSchedule = DEFAULT_POLL,
        wait_timeout: float | None = 900.0,
        start_timeout: float | None = None,
        stream_status: bool = True,
        max_image_bytes: int = DEFAULT_MAX_IMAGE_BYTES,
        transport: httpx.AsyncBaseTransport | None = None,
        httpx_args: Mapping[str, Any] | None = None,
        connection_pools: int = 64,
        sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
        clock: Callable[[], float] | None = None,
        random_source: Callable[[], float] | None = None,
        stream_idle_timeout: float = 30.0,
    ) -> None:
        if connection_pools < 1:
            raise ValueError("connection_pools must be >= 1")
        self._config = ClientConfig.build(
            key=key,
            auth=auth,
            base_url=base_url,
            timeouts=timeouts,
            retry=retry,
            poll=poll,
            wait_timeout=wait_timeout,
            start_timeout=start_timeout,
            stream_status=stream_status,
            max_image_bytes=max_image_bytes,
            clock=clock,
            random_source=random_source,
            stream_idle_timeout=stream_idle_timeout,
        )
        self._settings = self._config.settings()
        self._secret = self._config.credentials.secret if self._config.credentials else None
        self._sleep = sleep
        self._httpx_args: dict[str, Any] = dict(httpx_args or {})
        if transport is not None:
            self._httpx_args["transport"] = transport
        # One TLS context for every pool: building one per httpx client costs milliseconds each. (The generated
        # client takes it as verify_ssl and passes it to httpx itself.)
        self._verify: Any = (
            self._httpx_args.pop("verify") if "verify" in self._httpx_args else ssl.create_default_context()
        )
        # Requests in flight hold a connection each while streaming; the pool count, not a connection cap, keeps
        # each pool small.
        self._httpx_args.setdefault("limits", httpx.Limits(max_connections=None, max_keepalive_connections=None))
        self._pools = connection_pools
        self._next_pool = itertools.count()
        self._clients: dict[tuple[str, int], AuthenticatedClient | Client] = {}
        self._downloader: httpx.AsyncClient | None = None

    def __repr__(self) -> str:
        scheme = self._config.credentials.scheme if self._config.credentials else None
        return f"AsyncKontext(base_url={self._config.base_url!r}, auth={scheme!r})"

    @property
    def base_url(self) -> str:
        """The configured queue base URL."""
        return self._config.base_url

    async def submit(
        self,
        endpoint: Endpoint | str,
        input: Mapping[str, object] | EditInput,
        *,
        webhook_url: str | None = None,
        start_timeout: float | None = None,
        priority: str | None = None,
        runner_hint: str | None = None,
        no_retry: bool = False,
    ) -> AsyncHandle:
        """Queue a request; returns its handle. See ``Kontext.submit``."""
        chosen = parse_endpoint(endpoint)
        body = build_input(chosen, input)
        options = self._config.submit_options(
            webhook_url=webhook_url,
            start_timeout=start_timeout,
            priority=priority,
            runner_hint=runner_hint,
            no_retry=no_retry,
        )
        pool = next(self._next_pool) % self._pools
        state: HandleState = await self._run(submit_flow(chosen, body, options, self._settings), pool)
        return AsyncHandle(self, state, pool)

    def handle(self, request_id: str, *, endpoint: Endpoint | str | None = None) -> AsyncHandle:
        """The handle of an existing request (no request is made). See ``Kontext.handle``."""
        chosen = parse_endpoint(endpoint) if endpoint is not None else None
        state = resume_state(request_id, self._settings, chosen)
        return AsyncHandle(self, state, next(self._next_pool) % self._pools)

    async def run(
        self,
        endpoint: Endpoint | str,
        input: Mapping[str, object] | EditInput,
        *,
        timeout: float | None = None,
        on_update: OnUpdate | None = None,
        logs: bool = True,
        **submit_options: Any,
    ) -> EditResult:
        """``submit`` then ``wait``. See ``Kontext.run``."""
        handle = await self.submit(endpoint, input, **submit_options)
        return await handle.wait(timeout=timeout, on_update=on_update, logs=logs)

    async def edit(
        self,
        prompt: str,
        *,
        image: ImageSource | None = None,
        images: Sequence[ImageSource] | None = None,
        model: str = "pro",
        timeout: float | None = None,
        on_update: OnUpdate | None = None,
        webhook_url: str | None = None,
        start_timeout: float | None = None,
        priority: str | None = None,
        **options: object,
    ) -> EditResult:
        """Edit one image or combine several and wait for the result. See ``Kontext.edit``."""
        endpoint, body = build_edit_input(
            prompt, image=image, images=images, model=model, max_image_bytes=self._config.max_image_bytes, **options
        )
        handle = await self.submit(
            endpoint, body, webhook_url=webhook_url, start_timeout=start_timeout, priority=priority
        )
        return await handle.wait(timeout=timeout, on_update=on_update)

    async def save(self, result: EditResult, directory: str | Path) -> list[Path]:
        """Write every image of ``result`` into ``directory``, atomically. See ``Kontext.save``."""
        flow = save_flow(result, directory)
        try:
            download = next(flow)
            while True:
                download = flow.send(await self._download(download.url, download.request_id))
        except StopIteration as done:
            written: list[Path] = done.value
            return written

    async def close(self) -> None:
        """Close the connections."""
        for client in self._clients.values():
            await client.get_async_httpx_client().aclose()
        self._clients.clear()
        if self._downloader is not None:
            await self._downloader.aclose()
            self._downloader = None

    async def __aenter__(self) -> AsyncKontext:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # --- the driver ---------------------------------------------------------------------------------------------

    def _client(self, base_url: str, pool: int) -> AuthenticatedClient | Client:
        client = self._clients.get((base_url, pool))
        if client is None:
            args = self._config.client_args()
            httpx_args = {**self._httpx_args, "event_hooks": {"response": [aremember_response]}}
            if "token" in args:
                client = AuthenticatedClient(base_url=base_url, httpx_args=httpx_args, verify_ssl=self._verify, **args)
            else:
                client = Client(base_url=base_url, httpx_args=httpx_args, verify_ssl=self._verify, **args)
            self._clients[(base_url, pool)] = client
        return client

    async def _call(self, call: Call, pool: int) -> Answer | NoAnswer:
        client = self._client(call.base_url, pool)
        positional, kwargs = call_arguments(call)
        box: list[httpx.Response] = []
        token = captured_responses.set(box)
        try:
            response = await operation_module(call).asyncio_detailed(*positional, client=client, **kwargs)
            return answer(response, self._secret)
        except httpx.HTTPError as err:
            return no_answer(err)
        except (ValueError, KeyError, TypeError):
            if box:  # the generated parser could not read the answer; judge it by its status code
                return raw_answer(box[-1], self._secret)
            raise  # nothing was received: a bug, not an answer
        finally:
            captured_responses.reset(token)

    async def _open_stream(self, command: OpenStream, pool: int) -> tuple[Answer | NoAnswer, _Stream | None]:
        http = self._client(self._config.base_url, pool).get_async_httpx_client()
        timeout = httpx.Timeout(command.read_timeout, connect=self._config.timeouts.connect)
        request = http.build_request(
            "GET", command.url, params=command.params, headers={"Accept": "text/event-stream"}, timeout=timeout
        )
        try:
            response = await http.send(request, stream=True)
        except httpx.HTTPError as err:
            return no_answer(err), None
        if response.status_code != 200:
            # The error body can be cut off too (a dropped connection): that is no answer, not an escaped httpx error.
            try:
                await response.aread()
            except httpx.HTTPError as err:
                return no_answer(err), None
            finally:
                await response.aclose()
            return raw_answer(response, self._secret), None
        return Answer(200, response.headers, b""), _Stream(response)

    async def _iterate(self, flow: Flow, pool: int, result: list[Any] | None = None) -> AsyncGenerator[Status, None]:
        stream: _Stream | None = None
        try:
            command: Command = next(flow)
            while True:
                outcome: Any = None
                if isinstance(command, Call):
                    outcome = await self._call(command, pool)
                elif isinstance(command, Sleep):
                    await self._sleep(command.seconds)
                elif isinstance(command, Notify):
                    yield command.status
                elif isinstance(command, OpenStream):
                    outcome, stream = await self._open_stream(command, pool)
                elif isinstance(command, ReadLine):
                    try:
                        outcome = await anext(stream.lines, None) if stream else None
                    except httpx.HTTPError as err:
                        outcome = no_answer(err)
                elif isinstance(command, CloseStream) and stream is not None:
                    await stream.close(drain=command.drain)
                    stream = None
                command = flow.send(outcome)
        except StopIteration as stop:
            if result is not None:
                result.append(stop.value)
        finally:
            if stream is not None:
                await asyncio.shield(stream.close())
            flow.close()

    async def _run(self, flow: Flow, pool: int, on_update: OnUpdate | None = None) -> Any:
        result: list[Any] = []
        async with contextlib.aclosing(self._iterate(flow, pool, result)) as statuses:
            async for status in statuses:
                if on_update is not None:
                    returned = on_update(status)
                    if inspect.isawaitable(returned):
                        await returned
        return result[0]

    async def _cancel_quietly(self, state: HandleState, pool: int) -> None:
        try:
            await self._run(cancel_flow(state, self._settings), pool)
            logger.info("cancelled request %s", state.request_id)
        except KontextError as err:
            logger.warning("could not cancel request %s: %s", state.request_id, err)

    async def _download(self, url: str, request_id: str) -> tuple[str | None, bytes]:
        if self._downloader is None:
            args = {k: v for k, v in self._httpx_args.items() if k in ("transport", "proxy")}
            self._downloader = httpx.AsyncClient(
                timeout=self._config.timeouts.to_httpx(), follow_redirects=True, **args
            )
        try:
            response = await self._downloader.get(url)
        except httpx.HTTPError as err:
            raise download_failed(url, request_id, err) from err
        return downloaded(response, url, request_id)
