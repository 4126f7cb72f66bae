"""The client against the local emulator over real sockets (127.0.0.1): all four endpoints, sync and async,
stream and poll, cancel, timeout-then-cancel, every error kind, resume by request id."""

from __future__ import annotations

import asyncio
import io
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from PIL import Image as PILImage

from fal_kontext import (
    APIConnectionError,
    AsyncKontext,
    AuthenticationError,
    CancelStatus,
    Completed,
    ContentPolicyError,
    Endpoint,
    InProgress,
    NotFoundError,
    Queued,
    RecoveryPolicy,
    RequestCancelledError,
    RequestFailedError,
    ResultNotReadyError,
    RetryPolicy,
    ServerError,
    StartTimeoutError,
    Status,
    SubmitOutcomeUnknownError,
    ValidationError,
    WaitTimeoutError,
)
from fal_kontext.protocol.images import sniff_image_type
from fal_kontext_emulator import EmulatorConfig, RunningEmulator, run_emulator
from tests.client.client_fakes import AnyClient, call_verb, input_for, real_client

FAST_RETRY = RetryPolicy(max_retries=3, initial_delay=0.01, max_delay=0.05)


def png(color: str = "red", size: tuple[int, int] = (32, 24)) -> bytes:
    buffer = io.BytesIO()
    PILImage.new("RGB", size, color).save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.fixture(scope="module")
def emulator() -> Iterator[RunningEmulator]:
    with run_emulator(EmulatorConfig(run_time=0.2, queue_wait=0.05, runners=8, keepalive_interval=1.0)) as running:
        yield running


@pytest.fixture(scope="module")
def slow_emulator() -> Iterator[RunningEmulator]:
    """One runner and long jobs: requests wait in the queue long enough to be cancelled or time out."""
    with run_emulator(EmulatorConfig(run_time=30.0, queue_wait=0.05, runners=1, keepalive_interval=1.0)) as running:
        yield running


@pytest.fixture
def kontext(emulator: RunningEmulator, kind: str) -> Iterator[AnyClient]:
    emulator.clear_faults()
    with real_client(kind, emulator.key, base_url=emulator.base_url, retry=FAST_RETRY) as client:
        yield client


@pytest.mark.parametrize("endpoint", list(Endpoint))
def test_every_endpoint_with_the_stream(
    kontext: AnyClient, emulator: RunningEmulator, endpoint: Endpoint, tmp_path: Path
) -> None:
    emulator.reset_counters()
    updates: list[Status] = []
    result = call_verb(
        kontext,
        endpoint,
        "Put a donut next to the flour",
        png(),
        aspect_ratio="16:9",
        num_images=2,
        on_update=updates.append,
    )
    assert len(result.images) == 2 and result.output.prompt == "Put a donut next to the flour"
    assert isinstance(updates[-1], Completed)
    calls = emulator.counters()["calls"]
    assert calls.get(endpoint.operation_id) == 1
    assert calls.get("stream_request_status") == 1 and not calls.get("get_request_status")
    assert calls.get("get_request_result") == 1
    paths = kontext.save(result, tmp_path)
    assert [p.suffix for p in paths] == [".jpg", ".jpg"]
    assert sniff_image_type(paths[0].read_bytes()) == "image/jpeg"
    assert list(tmp_path.glob("*.part")) == []


def test_every_endpoint_async_polling_concurrently(emulator: RunningEmulator, tmp_path: Path) -> None:
    emulator.clear_faults()

    async def main() -> None:
        async with AsyncKontext(
            emulator.key, base_url=emulator.base_url, stream_status=False, retry=FAST_RETRY, connection_pools=2
        ) as kontext:
            handles = [
                await kontext.submit(endpoint, input_for(endpoint, kontext_png(), output_format="png"))
                for endpoint in Endpoint
            ]
            results = await asyncio.gather(*(h.wait(timeout=30) for h in handles))
            assert [r.request_id for r in results] == [h.request_id for h in handles]
            paths = await kontext.save(results[0], tmp_path)
            assert paths[0].suffix == ".png"

    asyncio.run(main())


def kontext_png() -> str:
    from fal_kontext.files import image_source_to_url

    return image_source_to_url(png("green"))


