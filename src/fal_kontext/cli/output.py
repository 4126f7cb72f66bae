"""Where ``fal-kontext`` writes: JSON lines on stdout when piped (or ``--json``), and for people a progress line on
whichever of stderr and stdout is a terminal; and the check that the images can be written before anything is
sent."""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TextIO

from fal_kontext import InProgress, LookupStarted, Queued, Status
from fal_kontext.config import redact

from .exit_codes import EXIT_USAGE, CommandError

__all__ = ["TICK_SECONDS", "Output", "Progress", "Ticker", "check_out_folder", "status_name"]

# The progress line is redrawn at least this often, so elapsed time moves while the status does not.
TICK_SECONDS = 0.25


def status_name(status: Status) -> str:
    """The status as fal names it (``IN_QUEUE``, ``IN_PROGRESS``, ``COMPLETED``)."""
    if isinstance(status, Queued):
        return "IN_QUEUE"
    if isinstance(status, InProgress):
        return "IN_PROGRESS"
    return "COMPLETED"


def _where(status: Status) -> str:
    if isinstance(status, Queued):
        return "in queue" + (f", position {status.position}" if status.position is not None else "")
    if isinstance(status, InProgress):
        return "running"
    return "completed"


class Progress:
    """The progress line on a terminal: ``[elapsed] request: where``, redrawn on each status and on every tick.

    Args:
        stream: The terminal to draw on.
        clock: Monotonic seconds (tests pass a fake).
    """

    def __init__(self, stream: TextIO, clock: Callable[[], float] = time.monotonic) -> None:
        self.stream = stream
        self.clock = clock
        self.started = clock()
        self.text = ""
        self._open = False
        self._lock = threading.Lock()

    def update(self, status: Status) -> None:
        """Show a new status, with its new log lines above the progress line."""
        with self._lock:
            for entry in status.logs:
                self.stream.write(f"\r\033[K  log: {entry.message}\n")
            self.text = f"{status.request_id}: {_where(status)}"
        self.draw()

    def show(self, text: str) -> None:
        """Show ``text`` as the progress line (what the command is waiting for)."""
        with self._lock:
            self.text = text
        self.draw()

    def clear(self) -> None:
        """End the progress line and forget its text (until the next status)."""
        with self._lock:
            self._end()
            self.text = ""
            self.stream.flush()

    def draw(self) -> None:
        """Redraw the line with the current elapsed time (nothing before the first status)."""
        with self._lock:
            if not self.text:
                return
            elapsed = self.clock() - self.started
            self.stream.write(f"\r\033[K[{elapsed:6.1f}s] {self.text}")
            self.stream.flush()
            self._open = True

    def line(self, text: str) -> None:
        """A whole line (the progress line, if drawn, is ended first)."""
        with self._lock:
            self._end()
            self.stream.write(text + "\n")
            self.stream.flush()

    def end_line(self) -> None:
        """End the progress line, if drawn, so that what is written next (on the same terminal, through another
        stream) starts on a line of its own."""
        with self._lock:
            self._end()
            self.stream.flush()

    def _end(self) -> None:
        if self._open:
            self.stream.write("\n")
            self._open = False


