"""The queue lifecycle without I/O: submit, status, stream, result, cancel, wait and save as typed flows.

Each flow yields commands (``commands``) and returns the verb's value or raises a typed error, so retries,
polling, stream fallback, deadlines and error mapping exist once, and unit tests can drive a flow with scripted
outcomes and a fake clock. The requests are built by the generated operations' ``request_kwargs`` and answers
parsed by their ``parse_response`` (found through the spec, ``spec.operation_module``).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from fal_kontext_api.models import (
    CancelResponse,
    CancelStatus,
    LogsFlag,
    QueuePriority,
    QueueStatus,
    QueueStatusEvent,
    QueueStatusValue,
    QueueSubmitResponse,
)
from fal_kontext_api.types import UNSET

from .commands import (
    INTERRUPTS,
    Answer,
    Call,
    CloseStream,
    Download,
    Flow,
    NoAnswer,
    Notify,
    OpenStream,
    Sleep,
    exchange,
    read_line,
)
from .config import QueueSettings, has_control_character
from .endpoints import Endpoint
from .errors import (
    APIConnectionError,
    APIError,
    FieldProblem,
    InvalidInputError,
    KontextError,
    NotFoundError,
    RequestCancelledError,
    RequestFailedError,
    ResultNotReadyError,
    StartTimeoutError,
    UnexpectedResponseError,
    ValidationError,
    WaitTimeoutError,
    error_from_no_answer,
    error_from_status,
    json_or_none,
)
from .inputs import EditInput
from .recovery import (
    Action,
    JobQuery,
    Recovery,
    SubmitAttempt,
    SubmitOutcome,
    attempt_of,
    classify,
    recover_flow,
)
from .results import EditResult, image_file_name, inline_image, read_output, write_atomically
from .retry import Failure, Operation, RetryPolicy
from .spec import endpoint_specs, operation_module, output_schemas
from .sse import KeepAlive, SSEDecoder
from .status import Status, logs_of, status_from_model
from .urls import base_for_returned_url

__all__ = [
    "HandleState",
    "SubmitOptions",
    "WaitOptions",
    "cancel_flow",
    "cancelling_on_interrupt",
    "result_flow",
    "resume_state",
    "save_flow",
    "status_flow",
    "stream_flow",
    "submit_flow",
    "wait_flow",
]

logger = logging.getLogger("fal_kontext")

_T = TypeVar("_T")


@dataclass(frozen=True, slots=True)
class HandleState:
    """What a handle knows about its request: the id and where each operation goes.

    Attributes:
        request_id: The request.
        endpoint: The endpoint it was submitted to, if known.
        app: ``owner/app`` of that endpoint: the queue serves the request's status, result and cancel under it.
        bases: The base URL for each queue operation (from the URLs the server returned, see ``urls``).
    """

    request_id: str
    endpoint: Endpoint | None
    app: str
    bases: Mapping[Operation, str]

    def path_arguments(self) -> tuple[str, str, str]:
        """The path parameters of the queue operations: owner, app and request id."""
        owner, _, app = self.app.partition("/")
        return owner, app, self.request_id


@dataclass(frozen=True, slots=True)
class SubmitOptions:
    """Submit-time options sent as headers or query (all optional, already checked).

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
        """Keyword arguments of the generated submit operations' ``request_kwargs``."""
        return {
            "fal_webhook": self.webhook_url if self.webhook_url is not None else UNSET,
            "x_fal_request_timeout": self.start_timeout if self.start_timeout is not None else UNSET,
            "x_fal_queue_priority": self.priority if self.priority is not None else UNSET,
            "x_fal_runner_hint": self.runner_hint if self.runner_hint is not None else UNSET,
            "x_fal_no_retry": "1" if self.no_retry else UNSET,
        }


