"""The fal-kontext command against the emulator: on a pseudo-terminal (progress, files), piped (JSON lines),
exit codes, the by-id commands, and the quick start with the mock command."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from fal_kontext.cli import main
from tests.support.command_line import interrupt, json_lines, read_until, run_cli, start_on_a_terminal
from tests.support.emulator import EmulatorConfig, RunningEmulator, run_emulator


@pytest.fixture(scope="module")
def emulator() -> Iterator[RunningEmulator]:
    """This module's emulator (for conftest's ``env``): a 1 s queue wait."""
    # A 1 s queue wait: the terminal test must see "in queue" however loaded the machine is when the CLI starts.
    with run_emulator(EmulatorConfig(run_time=0.3, queue_wait=1.0, keepalive_interval=1.0)) as running:
        yield running


def test_piped_edit_prints_json_lines(env: dict[str, str], image: Path, tmp_path: Path) -> None:
    done = run_cli(
        [
            "edit",
            "Put a hat on it",
            str(image),
            str(image),
            "--model",
            "max",
            "--output-format",
            "png",
            "--out",
            str(tmp_path / "o"),
        ],
        env,
    )
    assert done.returncode == 0, done.stderr
    events = json_lines(done.stdout)
    assert events[0]["event"] == "submitted" and events[0]["endpoint"] == "fal-ai/flux-pro/kontext/max/multi"
    assert {e["event"] for e in events[1:-1]} == {"status"}
    result = events[-1]
    assert result["event"] == "result" and result["prompt"] == "Put a hat on it"
    files = result["files"]
    assert isinstance(files, list) and [Path(f).suffix for f in files] == [".png"]
    assert Path(str(files[0])).read_bytes()[:4] == b"\x89PNG"


def test_terminal_edit_shows_progress_and_writes_images(env: dict[str, str], image: Path, tmp_path: Path) -> None:
    process, controller = start_on_a_terminal(["edit", "a donut", str(image)], env, cwd=tmp_path)
    chunks: list[bytes] = []
    read_until(controller, b"\x00", chunks)  # never printed: reads to the end
    os.close(controller)
    assert process.wait(timeout=60) == 0
    screen = b"".join(chunks).decode()
    assert "submitted " in screen and "in queue" in screen and "log: " in screen and "s] " in screen
    assert "saved " in screen and '"event"' not in screen
    assert len(list(tmp_path.glob("*-0.jpg"))) == 1


def test_ctrl_c_on_a_terminal_cancels_the_request(env: dict[str, str], image: Path) -> None:
    with run_emulator(EmulatorConfig(run_time=30.0, runners=1, keepalive_interval=1.0)) as slow:
        code, screen = interrupt(["--base-url", slow.base_url, "edit", "a prompt", str(image)], env, b"running")
        assert code == 130
        assert slow.counters()["calls"].get("cancel_request") == 1
    assert "cancelled" in screen


def test_by_id_commands(env: dict[str, str], image: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["submit", "a prompt", str(image)]) == 0
    request_id = capsys.readouterr().out.strip()  # the bare id, for `id=$(fal-kontext submit ...)`
    assert main(["wait", request_id, "--poll", "--out", str(tmp_path)]) == 0
    assert json_lines(capsys.readouterr().out)[-1]["files"]
    assert main(["status", request_id, "--logs"]) == 0
    status = json_lines(capsys.readouterr().out)[0]
    assert status["status"] == "COMPLETED" and status["logs"]
    assert main(["result", request_id]) == 0
    assert json_lines(capsys.readouterr().out)[0]["request_id"] == request_id
    assert main(["cancel", request_id]) == 0
    assert json_lines(capsys.readouterr().out)[0]["status"] == "ALREADY_COMPLETED"


@pytest.mark.parametrize(
    ("args", "code", "error"),
    [
        (["status", "no-such-request"], 4, "NotFoundError"),
        (["edit", "a prompt", "IMAGE", "--num-images", "9"], 2, "InvalidInputError"),
        (["edit", "a prompt", "missing.png"], 2, "InvalidInputError"),
        (["edit", "[content-policy] p", "IMAGE"], 5, "ContentPolicyError"),
        (["edit", "[runner-failure] p", "IMAGE"], 5, "RequestFailedError"),
        (["--base-url", "http://127.0.0.1:9", "status", "x", "--retries", "0"], 7, "APIConnectionError"),
        (["--base-url", "not a url", "status", "x"], 2, "InvalidInputError"),
        (["status", ""], 2, "InvalidInputError"),
    ],
)
def test_exit_codes(
    env: dict[str, str], image: Path, capsys: pytest.CaptureFixture[str], *, args: list[str], code: int, error: str
) -> None:
    args = [str(image) if a == "IMAGE" else a for a in args]
    assert main(args) == code
    captured = capsys.readouterr()
    assert json_lines(captured.out)[-1]["type"] == error
    assert "fal-kontext: error:" in captured.err


def test_wrong_key_exit_code(
    env: dict[str, str], image: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("FAL_KEY", "not-the-key")
    assert main(["edit", "a prompt", str(image)]) == 3
    assert "FAL_KEY" in capsys.readouterr().err


def test_timeout_exit_code(
    emulator: RunningEmulator, env: dict[str, str], image: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with run_emulator(EmulatorConfig(run_time=30.0, runners=1)) as slow:
        assert main(["--base-url", slow.base_url, "edit", "a prompt", str(image), "--timeout", "0.5"]) == 6
    assert "cancelled" in json_lines(capsys.readouterr().out)[-1]["message"]  # type: ignore[operator]


def test_quick_start_with_the_mock_command(image: Path, tmp_path: Path) -> None:
    """`fal-kontext mock` then `fal-kontext edit` against it, as the quick start shows."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("FAL_")}
    server = subprocess.Popen(
        [sys.executable, "-m", "fal_kontext.cli", "mock", "--port", "0", "--run-time", "0.2"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env=env,
    )
    try:
        assert server.stdout is not None
        base_url = ""
        for line in server.stdout:
            if "base URL" in line:
                base_url = line.split("base URL", 1)[1].strip()
            if line.startswith("fal-kontext mock: ready"):
                break
        assert base_url.startswith("http://127.0.0.1:")
        done = run_cli(
            ["--base-url", base_url, "edit", "a donut", str(image), "--out", str(tmp_path)],
            {**env, "FAL_KEY": "test-key"},
        )
        assert done.returncode == 0, done.stderr
        assert json_lines(done.stdout)[-1]["files"]
    finally:
        server.terminate()
        server.wait(timeout=10)
