"""How often a wait asks for the status when the status stream is not followed.

Two schedules, one interface (``PollSchedule.job`` and ``LearnedPolling.job`` give a ``JobPolling``: told each
status seen, asked for the pause before the next poll):

- ``LearnedPolling``, the default: sparse while a job cannot be near its end, dense around when it is expected to
  end, learned per endpoint from the jobs this client saw finish (fal's ``metrics.inference_time``, else the time
  from IN_PROGRESS to COMPLETED) and, while a job runs, from progress in its log lines (``25%``, ``7/28``) with
  their timestamps. Shared by every job of one client. All of it is ours: fal documents no completion estimate.
- ``PollSchedule``: a fixed backoff, for those who want one.

Every schedule is bounded below by ``MIN_INTERVAL`` (a job never polls more often than every 50 ms) and the send loop
honours a ``Retry-After`` on failed polls.
"""

from __future__ import annotations

import re
import threading
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

from fal_kontext.option_checks import check_positive, refuse

__all__ = [
    "MIN_INTERVAL",
    "JobPolling",
    "LearnedPolling",
    "PollSchedule",
    "Polling",
    "Seen",
]

# Ours: the shortest pause between two polls of one job.
MIN_INTERVAL = 0.05
# Ours: how long after the end its logs foretell the first poll goes (the server's clock and ours may differ a little).
_AFTER_END = 0.01


@dataclass(frozen=True, slots=True)
class Seen:
    """One status a poll saw, as a schedule reads it.

    Attributes:
        status: ``IN_QUEUE``, ``IN_PROGRESS`` or ``COMPLETED``.
        queue_position: The position while IN_QUEUE, if sent.
        logs: The log lines so far, as (timestamp, message); timestamps are fal's ISO 8601 strings.
        inference_time: fal's ``metrics.inference_time`` on COMPLETED, if sent.
    """

    status: str
    queue_position: int | None = None
    logs: Sequence[tuple[str, str]] = ()
    inference_time: float | None = None


class JobPolling(Protocol):
    """One job's polling: told what each poll saw, asked how long to pause before the next."""

    def seen(self, seen: Seen, now: float, wall: float) -> None:
        """A poll at ``now`` (monotonic seconds; ``wall``: Unix seconds) saw ``seen``."""

    def delay(self, now: float) -> float:
        """Seconds to pause before the next poll, at least ``MIN_INTERVAL``."""


class Polling(Protocol):
    """A polling schedule: a ``JobPolling`` per waited job."""

    def job(self, endpoint_id: str | None, submitted_at: float | None) -> JobPolling:
        """The polling of a job of ``endpoint_id`` submitted at ``submitted_at`` (monotonic seconds; None for a job
        this client did not submit, e.g. a resumed handle)."""


@dataclass(frozen=True, slots=True)
class PollSchedule:
    """Fixed adaptive polling: quick at first, backing off to a cap.

    Attributes:
        initial: Seconds before the second status poll.
        factor: Each later interval is the previous one times this.
        maximum: Cap of the interval.

    Raises:
        InvalidInputError: not ``0 < initial <= maximum`` (finite) and ``factor >= 1``.
    """

    initial: float = 0.1
    factor: float = 1.5
    maximum: float = 2.0

    def __post_init__(self) -> None:
        check_positive("poll.initial", self.initial)
        check_positive("poll.maximum", self.maximum)
        if check_positive("poll.factor", self.factor) < 1:
            raise refuse("poll.factor", self.factor, "must be >= 1")
        if self.maximum < self.initial:
            raise refuse("poll.maximum", self.maximum, f"must be >= initial ({self.initial:g})")

    def next_interval(self, interval: float) -> float:
        """The interval after ``interval``."""
        return min(interval * self.factor, self.maximum)

    def job(self, endpoint_id: str | None, submitted_at: float | None) -> JobPolling:
        """This schedule for one job (neither argument plays a part)."""
        return _FixedJob(self)


class _FixedJob:
    def __init__(self, schedule: PollSchedule) -> None:
        self.schedule = schedule
        self.interval = schedule.initial

    def seen(self, seen: Seen, now: float, wall: float) -> None:
        """Nothing to learn."""

    def delay(self, now: float) -> float:
        current, self.interval = self.interval, self.schedule.next_interval(self.interval)
        return max(MIN_INTERVAL, current)


# --- the learned schedule ------------------------------------------------------------------------------------------

