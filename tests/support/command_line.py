"""Running ``fal-kontext`` in tests: in a subprocess (piped, or on a pseudo-terminal with Ctrl-C), its JSON lines,
and text streams that say they are a terminal."""

from __future__ import annotations

import io
import json
import os
import pty
import signal
import subprocess
import sys
from pathlib import Path

__all__ = ["FakeTerminal", "Screen", "interrupt", "json_lines", "read_until", "run_cli", "start_on_a_terminal"]


def run_cli(args: list[str], env: dict[str, str], **kwargs: object) -> subprocess.CompletedProcess[str]:
    """``fal-kontext ARGS`` in a subprocess, stdout and stderr captured (so: piped)."""
    command = [sys.executable, "-m", "fal_kontext.cli", *args]
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=60, check=False, **kwargs)  # type: ignore[call-overload, no-any-return]


def json_lines(text: str) -> list[dict[str, object]]:
    """Every JSON line of ``text`` (blank lines skipped)."""
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def read_until(controller: int, marker: bytes, seen: list[bytes]) -> None:
    """Read a pseudo-terminal into ``seen`` until ``marker`` appeared (or it closed)."""
    while marker not in b"".join(seen):
        try:
            chunk = os.read(controller, 4096)
        except OSError:  # EIO: the child closed the terminal
            return
        if not chunk:
            return
        seen.append(chunk)


def start_on_a_terminal(
    args: list[str], env: dict[str, str], cwd: Path | None = None
) -> tuple[subprocess.Popen[bytes], int]:
    """Start ``fal-kontext ARGS`` with a new pseudo-terminal as stdin, stdout and stderr; the process and the
    terminal's controller end (read it with ``read_until``, then close it)."""
    controller, terminal = pty.openpty()
    process = subprocess.Popen(
        [sys.executable, "-m", "fal_kontext.cli", *args],
        stdin=terminal,
        stdout=terminal,
        stderr=terminal,
        env=env,
        cwd=cwd,
        close_fds=True,
    )
    os.close(terminal)
    return process, controller


def interrupt(args: list[str], env: dict[str, str], after: bytes) -> tuple[int, str]:
    """Run the command on a pseudo-terminal, press Ctrl-C once ``after`` appeared; the exit code and the screen."""
    process, controller = start_on_a_terminal(args, env)
    seen: list[bytes] = []
    read_until(controller, after, seen)
    process.send_signal(signal.SIGINT)
    read_until(controller, b"interrupted", seen)
    code = process.wait(timeout=30)
    read_until(controller, b"\x00", seen)  # never printed: reads to the end
    os.close(controller)
    return code, b"".join(seen).decode()


class FakeTerminal(io.StringIO):
    """A text stream that says it is a terminal."""

    def isatty(self) -> bool:
        return True


class Screen:
    """One terminal that stdout and stderr both write to (each through its own stream object, as sys's are)."""

    def __init__(self) -> None:
        self.written: list[str] = []

    def stream(self) -> _TerminalStream:
        """A stream that writes to this screen."""
        return _TerminalStream(self)

    @property
    def text(self) -> str:
        """Everything written, in order."""
        return "".join(self.written)


class _TerminalStream:
    def __init__(self, screen: Screen) -> None:
        self.screen = screen

    def write(self, text: str) -> int:
        self.screen.written.append(text)
        return len(text)

    def flush(self) -> None:
        pass

    def isatty(self) -> bool:
        return True
