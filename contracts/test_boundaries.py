"""Request-side drift: the server accepts every boundary value the spec allows (contracts/boundaries.py).

Free servers (the local emulator, a server declared free) get every case on every run. On a paid server the run is
opt-in (`--contract-boundaries`); its cost is computed from the spec's price and printed first, and nothing is sent
unless `--confirm-cost USD` covers it.
"""

from __future__ import annotations

from dataclasses import replace

import pytest

from contracts.boundaries import boundary_cases, cost_of, send_cases
from contracts.conftest import is_free
from contracts.mutations import REQUEST_DRIFTS, create_proxy
from contracts.paid_job import input_properties, paid_job
from contracts.reference_server import ReferenceConfig, create_app
from contracts.serving import serve
from contracts.summary import STATS
from contracts.target import DEFAULT_ENDPOINT, ContractTarget
from fal_kontext.spec import endpoint_specs


def test_every_boundary_value_is_accepted(
    contract_target: ContractTarget, request: pytest.FixtureRequest, capsys: pytest.CaptureFixture[str]
) -> None:
    endpoint = next(e for e in endpoint_specs() if e.id == contract_target.endpoint)
    baseline = paid_job(endpoint, remote=contract_target.remote).body
    cases = boundary_cases(endpoint, baseline)
    assert cases, "the spec's input schema has no enum, range or boolean: nothing to check"
    free = is_free(request.config)
    if not free:
        if not request.config.getoption("--contract-boundaries"):
            pytest.skip(f"{len(cases)} paid jobs: opt in with --contract-boundaries and --confirm-cost USD")
        cost = cost_of(cases, endpoint)
        confirmed = request.config.getoption("--confirm-cost")
        images = sum(case.images for case in cases)
        said = f"${cost:.2f}" if cost is not None else "an unknown amount (the spec states no price)"
        with capsys.disabled():
            print(f"\nboundary run: {len(cases)} jobs, {images} images on {endpoint.id}: {said}", flush=True)
        if cost is None or cost > confirmed:
            pytest.skip(
                f"the boundary run costs {said}; confirm with --confirm-cost {cost or 'USD'} (given {confirmed})"
            )
    if not free:
        for case in cases:
            price = endpoint.price_usd_per_image
            STATS.record_paid(f"boundary {case}", None if price is None else price * case.images)
    refused = send_cases(contract_target, endpoint, cases)
    assert refused == [], "the server refuses values the spec allows:\n" + "\n".join(refused)


def test_a_server_with_narrower_limits_is_reported() -> None:
    """The reference server behind a relay that refuses the spec's largest num_images: the boundary run says so."""
    endpoint = next(e for e in endpoint_specs() if e.id == DEFAULT_ENDPOINT)
    baseline = paid_job(endpoint, remote=True).body
    cases = [case for case in boundary_cases(endpoint, baseline) if case.field == "num_images"]
    config = ReferenceConfig(keys=frozenset({"k"}), queue_wait=0.05, run_time=0.05)
    with serve(create_app(config)) as upstream, serve(create_proxy(upstream, REQUEST_DRIFTS["narrower_limits"])) as url:
        problems = send_cases(ContractTarget(url, "key", "k", remote=True), endpoint, cases)
    largest = max(case.value for case in cases)
    assert len(problems) == 1 and problems[0].startswith(f"num_images={largest}: refused at submit"), problems


def test_cases_and_cost_come_from_the_spec() -> None:
    endpoint = next(e for e in endpoint_specs() if e.id == DEFAULT_ENDPOINT)
    baseline = paid_job(endpoint, remote=True).body
    cases = boundary_cases(endpoint, baseline)
    properties = input_properties(endpoint.id)
    for name, schema in properties.items():
        for value in schema.get("enum", []):
            assert any(c.field == name and c.value == value for c in cases) or baseline.get(name) == value
    assert {c.value for c in cases if c.field == "num_images"} == {properties["num_images"]["maximum"]} - {
        baseline["num_images"]
    }
    priced = replace(endpoint, price_usd_per_image=0.04)
    assert cost_of(cases, priced) == round(sum(0.04 * c.images for c in cases), 4)
    assert cost_of(cases, replace(endpoint, price_usd_per_image=None)) is None
