"""The ``batch`` command: the manifest's lines run by ``fal_kontext.batch``, its plan and cost first, its progress
(counts, rate, ETA) while it runs, and one exit code for how it ended."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx

from fal_kontext import AsyncKontext, Kontext
from fal_kontext.batch import (
    JOURNAL_NAME,
    BatchJob,
    BatchOptions,
    BatchSummary,
    ManifestError,
    check_journal,
    estimate_cost,
    journal_states,
    lines_to_submit,
    read_manifest,
    run_batch,
)
from fal_kontext.batch.journal import SAVED, SUBMITTED

from .exit_codes import (
    EXIT_AMBIGUOUS,
    EXIT_BUDGET,
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_UNAVAILABLE,
    EXIT_USAGE,
    CommandError,
)
from .headers import AsyncHeaderEcho
from .messages import cli_words
from .output import TICK_SECONDS, Output, Ticker, check_out_folder

__all__ = ["BatchProgress", "batch_command", "batch_exit_code"]


class BatchProgress:
    """The batch's counts, rate and ETA, from its events (the progress line on a terminal).

    Args:
        total: Lines in the manifest.
        done: Lines saved before this run.
        clock: Monotonic seconds (tests pass a fake).
    """

    def __init__(self, total: int, done: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.total = total
        self.done = done
        self.done_before = done
        self.not_done = 0
        self.clock = clock
        self.started = clock()

    def count(self, event: str) -> None:
        """Count one event of ``run_batch``."""
        if event == "saved":
            self.done += 1
        elif event in ("failed", "ambiguous", "unfinished", "over_budget"):
            self.not_done += 1

    def text(self) -> str:
        """``57/200 done, 2 not done, 141 to go, 3.1/s, ETA 46s``."""
        elapsed = max(self.clock() - self.started, 1e-9)
        rate = (self.done - self.done_before) / elapsed
        left = self.total - self.done - self.not_done
        eta = f"ETA {left / rate:.0f}s" if rate > 0 else "ETA ?"
        return f"batch: {self.done}/{self.total} done, {self.not_done} not done, {left} to go, {rate:.1f}/s, {eta}"


def batch_exit_code(summary: BatchSummary) -> int:
    """How a run ended, as one exit code: a failed line first, then ambiguous, unfinished, over budget."""
    if summary.failed:
        return EXIT_FAILED
    if summary.ambiguous:
        return EXIT_AMBIGUOUS
    if summary.unfinished:
        return EXIT_UNAVAILABLE
    if summary.over_budget:
        return EXIT_BUDGET
    return EXIT_OK


def _batch_jobs(args: argparse.Namespace) -> tuple[list[BatchJob], BatchOptions]:
    """The manifest's jobs and the run's options, every problem found before anything is planned or sent."""
    check_out_folder(args.out)
    try:
        jobs = read_manifest(args.manifest)
        check_journal(jobs, args.out)
    except ManifestError as err:
        raise CommandError(str(err), EXIT_USAGE) from err
    except OSError as err:
        raise CommandError(f"MANIFEST {args.manifest}: {err.strerror or err}", EXIT_USAGE) from err
    try:
        options = BatchOptions(
            concurrency=args.concurrency,
            max_cost=args.max_cost,
            resubmit_ambiguous=args.resubmit_ambiguous,
            retry_failed=args.retry_failed,
            max_image_bytes=args.max_image_bytes,
        )
    except ValueError as err:
        raise CommandError(f"--{err}", EXIT_USAGE) from err
    return jobs, options


def _batch_plan(jobs: Sequence[BatchJob], options: BatchOptions, folder: Path, out: Output) -> BatchProgress:
    """Print what the run will do and what it may cost; the progress counts from there."""
    every_line = estimate_cost(jobs)
    if options.max_cost is not None and not every_line.known:  # run_batch's rule: every line priced
        raise CommandError(f"--max-cost needs a price for every endpoint: {every_line}", EXIT_USAGE)
    states = journal_states(folder)
    left = lines_to_submit(jobs, states, options)
    estimate = estimate_cost(left)
    saved = sum(1 for job in jobs if states.get(job.id) == SAVED)
    queued = sum(1 for job in jobs if states.get(job.id) == SUBMITTED)
    out.emit(
        "plan",
        lines=len(jobs),
        to_submit=len(left),
        saved_before=saved,
        queued_before=queued,
        estimated_cost_usd=estimate.usd if estimate.known else None,
        estimate=str(estimate),
    )
    out.note(
        f"batch: {len(jobs)} lines: {len(left)} to submit, {queued} queued earlier, {saved} saved earlier; "
        f"estimated cost of the submits: {estimate}"
    )
    return BatchProgress(len(jobs), saved)


def batch_command(args: argparse.Namespace, kontext: Kontext, out: Output) -> int:
    """``batch MANIFEST --out DIR``: plan, run and summarise the manifest's lines (``fal_kontext.batch``)."""
    jobs, options = _batch_jobs(args)
    counts = _batch_plan(jobs, options, args.out, out)

    def on_event(event: dict[str, Any]) -> None:
        fields = {key: value for key, value in event.items() if key != "event"}
        out.emit(str(event["event"]), **fields)
        counts.count(str(event["event"]))
        if event["event"] in ("failed", "ambiguous", "unfinished"):
            out.note(cli_words(f"{event['event']}: {event['id']} (line {event['line']}): {event.get('reason', '')}"))

    async def go() -> BatchSummary:
        transport = AsyncHeaderEcho(httpx.AsyncHTTPTransport(), out.note) if args.headers else None
        # The batch's own progress line shows its counts: a lookup of one line is not shown there.
        client_options = {**args.client_options, "recovery": replace(args.client_options["recovery"], on_lookup=None)}
        async with AsyncKontext(**client_options, transport=transport) as client:
            return await run_batch(client, jobs, args.out, options, on_event)

    def draw() -> None:
        if out.progress is not None:
            out.progress.text = counts.text()
            out.progress.draw()

    try:
        with Ticker(draw, TICK_SECONDS) if out.progress is not None else contextlib.nullcontext():
            summary = asyncio.run(go())
    except KeyboardInterrupt:
        raise CommandError(
            f"interrupted: queued jobs keep running; run the same command again to resume them "
            f"(journal {args.out / JOURNAL_NAME})",
            EXIT_INTERRUPTED,
        ) from None
    except BlockingIOError as err:
        raise CommandError(f"--out {args.out}: another batch is running with this folder", EXIT_USAGE) from err
    except ManifestError as err:
        raise CommandError(str(err), EXIT_USAGE) from err
    out.emit("summary", **summary.to_dict())
    cost = "unknown" if summary.cost_usd is None else f"${summary.cost_usd:.2f}"
    out.say(
        f"batch: {summary.done}/{summary.total} done, {len(summary.failed)} failed, {len(summary.ambiguous)} "
        f"ambiguous, {len(summary.unfinished)} unfinished, {len(summary.over_budget)} over budget; "
        f"estimated cost {cost}; {summary.elapsed:.1f}s"
    )
    for kind in ("failed", "ambiguous", "unfinished"):
        for job_id, reason in getattr(summary, kind).items():
            out.say(cli_words(f"  {kind}: {job_id}: {reason}"))
    return batch_exit_code(summary)
