"""When to retry a failed HTTP call, and how long to wait first: one frozen policy object, pure decisions.

Reads (status, status stream, result) and cancel are idempotent: they are retried on connection errors, 408, 429
and 5xx. A submit creates a paid job, so it is retried only when the server certainly did not queue it: the
connection could not be opened, or the server refused it with 429 (a refusal, RFC 6585). After a 5xx, a read
timeout or a dropped connection the job may be queued, so it is never sent again: a job is never submitted twice.
"""

from __future__ import annotations

import email.utils
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from .errors import FieldProblem, InvalidInputError

__all__ = ["DEFAULT_RETRY", "Failure", "RetryPolicy", "parse_retry_after"]


@dataclass(frozen=True, slots=True)
class Failure:
    """What went wrong with one attempt, as far as retrying is concerned.

    Attributes:
        status_code: The HTTP status, or None when there was no answer.
        headers: Response headers (lower-case names), empty without an answer.
        reached_server: False only when the request certainly never left this machine (connect failed).
        permanent: Asking again cannot help (the server's certificate did not verify): never retried.
    """

    status_code: int | None = None
    headers: Mapping[str, str] = field(default_factory=dict)
    reached_server: bool = True
    permanent: bool = False


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How failed calls are retried. Frozen: pass another one to change it, ``RetryPolicy.disabled()`` to stop.

    The n-th retry (n = 1, 2, ...) waits ``min(initial_delay * 2**(n-1), max_delay)``, spread by ``± jitter`` (a
    fraction), unless the answer carries ``Retry-After`` of at most ``max_retry_after`` seconds, which is used as is.
    A longer ``Retry-After`` ends the retries (the caller gets a ``RateLimitError`` with ``retry_after``).

    Attributes:
        max_retries: Retries after the first attempt (0 disables retrying).
        initial_delay: Seconds before the first retry.
        max_delay: Cap of the exponential backoff.
        jitter: Relative spread of each delay, 0 to 1.
        max_retry_after: Largest ``Retry-After`` honoured by waiting.
        retry_statuses: HTTP statuses retried for idempotent operations.
    """

    max_retries: int = 4
    initial_delay: float = 0.25
    max_delay: float = 8.0
    jitter: float = 0.25
    max_retry_after: float = 60.0
    retry_statuses: frozenset[int] = frozenset({408, 429, 500, 502, 503, 504})

    def __post_init__(self) -> None:
        problems: list[FieldProblem] = []
        if not isinstance(self.max_retries, int) or isinstance(self.max_retries, bool) or self.max_retries < 0:
            problems.append(FieldProblem("retry.max_retries", self.max_retries, "must be a whole number >= 0"))
        for name in ("initial_delay", "max_delay", "max_retry_after"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < math.inf:
                problems.append(FieldProblem(f"retry.{name}", value, "must be a finite number of seconds >= 0"))
        if isinstance(self.jitter, bool) or not isinstance(self.jitter, (int, float)) or not 0 <= self.jitter <= 1:
            problems.append(FieldProblem("retry.jitter", self.jitter, "must be between 0 and 1"))
        if problems:
            raise InvalidInputError(problems)

    @classmethod
    def disabled(cls) -> RetryPolicy:
        """A policy that never retries."""
        return cls(max_retries=0)

    def is_retryable(self, failure: Failure, *, idempotent: bool) -> bool:
        """Whether this failure may be retried at all (ignoring the attempt count). A call that is not idempotent (a
        submit, the synchronous endpoint: each may start a paid run) is sent again only when it cannot have run."""
        if failure.permanent:
            return False
        if not failure.reached_server:
            return True
        if failure.status_code is None:
            # Sent, then no answer: a submit may have been queued (and billed), so it is never sent again.
            return idempotent
        if failure.headers.get("x-fal-retryable", "").lower() == "false":
            return False
        if not idempotent:
            # A 429 refuses the request, so nothing was queued; any other failure may have queued the job.
            return failure.status_code == 429
        if failure.status_code == 504 and failure.headers.get("x-fal-request-timeout-type") == "user":
            return False  # the user's own start deadline passed; asking again cannot change that
        return failure.status_code in self.retry_statuses

    def backoff(self, retry: int, random: Callable[[], float]) -> float:
        """Delay before the ``retry``-th retry (1-based) without a server hint; ``random()`` returns [0, 1)."""
        base = min(self.initial_delay * 2.0 ** (retry - 1), self.max_delay)
        return max(0.0, base * (1 + self.jitter * (2 * random() - 1)))

    def delay_before_retry(
        self,
        retry: int,
        failure: Failure,
        random: Callable[[], float],
        *,
        idempotent: bool,
        until_deadline: bool = False,
    ) -> float | None:
        """Seconds to wait before the ``retry``-th retry (1-based), or None to give up and raise.

        Args:
            retry: 1 for the first retry, 2 for the second, ...
            failure: What went wrong.
            random: Source of jitter, returning a float in [0, 1).
            idempotent: Whether sending the call again can do no harm (reads, cancel, uploads); a submit cannot.
            until_deadline: The caller has a deadline and stops at it: ``max_retries`` does not end the retries
                (a disabled policy still never retries).
        """
        if self.max_retries == 0 or not self.is_retryable(failure, idempotent=idempotent):
            return None
        if retry > self.max_retries and not until_deadline:
            return None
        retry_after = parse_retry_after(failure.headers) if failure.status_code is not None else None
        if retry_after is not None:
            return retry_after if retry_after <= self.max_retry_after else None
        return self.backoff(retry, random)


DEFAULT_RETRY = RetryPolicy()


def parse_retry_after(headers: Mapping[str, str], *, now: Callable[[], float] = time.time) -> float | None:
    """Seconds from a ``Retry-After`` header (delta-seconds or HTTP date), or None if absent or unreadable."""
    value = headers.get("retry-after")
    if value is None:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        seconds = when.timestamp() - now()
    if math.isnan(seconds) or math.isinf(seconds):
        return None
    return max(0.0, seconds)
