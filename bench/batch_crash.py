"""Scenario 6: `fal-kontext batch` killed mid-run and started again: every line done once, none twice,
and the time against an ideal client (the bare reader) running the same jobs with the same concurrency."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

from fal_kontext_emulator import key_fingerprint

from .clients import ROOT, run_workload
from .model import Plot, ScenarioResult, Target
from .server import CLIENT_CPU, EmulatorProcess, emulator, pin_to
from .workload import IMAGE

CONCURRENCY = 16
RUN_TIME = 0.2
JITTER = 0.2
TIMEOUT = 900.0
METHOD = (
    "A manifest of {lines} lines (one edit each, unique prompts, the same small input image and seed) runs through "
    "`fal-kontext batch MANIFEST --out DIR --concurrency {concurrency}` in its own process pinned to CPU 1, against "
    "one emulator (HTTPS, pinned to CPU 0, a runner per slot, jobs of {run_time:g} s plus 0-{jitter:g} s). When the "
    "emulator has seen half of the submits, the batch process is killed (SIGKILL) and the same command started "
    "again: it must resume from its journal, and settle the lines that were under way when it died through the "
    "emulator's copy of fal's request list (adopted when listed, sent when the list shows no job for 60 s, the "
    "CLI's default). Done = a line's output folder holds its image. Submitted once / twice "
    "= the emulator's per-body submit counts (each line's body is unique). Time = both runs' wall time plus the "
    "restart gap; the ideal is the bare httpx reader (bench/bare_reader.py) running the same number of jobs with the "
    "same concurrency on the same emulator, fetching each output image too, without a crash."
)


def _cli() -> list[str]:
    return [sys.executable, "-m", "fal_kontext.cli"]


def batch_available() -> bool:
    """Whether this fal-kontext has the `batch` command."""
    done = subprocess.run([*_cli(), "batch", "--help"], capture_output=True, text=True, check=False, cwd=ROOT)
    return done.returncode == 0


def _manifest(path: Path, lines: int) -> None:
    with path.open("w", encoding="utf-8") as manifest:
        for index in range(lines):
            line = {"id": f"line-{index}", "prompt": f"batch crash, line {index}", "image_url": IMAGE, "seed": 42}
            manifest.write(json.dumps(line) + "\n")


def _start(server: EmulatorProcess, manifest: Path, out: Path) -> subprocess.Popen[str]:
    assert server.certificates is not None
    env = {**os.environ, "FAL_KEY": server.key, "SSL_CERT_FILE": server.certificates.ca_file}
    command = [*_cli(), "--base-url", server.base_url, "batch", str(manifest), "--out", str(out)]
    process = subprocess.Popen(
        [*command, "--concurrency", str(CONCURRENCY)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    pin_to(process.pid, CLIENT_CPU)
    return process


def _crash_and_resume(server: EmulatorProcess, lines: int, scratch: Path) -> dict[str, Any]:
    manifest, out = scratch / "manifest.jsonl", scratch / "out"
    _manifest(manifest, lines)
    owner = key_fingerprint(server.key)
    server.admin("DELETE", "/counters")
    started = time.monotonic()
    first = _start(server, manifest, out)
    killed_at: float | None = None
    while first.poll() is None and time.monotonic() - started < TIMEOUT:
        if server.admin("GET", "/counters")["submits"].get(owner, {}).get("total", 0) >= lines // 2:
            first.kill()
            killed_at = time.monotonic()
            break
        time.sleep(0.05)
    first.wait()
    restarted_at = time.monotonic()
    second = _start(server, manifest, out)
    try:
        _, errors = second.communicate(timeout=TIMEOUT)
    except subprocess.TimeoutExpired:
        second.kill()
        _, errors = second.communicate()
    ended = time.monotonic()
    by_body = server.admin("GET", "/counters")["submits"].get(owner, {}).get("by_body", {})
    submits = Counter(by_body.values())
    saved = sum(1 for index in range(lines) if any((out / f"line-{index}").glob("*.*")))
    return {
        "lines": lines,
        "done": saved,
        "bodies_submitted": len(by_body),
        "submitted_once": submits.get(1, 0),
        "submitted_twice_or_more": sum(n for count, n in submits.items() if count >= 2),
        "never_submitted": lines - len(by_body),
        "killed": killed_at is not None,
        "first_run_s": (killed_at or restarted_at) - started,
        "second_run_s": ended - restarted_at,
        "wall_s": ended - started,
        "exit_codes": [first.returncode, second.returncode],
        "stderr_tail": errors[-2000:],
    }


def _ideal(server: EmulatorProcess, lines: int) -> dict[str, Any]:
    prompts = [f"batch crash, ideal, job {index}" for index in range(lines)]
    report = run_workload(server, "bare-async", prompts, concurrency=CONCURRENCY, fetch_images=True)
    return {
        "done": sum(1 for job in report["jobs"] if job["held_at"] is not None),
        "wall_s": report["wall_s"],
        "errors": dict(Counter(job["error"] for job in report["jobs"] if job["error"])),
    }


def run(*, smoke: bool) -> ScenarioResult:
    """The batch crash bench, or a row saying the batch command is not in this build."""
    lines = 20 if smoke else 1000
    title = "6. Batch: killed mid-run and resumed"
    if not batch_available():
        return ScenarioResult(
            key="batch_crash",
            title=title,
            method="`fal-kontext batch` is not in this build: nothing measured.",
            columns=["client", "measured"],
            rows=[["fal-kontext batch", "not available"]],
        )
    options = ["--runners", str(CONCURRENCY), "--queue-wait", "0", "--run-time", f"{RUN_TIME}"]
    options += ["--run-time-jitter", f"{JITTER}"]
    with emulator(options) as server, tempfile.TemporaryDirectory(prefix="bench-batch-") as scratch:
        batch = _crash_and_resume(server, lines, Path(scratch))
        ideal = _ideal(server, lines)
    ratio = batch["wall_s"] / ideal["wall_s"]
    once = batch["done"] == lines and batch["submitted_once"] == lines and batch["submitted_twice_or_more"] == 0
    rows = [
        [
            "fal-kontext batch, killed and restarted",
            lines,
            batch["done"],
            batch["submitted_once"],
            batch["submitted_twice_or_more"],
            batch["never_submitted"],
            batch["wall_s"],
            ratio,
            " / ".join(str(code) for code in batch["exit_codes"]),
        ],
        ["bare httpx reader (ideal, no crash)", lines, ideal["done"], "", "", "", ideal["wall_s"], 1.0, ""],
    ]
    why = (
        ""
        if once
        else f"{batch['done']} of {lines} lines saved; {batch['submitted_once']} submitted once, "
        f"{batch['submitted_twice_or_more']} twice or more, {batch['never_submitted']} never; exit codes "
        f"{batch['exit_codes']}; the restarted run's last words: {batch['stderr_tail'][-300:]!r}"
    )
    return ScenarioResult(
        key="batch_crash",
        title=title,
        method=METHOD.format(lines=lines, concurrency=CONCURRENCY, run_time=RUN_TIME, jitter=JITTER),
        columns=[
            "client",
            "lines",
            "done",
            "submitted once",
            "submitted twice or more",
            "never submitted",
            "wall s",
            "time / ideal",
            "exit codes (killed / restarted)",
        ],
        rows=rows,
        targets=[
            Target(
                "Batch killed mid-run and restarted: every line done once, none twice",
                f"{lines} done, {lines} submitted once, 0 twice",
                f"{batch['done']} done, {batch['submitted_once']} once, {batch['submitted_twice_or_more']} twice",
                once,
                why,
            )
        ],
        plots=[
            Plot(
                "bench-batch-crash.png",
                f"{lines} lines with a crash vs the ideal client: wall time (s)",
                "seconds",
                {"fal-kontext batch (killed, restarted)": batch["wall_s"], "bare reader (ideal)": ideal["wall_s"]},
            )
        ],
        notes=[
            f"The first run was killed after {batch['first_run_s']:.1f} s (killed: {batch['killed']}); the restarted "
            f"run took {batch['second_run_s']:.1f} s. The ideal client's errors: {ideal['errors'] or 'none'}.",
        ],
        data={"batch": batch, "ideal": ideal},
    )
