"""The suite can fail: for each defect seeded into the emulator, the contract suite must report it.

Each defect of `fal_kontext.mock.SEEDED_DEFECTS` (a test-only switch of the emulator) is switched on, and the
contract suite itself (spec against server, client against spec) runs against that emulator in a
subprocess; it must fail, and its report must name the problem. A defect with no expectation here fails
the last test: every bug we find becomes a seeded defect and a line in EXPECTED_REPORTS.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from fal_kontext.mock import SEEDED_DEFECTS

ROOT = Path(__file__).resolve().parent.parent

# What the failing report must contain, per defect.
EXPECTED_REPORTS = {
    "wrong_status_code": "[200, 400] == [202, 400]",  # cancel answers 200 (with the 202 body) where fal answers 202
    "missing_required_field": '"status" is a required property',  # a submit answer without its status
    "accepted_invalid_enum": "Schema-violating request accepted",  # negative_data_rejection
    "backward_transition": "status went back to IN_PROGRESS after COMPLETED",  # the recorder's lifecycle check
    "dropped_header": "Allow",  # a 405 without the Allow header: unsupported_method
}


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
