"""What the command writes (cli/output.py, the batch's progress): the progress line, its ticks, where it goes, and
the --out check."""

from __future__ import annotations

import io
import re
import threading
from pathlib import Path

import pytest

from fal_kontext.cli import Progress, Ticker, main
from fal_kontext.cli import parser as cli_parser
from fal_kontext.cli.batch_command import BatchProgress
from fal_kontext.cli.exit_codes import EXIT_ERROR, CommandError
from fal_kontext.cli.output import TICK_SECONDS, Output, check_out_folder
from fal_kontext.status import Completed, InProgress, Queued
from tests.support.command_line import FakeTerminal, Screen


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_the_progress_line_ticks_while_the_status_does_not_change() -> None:
    clock, screen = FakeClock(), FakeTerminal()
    progress = Progress(screen, clock)
    progress.update(Queued("req-1", position=0))
    waits: list[float] = []

    def wait(seconds: float) -> bool:  # the fake clock moves by the interval; stop after 8 ticks
        waits.append(seconds)
        clock.now += seconds
        return len(waits) > 8

    Ticker(progress.draw, TICK_SECONDS, wait).run()
    assert all(seconds <= 0.5 for seconds in waits)
    elapsed = [float(x) for x in re.findall(r"\[\s*([\d.]+)s\] req-1: in queue, position 0", screen.getvalue())]
    assert elapsed == pytest.approx([0.0] + [TICK_SECONDS * n for n in range(1, 9)], abs=0.06)


def test_the_ticker_thread_ticks_until_its_block_ends() -> None:
    ticks: list[int] = []
    with Ticker(lambda: ticks.append(1), 0.001):
        for _ in range(10_000):
            if len(ticks) >= 3:
                break
            threading.Event().wait(0.001)
    after = len(ticks)
    threading.Event().wait(0.01)
    assert after >= 3 and len(ticks) == after  # it ticked, and stopped with its block


def test_progress_goes_to_whichever_stream_is_a_terminal() -> None:
    file_out, tty_err = io.StringIO(), FakeTerminal()
    out = Output(json_lines=True, stdout=file_out, stderr=tty_err)
    assert out.progress is not None and out.progress.stream is tty_err
    tty_out, file_err = FakeTerminal(), io.StringIO()
    out = Output(json_lines=False, stdout=tty_out, stderr=file_err)
    assert out.progress is not None and out.progress.stream is tty_out
    out = Output(json_lines=True, stdout=io.StringIO(), stderr=io.StringIO())
    assert out.progress is None
    out.update(InProgress("r"))  # no terminal: JSON only, no crash


def test_the_progress_line_ends_before_the_final_message() -> None:
    screen = Screen()
    out = Output(json_lines=False, stdout=screen.stream(), stderr=screen.stream())  # type: ignore[arg-type]
    out.update(Completed("req-1"))
    out.say("done: req-1, seed 7")
    assert "req-1: completed\ndone: req-1, seed 7\n" in screen.text, screen.text


def test_the_batch_progress_line_ends_before_the_summary() -> None:
    screen = Screen()
    out = Output(json_lines=False, stdout=screen.stream(), stderr=screen.stream())  # type: ignore[arg-type]
    assert out.progress is not None
    out.progress.show(BatchProgress(3, 0, clock=lambda: 0.0).text())
    out.say("batch: 3/3 done, 0 failed")
    assert "ETA ?\nbatch: 3/3 done" in screen.text, screen.text


def test_batch_progress_counts_rate_and_eta() -> None:
    now = [10.0]
    progress = BatchProgress(total=100, done=20, clock=lambda: now[0])
    for _ in range(30):
        progress.count("saved")
    progress.count("failed")
    now[0] += 10.0
    assert progress.text() == "batch: 50/100 done, 1 not done, 49 to go, 3.0/s, ETA 16s"


def test_out_checks(tmp_path: Path) -> None:
    check_out_folder(tmp_path / "new" / "deeper")  # missing folders are created later
    (tmp_path / "file").write_text("x")
    with pytest.raises(CommandError, match="is a file"):
        check_out_folder(tmp_path / "file")
    with pytest.raises(CommandError, match="is a file"):
        check_out_folder(tmp_path / "file" / "below")


KEY_ID, KEY_SECRET = "key-id-0001", "canary-4f1d2c9e8b7a6f5e"


@pytest.mark.parametrize(
    ("environ", "shown"),
    [
        ({"FAL_KEY": KEY_SECRET}, KEY_SECRET),  # sent as a bearer token: fal's own host
        ({"FAL_KEY_ID": KEY_ID, "FAL_KEY_SECRET": KEY_SECRET}, KEY_SECRET),  # a part of the joined key
    ],
)
def test_an_error_message_never_shows_a_credential_the_client_sends(
    environ: dict[str, str], shown: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    for name in (
        "FAL_KEY",
        "FAL_KEY_ID",
        "FAL_KEY_SECRET",
        "FAL_KONTEXT_TOKEN",
        "FAL_KONTEXT_AUTH",
        "FAL_KONTEXT_BASE_URL",
    ):
        monkeypatch.delenv(name, raising=False)
    for name, value in environ.items():
        monkeypatch.setenv(name, value)

    def status_command(*_: object) -> int:
        raise OSError(f"echoed: {shown}")

    monkeypatch.setattr(cli_parser, "status_command", status_command)
    assert main(["--json", "--auth", "bearer", "status", "req-1"]) == EXIT_ERROR
    captured = capsys.readouterr()
    assert "echoed: ***" in captured.err and "echoed: ***" in captured.out
    assert shown not in captured.out + captured.err