def resume_state(request_id: str, settings: QueueSettings, endpoint: Endpoint | None = None) -> HandleState:
    """The state of a request known only by its id (resume after a restart): every operation on the configured base,
    under the app of ``endpoint`` (without one: the app of every endpoint of the spec, when they all share one).

    Raises:
        InvalidInputError: an empty request id, or one with whitespace or control characters (a ``ValueError``); no
            endpoint, while the spec's endpoints live under several apps.
    """
    if not isinstance(request_id, str) or not request_id.strip() or has_control_character(request_id):
        raise InvalidInputError(
            [FieldProblem("request_id", request_id, "must be the request id submit returned (a non-empty string)")]
        )
    if endpoint is not None:
        app = endpoint.app
    else:
        apps = sorted({item.app for item in endpoint_specs()})
        if len(apps) != 1:
            problem = f"the spec's endpoints live under several apps ({', '.join(apps)}): name the request's endpoint"
            raise InvalidInputError([FieldProblem("endpoint", None, problem)])
        app = apps[0]
    return HandleState(request_id, endpoint, app, dict.fromkeys(Operation, settings.base_url))


def queue_call(operation: Operation, state: HandleState, **kwargs: Any) -> Call:
    """The call of a queue operation for a request (``kwargs``: the operation's optional parameters)."""
    module = operation_module(operation.value)
    request = module.request_kwargs(*state.path_arguments(), **kwargs)
    return Call(operation, state.bases[operation], state.request_id, request, module.parse_response)


# --- errors -------------------------------------------------------------------------------------------------------


def _error_of(outcome: Answer | NoAnswer, request_id: str | None, operation: Operation) -> APIError:
    if isinstance(outcome, NoAnswer):
        return error_from_no_answer(
            outcome, request_id=request_id, operation=operation.value, submit=operation is Operation.SUBMIT
        )
    return error_from_status(outcome.status_code, outcome.headers, outcome.content, request_id)


def _answered(outcome: Answer | NoAnswer, request_id: str | None, operation: Operation) -> Answer:
    """``outcome`` if it is a success answer; else raises its typed error."""
    if isinstance(outcome, NoAnswer) or outcome.status_code >= 400:
        raise _error_of(outcome, request_id, operation)
    return outcome


def _text(content: bytes) -> str:
    return content.decode("utf-8", "replace")[:500]


# --- calls with retries -------------------------------------------------------------------------------------------


@dataclass(slots=True)
class _Attempted:
    outcome: Answer | NoAnswer
    out_of_time: bool = False


def _is_failure(outcome: Answer | NoAnswer) -> bool:
    return isinstance(outcome, NoAnswer) or outcome.status_code >= 400


def call_with_retries(
    call: Call, settings: QueueSettings, deadline: float | None = None, *, until_deadline: bool = False
) -> Flow[_Attempted]:
    """Send ``call``, retrying as the policy allows (and ``deadline`` leaves time for).

    With ``until_deadline`` (and a deadline), transient failures are retried until the deadline rather than
    ``max_retries`` times: what ``wait`` does for its idempotent status and result calls.
    """
    retry = 0
    while True:
        outcome = yield from exchange(call)
        if not _is_failure(outcome):
            return _Attempted(outcome)
        if isinstance(outcome, Answer) and call.operation is Operation.RESULT and outcome.status_code == 400:
            return _Attempted(outcome)  # "still in progress" is an answer, not a failure
        if isinstance(outcome, NoAnswer):
            failure = Failure(None, {}, outcome.reached_server, outcome.certificate_rejected)
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
        about = f" for {call.request_id}" if call.request_id else ""
        logger.debug("retrying %s%s in %.2f s (retry %d)", call.operation.value, about, delay, retry)
        yield Sleep(delay)


# --- the verbs ----------------------------------------------------------------------------------------------------


