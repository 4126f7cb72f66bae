"""What a schema cannot express, checked on a whole lifecycle: the same probe against the emulator and a remote server.

`contracts/semantics.py` holds the rules and the probe. Against a remote server the probe's job is a paid call
(`--max-paid-calls`, its price printed before it is sent); `--contract-second-key` adds the per-key isolation check.
The tests below the probe show that each rule can fail.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import replace
from typing import Any

import pytest

from contracts.conformance import SpecIndex
from contracts.conftest import is_free
from contracts.paid_job import PaidJob, RequestIds, check_output, check_ratio, input_properties, paid_job
from contracts.semantics import ProbeOptions, check_image, observe_lifecycle
from contracts.summary import STATS
from contracts.target import (
    DEFAULT_ENDPOINT,
    ContractTarget,
    PaidCallBudget,
    join_url,
    queue_path,
    with_trailing_slash,
)
from fal_kontext.spec import endpoint_specs
from fal_kontext_emulator.queue_rules import (
    STILL_IN_PROGRESS,
    RequestHistory,
    Violation,
    check_returned_url,
    check_status_answer,
    check_stream_logs,
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
    from fal_kontext_emulator import EmulatorConfig, run_emulator

    config = EmulatorConfig(keys=("test-key", SECOND_KEY), queue_wait=0.3, run_time=0.3)
    with run_emulator(config) as emulator:
        yield ContractTarget(emulator.base_url, "key", emulator.key, remote=False, verify=emulator.verify), SECOND_KEY


def probe_images(config: pytest.Config, endpoint_id: str, announce: Callable[[str], None]) -> int:
    """Images the probe's job asks for: 2 on a free server; on a paid one only with --contract-two-images and a
    --confirm-cost that covers the job at the spec's price (said before anything is sent), else 1."""
    if is_free(config):
        return 2
    if not config.getoption("--contract-two-images"):
        return 1
    price = next(e.price_usd_per_image for e in endpoint_specs() if e.id == endpoint_id)
    confirmed = config.getoption("--confirm-cost")
    cost = f"${2 * price:.2f}" if price is not None else "an unknown amount (the spec states no price)"
    announce(f"two-image check: the probe's job asks for 2 images on {endpoint_id}: {cost} (1 image more)")
    if price is None or 2 * price > confirmed:
        announce(f"two-image check not sent: --confirm-cost {confirmed} does not cover {cost}; the job asks for 1")
        return 1
    return 2


def probe_cancels(config: pytest.Config, endpoint_id: str, announce: Callable[[str], None]) -> bool:
    """Whether the probe cancels a pending job on a paid server: only with --contract-cancel and a --confirm-cost that
    covers one image at the spec's price (said before anything is sent; the job spends one unit of the budget)."""
    if not config.getoption("--contract-cancel"):
        return False
    price = next(e.price_usd_per_image for e in endpoint_specs() if e.id == endpoint_id)
    confirmed = config.getoption("--confirm-cost")
    cost = f"${price:.2f}" if price is not None else "an unknown amount (the spec states no price)"
    announce(f"cancel check: one more job on {endpoint_id}, cancelled while pending: up to {cost}")
    if price is None or price > confirmed:
        announce(f"cancel check not sent: --confirm-cost {confirmed} does not cover {cost}")
        return False
    return True


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

    images = probe_images(request.config, target.endpoint, announce)
    free = is_free(request.config)
    options = ProbeOptions(
        second_secret=second,
        images=images,
        ids=request_ids,
        cancel_pending=free or probe_cancels(request.config, target.endpoint, announce),
        error_job=free,
    )
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
    if free:
        expected |= {"cancel-pending", "error-ending"}
    assert expected <= seen.observed, f"not exercised: {expected - seen.observed}"
    if second:
        assert "per-key-isolation" in seen.observed


APP = "fal-ai/flux-pro"
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
    other_app = f"{BASE}/fal-ai/flux-kontext/requests/{RID}/status"
    assert _rules(check_returned_url(other_app, "get_request_status", APP, RID, BASE, where="u")) == {"url-path"}
    assert check_returned_url(BASE + path, "get_request_status", APP, RID, BASE, where="u") == []
    assert check_returned_url("https://queue.fal.run" + path, "get_request_status", APP, RID, BASE, where="u") == []
    assert _rules(check_returned_url(path, "get_request_status", APP, RID, BASE, where="u")) == {"url-absolute"}
    sub = f"{BASE}/fal-ai/flux-pro/kontext/requests/{RID}/status"
    assert _rules(check_returned_url(sub, "get_request_status", APP, RID, BASE, where="u")) == {"url-path"}
    assert _rules(
        check_returned_url("http://10.0.0.7:8080/v1" + path, "get_request_status", APP, RID, BASE, where="u")
    ) == {"url-host"}


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