# "25%", "12.5 %" or a step counter "7/28" in a log line (diffusers' and tqdm's progress): how far a run is.
_PERCENT = re.compile(r"(?<![\d.])(\d{1,3}(?:\.\d+)?)\s*%")
_STEPS = re.compile(r"(?<![\d/])(\d{1,5})\s*/\s*(\d{1,5})(?![\d/])")


def _fraction(message: str) -> float | None:
    """How far a run is by a log line, in [0, 1], or None when the line says nothing of it."""
    if found := _PERCENT.search(message):
        value = float(found[1]) / 100
        return value if 0 <= value <= 1 else None
    if (found := _STEPS.search(message)) and int(found[2]) > 0 and int(found[1]) <= int(found[2]):
        return int(found[1]) / int(found[2])
    return None


def _epoch(timestamp: str) -> float | None:
    try:
        return datetime.fromisoformat(timestamp.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


class _EndpointHistory:
    """What the client learned of one endpoint: its recent run times and the time a queue position takes."""

    def __init__(self, size: int) -> None:
        self.run_times: deque[float] = deque(maxlen=size)
        self.seconds_per_position: float | None = None

    def window(self) -> tuple[float, float] | None:
        """When a run of this endpoint ends, from its start: (earliest, latest) of the recent runs, or None."""
        if not self.run_times:
            return None
        ordered = sorted(self.run_times)
        if len(ordered) >= 10:  # a stray outlier does not stretch the dense window
            cut = len(ordered) // 10
            ordered = ordered[cut : len(ordered) - cut]
        return ordered[0], ordered[-1]


@dataclass
class LearnedPolling:
    """Polling learned per endpoint (the default; see the module docstring). One per client, shared by its jobs.

    Attributes:
        maximum: The longest pause while nothing tells when the job ends (a job far slower than expected backs off
            to it); a pause aimed at an expected end may be longer.
        dense_polls: Polls spread over the window in which the endpoint's runs have ended (at least
            ``MIN_INTERVAL`` apart): fewer means fewer requests and a later result on average.
        history: Run times kept per endpoint.
        prior: The pauses before anything is known of an endpoint: the first, their growth and the longest (ours:
            0.1 s growing 1.5 times to 1 s; fal's first-party client polls every 0.1 s).
        queue_step: Seconds a queue position takes before one was seen (ours: 1 s).
    """

    maximum: float = 2.0
    dense_polls: int = 12
    history: int = 50
    prior: PollSchedule = field(default_factory=lambda: PollSchedule(0.1, 1.5, 1.0))
    queue_step: float = 1.0
    _endpoints: dict[str, _EndpointHistory] = field(default_factory=dict, repr=False, compare=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def __post_init__(self) -> None:
        check_positive("poll.maximum", self.maximum)
        check_positive("poll.queue_step", self.queue_step)
        if not isinstance(self.dense_polls, int) or self.dense_polls < 1:
            raise refuse("poll.dense_polls", self.dense_polls, "must be a whole number >= 1")

    def job(self, endpoint_id: str | None, submitted_at: float | None) -> JobPolling:
        """The learned polling of one job of ``endpoint_id`` (None: an unknown endpoint, nothing learned)."""
        with self._lock:
            history = self._endpoints.setdefault(endpoint_id or "", _EndpointHistory(self.history))
        return _LearnedJob(self, history, submitted_at)

    def learned(self, history: _EndpointHistory, run_time: float | None, seconds_per_position: float | None) -> None:
        with self._lock:
            if run_time is not None and run_time > 0:
                history.run_times.append(run_time)
            if seconds_per_position is not None and seconds_per_position > 0:
                old = history.seconds_per_position
                history.seconds_per_position = (
                    seconds_per_position if old is None else 0.7 * old + 0.3 * seconds_per_position
                )


class _LearnedJob:
    """One job under ``LearnedPolling``: where it is, since when, and how far it got by its logs."""

    def __init__(self, schedule: LearnedPolling, history: _EndpointHistory, submitted_at: float | None) -> None:
        self.schedule = schedule
        self.history = history
        self.submitted_at = submitted_at
        self.status = "IN_QUEUE"
        self.position: tuple[int, float] | None = None  # (position, when first seen)
        self.last_queued: float | None = None
        self.started: float | None = None  # monotonic
        self.expected_end: float | None = None  # monotonic, from the logs' progress
        self.prior_pause = schedule.prior.initial
        self.backoff = MIN_INTERVAL

    # --- what the polls saw ---------------------------------------------------------------------------------------

    def seen(self, seen: Seen, now: float, wall: float) -> None:
        if seen.status == "IN_QUEUE":
            self._queued(seen.queue_position, now)
        elif seen.status == "IN_PROGRESS":
            if self.started is None:
                self.started = self._start_estimate(now)
            self._progress(seen.logs, now, wall)
        elif seen.status == "COMPLETED":
            run = seen.inference_time
            if run is None and self.started is not None and self.submitted_at is not None:
                run = now - self.started
            self.schedule.learned(self.history, run, None)
        self.status = seen.status

    def _start_estimate(self, now: float) -> float:
        """When the run started, first seen IN_PROGRESS at ``now``: between the last poll that saw it queued and
        this one; at the submit if none did. For a job this client did not submit, as early as a run of the
        endpoint could end now (so that a job near its end is not waited for)."""
        if self.last_queued is not None:
            return (self.last_queued + now) / 2
        if self.submitted_at is not None:
            return self.submitted_at
        window = self.history.window()
        return now - (window[0] if window else 0.0)

    def _queued(self, position: int | None, now: float) -> None:
        self.last_queued = now
        if position is None:
            return
        if self.position is not None and position < self.position[0]:
            step = (now - self.position[1]) / (self.position[0] - position)
            self.schedule.learned(self.history, None, step)
            self.position = (position, now)
        elif self.position is None or position != self.position[0]:
            self.position = (position, now)

    def _progress(self, logs: Sequence[tuple[str, str]], now: float, wall: float) -> None:
        """The run's start (its first log line) and expected end (from the latest line that tells progress), on the
        logs' clock (fal's), turned into ours by ``now - wall``; both left as they were without such lines."""
        start: float | None = None
        latest: tuple[float, float] | None = None
        for timestamp, message in logs:
            when = _epoch(timestamp)
            if when is None:
                continue
            start = when if start is None else min(start, when)
            fraction = _fraction(message)
            if fraction is not None and 0 < fraction < 1 and (latest is None or fraction >= latest[1]):
                latest = (when, fraction)
        if start is None:
            return
        self.started = now + (start - wall)
        if latest is not None and latest[0] > start:
            self.expected_end = now + (start + (latest[0] - start) / latest[1] - wall)

    # --- the next pause ---------------------------------------------------------------------------------------------

    def delay(self, now: float) -> float:
        if self.status == "IN_QUEUE":
            return self._bounded(self._queue_delay())
        window = self.history.window()
        if self.expected_end is not None:
            # The logs tell when it ends: the next poll just after that, then every MIN_INTERVAL.
            earliest = latest = self.expected_end + _AFTER_END
            spacing = MIN_INTERVAL
            if earliest - now > spacing:
                return max(MIN_INTERVAL, earliest - now)
        elif window is not None and self.started is not None:
            earliest, latest = self.started + window[0], self.started + window[1]
            spacing = max(MIN_INTERVAL, (latest - earliest) / self.schedule.dense_polls)
        else:
            pause, self.prior_pause = self.prior_pause, self.schedule.prior.next_interval(self.prior_pause)
            return self._bounded(pause)
        # Past the expected end by a tenth of the run (at least 0.2 s): slower than expected, back off to the cap.
        started = self.started if self.started is not None else now
        if now <= latest + max(spacing, 0.2, (latest - started) / 10):
            gap = earliest - now
            # Three quarters of the way while the window is far (a few polls, should this job be faster than
            # ever), then every ``spacing`` across it. Not capped by ``maximum``: the pause aims at a time.
            return max(MIN_INTERVAL, gap * 0.75 if gap > 4 * spacing else spacing)
        self.backoff = min(self.schedule.maximum, max(spacing, self.backoff * 2))
        return self._bounded(self.backoff)

    def _queue_delay(self) -> float:
        if self.position is None:
            pause, self.prior_pause = self.prior_pause, self.schedule.prior.next_interval(self.prior_pause)
            return pause
        step = self.history.seconds_per_position or self.schedule.queue_step
        # Half of the expected wait: the position is read again before the job can have started.
        return self.position[0] * step / 2

    def _bounded(self, pause: float) -> float:
        return min(self.schedule.maximum, max(MIN_INTERVAL, pause))
