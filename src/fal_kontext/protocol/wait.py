"""Waiting for a request: the status stream first, polling when it is unavailable, then the result; all bounded by
one deadline.

The status stream (SSE) is followed when asked; if it cannot be opened or drops, status is polled. The result is
fetched as soon as COMPLETED is seen. At the deadline the request is cancelled (best effort, within
``GIVE_UP_GRACE``) and ``WaitTimeoutError`` raised.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from typing import Any

from fal_kontext_api.models import CancelStatus, LogsFlag, Metrics, QueueStatus, QueueStatusEvent, QueueStatusValue
from fal_kontext_api.types import UNSET

from fal_kontext.errors import (
    KontextError,
    RequestCancelledError,
    RequestFailedError,
    ResultNotReadyError,
    StartTimeoutError,
    ValidationError,
    WaitTimeoutError,
)
from fal_kontext.results import EditResult
from fal_kontext.retry import RetryPolicy, parse_retry_after
from fal_kontext.spec import operation_module
from fal_kontext.sse import KeepAlive, SSEDecoder
from fal_kontext.status import RequestMetrics, Status, logs_of, status_from_model

from .answers import answered, error_from_status, error_of, json_or_none, lower_headers
from .commands import Answer, CloseStream, Flow, NoAnswer, Notify, OpenStream, Operation, ReadLine, Sleep, perform
from .polling import PollSchedule, Seen
from .queue import HandleState, cancel_flow, parsed_status, queue_call, result_flow, result_of, sent_call, status_call
from .settings import Settings

__all__ = ["GIVE_UP_GRACE", "WaitOptions", "stream_flow", "wait_flow"]

logger = logging.getLogger("fal_kontext")

# Ours: how often a result that COMPLETED yet answers "still in progress" is asked again (a proxy lagging behind).
_NOT_READABLE_YET = PollSchedule()
# Ours: seconds past the deadline a wait may spend on its way out: cancelling the request, and fetching the result
# of one that completed meanwhile (it is paid for). A verb thus returns within its timeout plus this.
GIVE_UP_GRACE = 0.75


@dataclass(frozen=True, slots=True)
class WaitOptions:
    """How to wait (``Handle.wait``'s arguments, checked).

    Attributes:
        deadline: When the wait ends (a time on the settings' clock), or None for never.
        timeout: The seconds it was given (for the error's message), or None.
        logs: Ask the server for logs.
        use_stream: Follow the status stream first.
        cancel_on_timeout: Cancel the request (best effort) when the deadline passes.
        report: Notify each new status. Without a listener (no ``on_update``) nothing is notified, and status
            stream events other than COMPLETED are not parsed into models: no one would see them.
    """

    deadline: float | None
    timeout: float | None = None
    logs: bool = True
    use_stream: bool = True
    cancel_on_timeout: bool = True
    report: bool = True


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
    state: HandleState, settings: Settings, options: WaitOptions, last_failure: Answer | NoAnswer | None
) -> Flow[EditResult]:
    """The deadline passed: cancel (best effort, within ``GIVE_UP_GRACE``) and raise ``WaitTimeoutError`` (from the
    last failed call, if the deadline passed while retrying one). If the request completed in the meantime (cancel
    answers ALREADY_COMPLETED), its result is paid for: return it rather than lose it."""
    cancelled = False
    if options.cancel_on_timeout:
        grace = settings.clock() + GIVE_UP_GRACE
        try:
            outcome = yield from cancel_flow(state, settings, grace)
        except KontextError as err:
            logger.warning("could not cancel request %s after the wait deadline: %s", state.request_id, err)
        else:
            if outcome is CancelStatus.ALREADY_COMPLETED:
                return (yield from result_flow(state, settings, grace))
            cancelled = outcome in (CancelStatus.OK, CancelStatus.CANCELLATION_REQUESTED)
    cause = None if last_failure is None else error_of(last_failure, state.request_id, Operation.STATUS.value)
    raise WaitTimeoutError(state.request_id, options.timeout or 0.0, cancelled=cancelled) from cause


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
    state: HandleState, settings: Settings, *, logs: bool, deadline: float | None = None
) -> Flow[QueueStatus | None]:
    """Follow the status stream, notifying each status; returns the COMPLETED ``QueueStatus``, or None if the stream
    could not be opened or ended early (the caller falls back to polling). Raises ``AuthenticationError`` on 401/403.
    A ``deadline`` ends it with None too (the caller decides what a deadline means)."""
    return (yield from _stream_phase(state, settings, logs, deadline, _Progress()))


def _open_stream(state: HandleState, settings: Settings, logs: bool, deadline: float | None) -> OpenStream:
    module = operation_module(Operation.STREAM.value)
    request = module.request_kwargs(*state.path_arguments(), logs=LogsFlag.ONE if logs else UNSET)
    read_timeout = settings.stream_idle_timeout
    if deadline is not None:
        read_timeout = max(0.05, min(read_timeout, deadline - settings.clock()))
    return OpenStream(state.bases[Operation.STREAM], request, read_timeout)


def _stream_phase(
    state: HandleState, settings: Settings, logs: bool, deadline: float | None, progress: _Progress
) -> Flow[QueueStatus | None]:
    opened = yield from perform(_open_stream(state, settings, logs, deadline))
    if isinstance(opened, NoAnswer) or opened.status_code != 200:
        yield from perform(CloseStream())
        if isinstance(opened, Answer) and opened.status_code in (401, 403):
            raise error_from_status(opened.status_code, opened.headers, opened.content, state.request_id)
        what = opened.error if isinstance(opened, NoAnswer) else f"HTTP {opened.status_code}"
        logger.debug("request %s: status stream unavailable (%s); polling", state.request_id, what)
        return None
    decoder = SSEDecoder()
    completed: QueueStatus | None = None
    while completed is None and (deadline is None or settings.clock() < deadline):
        line = yield from perform(ReadLine())
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
            yield from perform(Notify(status))
        if model.status is QueueStatusValue.COMPLETED:
            completed = model
    yield from perform(CloseStream(drain=completed is not None))
    return completed


def _seen(model: QueueStatus) -> Seen:
    """What a polling schedule reads of a status."""
    position = model.queue_position if isinstance(model.queue_position, int) else None
    metrics = RequestMetrics.from_model(model.metrics) if isinstance(model.metrics, Metrics) else None
    logs = tuple((entry.timestamp, entry.message) for entry in logs_of(model))
    return Seen(model.status.value, position, logs, metrics.inference_time if metrics else None)


def _poll_phase(
    state: HandleState, settings: Settings, logs: bool, deadline: float | None, progress: _Progress
) -> Flow[QueueStatus | None]:
    """Poll on the client's schedule (``settings.poll``) until COMPLETED; returns the model, or None when the
    deadline passes."""
    job = settings.poll.job(state.endpoint.value if state.endpoint else None, state.submitted_at)
    while True:
        if deadline is not None and settings.clock() >= deadline:
            return None
        call = status_call(state, settings, logs, deadline)
        sent = yield from sent_call(call, settings, deadline, until_deadline=True)
        if sent.out_of_time and sent.answer is None:
            progress.last_failure = sent.outcome
            return None
        answer = answered(sent.outcome, state.request_id, Operation.STATUS.value)
        model = parsed_status(answer, state.request_id)
        job.seen(_seen(model), settings.clock(), settings.wall())
        if progress.report and (status := progress.update(model, cumulative_logs=True)) is not None:
            yield from perform(Notify(status))
        if model.status is QueueStatusValue.COMPLETED:
            return model
        # A Retry-After on a status answer (a proxy asking to slow down) is honoured too.
        delay = max(job.delay(settings.clock()), parse_retry_after(lower_headers(answer.headers)) or 0.0)
        if deadline is not None:
            remaining = deadline - settings.clock()
            if remaining <= 0:
                return None
            delay = min(delay, remaining)
        yield from perform(Sleep(delay))


def _failed_result(state: HandleState, settings: Settings, error: str, error_type: str | None) -> Flow[EditResult]:
    """A request COMPLETED with an error: its result carries the error's own status (fal: "the same error"). One
    look, without retries (the failure is final), to raise the most specific error: a start timeout or a 422."""
    once = replace(settings, retry=RetryPolicy.disabled())
    sent = yield from sent_call(queue_call(Operation.RESULT, state, once), once)
    outcome = sent.outcome
    if isinstance(outcome, Answer):
        if outcome.status_code == 200:
            return result_of(outcome, state)
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


def wait_flow(state: HandleState, settings: Settings, options: WaitOptions) -> Flow[EditResult]:
    """Wait for the request to complete, then fetch its result.

    The status stream is followed first (when ``options.use_stream``); if it cannot be opened or drops, status is
    polled on the client's schedule (``settings.poll``). The result is fetched as soon as COMPLETED is seen. Past the
    deadline the request is cancelled (best effort, if ``options.cancel_on_timeout``) and ``WaitTimeoutError``
    raised.

    Raises:
        RequestFailedError: COMPLETED with an error.
        RequestCancelledError: the request was cancelled.
        WaitTimeoutError: the deadline passed.
        APIError: a call failed after the retries the policy allows.
    """
    deadline, logs = options.deadline, options.logs
    progress = _Progress(report=options.report)
    pause = _NOT_READABLE_YET.initial
    completed: QueueStatus | None = None
    if options.use_stream:
        completed = yield from _stream_phase(state, settings, logs, deadline, progress)
    while True:
        if completed is None:
            completed = yield from _poll_phase(state, settings, logs, deadline, progress)
        if completed is None:
            return (yield from _give_up(state, settings, options, progress.last_failure))
        error = completed.error if isinstance(completed.error, str) else None
        error_type = completed.error_type if isinstance(completed.error_type, str) else None
        if error or error_type:
            if error_type and "cancel" in error_type.lower():
                raise RequestCancelledError(state.request_id, error or "")
            return (yield from _failed_result(state, settings, error or error_type or "failed", error_type))
        call = queue_call(Operation.RESULT, state, settings, deadline)
        sent = yield from sent_call(call, settings, deadline, until_deadline=True)
        if sent.out_of_time:
            return (yield from _give_up(state, settings, options, sent.outcome))
        if not _still_in_progress(sent.outcome, state.request_id):
            return result_of(sent.outcome, state)
        # A proxy may say COMPLETED a moment before the result is readable: pause, then look again.
        completed = None
        yield from perform(Sleep(pause if deadline is None else max(0.0, min(pause, deadline - settings.clock()))))
        pause = _NOT_READABLE_YET.next_interval(pause)
