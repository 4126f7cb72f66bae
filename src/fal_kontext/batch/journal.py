"""The batch's journal: one SQLite row per manifest line (its state, request id, saved files), each change on disk
before the run goes on, so a run stopped at any point resumes without sending a line twice."""

from __future__ import annotations

import contextlib
import fcntl
import json
import sqlite3
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .manifest import BatchJob, ManifestError

__all__ = [
    "AMBIGUOUS",
    "FAILED",
    "JOURNAL_NAME",
    "PENDING",
    "SAVED",
    "SUBMITTED",
    "SUBMITTING",
    "Journal",
    "JournalRow",
    "check_journal",
    "journal_states",
    "refuse_changed_lines",
]

JOURNAL_NAME = ".fal-kontext-batch.sqlite"

PENDING = "pending"  # not submitted (yet, or refused with 429, or the connection never opened)
SUBMITTING = "submitting"  # the submit is about to be sent: after a crash, the line is ambiguous
SUBMITTED = "submitted"  # the server answered with a request id
SAVED = "saved"  # the images are written
FAILED = "failed"  # the request failed (a final answer: not resumable)
AMBIGUOUS = "ambiguous"  # may or may not be queued: never sent again unless asked


@dataclass(frozen=True)
class JournalRow:
    """What the journal knows of one line."""

    id: str
    digest: str
    state: str
    request_id: str | None
    files: tuple[str, ...]
    reason: str | None
    cost_usd: float | None
    updated_at: float  # Unix time of the last change (for SUBMITTING: just before the submit was sent)


class Journal:
    """The batch's SQLite journal: one row per line, each change committed (and synced) before the run goes on.

    A run holds an exclusive lock on it, so two runs never share one output folder.

    Args:
        path: The journal file (created with its folder).

    Raises:
        BlockingIOError: another run holds the journal.
    """

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._lock = (path.parent / (path.name + ".lock")).open("a")
        try:
            fcntl.flock(self._lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self._lock.close()
            raise
        # Used by one thread at a time: the run's journal thread (runner.py, ``_Run.record``).
        self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        # WAL + FULL: a commit is on disk before the call returns, so a SIGKILL (or power loss) keeps it.
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS jobs (id TEXT PRIMARY KEY, line INTEGER, digest TEXT NOT NULL, "
            "state TEXT NOT NULL, endpoint TEXT, request_id TEXT, files TEXT NOT NULL DEFAULT '[]', reason TEXT, "
            "cost_usd REAL, updated_at REAL NOT NULL)"
        )

    def rows(self) -> dict[str, JournalRow]:
        """Every line the journal knows, by id."""
        found = self._db.execute("SELECT id, digest, state, request_id, files, reason, cost_usd, updated_at FROM jobs")
        return {
            row[0]: JournalRow(row[0], row[1], row[2], row[3], tuple(json.loads(row[4])), row[5], row[6], row[7])
            for row in found
        }

    def record(self, job: BatchJob, state: str, **values: Any) -> None:
        """Set a line's state (and ``request_id``, ``files``, ``reason``, ``cost_usd``), committed at once."""
        columns = {"state": state, "updated_at": time.time(), **values}
        if "files" in columns:
            columns["files"] = json.dumps(columns["files"])
        names = ", ".join(columns)
        updates = ", ".join(f"{name} = excluded.{name}" for name in columns)
        self._db.execute(
            f"INSERT INTO jobs (id, line, digest, endpoint, {names}) VALUES (?, ?, ?, ?{', ?' * len(columns)}) "
            f"ON CONFLICT(id) DO UPDATE SET {updates}",
            (job.id, job.line, job.digest, job.endpoint.id, *columns.values()),
        )

    def close(self) -> None:
        """Close the database and release the lock."""
        self._db.close()
        self._lock.close()


def refuse_changed_lines(jobs: Sequence[BatchJob], digests: Mapping[str, str], journal: Path) -> None:
    """Refuse the run if a line's fingerprint differs from the one ``digests`` (by id) recorded.

    Raises:
        ManifestError: every changed line, with what to do.
    """
    changed = [
        f"line {job.line}: id {job.id!r} changed since the journal was written"
        for job in jobs
        if job.id in digests and digests[job.id] != job.digest
    ]
    if changed:
        raise ManifestError(journal, changed, hint="use a new output folder, or restore those lines")


def _stored(out: str | Path, column: str) -> dict[str, str]:
    """One column of every row of the journal in ``out``, by line id (empty when there is none), read without
    taking the lock."""
    path = Path(out) / JOURNAL_NAME
    if not path.exists():
        return {}
    with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as db:
        return {str(row[0]): str(row[1]) for row in db.execute(f"SELECT id, {column} FROM jobs")}


def check_journal(jobs: Sequence[BatchJob], out: str | Path) -> None:
    """Refuse, before anything is planned or sent, a manifest whose lines changed since the journal in ``out`` was
    written (``run_batch`` checks again under its lock); read without taking the lock.

    Raises:
        ManifestError: every changed line.
    """
    refuse_changed_lines(jobs, _stored(out, "digest"), Path(out) / JOURNAL_NAME)


def journal_states(out: str | Path) -> dict[str, str]:
    """The state of each line in the journal of ``out`` (empty when there is none), read without taking the lock."""
    return _stored(out, "state")
