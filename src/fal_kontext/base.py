"""One client core: configuration, the generated-client factory, every verb's flow and the handles, written once.

``Kontext`` and ``AsyncKontext`` subclass ``BaseKontext`` and only execute commands (``commands``), sleep and
close: each verb here builds a flow (``flows``) and hands it to the executor's ``_run_*`` hook, which returns the
value (``Kontext``) or an awaitable of it (``AsyncKontext``). The type parameters say what each kind of verb returns
in each client:

=============  ==================  ==============================
parameter      ``Kontext``         ``AsyncKontext``
=============  ==================  ==============================
_HttpT         ``httpx.Client``    ``httpx.AsyncClient``
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
import functools
import inspect
import itertools
import math
import ssl
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import fields, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Generic, TypeVar

import httpx
from fal_kontext_api.client import AuthenticatedClient, Client
from fal_kontext_api.models import CancelStatus
from fal_kontext_api.options import EditVerb, GenerateVerb

from .commands import Answer, Call, Download, Flow, HttpGet, NoAnswer, OpenStream, Send, no_answer
from .config import (
    DEFAULT_POLL,
    DEFAULT_RETRY,
    AuthScheme,
    ClientConfig,
    Credentials,
    HttpOptions,
    PollSchedule,
    RequestTimeouts,
    Secret,
    refuse,
)
from .direct import DirectCall, direct_base_url, direct_flow
from .endpoints import Endpoint, parse_endpoint
from .errors import FieldProblem, InvalidInputError
from .files import DEFAULT_MAX_IMAGE_BYTES, ImageSource, read_local
from .flows import (
    HandleState,
    SubmitOptions,
    WaitOptions,
    cancel_flow,
    cancelling_on_interrupt,
    resubmit_flow,
    result_flow,
    resume_state,
    save_flow,
    status_flow,
    stream_flow,
    submit_flow,
    wait_flow,
)
from .inputs import EditInput, check_input, check_submit_options, edit_fields, input_model, text_to_image_fields
from .log_redaction import redact_records_of
from .recovery import DEFAULT_RECOVERY, RecoveryPolicy, may_send_key
from .results import EditResult
from .retry import RetryPolicy
from .spec import credentials_required, generated_model, output_schemas
from .status import Status
from .storage import (
    DEFAULT_UPLOAD_THRESHOLD,
    Expiration,
    PendingUpload,
    StorageSettings,
    StorageToken,
    check_upload_threshold,
    client_storage,
    prepare_image,
    upload_flow,
    upload_pending_flow,
)

__all__ = ["DEFAULT_TIER", "BaseHandle", "BaseKontext", "OnUpdate"]

# The tier ``model=`` means when not given (scripts/typed_options.py's DEFAULT_TIER types the same).
DEFAULT_TIER = "pro"

# Called with each new status; AsyncKontext also awaits what it returns, so a coroutine function works there.
OnUpdate = Callable[[Status], object]
# What a generated ``parse_response`` becomes once bound to its generated client.
Parser = Callable[[httpx.Response], object]

_HttpT = TypeVar("_HttpT", httpx.Client, httpx.AsyncClient)
_HandleT = TypeVar("_HandleT")
_Submitted = TypeVar("_Submitted")
_Finished = TypeVar("_Finished")
_Saved = TypeVar("_Saved")
_Uploaded = TypeVar("_Uploaded")
_StatusR = TypeVar("_StatusR")
_CancelR = TypeVar("_CancelR")
_StreamR = TypeVar("_StreamR")

# Response headers that describe the body as sent; dropped when a redacted copy of the body is parsed.
_BODY_HEADERS = ("content-encoding", "content-length", "transfer-encoding")
_SUBMIT_OPTION_NAMES = frozenset(item.name for item in fields(SubmitOptions))


class BaseKontext(
    Generic[_HttpT, _HandleT, _Submitted, _Finished, _Saved, _Uploaded, _StatusR, _CancelR, _StreamR], abc.ABC
):
    """A client for FLUX.1 Kontext on fal's queue API or an aggregator that re-exposes it.

    Args:
        key: The secret; default from the environment (``FAL_KEY``, or ``FAL_KEY_ID`` + ``FAL_KEY_SECRET``; for
            ``auth="bearer"`` ``FAL_KONTEXT_TOKEN``, and fal's key only for fal's own hosts).
        auth: ``"key"`` (``Authorization: Key``, fal) or ``"bearer"`` (aggregators), or ``Credentials``; default
            ``FAL_KONTEXT_AUTH`` or ``"key"``.
        base_url: Queue base URL; default ``FAL_KONTEXT_BASE_URL`` or ``https://queue.fal.run``.
        timeouts: Per-request connect/read timeouts (default 10 s / 60 s).
        retry: Retry policy (``RetryPolicy.disabled()`` to never retry).
        poll: Polling schedule used when the status stream is unavailable.
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
        connection_pools: Number of small connection pools requests are spread over (default 1 for ``Kontext``,
            64 for ``AsyncKontext``: with hundreds of requests in flight, httpx's pool bookkeeping grows with the
            number of connections in one pool).
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
    _default_pools = 1
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
        poll: PollSchedule = DEFAULT_POLL,
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
            http=http,
            recovery=recovery,
        )
        check_submit_options(start_timeout=self._config.start_timeout, priority=None)
        pools = self._default_pools if connection_pools is None else connection_pools
        if not isinstance(pools, int) or isinstance(pools, bool) or pools < 1:
            raise refuse("connection_pools", connection_pools, "expected a whole number >= 1")
        chosen_sleep = type(self)._default_sleep if sleep is None else sleep
        if not callable(chosen_sleep) or (self._asynchronous and not inspect.iscoroutinefunction(chosen_sleep)):
            kind = "a coroutine function (async def)" if self._asynchronous else "a function"
            raise refuse("sleep", sleep, f"expected {kind} taking seconds")
        self._sleep = chosen_sleep
        self._settings = self._config.settings()
        self._secret = self._config.credentials.secret if self._config.credentials else None
        # A key is sent in a header, so it is ASCII: its bytes are what an echo of it would hold.
        self._secret_bytes = self._secret.encode() if self._secret else b""
        redact_records_of(self, self._secret)  # httpcore's DEBUG records quote response headers as they came
        self._pools = pools
        self._pool_counter = itertools.count()
        self._connections: dict[tuple[str, int], tuple[AuthenticatedClient | Client, _HttpT]] = {}
        self._downloader: _HttpT | None = None
        self._storage: StorageSettings | None = client_storage(
            self._config.base_url,
            storage_url,
            expires_in=upload_expires_in,
            read_timeout=self._config.timeouts.read,
            retry=self._config.retry,
            random=self._config.random,
        )
        self._upload_threshold = check_upload_threshold(upload_threshold)
        self._storage_token: StorageToken | None = None
        self._direct_base_url = direct_base_url(self._config.base_url, sync_url)

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
        if credentials_required():
            self._config.require_credentials()

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
        pool = self._next_pool()
        return self._run_handle(self._submitting(endpoint, input, pool, options), pool)

    def resubmit(
        self, endpoint: Endpoint | str, input: Mapping[str, object] | EditInput, *, sent_at: float, **options: Any
    ) -> _Submitted:
        """``submit`` for a request that may already have been sent once and whose answer never arrived, e.g. by a
        process killed mid-submit: fal's request list is asked first (``recovery``), the job is adopted when it is
        listed, and it is submitted only when the list shows it was not queued. Never queued twice.

        Args:
            endpoint: As ``submit``'s.
            input: The input as it was sent then (the list is searched for it).
            sent_at: Unix time (``time.time()``) taken before the earlier send.
            **options: ``submit``'s keywords.

        Raises:
            InvalidInputError: the input, ``sent_at`` or an option is invalid (nothing sent). SubmitOutcomeUnknownError:
                the list cannot tell (there is none, as behind an aggregator, or looking up is off or failing);
                nothing was sent. Everything ``submit`` raises.
        """
        if isinstance(sent_at, bool) or not isinstance(sent_at, (int, float)) or not math.isfinite(sent_at):
            problem = "must be the Unix time (time.time()) taken before the earlier send"
            raise InvalidInputError([FieldProblem("sent_at", sent_at, problem)])
        pool = self._next_pool()
        return self._run_handle(self._submitting(endpoint, input, pool, options, sent_at=float(sent_at)), pool)

    def handle(self, request_id: str, *, endpoint: Endpoint | str | None = None) -> _HandleT:
        """The handle of an existing request, e.g. after a restart. No request is made.

        Raises:
            ValueError: empty request id. InvalidInputError: unknown endpoint.
        """
        chosen = parse_endpoint(endpoint) if endpoint is not None else None
        return self._handle(resume_state(request_id, self._settings, chosen), self._next_pool())

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
        wait = WaitOptions(None, logs=logs, report=on_update is not None)
        flow = self._running(endpoint, input, timeout, wait, submit_options)
        return self._run_result(flow, self._next_pool(), on_update)

    def _edit(  # noqa: PLR0913 - the edit options of the API, each a keyword
        self,
        prompt: str,
        *,
        image: ImageSource | None = None,
        images: Sequence[ImageSource] | None = None,
        model: str = DEFAULT_TIER,
        timeout: float | None = None,
        on_update: OnUpdate | None = None,
        webhook_url: str | None = None,
        start_timeout: float | None = None,
        priority: str | None = None,
        **options: Any,
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
        edit_input = {"image": image, "images": images, "model": model, **options}
        submit_options = {"webhook_url": webhook_url, "start_timeout": start_timeout, "priority": priority}
        wait = WaitOptions(self._config.wait_deadline(timeout), report=on_update is not None)  # checked first
        flow = self._editing(prompt, edit_input, wait, submit_options)
        return self._run_result(flow, self._next_pool(), on_update)

    def _generate(  # noqa: PLR0913 - the options of the API, each a keyword
        self,
        prompt: str,
        *,
        model: str = DEFAULT_TIER,
        timeout: float | None = None,
        on_update: OnUpdate | None = None,
        webhook_url: str | None = None,
        start_timeout: float | None = None,
        priority: str | None = None,
        **options: Any,
    ) -> _Finished:
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
        submit_options = {"webhook_url": webhook_url, "start_timeout": start_timeout, "priority": priority}
        wait = WaitOptions(self._config.wait_deadline(timeout), report=on_update is not None)  # checked first
        flow = self._generating(prompt, model, dict(options), wait, submit_options)
        return self._run_result(flow, self._next_pool(), on_update)

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
        self, source: ImageSource, *, file_name: str | None = None, content_type: str | None = None
    ) -> _Uploaded:
        """Upload a local file to fal storage; returns its URL, usable as an image input.

        Follows fal's storage protocol (a token, then one upload, or parts above 100 MB); see ``docs/client.md``.

        Args:
            source: A local path, bytes or a PIL image (any file; images get their type from their first bytes).
            file_name: The name to store it under (default: the file's own name, else ``image.<ext>``).
            content_type: Its MIME type (default: sniffed for images, else guessed from the name).

        Raises:
            InvalidInputError: no storage is configured (pass ``storage_url=``), or the source is missing or empty.
            AuthenticationError: the key was refused. NotFoundError: the storage URL offers no fal storage.
            APIError: an upload request failed after retries.
        """
        return self._run_upload(self._uploading(source, file_name, content_type))

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
        flow = self._directly(endpoint, input, timeout, start_timeout, runner_hint)
        return self._run_result(flow, self._next_pool())

    def save(self, result: EditResult, directory: str | Path) -> _Saved:
        """Write every image of ``result`` into ``directory`` as ``<request_id>-<n>.<ext>``, atomically.

        URLs are downloaded (without credentials); data URIs are decoded. fal's result URLs expire: save soon.

        Returns:
            The paths written, in image order.

        Raises:
            NotFoundError: an image URL is gone (expired). APIError: a download failed. OSError: writing failed.
        """
        return self._run_paths(save_flow(result, directory))

    # --- flows of the verbs (arguments are checked when the flow starts) ------------------------------------------

    def _submitting(
        self,
        endpoint: Endpoint | str,
        input: Mapping[str, object] | EditInput,
        pool: int,
        options: Mapping[str, Any],
        *,
        sent_at: float | None = None,
    ) -> Flow[_HandleT]:
        """The submit flow; with ``sent_at``, the resubmit flow (an earlier send at that time may have queued it)."""
        self.check_credentials()  # a resubmit's first request is the request list's, which needs the key too
        chosen = parse_endpoint(endpoint)
        body = input_model(chosen, check_input(chosen, input))
        submit = self._submit_options(options)
        if sent_at is None:
            state = yield from submit_flow(chosen, body, submit, self._settings)
        else:
            state = yield from resubmit_flow(chosen, body, submit, sent_at, self._settings)
        return self._handle(state, pool)

    def _authorization(self) -> str:
        """The Authorization value for fal storage and the synchronous endpoint, which need the key."""
        return self._config.require_credentials().authorization

    def _uploading(self, source: ImageSource, file_name: str | None, content_type: str | None) -> Flow[str]:
        storage = self._storage
        if storage is None:
            raise InvalidInputError(
                [
                    FieldProblem(
                        "storage_url",
                        None,
                        f"no fal storage is known for {self._config.base_url} (an aggregator may not proxy it); pass "
                        "storage_url= (or set FAL_KONTEXT_STORAGE_URL), or send the file as a public URL or data URI",
                    )
                ]
            )
        file = read_local(source, field="source", images_only=False)
        file = replace(file, file_name=file_name or file.file_name, content_type=content_type or file.content_type)
        uploaded = yield from upload_flow(file, storage, authorization=self._authorization(), token=self._storage_token)
        self._storage_token = uploaded.token
        return uploaded.url

    def _prepared_images(self, edit_input: Mapping[str, Any]) -> tuple[dict[str, Any], list[PendingUpload]]:
        """``image``/``images`` with local files read: inlined as data URIs, or a stand-in URL for each to upload."""
        pending: list[PendingUpload] = []

        def prepared(source: ImageSource, field: str) -> str:
            value = prepare_image(
                source,
                field=field,
                storage_available=self._storage is not None,
                upload_threshold=self._upload_threshold,
                max_image_bytes=self._config.max_image_bytes,
            )
            if isinstance(value, PendingUpload):
                pending.append(value)
                return value.stand_in
            return value

        images: dict[str, Any] = {}
        if edit_input.get("image") is not None:
            images["image"] = prepared(edit_input["image"], "image_url")
        many = edit_input.get("images")
        if isinstance(many, Sequence) and not isinstance(many, (str, bytes)):
            images["images"] = [prepared(source, f"image_urls[{index}]") for index, source in enumerate(many)]
        return images, pending

    def _uploaded(self, endpoint: Endpoint, fields: dict[str, Any], pending: list[PendingUpload]) -> Flow[EditInput]:
        """The input model of checked ``fields``, each pending image uploaded and its URL in place of its stand-in."""
        if not pending:
            return input_model(endpoint, fields)
        assert self._storage is not None  # only prepared when storage is known
        fields, self._storage_token = yield from upload_pending_flow(
            fields, pending, self._storage, authorization=self._authorization(), token=self._storage_token
        )
        return input_model(endpoint, fields)

    def _directly(
        self,
        endpoint: Endpoint | str,
        input: Mapping[str, object] | EditInput,
        timeout: float | None,
        start_timeout: float | None,
        runner_hint: str | None,
    ) -> Flow[EditResult]:
        run_timeout = self._config.wait_deadline(timeout)
        chosen = parse_endpoint(endpoint)
        body = check_input(chosen, input)
        options = self._submit_options({"start_timeout": start_timeout, "runner_hint": runner_hint})
        self.check_credentials()
        credentials = self._config.credentials
        call = DirectCall(
            self._direct_base_url,
            chosen.value,
            body,
            authorization=credentials.authorization if credentials else None,
            run_timeout=run_timeout,
            start_timeout=options.start_timeout,
            runner_hint=options.runner_hint,
        )
        model = generated_model(chosen.spec.output_schema or output_schemas()[0])
        answer = yield from direct_flow(
            call.request(), model.from_dict, retry=self._config.retry, random=self._config.random
        )
        return EditResult(answer.request_id or "", answer.output)

    def _submit_options(self, options: Mapping[str, Any]) -> SubmitOptions:
        """Checked submit options (``submit``'s keywords; ``start_timeout`` defaults to the client's).

        Raises:
            TypeError: an unknown option. InvalidInputError: an option breaks the spec.
        """
        unknown = sorted(set(options) - _SUBMIT_OPTION_NAMES)
        if unknown:
            raise TypeError(f"unexpected submit option(s): {', '.join(unknown)}")
        start = options.get("start_timeout")
        start = start if start is not None else self._config.start_timeout
        webhook_url, runner_hint = options.get("webhook_url"), options.get("runner_hint")
        no_retry = options.get("no_retry", False)
        priority = check_submit_options(
            start_timeout=start,
            priority=options.get("priority"),
            webhook_url=webhook_url,
            runner_hint=runner_hint,
            no_retry=no_retry,
        )
        return SubmitOptions(webhook_url, start, priority, runner_hint, no_retry)

    def _waiting(
        self, state: HandleState, timeout: float | None, options: WaitOptions, *, cancel_on_interrupt: bool = True
    ) -> Flow[EditResult]:
        """Wait for ``state``'s request: ``timeout`` as given to ``wait`` (checked here), ``options`` without it."""
        deadline = self._config.wait_deadline(timeout)
        return (yield from self._waiting_checked(state, replace(options, timeout=deadline), cancel_on_interrupt))

    def _waiting_checked(self, state: HandleState, options: WaitOptions, cancel_on_interrupt: bool) -> Flow[EditResult]:
        flow = wait_flow(state, self._settings, options)
        if cancel_on_interrupt:
            flow = cancelling_on_interrupt(flow, state, self._settings)
        return (yield from flow)

    def _running(
        self,
        endpoint: Endpoint | str,
        input: Mapping[str, object] | EditInput,
        timeout: float | None,
        wait: WaitOptions,
        submit_options: Mapping[str, Any],
    ) -> Flow[EditResult]:
        wait = replace(wait, timeout=self._config.wait_deadline(timeout))  # checked before the paid submit
        chosen = parse_endpoint(endpoint)
        body = input_model(chosen, check_input(chosen, input))
        options = self._submit_options(submit_options)
        state = yield from submit_flow(chosen, body, options, self._settings)
        return (yield from self._waiting_checked(state, self._stream_default(wait), cancel_on_interrupt=True))

    def _editing(
        self, prompt: str, edit_input: Mapping[str, Any], wait: WaitOptions, submit_options: Mapping[str, Any]
    ) -> Flow[EditResult]:
        options = self._submit_options(submit_options)
        images, pending = self._prepared_images(edit_input)
        endpoint, fields = edit_fields(prompt, max_image_bytes=self._config.max_image_bytes, **{**edit_input, **images})
        # After every check: nothing is uploaded for a bad input.
        body = yield from self._uploaded(endpoint, fields, pending)
        state = yield from submit_flow(endpoint, body, options, self._settings)
        return (yield from self._waiting_checked(state, self._stream_default(wait), cancel_on_interrupt=True))

    def _generating(
        self,
        prompt: str,
        model: str,
        options: Mapping[str, object],
        wait: WaitOptions,
        submit_options: Mapping[str, Any],
    ) -> Flow[EditResult]:
        checked = self._submit_options(submit_options)
        endpoint, fields = text_to_image_fields(prompt, model=model, **options)
        state = yield from submit_flow(endpoint, input_model(endpoint, fields), checked, self._settings)
        return (yield from self._waiting_checked(state, self._stream_default(wait), cancel_on_interrupt=True))

    def _stream_default(self, options: WaitOptions, stream: bool | None = None) -> WaitOptions:
        """``options`` following the status stream as asked, else as the client's ``stream_status`` says."""
        return replace(options, use_stream=self._config.stream_status if stream is None else stream)

    def _next_pool(self) -> int:
        return next(self._pool_counter) % self._pools

    # --- HTTP, shared by both executors ----------------------------------------------------------------------------

    @functools.cached_property
    def _verify(self) -> ssl.SSLContext | bool:
        """One TLS context for every connection and download: building one per httpx client costs milliseconds."""
        verify = self._config.http.verify
        if isinstance(verify, ssl.SSLContext) or verify is False:
            return verify
        trust_env = bool(self._config.http.extra.get("trust_env", True))
        return httpx.create_ssl_context(verify=verify, trust_env=trust_env)

    def _httpx_args(self) -> dict[str, Any]:
        args = dict(self._config.http.extra)
        if self._config.http.event_hooks:
            args["event_hooks"] = {kind: list(hooks) for kind, hooks in self._config.http.event_hooks.items()}
        if self._default_limits is not None:
            args.setdefault("limits", self._default_limits)
        return args

    def _generated_client(self, base_url: str) -> AuthenticatedClient | Client:
        """The generated client for ``base_url``: it builds the httpx client (credentials, headers, timeouts, TLS)
        and is what the generated ``parse_response`` takes."""
        config = self._config
        common: dict[str, Any] = {
            "base_url": base_url,
            "headers": config.headers(),
            "cookies": dict(config.http.cookies),
            "timeout": config.timeouts.to_httpx(),
            "verify_ssl": self._verify,
            "follow_redirects": config.http.follow_redirects,
            "httpx_args": self._httpx_args(),
        }
        if config.credentials is None:
            return Client(**common)
        return AuthenticatedClient(token=config.credentials.secret, prefix=config.credentials.prefix, **common)

    def _connection(self, base_url: str, pool: int) -> tuple[AuthenticatedClient | Client, _HttpT]:
        key = (base_url, pool)
        found = self._connections.get(key)
        if found is None:
            generated = self._generated_client(base_url)
            found = self._connections[key] = (generated, self._open(generated))
        return found

    def _download_client(self) -> _HttpT:
        if self._downloader is None:
            args = self._httpx_args()
            args.update(timeout=self._config.timeouts.to_httpx(), follow_redirects=True, verify=self._verify)
            self._downloader = self._new_client(args)
        return self._downloader

    def _prepare(
        self, command: Call | Download | HttpGet | Send | OpenStream, pool: int
    ) -> tuple[_HttpT, httpx.Request, Parser | None]:
        """The client to send ``command`` with, its request, and how to parse the answer."""
        if isinstance(command, Send):
            # The download client: no credentials or headers of its own; the command carries what it sends.
            http = self._download_client()
            user_agent = {k: v for k, v in self._config.headers().items() if k.lower() == "user-agent"}
            timeout = httpx.Timeout(command.read_timeout, connect=self._config.timeouts.connect)
            headers = {**user_agent, **command.headers}
            request = http.build_request(
                command.method, command.url, headers=headers, content=command.content, timeout=timeout
            )
            return http, request, None
        if isinstance(command, Download):
            http = self._download_client()
            return http, http.build_request("GET", command.url), None
        if isinstance(command, HttpGet):
            return self._lookup_request(command)
        if self._config.credentials is None:
            self.check_credentials()  # before the first queue request, never after sending one
        generated, http = self._connection(command.base_url, pool)
        # The generated path joined to the (normalised, slash-free) base here: httpx then parses one absolute URL
        # instead of parsing the path and merging it into its base_url (two more URL parses per request).
        request_args = {**command.request, "url": command.base_url + command.request["url"]}
        if isinstance(command, Call):
            parse = command.parse
            return (
                http,
                http.build_request(**request_args),
                lambda response: parse(client=generated, response=response),
            )
        request_args["headers"] = {**command.request.get("headers", {}), "Accept": "text/event-stream"}
        timeout = httpx.Timeout(command.read_timeout, connect=self._config.timeouts.connect)
        return http, http.build_request(**request_args, timeout=timeout), None

    def _lookup_request(self, command: HttpGet) -> tuple[_HttpT, httpx.Request, None]:
        """The request-list GET of recovery: the key only where ``may_send_key`` allows (fal's API host for fal's
        queue, or the configured base's own origin). It goes through the download client, whose redirects httpx
        follows without the Authorization header when they leave the origin."""
        config = self._config
        headers = {name: value for name, value in config.headers().items() if name.lower() == "user-agent"}
        timeout = httpx.Timeout(min(command.timeout, config.timeouts.read), connect=config.timeouts.connect)
        http = self._download_client()
        request = http.build_request("GET", command.url, params=command.params, headers=headers, timeout=timeout)
        if config.credentials is not None and may_send_key(command.url, config.base_url):
            # set on the request, whose repr shows no headers: no local of this frame holds the key
            request.headers["Authorization"] = config.credentials.authorization
        return http, request, None

    def _answer(self, response: httpx.Response, parse: Parser | None) -> Answer:
        """The answer to a request (its body read): the secret redacted (should a server echo it), then parsed by
        the generated ``parse_response``; a body it cannot read (an HTML 502 from a gateway) is judged by its status."""
        if self._secret and (
            self._secret_bytes in response.content or any(self._secret_bytes in v for _, v in response.headers.raw)
        ):
            headers = [
                (name, value.replace(self._secret, "***"))
                for name, value in response.headers.multi_items()
                if name.lower() not in _BODY_HEADERS
            ]
            content = response.content.replace(self._secret_bytes, b"***")
            response = httpx.Response(response.status_code, headers=headers, content=content, request=response.request)
        parsed: object | None = None
        if parse is not None:
            try:
                parsed = parse(response)
            except (ValueError, KeyError, TypeError):
                parsed = None
        return Answer(response.status_code, response.headers, response.content, parsed)

    def _no_answer(self, error: httpx.HTTPError) -> NoAnswer:
        """An httpx exception as ``NoAnswer``, the secret redacted from its text (should a proxy have quoted it)."""
        outcome = no_answer(error)
        if self._secret and self._secret in outcome.error:
            return replace(outcome, error=outcome.error.replace(self._secret, "***"))
        return outcome

    def _opened_clients(self) -> list[_HttpT]:
        """Every httpx client built so far (none is built just to be closed), forgotten here."""
        opened = [http for _, http in self._connections.values()]
        if self._downloader is not None:
            opened.append(self._downloader)
        self._connections.clear()
        self._downloader = None
        return opened

    # --- what each executor provides ------------------------------------------------------------------------------

    @abc.abstractmethod
    def _open(self, generated: AuthenticatedClient | Client) -> _HttpT:
        """The generated client's httpx client (sync or async)."""

    @abc.abstractmethod
    def _new_client(self, args: dict[str, Any]) -> _HttpT:
        """A plain httpx client (downloads)."""

    @abc.abstractmethod
    def _handle(self, state: HandleState, pool: int) -> _HandleT:
        """The handle of a request."""

    @abc.abstractmethod
    def _run_handle(self, flow: Flow[_HandleT], pool: int) -> _Submitted:
        """Run a flow that returns a handle."""

    @abc.abstractmethod
    def _run_result(self, flow: Flow[EditResult], pool: int, on_update: OnUpdate | None = None) -> _Finished:
        """Run a flow that returns a result."""

    @abc.abstractmethod
    def _run_paths(self, flow: Flow[list[Path]]) -> _Saved:
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
        kontext: BaseKontext[Any, Any, Any, _Finished, Any, Any, _StatusR, _CancelR, _StreamR],
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

    def status(self, *, logs: bool = False) -> _StatusR:
        """The current status (one request, retried per the policy).

        Args:
            logs: Ask for the logs (all lines so far).

        Raises:
            NotFoundError: unknown request id. APIError: other failures.
        """
        return self._kontext._run_status(status_flow(self._state, self._kontext._settings, logs=logs), self._pool)

    def stream(self, *, logs: bool = True) -> _StreamR:
        """Status changes from the status stream (SSE), up to and including ``Completed``.

        Each status carries the log lines new since the previous one. Ends early (without ``Completed``) if the
        stream drops; ``wait()`` falls back to polling in that case, this iterator does not.

        Raises:
            AuthenticationError: the stream refused the credentials.
        """
        return self._kontext._statuses(stream_flow(self._state, self._kontext._settings, logs=logs), self._pool)

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
        kontext = self._kontext
        waiting = WaitOptions(None, logs=logs, cancel_on_timeout=cancel_on_timeout, report=on_update is not None)
        options = kontext._stream_default(waiting, stream)
        flow = kontext._waiting(self._state, timeout, options, cancel_on_interrupt=cancel_on_interrupt)
        return kontext._run_result(flow, self._pool, on_update)

    def result(self) -> _Finished:
        """The result of a completed request (does not wait).

        Raises:
            ResultNotReadyError: not completed yet (call ``wait()``). NotFoundError: unknown or expired.
            ValidationError / ContentPolicyError: the request failed validation. APIError: other failures.
        """
        return self._kontext._run_result(result_flow(self._state, self._kontext._settings), self._pool)

    def cancel(self) -> _CancelR:
        """Ask the server to cancel the request.

        Returns:
            ``CANCELLATION_REQUESTED`` (or ``OK``), or ``ALREADY_COMPLETED``.

        Raises:
            NotFoundError: unknown request id. APIError: other failures.
        """
        return self._kontext._run_cancel(cancel_flow(self._state, self._kontext._settings), self._pool)
