"""RetryPolicy: one table of decisions, Retry-After parsing, and the submit rule (never sent twice)."""

from __future__ import annotations

import pytest

from fal_kontext.retry import Failure, RetryPolicy, parse_retry_after

POLICY = RetryPolicy(max_retries=3, initial_delay=0.5, max_delay=2.0, jitter=0.0)


def centre() -> float:
    return 0.5


@pytest.mark.parametrize(
    ("idempotent", "retry", "failure", "expected"),
    [
        # idempotent calls (reads, cancel, uploads): connection errors, 408, 429, 5xx, exponential backoff capped at max_delay
        (True, 1, Failure(503), 0.5),
        (True, 2, Failure(503), 1.0),
        (True, 3, Failure(503), 2.0),
        (True, 4, Failure(503), None),  # max_retries exhausted
        (True, 1, Failure(None, reached_server=True), 0.5),
        (True, 1, Failure(408), 0.5),
        (True, 1, Failure(500), 0.5),
        (True, 1, Failure(404), None),
        (True, 1, Failure(401), None),
        (True, 1, Failure(422), None),
        # Retry-After wins when short enough, ends the retries when longer than max_retry_after
        (True, 1, Failure(429, {"retry-after": "7"}), 7.0),
        (True, 1, Failure(429, {"retry-after": "600"}), None),
        (True, 1, Failure(429), 0.5),
        # the server's own opinions
        (True, 1, Failure(503, {"x-fal-retryable": "false"}), None),
        (True, 1, Failure(504, {"x-fal-request-timeout-type": "user"}), None),
        # a submit (not idempotent): only when the request never reached the server...
        (False, 1, Failure(None, reached_server=False), 0.5),
        (False, 1, Failure(None, reached_server=True), None),
        (False, 1, Failure(503), None),
        # ... or refused it: a 429 queues nothing
        (False, 1, Failure(429, {"retry-after": "1"}), 1.0),
        (False, 1, Failure(429, {"x-fal-retryable": "false"}), None),
        (False, 1, Failure(502), None),
    ],
)
def test_retry_decisions(idempotent: bool, retry: int, failure: Failure, expected: float | None) -> None:
    assert POLICY.delay_before_retry(retry, failure, centre, idempotent=idempotent) == expected


def test_jitter_spreads_the_delay_both_ways() -> None:
    policy = RetryPolicy(initial_delay=1.0, jitter=0.25)
    assert policy.backoff(1, lambda: 0.0) == pytest.approx(0.75)
    assert policy.backoff(1, lambda: 0.999999) == pytest.approx(1.25, abs=1e-5)


def test_until_a_deadline_the_count_does_not_end_retries() -> None:
    policy = RetryPolicy(max_retries=2, initial_delay=0.5, max_delay=8.0)
    assert policy.delay_before_retry(9, Failure(503), centre, idempotent=True) is None
    assert policy.delay_before_retry(9, Failure(503), centre, idempotent=True, until_deadline=True) == 8.0
    assert policy.delay_before_retry(9, Failure(404), centre, idempotent=True, until_deadline=True) is None
    assert policy.delay_before_retry(9, Failure(503), centre, idempotent=False, until_deadline=True) is None


def test_disabled_never_retries() -> None:
    assert (
        RetryPolicy.disabled().delay_before_retry(1, Failure(503), centre, idempotent=True, until_deadline=True) is None
    )
    assert RetryPolicy.disabled().delay_before_retry(1, Failure(503), centre, idempotent=True) is None
    assert (
        RetryPolicy.disabled().delay_before_retry(1, Failure(None, reached_server=False), centre, idempotent=False)
        is None
    )


@pytest.mark.parametrize(
    ("value", "expected"),
    [("3", 3.0), ("0.5", 0.5), ("-2", 0.0), ("Thu, 01 Jan 1970 00:01:40 GMT", 40.0), ("soon", None), ("nan", None)],
)
def test_parse_retry_after(value: str, expected: float | None) -> None:
    assert parse_retry_after({"retry-after": value}, now=lambda: 60.0) == expected


def test_policy_rejects_nonsense() -> None:
    with pytest.raises(ValueError, match="jitter"):
        RetryPolicy(jitter=2)
    with pytest.raises(ValueError, match="max_retries"):
        RetryPolicy(max_retries=-1)
