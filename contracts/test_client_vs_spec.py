"""Client against spec: every request our client sends and every response it accepts is checked against the spec.

The client runs its real end-to-end scenarios (all four endpoints, sync and async, status stream and
polling, the error kinds, cancel) with a `ConformanceRecorder` as its transport, so a client that drifts
from the spec (a field renamed, a status it starts relying on, a parameter the spec does not have) fails
here even when the emulator, built from the same spec, would have played along.

Against a remote server only one paid lifecycle runs (`--max-paid-calls` guards it), with `num_images=1`
on the cheapest endpoint unless `--contract-endpoint` says otherwise, and an input whose effect shows in the output
(`contracts/paid_job.py`); the error checks there cost nothing.
"""

from __future__ import annotations

import asyncio
import base64
import io
import time
import uuid
from collections.abc import Iterator

import httpx
import pytest
from PIL import Image as PILImage

from contracts.conformance import ConformanceRecorder, SpecIndex
from contracts.conftest import is_free
from contracts.paid_job import RequestIds, client_lifecycle, paid_job
from contracts.summary import STATS
from contracts.target import BudgetExhausted, ContractTarget, PaidCallBudget
from fal_kontext import (
    AsyncKontext,
    AuthenticationError,
    Completed,
    ContentPolicyError,
    Endpoint,
    Kontext,
    NotFoundError,
    RequestFailedError,
    Status,
)
from fal_kontext.spec import endpoint_specs


@pytest.fixture(scope="module")
def index() -> SpecIndex:
    return SpecIndex()


@pytest.fixture
def recorder(index: SpecIndex) -> Iterator[ConformanceRecorder]:
    recorder = ConformanceRecorder(httpx.HTTPTransport(), index)
    yield recorder
    for exchange in recorder.exchanges:
        if exchange.operation_id:
            STATS.record_exchange(exchange.operation_id)
    assert recorder.violations() == [], "the client's exchanges do not fit the spec"


def _png(colour: tuple[int, int, int]) -> bytes:
    buffer = io.BytesIO()
    PILImage.new("RGB", (64, 48), colour).save(buffer, format="PNG")
    return buffer.getvalue()


def _data_uri() -> str:
    return "data:image/png;base64," + base64.b64encode(_png((90, 90, 90))).decode()


def _client(target: ContractTarget, transport: httpx.BaseTransport, *, stream_status: bool = True) -> Kontext:
    return Kontext(
        target.secret,
        auth=target.auth,
        base_url=target.base_url,
        transport=transport,
        wait_timeout=60,
        stream_status=stream_status,
    )


def _free_only(free_server: bool) -> None:
    if not free_server:
        pytest.skip("this scenario submits several paid jobs: the emulator or a free server only")


def _emulator_only(target: ContractTarget) -> None:
    if target.remote:
        pytest.skip("relies on the emulator's prompt triggers ([content-policy], [runner-failure]); emulator only")


@pytest.mark.parametrize("endpoint", list(Endpoint), ids=str)
def test_each_endpoint_streaming(
    contract_target: ContractTarget, recorder: ConformanceRecorder, free_server: bool, endpoint: Endpoint
) -> None:
    _free_only(free_server)
    body: dict[str, object] = {"prompt": "Put a donut next to the flour.", "num_images": 2, "seed": 7}
    if endpoint.image_field:
        body[endpoint.image_field] = [_data_uri(), _data_uri()] if endpoint.is_multi else _data_uri()
    with _client(contract_target, recorder) as kontext:
        result = kontext.run(endpoint, body)
    assert len(result.images) == 2
    seen = recorder.operations_seen()
    assert {endpoint.operation_id, "stream_request_status", "get_request_result"} <= seen


def test_polling_with_logs_and_resume_by_request_id(
    contract_target: ContractTarget, recorder: ConformanceRecorder, free_server: bool
) -> None:
    _free_only(free_server)
    with _client(contract_target, recorder, stream_status=False) as kontext:
        handle = kontext.submit("fal-ai/flux-pro/kontext/max", {"prompt": "Make it night", "image_url": _data_uri()})
        statuses: list[Status] = []
        kontext.handle(handle.request_id).wait(on_update=statuses.append)
        result = kontext.handle(handle.request_id).result()
        after = [kontext.handle(handle.request_id).status() for _ in range(2)]
    assert result.request_id == handle.request_id and statuses
    assert all(isinstance(status, Completed) for status in after), "a completed request must stay COMPLETED"
    assert {"get_request_status", "get_request_result"} <= recorder.operations_seen()
    assert "stream_request_status" not in recorder.operations_seen()


