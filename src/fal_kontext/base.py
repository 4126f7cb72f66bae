"""The clients' shared half: the constructor and the verbs, each a few lines that hand a flow of the protocol
(``protocol.verbs``) to the executor.

``Kontext`` and ``AsyncKontext`` subclass ``BaseKontext`` and only execute commands: each verb builds a flow and hands
it to the executor's ``_run_*`` hook, which returns the value (``Kontext``) or an awaitable of it (``AsyncKontext``).
The type parameters say what each kind of verb returns in each client:

=============  ==================  ==============================
parameter      ``Kontext``         ``AsyncKontext``
=============  ==================  ==============================
_HandleT       ``Handle``          ``AsyncHandle``
_Submitted     ``Handle``          ``Awaitable[AsyncHandle]``
_Finished      ``EditResult``      ``Awaitable[EditResult]``
_Saved         ``list[Path]``      ``Awaitable[list[Path]]``
_Uploaded      ``str``             ``Awaitable[str]``
_StatusR       ``Status``          ``Awaitable[Status]``
_CancelR       ``CancelStatus``    ``Awaitable[CancelStatus]``
_StreamR       ``Iterator[Status]`` ``AsyncIterator[Status]``
=============  ==================  ==============================

Every verb checks its arguments inside its flow, before the first command: nothing is sent for a bad input, and
the error is raised where the result is (the call, or the ``await``).
"""

from __future__ import annotations

import abc
import inspect
import random
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Generic, TypeVar

import httpx
from fal_kontext_api.models import CancelStatus
from fal_kontext_api.options import EditVerb, GenerateVerb

from . import config
from .config import DEFAULT_TIMEOUTS, AuthScheme, ClientConfig, Credentials, RequestTimeouts, Secret
from .endpoints import Endpoint, parse_endpoint
from .files import ImageSource
from .log_redaction import redact_records_of
from .option_checks import check_bool, check_positive, refuse
from .protocol import verbs
from .protocol.commands import Flow
from .protocol.images import DEFAULT_MAX_IMAGE_BYTES
from .protocol.inputs import EditInput
from .protocol.polling import LearnedPolling, PollSchedule
from .protocol.queue import HandleState, resume_state
from .protocol.recovery import DEFAULT_RECOVERY, RecoveryPolicy
from .protocol.settings import Settings
from .protocol.storage import DEFAULT_UPLOAD_THRESHOLD, Expiration, check_upload_threshold
from .protocol.verbs import DEFAULT_TIER
from .results import EditResult
from .retry import DEFAULT_RETRY, RetryPolicy
from .status import Status
from .transport import Connections, HttpOptions

__all__ = ["DEFAULT_TIER", "BaseHandle", "BaseKontext", "OnUpdate"]


# Called with each new status; AsyncKontext also awaits what it returns, so a coroutine function works there.
OnUpdate = Callable[[Status], object]

_HttpT = TypeVar("_HttpT", httpx.Client, httpx.AsyncClient)
_HandleT = TypeVar("_HandleT")
_Submitted = TypeVar("_Submitted")
_Finished = TypeVar("_Finished")
_Saved = TypeVar("_Saved")
_Uploaded = TypeVar("_Uploaded")
_StatusR = TypeVar("_StatusR")
_CancelR = TypeVar("_CancelR")
_StreamR = TypeVar("_StreamR")