def test_a_stream_carries_each_log_entry_once() -> None:
    entry = {"message": "Generating", "level": "INFO", "source": "USER", "timestamp": "2026-01-01T00:00:00Z"}
    later = {**entry, "message": "Done", "timestamp": "2026-01-01T00:00:01Z"}
    incremental: list[dict[str, Any]] = [{"logs": None}, {"logs": [entry]}, {"logs": [later]}]
    assert check_stream_logs(incremental, "s") == []
    cumulative = [{"logs": [entry]}, {"logs": [entry, later]}]
    assert _rules(check_stream_logs(cumulative, "s")) == {"stream-logs-incremental"}


def test_a_result_answered_200_means_completed() -> None:
    history = RequestHistory()
    assert history.observe({"status": "IN_PROGRESS"}, "a") == []
    assert history.observe_result(200, b"{}", "early") == []
    assert _rules(history.observe({"status": "IN_PROGRESS"}, "b")) == {"result-before-completion"}
    assert history.observe({"status": "IN_PROGRESS"}, "c") == []  # reported once per request
    raced = RequestHistory()  # completed between the status and the result: the next status says COMPLETED
    raced.observe({"status": "IN_PROGRESS"}, "a")
    raced.observe_result(200, b"{}", "early")
    assert raced.observe({"status": "COMPLETED"}, "b") == []
    still = json.dumps({"detail": STILL_IN_PROGRESS}).encode()
    assert _rules(raced.observe_result(400, still, "late")) == {"result-after-completion"}
    assert raced.observe_result(400, b'{"detail": "Request was cancelled"}', "cancelled") == []


def _job(**changes: object) -> PaidJob:
    endpoint = next(e for e in endpoint_specs() if e.id == DEFAULT_ENDPOINT)
    job = paid_job(endpoint, remote=True)
    return replace(job, body={**job.body, **changes}) if changes else job


def test_the_paid_job_asks_what_the_spec_allows() -> None:
    job = _job()
    properties = input_properties(job.endpoint.id)
    assert (
        job.body["aspect_ratio"] in properties["aspect_ratio"]["enum"] and job.aspect_ratio == job.body["aspect_ratio"]
    )
    across, down = map(int, job.body["aspect_ratio"].split(":"))
    assert across < down  # portrait: an output that kept a landscape or square input's ratio cannot pass for it
    assert job.body["output_format"] == job.output_format == "png" and "png" in properties["output_format"]["enum"]
    assert job.body["enhance_prompt"] is False and isinstance(job.body["seed"], int)
    assert not job.body["prompt"].isascii()
    assert job.images == job.body["num_images"] == 1
    assert paid_job(job.endpoint, remote=True, images=2).body["num_images"] == 2
    assert validate_input(job.body) == []


def validate_input(body: dict[str, object]) -> list[str]:
    return SpecIndex().check_schema(_job().endpoint.input_schema, body)


def test_the_output_must_echo_what_was_sent() -> None:
    job = _job()
    good = {
        "images": [{"url": "https://x/0.png"}],
        "seed": job.body["seed"],
        "prompt": job.body["prompt"],
        "has_nsfw_concepts": [False],
        "timings": {},
    }
    assert check_output(good, job, "r") == []
    mangled = str(good["prompt"]).encode().decode("latin-1")
    assert _rules(check_output({**good, "prompt": mangled}, job, "r")) == {"echo-prompt"}
    assert _rules(check_output({**good, "seed": 42}, job, "r")) == {"echo-seed"}
    assert _rules(check_output({**good, "has_nsfw_concepts": []}, job, "r")) == {"nsfw-flags"}
    two = replace(job, images=2)
    assert _rules(check_output(good, two, "r")) == {"image-count"}
    enhanced = _job(enhance_prompt=True)
    assert check_output({**good, "prompt": "an enhanced prompt"}, enhanced, "r") == []


def test_an_image_must_have_the_ratio_asked_for() -> None:
    assert check_ratio(880, 1184, "3:4", "i") == []  # about a megapixel on a 16-pixel grid: 0.9% off
    assert _rules(check_ratio(1024, 1024, "3:4", "i")) == {"aspect-ratio"}
    assert _rules(check_ratio(1184, 880, "3:4", "i")) == {"aspect-ratio"}


def test_every_submit_of_the_run_gets_its_own_request_id() -> None:
    ids = RequestIds()
    assert ids.add("a", "first") == [] and ids.add("b", "second") == []
    assert _rules(ids.add("a", "third")) == {"request-id-distinct"}


def test_queue_urls_come_from_the_spec_and_never_hold_a_double_slash() -> None:
    target = ContractTarget("https://proxy.example/v1/", "key", "k", remote=True)
    url = target.queue_url("get_request_status", RID)
    assert url == "https://proxy.example/v1" + queue_path("get_request_status", target.endpoint, RID)
    assert "//" not in url.split("://", 1)[1]
    assert with_trailing_slash(url + "/") == url + "/" and with_trailing_slash(url + "?logs=1") == url + "/?logs=1"
    assert join_url("https://a.example/", "/fal-ai/flux-pro/kontext") == "https://a.example/fal-ai/flux-pro/kontext"
