"""Every verb of the clients, written once as a flow: its arguments checked when the flow starts (so an error is
raised where the result is: the call for ``Kontext``, the ``await`` for ``AsyncKontext``), then the queue, wait,
storage and synchronous-endpoint flows composed, all bounded by one deadline: the verb's ``timeout`` (or the client's
``wait_timeout``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from fal_kontext_api.models import CancelStatus

from fal_kontext.endpoints import Endpoint, parse_endpoint
from fal_kontext.errors import FieldProblem, InvalidInputError
from fal_kontext.option_checks import check_positive
from fal_kontext.results import EditResult, EndpointOutput, read_output
from fal_kontext.status import Status

from .commands import Flow, LocalSize, ReadFile, perform
from .direct import DirectCall, direct_flow
from .images import LocalFile, inline, is_url, too_large
from .inputs import EditInput, check_input, check_submit_options, edit_fields, text_to_image_fields
from .queue import (
    HandleState,
    SubmitOptions,
    cancel_flow,
    cancelling_on_interrupt,
    resubmit_flow,
    result_flow,
    status_flow,
    submit_flow,
)
from .save import save_flow
from .settings import Settings
from .storage import should_upload, storage_of, upload_flow
from .wait import WaitOptions, stream_flow, wait_flow

if TYPE_CHECKING:
    from os import PathLike

__all__ = [
    "Deadline",
    "PendingUpload",
    "Prompted",
    "WaitArguments",
    "cancel",
    "deadline_of",
    "edit",
    "generate",
    "image_value",
    "resubmit",
    "result",
    "run",
    "run_direct",
    "save",
    "status",
    "stream",
    "submit",
    "upload",
    "wait",
    "with_uploads",
]

_SUBMIT_OPTION_NAMES = frozenset(item.name for item in fields(SubmitOptions))
Input = Mapping[str, object] | EditInput


@dataclass(frozen=True, slots=True)
class Deadline:
    """A verb's deadline: ``at`` on the settings' clock (None: none) and the ``seconds`` it was given."""

    at: float | None
    seconds: float | None


def deadline_of(settings: Settings, timeout: float | None) -> Deadline:
    """The deadline of a verb called with ``timeout`` (None: the client's ``wait_timeout``; ``math.inf``: none).

    Raises:
        InvalidInputError: ``timeout`` is not a number > 0.
    """
    seconds = settings.wait_timeout if timeout is None else check_positive("timeout", timeout, allow_inf=True)
    if seconds is None or math.isinf(seconds):
        return Deadline(None, None)
    return Deadline(settings.clock() + seconds, seconds)


def _submit_options(settings: Settings, options: Mapping[str, Any]) -> SubmitOptions:
    """Checked submit options (``submit``'s keywords; ``start_timeout`` defaults to the client's).

    Raises:
        TypeError: an unknown option. InvalidInputError: an option breaks the spec.
    """
    unknown = sorted(set(options) - _SUBMIT_OPTION_NAMES)
    if unknown:
        raise TypeError(f"unexpected submit option(s): {', '.join(unknown)}")
    start = options.get("start_timeout")
    start = start if start is not None else settings.start_timeout
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


@dataclass(frozen=True, slots=True)
class WaitArguments:
    """How a verb that waits was asked to wait (``Handle.wait``'s keywords; ``run``/``edit``/``generate`` take the
    defaults but ``report``).

    Attributes:
        logs: Ask the server for logs.
        stream: Follow the status stream (None: the client's ``stream_status``).
        cancel_on_timeout: Cancel the request when the deadline passes.
        cancel_on_interrupt: Cancel it on Ctrl-C or task cancellation.
        report: Notify each new status (there is an ``on_update``).
    """

    logs: bool = True
    stream: bool | None = None
    cancel_on_timeout: bool = True
    cancel_on_interrupt: bool = True
    report: bool = False


def _waiting(state: HandleState, settings: Settings, deadline: Deadline, arguments: WaitArguments) -> Flow[EditResult]:
    options = WaitOptions(
        deadline.at,
        deadline.seconds,
        logs=arguments.logs,
        use_stream=settings.stream_status if arguments.stream is None else arguments.stream,
        cancel_on_timeout=arguments.cancel_on_timeout,
        report=arguments.report,
    )
    flow = wait_flow(state, settings, options)
    if arguments.cancel_on_interrupt:
        flow = cancelling_on_interrupt(flow, state, settings)
    return (yield from flow)


# --- local images: inlined, or uploaded after every check ---------------------------------------------------------

# Stands for an image to upload while the input is checked; RFC 2606 reserves ``.invalid``, and the stand-in is
# replaced by the uploaded file's URL before anything is submitted.
_STAND_IN = "https://upload.invalid/"


@dataclass(frozen=True, slots=True)
class PendingUpload:
    """A local input image to upload before the input is sent, and the URL standing for it until then.

    Attributes:
        stand_in: The placeholder URL standing for it in the input until it is uploaded.
        file: The image.
    """

    stand_in: str
    file: LocalFile


def image_value(settings: Settings, source: object, field: str) -> Flow[str | PendingUpload]:
    """The value of one image field: a URL or data URI as is, a small local image inlined, a large one to upload
    (``storage.should_upload``).

    Raises:
        InvalidInputError: a missing file, bytes that are not an image, or an image too large to inline.
    """
    if is_url(source):
        assert isinstance(source, str)
        return source
    storage_known = settings.storage is not None
    size = yield from perform(LocalSize(source))
    uploads = should_upload(size or 0, threshold=settings.upload_threshold, storage_available=storage_known)
    if size is not None and size > settings.max_image_bytes and not uploads:  # refused before reading the file
        origin = f"<{size} bytes>" if isinstance(source, bytes) else str(source)
        raise too_large(field, origin, size, settings.max_image_bytes)
    file = yield from perform(ReadFile(source, field))
    if should_upload(len(file.data), threshold=settings.upload_threshold, storage_available=storage_known):
        return PendingUpload(f"{_STAND_IN}{quote(field)}/{quote(file.file_name)}", file)
    return inline(file, field=field, max_bytes=settings.max_image_bytes)


def _images(
    settings: Settings, image: object | None, images: Sequence[object] | None
) -> Flow[tuple[dict[str, Any], list[PendingUpload]]]:
    """``image``/``images`` with local files read: inlined as data URIs, or a stand-in URL for each to upload."""
    pending: list[PendingUpload] = []
    values: dict[str, Any] = {}

    def kept(value: str | PendingUpload) -> str:
        if isinstance(value, PendingUpload):
            pending.append(value)
            return value.stand_in
        return value

    if image is not None:
        values["image"] = kept((yield from image_value(settings, image, "image_url")))
    if isinstance(images, Sequence) and not isinstance(images, (str, bytes)):
        many: list[str] = []
        for index, source in enumerate(images):
            many.append(kept((yield from image_value(settings, source, f"image_urls[{index}]"))))
        values["images"] = many
    elif images is not None:
        values["images"] = images  # refused, named, by the input check
    return values, pending


def _replaced(value: object, urls: Mapping[str, str]) -> object:
    if isinstance(value, str):
        return urls.get(value, value)
    if isinstance(value, list):
        return [_replaced(item, urls) for item in value]
    return value


def with_uploads(
    settings: Settings, fields: dict[str, Any], pending: list[PendingUpload], deadline: Deadline
) -> Flow[dict[str, Any]]:
    """``fields`` with each pending image uploaded, one after another, and its URL in place of its stand-in."""
    urls: dict[str, str] = {}
    for upload in pending:
        urls[upload.stand_in] = yield from upload_flow(upload.file, settings, deadline.at)
    return {name: _replaced(value, urls) for name, value in fields.items()}


# --- the verbs ----------------------------------------------------------------------------------------------------


def submit(
    settings: Settings, endpoint: Endpoint | str, input: Input, options: Mapping[str, Any], *, timeout: float | None
) -> Flow[HandleState]:
    """``Kontext.submit``."""
    deadline = deadline_of(settings, timeout)
    return (yield from _submitting(settings, endpoint, input, options, deadline=deadline, sent_at=None))


def resubmit(  # noqa: PLR0913 - the resubmit verb's arguments, its options a mapping
    settings: Settings,
    endpoint: Endpoint | str,
    input: Input,
    options: Mapping[str, Any],
    *,
    sent_at: object,
    timeout: float | None,
) -> Flow[HandleState]:
    """``Kontext.resubmit``: an earlier send at ``sent_at`` may have queued it."""
    if isinstance(sent_at, bool) or not isinstance(sent_at, (int, float)) or not math.isfinite(sent_at):
        problem = "must be the Unix time (time.time()) taken before the earlier send"
        raise InvalidInputError([FieldProblem("sent_at", sent_at, problem)])
    deadline = deadline_of(settings, timeout)
    return (yield from _submitting(settings, endpoint, input, options, deadline=deadline, sent_at=float(sent_at)))


def _submitting(  # noqa: PLR0913 - the submit verbs' arguments
    settings: Settings,
    endpoint: Endpoint | str,
    input: Input,
    options: Mapping[str, Any],
    *,
    deadline: Deadline,
    sent_at: float | None,
) -> Flow[HandleState]:
    """Check a submit's arguments (the deadline already checked), then submit (with ``sent_at``, resubmit)."""
    settings.check_credentials()  # a resubmit's first request is the request list's, which needs the key too
    chosen = parse_endpoint(endpoint)
    fields = check_input(chosen, input)
    checked = _submit_options(settings, options)
    if sent_at is None:
        return (yield from submit_flow(chosen, fields, checked, settings, deadline.at))
    return (yield from resubmit_flow(chosen, fields, checked, sent_at, settings, deadline=deadline.at))


def run(  # noqa: PLR0913 - the run verb's arguments, its submit options a mapping
    settings: Settings,
    endpoint: Endpoint | str,
    input: Input,
    submit_options: Mapping[str, Any],
    *,
    timeout: float | None,
    waiting: WaitArguments,
) -> Flow[EditResult]:
    """``Kontext.run``: submit, then wait, within one deadline."""
    deadline = deadline_of(settings, timeout)  # checked before the paid submit
    state = yield from _submitting(settings, endpoint, input, submit_options, deadline=deadline, sent_at=None)
    return (yield from _waiting(state, settings, deadline, waiting))


# The tier ``model=`` means when not given (scripts/typed_options.py's DEFAULT_TIER types the same).
DEFAULT_TIER = "pro"
# ``edit``'s and ``generate``'s own keywords besides ``model``, in the order the generated Protocols type them
# (scripts/typed_options.py's VERB_KEYWORDS): every other keyword is an input field of the endpoint.
PROMPTED_KEYWORDS = ("timeout", "on_update", "webhook_url", "start_timeout", "priority")
_SUBMIT_KEYWORDS = ("webhook_url", "start_timeout", "priority")


@dataclass(frozen=True, slots=True)
class Prompted:
    """What ``edit`` and ``generate`` are called with besides the prompt and the images.

    Attributes:
        model: The tier (``"pro"``, ``"max"``, ...).
        options: The endpoint's optional input fields.
        submit_options: ``submit``'s keywords that these verbs take (``webhook_url``, ``start_timeout``, ...).
        timeout: The verb's ``timeout``.
        waiting: How to wait.
    """

    model: str
    options: Mapping[str, object]
    submit_options: Mapping[str, Any]
    timeout: float | None
    waiting: WaitArguments


def prompted(arguments: Mapping[str, Any]) -> Prompted:
    """``edit``'s and ``generate``'s keywords (``model`` and ``PROMPTED_KEYWORDS``) apart from the endpoint's input
    fields (every other keyword). Nothing is checked here: the verb's flow checks every one when it starts."""
    options = dict(arguments)
    model = options.pop("model", DEFAULT_TIER)
    timeout = options.pop("timeout", None)
    waiting = WaitArguments(report=options.pop("on_update", None) is not None)
    submit_options = {name: options.pop(name, None) for name in _SUBMIT_KEYWORDS}
    return Prompted(model, options, submit_options, timeout, waiting)


def edit(
    settings: Settings, prompt: str, *, image: object | None, images: Sequence[object] | None, call: Prompted
) -> Flow[EditResult]:
    """``Kontext.edit``: local images read (inlined, or uploaded after every check), submit, wait."""
    deadline = deadline_of(settings, call.timeout)
    settings.check_credentials()
    checked = _submit_options(settings, call.submit_options)
    values, pending = yield from _images(settings, image, images)
    fields = {"image": image, "images": images, **call.options, **values}
    endpoint, fields = edit_fields(prompt, model=call.model, **fields)
    fields = yield from with_uploads(settings, fields, pending, deadline)  # after every check: nothing uploaded in vain
    state = yield from submit_flow(endpoint, fields, checked, settings, deadline.at)
    return (yield from _waiting(state, settings, deadline, call.waiting))


def generate(settings: Settings, prompt: str, call: Prompted) -> Flow[EditResult]:
    """``Kontext.generate``: submit to the tier's text-to-image endpoint, wait."""
    deadline = deadline_of(settings, call.timeout)
    settings.check_credentials()
    endpoint, fields = text_to_image_fields(prompt, model=call.model, **call.options)
    state = yield from submit_flow(
        endpoint, fields, _submit_options(settings, call.submit_options), settings, deadline.at
    )
    return (yield from _waiting(state, settings, deadline, call.waiting))


def wait(settings: Settings, state: HandleState, *, timeout: float | None, waiting: WaitArguments) -> Flow[EditResult]:
    """``Handle.wait``."""
    deadline = deadline_of(settings, timeout)
    settings.check_credentials()
    return (yield from _waiting(state, settings, deadline, waiting))


def status(settings: Settings, state: HandleState, *, logs: bool, timeout: float | None = None) -> Flow[Status]:
    """``Handle.status``."""
    deadline = deadline_of(settings, timeout)
    settings.check_credentials()
    return (yield from status_flow(state, settings, logs=logs, deadline=deadline.at))


def stream(settings: Settings, state: HandleState, *, logs: bool) -> Flow[object]:
    """``Handle.stream``: the statuses it notifies are the iterator's items."""
    settings.check_credentials()
    return (yield from stream_flow(state, settings, logs=logs))


def result(settings: Settings, state: HandleState, *, timeout: float | None = None) -> Flow[EditResult]:
    """``Handle.result``."""
    deadline = deadline_of(settings, timeout)
    settings.check_credentials()
    return (yield from result_flow(state, settings, deadline.at))


def cancel(settings: Settings, state: HandleState, *, timeout: float | None = None) -> Flow[CancelStatus]:
    """``Handle.cancel``."""
    deadline = deadline_of(settings, timeout)
    settings.check_credentials()
    return (yield from cancel_flow(state, settings, deadline.at))


def upload(
    settings: Settings,
    source: object,
    *,
    file_name: str | None,
    content_type: str | None,
    timeout: float | None = None,
) -> Flow[str]:
    """``Kontext.upload``: any local file (not only images) to fal storage."""
    deadline = deadline_of(settings, timeout)
    settings.check_credentials()
    storage_of(settings)  # no storage: refused before the file is read
    file = yield from perform(ReadFile(source, "source", images_only=False))
    file = LocalFile(file.data, content_type or file.content_type, file_name or file.file_name, file.origin)
    return (yield from upload_flow(file, settings, deadline.at))


def run_direct(  # noqa: PLR0913 - the synchronous verb's arguments, each a keyword
    settings: Settings,
    endpoint: Endpoint | str,
    input: Input,
    *,
    timeout: float | None,
    start_timeout: float | None,
    runner_hint: str | None,
) -> Flow[EditResult]:
    """``Kontext.run_direct``: one request to fal's synchronous endpoint, held at most ``timeout``."""
    deadline = deadline_of(settings, timeout)
    chosen = parse_endpoint(endpoint)
    fields = check_input(chosen, input)
    options = _submit_options(settings, {"start_timeout": start_timeout, "runner_hint": runner_hint})
    settings.check_credentials()
    assert settings.sync_url is not None  # the clients always know one
    call = DirectCall(
        settings.sync_url,
        chosen.value,
        fields,
        authorization=settings.authorization(),
        run_timeout=deadline.seconds,
        start_timeout=options.start_timeout,
        runner_hint=options.runner_hint,
    )

    def output(body: Mapping[str, Any]) -> EndpointOutput:
        read = read_output(body, chosen.spec)
        if read is None:  # direct_flow raises UnexpectedResponseError, saying what the answer is not
            raise ValueError("not the endpoint's output")
        return read

    answer = yield from direct_flow(call.request(), output, pacing=settings.pacing)
    return EditResult(answer.request_id or "", answer.output)


def save(
    settings: Settings, result: EditResult, directory: object, *, timeout: float | None = None
) -> Flow[list[PathLike[str]]]:
    """``Kontext.save``."""
    deadline = deadline_of(settings, timeout)
    return (yield from save_flow(result, directory, settings, deadline.at))
