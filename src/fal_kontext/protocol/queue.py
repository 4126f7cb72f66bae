"""The queue's calls as flows: submit (with the recovery of a lost answer), status, result and cancel.

Each flow yields commands (``commands``) and returns the verb's value or raises a typed error. Every request goes
through the one send loop (``send``); the requests are built by the generated operations' ``request_kwargs`` and
answers parsed by their ``parse_response`` (found through the spec, ``spec.operation_module``).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any, TypeVar

from fal_kontext_api.models import (
    CancelResponse,
    CancelStatus,
    LogsFlag,
    QueuePriority,
    QueueStatus,
    QueueSubmitResponse,
)
from fal_kontext_api.types import UNSET

from fal_kontext.endpoints import Endpoint
from fal_kontext.errors import (
    APIConnectionError,
    APIError,
    FieldProblem,
    InvalidInputError,
    KontextError,
    UnexpectedResponseError,
)
from fal_kontext.option_checks import has_control_character
from fal_kontext.results import EditResult, read_output
from fal_kontext.spec import endpoint_specs, operation_module, output_schemas
from fal_kontext.status import Status, logs_of, status_from_model

from .answers import answered, error_of, json_or_none
from .commands import INTERRUPTS, Answer, Call, Flow, NoAnswer, Operation, Sleep, perform
from .inputs import input_model
from .recovery import Action, JobQuery, Recovery, SubmitAttempt, SubmitOutcome, attempt_of, classify, recover_flow
from .send import Sent, send
from .settings import Settings
from .urls import base_for_returned_url

__all__ = [
    "HandleState",
    "SubmitOptions",
    "cancel_flow",
    "cancel_quietly",
    "cancelling_on_interrupt",
    "parsed_status",
    "queue_call",
    "resubmit_flow",
    "result_flow",
    "result_of",
    "resume_state",
    "sent_call",
    "status_call",
    "status_flow",
    "submit_flow",
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
        submitted_at: When this client submitted it (monotonic seconds), or None (a resumed or adopted request).
    """

    request_id: str
    endpoint: Endpoint | None
    app: str
    bases: Mapping[Operation, str]
    submitted_at: float | None = None

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


def resume_state(request_id: str, settings: Settings, endpoint: Endpoint | None = None) -> HandleState:
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


def queue_call(
    operation: Operation, state: HandleState, settings: Settings, deadline: float | None = None, **kwargs: Any
) -> Call:
    """The call of a queue operation for a request (``kwargs``: the operation's optional parameters), bounded by
    ``deadline`` (a time on ``settings.clock``, or None)."""
    module = operation_module(operation.value)
    request = module.request_kwargs(*state.path_arguments(), **kwargs)
    timeout = None if deadline is None else max(0.0, deadline - settings.clock())
    return Call(operation, state.bases[operation], state.request_id, request, module.parse_response, timeout)


def _text(content: bytes) -> str:
    return content.decode("utf-8", "replace")[:500]


def _logging_retries(what: str, request_id: str | None) -> Any:
    about = f" for {request_id}" if request_id else ""

    def on_retry(retry: int, delay: float, _outcome: Answer | NoAnswer) -> None:
        logger.debug("retrying %s%s in %.2f s (retry %d)", what, about, delay, retry)

    return on_retry


def sent_call(
    call: Call, settings: Settings, deadline: float | None = None, *, until_deadline: bool = False
) -> Flow[Sent]:
    """``call`` through the send loop: idempotent unless it is a submit; a result's 400 "still in progress" is an
    answer, not a failure."""
    return (
        yield from send(
            call,
            settings.pacing,
            idempotent=call.operation is not Operation.SUBMIT,
            deadline=deadline,
            until_deadline=until_deadline,
            settled=(lambda answer: answer.status_code == 400) if call.operation is Operation.RESULT else None,
            on_retry=_logging_retries(call.operation.value, call.request_id),
        )
    )


# --- submit -------------------------------------------------------------------------------------------------------