def submit_flow(
    endpoint: Endpoint, body: EditInput, options: SubmitOptions, settings: QueueSettings
) -> Flow[HandleState]:
    """Submit ``body`` to ``endpoint``; returns the ``HandleState``. Retried only if the request never left. An
    answer lost after sending is recovered as ``recovery`` decides: the job is adopted (from the id received, or
    found in fal's request list), or sent again only once the list shows it was not queued; otherwise
    ``SubmitOutcomeUnknownError``. Never sent twice."""
    module = operation_module(endpoint.operation_id)
    request = module.request_kwargs(body=body, **options.kwargs())
    call = Call(Operation.SUBMIT, settings.base_url, None, request, module.parse_response)
    query = JobQuery(endpoint.value, body.to_dict(), settings.wall())
    resends = 0
    while True:
        attempted = yield from call_with_retries(call, settings)
        state = _submitted(attempted.outcome, endpoint, settings)
        if state is not None:
            return state
        recovery = yield from recover_flow(
            attempt_of(attempted.outcome),
            query,
            list_url=settings.requests_list,
            policy=settings.recovery,
            clock=settings.clock,
            may_resend=resends < settings.retry.max_retries,
        )
        if recovery.action is Action.ADOPT and recovery.request_id is not None:
            logger.warning("submit to %s: adopted request %s (%s)", endpoint.value, recovery.request_id, recovery.why)
            return resume_state(recovery.request_id, settings, endpoint)
        if recovery.action is not Action.RESEND:
            raise _submit_error(attempted.outcome, recovery, endpoint, resends)
        resends += 1
        logger.warning("submit to %s: sending it again (%s)", endpoint.value, recovery.why)
        yield Sleep(settings.retry.backoff(resends, settings.random))


def resubmit_flow(
    endpoint: Endpoint, body: EditInput, options: SubmitOptions, sent_at: float, settings: QueueSettings
) -> Flow[HandleState]:
    """``submit_flow`` for a submit that may already have been sent once, at ``sent_at`` (Unix seconds, taken before
    that send), whose answer never arrived (the process was killed mid-submit): the job is looked up in fal's request
    list as a dropped answer is, adopted when listed, and submitted only when the list proves it was not queued.
    Raises ``SubmitOutcomeUnknownError`` when the list cannot tell (none, lookups off or failing)."""
    query = JobQuery(endpoint.value, body.to_dict(), sent_at)
    # All that is known of the earlier attempt is that it may have been sent: a dropped answer.
    recovery = yield from recover_flow(
        SubmitAttempt(),
        query,
        list_url=settings.requests_list,
        policy=settings.recovery,
        clock=settings.clock,
        may_resend=True,
    )
    if recovery.action is Action.ADOPT and recovery.request_id is not None:
        logger.warning("resubmit to %s: adopted request %s (%s)", endpoint.value, recovery.request_id, recovery.why)
        return resume_state(recovery.request_id, settings, endpoint)
    if recovery.error is not None:
        raise recovery.error
    logger.info("resubmit to %s: not queued before, sending it (%s)", endpoint.value, recovery.why)
    return (yield from submit_flow(endpoint, body, options, settings))


def _submit_error(outcome: Answer | NoAnswer, recovery: Recovery, endpoint: Endpoint, resends: int) -> KontextError:
    """The error of a submit that was not recovered: ``SubmitOutcomeUnknownError`` when the job may exist, the
    failure's own error when nothing was queued (a refusal, or the request list showed no job)."""
    if isinstance(outcome, Answer) and outcome.status_code < 400:
        cause: APIError = UnexpectedResponseError(
            f"submit answered {outcome.status_code} without a request_id", body=_text(outcome.content)
        )
    else:
        cause = _error_of(outcome, None, Operation.SUBMIT)
    if recovery.error is not None:
        recovery.error.__cause__ = cause
        return recovery.error
    if classify(attempt_of(outcome)) in (SubmitOutcome.NOT_SENT, SubmitOutcome.REFUSED, SubmitOutcome.REJECTED):
        return cause
    last = outcome.error if isinstance(outcome, NoAnswer) else f"HTTP {outcome.status_code}"
    error = APIConnectionError(
        f"submit to {endpoint.value} failed {resends + 1} time(s), the last with {last}; fal's request list shows "
        f"no job for it ({recovery.why}), so nothing was queued. Try again later",
        reached_server=True,
    )
    error.__cause__ = cause
    return error


