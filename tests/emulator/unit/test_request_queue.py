"""The queue state machine on its own: time-driven transitions, positions, priorities, deadlines, retention."""

from __future__ import annotations

from typing import Any

from fal_kontext_emulator.request_queue import Ending, Outcome, QueuedRequest, QueueSettings, RequestQueue


def make_queue(**settings: Any) -> RequestQueue:
    defaults: dict[str, Any] = {"runners": 1, "queue_wait": 1.0, "run_time": 10.0}
    return RequestQueue(QueueSettings(**{**defaults, **settings}))


def submit(queue: RequestQueue, name: str, now: float, **kwargs: Any) -> str:
    queue.submit(
        request_id=name,
        owner="me",
        endpoint_id="fal-ai/flux-pro/kontext",
        arguments={"prompt": kwargs.pop("prompt", "p"), "image_url": "data:,"},
        now=now,
        base_url="http://x",
        **kwargs,
    )
    return name


def status_of(request: QueuedRequest) -> str:
    """The status now (a call: mypy keeps no narrowing from an earlier comparison across a state change)."""
    return request.status


def test_a_request_waits_then_runs_then_completes_by_time_alone() -> None:
    queue = make_queue()
    submit(queue, "a", 0.0)
    request = queue.get("a", "me", 0.5)
    assert request is not None
    assert status_of(request) == "IN_QUEUE"
    assert queue.get("a", "me", 1.0) is request
    assert status_of(request) == "IN_PROGRESS"
    assert request.started_at == 1.0
    queue.advance(10.9)
    assert status_of(request) == "IN_PROGRESS"
    queue.advance(11.0)
    assert status_of(request) == "COMPLETED"
    assert request.completed_at == 11.0
    assert request.ending is None


def test_jumping_far_ahead_replays_every_event_in_order() -> None:
    queue = make_queue(runners=1)
    for index, name in enumerate("abc"):
        submit(queue, name, float(index) * 0.1)
    queue.advance(1000.0)
    starts = [queue.requests[name].started_at for name in "abc"]
    # One runner: each starts when the previous one finishes, not all at once.
    assert starts == [1.0, 11.0, 21.0]


def test_queue_position_counts_earlier_requests_and_only_decreases() -> None:
    queue = make_queue(runners=1)
    names = [submit(queue, f"r{index}", 0.0) for index in range(4)]
    positions = []
    for now in (0.5, 1.5, 11.5, 21.5):
        queue.advance(now)
        positions.append(queue.queue_position(queue.requests[names[3]]))
    assert positions == [3, 2, 1, 0]
    queue.advance(31.5)
    assert queue.queue_position(queue.requests[names[3]]) is None


def test_low_priority_waits_behind_normal_but_its_position_never_rises() -> None:
    queue = make_queue(runners=1)
    submit(queue, "running", 0.0)
    submit(queue, "low", 0.1, priority="low")
    queue.advance(2.0)
    low = queue.requests["low"]
    assert queue.queue_position(low) == 0
    submit(queue, "normal", 2.0)
    assert queue.queue_position(low) == 0
    queue.advance(11.0)
    # The normal request that came later starts first.
    assert queue.requests["normal"].status == "IN_PROGRESS"
    assert status_of(low) == "IN_QUEUE"
    queue.advance(21.0)
    assert status_of(low) == "IN_PROGRESS"


def test_runners_bound_concurrency() -> None:
    queue = make_queue(runners=2)
    for name in "abc":
        submit(queue, name, 0.0)
    queue.advance(1.0)
    assert [queue.requests[name].status for name in "abc"] == ["IN_PROGRESS", "IN_PROGRESS", "IN_QUEUE"]


def test_start_deadline_ends_a_waiting_request_completed_with_request_timeout() -> None:
    queue = make_queue(runners=1)
    submit(queue, "busy", 0.0)
    submit(queue, "impatient", 0.0, start_timeout=5.0)
    queue.advance(5.0)
    request = queue.requests["impatient"]
    assert status_of(request) == "COMPLETED"
    assert request.ending is Ending.TIMED_OUT
    assert request.error == ("Request timed out", "request_timeout")
    assert request.started_at is None