class Ticker:
    """Calls ``tick`` every ``interval`` seconds in a background thread while in its ``with`` block.

    Args:
        tick: What to call.
        interval: Seconds between calls.
        wait: ``wait(seconds) -> stop?`` (default: the stop event's wait; tests pass a fake clock's).
    """

    def __init__(self, tick: Callable[[], None], interval: float, wait: Callable[[float], bool] | None = None) -> None:
        self.tick = tick
        self.interval = interval
        self._stop = threading.Event()
        self._wait = wait or self._stop.wait
        self._thread: threading.Thread | None = None

    def run(self) -> None:
        """Tick until stopped."""
        while not self._wait(self.interval):
            self.tick()

    def __enter__(self) -> Ticker:
        self._thread = threading.Thread(target=self.run, name="fal-kontext-progress", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()


class Output:
    """Where the command writes: JSON lines on stdout when piped (or ``--json``); for people, a terminal.

    Progress goes to whichever of stderr and stdout is a terminal (stderr first), so ``edit ... > log`` still shows
    it; human lines go to stdout, or to that terminal when stdout carries JSON. ``secrets`` are redacted from error
    messages (``logs.secrets_of``: every credential of the environment, whichever the client sends).
    """

    def __init__(self, *, json_lines: bool, stdout: TextIO, stderr: TextIO, secrets: Sequence[str] = ()) -> None:
        self.json_lines = json_lines
        self.stdout = stdout
        self.stderr = stderr
        self.secrets = tuple(secrets)
        terminal = stderr if stderr.isatty() else stdout if stdout.isatty() and not json_lines else None
        self.progress = Progress(terminal) if terminal is not None else None
        self._human = stdout if not json_lines else terminal

    def emit(self, event: str, **fields: Any) -> None:
        """One JSON line (only in JSON mode)."""
        if self.json_lines:
            print(json.dumps({"event": event, **fields}, default=str), file=self.stdout, flush=True)

    def say(self, text: str) -> None:
        """A line for people, where people look (nothing when both streams are piped)."""
        if self._human is None:
            return
        if self.progress is not None and self._human is self.progress.stream:
            self.progress.line(text)
            return
        if self.progress is not None:  # both are the terminal: the progress line ends before this one starts
            self.progress.end_line()
        print(text, file=self._human, flush=True)

    def note(self, text: str) -> None:
        """A line on stderr, whatever the mode."""
        if self.progress is not None and self.progress.stream is self.stderr:
            self.progress.line(f"fal-kontext: {text}")
        else:
            print(f"fal-kontext: {text}", file=self.stderr, flush=True)

    def update(self, status: Status) -> None:
        """Report a status: a JSON line and the progress line."""
        if self.progress is not None:
            self.progress.update(status)
        self.emit(
            "status",
            request_id=status.request_id,
            status=status_name(status),
            queue_position=status.position if isinstance(status, Queued) else None,
            logs=[entry.message for entry in status.logs],
        )

    def looking_up(self, started: LookupStarted) -> None:
        """Report that a submit's outcome is being looked up in the request list (it may take a minute or more)."""
        self.emit(
            "looking_up",
            endpoint=started.endpoint_id,
            what_happened=started.what_happened,
            request_id=started.request_id,
            timeout=started.timeout,
            message=str(started),
        )
        if self.progress is not None:
            self.progress.show(str(started))
        else:
            self.note(str(started))

    def ticking(self) -> Ticker | None:
        """A ticker that keeps the progress line's elapsed time moving, or None without a terminal."""
        return Ticker(self.progress.draw, TICK_SECONDS) if self.progress is not None else None

    def error(self, message: str, err: BaseException, request_id: str | None, code: int) -> None:
        """Report an error (the secrets are redacted, belt and braces)."""
        for secret in self.secrets:
            message = redact(message, secret)
        self.emit("error", type=type(err).__name__, message=message, request_id=request_id, exit_code=code)
        self.note(f"error: {message}")


def check_out_folder(folder: Path) -> None:
    """Fail before anything is sent (or paid) if the images could not be written into ``folder``.

    Raises:
        CommandError: ``folder`` is a file, or neither it nor its nearest existing parent is a writable folder.
    """
    if folder.exists() and not folder.is_dir():
        raise CommandError(f"--out {folder}: is a file, not a folder (it is created if missing)", EXIT_USAGE)
    existing = folder
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir():
        raise CommandError(f"--out {folder}: {existing} is a file, not a folder", EXIT_USAGE)
    if not os.access(existing, os.W_OK | os.X_OK):
        raise CommandError(f"--out {folder}: {existing} is not writable", EXIT_USAGE)
