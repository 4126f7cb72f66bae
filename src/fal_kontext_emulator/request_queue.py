"""The emulated queue: requests, runners and time. Pure logic, no I/O; time comes from the caller.

Transitions are driven by time, never by how often a client asks: `advance(now)` replays, in time order,
every event up to `now` (a request becoming eligible to start, a runner finishing, a start deadline
passing, a result expiring). Reads call it first, so any client sees the same history.
"""

from __future__ import annotations

import bisect
import enum
import hashlib
import heapq
import math
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

Status = Literal["IN_QUEUE", "IN_PROGRESS", "COMPLETED"]
Priority = Literal["normal", "low"]
CancelOutcome = Literal["CANCELLATION_REQUESTED", "ALREADY_COMPLETED", "NOT_FOUND"]

# How far through a run a simulated runner failure strikes.
_FAILURE_POINT = 0.5
# Progress log lines a running request emits, as fractions of its run time.
_LOG_POINTS = (0.0, 0.25, 0.5, 0.75)


class Outcome(enum.StrEnum):
    """How a request ends, decided when it is submitted."""

    OK = "ok"
    CONTENT_POLICY = "content_policy"
    RUNNER_FAILURE = "runner_failure"


class Ending(enum.StrEnum):
    """Why a COMPLETED request ended without an output (None when it ran to the end)."""

    CANCELLED = "cancelled"
    TIMED_OUT = "timed_out"
    RUNNER_FAILED = "runner_failed"


@dataclass
class QueuedRequest:
    """Everything the emulator knows about one submitted request. Times are queue seconds."""

    request_id: str
    owner: str
    endpoint_id: str
    arguments: dict[str, Any]
    seq: int
    priority: Priority
    submitted_at: float
    eligible_at: float
    run_time: float
    seed: int
    outcome: Outcome
    base_url: str
    start_deadline: float | None = None
    webhook_url: str | None = None
    started_at: float | None = None
    completed_at: float | None = None
    ending: Ending | None = None
    # Set once the webhook was delivered or gave up, so a restart does not deliver it again.
    webhook_finished: bool = False

    @property
    def status(self) -> Status:
        """IN_QUEUE, IN_PROGRESS or COMPLETED (failed and cancelled requests are COMPLETED too)."""
        if self.completed_at is not None:
            return "COMPLETED"
        if self.started_at is not None:
            return "IN_PROGRESS"
        return "IN_QUEUE"

    @property
    def ends_at(self) -> float:
        """When the runner finishes (or fails) this request once started."""
        assert self.started_at is not None
        fraction = _FAILURE_POINT if self.outcome is Outcome.RUNNER_FAILURE else 1.0
        return self.started_at + self.run_time * fraction

    @property
    def error(self) -> tuple[str, str] | None:
        """`(error, error_type)` shown on the status of a failed request, as fal reports them."""
        if self.ending is Ending.RUNNER_FAILED:
            return "Runner disconnected", "runner_disconnected"
        if self.ending is Ending.TIMED_OUT:
            return "Request timed out", "request_timeout"
        if self.ending is Ending.CANCELLED:
            # fal documents only that a cancelled request ends COMPLETED; the error text is the emulator's choice.
            return "Request was cancelled", "request_cancelled"
        return None

    def to_record(self) -> dict[str, Any]:
        """A JSON-serialisable copy, for the state file."""
        return asdict(self)

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> QueuedRequest:
        """Rebuild a request from `to_record()` output."""
        values = dict(record)
        values["outcome"] = Outcome(values["outcome"])
        values["ending"] = Ending(values["ending"]) if values.get("ending") else None
        return cls(**values)


@dataclass(frozen=True)
class LogLine:
    """One log line a running request emitted, at queue time `at`."""

    at: float
    message: str
    level: str


@dataclass(frozen=True)
class QueueSettings:
    """The queue's knobs (a subset of EmulatorConfig)."""

    runners: int = 2
    queue_wait: float = 0.05
    run_time: float = 0.2
    run_time_jitter: float = 0.0
    retention: float = 3600.0
    content_policy_trigger: str | None = None
    failure_trigger: str | None = None