def _submitted(outcome: Answer | NoAnswer, endpoint: Endpoint, settings: QueueSettings) -> HandleState | None:
    """The state of the queued request if ``outcome`` is a submit answer naming it, else None."""
    if _is_failure(outcome):
        return None
    assert isinstance(outcome, Answer)
    parsed = outcome.parsed
    if not isinstance(parsed, QueueSubmitResponse):
        # The job may be queued (and billed) even if the answer misses the URLs the spec requires (an aggregator
        # that drops cancel_url): with a request id, carry on as if resuming it, rather than lose it.
        data = json_or_none(outcome.content)
        rid = data.get("request_id") if isinstance(data, dict) else None
        if isinstance(rid, str) and rid.strip():
            logger.warning("request %s: the submit answer does not match the spec; using the configured base", rid)
            return resume_state(rid, settings, endpoint)
        return None
    rid = parsed.request_id
    bases: dict[Operation, str] = {}
    for operation, url in (
        (Operation.STATUS, parsed.status_url),
        (Operation.RESULT, parsed.response_url),
        (Operation.CANCEL, parsed.cancel_url),
    ):
        # fal's per-endpoint OpenAPI requires only status and request_id: a missing URL is built from the app.
        returned = url if isinstance(url, str) else None
        base, reason = base_for_returned_url(
            returned, operation_id=operation.value, app=endpoint.app, request_id=rid, configured_base=settings.base_url
        )
        if reason:
            logger.debug("request %s: %s", rid, reason)
        bases[operation] = base
    bases[Operation.STREAM] = bases[Operation.STATUS]
    logger.info("submitted request %s to %s", rid, endpoint.value)
    return HandleState(rid, endpoint, endpoint.app, bases)


def _status_call(state: HandleState, logs: bool) -> Call:
    return queue_call(Operation.STATUS, state, logs=LogsFlag.ONE if logs else UNSET)


def _parsed_status(outcome: Answer, request_id: str) -> QueueStatus:
    if not isinstance(outcome.parsed, QueueStatus):
        raise UnexpectedResponseError(
            f"status answered {outcome.status_code} with a body that is not a QueueStatus",
            request_id=request_id,
            body=_text(outcome.content),
        )
    return outcome.parsed


def status_flow(state: HandleState, settings: QueueSettings, *, logs: bool) -> Flow[Status]:
    """One status request (with retries); returns the status with all its logs."""
    attempted = yield from call_with_retries(_status_call(state, logs), settings)
    model = _parsed_status(_answered(attempted.outcome, state.request_id, Operation.STATUS), state.request_id)
    return status_from_model(model, tuple(logs_of(model)))


def _result_from(outcome: Answer | NoAnswer, state: HandleState) -> EditResult:
    answer = _answered(outcome, state.request_id, Operation.RESULT)
    spec = state.endpoint.spec if state.endpoint is not None else None
    output = read_output(json_or_none(answer.content), spec)
    if output is None:
        schema = spec.output_schema if spec is not None else " or ".join(output_schemas())
        raise UnexpectedResponseError(
            f"the result is not a {schema} (the endpoint's output schema)",
            request_id=state.request_id,
            body=_text(answer.content),
        )
    return EditResult(state.request_id, output)


def result_flow(state: HandleState, settings: QueueSettings) -> Flow[EditResult]:
    """Fetch the result. Raises ``ResultNotReadyError`` if the request has not completed."""
    attempted = yield from call_with_retries(queue_call(Operation.RESULT, state), settings)
    return _result_from(attempted.outcome, state)


