"""Status stream endings (found by the benchmarks, bench/), against the emulator: a stream whose connection drops
mid-answer falls back to polling with no httpx exception reaching the caller, in both clients."""

from __future__ import annotations

import base64
import io
from collections.abc import Iterator

import pytest
from PIL import Image

from fal_kontext import Endpoint
from fal_kontext_emulator import EmulatorConfig, RunningEmulator, run_emulator
from tests.client.client_fakes import real_client


def _input() -> dict[str, str]:
    buffer = io.BytesIO()
    Image.new("RGB", (8, 8), "red").save(buffer, format="PNG")
    return {"prompt": "a prompt", "image_url": "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()}


@pytest.fixture(scope="module")
def emulator() -> Iterator[RunningEmulator]:
    with run_emulator(EmulatorConfig(queue_wait=0, run_time=0.05)) as running:
        yield running


def test_wait_survives_a_dropped_stream(emulator: RunningEmulator, kind: str) -> None:
    emulator.reset_counters()
    emulator.add_fault("stream=drop")
    with real_client(kind, emulator.key, base_url=emulator.base_url) as kontext:
        result = kontext.submit(Endpoint.PRO, _input()).wait()
    assert result.images
    calls = emulator.counters()["calls"]
    assert calls["stream_request_status"] >= 1 and calls["get_request_result"] == 1
    assert emulator.counters()["faults"] == {"stream_request_status": 1}
