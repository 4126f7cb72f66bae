"""The fal-kontext command against the emulator: what people meet first."""

from __future__ import annotations

import io
import sys
import time
from pathlib import Path

import pytest

from fal_kontext import Kontext
from fal_kontext.cli import main
from fal_kontext.cli.exit_codes import EXIT_CANCELLED, EXIT_FAILED, EXIT_NOT_READY, EXIT_TIMEOUT, EXIT_USAGE
from tests.support.command_line import FakeTerminal, interrupt, json_lines, run_cli
from tests.support.emulator import EmulatorConfig, RunningEmulator, run_emulator


def test_submit_prints_the_bare_request_id_for_shell_capture(env: dict[str, str], image: Path) -> None:
    submitted = run_cli(["submit", "a prompt", str(image)], env)
    assert submitted.returncode == 0, submitted.stderr
    request_id = submitted.stdout.strip()
    assert submitted.stdout == request_id + "\n" and " " not in request_id and "{" not in request_id
    status = run_cli(["status", request_id], env)
    assert status.returncode == 0, status.stderr
    as_json = run_cli(["submit", "a prompt", str(image), "--json"], env)
    assert json_lines(as_json.stdout)[0]["event"] == "submitted"


def test_an_out_that_is_a_file_fails_before_anything_is_sent(
    emulator: RunningEmulator, env: dict[str, str], image: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    emulator.reset_counters()
    assert main(["edit", "a prompt", str(image), "--out", str(image)]) == EXIT_USAGE
    assert "--out" in capsys.readouterr().err
    assert main(["wait", "some-id", "--out", str(image)]) == EXIT_USAGE
    assert emulator.counters()["calls"] == {}


@pytest.mark.parametrize("seconds", ["-1", "nan", "1000"])
def test_a_bad_absent_after_fails_before_anything_is_sent(
    emulator: RunningEmulator, env: dict[str, str], image: Path, capsys: pytest.CaptureFixture[str], seconds: str
) -> None:
    emulator.reset_counters()
    assert main(["--absent-after", seconds, "edit", "a prompt", str(image)]) == EXIT_USAGE
    assert "--absent-after" in capsys.readouterr().err
    assert emulator.counters()["calls"] == {}


def test_images_that_cannot_be_written_name_the_request_and_how_to_fetch_them(
    env: dict[str, str],
    image: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    def refuse(self: Kontext, result: object, directory: object) -> list[Path]:
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(Kontext, "save", refuse)
    assert main(["edit", "a prompt", str(image), "--out", str(tmp_path)]) == 1
    error = json_lines(capsys.readouterr().out)[-1]
    assert error["request_id"] and f"fal-kontext result {error['request_id']} --out" in str(error["message"])


def test_progress_goes_to_stderr_on_a_terminal_while_stdout_is_redirected(
    env: dict[str, str], image: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    stdout, stderr = io.StringIO(), FakeTerminal()
    monkeypatch.setattr(sys, "stdout", stdout)
    monkeypatch.setattr(sys, "stderr", stderr)
    assert main(["edit", "a prompt", str(image), "--out", str(image.parent)]) == 0
    assert json_lines(stdout.getvalue())[-1]["event"] == "result"  # the file gets JSON lines
    screen = stderr.getvalue()
    assert "s] " in screen and "saved " in screen  # the terminal gets progress


@pytest.fixture(scope="module")
def slow() -> object:
    with run_emulator(EmulatorConfig(run_time=30.0, runners=1, keepalive_interval=1.0)) as running:
        yield running


def test_ctrl_c_on_wait_stops_watching_and_says_how_to_resume(
    slow: RunningEmulator, env: dict[str, str], image: Path
) -> None:
    with Kontext(slow.key, base_url=slow.base_url) as kontext:
        handle = kontext.submit(
            "fal-ai/flux-pro/kontext", {"prompt": "a prompt", "image_url": "https://example.com/a.png"}
        )
    slow.reset_counters()
    code, screen = interrupt(["--base-url", slow.base_url, "wait", handle.request_id], env, b"running")
    assert code == 130
    assert f"fal-kontext wait {handle.request_id}" in screen and "stopped watching" in screen
    assert slow.counters()["calls"].get("cancel_request") is None  # submitted elsewhere: not cancelled
    code, screen = interrupt(["--base-url", slow.base_url, "wait", handle.request_id, "--cancel"], env, b"running")
    assert code == 130 and f"request {handle.request_id} cancelled" in screen
    assert slow.counters()["calls"].get("cancel_request") == 1  # asked for: cancelled


def test_the_same_outcome_exits_with_the_same_code_in_every_command(
    slow: RunningEmulator, env: dict[str, str], image: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    base = ["--base-url", slow.base_url]
    with Kontext(slow.key, base_url=slow.base_url) as kontext:
        body = {"prompt": "a prompt", "image_url": "https://example.com/a.png"}
        running = kontext.submit("fal-ai/flux-pro/kontext", body)  # occupies the only runner
        queued = kontext.submit("fal-ai/flux-pro/kontext", body)
        assert main([*base, "result", queued.request_id]) == EXIT_NOT_READY
        assert f"fal-kontext wait {queued.request_id}" in capsys.readouterr().err
        # a start timeout is a timeout, like --timeout (not a network error)
        assert (
            main([*base, "edit", "a prompt", str(image), "--start-timeout", "0.5", "--timeout", "20"]) == EXIT_TIMEOUT
        )
        assert "--start-timeout" in capsys.readouterr().err
        queued.cancel()
        running.cancel()
        for command in ("wait", "result"):
            assert main([*base, command, queued.request_id]) == EXIT_CANCELLED, command
    failed = run_cli(["edit", "[runner-failure] p", str(image)], env)
    assert failed.returncode == EXIT_FAILED
    request_id = str(json_lines(failed.stdout)[0]["request_id"])
    for command in ("wait", "result"):
        assert run_cli([command, request_id], env).returncode == EXIT_FAILED, command


def test_webhook_url_and_sync_mode(image: Path, env: dict[str, str], tmp_path: Path) -> None:
    with run_emulator(EmulatorConfig(run_time=0.1, webhook_attempts=1)) as emulator:
        hook = "http://127.0.0.1:9/hook"
        args = ["--base-url", emulator.base_url, "edit", "a prompt", str(image), "--webhook-url", hook, "--sync-mode"]
        done = run_cli([*args, "--out", str(tmp_path)], env)
        assert done.returncode == 0, done.stderr
        result = json_lines(done.stdout)[-1]
        assert result["images"][0]["url"].startswith("data:")  # type: ignore[index]
        assert result["files"]
        deadline = time.monotonic() + 10
        while not emulator.webhook_deliveries() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert [d["url"] for d in emulator.webhook_deliveries()] == [hook]


def test_headers_shows_each_response(env: dict[str, str], image: Path) -> None:
    request_id = run_cli(["submit", "a prompt", str(image)], env).stdout.strip()
    shown = run_cli(["--headers", "status", request_id], env)
    assert shown.returncode == 0
    assert "< 20" in shown.stderr and f"/requests/{request_id}/status" in shown.stderr
    assert "< content-type: application/json" in shown.stderr.lower()
    assert env["FAL_KEY"] not in shown.stderr