class BaseKontext(Generic[_HandleT, _Submitted, _Finished, _Saved, _Uploaded, _StatusR, _CancelR, _StreamR], abc.ABC):
    """A client for FLUX.1 Kontext on fal's queue API or an aggregator that re-exposes it.

    Args:
        key: The secret; default from the environment (``FAL_KEY``, or ``FAL_KEY_ID`` + ``FAL_KEY_SECRET``; for
            ``auth="bearer"`` ``FAL_KONTEXT_TOKEN``, and fal's key only for fal's own hosts).
        auth: ``"key"`` (``Authorization: Key``, fal) or ``"bearer"`` (aggregators), or ``Credentials``; default
            ``FAL_KONTEXT_AUTH`` or ``"key"``.
        base_url: Queue base URL; default ``FAL_KONTEXT_BASE_URL`` or ``https://queue.fal.run``.
        timeouts: Per-request connect/read timeouts (default 10 s / 60 s).
        retry: Retry policy (``RetryPolicy.disabled()`` to never retry).
        poll: How status is polled when the status stream is not followed: by default a schedule learned from this
            client's jobs (``LearnedPolling``: sparse while a job cannot be near its end, dense around when the
            endpoint's runs end); a ``PollSchedule`` for a fixed backoff.
        wait_timeout: Default deadline of ``wait``/``run``/``edit`` in seconds (``math.inf`` or None: none).
        start_timeout: Default ``X-Fal-Request-Timeout`` (seconds a request may wait to start).
        stream_status: Follow the status stream while waiting (else poll only).
        max_image_bytes: Largest local image inlined as a data URI.
        transport: An httpx transport for every request (tests: ``httpx.MockTransport``); an
            ``httpx.AsyncBaseTransport`` for ``AsyncKontext``.
        httpx_args: More ``httpx.Client``/``AsyncClient`` arguments. ``headers``, ``cookies``, ``event_hooks``,
            ``follow_redirects`` and ``verify`` merge with the client's own (the Authorization header stays the
            client's); ``timeout`` may replace ``timeouts``; the rest (``proxy``, ``limits``, ``mounts``, ...) go to
            httpx as they are. Downloads of result images use the same settings, without headers or cookies.
        connection_pools: Number of small connection pools jobs are spread over, taken in turn (default 1 for
            ``Kontext``; for ``AsyncKontext`` as many as the load needs, one per flow under way: with hundreds of
            requests in flight, httpx's pool bookkeeping grows with the number of connections in one pool).
        sleep: How to sleep (tests inject a fake); a coroutine function for ``AsyncKontext``.
        clock: Monotonic clock for deadlines (tests inject a fake).
        random_source: Jitter source in [0, 1) (tests inject a constant).
        stream_idle_timeout: A status stream silent this long counts as dropped.
        recovery: How a submit whose answer was lost is recovered (``RecoveryPolicy``; docs/client.md, "When a
            submit's answer is lost"): adopted, looked up in fal's request list, or ``SubmitOutcomeUnknownError``.
        storage_url: Where fal storage is, for ``upload`` and large local inputs: default ``FAL_KONTEXT_STORAGE_URL``,
            else fal's storage when ``base_url`` is fal's queue, the base URL itself when it is on this machine (the
            emulator), else none (aggregators may not proxy it).
        upload_threshold: Local input images larger than this many bytes are uploaded (where storage is known)
            rather than inlined as data URIs; None always inlines. Default 1 MiB.
        upload_expires_in: fal's lifecycle preference for uploads: ``"immediate"``, ``"1h"``, ``"1d"``, ``"7d"``,
            ``"30d"``, ``"1y"``, ``"never"`` or seconds; None keeps fal's default retention.
        sync_url: Base URL of fal's synchronous endpoint for ``run_direct``: default ``FAL_KONTEXT_SYNC_URL``, else
            the spec's (``https://fal.run``) when ``base_url`` is fal's queue, else ``<base_url>/sync``.

    Raises:
        InvalidInputError: a bad option, named (a ``ValueError``); nothing is sent.
    """

    # What sleep=None, connection_pools=None and an unset httpx limits mean in each client.
    _default_sleep: Callable[[float], object] = time.sleep
    _default_pools: int | None = 1
    _default_limits: httpx.Limits | None = None
    _asynchronous = False

    def __init__(  # noqa: PLR0913 - the public constructor: one keyword per option, documented above
        self,
        key: str | None = None,
        *,
        auth: AuthScheme | Credentials | None = None,
        base_url: str | None = None,
        timeouts: RequestTimeouts | None = None,
        retry: RetryPolicy = DEFAULT_RETRY,
        poll: PollSchedule | LearnedPolling | None = None,
        wait_timeout: float | None = 900.0,
        start_timeout: float | None = None,
        stream_status: bool = True,
        max_image_bytes: int = DEFAULT_MAX_IMAGE_BYTES,
        transport: httpx.BaseTransport | httpx.AsyncBaseTransport | None = None,
        httpx_args: Mapping[str, Any] | None = None,
        connection_pools: int | None = None,
        sleep: Callable[[float], object] | None = None,
        clock: Callable[[], float] | None = None,
        random_source: Callable[[], float] | None = None,
        stream_idle_timeout: float = 30.0,
        recovery: RecoveryPolicy = DEFAULT_RECOVERY,
        storage_url: str | None = None,
        upload_threshold: int | None = DEFAULT_UPLOAD_THRESHOLD,
        upload_expires_in: Expiration | None = None,
        sync_url: str | None = None,
    ) -> None:
        key = Secret.of(key)  # from here on, a traceback with locals shows '***'
        if transport is not None and (httpx_args is None or isinstance(httpx_args, Mapping)):
            if httpx_args is not None and "transport" in httpx_args:
                raise refuse("transport", transport, "give either transport= or httpx_args['transport']")
            httpx_args = {**(httpx_args or {}), "transport": transport}
        http = HttpOptions.check(httpx_args, asynchronous=self._asynchronous)
        if timeouts is not None and http.timeout is not None:
            raise refuse("httpx_args['timeout']", http.timeout, "give either timeouts= or httpx_args['timeout']")
        url = config.base_url_of(base_url)
        scheme, credentials = config.credentials_of(key, auth, url)
        timeouts = config.checked("timeouts", timeouts or http.timeout or DEFAULT_TIMEOUTS, RequestTimeouts)
        checked_recovery = config.checked("recovery", recovery, RecoveryPolicy)
        settings = Settings(
            url,
            retry=config.checked("retry", retry, RetryPolicy),
            poll=config.polling_of(poll),
            clock=clock or time.monotonic,
            random=random_source or random.random,
            stream_idle_timeout=check_positive("stream_idle_timeout", stream_idle_timeout),
            recovery=checked_recovery,
            requests_list=config.requests_list_of(url, credentials, checked_recovery),
            wait_timeout=config.wait_timeout_of(wait_timeout),
            start_timeout=config.start_timeout_of(start_timeout),
            stream_status=check_bool("stream_status", stream_status),
            max_image_bytes=config.checked_image_bytes(max_image_bytes),
            upload_threshold=check_upload_threshold(upload_threshold),
            storage=config.storage_of(url, storage_url, upload_expires_in, timeouts),
            sync_url=config.sync_url_of(url, sync_url),
            authorization=config.authorization_of(credentials, scheme, url),
        )
        self._config = ClientConfig(credentials, timeouts, settings)
        self._settings = self._config.settings
        pools = self._default_pools if connection_pools is None else connection_pools
        if pools is not None and (not isinstance(pools, int) or isinstance(pools, bool) or pools < 1):
            raise refuse("connection_pools", connection_pools, "expected a whole number >= 1")
        chosen_sleep = type(self)._default_sleep if sleep is None else sleep
        if not callable(chosen_sleep) or (self._asynchronous and not inspect.iscoroutinefunction(chosen_sleep)):
            kind = "a coroutine function (async def)" if self._asynchronous else "a function"
            raise refuse("sleep", sleep, f"expected {kind} taking seconds")
        self._sleep = chosen_sleep
        secret = self._config.credentials.secret if self._config.credentials else None
        redact_records_of(self, secret)  # httpcore's DEBUG records quote response headers as they came
        self._connections = self._connections_of(self._config, http, pools)

    def __repr__(self) -> str:
        config: ClientConfig | None = getattr(self, "_config", None)  # None while the constructor refuses an option
        if config is None:
            return f"{type(self).__name__}(<not configured>)"
        scheme = config.credentials.scheme if config.credentials else None
        return f"{type(self).__name__}(base_url={config.base_url!r}, auth={scheme!r})"

    @property
    def base_url(self) -> str:
        """The configured queue base URL."""
        return self._config.base_url

    def check_credentials(self) -> None:
        """Check that the client has a key or token to send, as every request that needs one does before it is
        sent (a client is built without one: ``handle(id)`` and ``save()`` send none). No request is made.

        Raises:
            MissingCredentialsError: there is none; the message names the variable to set (an ``InvalidInputError``).
        """
        self._settings.check_credentials()

    # --- the verbs ----------------------------------------------------------------------------------------------

    def submit(  # noqa: PLR0913 - the public verb: the submit options of the API, each a keyword
        self,
        endpoint: Endpoint | str,
        input: Mapping[str, object] | EditInput,
        *,
        webhook_url: str | None = None,
        start_timeout: float | None = None,
        priority: str | None = None,
        runner_hint: str | None = None,
        no_retry: bool = False,
        timeout: float | None = None,
    ) -> _Submitted:
        """Queue a request; returns its handle at once. Never sent twice: retried only if it never left, or once
        fal's request list shows that a submit whose answer was lost queued nothing (``recovery``).

        Args:
            endpoint: An ``Endpoint`` or its id, e.g. ``"fal-ai/flux-pro/kontext/max"``.
            input: The input fields (dict) or a generated ``KontextInput``/``KontextMultiInput``.
            webhook_url: fal POSTs the result here too (verify it with ``fal_kontext.webhooks``).
            start_timeout: Seconds the request may wait to start (``X-Fal-Request-Timeout``).
            priority: ``"normal"`` or ``"low"``.
            runner_hint: Route to a runner that served the same hint.
            no_retry: Ask fal not to retry the request server-side.
            timeout: Seconds the submit may take, a lost answer's lookup included (default: the client's
                ``wait_timeout``); past it, ``SubmitOutcomeUnknownError`` if the job may exist.

        Raises:
            InvalidInputError: the input or an option breaks the spec (nothing sent). SubmitOutcomeUnknownError: the
                answer was lost and the job may exist (``.request_id`` when one arrived). APIError: the submit failed.
        """
        options = {
            "webhook_url": webhook_url,
            "start_timeout": start_timeout,
            "priority": priority,
            "runner_hint": runner_hint,
            "no_retry": no_retry,
        }
        return self._run_handle(verbs.submit(self._settings, endpoint, input, options, timeout=timeout))

    def resubmit(
        self,
        endpoint: Endpoint | str,
        input: Mapping[str, object] | EditInput,
        *,
        sent_at: float,
        timeout: float | None = None,
        **options: Any,
    ) -> _Submitted:
        """``submit`` for a request that may already have been sent once and whose answer never arrived, e.g. by a
        process killed mid-submit: fal's request list is asked first (``recovery``), the job is adopted when it is
        listed, and it is submitted only when the list shows it was not queued. Never queued twice.

        Args:
            endpoint: As ``submit``'s.
            input: The input as it was sent then (the list is searched for it).
            sent_at: Unix time (``time.time()``) taken before the earlier send.
            timeout: As ``submit``'s.
            **options: ``submit``'s keywords.

        Raises:
            InvalidInputError: the input, ``sent_at`` or an option is invalid (nothing sent). SubmitOutcomeUnknownError:
                the list cannot tell (there is none, as behind an aggregator, or looking up is off or failing);
                nothing was sent. Everything ``submit`` raises.
        """
        flow = verbs.resubmit(self._settings, endpoint, input, options, sent_at=sent_at, timeout=timeout)
        return self._run_handle(flow)

    def handle(self, request_id: str, *, endpoint: Endpoint | str | None = None) -> _HandleT:
        """The handle of an existing request, e.g. after a restart. No request is made.

        Raises:
            ValueError: empty request id. InvalidInputError: unknown endpoint.
        """
        chosen = parse_endpoint(endpoint) if endpoint is not None else None
        return self._handle(resume_state(request_id, self._settings, chosen))

    def run(
        self,
        endpoint: Endpoint | str,
        input: Mapping[str, object] | EditInput,
        *,
        timeout: float | None = None,
        on_update: OnUpdate | None = None,
        logs: bool = True,
        **submit_options: Any,
    ) -> _Finished:
        """``submit`` then ``wait``: the result, or a typed error. See both for arguments and errors (every
        argument is checked before the submit)."""
        waiting = verbs.WaitArguments(logs=logs, report=on_update is not None)
        flow = verbs.run(self._settings, endpoint, input, submit_options, timeout=timeout, waiting=waiting)
        return self._run_result(flow, on_update)

    def _edit(
        self,
        prompt: str,
        *,
        image: ImageSource | None = None,
        images: Sequence[ImageSource] | None = None,
        **arguments: Any,
    ) -> _Finished:
        """Edit one image (``image=``) or combine several (``images=[...]``) and wait for the result.

        Images may be URLs, data URIs, local paths, bytes or PIL images. Local images up to ``upload_threshold``
        are sent inline as data URIs; larger ones are uploaded to fal storage first (where the client knows it, see
        ``storage_url``), after every input check, and their URL sent.
        The options are typed from the spec per tier (``fal_kontext_api.options.EditVerb``), so an editor completes
        them and a type checker refuses a value, or a field, the chosen tier's endpoint does not allow; they are
        checked again at run time.

        Args:
            prompt: What to change.
            image: One input image (the tier's ``edit`` endpoint).
            images: Several input images (the tier's ``multi-edit`` endpoint).
            model: A tier of the spec (``fal_kontext_api.options.Tier``: ``"pro"``, ``"max"``, ...).
            timeout: Wait deadline (see ``Handle.wait``).
            on_update: Called with each new status.
            webhook_url: See ``submit``. start_timeout: See ``submit``. priority: See ``submit``.
            **options: The endpoint's optional input fields (``aspect_ratio``, ``seed``, ``num_images``, ...).

        Raises:
            InvalidInputError: nothing sent. Everything ``upload`` and ``Handle.wait`` raise.
        """
        call = verbs.prompted(arguments)
        return self._run_result(
            verbs.edit(self._settings, prompt, image=image, images=images, call=call), arguments.get("on_update")
        )

    def _generate(self, prompt: str, **arguments: Any) -> _Finished:
        """Make images from a prompt alone (the tier's ``text-to-image`` endpoint) and wait for the result.

        The options are typed per tier (``fal_kontext_api.options.GenerateVerb``) and checked again at run time.

        Args:
            prompt: What to show.
            model: A tier of the spec that has a text-to-image endpoint.
            timeout: Wait deadline (see ``Handle.wait``).
            on_update: Called with each new status.
            webhook_url: See ``submit``. start_timeout: See ``submit``. priority: See ``submit``.
            **options: The endpoint's optional input fields (``aspect_ratio``, ``seed``, ``num_images``, ...).

        Raises:
            InvalidInputError: nothing sent (also when the tier has no text-to-image endpoint). Everything
                ``Handle.wait`` raises.
        """
        return self._run_result(
            verbs.generate(self._settings, prompt, verbs.prompted(arguments)), arguments.get("on_update")
        )

    # The verbs a type checker sees typed per tier by the spec's generated Protocols (one overload per tier, with
    # that tier's endpoint's options); at run time they are the implementations above.
    if TYPE_CHECKING:

        @property
        def edit(self) -> EditVerb[ImageSource, OnUpdate, _Finished]:
            """See ``_edit``."""

        @property
        def generate(self) -> GenerateVerb[OnUpdate, _Finished]:
            """See ``_generate``."""
    else:
        # help() shows the Protocol's overloads, its type parameters as the client's types (signatures.py).
        _edit.__typed_by__ = (EditVerb, {"_Image": "ImageSource", "_OnUpdate": "OnUpdate", "_Result": "_Finished"})
        _generate.__typed_by__ = (GenerateVerb, {"_OnUpdate": "OnUpdate", "_Result": "_Finished"})
        edit = _edit
        generate = _generate

    def upload(
        self,
        source: ImageSource,
        *,
        file_name: str | None = None,
        content_type: str | None = None,
        timeout: float | None = None,
    ) -> _Uploaded:
        """Upload a local file to fal storage; returns its URL, usable as an image input.

        Follows fal's storage protocol (a token, then one upload, or parts above 100 MB); see ``docs/client.md``.

        Args:
            source: A local path, bytes or a PIL image (any file; images get their type from their first bytes).
            file_name: The name to store it under (default: the file's own name, else ``image.<ext>``).
            content_type: Its MIME type (default: sniffed for images, else guessed from the name).
            timeout: Seconds the upload may take (default: the client's ``wait_timeout``).

        Raises:
            InvalidInputError: no storage is configured (pass ``storage_url=``), or the source is missing or empty.
            AuthenticationError: the key was refused. NotFoundError: the storage URL offers no fal storage.
            APIError: an upload request failed after retries.
        """
        flow = verbs.upload(self._settings, source, file_name=file_name, content_type=content_type, timeout=timeout)
        return self._run_upload(flow)

    def run_direct(
        self,
        endpoint: Endpoint | str,
        input: Mapping[str, object] | EditInput,
        *,
        timeout: float | None = None,
        start_timeout: float | None = None,
        runner_hint: str | None = None,
    ) -> _Finished:
        """Run through fal's synchronous endpoint (``fal.run``): one request answered with the result, no queue.

        For short runs in interactive code. The connection is held for the whole run and the request is never sent
        again once it may have run: if the connection is lost the result is lost, and fal still charges the run.
        Use ``run``/``edit`` (the queue) for long runs, anything you cannot afford to lose, status updates,
        webhooks or cancelling.

        Args:
            endpoint: An ``Endpoint`` or its id.
            input: The input fields (dict) or a generated input model (checked against the spec first).
            timeout: Seconds the connection is held for the output (default: the client's ``wait_timeout``;
                ``math.inf`` for none).
            start_timeout: Seconds the request may wait to start (``X-Fal-Request-Timeout``).
            runner_hint: Route to a runner that served the same hint.

        Raises:
            InvalidInputError: nothing sent. DirectUnavailableError: the server has no synchronous endpoint (use the
            queue). APITimeoutError: no output within ``timeout`` (the run may still finish and be charged).
            ValidationError / ContentPolicyError / ServerError ...: the run failed, as with the queue.
        """
        flow = verbs.run_direct(
            self._settings, endpoint, input, timeout=timeout, start_timeout=start_timeout, runner_hint=runner_hint
        )
        return self._run_result(flow)

    def save(self, result: EditResult, directory: str | Path, *, timeout: float | None = None) -> _Saved:
        """Write every image of ``result`` into ``directory`` as ``<request_id>-<n>.<ext>``, atomically.

        URLs are downloaded (without credentials); data URIs are decoded. fal's result URLs expire: save soon.
        ``timeout`` bounds the downloads (default: the client's ``wait_timeout``).

        Returns:
            The paths written, in image order.

        Raises:
            NotFoundError: an image URL is gone (expired). APIError: a download failed. OSError: writing failed.
        """
        return self._run_paths(verbs.save(self._settings, result, directory, timeout=timeout))

    # --- what each executor provides ------------------------------------------------------------------------------

    @abc.abstractmethod
    def _connections_of(self, config: ClientConfig, http: HttpOptions, pools: int | None) -> Connections[Any]:
        """The executor's httpx clients (``transport.Connections``, sync or async)."""

    @abc.abstractmethod
    def _handle(self, state: HandleState) -> _HandleT:
        """The handle of a request (its connection pool chosen here)."""

    @abc.abstractmethod
    def _run_handle(self, flow: Flow[HandleState]) -> _Submitted:
        """Run a flow that returns a request's state; its handle is the value."""

    @abc.abstractmethod
    def _run_result(
        self, flow: Flow[EditResult], on_update: OnUpdate | None = None, pool: int | None = None
    ) -> _Finished:
        """Run a flow that returns a result (on ``pool``, else the next one)."""

    @abc.abstractmethod
    def _run_paths(self, flow: Flow[list[Any]]) -> _Saved:
        """Run a flow that returns written paths."""

    @abc.abstractmethod
    def _run_upload(self, flow: Flow[str]) -> _Uploaded:
        """Run a flow that returns an uploaded file's URL."""

    @abc.abstractmethod
    def _run_status(self, flow: Flow[Status], pool: int) -> _StatusR:
        """Run a flow that returns a status."""

    @abc.abstractmethod
    def _run_cancel(self, flow: Flow[CancelStatus], pool: int) -> _CancelR:
        """Run a flow that returns a cancel status."""

    @abc.abstractmethod
    def _statuses(self, flow: Flow[object], pool: int) -> _StreamR:
        """Run a flow, iterating over the statuses it reports."""


