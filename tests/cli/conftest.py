"""Fixtures of the command-line tests: an emulator, the environment pointing at it, an input image."""

from __future__ import annotations

import json
import os
import pty
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from PIL import Image as PILImage

from fal_kontext_emulator import EmulatorConfig, RunningEmulator, run_emulator


@pytest.fixture(scope="module")
def emulator() -> Iterator[RunningEmulator]:
    with run_emulator(EmulatorConfig(run_time=0.2, queue_wait=0.05, keepalive_interval=1.0)) as running:
        yield running


@pytest.fixture
def env(emulator: RunningEmulator, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """The environment of a command pointed at ``emulator`` (also set in this process, for ``main``)."""
    values = {"FAL_KEY": emulator.key, "FAL_KONTEXT_BASE_URL": emulator.base_url}
    for name in ("FAL_KEY_ID", "FAL_KEY_SECRET", "FAL_KONTEXT_AUTH", "FAL_KONTEXT_TOKEN", "FAL_KONTEXT_LOG_LEVEL"):
        monkeypatch.delenv(name, raising=False)
    for name, value in values.items():
        monkeypatch.setenv(name, value)
    return {k: v for k, v in os.environ.items() if k != "FAL_KONTEXT_LOG_LEVEL"} | values


@pytest.fixture
def image(tmp_path: Path) -> Path:
    path = tmp_path / "in.png"
    PILImage.new("RGB", (40, 30), "purple").save(path)
    return path


def run_cli(args: list[str], env: dict[str, str], **kwargs: object) -> subprocess.CompletedProcess[str]:
    """``fal-kontext ARGS`` in a subprocess, stdout and stderr captured (so: piped)."""
    command = [sys.executable, "-m", "fal_kontext.cli", *args]
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=60, check=False, **kwargs)  # type: ignore[call-overload, no-any-return]


def json_lines(text: str) -> list[dict[str, object]]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def interrupt(args: list[str], env: dict[str, str], after: bytes) -> tuple[int, str]:
    """Run the command on a pseudo-terminal, press Ctrl-C once ``after`` appeared; the exit code and the screen."""
    controller, terminal = pty.openpty()
    process = subprocess.Popen(
        [sys.executable, "-m", "fal_kontext.cli", *args],
        stdin=terminal,
        stdout=terminal,
        stderr=terminal,
        env=env,
        close_fds=True,
    )
    os.close(terminal)
    seen: list[bytes] = []

    def read_until(marker: bytes) -> None:
        while marker not in b"".join(seen):
            try:
                chunk = os.read(controller, 4096)
            except OSError:
                return
            if not chunk:
                return
            seen.append(chunk)

    read_until(after)
    process.send_signal(signal.SIGINT)
    read_until(b"interrupted")
    code = process.wait(timeout=30)
    read_until(b"\x00")  # never printed: reads to the end
    os.close(controller)
    return code, b"".join(seen).decode()
