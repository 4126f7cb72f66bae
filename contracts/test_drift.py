"""Drift checks: the committed spec, the generated client and the spec's examples still agree with their sources.

A CI run after a source, override or generator change says here exactly what is stale: the spec
(`make` was not run), a generated file (hand-edited, or not regenerated), or an example.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import generate_client
import pytest
import yaml
from normaliser.lint import every_example_validates
from normaliser.pipeline import normalise

ROOT = Path(__file__).resolve().parent.parent
SPEC = ROOT / "specs" / "openapi.yaml"
GENERATED = ROOT / "generated" / "fal_kontext_api"


def test_committed_spec_matches_its_sources_and_overrides() -> None:
    fresh = normalise(ROOT / "specs" / "sources", ROOT / "overrides")
    assert SPEC.read_text(encoding="utf-8") == fresh.text, "specs/openapi.yaml is stale: run `make`"


def test_every_example_in_the_committed_spec_validates() -> None:
    assert every_example_validates(yaml.safe_load(SPEC.read_text(encoding="utf-8"))) == []


def test_committed_client_matches_a_fresh_generation(capsys: pytest.CaptureFixture[str]) -> None:
    assert generate_client.main(["--check"]) == 0


def test_golden_check_reports_a_changed_byte(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    copy = tmp_path / "generated"
    shutil.copytree(GENERATED, copy / "fal_kontext_api", ignore=shutil.ignore_patterns("__pycache__"))
    model = copy / "fal_kontext_api" / "models" / "kontext_input.py"
    model.write_text(model.read_text() + "# hand edit\n")
    (copy / "fal_kontext_api" / "extra.py").write_text("")
    assert generate_client.main(["--check", "--out", str(copy)]) == 1
    err = capsys.readouterr().err
    assert "models/kontext_input.py" in err and "extra.py (only in the committed copy)" in err


def test_generated_package_passes_mypy_strict() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--no-incremental", "--cache-dir", "/dev/null", str(GENERATED)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
