"""`python -m fal_kontext_emulator` (what `fal-kontext mock` runs) in a process of its own."""

from __future__ import annotations

import signal
import subprocess
import sys

import httpx

from fal_kontext_emulator.command_line import READY_LINE
from tests.emulator.conftest import SUBMIT, body


def test_the_module_prints_the_base_url_and_a_ready_line_then_serves() -> None:
    process = subprocess.Popen(
        [sys.executable, "-m", "fal_kontext_emulator", "--port", "0", "--key", "cli-key", "--run-time", "0.05"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        first = process.stdout.readline()
        assert first.startswith("fal-kontext mock: base URL http://127.0.0.1:")
        assert process.stdout.readline().strip() == READY_LINE
        base_url = first.rsplit(" ", 1)[1].strip()
        submitted = httpx.post(base_url + SUBMIT, json=body(), headers={"Authorization": "Key cli-key"})
        assert submitted.status_code == 200
        assert submitted.json()["status_url"].startswith(base_url)
    finally:
        process.send_signal(signal.SIGINT)  # what Ctrl+C sends: a clean stop
        process.wait(timeout=10)
    assert process.returncode == 0
