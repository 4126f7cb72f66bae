"""Batch edits: the manifest, the cost estimate, the journal, and a run killed with SIGKILL and restarted."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from PIL import Image as PILImage

from fal_kontext import AsyncKontext, RecoveryPolicy
from fal_kontext.batch import (
    AMBIGUOUS,
    JOURNAL_NAME,
    SUBMITTING,
    BatchJob,
    BatchOptions,
    BatchSummary,
    Journal,
    ManifestError,
    batch,
    estimate_cost,
    read_manifest,
    run_batch,
)
from fal_kontext.cli import EXIT_AMBIGUOUS, EXIT_FAILED, EXIT_USAGE, BatchProgress
from fal_kontext.spec import endpoint_specs, resolved_schema
from fal_kontext_emulator import EmulatorConfig, RunningEmulator, run_emulator
from tests.cli.conftest import json_lines, run_cli


def write_manifest(folder: Path, count: int, *, extra: dict[str, Any] | None = None) -> Path:
    PILImage.new("RGB", (24, 24), "teal").save(folder / "in.png")
    path = folder / "jobs.jsonl"
    with path.open("w") as manifest:
        for n in range(count):
            manifest.write(
                json.dumps({"id": f"job-{n}", "prompt": f"edit number {n}", "image": "in.png", **(extra or {})}) + "\n"
            )
    return path


def by_body_counts(emulator: RunningEmulator) -> list[int]:
    submits = emulator.counters()["submits"]
    return [n for entry in submits.values() for n in entry["by_body"].values()]


# --- the manifest and the estimate (no server) -------------------------------------------------------------------


def test_a_manifest_line_picks_its_endpoint_and_is_checked_against_the_spec(tmp_path: Path) -> None:
    PILImage.new("RGB", (8, 8)).save(tmp_path / "a.png")
    specs = endpoint_specs()
    multi = next(spec for spec in specs if spec.family == "multi-edit")
    lines = [
        {"prompt": "one", "image": "a.png"},
        {"id": "two", "prompt": "two", "images": ["a.png", "https://example.com/b.png"], "model": multi.tier},
        {"prompt": "three", "image_url": "https://example.com/c.png", "num_images": 2},
    ]
    (tmp_path / "m.jsonl").write_text("\n".join(json.dumps(line) for line in lines) + "\n\n")
    jobs = read_manifest(tmp_path / "m.jsonl")
    assert [job.id for job in jobs] == ["line-1", "two", "line-3"]
    assert jobs[1].endpoint == multi and jobs[2].num_images == 2
    assert jobs[0].input()[jobs[0].endpoint.image_field or ""].startswith("data:image/png;base64,")


def test_every_bad_line_is_reported_before_anything_is_sent(tmp_path: Path) -> None:
    first = endpoint_specs()[0]
    maximum = resolved_schema(first.input_schema)["properties"]["num_images"]["maximum"]
    lines = [
        "{not json",
        json.dumps({"prompt": "a prompt", "image": "missing.png"}),
        json.dumps({"prompt": "a prompt", "image": "https://e.com/a.png", "num_images": maximum + 1}),
        json.dumps({"id": "same", "prompt": "a prompt", "image": "https://e.com/a.png"}),
        json.dumps({"id": "same", "prompt": "a prompt", "image": "https://e.com/b.png"}),
        json.dumps({"prompt": "a prompt", "image": "https://e.com/a.png", "endpoint": "no/such"}),
        json.dumps({"prompt": "a prompt", "image": "https://e.com/a.png", "colour": "red"}),
    ]
    (tmp_path / "m.jsonl").write_text("\n".join(lines))
    with pytest.raises(ManifestError) as raised:
        read_manifest(tmp_path / "m.jsonl")
    text = str(raised.value)
    for expected in ("line 1: not JSON", "missing.png", "num_images", "also the id of line 4", "no/such", "colour"):
        assert expected in text
    assert len(raised.value.problems) == 6


def test_the_estimate_uses_stated_prices_and_says_unknown_otherwise(tmp_path: Path) -> None:
    jobs = read_manifest(write_manifest(tmp_path, 3, extra={"num_images": 2}))
    unpriced = [replace(job, endpoint=replace(job.endpoint, price_usd_per_image=None)) for job in jobs]
    assert "unknown" in str(estimate_cost(unpriced)) and not estimate_cost(unpriced).known
    priced = [replace(job, endpoint=replace(job.endpoint, price_usd_per_image=0.04)) for job in jobs]
    assert estimate_cost(priced).usd == pytest.approx(0.24) and str(estimate_cost(priced)) == "$0.24 for 6 image(s)"


def test_batch_progress_counts_rate_and_eta() -> None:
    now = [10.0]
    progress = BatchProgress(total=100, done=20, clock=lambda: now[0])
    for _ in range(30):
        progress.count("saved")
    progress.count("failed")
    now[0] += 10.0
    assert progress.text() == "batch: 50/100 done, 1 not done, 49 to go, 3.0/s, ETA 16s"


# --- against the emulator ------------------------------------------------------------------------------------------


@pytest.fixture
def fast(tmp_path: Path) -> Iterator[RunningEmulator]:
    with run_emulator(EmulatorConfig(run_time=0.05, queue_wait=0.0, runners=16, keepalive_interval=1.0)) as running:
        yield running


def batch_env(emulator: RunningEmulator) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FAL_")}
    return {**env, "FAL_KEY": emulator.key, "FAL_KONTEXT_BASE_URL": emulator.base_url}


def journal_rows(out: Path) -> dict[str, str]:
    with sqlite3.connect(out / JOURNAL_NAME) as db:
        return {row[0]: row[1] for row in db.execute("SELECT id, state FROM jobs")}


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


def stopped_mid_submit(tmp_path: Path, count: int, line: int) -> tuple[Path, Path, list[BatchJob]]:
    """A manifest of ``count`` lines and a journal left by a run killed between "about to submit" line ``line``
    and its answer: (manifest, out, jobs)."""
    manifest = write_manifest(tmp_path, count)
    out = tmp_path / "out"
    jobs = read_manifest(manifest)
    journal = Journal(out / JOURNAL_NAME)
    journal.record(jobs[line], SUBMITTING)
    journal.close()
    return manifest, out, jobs


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


def test_a_line_under_way_that_the_list_shows_was_not_queued_is_sent_once(
    fast: RunningEmulator, tmp_path: Path
) -> None:
    _, out, jobs = stopped_mid_submit(tmp_path, 3, 1)
    quick = RecoveryPolicy(absent_after=0.5, interval=0.1, timeout=10.0)

    async def go() -> BatchSummary:
        async with AsyncKontext(fast.key, base_url=fast.base_url, recovery=quick) as kontext:
            return await run_batch(kontext, jobs, out)

    summary = asyncio.run(go())
    assert (summary.done, summary.ambiguous) == (3, {})
    assert sorted(by_body_counts(fast)) == [1, 1, 1]


def test_a_line_under_way_is_ambiguous_where_no_list_can_tell(fast: RunningEmulator, tmp_path: Path) -> None:
    _, out, jobs = stopped_mid_submit(tmp_path, 3, 1)

    def go(options: BatchOptions) -> BatchSummary:
        async def batch_run() -> BatchSummary:
            async with AsyncKontext(fast.key, base_url=fast.base_url, recovery=RecoveryPolicy(look_up=False)) as k:
                return await run_batch(k, jobs, out, options)

        return asyncio.run(batch_run())

    summary = go(BatchOptions())
    assert list(summary.ambiguous) == ["job-1"] and summary.done == 2
    assert "may have been queued" in summary.ambiguous["job-1"] and "look_up=False" in summary.ambiguous["job-1"]
    assert fast.submit_count(body=jobs[1].input()) == 0 and fast.submit_count() == 2
    # Still ambiguous on the next run, and sent only when asked.
    assert list(go(BatchOptions()).ambiguous) == ["job-1"]
    assert go(BatchOptions(resubmit_ambiguous=True)).done == 3
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


def test_concurrency_bounds_the_jobs_in_flight(fast: RunningEmulator, tmp_path: Path) -> None:
    jobs = read_manifest(write_manifest(tmp_path, 12))

    async def go() -> None:
        async with AsyncKontext(fast.key, base_url=fast.base_url) as kontext:
            summary = await run_batch(kontext, jobs, tmp_path / "out", BatchOptions(concurrency=2))
        assert summary.done == 12

    asyncio.run(go())
    import httpx

    held = httpx.get(fast.base_url + "/_emulator/requests", timeout=10).json()
    spans = [(r["submitted_at"], r["completed_at"]) for r in held["requests"].values()]
    assert len(spans) == 12
    most = max(sum(1 for s, e in spans if s <= t < e) for t, _ in spans)
    assert most <= 2


def test_max_cost_stops_submitting_and_needs_prices(fast: RunningEmulator, tmp_path: Path) -> None:
    manifest = write_manifest(tmp_path, 5)
    jobs = [replace(job, endpoint=replace(job.endpoint, price_usd_per_image=0.04)) for job in read_manifest(manifest)]

    async def go(batch: list[BatchJob], max_cost: float) -> Any:
        async with AsyncKontext(fast.key, base_url=fast.base_url) as kontext:
            return await run_batch(kontext, batch, tmp_path / "out", BatchOptions(concurrency=1, max_cost=max_cost))

    summary = asyncio.run(go(jobs, 0.13))
    assert summary.done == 3 and summary.over_budget == ["job-3", "job-4"] and summary.cost_usd == pytest.approx(0.12)
    assert fast.submit_count() == 3
    unpriced = read_manifest(manifest)
    if not estimate_cost(unpriced).known:
        with pytest.raises(ManifestError, match="price"):
            asyncio.run(go(unpriced, 1.0))
        done = run_cli(["batch", str(manifest), "--out", str(tmp_path / "o2"), "--max-cost", "1"], batch_env(fast))
        assert done.returncode == EXIT_USAGE and "--max-cost" in done.stderr


def test_headers_in_a_batch(fast: RunningEmulator, tmp_path: Path) -> None:
    manifest = write_manifest(tmp_path, 1)
    done = run_cli(["--headers", "batch", str(manifest), "--out", str(tmp_path / "out")], batch_env(fast))
    assert done.returncode == 0, done.stderr
    assert "POST " + fast.base_url + "/fal-ai/" in done.stderr and "< content-type: " in done.stderr.lower()


def test_the_synchronous_form_and_retry_failed(fast: RunningEmulator, tmp_path: Path) -> None:
    manifest = write_manifest(tmp_path, 2)
    with manifest.open("a") as more:
        more.write(json.dumps({"id": "bad", "prompt": "[runner-failure] p", "image": "in.png"}) + "\n")
    bad = read_manifest(manifest)[-1]
    out = tmp_path / "out"
    events: list[dict[str, Any]] = []
    client = {"key": fast.key, "base_url": fast.base_url}
    summary = batch(manifest, out, on_event=events.append, client=client)
    assert summary.done == 2 and list(summary.failed) == ["bad"]
    assert {e["event"] for e in events} == {"submitted", "saved", "failed"}
    again = batch(manifest, out, client=client)  # a failed line stays failed...
    assert again.submitted == 0 and list(again.failed) == ["bad"]
    retried = batch(manifest, out, BatchOptions(retry_failed=True), client=client)  # ...unless asked
    assert retried.submitted == 1 and fast.submit_count(body=bad.input()) == 2


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
