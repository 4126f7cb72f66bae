"""The suite can fail: for each defect seeded into the emulator, the contract suite must report it.

Each defect of `contracts.seeded_defects.SEEDED_DEFECTS` (applied around the emulator from outside it, never shipped
in it) is switched on, and the contract suite itself (spec against server, client against spec) runs against that
emulator in a subprocess; it must fail, and its report must name the problem. A defect with no expectation here fails
the last test: every bug we find becomes a seeded defect and a line in EXPECTED_REPORTS. First, in-process, each
defect changes what the emulator answers as its description says, and nothing else.
"""

from __future__ import annotations

import base64
import io
import os
import subprocess
import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from PIL import Image

from contracts.seeded_defects import SEEDED_DEFECTS, seeded_app
from fal_kontext_emulator import EmulatorConfig

ROOT = Path(__file__).resolve().parent.parent

# What the failing report must contain, per defect.
EXPECTED_REPORTS = {
    "wrong_status_code": "[200, 400] == [202, 400]",  # cancel answers 200 (with the 202 body) where fal answers 202
    "missing_required_field": '"status" is a required property',  # a submit answer without its status
    "accepted_invalid_enum": "Schema-violating request accepted",  # negative_data_rejection
    "backward_transition": "status went back to IN_PROGRESS after COMPLETED",  # the recorder's lifecycle check
    "dropped_header": "Allow",  # a 405 without the Allow header: unsupported_method
}


SUBMIT = "/fal-ai/flux-pro/kontext"
REQUESTS = "/fal-ai/flux-pro/requests"


class ManualClock:
    """A clock that stands still: requests move only when the test advances the emulator's queue time."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def body(**fields: Any) -> dict[str, Any]:
    """A valid single-image submit body, with `fields` added or replaced."""
    buffer = io.BytesIO()
    Image.new("RGB", (32, 24), (200, 30, 30)).save(buffer, format="PNG")
    image = "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()
    return {"prompt": "Put a donut next to the flour.", "image_url": image, **fields}


Defective = Callable[[str], httpx.AsyncClient]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
async def defective() -> AsyncIterator[Defective]:
    """In-process clients of an emulator with one seeded defect, all on one manual clock."""
    clock = ManualClock()
    clients: list[httpx.AsyncClient] = []

    def make(defect: str) -> httpx.AsyncClient:
        app = seeded_app(EmulatorConfig(), {defect}, clock=clock)
        client = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app),
            base_url="http://testserver",
            headers={"Authorization": "Key test-key"},
        )
        clients.append(client)
        return client

    yield make
    for client in clients:
        await client.aclose()


def test_unknown_defects_are_refused() -> None:
    with pytest.raises(ValueError, match="unknown seeded defects"):
        seeded_app(EmulatorConfig(), {"nope"})


@pytest.mark.anyio
async def test_wrong_status_code(defective: Defective) -> None:
    client = defective("wrong_status_code")
    request_id = (await client.post(SUBMIT, json=body())).json()["request_id"]
    assert (await client.put(f"{REQUESTS}/{request_id}/cancel")).status_code == 200
    assert (await client.put(f"{REQUESTS}/{request_id}/cancel")).status_code == 400  # other answers as they were


@pytest.mark.anyio
async def test_missing_required_field(defective: Defective) -> None:
    client = defective("missing_required_field")
    submitted = await client.post(SUBMIT, json=body())
    assert submitted.status_code == 200 and "status" not in submitted.json()
    assert submitted.json()["request_id"] and int(submitted.headers["content-length"]) == len(submitted.content)


@pytest.mark.anyio
async def test_accepted_invalid_enum(defective: Defective) -> None:
    client = defective("accepted_invalid_enum")
    assert (await client.post(SUBMIT, json=body(output_format="gif"))).status_code == 200
    assert (await client.post(SUBMIT, json=body(num_images="two"))).status_code == 422  # other checks still hold


@pytest.mark.anyio
async def test_backward_transition(defective: Defective) -> None:
    client = defective("backward_transition")
    request_id = (await client.post(SUBMIT, json=body())).json()["request_id"]
    assert (await client.get(f"{REQUESTS}/{request_id}/status")).status_code == 202  # still pending: as it was
    assert (await client.post("/_emulator/clock", json={"advance": 10})).status_code == 200
    reads = [await client.get(f"{REQUESTS}/{request_id}/status") for _ in range(3)]
    assert [(read.status_code, read.json()["status"]) for read in reads] == [
        (200, "COMPLETED"),
        (202, "IN_PROGRESS"),
        (200, "COMPLETED"),
    ]


@pytest.mark.anyio
async def test_dropped_header(defective: Defective) -> None:
    client = defective("dropped_header")
    response = await client.delete(SUBMIT)
    assert response.status_code == 405 and "allow" not in response.headers


@pytest.mark.parametrize("defect", sorted(SEEDED_DEFECTS))
def test_the_suite_reports_each_seeded_defect(defect: str) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CONTRACT_", "FAL_KEY"))}
    done = subprocess.run(
        [
            sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--no-header", "-x",
            "contracts/test_client_vs_spec.py", "contracts/test_spec_vs_server.py",
            "--contract-emulator-defect", defect,
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=280,
    )  # fmt: skip
    report = done.stdout + done.stderr
    assert done.returncode == 1, f"the suite did not fail with {defect} ({SEEDED_DEFECTS[defect]}):\n{report[-3000:]}"
    assert EXPECTED_REPORTS[defect] in report, f"the failure does not name the defect {defect}:\n{report[-3000:]}"


def test_every_seeded_defect_has_an_expected_report() -> None:
    assert set(EXPECTED_REPORTS) == set(SEEDED_DEFECTS)
