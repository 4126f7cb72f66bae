"""Nothing lost: with a state file a restarted emulator (in-process) carries on every request where it was."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from fal_kontext_emulator import EmulatorConfig, create_app
from fal_kontext_emulator.state_file import StateFile
from tests.emulator.conftest import AUTH, REQUESTS, SUBMIT, MakeClient, ManualClock, body

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