def cancel_flow(state: HandleState, settings: QueueSettings) -> Flow[CancelStatus]:
    """Ask the server to cancel; returns the ``CancelStatus`` (``ALREADY_COMPLETED`` is an answer, not an error)."""
    attempted = yield from call_with_retries(queue_call(Operation.CANCEL, state), settings)
    outcome = attempted.outcome
    if (
        isinstance(outcome, Answer)
        and outcome.status_code in (202, 200, 400)
        and isinstance(outcome.parsed, CancelResponse)
    ):
        return outcome.parsed.status
    answer = _answered(outcome, state.request_id, Operation.CANCEL)
    data = json_or_none(answer.content)
    if isinstance(data, dict) and data.get("status") in {s.value for s in CancelStatus}:
        return CancelStatus(data["status"])
    if answer.status_code == 200 and isinstance(data, dict) and isinstance(data.get("success"), bool):
        # fal's per-endpoint queue OpenAPI (https://fal.ai/api/openapi/queue/openapi.json?endpoint_id=<id>) answers
        # 200 {"success": bool}; its prose (https://fal.ai/docs/inference-api/queue/cancel) 202/400 with a status.
        # A cancel that did not take for a known request is, in the prose, one that already completed.
        return CancelStatus.OK if data["success"] else CancelStatus.ALREADY_COMPLETED
    raise UnexpectedResponseError(f"cancel answered {answer.status_code} without a status", request_id=state.request_id)


def cancel_quietly(state: HandleState, settings: QueueSettings) -> Flow[None]:
    """Cancel, logging rather than raising a failure (the caller is already on its way out)."""
    try:
        yield from cancel_flow(state, settings)
        logger.info("cancelled request %s", state.request_id)
    except KontextError as err:
        logger.warning("could not cancel request %s: %s", state.request_id, err)


def cancelling_on_interrupt(flow: Flow[_T], state: HandleState, settings: QueueSettings) -> Flow[_T]:
    """``flow``, cancelling the request first when the caller interrupts it (Ctrl-C, or the task is cancelled:
    the executor throws the interruption in), then letting the interruption go on."""
    try:
        return (yield from flow)
    except INTERRUPTS:
        yield from cancel_quietly(state, settings)
        raise


# --- waiting ------------------------------------------------------------------------------------------------------


class _Progress:
    """What the waiter has already reported, so each update carries only news (polled status repeats all logs), and
    the last failed call if the deadline passed while retrying it."""

    def __init__(self, *, report: bool = True) -> None:
        self.report = report
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
) -> Flow[EditResult]:
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
    cause = None if last_failure is None else _error_of(last_failure, state.request_id, Operation.STATUS)
    raise WaitTimeoutError(state.request_id, timeout, cancelled=cancelled) from cause


def _event_body(event: QueueStatusEvent) -> dict[str, Any] | None:
    body = json_or_none(event.data)
    return body if isinstance(body, dict) else None


def _decode_event(body: dict[str, Any], request_id: str) -> QueueStatus | None:
    try:
        return QueueStatus.from_dict(body)
    except (KeyError, ValueError, TypeError):
        logger.debug("request %s: ignoring a stream event that is not a QueueStatus", request_id)
        return None


def stream_flow(
    state: HandleState, settings: QueueSettings, *, logs: bool, deadline: float | None = None
) -> Flow[QueueStatus | None]:
    """Follow the status stream, notifying each status; returns the COMPLETED ``QueueStatus``, or None if the stream
    could not be opened or ended early (the caller falls back to polling). Raises ``AuthenticationError`` on 401/403.
    A ``deadline`` ends it with None too (the caller decides what a deadline means)."""
    return (yield from _stream_phase(state, settings, logs, deadline, _Progress()))


def _open_stream(state: HandleState, settings: QueueSettings, logs: bool, deadline: float | None) -> OpenStream:
    module = operation_module(Operation.STREAM.value)
    request = module.request_kwargs(*state.path_arguments(), logs=LogsFlag.ONE if logs else UNSET)
    read_timeout = settings.stream_idle_timeout
    if deadline is not None:
        read_timeout = max(0.05, min(read_timeout, deadline - settings.clock()))
    return OpenStream(state.bases[Operation.STREAM], request, read_timeout)