def submit_flow(
    endpoint: Endpoint,
    fields: Mapping[str, Any],
    options: SubmitOptions,
    settings: Settings,
    deadline: float | None = None,
) -> Flow[HandleState]:
    """Submit ``fields`` (checked) to ``endpoint``; returns the ``HandleState``. Retried only if the request never
    left. An answer lost after sending is recovered as ``recovery`` decides: the job is adopted (from the id
    received, or found in fal's request list), or sent again only once the list shows it was not queued; otherwise
    ``SubmitOutcomeUnknownError``, at the latest at ``deadline``. Never sent twice."""
    module = operation_module(endpoint.operation_id)
    request = module.request_kwargs(body=input_model(endpoint, fields), **options.kwargs())
    query = JobQuery(endpoint.value, dict(fields), settings.wall())
    resends = 0
    while True:
        sent_at = settings.clock()
        timeout = None if deadline is None else max(0.0, deadline - sent_at)
        call = Call(Operation.SUBMIT, settings.base_url, None, request, module.parse_response, timeout)
        sent = yield from sent_call(call, settings, deadline)
        state = _submitted(sent.outcome, endpoint, settings)
        if state is not None:
            return replace(state, submitted_at=sent_at)
        recovery = yield from recover_flow(
            attempt_of(sent.outcome),
            query,
            list_url=settings.requests_list,
            policy=settings.recovery,
            clock=settings.clock,
            random=settings.random,
            may_resend=resends < settings.retry.max_retries,
            deadline=deadline,
        )
        if recovery.action is Action.ADOPT and recovery.request_id is not None:
            logger.warning("submit to %s: adopted request %s (%s)", endpoint.value, recovery.request_id, recovery.why)
            return resume_state(recovery.request_id, settings, endpoint)
        if recovery.action is not Action.RESEND:
            raise _submit_error(sent.outcome, recovery, endpoint, resends)
        resends += 1
        pause = settings.retry.backoff(resends, settings.random)
        if deadline is not None and settings.clock() + pause >= deadline:
            raise _submit_error(sent.outcome, Recovery(Action.RAISE, why=recovery.why), endpoint, resends - 1)
        logger.warning("submit to %s: sending it again (%s)", endpoint.value, recovery.why)
        yield from perform(Sleep(pause))


def resubmit_flow(  # noqa: PLR0913 - submit_flow's arguments and when the earlier send was
    endpoint: Endpoint,
    fields: Mapping[str, Any],
    options: SubmitOptions,
    sent_at: float,
    settings: Settings,
    *,
    deadline: float | None = None,
) -> Flow[HandleState]:
    """``submit_flow`` for a submit that may already have been sent once, at ``sent_at`` (Unix seconds, taken before
    that send), whose answer never arrived (the process was killed mid-submit): the job is looked up in fal's request
    list as a dropped answer is, adopted when listed, and submitted only when the list proves it was not queued.
    Raises ``SubmitOutcomeUnknownError`` when the list cannot tell (none, lookups off or failing, or ``deadline``)."""
    query = JobQuery(endpoint.value, dict(fields), sent_at)
    # All that is known of the earlier attempt is that it may have been sent: a dropped answer.
    recovery = yield from recover_flow(
        SubmitAttempt(),
        query,
        list_url=settings.requests_list,
        policy=settings.recovery,
        clock=settings.clock,
        random=settings.random,
        may_resend=True,
        deadline=deadline,
    )
    if recovery.action is Action.ADOPT and recovery.request_id is not None:
        logger.warning("resubmit to %s: adopted request %s (%s)", endpoint.value, recovery.request_id, recovery.why)
        return resume_state(recovery.request_id, settings, endpoint)
    if recovery.error is not None:
        raise recovery.error
    logger.info("resubmit to %s: not queued before, sending it (%s)", endpoint.value, recovery.why)
    return (yield from submit_flow(endpoint, fields, options, settings, deadline))


def _submit_error(outcome: Answer | NoAnswer, recovery: Recovery, endpoint: Endpoint, resends: int) -> KontextError:
    """The error of a submit that was not recovered: ``SubmitOutcomeUnknownError`` when the job may exist, the
    failure's own error when nothing was queued (a refusal, or the request list showed no job)."""
    if isinstance(outcome, Answer) and outcome.status_code < 400:
        cause: APIError = UnexpectedResponseError(
            f"submit answered {outcome.status_code} without a request_id", body=_text(outcome.content)
        )
    else:
        cause = error_of(outcome, None, Operation.SUBMIT.value, submit=True)
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