def test_stream_reports_queue_and_progress(kind: str) -> None:
    seen: list[Status] = []
    # 1 s jobs: the stream opens while the request is pending, however loaded the machine.
    with (
        run_emulator(EmulatorConfig(run_time=1.0, queue_wait=0.05, keepalive_interval=1.0)) as emulator,
        real_client(kind, emulator.key, base_url=emulator.base_url) as kontext,
    ):
        kontext.edit("a hat", image=png(), on_update=seen.append)
    assert any(isinstance(s, (Queued, InProgress)) for s in seen) and isinstance(seen[-1], Completed)
    assert any(entry.message for s in seen for entry in s.logs)


def test_poll_mode_makes_status_calls(kontext: AnyClient, emulator: RunningEmulator) -> None:
    emulator.reset_counters()
    handle = kontext.submit("fal-ai/flux-pro/kontext", {"prompt": "a prompt", "image_url": kontext_png()})
    handle.wait(stream=False)
    calls = emulator.counters()["calls"]
    assert calls.get("get_request_status", 0) >= 1 and not calls.get("stream_request_status")


def test_resume_by_request_id_in_a_new_client(kontext: AnyClient, emulator: RunningEmulator, kind: str) -> None:
    request_id = kontext.submit(Endpoint.MAX, {"prompt": "a prompt", "image_url": kontext_png()}).request_id
    with real_client(kind, emulator.key, base_url=emulator.base_url) as later:
        result = later.handle(request_id).wait()
    assert result.request_id == request_id


def test_result_before_completion_is_not_ready(slow_emulator: RunningEmulator, kind: str) -> None:
    with real_client(kind, slow_emulator.key, base_url=slow_emulator.base_url) as kontext:
        handle = kontext.submit(Endpoint.PRO, {"prompt": "a prompt", "image_url": kontext_png()})
        with pytest.raises(ResultNotReadyError, match=handle.request_id):
            handle.result()
        assert isinstance(handle.status(), (Queued, InProgress))
        handle.cancel()


def test_cancel_then_wait_is_cancelled(slow_emulator: RunningEmulator, kind: str) -> None:
    with real_client(kind, slow_emulator.key, base_url=slow_emulator.base_url) as kontext:
        handle = kontext.submit(Endpoint.PRO, {"prompt": "a prompt", "image_url": kontext_png()})
        assert handle.cancel() is CancelStatus.CANCELLATION_REQUESTED
        with pytest.raises(RequestCancelledError, match=handle.request_id):
            handle.wait(timeout=10)
        assert handle.cancel() is CancelStatus.ALREADY_COMPLETED


@pytest.mark.parametrize("stream", [True, False])
def test_timeout_then_cancel(slow_emulator: RunningEmulator, kind: str, stream: bool) -> None:
    with real_client(kind, slow_emulator.key, base_url=slow_emulator.base_url, stream_status=stream) as kontext:
        handle = kontext.submit(Endpoint.MAX, {"prompt": "a prompt", "image_url": kontext_png()})
        with pytest.raises(WaitTimeoutError) as caught:
            handle.wait(timeout=0.6)
        assert caught.value.cancelled and caught.value.request_id == handle.request_id
        status = handle.status()
        assert isinstance(status, Completed) and status.error_type is not None


def test_start_timeout(slow_emulator: RunningEmulator, kind: str) -> None:
    with real_client(kind, slow_emulator.key, base_url=slow_emulator.base_url) as kontext:
        # the one runner is busy with this request, so the next cannot start within its deadline
        blocker = kontext.submit(Endpoint.PRO, {"prompt": "a prompt", "image_url": kontext_png()})
        try:
            with pytest.raises(StartTimeoutError):
                kontext.run(
                    Endpoint.PRO, {"prompt": "a prompt", "image_url": kontext_png()}, start_timeout=0.3, timeout=10
                )
        finally:
            blocker.cancel()


def test_wrong_key(emulator: RunningEmulator, kind: str) -> None:
    with (
        real_client(kind, "wrong-key", base_url=emulator.base_url) as kontext,
        pytest.raises(AuthenticationError, match="FAL_KEY"),
    ):
        kontext.submit(Endpoint.PRO, {"prompt": "a prompt", "image_url": kontext_png()})


def test_bearer_auth(emulator: RunningEmulator, kind: str) -> None:
    with real_client(kind, emulator.key, auth="bearer", base_url=emulator.base_url) as kontext:
        assert kontext.edit("a prompt", image=png()).images