def _stream_phase(
    state: HandleState, settings: QueueSettings, logs: bool, deadline: float | None, progress: _Progress
) -> Flow[QueueStatus | None]:
    opened = yield from exchange(_open_stream(state, settings, logs, deadline))
    if isinstance(opened, NoAnswer) or opened.status_code != 200:
        yield CloseStream()
        if isinstance(opened, Answer) and opened.status_code in (401, 403):
            raise error_from_status(opened.status_code, opened.headers, opened.content, state.request_id)
        what = opened.error if isinstance(opened, NoAnswer) else f"HTTP {opened.status_code}"
        logger.debug("request %s: status stream unavailable (%s); polling", state.request_id, what)
        return None
    decoder = SSEDecoder()
    completed: QueueStatus | None = None
    while completed is None and (deadline is None or settings.clock() < deadline):
        line = yield from read_line()
        if isinstance(line, str):
            item = decoder.feed(line)
            if item is None or isinstance(item, KeepAlive):
                continue
            event = item
        else:
            ended = decoder.flush() if line is None else None
            if ended is None:
                what = line.error if isinstance(line, NoAnswer) else "the stream ended before COMPLETED"
                logger.debug("request %s: status stream dropped (%s); polling", state.request_id, what)
                break
            event = ended
        body = _event_body(event)
        if body is None or (not progress.report and body.get("status") != QueueStatusValue.COMPLETED.value):
            continue
        model = _decode_event(body, state.request_id)
        if model is None:
            continue
        if progress.report and (status := progress.update(model, cumulative_logs=False)) is not None:
            yield Notify(status)
        if model.status is QueueStatusValue.COMPLETED:
            completed = model
    yield CloseStream(drain=completed is not None)
    return completed


def _poll_phase(
    state: HandleState, settings: QueueSettings, logs: bool, deadline: float | None, progress: _Progress
) -> Flow[QueueStatus | None]:
    """Poll until COMPLETED; returns the model, or None when the deadline passes."""
    interval = settings.poll.initial
    while True:
        attempted = yield from call_with_retries(_status_call(state, logs), settings, deadline, until_deadline=True)
        if attempted.out_of_time and _is_failure(attempted.outcome):
            progress.last_failure = attempted.outcome
            return None
        model = _parsed_status(_answered(attempted.outcome, state.request_id, Operation.STATUS), state.request_id)
        if progress.report and (status := progress.update(model, cumulative_logs=True)) is not None:
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


def _failed_result(state: HandleState, settings: QueueSettings, error: str, error_type: str | None) -> Flow[EditResult]:
    """A request COMPLETED with an error: its result carries the error's own status (fal: "the same error"). One
    look, without retries (the failure is final), to raise the most specific error: a start timeout or a 422."""
    once = QueueSettings(settings.base_url, RetryPolicy.disabled(), settings.poll, settings.clock, settings.random)
    attempted = yield from call_with_retries(queue_call(Operation.RESULT, state), once)
    outcome = attempted.outcome
    if isinstance(outcome, Answer):
        if outcome.status_code == 200:
            return _result_from(outcome, state)
        if outcome.status_code >= 400:
            mapped = error_from_status(outcome.status_code, outcome.headers, outcome.content, state.request_id)
            if isinstance(mapped, (StartTimeoutError, ValidationError)):
                raise mapped
    raise RequestFailedError(state.request_id, error, error_type)


def _still_in_progress(outcome: Answer | NoAnswer, request_id: str) -> bool:
    return (
        isinstance(outcome, Answer)
        and outcome.status_code >= 400
        and isinstance(
            error_from_status(outcome.status_code, outcome.headers, outcome.content, request_id), ResultNotReadyError
        )
    )


@dataclass(frozen=True, slots=True)
class WaitOptions:
    """How to wait (``Handle.wait``'s arguments, checked).

    Attributes:
        timeout: Seconds until the deadline, or None for none.
        logs: Ask the server for logs.
        use_stream: Follow the status stream first.
        cancel_on_timeout: Cancel the request (best effort) when the deadline passes.
        report: Notify each new status. Without a listener (no ``on_update``) nothing is notified, and status
            stream events other than COMPLETED are not parsed into models: no one would see them.
    """

    timeout: float | None
    logs: bool = True
    use_stream: bool = True
    cancel_on_timeout: bool = True
    report: bool = True