def test_cancel_then_cancel_again(slow_target: ContractTarget, recorder: ConformanceRecorder) -> None:
    with _client(slow_target, recorder) as kontext:
        handle = kontext.submit("fal-ai/flux-pro/kontext", {"prompt": "cancel me", "image_url": _data_uri()})
        first = handle.cancel()
        # A queued request is removed at once; a running one is signalled and the app decides when it stops
        # (https://fal.ai/docs/inference-api/queue/cancel): wait for COMPLETED rather than expect it at once.
        deadline = time.monotonic() + 30
        after = handle.status()
        while not isinstance(after, Completed) and time.monotonic() < deadline:
            time.sleep(0.1)
            after = handle.status()
        second = handle.cancel()
    assert (str(first), str(second)) == ("CANCELLATION_REQUESTED", "ALREADY_COMPLETED")
    assert isinstance(after, Completed)
    assert [e.status for e in recorder.exchanges if e.operation_id == "cancel_request"] == [202, 400]


def test_model_errors_come_back_typed(contract_target: ContractTarget, recorder: ConformanceRecorder) -> None:
    _emulator_only(contract_target)
    with _client(contract_target, recorder) as kontext:
        with pytest.raises(ContentPolicyError):
            kontext.edit("[content-policy] a forbidden edit", image=_data_uri())
        with pytest.raises(RequestFailedError):
            kontext.edit("[runner-failure] the runner dies", image=_data_uri())
    statuses = {e.status for e in recorder.exchanges if e.operation_id == "get_request_result"}
    assert {422, 503} <= statuses


def test_async_client_stream_and_poll(contract_target: ContractTarget, index: SpecIndex, free_server: bool) -> None:
    _free_only(free_server)
    recorder = ConformanceRecorder(httpx.AsyncHTTPTransport(), index)

    async def scenario() -> None:
        for stream_status in (True, False):
            async with AsyncKontext(
                contract_target.secret,
                base_url=contract_target.base_url,
                transport=recorder,
                stream_status=stream_status,
                wait_timeout=60,
            ) as kontext:
                results = await asyncio.gather(
                    kontext.edit("Add a hat", image=_data_uri(), model="max"),
                    kontext.edit("Combine them", images=[_data_uri(), _data_uri()], model="pro"),
                )
                assert all(r.images for r in results)

    asyncio.run(scenario())
    for exchange in recorder.exchanges:
        if exchange.operation_id:
            STATS.record_exchange(exchange.operation_id)
    assert recorder.violations() == []
    assert {
        "submit_flux_pro_kontext_max",
        "submit_flux_pro_kontext_multi",
        "stream_request_status",
        "get_request_status",
    } <= recorder.operations_seen()


def test_free_errors_unknown_request_and_bad_credentials(
    contract_target: ContractTarget, recorder: ConformanceRecorder
) -> None:
    """Costs nothing on any server: an invented request id, and a key the server cannot accept."""
    with _client(contract_target, recorder) as kontext:
        missing = kontext.handle(str(uuid.uuid4()), endpoint=contract_target.endpoint)
        with pytest.raises(NotFoundError):
            missing.status()
        with pytest.raises(NotFoundError):
            missing.result()
    wrong = ContractTarget(
        contract_target.base_url, contract_target.auth, "wrong-" + uuid.uuid4().hex, contract_target.remote
    )
    with _client(wrong, recorder) as kontext, pytest.raises(AuthenticationError):
        kontext.handle(str(uuid.uuid4())).status()


def test_paid_lifecycle(
    contract_target: ContractTarget,
    recorder: ConformanceRecorder,
    paid_calls: PaidCallBudget,
    request: pytest.FixtureRequest,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The client's paid job (one image, the cheapest endpoint by default) with the checkable input of
    `contracts/paid_job.py`: the output must echo what was sent, and the request id be new to the run."""
    endpoint = next(e for e in endpoint_specs() if e.id == contract_target.endpoint)
    job = paid_job(endpoint, remote=contract_target.remote)
    what = f"client lifecycle on {endpoint.id} ({job.images} image)"
    try:
        paid_calls.spend(what)
    except BudgetExhausted as exhausted:
        pytest.skip(str(exhausted))
    if not is_free(request.config):
        price = endpoint.price_usd_per_image
        with capsys.disabled():
            cost = f"${price * job.images:.2f}" if price is not None else "price not stated in the spec"
            print(f"\npaid call {paid_calls.spent}/{paid_calls.limit}: {what}: {cost}", flush=True)
        STATS.record_paid(what, None if price is None else price * job.images)
    request_ids: RequestIds = request.getfixturevalue("request_ids")
    found = client_lifecycle(contract_target, recorder, job, request_ids)
    assert [str(v) for v in found] == [], "the result is not what the job asked for"
