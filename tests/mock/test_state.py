"""Nothing lost: with a state file a restarted emulator carries on every request where it was. And HTTPS."""

from __future__ import annotations

import ssl
from pathlib import Path

import httpx
import pytest
import trustme

from fal_kontext_emulator import EmulatorConfig, create_app, run_emulator
from fal_kontext_emulator.state_file import StateFile

from .conftest import AUTH, REQUESTS, SUBMIT, MakeClient, ManualClock, body

pytestmark = pytest.mark.anyio


async def test_a_restart_continues_every_request_where_it_was(
    make_client: MakeClient, clock: ManualClock, tmp_path: Path
) -> None:
    config = EmulatorConfig(runners=1, queue_wait=0.0, run_time=10.0, state_file=str(tmp_path / "state.sqlite"))
    before = make_client(config)
    running = (await before.post(SUBMIT, json=body())).json()["request_id"]
    waiting = (await before.post(SUBMIT, json=body(seed=3))).json()["request_id"]
    done = (await before.post(SUBMIT, json=body(seed=4))).json()["request_id"]
    await before.put(f"{REQUESTS}/{done}/cancel")
    clock.advance(4.0)
    assert (await before.get(f"{REQUESTS}/{running}/status")).json()["status"] == "IN_PROGRESS"

    # A new process: its monotonic clock starts somewhere else entirely. Time stood still while it was down.
    clock.now = 5.0
    after = make_client(config)
    assert (await after.get(f"{REQUESTS}/{running}/status")).json()["status"] == "IN_PROGRESS"
    queued = (await after.get(f"{REQUESTS}/{waiting}/status")).json()
    assert (queued["status"], queued["queue_position"]) == ("IN_QUEUE", 0)
    assert (await after.get(f"{REQUESTS}/{done}/status")).json()["error_type"] == "request_cancelled"
    assert (await after.put(f"{REQUESTS}/{done}/cancel")).json() == {"status": "ALREADY_COMPLETED"}
    clock.advance(6.0)  # the running request had 6 of its 10 seconds left
    assert (await after.get(f"{REQUESTS}/{running}/status")).json()["status"] == "COMPLETED"
    assert (await after.get(f"{REQUESTS}/{waiting}/status")).json()["status"] == "IN_PROGRESS"
    result = await after.get(f"{REQUESTS}/{running}")
    assert result.status_code == 200
    assert len(result.json()["images"]) == 1


async def test_a_submit_is_counted_in_the_state_file_only_with_its_job(tmp_path: Path) -> None:
    # A crash after the submit was handled and before its job was saved must not leave the submit counted:
    # the client, finding no job after the restart, rightly sends it again, and that is not a job paid twice.
    path = tmp_path / "state.sqlite"
    app = create_app(EmulatorConfig(state_file=str(path)))
    state = app.state.emulator
    save = state.persist
    state.persist = lambda always=False: None  # the crash: nothing after the handler reaches the file
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t", headers=AUTH) as client:
        assert (await client.post(SUBMIT, json=body())).status_code == 200
    on_disk = StateFile(path)
    try:
        assert (on_disk.load()[0], on_disk.submits()) == ([], {})
        save()
        jobs, counted = on_disk.load()[0], on_disk.submits()
        assert len(jobs) == 1
        assert [list(bodies.values()) for bodies in counted.values()] == [[1]]
    finally:
        on_disk.close()
        state.store.close()


async def test_without_a_state_file_a_new_emulator_knows_nothing(make_client: MakeClient) -> None:
    request_id = (await make_client().post(SUBMIT, json=body())).json()["request_id"]
    assert (await make_client().get(f"{REQUESTS}/{request_id}/status")).status_code == 404


def test_restart_over_a_socket_keeps_requests_and_the_webhook_key(tmp_path: Path) -> None:
    config = EmulatorConfig(runners=1, queue_wait=0.0, run_time=0.3, state_file=str(tmp_path / "state.sqlite"))
    with run_emulator(config) as emulator:
        headers = {"Authorization": f"Key {emulator.key}"}
        submitted = httpx.post(emulator.base_url + SUBMIT, json=body(), headers=headers).json()
        jwks = httpx.get(emulator.base_url + "/.well-known/jwks.json").json()
        port = int(emulator.base_url.rsplit(":", 1)[1])
    # The URLs it handed out name its address: restart on the same port (or set public_base_url).
    with run_emulator(config, port=port) as emulator:
        assert httpx.get(emulator.base_url + "/.well-known/jwks.json").json() == jwks
        # Submit counts survive, so a resubmission across a restart still shows as a second submit.
        assert emulator.submit_count(body=body()) == 1
        status_url = f"{emulator.base_url}{REQUESTS}/{submitted['request_id']}/status"
        with httpx.stream("GET", status_url + "/stream", headers=headers, timeout=10) as stream:
            last = [line for line in stream.iter_lines() if line.startswith("data: ")][-1]
        assert '"COMPLETED"' in last
        result = httpx.get(f"{emulator.base_url}{REQUESTS}/{submitted['request_id']}", headers=headers)
        assert result.status_code == 200
        assert result.json()["images"][0]["url"].startswith(emulator.base_url)


def test_https_with_a_certificate_and_key(tmp_path: Path) -> None:
    authority = trustme.CA()
    certificate = authority.issue_cert("127.0.0.1", "localhost")
    cert_file, key_file, ca_file = tmp_path / "cert.pem", tmp_path / "key.pem", tmp_path / "ca.pem"
    certificate.cert_chain_pems[0].write_to_path(str(cert_file))
    certificate.private_key_pem.write_to_path(str(key_file))
    authority.cert_pem.write_to_path(str(ca_file))
    with run_emulator(certfile=str(cert_file), keyfile=str(key_file), ca_file=str(ca_file)) as emulator:
        assert emulator.base_url.startswith("https://127.0.0.1:")
        context = ssl.create_default_context(cafile=str(ca_file))
        headers = {"Authorization": f"Key {emulator.key}"}
        submitted = httpx.post(emulator.base_url + SUBMIT, json=body(), headers=headers, verify=context)
        assert submitted.status_code == 200
        assert submitted.json()["status_url"].startswith("https://127.0.0.1:")
        assert emulator.counters()["submits"]
        with pytest.raises(httpx.ConnectError):
            httpx.get(emulator.base_url + "/_emulator/health")
