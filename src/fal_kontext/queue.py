"""The queue lifecycle without I/O: submit, status, stream, result, cancel and wait as generators of commands.

Each flow yields a command (``Call`` one generated operation, ``Sleep``, ``OpenStream``/``ReadLine``/``CloseStream``
for the status stream, ``Notify`` the caller) and receives its outcome; it returns the value or raises a typed error.
``Kontext`` and ``AsyncKontext`` only execute the commands, so retries, polling, stream fallback, deadlines and
error mapping exist once, and unit tests can drive a flow with scripted outcomes and a fake clock.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Generator, Mapping
from dataclasses import dataclass, field
from typing import Any

from fal_kontext_api.models import (
    CancelResponse,
    CancelStatus,
    KontextOutput,
    LogsFlag,
    QueuePriority,
    QueueStatus,
    QueueStatusEvent,
    QueueStatusValue,
    QueueSubmitResponse,
)
from fal_kontext_api.types import UNSET

from .endpoints import Endpoint
from .errors import (
    APIConnectionError,
    APIError,
    APIStatusError,
    APITimeoutError,
    AuthenticationError,
    BadRequestError,
    ContentPolicyError,
    FieldError,
    KontextError,
    NotFoundError,
    PayloadTooLargeError,
    RateLimitError,
    RequestCancelledError,
    RequestFailedError,
    ResultNotReadyError,
    ServerError,
    StartTimeoutError,
    UnexpectedResponseError,
    ValidationError,
    WaitTimeoutError,
)
from .inputs import EditInput
from .results import EditResult
from .retry import Failure, Operation, RetryPolicy, parse_retry_after
from .sse import KeepAlive, SSEDecoder
from .status import Status, logs_of, status_from_model
from .urls import base_for_returned_url, operation_url

__all__ = [
    "Answer",
    "Call",
    "CloseStream",
    "Command",
    "Flow",
    "HandleState",
    "NoAnswer",
    "Notify",
    "OpenStream",
    "PollSchedule",
    "QueueSettings",
    "ReadLine",
    "Sleep",
    "SubmitOptions",
    "cancel_flow",
    "error_from_answer",
    "result_flow",
    "resume_state",
    "status_flow",
    "stream_flow",
    "submit_flow",
    "wait_flow",
]

logger = logging.getLogger("fal_kontext")

STILL_IN_PROGRESS = "Request is still in progress"


# --- commands the drivers execute -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Call:
    """Call one generated operation (``sync_detailed``/``asyncio_detailed``) with a client for ``base_url``."""

    operation: Operation
    base_url: str
    request_id: str | None
    kwargs: Mapping[str, Any] = field(default_factory=dict)
    endpoint: Endpoint | None = None


@dataclass(frozen=True, slots=True)
class Sleep:
    """Wait this many seconds."""

    seconds: float


@dataclass(frozen=True, slots=True)
class OpenStream:
    """Open the status stream (GET ``url`` with ``Accept: text/event-stream``); outcome: ``Answer`` (no body) or
    ``NoAnswer``. ``read_timeout`` bounds each read."""

    url: str
    params: Mapping[str, str]
    read_timeout: float


@dataclass(frozen=True, slots=True)
class ReadLine:
    """Read the next line of the open stream; outcome: the line, None at the end, or ``NoAnswer``."""


@dataclass(frozen=True, slots=True)
class CloseStream:
    """Close the open stream (if any). ``drain``: COMPLETED was read; fal ends the stream right after it, so a driver
    may briefly read that end to keep the connection for the result request (rather than a new TLS handshake)."""

    drain: bool = False


@dataclass(frozen=True, slots=True)
class Notify:
    """Report a status to the caller (``on_update`` or the ``stream()`` iterator)."""

    status: Status


Command = Call | Sleep | OpenStream | ReadLine | CloseStream | Notify


@dataclass(frozen=True, slots=True)
class Answer:
    """An HTTP answer. ``parsed`` is the generated model, or None when the status is undocumented or the body did
    not match the spec."""

    status_code: int
    headers: Mapping[str, str]
    content: bytes
    parsed: object | None = None


@dataclass(frozen=True, slots=True)
class NoAnswer:
    """No HTTP answer: the connection failed or timed out.

    Attributes:
        error: What happened, in words (never headers or credentials).
        reached_server: False only when the request certainly never reached the server.
        timed_out: Whether a timeout caused it.
    """

    error: str
    reached_server: bool
    timed_out: bool = False


Flow = Generator[Command, Any, Any]


# --- settings and state -----------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PollSchedule:
    """Adaptive polling: quick at first, backing off to a cap.

    Attributes:
        initial: Seconds before the second status poll.
        factor: Each later interval is the previous one times this.
        maximum: Cap of the interval.
    """

    initial: float = 0.1
    factor: float = 1.5
    maximum: float = 2.0

    def __post_init__(self) -> None:
        if self.initial <= 0 or self.factor < 1 or self.maximum < self.initial:
            raise ValueError("PollSchedule needs initial > 0, factor >= 1 and maximum >= initial")

    def next_interval(self, interval: float) -> float:
        """The interval after ``interval``."""
        return min(interval * self.factor, self.maximum)


@dataclass(frozen=True, slots=True)
class QueueSettings:
    """What the flows need from the client, all injectable.

    Attributes:
        base_url: The configured base URL (normalised, no trailing slash).
        retry: The retry policy.
        poll: The polling schedule.
        clock: Monotonic seconds (deadlines).
        random: Jitter source in [0, 1).
        stream_idle_timeout: A status stream silent for this long is treated as dropped (fal sends a keep-alive every
            15 s), and the waiter falls back to polling.
    """

    base_url: str
    retry: RetryPolicy
    poll: PollSchedule
    clock: Callable[[], float]
    random: Callable[[], float]
    stream_idle_timeout: float = 30.0


@dataclass(frozen=True, slots=True)
class HandleState:
    """What a handle knows about its request: the id and where each operation goes.

    Attributes:
        request_id: The request.
        endpoint: The endpoint it was submitted to, if known.
        bases: The base URL for each queue operation (from the URLs the server returned, see ``urls``).
    """

    request_id: str
    endpoint: Endpoint | None
    bases: Mapping[Operation, str]


@dataclass(frozen=True, slots=True)
class SubmitOptions:
    """Submit-time options sent as headers or query (all optional).

    Attributes:
        webhook_url: fal POSTs the result here (``fal_webhook``).
        start_timeout: Seconds the request may wait to start (``X-Fal-Request-Timeout``).
        priority: ``"normal"`` or ``"low"`` (``X-Fal-Queue-Priority``), as the generated enum value.
        runner_hint: ``X-Fal-Runner-Hint``.
        no_retry: Ask the server not to retry the request (``X-Fal-No-Retry: 1``).
    """

    webhook_url: str | None = None
    start_timeout: float | None = None
    priority: QueuePriority | None = None
    runner_hint: str | None = None
    no_retry: bool = False

    def kwargs(self) -> dict[str, Any]:
        """Keyword arguments of the generated submit operations."""
        return {
            "fal_webhook": self.webhook_url if self.webhook_url is not None else UNSET,
            "x_fal_request_timeout": self.start_timeout if self.start_timeout is not None else UNSET,
            "x_fal_queue_priority": self.priority if self.priority is not None else UNSET,
            "x_fal_runner_hint": self.runner_hint if self.runner_hint is not None else UNSET,
            "x_fal_no_retry": "1" if self.no_retry else UNSET,
        }


def resume_state(request_id: str, settings: QueueSettings, endpoint: Endpoint | None = None) -> HandleState:
    """The state of a request known only by its id (resume after a restart): every operation on the configured base."""
    if not request_id or not request_id.strip():
        raise ValueError("request_id must not be empty")
    return HandleState(request_id, endpoint, dict.fromkeys(Operation, settings.base_url))


# --- error mapping ----------------------------------------------------------------------------------------------


def _json(content: bytes) -> Any:
    try:
        return json.loads(content)
    except (ValueError, UnicodeDecodeError):
        return None


def _detail_of(body: Any, content: bytes) -> tuple[str, list[FieldError], str | None]:
    """The message, the 422 field list and the error_type of an error body in any of the shapes seen in the wild:
    fal's ``{"detail": str | [items], "error_type"?}``, a gateway's ``{"error": {"message"}}`` or
    ``{"error", "message"}``, or plain text."""
    errors: list[FieldError] = []
    error_type: str | None = None
    if isinstance(body, dict):
        detail = body.get("detail")
        error_type = body.get("error_type") if isinstance(body.get("error_type"), str) else None
        if isinstance(detail, list):
            for item in detail:
                if isinstance(item, dict):
                    loc = tuple(p for p in item.get("loc", ()) if isinstance(p, (str, int)))
                    errors.append(FieldError(loc, str(item.get("msg", "")), str(item.get("type", ""))))
            return "; ".join(str(e) for e in errors) or "invalid input", errors, error_type
        if isinstance(detail, str):
            return detail, errors, error_type
        nested = body.get("error")
        if isinstance(nested, dict) and isinstance(nested.get("message"), str):
            kind = nested.get("type") or nested.get("code")
            return nested["message"], errors, error_type or (str(kind) if kind else None)
        if isinstance(body.get("message"), str):
            return body["message"], errors, error_type
        if isinstance(status := body.get("status"), str):
            return status, errors, error_type
    text = content.decode("utf-8", "replace").strip()
    return (text[:300] or "no body"), errors, error_type


def error_from_answer(answer: Answer, request_id: str | None) -> APIStatusError:
    """The typed error for an HTTP error answer."""
    headers = {k.lower(): v for k, v in answer.headers.items()}
    body = _json(answer.content)
    detail, field_errors, error_type = _detail_of(body, answer.content)
    error_type = error_type or headers.get("x-fal-error-type")
    code = answer.status_code
    common: dict[str, Any] = {
        "status_code": code,
        "request_id": request_id,
        "body": answer.content.decode("utf-8", "replace")[:2000],
        "error_type": error_type,
        "headers": headers,
    }
    if code in (401, 403):
        return AuthenticationError(detail, **common)
    if code == 404:
        return NotFoundError(detail, **common)
    if code == 413:
        return PayloadTooLargeError(detail, **common)
    if code == 422:
        if any(e.type == "content_policy_violation" for e in field_errors) or error_type == "content_policy_violation":
            return ContentPolicyError(detail, errors=field_errors, **common)
        return ValidationError(detail, errors=field_errors, **common)
    if code == 429:
        return RateLimitError(detail, retry_after=parse_retry_after(headers), **common)
    if code == 400 and detail == STILL_IN_PROGRESS:
        return ResultNotReadyError(detail, **common)
    if code == 504 and headers.get("x-fal-request-timeout-type") == "user":
        return StartTimeoutError(detail, **common)
    if code >= 500:
        return ServerError(detail, **common)
    return BadRequestError(detail, **common)


def error_from_no_answer(outcome: NoAnswer, request_id: str | None, operation: Operation) -> APIConnectionError:
    """The typed error for a call that got no HTTP answer."""
    about = f" (request {request_id})" if request_id else ""
    if operation is Operation.SUBMIT and outcome.reached_server:
        advice = (
            "The submit may have reached the server and queued a job: it was not sent again, to avoid paying twice. "
            "Check your fal dashboard before resubmitting"
        )
    else:
        advice = "Check the network and the base URL, then try again"
    message = f"{operation.value} failed{about}: {outcome.error}. {advice}"
    if outcome.timed_out:
        return APITimeoutError(message, request_id=request_id, reached_server=outcome.reached_server)
    return APIConnectionError(message, request_id=request_id, reached_server=outcome.reached_server)


def _raise_for(outcome: Answer | NoAnswer, request_id: str | None, operation: Operation) -> None:
    if isinstance(outcome, NoAnswer):
        raise error_from_no_answer(outcome, request_id, operation)
    if outcome.status_code >= 400:
        raise error_from_answer(outcome, request_id)


# --- flows ------------------------------------------------------------------------------------------------------


@dataclass(slots=True)
class _Attempted:
    outcome: Answer | NoAnswer
    out_of_time: bool = False


def _is_failure(outcome: Answer | NoAnswer) -> bool:
    return isinstance(outcome, NoAnswer) or outcome.status_code >= 400


def call_with_retries(
    call: Call, settings: QueueSettings, deadline: float | None = None, *, until_deadline: bool = False
) -> Flow:
    """Send ``call``, retrying as the policy allows (and ``deadline`` leaves time for); returns ``_Attempted``.

    With ``until_deadline`` (and a deadline), transient failures are retried until the deadline rather than
    ``max_retries`` times: what ``wait`` does for its idempotent status and result calls.
    """
    retry = 0
    while True:
        outcome: Answer | NoAnswer = yield call
        if not _is_failure(outcome):
            return _Attempted(outcome)
        if isinstance(outcome, Answer) and call.operation is Operation.RESULT and outcome.status_code == 400:
            return _Attempted(outcome)  # "still in progress" is an answer, not a failure
        if isinstance(outcome, NoAnswer):
            failure = Failure(None, {}, outcome.reached_server)
        else:
            failure = Failure(outcome.status_code, {k.lower(): v for k, v in outcome.headers.items()})
        retry += 1
        delay = settings.retry.delay_before_retry(
            call.operation, retry, failure, settings.random, until_deadline=until_deadline and deadline is not None
        )
        if delay is None:
            return _Attempted(outcome)
        if deadline is not None and settings.clock() + delay >= deadline:
            return _Attempted(outcome, out_of_time=True)
        logger.debug("retrying %s%s in %.2f s (retry %d)", call.operation.value, _for(call.request_id), delay, retry)
        yield Sleep(delay)


def _for(request_id: str | None) -> str:
    return f" for {request_id}" if request_id else ""


def submit_flow(endpoint: Endpoint, body: EditInput, options: SubmitOptions, settings: QueueSettings) -> Flow:
    """Submit ``body`` to ``endpoint``; returns the ``HandleState``. Retried only if the request never left."""
    call = Call(Operation.SUBMIT, settings.base_url, None, {"body": body, **options.kwargs()}, endpoint)
    attempted: _Attempted = yield from call_with_retries(call, settings)
    outcome = attempted.outcome
    _raise_for(outcome, None, Operation.SUBMIT)
    assert isinstance(outcome, Answer)
    parsed = outcome.parsed
    if not isinstance(parsed, QueueSubmitResponse):
        # The job may be queued (and billed) even if the answer misses the URLs the spec requires (an aggregator
        # that drops cancel_url): with a request id, carry on as if resuming it, rather than lose it.
        body = _json(outcome.content)
        rid = body.get("request_id") if isinstance(body, dict) else None
        if isinstance(rid, str) and rid.strip():
            logger.warning("request %s: the submit answer does not match the spec; using the configured base", rid)
            return resume_state(rid, settings, endpoint)
        raise UnexpectedResponseError(
            f"submit answered {outcome.status_code} without a request_id",
            body=outcome.content.decode("utf-8", "replace")[:500],
        )
    rid = parsed.request_id
    bases: dict[Operation, str] = {}
    for operation, url in (
        (Operation.STATUS, parsed.status_url),
        (Operation.RESULT, parsed.response_url),
        (Operation.CANCEL, parsed.cancel_url),
    ):
        base, reason = base_for_returned_url(
            url, operation_id=operation.value, request_id=rid, configured_base=settings.base_url
        )
        if reason:
            logger.debug("request %s: %s", rid, reason)
        bases[operation] = base
    bases[Operation.STREAM] = bases[Operation.STATUS]
    logger.info("submitted request %s to %s", rid, endpoint.value)
    return HandleState(rid, endpoint, bases)


def _status_call(state: HandleState, logs: bool) -> Call:
    kwargs = {"logs": LogsFlag.ONE} if logs else {}
    return Call(Operation.STATUS, state.bases[Operation.STATUS], state.request_id, kwargs)


def _parsed_status(outcome: Answer, request_id: str) -> QueueStatus:
    if not isinstance(outcome.parsed, QueueStatus):
        raise UnexpectedResponseError(
            f"status answered {outcome.status_code} with a body that is not a QueueStatus",
            request_id=request_id,
            body=outcome.content.decode("utf-8", "replace")[:500],
        )
    return outcome.parsed


def status_flow(state: HandleState, settings: QueueSettings, *, logs: bool) -> Flow:
    """One status request (with retries); returns the generated ``QueueStatus``."""
    attempted: _Attempted = yield from call_with_retries(_status_call(state, logs), settings)
    _raise_for(attempted.outcome, state.request_id, Operation.STATUS)
    assert isinstance(attempted.outcome, Answer)
    return _parsed_status(attempted.outcome, state.request_id)


def _result_from(outcome: Answer | NoAnswer, state: HandleState) -> EditResult:
    _raise_for(outcome, state.request_id, Operation.RESULT)
    assert isinstance(outcome, Answer)
    if not isinstance(outcome.parsed, KontextOutput):
        raise UnexpectedResponseError(
            "the result is not a KontextOutput (images, timings, seed, has_nsfw_concepts, prompt)",
            request_id=state.request_id,
            body=outcome.content.decode("utf-8", "replace")[:500],
        )
    return EditResult(state.request_id, outcome.parsed)


def result_flow(state: HandleState, settings: QueueSettings) -> Flow:
    """Fetch the result; returns ``EditResult``. Raises ``ResultNotReadyError`` if the request has not completed."""
    call = Call(Operation.RESULT, state.bases[Operation.RESULT], state.request_id)
    attempted: _Attempted = yield from call_with_retries(call, settings)
    return _result_from(attempted.outcome, state)


def cancel_flow(state: HandleState, settings: QueueSettings) -> Flow:
    """Ask the server to cancel; returns the ``CancelStatus`` (``ALREADY_COMPLETED`` is an answer, not an error)."""
    call = Call(Operation.CANCEL, state.bases[Operation.CANCEL], state.request_id)
    attempted: _Attempted = yield from call_with_retries(call, settings)
    outcome = attempted.outcome
    if (
        isinstance(outcome, Answer)
        and outcome.status_code in (202, 200, 400)
        and isinstance(outcome.parsed, CancelResponse)
    ):
        return outcome.parsed.status
    _raise_for(outcome, state.request_id, Operation.CANCEL)
    assert isinstance(outcome, Answer)
    parsed = _json(outcome.content)
    if isinstance(parsed, dict) and parsed.get("status") in {s.value for s in CancelStatus}:
        return CancelStatus(parsed["status"])
    raise UnexpectedResponseError(
        f"cancel answered {outcome.status_code} without a status", request_id=state.request_id
    )


class _Progress:
    """What the waiter has already reported, so each update carries only news (polled status repeats all logs), and
    the last failed call if the deadline passed while retrying it."""

    def __init__(self) -> None:
        self.logs_seen = 0
        self.last: tuple[str, int | None] | None = None
        self.last_failure: Answer | NoAnswer | None = None

    def update(self, model: QueueStatus, *, cumulative_logs: bool) -> Status | None:
        entries = logs_of(model)
        if cumulative_logs:
            new = tuple(entries[self.logs_seen :])
            self.logs_seen = max(self.logs_seen, len(entries))
        else:
            new = tuple(entries)
            self.logs_seen += len(entries)
        position = model.queue_position if isinstance(model.queue_position, int) else None
        key = (model.status.value, position)
        if key == self.last and not new:
            return None
        self.last = key
        return status_from_model(model, new)


def _give_up(
    state: HandleState,
    settings: QueueSettings,
    timeout: float,
    cancel: bool,
    last_failure: Answer | NoAnswer | None = None,
) -> Flow:
    """The deadline passed: cancel (best effort) and raise ``WaitTimeoutError`` (from the last failed call, if the
    deadline passed while retrying one). If the request completed in the meantime (cancel answers
    ALREADY_COMPLETED), its result is paid for: return it rather than lose it."""
    cancelled = False
    if cancel:
        try:
            outcome = yield from cancel_flow(state, settings)
        except KontextError as err:
            logger.warning("could not cancel request %s after the wait deadline: %s", state.request_id, err)
        else:
            if outcome is CancelStatus.ALREADY_COMPLETED:
                return (yield from result_flow(state, settings))
            cancelled = outcome in (CancelStatus.OK, CancelStatus.CANCELLATION_REQUESTED)
    cause: APIError | None = None
    if isinstance(last_failure, NoAnswer):
        cause = error_from_no_answer(last_failure, state.request_id, Operation.STATUS)
    elif isinstance(last_failure, Answer):
        cause = error_from_answer(last_failure, state.request_id)
    raise WaitTimeoutError(state.request_id, timeout, cancelled=cancelled) from cause


def _decode_event(event: QueueStatusEvent, request_id: str) -> QueueStatus | None:
    body = _json(event.data.encode("utf-8"))
    if not isinstance(body, dict):
        return None
    try:
        return QueueStatus.from_dict(body)
    except (KeyError, ValueError, TypeError):
        logger.debug("request %s: ignoring a stream event that is not a QueueStatus", request_id)
        return None


def stream_flow(state: HandleState, settings: QueueSettings, *, logs: bool, deadline: float | None = None) -> Flow:
    """Follow the status stream, notifying each status; returns the COMPLETED ``QueueStatus``, or None if the stream
    could not be opened or ended early (the caller falls back to polling). Raises ``AuthenticationError`` on 401/403.
    A ``deadline`` ends it with None too (the caller decides what a deadline means)."""
    progress = _Progress()
    return (yield from _stream_phase(state, settings, logs, deadline, progress))


def _stream_phase(
    state: HandleState, settings: QueueSettings, logs: bool, deadline: float | None, progress: _Progress
) -> Flow:
    url = operation_url(state.bases[Operation.STREAM], Operation.STREAM.value, state.request_id)
    read_timeout = settings.stream_idle_timeout
    if deadline is not None:
        read_timeout = max(0.05, min(read_timeout, deadline - settings.clock()))
    opened = yield OpenStream(url, {"logs": "1"} if logs else {}, read_timeout)
    if isinstance(opened, NoAnswer) or opened.status_code != 200:
        yield CloseStream()
        if isinstance(opened, Answer) and opened.status_code in (401, 403):
            raise error_from_answer(opened, state.request_id)
        what = opened.error if isinstance(opened, NoAnswer) else f"HTTP {opened.status_code}"
        logger.debug("request %s: status stream unavailable (%s); polling", state.request_id, what)
        return None
    decoder = SSEDecoder()
    completed: QueueStatus | None = None
    while completed is None and (deadline is None or settings.clock() < deadline):
        line = yield ReadLine()
        if isinstance(line, NoAnswer) or line is None:
            event = decoder.flush() if line is None else None
            if event is None:
                what = line.error if isinstance(line, NoAnswer) else "the stream ended before COMPLETED"
                logger.debug("request %s: status stream dropped (%s); polling", state.request_id, what)
                break
        else:
            item = decoder.feed(line)
            if item is None or isinstance(item, KeepAlive):
                continue
            event = item
        model = _decode_event(event, state.request_id)
        if model is None:
            continue
        status = progress.update(model, cumulative_logs=False)
        if status is not None:
            yield Notify(status)
        if model.status is QueueStatusValue.COMPLETED:
            completed = model
    yield CloseStream(drain=completed is not None)
    return completed


def _poll_phase(
    state: HandleState, settings: QueueSettings, logs: bool, deadline: float | None, progress: _Progress
) -> Flow:
    """Poll until COMPLETED; returns the model, or None when the deadline passes."""
    interval = settings.poll.initial
    while True:
        attempted: _Attempted = yield from call_with_retries(
            _status_call(state, logs), settings, deadline, until_deadline=True
        )
        if _is_failure(attempted.outcome):
            if attempted.out_of_time:
                progress.last_failure = attempted.outcome
                return None
            _raise_for(attempted.outcome, state.request_id, Operation.STATUS)
        assert isinstance(attempted.outcome, Answer)
        model = _parsed_status(attempted.outcome, state.request_id)
        status = progress.update(model, cumulative_logs=True)
        if status is not None:
            yield Notify(status)
        if model.status is QueueStatusValue.COMPLETED:
            return model
        delay = interval
        if deadline is not None:
            remaining = deadline - settings.clock()
            if remaining <= 0:
                return None
            delay = min(delay, remaining)
        yield Sleep(delay)
        interval = settings.poll.next_interval(interval)


def _failed_result(state: HandleState, settings: QueueSettings, error: str, error_type: str | None) -> Flow:
    """A request COMPLETED with an error: its result carries the error's own status (fal: "the same error"). One
    look, without retries (the failure is final), to raise the most specific error: a start timeout or a 422."""
    once = QueueSettings(settings.base_url, RetryPolicy.disabled(), settings.poll, settings.clock, settings.random)
    call = Call(Operation.RESULT, state.bases[Operation.RESULT], state.request_id)
    attempted: _Attempted = yield from call_with_retries(call, once)
    outcome = attempted.outcome
    if isinstance(outcome, Answer):
        if outcome.status_code == 200 and isinstance(outcome.parsed, KontextOutput):
            return EditResult(state.request_id, outcome.parsed)
        mapped = error_from_answer(outcome, state.request_id) if outcome.status_code >= 400 else None
        if isinstance(mapped, (StartTimeoutError, ValidationError)):
            raise mapped
    raise RequestFailedError(state.request_id, error, error_type)


def wait_flow(
    state: HandleState,
    settings: QueueSettings,
    *,
    timeout: float | None,
    logs: bool = True,
    use_stream: bool = True,
    cancel_on_timeout: bool = True,
) -> Flow:
    """Wait for the request to complete, then fetch its result; returns ``EditResult``.

    The status stream is followed first (when ``use_stream``); if it cannot be opened or drops, status is polled on
    ``settings.poll``'s schedule. The result is fetched as soon as COMPLETED is seen. Past ``timeout`` seconds the
    request is cancelled (best effort, if ``cancel_on_timeout``) and ``WaitTimeoutError`` raised.

    Raises:
        RequestFailedError: COMPLETED with an error.
        RequestCancelledError: the request was cancelled.
        WaitTimeoutError: the deadline passed.
        APIError: a call failed after the retries the policy allows.
    """
    deadline = None if timeout is None else settings.clock() + timeout
    progress = _Progress()
    pause = settings.poll.initial
    completed: QueueStatus | None = None
    if use_stream:
        completed = yield from _stream_phase(state, settings, logs, deadline, progress)
    while True:
        if completed is None:
            completed = yield from _poll_phase(state, settings, logs, deadline, progress)
            if completed is None:
                assert timeout is not None
                return (yield from _give_up(state, settings, timeout, cancel_on_timeout, progress.last_failure))
        assert completed is not None
        error = completed.error if isinstance(completed.error, str) else None
        error_type = completed.error_type if isinstance(completed.error_type, str) else None
        if error or error_type:
            if error_type and "cancel" in error_type.lower():
                raise RequestCancelledError(state.request_id, error or "")
            return (yield from _failed_result(state, settings, error or error_type or "failed", error_type))
        call = Call(Operation.RESULT, state.bases[Operation.RESULT], state.request_id)
        attempted: _Attempted = yield from call_with_retries(call, settings, deadline, until_deadline=True)
        outcome = attempted.outcome
        if attempted.out_of_time:
            assert timeout is not None
            progress.last_failure = outcome
            return (yield from _give_up(state, settings, timeout, cancel_on_timeout, progress.last_failure))
        if isinstance(outcome, Answer) and outcome.status_code == 400:
            detail, _, _ = _detail_of(_json(outcome.content), outcome.content)
            if detail == STILL_IN_PROGRESS:
                # A proxy may say COMPLETED a moment before the result is readable: pause, then look again.
                completed = None
                yield Sleep(pause if deadline is None else max(0.0, min(pause, deadline - settings.clock())))
                pause = settings.poll.next_interval(pause)
                continue
        return _result_from(outcome, state)
