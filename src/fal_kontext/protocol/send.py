"""The one send loop: every HTTP call of the protocol (queue calls, uploads, the synchronous endpoint, the request
list) is sent here, and retried here only as ``RetryPolicy`` allows for what it is (idempotent or not) and as the
caller's deadline leaves time for. Nothing else in the client retries."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from fal_kontext.retry import Failure, RetryPolicy

from .answers import lower_headers
from .commands import Answer, Call, Download, Flow, HttpGet, NoAnswer, Send, Sleep, perform

__all__ = ["Pacing", "Sent", "failure_of", "send"]

# The commands that send one HTTP request.
Request = Call | Send | HttpGet | Download


@dataclass(frozen=True, slots=True)
class Pacing:
    """How the loop is paced: the retry policy, its jitter source and the monotonic clock deadlines are read on."""

    retry: RetryPolicy
    random: Callable[[], float]
    clock: Callable[[], float]


@dataclass(frozen=True, slots=True)
class Sent:
    """What the loop ended with: the last outcome; ``out_of_time`` when the deadline stopped it before a retry."""

    outcome: Answer | NoAnswer
    out_of_time: bool = False

    @property
    def answer(self) -> Answer | None:
        """The answer when it is one the caller takes (not a failure), else None."""
        return self.outcome if isinstance(self.outcome, Answer) and self.outcome.status_code < 400 else None


def failure_of(outcome: Answer | NoAnswer) -> Failure:
    """What went wrong with one attempt, as the retry policy sees it."""
    if isinstance(outcome, NoAnswer):
        return Failure(None, {}, outcome.reached_server, outcome.certificate_rejected)
    return Failure(outcome.status_code, lower_headers(outcome.headers))


def _failed(outcome: Answer | NoAnswer, settled: Callable[[Answer], bool] | None) -> bool:
    if isinstance(outcome, NoAnswer):
        return True
    return outcome.status_code >= 400 and not (settled is not None and settled(outcome))


def send(  # noqa: PLR0913 - what to send, how it may be retried, until when: each a keyword past the request
    request: Request,
    pacing: Pacing,
    *,
    idempotent: bool,
    deadline: float | None = None,
    until_deadline: bool = False,
    settled: Callable[[Answer], bool] | None = None,
    on_retry: Callable[[int, float, Answer | NoAnswer], None] | None = None,
    give_up: Callable[[Answer | NoAnswer], bool] | None = None,
) -> Flow[Sent]:
    """Send ``request``, retrying failures the policy allows; returns what it ended with (it never raises: what a
    failure means is the caller's to say).

    Args:
        request: The HTTP call.
        pacing: The retry policy, its jitter and the clock.
        idempotent: Whether sending it again can do no harm. A call that may start a paid run (a submit, the
            synchronous endpoint) is sent again only when it certainly did not (``RetryPolicy.is_retryable``).
        deadline: A monotonic time the loop never sleeps past: it returns ``out_of_time`` instead.
        until_deadline: With a deadline, transient failures are retried until it, not ``max_retries`` times (what
            waiting does for its idempotent status and result calls).
        settled: An error answer that is an answer, not a failure (the result's 400 "still in progress").
        on_retry: Told of each retry before its pause: the retry's number, the pause and the failure (for logs).
        give_up: Told of each failure; True ends the loop with it, however many retries the policy would allow
            (the request list's outage rule, ``RecoveryPolicy.outage_after``).
    """
    retry = 0
    while True:
        outcome = yield from perform(request)
        if not _failed(outcome, settled):
            return Sent(outcome)
        retry += 1
        if give_up is not None and give_up(outcome):
            return Sent(outcome)
        delay = pacing.retry.delay_before_retry(
            retry,
            failure_of(outcome),
            pacing.random,
            idempotent=idempotent,
            until_deadline=until_deadline and deadline is not None,
        )
        if delay is None:
            return Sent(outcome)
        if deadline is not None and pacing.clock() + delay >= deadline:
            return Sent(outcome, out_of_time=True)
        if on_retry is not None:
            on_retry(retry, delay, outcome)
        yield from perform(Sleep(delay))
