"""The suite accepts a correct server it was not developed against.

`contracts/reference_server` is a second fal-like queue server written from fal's documentation only. The contract
suite runs against it exactly as a user's CI runs it against a remote server (`--contract-base-url`, a key from
FAL_KEY), declared free (`--contract-free-server`) so the submits are fuzzed and the client scenarios run too; it
must pass with 0 failures. An expectation that only our emulator meets fails here.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from contracts.reference_server import ReferenceConfig, create_app
from contracts.serving import serve

ROOT = Path(__file__).resolve().parent.parent
KEY, SECOND_KEY = "reference-key", "reference-second-key"


@pytest.fixture(scope="module")
def reference_url() -> Iterator[str]:
    # A queue wait long enough that a request just submitted is still pending when a scenario cancels it; a short
    # run time, as every stream the stateful walk opens lasts until its request completes.
    config = ReferenceConfig(keys=frozenset({KEY, SECOND_KEY}), queue_wait=0.3, run_time=0.05)
    with serve(create_app(config)) as url:
        yield url


def test_the_suite_passes_against_the_reference_server(reference_url: str, request: pytest.FixtureRequest) -> None:
    if request.config.getoption("--contract-base-url"):
        pytest.skip("checks the suite itself; runs when the suite runs against the local emulator")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CONTRACT_", "FAL_KEY"))}
    env["FAL_KEY"] = KEY
    # Fewer hypothesis examples than against the emulator, and one submit per input schema: this run looks for
    # expectations only our emulator meets, which the coverage phase and a shorter walk show as well.
    env["CONTRACT_EXAMPLES"] = "6"
    done = subprocess.run(
        [
            sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--no-header",
            "contracts/test_spec_vs_server.py", "contracts/test_client_vs_spec.py", "contracts/test_semantics.py",
            "contracts/test_boundaries.py",
            "--contract-base-url", reference_url, "--contract-free-server", "--contract-second-key", SECOND_KEY,
            "--contract-distinct-schemas",
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=280,
    )  # fmt: skip
    report = done.stdout + done.stderr
    assert done.returncode == 0, f"the suite rejects the correct reference server:\n{report[-6000:]}"
    assert "failures: 0" in report and " passed" in report, report[-3000:]
