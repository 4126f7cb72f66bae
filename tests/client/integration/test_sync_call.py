"""``run_direct`` (fal's synchronous endpoint) through both clients against the emulator: the result without the
queue, a failed run not sent again, errors, a server without the endpoint, and the connection held for the run."""

from __future__ import annotations

import base64
import io
import time
from collections.abc import Iterator

import pytest
from PIL import Image as PILImage

from fal_kontext.config import RequestTimeouts
from fal_kontext.endpoints import Endpoint
from fal_kontext.errors import (
    APITimeoutError,
    ContentPolicyError,
    DirectUnavailableError,
    InvalidInputError,
    ServerError,
    UnexpectedResponseError,
)
from fal_kontext.results import EditResult
from fal_kontext_emulator import EmulatorConfig, RunningEmulator, run_emulator
from tests.client.client_fakes import AnyClient, real_client
from tests.client.conftest import ENDPOINT


@pytest.fixture(scope="module")
def emulator() -> Iterator[RunningEmulator]:
    with run_emulator(EmulatorConfig(run_time=0.1, queue_wait=0.02, runners=4, keepalive_interval=1.0)) as running:
        yield running


@pytest.fixture
def direct_client(emulator: RunningEmulator, kind: str) -> Iterator[AnyClient]:
    emulator.clear_faults()
    emulator.reset_counters()
    with real_client(kind, emulator.key, base_url=emulator.base_url) as client:
        yield client


def image_input(endpoint: Endpoint) -> dict[str, object]:
    """The endpoint's image field (from the spec), filled with a real PNG; nothing for text-to-image."""
    buffer = io.BytesIO()
    PILImage.new("RGB", (32, 24), "orange").save(buffer, format="PNG")
    image = "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()
    if endpoint.image_field is None:
        return {}
    return {endpoint.image_field: [image, image] if endpoint.is_multi else image}


@pytest.mark.parametrize("endpoint", list(Endpoint))
def test_run_direct_answers_the_result_without_the_queue(
    direct_client: AnyClient, emulator: RunningEmulator, endpoint: Endpoint
) -> None:
    result = direct_client.run_direct(endpoint, {"prompt": "a donut", "num_images": 2, **image_input(endpoint)})
    assert isinstance(result, EditResult) and len(result.images) == 2 and result.output.to_dict()["prompt"] == "a donut"
    assert result.request_id  # the emulator sends x-fal-request-id, as fal does
    calls = emulator.counters()["calls"]
    assert calls == {f"sync_{endpoint.operation_id}": 1}  # no submit, status or result call


def test_a_failed_run_is_not_sent_again(direct_client: AnyClient, emulator: RunningEmulator) -> None:
    emulator.add_fault("sync=503,ok")
    with pytest.raises(ServerError):
        direct_client.run_direct(ENDPOINT, {"prompt": "a donut", **image_input(Endpoint.PRO)})
    assert emulator.counters()["calls"] == {"sync_submit_flux_pro_kontext": 1}


def test_the_model_s_errors_are_the_queue_s(direct_client: AnyClient) -> None:
    with pytest.raises(ContentPolicyError):
        direct_client.run_direct(ENDPOINT, {"prompt": "[content-policy]", **image_input(Endpoint.PRO)})


def test_a_bad_input_is_refused_before_sending(direct_client: AnyClient, emulator: RunningEmulator) -> None:
    with pytest.raises(InvalidInputError, match="num_images"):
        direct_client.run_direct(ENDPOINT, {"prompt": "a prompt", "num_images": 99, **image_input(Endpoint.PRO)})
    assert emulator.counters()["calls"] == {}


def test_a_server_without_the_endpoint_says_to_use_the_queue(emulator: RunningEmulator, kind: str) -> None:
    elsewhere = emulator.base_url + "/not-sync"
    with (
        real_client(kind, emulator.key, base_url=emulator.base_url, sync_url=elsewhere) as client,
        pytest.raises(DirectUnavailableError, match=r"Use run\(\) or edit\(\), which go through the queue"),
    ):
        client.run_direct(ENDPOINT, {"prompt": "a prompt", **image_input(Endpoint.PRO)})


def test_a_queue_given_as_sync_url_is_an_unexpected_answer(emulator: RunningEmulator, kind: str) -> None:
    with (
        real_client(kind, emulator.key, base_url=emulator.base_url, sync_url=emulator.base_url) as client,
        pytest.raises(UnexpectedResponseError, match="A queue would have queued a job"),
    ):
        client.run_direct(ENDPOINT, {"prompt": "a prompt", **image_input(Endpoint.PRO)})


def test_the_connection_is_held_for_the_run_and_its_timeout_is_the_run_s(kind: str) -> None:
    config = EmulatorConfig(run_time=1.5, queue_wait=0.0, runners=2, keepalive_interval=1.0)
    short_reads = RequestTimeouts(connect=5.0, read=1.0)
    with (
        run_emulator(config) as slow,
        real_client(kind, slow.key, base_url=slow.base_url, timeouts=short_reads) as client,
    ):
        started = time.monotonic()
        with pytest.raises(APITimeoutError, match="not sent again"):
            client.run_direct(ENDPOINT, {"prompt": "a prompt", **image_input(Endpoint.PRO)}, timeout=0.5)
        assert time.monotonic() - started < 1.4  # gave up at the run's timeout, not at the run's end
        assert slow.counters()["calls"] == {"sync_submit_flux_pro_kontext": 1}
        # A 1.5 s run outlasts the 1 s per-request read timeout: the run's own timeout holds the connection.
        result = client.run_direct(ENDPOINT, {"prompt": "a prompt", **image_input(Endpoint.PRO)}, timeout=30)
        assert len(result.images) == 1