@dataclass
class RequestQueue:
    """The state machine of every request, advanced by `advance(now)`.

    Queue order: normal before low, first come first served within a priority. Runners take the first
    request in that order whose queue wait has passed.
    """

    settings: QueueSettings
    now: float = 0.0
    next_seq: int = 0
    requests: dict[str, QueuedRequest] = field(default_factory=dict)
    # Seqs of waiting requests, sorted, per priority; a waiting request's position is found by bisection.
    _waiting: dict[str, list[int]] = field(default_factory=lambda: {"normal": [], "low": []})
    _by_seq: dict[int, QueuedRequest] = field(default_factory=dict)
    _running: list[QueuedRequest] = field(default_factory=list)
    _deadlines: list[tuple[float, int]] = field(default_factory=list)
    _expiries: list[tuple[float, int]] = field(default_factory=list)
    # Ids changed since the last `take_changes()` (for the state file) and requests completed since the
    # last `take_completed()` (for webhooks).
    _changed: set[str] = field(default_factory=set)
    _removed: set[str] = field(default_factory=set)
    _completed: list[str] = field(default_factory=list)

    # -- commands ---------------------------------------------------------------------------------------------

    def submit(  # noqa: PLR0913 - one keyword per submit header and option the emulator honours
        self,
        *,
        request_id: str,
        owner: str,
        endpoint_id: str,
        arguments: dict[str, Any],
        now: float,
        base_url: str,
        priority: Priority = "normal",
        start_timeout: float | None = None,
        webhook_url: str | None = None,
    ) -> QueuedRequest:
        """Queue a request at time `now` and return it."""
        self.advance(now)
        seed = arguments.get("seed")
        if not isinstance(seed, int) or isinstance(seed, bool):
            seed = _derive_seed(request_id)
        request = QueuedRequest(
            request_id=request_id,
            owner=owner,
            endpoint_id=endpoint_id,
            arguments=arguments,
            seq=self.next_seq,
            priority=priority,
            submitted_at=now,
            eligible_at=now + self.settings.queue_wait,
            run_time=self.settings.run_time + self.settings.run_time_jitter * _unit_fraction(request_id),
            seed=seed,
            outcome=self._outcome_for(arguments),
            base_url=base_url,
            start_deadline=None if start_timeout is None else now + start_timeout,
            webhook_url=webhook_url,
        )
        self.next_seq += 1
        self._add(request)
        self.advance(now)
        return request

    def cancel(self, request_id: str, owner: str, now: float) -> CancelOutcome:
        """Cancel a request: a waiting one leaves the queue, a running one is stopped; both end COMPLETED."""
        self.advance(now)
        request = self.get(request_id, owner, now)
        if request is None:
            return "NOT_FOUND"
        if request.completed_at is not None:
            return "ALREADY_COMPLETED"
        self._complete(request, now, Ending.CANCELLED)
        self.advance(now)
        return "CANCELLATION_REQUESTED"

    def get(self, request_id: str, owner: str, now: float) -> QueuedRequest | None:
        """The request as of `now`, or None if it does not exist, has expired, or belongs to another key."""
        self.advance(now)
        request = self.requests.get(request_id)
        if request is None or request.owner != owner:
            return None
        return request

    def find(self, request_id: str, now: float) -> QueuedRequest | None:
        """The request as of `now` whoever owns it (the emulator's own file URLs are public, like fal's CDN)."""
        self.advance(now)
        return self.requests.get(request_id)

    def queue_position(self, request: QueuedRequest) -> int | None:
        """Requests ahead of a waiting one (0-based), or None once it has left the queue.

        Only requests submitted earlier count: a normal request that arrives later starts first but does
        not raise the position of a low one, so positions only ever go down.
        """
        if request.status != "IN_QUEUE":
            return None
        ahead = bisect.bisect_left(self._waiting["normal"], request.seq)
        if request.priority == "low":
            ahead += bisect.bisect_left(self._waiting["low"], request.seq)
        return ahead

    def logs(self, request: QueuedRequest, now: float) -> list[LogLine]:
        """The log lines the request has emitted by `now` (none before it starts)."""
        if request.started_at is None:
            return []
        start = request.started_at
        end = request.completed_at if request.completed_at is not None else now
        lines = [
            LogLine(start + request.run_time * point, f"Generating image: {round(point * 100)}%", "INFO")
            for point in _LOG_POINTS
        ]
        lines = [line for line in lines if line.at <= end]
        if request.completed_at is not None:
            if request.ending is Ending.RUNNER_FAILED:
                lines.append(LogLine(request.completed_at, "Runner disconnected", "ERROR"))
            elif request.ending is Ending.CANCELLED:
                lines.append(LogLine(request.completed_at, "Request cancelled", "WARN"))
            else:
                lines.append(LogLine(request.completed_at, "Image generated", "INFO"))
        return lines

    def next_log_at(self, request: QueuedRequest, now: float) -> float:
        """When the running request emits its next log line (math.inf when not running)."""
        if request.started_at is None or request.completed_at is not None:
            return math.inf
        start = request.started_at
        return min(
            (start + request.run_time * point for point in _LOG_POINTS if start + request.run_time * point > now),
            default=math.inf,
        )

    def next_event_at(self) -> float:
        """When the next timed event happens (math.inf when nothing is scheduled)."""
        return min(self._next_finish(), self._next_start(), self._peek(self._deadlines), self._peek(self._expiries))

    def mark_webhook_finished(self, request_id: str) -> None:
        """Record that a request's webhook was delivered (or gave up)."""
        request = self.requests.get(request_id)
        if request is not None:
            request.webhook_finished = True
            self._changed.add(request_id)

    def take_changes(self) -> tuple[list[QueuedRequest], list[str]]:
        """Requests changed and ids removed since the last call (for the state file)."""
        changed = [self.requests[rid] for rid in self._changed if rid in self.requests]
        removed = list(self._removed)
        self._changed.clear()
        self._removed.clear()
        return changed, removed

    def take_completed(self) -> list[QueuedRequest]:
        """Requests with a webhook to deliver that completed since the last call."""
        done = [self.requests[rid] for rid in self._completed if rid in self.requests]
        self._completed.clear()
        return done

    def restore(self, requests: list[QueuedRequest], now: float) -> None:
        """Load requests saved by a previous run, continuing from queue time `now`."""
        self.now = now
        for request in sorted(requests, key=lambda r: r.seq):
            self.next_seq = max(self.next_seq, request.seq + 1)
            self._add(request)
        self._changed.clear()

    # -- the clock --------------------------------------------------------------------------------------------

    def advance(self, now: float) -> None:
        """Apply every event up to queue time `now`, in time order."""
        while True:
            finish = self._next_finish()
            expiry = self._peek(self._expiries)
            deadline = self._peek(self._deadlines)
            start = self._next_start()
            at = min(finish, expiry, deadline, start)
            if at > now or math.isinf(at):
                break
            self.now = at
            if at == finish:
                running = min(self._running, key=lambda r: (r.ends_at, r.seq))
                ending = Ending.RUNNER_FAILED if running.outcome is Outcome.RUNNER_FAILURE else None
                self._complete(running, running.ends_at, ending)
            elif at == expiry:
                _, seq = heapq.heappop(self._expiries)
                self._remove(seq)
            elif at == deadline:
                _, seq = heapq.heappop(self._deadlines)
                request = self._by_seq.get(seq)
                if request is not None and request.status == "IN_QUEUE":
                    self._complete(request, at, Ending.TIMED_OUT)
            else:
                self._start_next(at)
        self.now = max(self.now, now)

    # -- internals --------------------------------------------------------------------------------------------

    def _outcome_for(self, arguments: dict[str, Any]) -> Outcome:
        prompt = str(arguments.get("prompt", ""))
        if self.settings.failure_trigger and self.settings.failure_trigger in prompt:
            return Outcome.RUNNER_FAILURE
        if self.settings.content_policy_trigger and self.settings.content_policy_trigger in prompt:
            return Outcome.CONTENT_POLICY
        return Outcome.OK

    def _add(self, request: QueuedRequest) -> None:
        self.requests[request.request_id] = request
        self._by_seq[request.seq] = request
        self._changed.add(request.request_id)
        status = request.status
        if status == "IN_QUEUE":
            bisect.insort(self._waiting[request.priority], request.seq)
            if request.start_deadline is not None:
                heapq.heappush(self._deadlines, (request.start_deadline, request.seq))
        elif status == "IN_PROGRESS":
            self._running.append(request)
        else:
            assert request.completed_at is not None
            heapq.heappush(self._expiries, (request.completed_at + self.settings.retention, request.seq))
            if request.webhook_url and not request.webhook_finished:
                self._completed.append(request.request_id)

    def _next_finish(self) -> float:
        return min((r.ends_at for r in self._running), default=math.inf)

    def _next_start(self) -> float:
        if len(self._running) >= self.settings.runners:
            return math.inf
        heads = [self._by_seq[seqs[0]].eligible_at for seqs in self._waiting.values() if seqs]
        return max(self.now, min(heads)) if heads else math.inf

    @staticmethod
    def _peek(heap: list[tuple[float, int]]) -> float:
        return heap[0][0] if heap else math.inf

    def _start_next(self, at: float) -> None:
        for priority in ("normal", "low"):
            seqs = self._waiting[priority]
            if seqs and self._by_seq[seqs[0]].eligible_at <= at:
                request = self._by_seq[seqs.pop(0)]
                request.started_at = at
                self._running.append(request)
                self._changed.add(request.request_id)
                return

    def _complete(self, request: QueuedRequest, at: float, ending: Ending | None) -> None:
        if request.status == "IN_QUEUE":
            seqs = self._waiting[request.priority]
            del seqs[bisect.bisect_left(seqs, request.seq)]
        elif request in self._running:
            self._running.remove(request)
        request.completed_at = at
        request.ending = ending
        heapq.heappush(self._expiries, (at + self.settings.retention, request.seq))
        self._changed.add(request.request_id)
        if request.webhook_url:
            self._completed.append(request.request_id)

    def _remove(self, seq: int) -> None:
        request = self._by_seq.pop(seq, None)
        if request is None:
            return
        self.requests.pop(request.request_id, None)
        self._changed.discard(request.request_id)
        self._removed.add(request.request_id)


def _unit_fraction(text: str) -> float:
    """A deterministic number in [0, 1) derived from `text`."""
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "big") / 2**64


def _derive_seed(request_id: str) -> int:
    # fal picks a random seed when none is given and reports it; deriving it from the id keeps replays stable.
    return int.from_bytes(hashlib.sha256(request_id.encode()).digest()[:4], "big")


def iso_timestamp(epoch_seconds: float) -> str:
    """ISO 8601 UTC timestamp, the format of fal's log entries."""
    return datetime.fromtimestamp(epoch_seconds, UTC).isoformat()
