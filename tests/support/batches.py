"""Batches for tests: a manifest of identical edits, a journal left by a run killed mid-submit, and what the
emulator and the journal then hold."""

from __future__ import annotations

import json
import os
import sqlite3
from pathlib import Path
from typing import Any

from PIL import Image as PILImage

from fal_kontext.batch import JOURNAL_NAME, BatchJob, Journal, read_manifest
from fal_kontext.batch.journal import SUBMITTING
from tests.support.emulator import RunningEmulator

__all__ = ["batch_env", "by_body_counts", "journal_rows", "stopped_mid_submit", "write_manifest"]


def write_manifest(folder: Path, count: int, *, extra: dict[str, Any] | None = None) -> Path:
    """``folder/jobs.jsonl``: ``count`` edits of ``folder/in.png``, ids ``job-0``..., with ``extra`` fields."""
    PILImage.new("RGB", (24, 24), "teal").save(folder / "in.png")
    path = folder / "jobs.jsonl"
    with path.open("w") as manifest:
        for n in range(count):
            manifest.write(
                json.dumps({"id": f"job-{n}", "prompt": f"edit number {n}", "image": "in.png", **(extra or {})}) + "\n"
            )
    return path


def stopped_mid_submit(tmp_path: Path, count: int, line: int) -> tuple[Path, Path, list[BatchJob]]:
    """A manifest of ``count`` lines and a journal left by a run killed between "about to submit" line ``line``
    and its answer: (manifest, out, jobs)."""
    manifest = write_manifest(tmp_path, count)
    out = tmp_path / "out"
    jobs = read_manifest(manifest)
    journal = Journal(out / JOURNAL_NAME)
    journal.record(jobs[line], SUBMITTING)
    journal.close()
    return manifest, out, jobs


def by_body_counts(emulator: RunningEmulator) -> list[int]:
    """How often the emulator received each distinct submit body."""
    submits = emulator.counters()["submits"]
    return [n for entry in submits.values() for n in entry["by_body"].values()]


def batch_env(emulator: RunningEmulator) -> dict[str, str]:
    """The environment of a ``fal-kontext batch`` subprocess pointed at ``emulator`` (no other FAL_ variable)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("FAL_")}
    return {**env, "FAL_KEY": emulator.key, "FAL_KONTEXT_BASE_URL": emulator.base_url}


def journal_rows(out: Path) -> dict[str, str]:
    """The state of each line in the journal of ``out``."""
    with sqlite3.connect(out / JOURNAL_NAME) as db:
        return {row[0]: row[1] for row in db.execute("SELECT id, state FROM jobs")}
