"""Running a batch (batch/runner.py) against the emulator: lines under way after a crash, ambiguous lines, concurrency,
the cost guard, and the synchronous form."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from fal_kontext import AsyncKontext, RecoveryPolicy
from fal_kontext.batch import (
    BatchJob,
    BatchOptions,
    BatchSummary,
    ManifestError,
    batch,
    estimate_cost,
    read_manifest,
    run_batch,
)
from tests.support.batches import by_body_counts, stopped_mid_submit, write_manifest
from tests.support.emulator import EmulatorConfig, RunningEmulator, run_emulator


@pytest.fixture
def fast(tmp_path: Path) -> Iterator[RunningEmulator]:
    with run_emulator(EmulatorConfig(run_time=0.05, queue_wait=0.0, runners=16, keepalive_interval=1.0)) as running:
        yield running


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
