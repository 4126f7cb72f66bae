"""The batch command against the emulator: runs killed with SIGKILL and restarted, what it says of ambiguous and
failed lines, 429s, --max-cost, --headers."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from fal_kontext.batch import JOURNAL_NAME, Journal, estimate_cost, read_manifest
from fal_kontext.batch.journal import AMBIGUOUS, SUBMITTING
from fal_kontext.cli.exit_codes import EXIT_AMBIGUOUS, EXIT_FAILED, EXIT_USAGE
from tests.support.batches import batch_env, by_body_counts, journal_rows, stopped_mid_submit, write_manifest
from tests.support.command_line import json_lines, run_cli
from tests.support.emulator import EmulatorConfig, RunningEmulator, run_emulator


@pytest.fixture
def fast(tmp_path: Path) -> Iterator[RunningEmulator]:
    with run_emulator(EmulatorConfig(run_time=0.05, queue_wait=0.0, runners=16, keepalive_interval=1.0)) as running:
        yield running


def run_until_quiet_then_kill(
    command: list[str], env: dict[str, str], emulator: RunningEmulator, out: Path, saved_before_kill: int
) -> list[dict[str, Any]]:
    """Run the batch; once ``saved_before_kill`` lines are saved, hold every result call (a latency fault) until no
    event came for a while and the journal shows no submit under way, then SIGKILL it. Returns the events seen."""
    process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    assert process.stdout is not None
    events: list[dict[str, Any]] = []
    saved = 0
    for line in process.stdout:
        events.append(json.loads(line))
        saved += events[-1]["event"] == "saved"
        if saved >= saved_before_kill:
            break
    emulator.add_fault("result~30")  # every worker ends up waiting for a result: no submit can start
    os.set_blocking(process.stdout.fileno(), False)
    quiet_since = time.monotonic()
    while time.monotonic() - quiet_since < 1.0 or SUBMITTING in journal_rows(out).values():
        line = process.stdout.readline()
        if line:
            events.append(json.loads(line))
            quiet_since = time.monotonic()
        else:
            time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=30)
    emulator.clear_faults()
    return events


@pytest.mark.slow
def test_a_200_line_batch_killed_twice_ends_with_200_results_each_submitted_once(
    fast: RunningEmulator, tmp_path: Path
) -> None:
    manifest = write_manifest(tmp_path, 200)
    out = tmp_path / "out"
    command = [sys.executable, "-m", "fal_kontext.cli", "batch", str(manifest), "--out", str(out), "--json"]
    env = batch_env(fast)
    first = run_until_quiet_then_kill(command, env, fast, out, saved_before_kill=40)
    second = run_until_quiet_then_kill(command, env, fast, out, saved_before_kill=60)
    # the restarted run found jobs queued by the killed one and followed them by request id
    plan = second[0]
    assert plan["event"] == "plan" and plan["queued_before"] > 0 and plan["saved_before"] >= 40
    resumed = {e["id"] for e in second if e["event"] == "saved"} & {e["id"] for e in first if e["event"] == "submitted"}
    assert resumed  # saved by the second run, submitted by the first
    final = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300, check=False)
    assert final.returncode == 0, final.stdout[-2000:] + final.stderr[-2000:]
    summary = json_lines(final.stdout)[-1]
    assert summary["event"] == "summary" and summary["done"] == 200 and not summary["failed"]
    assert all(len(list((out / f"job-{n}").glob("*.jpg"))) == 1 for n in range(200))
    counts = by_body_counts(fast)
    assert len(counts) == 200 and set(counts) == {1}  # every line submitted, none twice
    assert set(journal_rows(out).values()) == {"saved"}


def test_a_line_under_way_whose_job_was_queued_is_adopted_not_sent_again(fast: RunningEmulator, tmp_path: Path) -> None:
    import httpx

    manifest, out, jobs = stopped_mid_submit(tmp_path, 3, 1)
    # The killed run's submit had reached the queue: the job exists, its answer never arrived.
    headers = {"Authorization": f"Key {fast.key}"}
    httpx.post(f"{fast.base_url}/{jobs[1].endpoint.id}", json=jobs[1].input(), headers=headers).raise_for_status()
    done = run_cli(["batch", str(manifest), "--out", str(out)], batch_env(fast))
    assert done.returncode == 0, done.stderr
    assert journal_rows(out) == dict.fromkeys(["job-0", "job-1", "job-2"], "saved")
    assert fast.submit_count(body=jobs[1].input()) == 1 and fast.submit_count() == 3


def test_the_cli_names_the_flag_that_sends_an_ambiguous_line(fast: RunningEmulator, tmp_path: Path) -> None:
    manifest = write_manifest(tmp_path, 2)
    out = tmp_path / "out"
    jobs = read_manifest(manifest)
    journal = Journal(out / JOURNAL_NAME)
    journal.record(jobs[0], AMBIGUOUS, reason="SubmitOutcomeUnknownError: the answer was lost")
    journal.close()
    done = run_cli(["batch", str(manifest), "--out", str(out)], batch_env(fast))
    assert done.returncode == EXIT_AMBIGUOUS
    assert [e["id"] for e in json_lines(done.stdout) if e["event"] == "ambiguous"] == ["job-0"]
    assert "may have been queued" in done.stderr and "--resubmit-ambiguous" in done.stderr
    assert fast.submit_count(body=jobs[0].input()) == 0


def test_a_failed_line_exits_non_zero_and_the_others_finish(fast: RunningEmulator, tmp_path: Path) -> None:
    manifest = write_manifest(tmp_path, 4)
    with manifest.open("a") as more:
        more.write(json.dumps({"id": "bad", "prompt": "[runner-failure] p", "image": "in.png"}) + "\n")
    done = run_cli(["batch", str(manifest), "--out", str(tmp_path / "out")], batch_env(fast))
    assert done.returncode == EXIT_FAILED
    summary = json_lines(done.stdout)[-1]
    assert summary["done"] == 4 and list(summary["failed"]) == ["bad"]  # type: ignore[call-overload]
    assert "runner_disconnected" in done.stderr


def test_rate_limited_submits_back_off_and_are_sent_once(fast: RunningEmulator, tmp_path: Path) -> None:
    fast.add_fault("submit=429:0.2,429:0.2,429:0.2,ok")
    manifest = write_manifest(tmp_path, 5)
    done = run_cli(["--retries", "0", "batch", str(manifest), "--out", str(tmp_path / "out")], batch_env(fast))
    assert done.returncode == 0, done.stderr
    events = json_lines(done.stdout)
    assert sum(e["event"] == "rate_limited" for e in events) == 3
    assert sorted(by_body_counts(fast)) == [1] * 5


def test_max_cost_needs_a_price_for_every_endpoint(fast: RunningEmulator, tmp_path: Path) -> None:
    manifest = write_manifest(tmp_path, 5)
    if not estimate_cost(read_manifest(manifest)).known:
        done = run_cli(["batch", str(manifest), "--out", str(tmp_path / "o2"), "--max-cost", "1"], batch_env(fast))
        assert done.returncode == EXIT_USAGE and "--max-cost" in done.stderr


def test_headers_in_a_batch(fast: RunningEmulator, tmp_path: Path) -> None:
    manifest = write_manifest(tmp_path, 1)
    done = run_cli(["--headers", "batch", str(manifest), "--out", str(tmp_path / "out")], batch_env(fast))
    assert done.returncode == 0, done.stderr
    assert "POST " + fast.base_url + "/fal-ai/" in done.stderr and "< content-type: " in done.stderr.lower()


@pytest.mark.slow
def test_killed_at_random_moments_no_line_is_ever_submitted_twice(fast: RunningEmulator, tmp_path: Path) -> None:
    """Kills that land anywhere, a submit under way included: every line is saved, each submitted once."""
    import random

    draw = random.Random(12)
    manifest = write_manifest(tmp_path, 60)
    out = tmp_path / "out"
    # A line under way when killed is looked up before it is sent: the emulator lists a job at once, so 1 s of
    # absence proves it was not queued.
    quick = ["--absent-after", "1"]
    command = [sys.executable, "-m", "fal_kontext.cli", *quick, "batch", str(manifest), "--out", str(out), "--json"]
    env = batch_env(fast)
    for _ in range(3):
        process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 60
        while not (out / JOURNAL_NAME).exists() and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(draw.uniform(0.2, 1.5))
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=30)
    final = run_cli([*quick, "batch", str(manifest), "--out", str(out)], env)
    summary = json_lines(final.stdout)[-1]
    # Every line under way was settled through the request list: none is left ambiguous, each was sent once.
    assert final.returncode == 0, final.stderr
    assert summary["done"] == 60 and not summary["ambiguous"] and not summary["failed"]
    for job in read_manifest(manifest):
        assert fast.submit_count(body=job.input()) == 1, job.id