class BaseHandle(Generic[_Finished, _StatusR, _CancelR, _StreamR]):
    """A queued request: ask its status, follow it, wait for it, fetch its result or cancel it.

    Get one from ``submit`` or, after a restart, ``handle(request_id)``. The verbs return values with ``Kontext``
    and awaitables with ``AsyncKontext`` (``stream`` an async iterator).
    """

    def __init__(
        self,
        kontext: BaseKontext[Any, Any, _Finished, Any, Any, _StatusR, _CancelR, _StreamR],
        state: HandleState,
        pool: int = 0,
    ) -> None:
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
        return f"{type(self).__name__}(request_id={self.request_id!r}, endpoint={endpoint!r})"

    def status(self, *, logs: bool = False, timeout: float | None = None) -> _StatusR:
        """The current status (one request, retried per the policy).

        Args:
            logs: Ask for the logs (all lines so far).
            timeout: Seconds it may take, retries included (default: the client's ``wait_timeout``).

        Raises:
            NotFoundError: unknown request id. APIError: other failures.
        """
        flow = verbs.status(self._kontext._settings, self._state, logs=logs, timeout=timeout)
        return self._kontext._run_status(flow, self._pool)

    def stream(self, *, logs: bool = True) -> _StreamR:
        """Status changes from the status stream (SSE), up to and including ``Completed``.

        Each status carries the log lines new since the previous one. Ends early (without ``Completed``) if the
        stream drops; ``wait()`` falls back to polling in that case, this iterator does not.

        Raises:
            AuthenticationError: the stream refused the credentials.
        """
        return self._kontext._statuses(verbs.stream(self._kontext._settings, self._state, logs=logs), self._pool)

    def wait(  # noqa: PLR0913 - the public verb: one keyword per way to wait
        self,
        *,
        timeout: float | None = None,
        on_update: OnUpdate | None = None,
        logs: bool = True,
        stream: bool | None = None,
        cancel_on_timeout: bool = True,
        cancel_on_interrupt: bool = True,
    ) -> _Finished:
        """Wait until the request completes and return its result.

        Follows the status stream (falling back to adaptive polling), and fetches the result as soon as COMPLETED.

        Args:
            timeout: Seconds to wait (default: the client's ``wait_timeout``; ``math.inf`` for no deadline).
            on_update: Called with each new status (queue position, new log lines); with ``AsyncKontext`` it may
                be a coroutine function.
            logs: Ask the server for logs.
            stream: Use the status stream (default: the client's ``stream_status``); False polls only.
            cancel_on_timeout: Cancel the request on the server when the deadline passes.
            cancel_on_interrupt: Cancel the request on the server on Ctrl-C (KeyboardInterrupt) or, with
                ``AsyncKontext``, when the waiting task is cancelled.

        Raises:
            WaitTimeoutError: the deadline passed (the request was cancelled unless told not to).
            RequestFailedError: COMPLETED with an error. RequestCancelledError: cancelled.
            ValidationError / ContentPolicyError: the result is a 422. APIError: a call failed after retries.
        """
        waiting = verbs.WaitArguments(
            logs, stream, cancel_on_timeout, cancel_on_interrupt, report=on_update is not None
        )
        flow = verbs.wait(self._kontext._settings, self._state, timeout=timeout, waiting=waiting)
        return self._kontext._run_result(flow, on_update, self._pool)

    def result(self, *, timeout: float | None = None) -> _Finished:
        """The result of a completed request (does not wait). ``timeout``: as ``status``'s.

        Raises:
            ResultNotReadyError: not completed yet (call ``wait()``). NotFoundError: unknown or expired.
            ValidationError / ContentPolicyError: the request failed validation. APIError: other failures.
        """
        flow = verbs.result(self._kontext._settings, self._state, timeout=timeout)
        return self._kontext._run_result(flow, pool=self._pool)

    def cancel(self, *, timeout: float | None = None) -> _CancelR:
        """Ask the server to cancel the request. ``timeout``: as ``status``'s.

        Returns:
            ``CANCELLATION_REQUESTED`` (or ``OK``), or ``ALREADY_COMPLETED``.

        Raises:
            NotFoundError: unknown request id. APIError: other failures.
        """
        flow = verbs.cancel(self._kontext._settings, self._state, timeout=timeout)
        return self._kontext._run_cancel(flow, self._pool)
