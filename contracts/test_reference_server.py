"""The suite accepts a correct server it was not developed against.

`contracts/reference_server` is a second fal-like queue server written from fal's documentation only. The contract
suite runs against it exactly as a user's CI runs it against a remote server (`--contract-base-url`, a key from
FAL_KEY), declared free (`--contract-free-server`) so the submits are fuzzed and the client scenarios run too; it
must pass with 0 failures. An expectation that only our emulator meets fails here.

The run is a child pytest process, started as soon as collection ends (`contracts/conftest.py`) so that it runs
while the rest of the session does; the test below waits for it.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from contextlib import ExitStack
from pathlib import Path

import pytest

from contracts.reference_server import ReferenceConfig, create_app
from contracts.serving import serve

ROOT = Path(__file__).resolve().parent.parent
KEY, SECOND_KEY = "reference-key", "reference-second-key"
FILES = [
    "contracts/test_spec_vs_server.py",
    "contracts/test_client_vs_spec.py",
    "contracts/test_semantics.py",
    "contracts/test_boundaries.py",
]


class ReferenceRun:
    """The reference server, and the contract suite running against it in a child process."""

    def __init__(self) -> None:
        self._stack = ExitStack()
        # A queue wait long enough that a request just submitted is still pending when a scenario cancels it; a
        # short run time, as every stream the stateful walk opens lasts until its request completes.
        config = ReferenceConfig(keys=frozenset({KEY, SECOND_KEY}), queue_wait=0.3, run_time=0.05)
        url = self._stack.enter_context(serve(create_app(config)))
        env = {k: v for k, v in os.environ.items() if not k.startswith(("CONTRACT_", "FAL_KEY"))}
        env["FAL_KEY"] = KEY
        # Fewer hypothesis examples than against the emulator, and one submit per input schema: this run looks for
        # expectations only our emulator meets, which the coverage phase and a shorter walk show as well.
        env["CONTRACT_EXAMPLES"] = "6"
        # Closed by the exit stack.
        self._output = self._stack.enter_context(tempfile.TemporaryFile(mode="w+", encoding="utf-8"))  # noqa: SIM115
        self._child = subprocess.Popen(
            [
                sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--no-header", *FILES,
                "--contract-base-url", url, "--contract-free-server", "--contract-second-key", SECOND_KEY,
                "--contract-distinct-schemas",
            ],
            cwd=ROOT, env=env, stdout=self._output, stderr=subprocess.STDOUT, text=True,
        )  # fmt: skip

    def wait(self, timeout: float) -> tuple[int, str]:
        """The child's exit code and report, once it has ended (it is killed after `timeout` seconds)."""
        try:
            code = self._child.wait(timeout)
        except subprocess.TimeoutExpired:
            self._child.kill()
            code = self._child.wait()
        self._output.seek(0)
        return code, self._output.read()

    def close(self) -> None:
        """Stop the child if it still runs, then the server."""
        if self._child.poll() is None:
            self._child.kill()
            self._child.wait()
        self._stack.close()


REFERENCE_RUN = pytest.StashKey[ReferenceRun]()


def test_the_suite_passes_against_the_reference_server(request: pytest.FixtureRequest) -> None:
    if request.config.getoption("--contract-base-url"):
        pytest.skip("checks the suite itself; runs when the suite runs against the local emulator")
    run = request.config.stash.get(REFERENCE_RUN, None)
    if run is None:
        run = request.config.stash[REFERENCE_RUN] = ReferenceRun()
    code, report = run.wait(timeout=600)
    assert code == 0, f"the suite rejects the correct reference server:\n{report[-6000:]}"
    assert "failures: 0" in report and " passed" in report, report[-3000:]
