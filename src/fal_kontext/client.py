"""``Kontext``: the synchronous client. It executes the commands of the flows in ``queue`` and nothing else."""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable, Generator, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import httpx
from fal_kontext_api.client import AuthenticatedClient, Client
from fal_kontext_api.models import CancelStatus

from .calls import (
    answer,
    call_arguments,
    captured_responses,
    download_failed,
    downloaded,
    no_answer,
    operation_module,
    raw_answer,
    remember_response,
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

__all__ = ["Handle", "Kontext"]

logger = logging.getLogger("fal_kontext")

OnUpdate = Callable[[Status], object]


class _Stream:
    """The one status stream a flow may have open."""

    def __init__(self, response: httpx.Response) -> None:
        self.response = response
        self.lines = response.iter_lines()

    def close(self) -> None:
        self.response.close()


class Handle:
    """A queued request: ask its status, follow it, wait for it, fetch its result or cancel it.

    Get one from ``Kontext.submit`` or, after a restart, ``Kontext.handle(request_id)``.
    """

    def __init__(self, kontext: Kontext, state: HandleState) -> None:
        self._kontext = kontext
        self._state = state

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
        return f"Handle(request_id={self.request_id!r}, endpoint={endpoint!r})"

    def status(self, *, logs: bool = False) -> Status:
        """The current status (one request, retried per the policy).

        Args:
            logs: Ask for the logs (all lines so far).

        Raises:
            NotFoundError: unknown request id. APIError: other failures.
        """
        model = self._kontext._run(status_flow(self._state, self._kontext._settings, logs=logs))
        return status_from_model(model, tuple(logs_of(model)))

    def stream(self, *, logs: bool = True) -> Iterator[Status]:
        """Status changes from the status stream (SSE), up to and including ``Completed``.

        Each status carries the log lines new since the previous one. Ends early (without ``Completed``) if the
        stream drops; ``wait()`` falls back to polling in that case, this iterator does not.

        Raises:
            AuthenticationError: the stream refused the credentials.
        """
        yield from self._kontext._iterate(stream_flow(self._state, self._kontext._settings, logs=logs))

    def wait(
        self,
        *,
        timeout: float | None = None,
        on_update: OnUpdate | None = None,
        logs: bool = True,
        stream: bool | None = None,
        cancel_on_timeout: bool = True,
        cancel_on_interrupt: bool = True,
    ) -> EditResult:
        """Wait until the request completes and return its result.

        Follows the status stream (falling back to adaptive polling), and fetches the result as soon as COMPLETED.

        Args:
            timeout: Seconds to wait (default: the client's ``wait_timeout``; ``math.inf`` for no deadline).
            on_update: Called with each new status (queue position, new log lines).
            logs: Ask the server for logs.
            stream: Use the status stream (default: the client's ``stream_status``); False polls only.
            cancel_on_timeout: Cancel the request on the server when the deadline passes.
            cancel_on_interrupt: Cancel the request on the server on Ctrl-C (KeyboardInterrupt).

        Raises:
            WaitTimeoutError: the deadline passed (the request was cancelled unless told not to).
            RequestFailedError: COMPLETED with an error. RequestCancelledError: cancelled.
            ValidationError / ContentPolicyError: the result is a 422. APIError: a call failed after retries.
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
            result: EditResult = self._kontext._run(flow, on_update)
        except KeyboardInterrupt:
            if cancel_on_interrupt:
                self._kontext._cancel_quietly(self._state)
            raise
        return result

    def result(self) -> EditResult:
        """The result of a completed request (does not wait).

        Raises:
            ResultNotReadyError: not completed yet (call ``wait()``). NotFoundError: unknown or expired.
            ValidationError / ContentPolicyError: the request failed validation. APIError: other failures.
        """
        result: EditResult = self._kontext._run(result_flow(self._state, self._kontext._settings))
        return result

    def cancel(self) -> CancelStatus:
        """Ask the server to cancel the request.

        Returns:
            ``CANCELLATION_REQUESTED`` (or ``OK``), or ``ALREADY_COMPLETED``.

        Raises:
            NotFoundError: unknown request id. APIError: other failures.
        """
        status: CancelStatus = self._kontext._run(cancel_flow(self._state, self._kontext._settings))
        return status


class Kontext:
    """Synchronous client for FLUX.1 Kontext on fal's queue API or an aggregator that re-exposes it.

    Example::

        with Kontext() as kontext:                       # FAL_KEY from the environment
            result = kontext.edit("Put a donut next to the flour", image="kitchen.jpg")
            kontext.save(result, "out/")

    Args:
        key: The secret; default from the environment (``FAL_KEY``, or ``FAL_KEY_ID`` + ``FAL_KEY_SECRET``; for
            ``auth="bearer"`` first ``FAL_KONTEXT_TOKEN``).
        auth: ``"key"`` (``Authorization: Key``, fal) or ``"bearer"`` (aggregators), or ``Credentials``; default
            ``FAL_KONTEXT_AUTH`` or ``"key"``.
        base_url: Queue base URL; default ``FAL_KONTEXT_BASE_URL`` or ``https://queue.fal.run``.
        timeouts: Per-request connect/read timeouts.
        retry: Retry policy (``RetryPolicy.disabled()`` to never retry).
        poll: Polling schedule used when the status stream is unavailable.
        wait_timeout: Default deadline of ``wait``/``run``/``edit`` in seconds (``math.inf`` or None: none).
        start_timeout: Default ``X-Fal-Request-Timeout`` (seconds a request may wait to start).
        stream_status: Follow the status stream while waiting (else poll only).
        max_image_bytes: Largest local image inlined as a data URI.
        transport: An httpx transport for every request (tests: ``httpx.MockTransport``).
        httpx_args: More ``httpx.Client`` arguments (``verify``, ``proxy``, ``limits``, ...).
        sleep: How to sleep (tests inject a fake).
        clock: Monotonic clock for deadlines (tests inject a fake).
        random_source: Jitter source in [0, 1) (tests inject a constant).
        stream_idle_timeout: A status stream silent this long counts as dropped.

    Raises:
        ValueError: a bad base URL, auth scheme or timeout.
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
        transport: httpx.BaseTransport | None = None,
        httpx_args: Mapping[str, Any] | None = None,
        sleep: Callable[[float], object] = time.sleep,
        clock: Callable[[], float] | None = None,
        random_source: Callable[[], float] | None = None,
        stream_idle_timeout: float = 30.0,
    ) -> None:
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
        # The generated client takes verify as verify_ssl and passes it to httpx itself.
        self._verify: Any = self._httpx_args.pop("verify", True)
        # Keyed by (base URL, for the status stream). Streams get their own connections: a stream closed after
        # COMPLETED cannot be reused (a blocking read of its end could not be bounded), so the result request that
        # follows takes a warm connection from the other pool instead of waiting for a new TLS handshake.
        self._clients: dict[tuple[str, bool], AuthenticatedClient | Client] = {}
        self._downloader: httpx.Client | None = None

    def __repr__(self) -> str:
        scheme = self._config.credentials.scheme if self._config.credentials else None
        return f"Kontext(base_url={self._config.base_url!r}, auth={scheme!r})"

    @property
    def base_url(self) -> str:
        """The configured queue base URL."""
        return self._config.base_url

    # --- public verbs -------------------------------------------------------------------------------------------

    def submit(
        self,
        endpoint: Endpoint | str,
        input: Mapping[str, object] | EditInput,
        *,
        webhook_url: str | None = None,
        start_timeout: float | None = None,
        priority: str | None = None,
        runner_hint: str | None = None,
        no_retry: bool = False,
    ) -> Handle:
        """Queue a request; returns its handle at once. Never sent twice (retried only if it never left).

        Args:
            endpoint: An ``Endpoint`` or its id, e.g. ``"fal-ai/flux-pro/kontext/max"``.
            input: The input fields (dict) or a generated ``KontextInput``/``KontextMultiInput``.
            webhook_url: fal POSTs the result here too (verify it with ``fal_kontext.webhooks``).
            start_timeout: Seconds the request may wait to start (``X-Fal-Request-Timeout``).
            priority: ``"normal"`` or ``"low"``.
            runner_hint: Route to a runner that served the same hint.
            no_retry: Ask fal not to retry the request server-side.

        Raises:
            InvalidInputError: the input breaks the spec (nothing sent). APIError: the submit failed.
        """
        chosen = parse_endpoint(endpoint)
        body = build_input(chosen, input)
        options = self._config.submit_options(
            webhook_url=webhook_url,
            start_timeout=start_timeout,
            priority=priority,
            runner_hint=runner_hint,
            no_retry=no_retry,
        )
        state: HandleState = self._run(submit_flow(chosen, body, options, self._settings))
        return Handle(self, state)

    def handle(self, request_id: str, *, endpoint: Endpoint | str | None = None) -> Handle:
        """The handle of an existing request, e.g. after a restart. No request is made.

        Raises:
            ValueError: empty request id. InvalidInputError: unknown endpoint.
        """
        chosen = parse_endpoint(endpoint) if endpoint is not None else None
        return Handle(self, resume_state(request_id, self._settings, chosen))

    def run(
        self,
        endpoint: Endpoint | str,
        input: Mapping[str, object] | EditInput,
        *,
        timeout: float | None = None,
        on_update: OnUpdate | None = None,
        logs: bool = True,
        **submit_options: Any,
    ) -> EditResult:
        """``submit`` then ``wait``: the result, or a typed error. See both for arguments and errors."""
        return self.submit(endpoint, input, **submit_options).wait(timeout=timeout, on_update=on_update, logs=logs)

    def edit(
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
        """Edit one image (``image=``) or combine several (``images=[...]``) and wait for the result.

        Images may be URLs, data URIs, local paths, bytes or PIL images (files are sent inline as data URIs).

        Args:
            prompt: What to change.
            image: One input image (the single endpoint).
            images: Several input images (the multi endpoint).
            model: ``"pro"`` or ``"max"``.
            timeout: Wait deadline (see ``Handle.wait``).
            on_update: Called with each new status.
            webhook_url: See ``submit``. start_timeout: See ``submit``. priority: See ``submit``.
            **options: Input fields: ``aspect_ratio``, ``seed``, ``num_images``, ``output_format``,
                ``guidance_scale``, ``safety_tolerance``, ``enhance_prompt``, ``sync_mode``.

        Raises:
            InvalidInputError: nothing sent. Everything ``Handle.wait`` raises.
        """
        endpoint, body = build_edit_input(
            prompt, image=image, images=images, model=model, max_image_bytes=self._config.max_image_bytes, **options
        )
        handle = self.submit(endpoint, body, webhook_url=webhook_url, start_timeout=start_timeout, priority=priority)
        return handle.wait(timeout=timeout, on_update=on_update)

    def save(self, result: EditResult, directory: str | Path) -> list[Path]:
        """Write every image of ``result`` into ``directory`` as ``<request_id>-<n>.<ext>``, atomically.

        URLs are downloaded (without credentials); data URIs are decoded. fal's result URLs expire: save soon.

        Returns:
            The paths written, in image order.

        Raises:
            NotFoundError: an image URL is gone (expired). APIError: a download failed. OSError: writing failed.
        """
        flow = save_flow(result, directory)
        try:
            download = next(flow)
            while True:
                download = flow.send(self._download(download.url, download.request_id))
        except StopIteration as done:
            written: list[Path] = done.value
            return written

    def close(self) -> None:
        """Close the connections."""
        for client in self._clients.values():
            client.get_httpx_client().close()
        self._clients.clear()
        if self._downloader is not None:
            self._downloader.close()
            self._downloader = None

    def __enter__(self) -> Kontext:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- the driver ---------------------------------------------------------------------------------------------

    def _client(self, base_url: str, *, stream: bool = False) -> AuthenticatedClient | Client:
        client = self._clients.get((base_url, stream))
        if client is None:
            args = self._config.client_args()
            hooks = {"response": [remember_response]}
            httpx_args = {**self._httpx_args, "event_hooks": hooks}
            if "token" in args:
                client = AuthenticatedClient(base_url=base_url, httpx_args=httpx_args, verify_ssl=self._verify, **args)
            else:
                client = Client(base_url=base_url, httpx_args=httpx_args, verify_ssl=self._verify, **args)
            self._clients[(base_url, stream)] = client
        return client

    def _call(self, call: Call) -> Answer | NoAnswer:
        client = self._client(call.base_url)
        positional, kwargs = call_arguments(call)
        box: list[httpx.Response] = []
        token = captured_responses.set(box)
        try:
            return answer(operation_module(call).sync_detailed(*positional, client=client, **kwargs), self._secret)
        except httpx.HTTPError as err:
            return no_answer(err)
        except (ValueError, KeyError, TypeError):
            if box:  # the generated parser could not read the answer; judge it by its status code
                return raw_answer(box[-1], self._secret)
            raise  # nothing was received: a bug, not an answer
        finally:
            captured_responses.reset(token)

    def _open_stream(self, command: OpenStream) -> tuple[Answer | NoAnswer, _Stream | None]:
        http = self._client(self._config.base_url, stream=True).get_httpx_client()
        timeout = httpx.Timeout(command.read_timeout, connect=self._config.timeouts.connect)
        request = http.build_request(
            "GET", command.url, params=command.params, headers={"Accept": "text/event-stream"}, timeout=timeout
        )
        try:
            response = http.send(request, stream=True)
        except httpx.HTTPError as err:
            return no_answer(err), None
        if response.status_code != 200:
            # The error body can be cut off too (a dropped connection): that is no answer, not an escaped httpx error.
            try:
                response.read()
            except httpx.HTTPError as err:
                return no_answer(err), None
            finally:
                response.close()
            return raw_answer(response, self._secret), None
        return Answer(200, response.headers, b""), _Stream(response)

    def _iterate(self, flow: Flow, result: list[Any] | None = None) -> Generator[Status, None, None]:
        """Execute ``flow``; yields each ``Notify``-ed status; puts the flow's return value in ``result``."""
        stream: _Stream | None = None
        try:
            command: Command = next(flow)
            while True:
                outcome: Any = None
                if isinstance(command, Call):
                    outcome = self._call(command)
                elif isinstance(command, Sleep):
                    self._sleep(command.seconds)
                elif isinstance(command, Notify):
                    yield command.status
                elif isinstance(command, OpenStream):
                    outcome, stream = self._open_stream(command)
                elif isinstance(command, ReadLine):
                    try:
                        outcome = next(stream.lines, None) if stream else None
                    except httpx.HTTPError as err:
                        outcome = no_answer(err)
                elif isinstance(command, CloseStream) and stream is not None:
                    stream.close()
                    stream = None
                command = flow.send(outcome)
        except StopIteration as stop:
            if result is not None:
                result.append(stop.value)
        finally:
            if stream is not None:
                stream.close()
            flow.close()

    def _run(self, flow: Flow, on_update: OnUpdate | None = None) -> Any:
        result: list[Any] = []
        with contextlib.closing(self._iterate(flow, result)) as statuses:
            for status in statuses:
                if on_update is not None:
                    on_update(status)
        return result[0]

    def _cancel_quietly(self, state: HandleState) -> None:
        try:
            self._run(cancel_flow(state, self._settings))
            logger.info("cancelled request %s", state.request_id)
        except KontextError as err:
            logger.warning("could not cancel request %s: %s", state.request_id, err)

    def _download(self, url: str, request_id: str) -> tuple[str | None, bytes]:
        if self._downloader is None:
            args = {k: v for k, v in self._httpx_args.items() if k in ("transport", "proxy")}
            timeout = self._config.timeouts.to_httpx()
            self._downloader = httpx.Client(timeout=timeout, follow_redirects=True, verify=self._verify, **args)
        try:
            response = self._downloader.get(url)
        except httpx.HTTPError as err:
            raise download_failed(url, request_id, err) from err
        return downloaded(response, url, request_id)
