"""Injected faults over a real socket: a dropped connection, an answer cut mid-body, and the admin helpers."""

from __future__ import annotations

import httpx
import pytest

from fal_kontext_emulator import EmulatorConfig, FaultRule, run_emulator
from tests.emulator.conftest import REQUESTS, SUBMIT, body


def test_faults_over_a_socket_drop_the_connection_and_are_counted() -> None:
    with run_emulator(EmulatorConfig(faults=(FaultRule.parse("submit=drop-after"),))) as emulator:
        headers = {"Authorization": f"Key {emulator.key}"}
        with pytest.raises(httpx.RemoteProtocolError):
            httpx.post(emulator.base_url + SUBMIT, json=body(seed=9), headers=headers)
        assert emulator.submit_count() == 1
        assert emulator.submit_count(body=body(seed=9)) == 1
        emulator.add_fault("status=429:3")
        limited = httpx.get(emulator.base_url + f"{REQUESTS}/x/status", headers=headers)
        assert (limited.status_code, limited.headers["retry-after"]) == (429, "3")
        emulator.clear_faults()
        emulator.reset_counters()
        assert emulator.counters() == {"calls": {}, "faults": {}, "submits": {}}


def test_a_cut_answer_keeps_its_headers_and_loses_half_its_body() -> None:
    with run_emulator(EmulatorConfig(faults=(FaultRule.parse("submit=cut"),))) as emulator:
        headers = {"Authorization": f"Key {emulator.key}"}
        seen: dict[str, str] = {}
        url = emulator.base_url + SUBMIT
        with (
            httpx.Client() as client,
            pytest.raises(httpx.RemoteProtocolError),
            client.stream("POST", url, json=body(seed=4), headers=headers) as answer,
        ):
            seen.update(answer.headers)
            answer.read()
        assert emulator.submit_count(body=body(seed=4)) == 1
        with httpx.Client() as admin:
            held = admin.get(emulator.base_url + "/_emulator/requests").json()["requests"]
        assert seen["x-fal-request-id"] in held
