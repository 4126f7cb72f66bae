"""Recovery of a submit whose answer was lost, in both clients against the emulator: its faults lose submit answers and
its request list finds the jobs; without a lookup, the error carries the id."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from PIL import Image as PILImage

from fal_kontext import Endpoint
from fal_kontext.files import image_source_to_url
from fal_kontext.protocol.recovery import RecoveryPolicy, SubmitOutcomeUnknownError
from fal_kontext_emulator import EmulatorConfig, RunningEmulator, run_emulator
from tests.client.client_fakes import real_client


@pytest.fixture(scope="module")
def emulator() -> Iterator[RunningEmulator]:
    with run_emulator(EmulatorConfig(run_time=0.2, queue_wait=0.05, runners=4, keepalive_interval=1.0)) as running:
        yield running


IMAGE = image_source_to_url(PILImage.new("RGB", (32, 24), "green"))
# The emulator lists a request once it ended (its default, as fal's example shows ended ones), a fraction of a
# second here: looking for 3 s before taking absence for proof is plenty against it.
EMULATOR_RECOVERY = RecoveryPolicy(absent_after=3.0, timeout=10.0, interval=0.2)


@pytest.mark.parametrize(
    ("fault", "calls"),
    [
        ("drop-after", 1),  # queued, then the connection closed: found in the list
        ("lost:502-nginx", 1),  # queued, then an nginx page: found in the list
        ("lost:503", 1),  # queued, then a 503 naming it: looked up by id
        ("cut", 1),  # queued, the answer cut mid-body: adopted from its header
        ("503-noid", 2),  # refused before queuing: not listed, so sent again
    ],
)
def test_the_emulator_s_lost_answers_are_recovered(
    emulator: RunningEmulator, kind: str, fault: str, calls: int
) -> None:
    emulator.clear_faults()
    emulator.reset_counters()
    queued_before = emulator.submit_count()
    emulator.add_fault(f"submit={fault}")
    prompt = f"recover {fault} {kind}"
    with real_client(kind, emulator.key, base_url=emulator.base_url, recovery=EMULATOR_RECOVERY) as kontext:
        result = kontext.run(Endpoint.PRO, {"prompt": prompt, "image_url": IMAGE})
    assert result.output.prompt == prompt
    assert emulator.counters()["calls"].get("submit_flux_pro_kontext") == calls
    assert emulator.submit_count() == queued_before + 1  # queued once: never submitted twice


def test_against_the_emulator_without_a_lookup_the_error_carries_the_id(emulator: RunningEmulator, kind: str) -> None:
    emulator.clear_faults()
    queued_before = emulator.submit_count()
    emulator.add_fault("submit=lost:503")
    with real_client(kind, emulator.key, base_url=emulator.base_url, recovery=RecoveryPolicy(look_up=False)) as kontext:
        with pytest.raises(SubmitOutcomeUnknownError) as caught:
            kontext.submit(Endpoint.PRO, {"prompt": "not looked up", "image_url": IMAGE})
        assert caught.value.request_id is not None
        assert kontext.handle(caught.value.request_id).wait().output.prompt == "not looked up"
    assert emulator.submit_count() == queued_before + 1