def test_unknown_request_id(kontext: AnyClient) -> None:
    with pytest.raises(NotFoundError, match="no-such-id"):
        kontext.handle("no-such-id").status()
    with pytest.raises(NotFoundError):
        kontext.handle("no-such-id").cancel()


def test_content_policy(kontext: AnyClient) -> None:
    with pytest.raises(ContentPolicyError) as caught:
        kontext.edit("[content-policy] something", image=png())
    assert caught.value.request_id and caught.value.errors[0].type == "content_policy_violation"


def test_runner_failure(kontext: AnyClient) -> None:
    with pytest.raises(RequestFailedError) as caught:
        kontext.edit("[runner-failure] please", image=png())
    assert caught.value.request_id in str(caught.value)


def test_server_validation_of_an_image_it_cannot_read(kontext: AnyClient) -> None:
    with pytest.raises(ValidationError) as caught:
        kontext.edit("a prompt", image="https://example.invalid/nope.png")
    assert caught.value.errors and caught.value.errors[0].loc[-1] == "image_url"


def test_transient_faults_are_retried(kontext: AnyClient, emulator: RunningEmulator) -> None:
    emulator.add_fault("status=503,502-nginx,429:0,ok")
    emulator.add_fault("result=500,ok")
    result = kontext.submit(Endpoint.PRO, {"prompt": "a prompt", "image_url": kontext_png()}).wait(stream=False)
    assert result.images


def test_a_dropped_stream_falls_back_to_polling(kontext: AnyClient, emulator: RunningEmulator) -> None:
    emulator.add_fault("stream=503")
    emulator.reset_counters()
    kontext.edit("a prompt", image=png())
    assert emulator.counters()["calls"].get("get_request_status", 0) >= 1


def test_submit_is_never_sent_twice(emulator: RunningEmulator, kind: str) -> None:
    # Without looking the job up (recovery: tests/client/*/test_recovery.py), a lost answer is never sent again.
    emulator.clear_faults()
    emulator.reset_counters()
    with real_client(
        kind, emulator.key, base_url=emulator.base_url, retry=FAST_RETRY, recovery=RecoveryPolicy(look_up=False)
    ) as kontext:
        emulator.add_fault("submit=503")
        with pytest.raises(SubmitOutcomeUnknownError) as caught:
            kontext.submit(Endpoint.PRO, {"prompt": "a prompt", "image_url": kontext_png()})
        assert isinstance(caught.value.__cause__, ServerError)
        emulator.clear_faults()
        emulator.add_fault("submit=drop-after")
        with pytest.raises(APIConnectionError, match="not sent again"):
            kontext.submit(Endpoint.PRO, {"prompt": "a prompt", "image_url": kontext_png()})
        assert emulator.counters()["calls"].get("submit_flux_pro_kontext") == 2
        emulator.clear_faults()
        # A 429 refuses the request (nothing is queued): the submit is sent again after Retry-After, and queued once.
        emulator.add_fault("submit=429:1")
        queued_before = emulator.submit_count()
        kontext.submit(Endpoint.PRO, {"prompt": "a prompt", "image_url": kontext_png()})
        assert emulator.counters()["calls"].get("submit_flux_pro_kontext") == 4
        assert emulator.submit_count() == queued_before + 1


def test_every_exchange_of_the_client_conforms_to_the_spec(emulator: RunningEmulator, kind: str) -> None:
    from contracts.conformance import ConformanceRecorder

    emulator.clear_faults()
    recorder = ConformanceRecorder(httpx.HTTPTransport() if kind == "sync" else httpx.AsyncHTTPTransport())
    with real_client(kind, emulator.key, base_url=emulator.base_url, transport=recorder) as kontext:
        for endpoint in Endpoint:
            call_verb(kontext, endpoint, "a prompt", png(), seed=7, output_format="png")
        handle = kontext.submit(Endpoint.PRO, {"prompt": "a prompt", "image_url": kontext_png()})
        handle.status(logs=True)
        handle.wait(stream=False)
        handle.cancel()
    assert recorder.violations() == []
    assert recorder.operations_seen() >= {e.operation_id for e in Endpoint} | {
        "stream_request_status",
        "get_request_status",
        "get_request_result",
        "cancel_request",
    }
