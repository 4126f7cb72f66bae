"""The journal (batch/journal.py): each change on disk at once, one run per folder, and a manifest line that changed
since it was written refused before anything is planned."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from fal_kontext.batch import JOURNAL_NAME, Journal, ManifestError, check_journal, journal_states, read_manifest
from fal_kontext.batch.journal import SAVED, SUBMITTED, SUBMITTING
from tests.support.batches import write_manifest


def test_a_change_is_read_back_by_another_connection_at_once(tmp_path: Path) -> None:
    jobs = read_manifest(write_manifest(tmp_path, 2))
    out = tmp_path / "out"
    journal = Journal(out / JOURNAL_NAME)
    try:
        journal.record(jobs[0], SUBMITTING, cost_usd=0.04)
        journal.record(jobs[0], SUBMITTED, request_id="req-0")
        journal.record(jobs[1], SAVED, request_id="req-1", files=["out/job-1/req-1-0.jpg"])
        assert journal_states(out) == {"job-0": SUBMITTED, "job-1": SAVED}  # read without the lock
        rows = journal.rows()
    finally:
        journal.close()
    assert (rows["job-0"].request_id, rows["job-0"].cost_usd, rows["job-0"].digest) == ("req-0", 0.04, jobs[0].digest)
    assert rows["job-1"].files == ("out/job-1/req-1-0.jpg",)


def test_two_runs_never_share_a_folder(tmp_path: Path) -> None:
    first = Journal(tmp_path / JOURNAL_NAME)
    try:
        with pytest.raises(BlockingIOError):
            Journal(tmp_path / JOURNAL_NAME)
    finally:
        first.close()
    Journal(tmp_path / JOURNAL_NAME).close()  # released with the first


def test_without_a_journal_nothing_is_refused_and_no_line_has_a_state(tmp_path: Path) -> None:
    jobs = read_manifest(write_manifest(tmp_path, 1))
    check_journal(jobs, tmp_path / "out")
    assert journal_states(tmp_path / "out") == {}
    assert not (tmp_path / "out").exists()  # reading creates nothing


def test_a_line_changed_since_the_journal_was_written_is_refused(tmp_path: Path) -> None:
    manifest = write_manifest(tmp_path, 2)
    out = tmp_path / "out"
    journal = Journal(out / JOURNAL_NAME)
    for job in read_manifest(manifest):
        journal.record(job, SAVED)
    journal.close()
    check_journal(read_manifest(manifest), out)  # unchanged: nothing to refuse
    lines = manifest.read_text().splitlines()
    lines[1] = json.dumps({**json.loads(lines[1]), "prompt": "a changed edit"})
    manifest.write_text("\n".join(lines) + "\n")
    with pytest.raises(ManifestError) as raised:
        check_journal(read_manifest(manifest), out)
    assert raised.value.problems == ("line 2: id 'job-1' changed since the journal was written",)
    assert "Use a new output folder" in str(raised.value)
