"""The state file: every request, the queue clock and the webhook key in SQLite, so a restart loses nothing.

Queue time is saved with the requests and resumes from there: while the emulator is down, time stands still
for its requests, and each one carries on exactly where it was (same status, position and time left).
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence
from pathlib import Path

from fal_kontext_emulator.request_queue import QueuedRequest

_SCHEMA = """
CREATE TABLE IF NOT EXISTS requests (request_id TEXT PRIMARY KEY, record TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS submits (
    owner TEXT NOT NULL, body TEXT NOT NULL, count INTEGER NOT NULL, PRIMARY KEY (owner, body)
);
"""


class StateFile:
    """One SQLite file. Used from the server's event loop only; every save is one transaction."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # The app is built on one thread and served on another; all use is still one at a time.
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(_SCHEMA)

    def load(self) -> tuple[list[QueuedRequest], float]:
        """Every saved request and the queue time they were saved at (0.0 for a new file)."""
        rows = self._db.execute("SELECT record FROM requests").fetchall()
        requests = [QueuedRequest.from_record(json.loads(record)) for (record,) in rows]
        saved = self._db.execute("SELECT value FROM meta WHERE name = 'queue_time'").fetchone()
        return requests, float(saved[0]) if saved else 0.0

    def save(
        self,
        changed: list[QueuedRequest],
        removed: list[str],
        queue_time: float,
        submits: Sequence[tuple[str, str]] = (),
    ) -> None:
        """Write changed requests, delete removed ones, add `submits` ((owner, body hash) pairs, one per
        accepted submit) to the submit counts and record the queue time, atomically: a submit is counted if and
        only if its job was saved, so a crash between the two cannot show a job as submitted twice when its
        first copy never existed after the restart."""
        with self._transaction():
            self._db.executemany(
                "INSERT INTO submits (owner, body, count) VALUES (?, ?, 1) "
                "ON CONFLICT (owner, body) DO UPDATE SET count = count + 1",
                submits,
            )
            self._db.executemany(
                "INSERT OR REPLACE INTO requests (request_id, record) VALUES (?, ?)",
                [(request.request_id, json.dumps(request.to_record())) for request in changed],
            )
            self._db.executemany("DELETE FROM requests WHERE request_id = ?", [(rid,) for rid in removed])
            self._db.execute("INSERT OR REPLACE INTO meta (name, value) VALUES ('queue_time', ?)", (queue_time,))

    def submits(self) -> dict[str, dict[str, int]]:
        """Every saved submit count: owner -> body hash -> count."""
        counts: dict[str, dict[str, int]] = {}
        for owner, body, count in self._db.execute("SELECT owner, body, count FROM submits"):
            counts.setdefault(owner, {})[body] = count
        return counts

    def reset_submits(self) -> None:
        """Forget every submit count."""
        self._db.execute("DELETE FROM submits")

    def signing_key(self, make: bytes) -> bytes:
        """The saved webhook signing key; `make` is saved and returned when there is none yet."""
        saved = self._db.execute("SELECT value FROM meta WHERE name = 'signing_key'").fetchone()
        if saved:
            return bytes(saved[0])
        self._db.execute("INSERT INTO meta (name, value) VALUES ('signing_key', ?)", (make,))
        return make

    def close(self) -> None:
        """Close the file."""
        self._db.close()

    def _transaction(self) -> sqlite3.Connection:
        self._db.execute("BEGIN")
        return self._db
