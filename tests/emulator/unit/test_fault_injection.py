"""Fault rules and their injection, in-process: parsing, plans, the answers of injected faults, the admin API."""

from __future__ import annotations

import httpx
import pytest

from fal_kontext_emulator import ConnectionDropped, EmulatorConfig, FaultRule
from fal_kontext_emulator.fault_rules import Fault, FaultPlan, FaultSyntaxError
from tests.emulator.conftest import REQUESTS, SUBMIT, MakeClient, body

pytestmark = pytest.mark.anyio


def test_rules_parse_from_text() -> None:
    rule = FaultRule.parse("submit=503,429:2,503-noid,502-nginx,drop,drop-after,ok")
    assert rule.sequence == (
        Fault("status", 503),
        Fault("status", 429, retry_after=2.0),
        Fault("status", 503, with_request_id=False),
        Fault("status", 502, with_request_id=False, ingress=True),
        Fault("drop"),
        Fault("drop-after"),
        None,
    )
    assert FaultRule.parse("status@0.25=504") == FaultRule("status", rate=0.25, faults=(Fault("status", 504),))
    assert FaultRule.parse("*@0.2=429:1|503|drop|slow:0.5").faults == (
        Fault("status", 429, retry_after=1.0),
        Fault("status", 503),
        Fault("drop"),
        Fault("slow", delay=0.5),
    )
    assert FaultRule.parse("result~1.5") == FaultRule("result", latency=1.5)
    assert FaultRule.from_json(rule.as_json()) == rule


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("submit=418", "unknown fault '418'"),
        ("upload=503", "unknown operation 'upload'"),
        ("status@2=503", "rate must be from 0 to 1"),
        ("status", "expected OPERATION=TOKEN"),
        ("result~soon", "latency 'soon' is not a number"),
        ("status@0.5=ok|503", "`ok` is not one"),
    ],
)
def test_bad_rules_say_what_is_wrong(text: str, message: str) -> None:
    with pytest.raises(FaultSyntaxError, match=message):
        FaultRule.parse(text)


def test_a_sequence_is_consumed_in_order_then_calls_pass() -> None:
    plan = FaultPlan([FaultRule.parse("submit=503,ok,429")])
    faults = [plan.next("submit_flux_pro_kontext_max", "submit")[1] for _ in range(4)]
    assert [fault.status if fault else None for fault in faults] == [503, None, 429, None]
    assert plan.next("get_request_status", "status") == (0.0, None)


def test_rates_are_reproducible_with_the_same_seed() -> None:
    draws = []
    for _ in range(2):
        plan = FaultPlan([FaultRule.parse("*@0.5=500")], seed=7)
        draws.append([plan.next("get_request_status", "status")[1] is not None for _ in range(50)])
    assert draws[0] == draws[1]
    assert 5 < sum(draws[0]) < 45


def test_a_rate_rule_picks_among_its_faults() -> None:
    plan = FaultPlan([FaultRule.parse("status@1=502|503|slow:0")], seed=3)
    seen = {plan.next("get_request_status", "status")[1] for _ in range(60)}
    assert seen == {Fault("status", 502), Fault("status", 503), Fault("slow", delay=0.0)}


def test_latency_adds_up_across_rules() -> None:
    plan = FaultPlan([FaultRule.parse("status~0.5"), FaultRule.parse("*~0.25")])
    assert plan.next("get_request_status", "status")[0] == 0.75
    assert plan.next("cancel_request", "cancel")[0] == 0.25


async def test_injected_statuses_look_like_fal_errors(make_client: MakeClient) -> None:
    client = make_client(EmulatorConfig(faults=(FaultRule.parse("submit=503,429:2,503-noid,502-nginx,ok"),)))
    answers = [await client.post(SUBMIT, json=body()) for _ in range(5)]
    assert [answer.status_code for answer in answers] == [503, 429, 503, 502, 200]
    unavailable, limited, bare, ingress, _ = answers
    assert "x-fal-request-id" in unavailable.headers
    assert unavailable.json()["error_type"] == unavailable.headers["x-fal-error-type"]
    assert limited.headers["retry-after"] == "2"
    assert "x-fal-request-id" not in bare.headers
    assert "x-fal-request-id" not in ingress.headers
    assert "nginx" in ingress.text
    counters = (await client.get("/_emulator/counters")).json()
    assert counters["calls"]["submit_flux_pro_kontext"] == 5
    assert counters["faults"]["submit_flux_pro_kontext"] == 4
    [mine] = counters["submits"].values()
    assert mine["total"] == 1


