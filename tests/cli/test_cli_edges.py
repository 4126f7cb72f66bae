"""The command line's edges: what a person sees when the progress line ends, and when a batch line changed."""

from __future__ import annotations

import json
from pathlib import Path

from fal_kontext.cli import EXIT_USAGE, BatchProgress, Output
from fal_kontext.mock import RunningEmulator
from fal_kontext.status import Completed
from tests.cli.conftest import json_lines, run_cli


class Screen:
    """One terminal that stdout and stderr both write to (each through its own stream object, as sys's are)."""

    def __init__(self) -> None:
        self.written: list[str] = []

    def stream(self) -> _TerminalStream:
        return _TerminalStream(self)

    @property
    def text(self) -> str:
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


# --- batch: a line changed since the journal ----------------------------------------------------------------------


def test_a_changed_batch_line_is_one_problem_and_nothing_is_planned(
    env: dict[str, str], emulator: RunningEmulator, image: Path, tmp_path: Path
) -> None:
    manifest = tmp_path / "jobs.jsonl"
    lines = [{"id": f"job-{n}", "prompt": f"edit {n}", "image": str(image)} for n in range(2)]
    manifest.write_text("".join(json.dumps(line) + "\n" for line in lines))
    out = tmp_path / "out"
    assert run_cli(["batch", str(manifest), "--out", str(out)], env).returncode == 0
    lines[1]["prompt"] = "a changed edit"
    manifest.write_text("".join(json.dumps(line) + "\n" for line in lines))
    emulator.reset_counters()
    done = run_cli(["batch", str(manifest), "--out", str(out)], env)
    assert done.returncode == EXIT_USAGE
    [event] = json_lines(done.stdout)  # the error, and no plan before it
    assert event["event"] == "error" and "1 problem(s)" in str(event["message"])
    assert "line 2: id 'job-1' changed" in str(event["message"]) and "Use a new output folder" in done.stderr
    assert "estimated cost" not in done.stderr and emulator.counters()["calls"] == {}