def wait_flow(state: HandleState, settings: QueueSettings, options: WaitOptions) -> Flow[EditResult]:
    """Wait for the request to complete, then fetch its result.

    The status stream is followed first (when ``options.use_stream``); if it cannot be opened or drops, status is
    polled on ``settings.poll``'s schedule. The result is fetched as soon as COMPLETED is seen. Past the timeout the
    request is cancelled (best effort, if ``options.cancel_on_timeout``) and ``WaitTimeoutError`` raised.

    Raises:
        RequestFailedError: COMPLETED with an error.
        RequestCancelledError: the request was cancelled.
        WaitTimeoutError: the deadline passed.
        APIError: a call failed after the retries the policy allows.
    """
    timeout, logs, cancel = options.timeout, options.logs, options.cancel_on_timeout
    deadline = None if timeout is None else settings.clock() + timeout
    progress = _Progress(report=options.report)
    pause = settings.poll.initial
    completed: QueueStatus | None = None
    if options.use_stream:
        completed = yield from _stream_phase(state, settings, logs, deadline, progress)
    while True:
        if completed is None:
            completed = yield from _poll_phase(state, settings, logs, deadline, progress)
        if completed is None:
            return (yield from _give_up(state, settings, timeout or 0.0, cancel, progress.last_failure))
        error = completed.error if isinstance(completed.error, str) else None
        error_type = completed.error_type if isinstance(completed.error_type, str) else None
        if error or error_type:
            if error_type and "cancel" in error_type.lower():
                raise RequestCancelledError(state.request_id, error or "")
            return (yield from _failed_result(state, settings, error or error_type or "failed", error_type))
        call = queue_call(Operation.RESULT, state)
        attempted = yield from call_with_retries(call, settings, deadline, until_deadline=True)
        if attempted.out_of_time:
            return (yield from _give_up(state, settings, timeout or 0.0, cancel, attempted.outcome))
        if not _still_in_progress(attempted.outcome, state.request_id):
            return _result_from(attempted.outcome, state)
        # A proxy may say COMPLETED a moment before the result is readable: pause, then look again.
        completed = None
        yield Sleep(pause if deadline is None else max(0.0, min(pause, deadline - settings.clock())))
        pause = settings.poll.next_interval(pause)


# --- saving -------------------------------------------------------------------------------------------------------


def _downloaded(outcome: Answer | NoAnswer, url: str, request_id: str) -> tuple[str | None, bytes]:
    if isinstance(outcome, NoAnswer):
        raise error_from_no_answer(outcome, request_id=request_id, operation=f"downloading {url}", submit=False)
    if outcome.status_code in (403, 404, 410):
        raise NotFoundError(
            f"image {url} is gone",
            status_code=outcome.status_code,
            request_id=request_id,
            hint="fal's result URLs expire; save results as soon as they complete",
        )
    if outcome.status_code >= 400:
        raise UnexpectedResponseError(f"downloading {url} answered {outcome.status_code}", request_id=request_id)
    content_type = next((v for k, v in outcome.headers.items() if k.lower() == "content-type"), None)
    return content_type, outcome.content


def save_flow(result: EditResult, directory: str | Path) -> Flow[list[Path]]:
    """Write every image of ``result`` into ``directory`` as ``<request_id>-<n>.<ext>``, atomically, one by one.

    Data URIs are decoded here; URLs are downloaded (``Download``, without credentials). Returns the paths written.
    """
    target = Path(directory)
    written: list[Path] = []
    for index, image in enumerate(result.images):
        inline = inline_image(image)
        if inline is None:
            outcome = yield from exchange(Download(image.url, result.request_id))
            inline = _downloaded(outcome, image.url, result.request_id)
        content_type, data = inline
        path = target / image_file_name(result.request_id, index, data, content_type or image.content_type)
        write_atomically(path, data)
        written.append(path)
    return written