def test_a_deadline_met_does_not_fire() -> None:
    queue = make_queue()
    submit(queue, "a", 0.0, start_timeout=2.0)
    queue.advance(100.0)
    assert queue.requests["a"].ending is None


def test_cancel_waiting_running_completed_and_missing() -> None:
    queue = make_queue(runners=1)
    submit(queue, "running", 0.0)
    submit(queue, "waiting", 0.0)
    queue.advance(2.0)
    assert queue.cancel("waiting", "me", 2.0) == "CANCELLATION_REQUESTED"
    assert queue.cancel("running", "me", 2.0) == "CANCELLATION_REQUESTED"
    for name in ("running", "waiting"):
        assert queue.requests[name].status == "COMPLETED"
        assert queue.requests[name].ending is Ending.CANCELLED
    assert queue.cancel("running", "me", 3.0) == "ALREADY_COMPLETED"
    assert queue.cancel("nope", "me", 3.0) == "NOT_FOUND"
    assert queue.cancel("running", "someone else", 3.0) == "NOT_FOUND"


def test_cancelling_frees_the_runner_for_the_next_request() -> None:
    queue = make_queue(runners=1)
    submit(queue, "a", 0.0)
    submit(queue, "b", 0.0)
    queue.advance(2.0)
    queue.cancel("a", "me", 2.0)
    assert queue.requests["b"].started_at == 2.0


def test_triggers_decide_the_outcome() -> None:
    queue = make_queue(content_policy_trigger="[flag]", failure_trigger="[fail]")
    submit(queue, "flagged", 0.0, prompt="a [flag] b")
    submit(queue, "failing", 0.0, prompt="[fail]")
    queue.advance(100.0)
    assert queue.requests["flagged"].outcome is Outcome.CONTENT_POLICY
    assert queue.requests["flagged"].error is None
    failing = queue.requests["failing"]
    assert failing.ending is Ending.RUNNER_FAILED
    assert failing.error == ("Runner disconnected", "runner_disconnected")


def test_results_expire_after_retention() -> None:
    queue = make_queue(retention=60.0)
    submit(queue, "a", 0.0)
    assert queue.get("a", "me", 70.9) is not None
    assert queue.get("a", "me", 71.0) is None
    assert "a" in queue.take_changes()[1]


def test_requests_belong_to_their_owner() -> None:
    queue = make_queue()
    submit(queue, "a", 0.0)
    assert queue.get("a", "other", 0.0) is None
    assert queue.get("a", "me", 0.0) is not None


def test_logs_accrue_while_running() -> None:
    queue = make_queue(queue_wait=0.0)
    submit(queue, "a", 0.0)
    request = queue.requests["a"]
    counts = []
    for now in (0.0, 2.6, 5.1, 10.0):
        queue.advance(now)
        counts.append(len(queue.logs(request, now)))
    assert counts == [1, 2, 3, 5]


def test_restore_continues_where_the_queue_was() -> None:
    queue = make_queue(runners=1)
    submit(queue, "a", 0.0)
    submit(queue, "b", 0.0)
    queue.advance(5.0)
    records = [request.to_record() for request in queue.requests.values()]
    again = make_queue(runners=1)
    again.restore([QueuedRequest.from_record(record) for record in records], 5.0)
    assert again.requests["a"].status == "IN_PROGRESS"
    assert again.queue_position(again.requests["b"]) == 0
    again.advance(21.0)
    assert again.requests["b"].status == "COMPLETED"


def test_run_time_jitter_is_fixed_per_request_and_bounded() -> None:
    queue = make_queue(runners=10, run_time=1.0, run_time_jitter=0.5)
    names = [submit(queue, f"r{index}", 0.0) for index in range(10)]
    run_times = [queue.requests[name].run_time for name in names]
    assert all(1.0 <= run_time < 1.5 for run_time in run_times)
    assert len(set(run_times)) == 10
    again = make_queue(runners=10, run_time=1.0, run_time_jitter=0.5)
    assert [again.submit(**_args(name)).run_time for name in names] == run_times


def _args(name: str) -> dict[str, Any]:
    return {
        "request_id": name,
        "owner": "me",
        "endpoint_id": "e",
        "arguments": {"prompt": "a prompt"},
        "now": 0.0,
        "base_url": "http://x",
    }
