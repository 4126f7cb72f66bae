"""Running a batch (batch/runner.py) without sending: which lines a run submits after an earlier one, and the lines an
earlier run settled still end with their events."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from fal_kontext import AsyncKontext
from fal_kontext.batch import (
    JOURNAL_NAME,
    BatchOptions,
    BatchSummary,
    Journal,
    lines_to_submit,
    read_manifest,
    run_batch,
)
from fal_kontext.batch.journal import AMBIGUOUS, FAILED, SAVED, SUBMITTED, SUBMITTING
from tests.support.batches import write_manifest


def test_a_line_failed_in_an_earlier_run_ends_this_one_with_its_failed_event(tmp_path: Path) -> None:
    jobs = read_manifest(write_manifest(tmp_path, 2))
    out = tmp_path / "out"
    journal = Journal(out / JOURNAL_NAME)
    journal.record(jobs[0], SAVED, request_id="req-0", files=[])
    journal.record(jobs[1], FAILED, request_id="req-1", reason="RequestFailedError: boom")
    journal.close()
    events: list[dict[str, Any]] = []

    async def go() -> BatchSummary:
        async with AsyncKontext("test-key", base_url="http://127.0.0.1:9") as kontext:  # nothing is sent
            return await run_batch(kontext, jobs, out, on_event=events.append)

    summary = asyncio.run(go())
    assert summary.done == 1 and summary.failed == {"job-1": "RequestFailedError: boom"}
    assert events == [
        {"event": "failed", "id": "job-1", "line": 2, "request_id": "req-1", "reason": "RequestFailedError: boom"}
    ]


def test_lines_to_submit_leave_out_what_an_earlier_run_settled_unless_asked(tmp_path: Path) -> None:
    jobs = read_manifest(write_manifest(tmp_path, 6))
    states = {"job-0": SAVED, "job-1": SUBMITTED, "job-2": FAILED, "job-3": AMBIGUOUS, "job-4": SUBMITTING}
    ids = [job.id for job in lines_to_submit(jobs, states, BatchOptions())]
    assert ids == ["job-4", "job-5"]  # stopped mid-submit: sent unless the request list shows it queued
    asked = BatchOptions(retry_failed=True, resubmit_ambiguous=True)
    assert [job.id for job in lines_to_submit(jobs, states, asked)] == ["job-2", "job-3", "job-4", "job-5"]
