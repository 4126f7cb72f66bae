"""The learned polling schedule on an injected clock: sparse while a job cannot be near its end, dense around its
expected end, backing off when it is late, by queue position while queued, never more often than every 50 ms."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime

import pytest

from fal_kontext import PollSchedule
from fal_kontext.protocol.polling import MIN_INTERVAL, JobPolling, LearnedPolling, Seen

EP = "fal-ai/flux-pro/kontext"
WALL = 1_800_000_000.0  # the wall clock when the monotonic clock reads 0


def iso(monotonic: float) -> str:
    return datetime.fromtimestamp(WALL + monotonic, UTC).isoformat()


def learned(*run_times: float) -> LearnedPolling:
    """A schedule that saw jobs of ``EP`` run this long."""
    schedule = LearnedPolling()
    for run in run_times:
        job = schedule.job(EP, submitted_at=0.0)
        job.seen(Seen("IN_PROGRESS"), 0.01, WALL + 0.01)
        job.seen(Seen("COMPLETED", inference_time=run), run + 0.1, WALL + run + 0.1)
    return schedule


def polls_until(
    job: JobPolling, ends_at: float, *, started: float = 0.0, logs: bool = False, first: float = 0.01
) -> list[float]:
    """The times a job that runs from ``started`` to ``ends_at`` is polled, the first at ``first``, up to the one
    that sees it COMPLETED. With ``logs``, its status carries progress lines at 0%, 25%, 50% and 75% of the run."""
    now, times = first, []
    while True:
        times.append(now)
        if now >= ends_at:
            job.seen(Seen("COMPLETED"), now, WALL + now)
            return times
        lines = [
            (iso(started + (ends_at - started) * point), f"Generating image: {round(point * 100)}%")
            for point in (0.0, 0.25, 0.5, 0.75)
            if started + (ends_at - started) * point <= now
        ]
        job.seen(Seen("IN_PROGRESS", logs=lines if logs else ()), now, WALL + now)
        delay = job.delay(now)
        assert delay >= MIN_INTERVAL
        now += delay


def test_a_job_expected_at_6_s_is_polled_a_few_times_before_5_s_and_within_50_ms_of_its_end() -> None:
    times = polls_until(learned(6.0, 6.0, 6.0).job(EP, submitted_at=0.0), ends_at=6.0)
    assert len([t for t in times if t < 5.0]) <= 3
    assert times[-1] - 6.0 <= 0.05
    assert len(times) <= 8


def test_a_spread_of_run_times_is_covered_with_a_bounded_number_of_polls() -> None:
    schedule = learned(5.0, 5.5, 6.0, 6.5, 7.0, 7.5, 8.0)
    for ends_at in (5.0, 6.3, 8.0):
        times = polls_until(schedule.job(EP, submitted_at=0.0), ends_at=ends_at)
        assert len(times) <= 20  # fal_client polls every 0.1 s: 66 times for such jobs
        assert times[-1] - ends_at <= (8.0 - 5.0) / LearnedPolling().dense_polls + MIN_INTERVAL


def test_progress_in_the_logs_aims_the_next_poll_at_the_end() -> None:
    schedule = learned(5.0, 8.0)
    times = polls_until(schedule.job(EP, submitted_at=0.0), ends_at=6.7, logs=True)
    assert times[-1] - 6.7 <= 0.05  # the end foretold by the 25% line's timestamp
    assert len(times) <= 5


def test_a_job_far_slower_than_expected_backs_off_to_the_cap() -> None:
    schedule = learned(1.0, 1.0)
    job = schedule.job(EP, submitted_at=0.0)
    times = polls_until(job, ends_at=60.0)
    gaps = [b - a for a, b in itertools.pairwise(times)]
    assert max(gaps) == pytest.approx(schedule.maximum)
    assert gaps[-2] == pytest.approx(schedule.maximum)  # it stays at the cap
    assert len(times) < 60 / schedule.maximum + 15


def test_a_queued_job_polls_by_its_queue_position() -> None:
    schedule = LearnedPolling()
    job = schedule.job(EP, submitted_at=0.0)
    job.seen(Seen("IN_QUEUE", queue_position=3), 0.0, WALL)
    far = job.delay(0.0)
    job.seen(Seen("IN_QUEUE", queue_position=2), 1.0, WALL + 1.0)  # one position in 1 s
    nearer = job.delay(1.0)
    job.seen(Seen("IN_QUEUE", queue_position=0), 3.0, WALL + 3.0)
    next_up = job.delay(3.0)
    assert far == pytest.approx(3 * schedule.queue_step / 2)
    assert nearer < far
    assert next_up == MIN_INTERVAL
    assert job.delay(3.0) >= MIN_INTERVAL


def test_before_any_history_the_prior_is_quick_then_backs_off() -> None:
    job = LearnedPolling().job(EP, submitted_at=0.0)
    job.seen(Seen("IN_PROGRESS"), 0.01, WALL)
    delays = [job.delay(0.01) for _ in range(10)]
    assert delays[0] == pytest.approx(0.1)
    assert delays == sorted(delays) and max(delays) == pytest.approx(1.0)


def test_history_is_per_endpoint_and_learned_from_inference_time() -> None:
    schedule = learned(6.0)
    other = schedule.job("fal-ai/flux-1/dev", submitted_at=0.0)
    other.seen(Seen("IN_PROGRESS"), 0.01, WALL)
    assert other.delay(0.01) == pytest.approx(0.1)  # nothing known of that endpoint: the prior
    known = schedule.job(EP, submitted_at=0.0)
    known.seen(Seen("IN_PROGRESS"), 0.01, WALL)
    assert known.delay(0.01) > 3.0  # a 6 s endpoint is not polled at once


def test_a_resumed_job_is_not_assumed_to_have_just_started() -> None:
    schedule = learned(6.0, 6.0)
    job = schedule.job(EP, submitted_at=None)  # a handle resumed by id: its run may be nearly over
    job.seen(Seen("IN_PROGRESS"), 100.0, WALL + 100.0)
    assert job.delay(100.0) <= 0.2


def test_a_fixed_schedule_stays_fixed() -> None:
    job = PollSchedule(initial=0.2, factor=2.0, maximum=1.0).job(EP, submitted_at=0.0)
    assert [job.delay(0.0) for _ in range(4)] == [0.2, 0.4, 0.8, 1.0]


def test_bad_options_are_refused_by_name() -> None:
    with pytest.raises(ValueError, match="dense_polls"):
        LearnedPolling(dense_polls=0)
    with pytest.raises(ValueError, match=r"poll\.maximum"):
        LearnedPolling(maximum=-1)
