"""The batch command's plan (cli/batch_command.py): which lines it says will be submitted, from the journal."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from fal_kontext.batch import JOURNAL_NAME, Journal, read_manifest
from fal_kontext.batch.journal import AMBIGUOUS, SAVED
from fal_kontext.cli import main
from fal_kontext.cli.exit_codes import EXIT_AMBIGUOUS
from tests.support.batches import write_manifest


def test_an_ambiguous_line_is_not_in_the_plan_without_resubmit_ambiguous(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    for name in ("FAL_KEY_ID", "FAL_KEY_SECRET", "FAL_KONTEXT_TOKEN", "FAL_KONTEXT_AUTH"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("FAL_KEY", "test-key")
    monkeypatch.setenv("FAL_KONTEXT_BASE_URL", "http://127.0.0.1:9")  # nothing is sent: no line is submitted
    manifest = write_manifest(tmp_path, 2)
    jobs, out = read_manifest(manifest), tmp_path / "out"
    journal = Journal(out / JOURNAL_NAME)
    journal.record(jobs[0], AMBIGUOUS, reason="SubmitOutcomeUnknownError: the answer was lost")
    journal.record(jobs[1], SAVED, files=[])
    journal.close()
    assert main(["--json", "batch", str(manifest), "--out", str(out)]) == EXIT_AMBIGUOUS
    plan = json.loads(capsys.readouterr().out.splitlines()[0])
    assert plan["event"] == "plan" and plan["to_submit"] == 0 and plan["saved_before"] == 1