def _submitted(outcome: Answer | NoAnswer, endpoint: Endpoint, settings: Settings) -> HandleState | None:
    """The state of the queued request if ``outcome`` is a submit answer naming it, else None."""
    if isinstance(outcome, NoAnswer) or outcome.status_code >= 400:
        return None
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


# --- status, result, cancel ---------------------------------------------------------------------------------------


def status_call(state: HandleState, settings: Settings, logs: bool, deadline: float | None = None) -> Call:
    """The status call of ``state``'s request (with its logs when ``logs``)."""
    return queue_call(Operation.STATUS, state, settings, deadline, logs=LogsFlag.ONE if logs else UNSET)


def parsed_status(answer: Answer, request_id: str) -> QueueStatus:
    """The ``QueueStatus`` of a status answer. Raises ``UnexpectedResponseError`` for another body."""
    if not isinstance(answer.parsed, QueueStatus):
        raise UnexpectedResponseError(
            f"status answered {answer.status_code} with a body that is not a QueueStatus",
            request_id=request_id,
            body=_text(answer.content),
        )
    return answer.parsed


def status_flow(state: HandleState, settings: Settings, *, logs: bool, deadline: float | None = None) -> Flow[Status]:
    """One status request (with retries); returns the status with all its logs."""
    sent = yield from sent_call(status_call(state, settings, logs, deadline), settings, deadline)
    model = parsed_status(answered(sent.outcome, state.request_id, Operation.STATUS.value), state.request_id)
    return status_from_model(model, tuple(logs_of(model)))


def result_of(outcome: Answer | NoAnswer, state: HandleState) -> EditResult:
    """The result in a result answer; raises its typed error, or ``UnexpectedResponseError`` when the body is not
    the endpoint's output."""
    answer = answered(outcome, state.request_id, Operation.RESULT.value)
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


def result_flow(state: HandleState, settings: Settings, deadline: float | None = None) -> Flow[EditResult]:
    """Fetch the result. Raises ``ResultNotReadyError`` if the request has not completed."""
    sent = yield from sent_call(queue_call(Operation.RESULT, state, settings, deadline), settings, deadline)
    return result_of(sent.outcome, state)


def cancel_flow(state: HandleState, settings: Settings, deadline: float | None = None) -> Flow[CancelStatus]:
    """Ask the server to cancel; returns the ``CancelStatus`` (``ALREADY_COMPLETED`` is an answer, not an error)."""
    sent = yield from sent_call(queue_call(Operation.CANCEL, state, settings, deadline), settings, deadline)
    outcome = sent.outcome
    if (
        isinstance(outcome, Answer)
        and outcome.status_code in (202, 200, 400)
        and isinstance(outcome.parsed, CancelResponse)
    ):
        return outcome.parsed.status
    answer = answered(outcome, state.request_id, Operation.CANCEL.value)
    data = json_or_none(answer.content)
    if isinstance(data, dict) and data.get("status") in {s.value for s in CancelStatus}:
        return CancelStatus(data["status"])
    if answer.status_code == 200 and isinstance(data, dict) and isinstance(data.get("success"), bool):
        # fal's per-endpoint queue OpenAPI (https://fal.ai/api/openapi/queue/openapi.json?endpoint_id=<id>) answers
        # 200 {"success": bool}; its prose (https://fal.ai/docs/inference-api/queue/cancel) 202/400 with a status.
        # A cancel that did not take for a known request is, in the prose, one that already completed.
        return CancelStatus.OK if data["success"] else CancelStatus.ALREADY_COMPLETED
    raise UnexpectedResponseError(f"cancel answered {answer.status_code} without a status", request_id=state.request_id)


def cancel_quietly(state: HandleState, settings: Settings, deadline: float | None = None) -> Flow[None]:
    """Cancel, logging rather than raising a failure (the caller is already on its way out)."""
    try:
        yield from cancel_flow(state, settings, deadline)
        logger.info("cancelled request %s", state.request_id)
    except KontextError as err:
        logger.warning("could not cancel request %s: %s", state.request_id, err)


def cancelling_on_interrupt(flow: Flow[_T], state: HandleState, settings: Settings) -> Flow[_T]:
    """``flow``, cancelling the request first when the caller interrupts it (Ctrl-C, or the task is cancelled:
    the executor throws the interruption in), then letting the interruption go on."""
    try:
        return (yield from flow)
    except INTERRUPTS:
        yield from cancel_quietly(state, settings)
        raise
