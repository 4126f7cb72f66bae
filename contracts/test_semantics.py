"""What a schema cannot express, checked on a whole lifecycle: the same probe against the emulator and a remote server.

`contracts/semantics.py` holds the rules and the probe. Against a remote server the probe's job is a paid call
(`--max-paid-calls`, its price printed before it is sent); `--contract-second-key` adds the per-key isolation check.
The tests below the probe show that each rule can fail.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from contracts.conftest import is_free
from contracts.paid_job import RequestIds
from contracts.semantics import ProbeOptions, check_image, observe_lifecycle
from contracts.summary import STATS
from contracts.target import ContractTarget, PaidCallBudget
from fal_kontext.queue_rules import (
    RequestHistory,
    Violation,
    check_returned_url,
    check_status_answer,
    parse_event_stream,
)

SECOND_KEY = "second-key"


@pytest.fixture(scope="module")
def semantic_target(
    request: pytest.FixtureRequest, contract_target: ContractTarget
) -> Iterator[tuple[ContractTarget, str | None]]:
    """The server and a second key: the remote one as given, or an emulator slow enough to show every state."""
    if contract_target.remote:
        yield contract_target, request.config.getoption("--contract-second-key")
        return
    from fal_kontext.mock import EmulatorConfig, run_emulator

    config = EmulatorConfig(keys=("test-key", SECOND_KEY), queue_wait=0.3, run_time=0.3)
    with run_emulator(config) as emulator:
        yield ContractTarget(emulator.base_url, "key", emulator.key, remote=False, verify=emulator.verify), SECOND_KEY


def test_the_whole_lifecycle_keeps_fal_rules(
    semantic_target: tuple[ContractTarget, str | None],
    paid_calls: PaidCallBudget,
    request_ids: RequestIds,
    request: pytest.FixtureRequest,
    capsys: pytest.CaptureFixture[str],
) -> None:
    target, second = semantic_target

    def announce(line: str) -> None:
        with capsys.disabled():
            print(f"\n{line}", flush=True)

    options = ProbeOptions(second_secret=second, ids=request_ids)
    seen = observe_lifecycle(target, paid_calls, options=options, announce=announce)
    if not is_free(request.config):
        for what, price in seen.paid:
            STATS.record_paid(what, price)
    assert [str(v) for v in seen.violations] == [], "the server breaks fal's queue rules"
    if not paid_calls.spent_on:
        pytest.skip("the paid lifecycle did not run (budget); only the free probes were checked")
    expected = {
        "status-code",
        "returned-urls",
        "stream",
        "stream-closing",
        "result",
        "images",
        "echo",
        "result-kept",
        "request-id-distinct",
        "cancel-after-completion",
    }
    assert expected <= seen.observed, f"not exercised: {expected - seen.observed}"
    if second:
        assert "per-key-isolation" in seen.observed


RID = "7d1c4a2e-0000-4000-8000-00000000abcd"
BASE = "https://proxy.example/v1"


def _rules(found: list[Violation]) -> set[str]:
    return {v.rule for v in found}


def test_status_code_must_match_the_state() -> None:
    pending = {"status": "IN_PROGRESS", "request_id": RID, "logs": None}
    assert check_status_answer(202, pending, RID, logs_requested=False, where="s") == []
    assert _rules(check_status_answer(200, pending, RID, logs_requested=False, where="s")) == {"status-code"}
    done = {"status": "COMPLETED", "request_id": RID, "logs": None}
    assert _rules(check_status_answer(202, done, RID, logs_requested=False, where="s")) == {"status-code"}
    assert _rules(check_status_answer(200, {**done, "status": "FAILED"}, RID, logs_requested=None, where="s")) == {
        "status-value"
    }
    queued = {"status": "IN_QUEUE", "request_id": "other"}
    assert _rules(check_status_answer(202, queued, RID, logs_requested=None, where="s")) == {
        "queue-position",
        "status-request-id",
    }
    assert _rules(
        check_status_answer(200, {"status": "COMPLETED", "request_id": RID}, RID, logs_requested=None, where="s")
    ) == {"status-logs-key"}


def test_statuses_only_move_forward_and_positions_only_fall() -> None:
    history = RequestHistory()
    assert history.observe({"status": "IN_QUEUE", "queue_position": 3}, "a") == []
    assert history.observe({"status": "IN_QUEUE", "queue_position": 1}, "b") == []
    assert _rules(history.observe({"status": "IN_QUEUE", "queue_position": 2}, "c")) == {"queue-position-order"}
    assert history.observe({"status": "COMPLETED"}, "d") == []
    assert _rules(history.observe({"status": "IN_PROGRESS"}, "e")) == {"status-order"}


def test_returned_urls_are_absolute_on_the_app_path_and_on_a_host_the_client_uses() -> None:
    path = f"/fal-ai/flux-pro/requests/{RID}/status"
    assert check_returned_url(BASE + path, "get_request_status", RID, BASE, where="u") == []
    assert check_returned_url("https://queue.fal.run" + path, "get_request_status", RID, BASE, where="u") == []
    assert _rules(check_returned_url(path, "get_request_status", RID, BASE, where="u")) == {"url-absolute"}
    sub = f"{BASE}/fal-ai/flux-pro/kontext/requests/{RID}/status"
    assert _rules(check_returned_url(sub, "get_request_status", RID, BASE, where="u")) == {"url-path"}
    assert _rules(check_returned_url("http://10.0.0.7:8080/v1" + path, "get_request_status", RID, BASE, where="u")) == {
        "url-host"
    }


def test_the_status_stream_must_be_sse_and_its_events_status_objects() -> None:
    good = b': ping\n\ndata: {"status": "IN_QUEUE"}\n\nevent: status\r\ndata: {"status": "COMPLETED"}\r\n\r\n'
    events, found = parse_event_stream(good, "s")
    assert found == [] and [e["status"] for e in events] == ["IN_QUEUE", "COMPLETED"]
    events, found = parse_event_stream(b'{"status": "COMPLETED"}\n\n', "s")
    assert events == [] and _rules(found) == {"stream-framing"}


def test_images_must_be_what_the_result_says() -> None:
    import io

    from PIL import Image as PILImage

    buffer = io.BytesIO()
    PILImage.new("RGB", (8, 4)).save(buffer, format="JPEG")
    jpeg = buffer.getvalue()
    described = {"content_type": "image/jpeg", "width": 8, "height": 4, "file_size": len(jpeg)}
    assert check_image(described, jpeg, "image/jpeg", "jpeg", "i") == []
    lying = {**described, "content_type": "image/png"}
    assert _rules(check_image(lying, jpeg, "image/png", "png", "i")) == {"image-type", "image-format"}
    assert _rules(check_image({**described, "width": 9}, jpeg, None, None, "i")) == {"image-size"}
