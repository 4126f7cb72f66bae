"""`--require-live` (REQUIRE_LIVE=1, the scheduled CI job): a missing live secret fails the run instead of skipping."""

from __future__ import annotations

import os
import subprocess
import sys

from .conftest import ROOT

SECRETS = ("FAL_KEY", "FAL_KEY_ID", "FAL_KEY_SECRET", "FAL_KONTEXT_TOKEN", "REQUIRE_LIVE")


def _contracts(*extra: str) -> subprocess.CompletedProcess[str]:
    """One live-key contract test against a remote URL, with no secret in the environment (no call is made)."""
    env = {k: v for k, v in os.environ.items() if k not in SECRETS}
    command = [sys.executable, "-m", "pytest", "contracts/test_spec_vs_server.py", "-q", "-rfEs", "-p"]
    command += ["no:cacheprovider", "-x", "-k", "every_operation", "--contract-base-url", "https://queue.fal.run"]
    return subprocess.run([*command, *extra], cwd=ROOT, env=env, capture_output=True, text=True, check=False)


def test_a_missing_secret_is_a_skip_by_default_and_a_failure_when_required() -> None:
    skipped = _contracts()
    assert skipped.returncode == 0, skipped.stdout + skipped.stderr
    assert "needs credentials: set FAL_KEY" in skipped.stdout
    required = _contracts("--require-live")
    assert required.returncode == 1, required.stdout + required.stderr
    assert "--require-live: a missing secret is a failure" in required.stdout