async def test_a_slow_fault_answers_normally(make_client: MakeClient) -> None:
    client = make_client(EmulatorConfig(faults=(FaultRule.parse("submit=slow:0.01"),)))
    assert (await client.post(SUBMIT, json=body())).status_code == 200
    assert (await client.get("/_emulator/counters")).json()["faults"] == {"submit_flux_pro_kontext": 1}


async def test_drop_before_loses_the_request_drop_after_keeps_it(make_client: MakeClient) -> None:
    client = make_client(EmulatorConfig(faults=(FaultRule.parse("submit=drop,drop-after"),)))
    for _ in range(2):
        with pytest.raises(ConnectionDropped):
            await client.post(SUBMIT, json=body(seed=5))
    counters = (await client.get("/_emulator/counters")).json()
    # Only the second was handled: the client lost its answer but the request is queued (a retry would duplicate it).
    [mine] = counters["submits"].values()
    assert mine["total"] == 1


async def test_admin_api_adds_lists_and_clears_rules(client: httpx.AsyncClient) -> None:
    added = await client.post("/_emulator/faults", json={"operation": "status", "sequence": ["504"]})
    assert added.status_code == 201
    listed = (await client.get("/_emulator/faults")).json()["rules"]
    assert listed == [{"operation": "status", "sequence": ["504"], "rate": 0.0, "fault": [], "latency": 0.0}]
    assert (await client.get(f"{REQUESTS}/x/status")).status_code == 504
    assert (await client.get(f"{REQUESTS}/x/status")).status_code == 404
    await client.post("/_emulator/faults", json={"operation": "*", "rate": 1, "fault": ["500"]})
    assert (await client.put(f"{REQUESTS}/x/cancel")).status_code == 500
    assert (await client.delete("/_emulator/faults")).json() == {"rules": []}
    assert (await client.put(f"{REQUESTS}/x/cancel")).status_code == 404


@pytest.mark.parametrize(
    "rule",
    [{"operation": "nope"}, {"operation": "status", "sequence": ["999"]}, {"operation": "status", "rate": 0.5}, [1]],
)
async def test_admin_api_rejects_bad_rules(client: httpx.AsyncClient, rule: object) -> None:
    response = await client.post("/_emulator/faults", json=rule)
    assert response.status_code == 422
    assert isinstance(response.json()["detail"], str)


async def test_admin_clock_moves_requests_forward(client: httpx.AsyncClient) -> None:
    data = (await client.post(SUBMIT, json=body())).json()
    assert (await client.post("/_emulator/clock", json={"advance": 10})).status_code == 200
    assert (await client.get(f"{REQUESTS}/{data['request_id']}/status")).json()["status"] == "COMPLETED"
    assert (await client.post("/_emulator/clock", json={"advance": -1})).status_code == 422


def test_forwarded_then_lost_tokens_parse_and_round_trip() -> None:
    rule = FaultRule.parse("submit=lost:503,lost:503-noid,lost:502-nginx,cut")
    assert rule.sequence == (
        Fault("lost", 503),
        Fault("lost", 503, with_request_id=False),
        Fault("lost", 502, with_request_id=False, ingress=True),
        Fault("cut"),
    )
    assert FaultRule.from_json(rule.as_json()) == rule
    assert FaultRule.parse("*@0.1=lost:500|cut|drop-after").faults[0] == Fault("lost", 500)
    with pytest.raises(FaultSyntaxError, match="lost: takes a status token"):
        FaultRule.parse("submit=lost:drop")


async def test_lost_answers_are_replaced_after_the_job_is_queued(make_client: MakeClient) -> None:
    client = make_client(EmulatorConfig(faults=(FaultRule.parse("submit=lost:503,lost:503-noid,lost:502-nginx"),)))
    json_5xx = await client.post(SUBMIT, json=body(seed=1))
    no_id = await client.post(SUBMIT, json=body(seed=2))
    nginx = await client.post(SUBMIT, json=body(seed=3))
    assert (json_5xx.status_code, json_5xx.json()["detail"]) == (503, "Injected fault 503")
    held = (await client.get("/_emulator/requests")).json()["requests"]
    # The answer lost its body but keeps the id of the job that was queued (what fal's gateway would send).
    assert json_5xx.headers["x-fal-request-id"] in held
    assert "x-fal-request-id" not in no_id.headers
    assert (nginx.status_code, "nginx" in nginx.text, "x-fal-request-id" in nginx.headers) == (502, True, False)
    [mine] = (await client.get("/_emulator/counters")).json()["submits"].values()
    assert mine["total"] == 3
    assert len(held) == 3
