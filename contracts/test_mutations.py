"""The remote mode has teeth: each plausible deviation of a correct server is caught, and harmless ones are not.

The reference server (a correct fal-like server) runs behind the mutating proxy of `contracts/mutations.py`, one
deviation per proxy; the remote mode's two paid jobs run against each proxy as against any remote server: the
client's lifecycle through the exchange recorder (`test_client_vs_spec.py::test_paid_lifecycle`) and the rules probe
(`contracts/semantics.py`: the free probes and one lifecycle, every answer also checked against the spec), sharing
the run's request ids. The probe's job asks for two images and the probe follows a cancelled job and one whose start
deadline passes to their end, as the opt-in priced checks do on a paid server (the reference server is free). The score is in the contract summary (`make contracts`) and in docs/contracts.md.
"""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from contracts.conformance import ConformanceRecorder, SpecIndex
from contracts.mutations import CONTROLS, MUTATIONS, Mutation, create_proxy
from contracts.paid_job import RequestIds, client_lifecycle, paid_job
from contracts.reference_server import ReferenceConfig, create_app
from contracts.semantics import Observation, ProbeOptions, ProbeSettings, observe_lifecycle
from contracts.serving import serve
from contracts.summary import STATS
from contracts.target import ContractTarget, PaidCallBudget
from fal_kontext.spec import endpoint_specs
from fal_kontext_emulator.queue_rules import Violation

KEY, SECOND_KEY = "reference-key", "reference-second-key"
# Short waits: the reference server completes a job in 0.9 s, so a stream open 2 s after COMPLETED is not closing.
# The queue wait is long enough for several polls to see IN_QUEUE (rising positions).
SETTINGS = ProbeSettings(wait_timeout=30, poll_interval=0.05, stream_close_timeout=2.0, stream_read_timeout=4.0)


def _remote_mode(upstream: str, mutation: Mutation) -> Observation:
    with serve(create_proxy(upstream, mutation)) as url:
        target = ContractTarget(url, "key", KEY, remote=True)
        endpoint = next(e for e in endpoint_specs() if e.id == target.endpoint)
        ids = RequestIds()
        # One SpecIndex per worker: schemathesis' validation is not documented as thread-safe.
        recorder = ConformanceRecorder(httpx.HTTPTransport(), SpecIndex())
        found = client_lifecycle(target, recorder, paid_job(endpoint, remote=True), ids)
        found += [Violation("client-spec", problem) for problem in recorder.violations()]
        options = ProbeOptions(second_secret=SECOND_KEY, images=2, ids=ids, cancel_pending=True, error_job=True)
        seen = observe_lifecycle(
            target, PaidCallBudget(limit=3), options=options, settings=SETTINGS, announce=lambda _: None
        )
        seen.add(found)
        return seen


@pytest.fixture(scope="module")
def observations(request: pytest.FixtureRequest) -> Iterator[dict[str, Observation]]:
    # Long enough in the queue for two polls however loaded the machine (rising_queue_position needs them).
    config = ReferenceConfig(keys=frozenset({KEY, SECOND_KEY}), queue_wait=1.5, run_time=0.3)
    with serve(create_app(config)) as upstream, ThreadPoolExecutor(max_workers=6) as pool:
        every = {**MUTATIONS, **CONTROLS}
        futures = {name: pool.submit(_remote_mode, upstream, mutation) for name, mutation in every.items()}
        yield {name: future.result() for name, future in futures.items()}


@pytest.mark.parametrize("name", sorted(MUTATIONS))
def test_the_remote_mode_catches_the_deviation(observations: dict[str, Observation], name: str) -> None:
    seen = observations[name]
    STATS.record_mutation(name, bool(seen.violations))
    assert seen.violations, f"{name} ({MUTATIONS[name].description}) went unnoticed"


@pytest.mark.parametrize("name", sorted(CONTROLS))
def test_the_remote_mode_accepts_a_harmless_difference(observations: dict[str, Observation], name: str) -> None:
    assert [str(v) for v in observations[name].violations] == [], CONTROLS[name].description
