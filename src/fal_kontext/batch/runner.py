"""Running a batch: bounded concurrency, each line's state journaled as it changes, a cost guard, and the summary.

A line whose submit was under way when an earlier run died may or may not have been queued: the run looks it up in
fal's request list (``AsyncKontext.resubmit``), adopts the job if it is listed and sends the line only if the list
shows it was not queued. Where the list cannot tell (an aggregator, recovery off) the line is *ambiguous*, as is one
whose answer was lost and not recovered during a run: it is not sent again unless asked (``resubmit_ambiguous``).

It uses only the public client API (``from fal_kontext import ...``) and this package's own modules.
"""

from __future__ import annotations

import asyncio
import functools
import math
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from fal_kontext import (
    DEFAULT_MAX_IMAGE_BYTES,
    APIConnectionError,
    APIStatusError,
    AsyncKontext,
    InvalidInputError,
    KontextError,
    NotFoundError,
    RateLimitError,
    RequestCancelledError,
    RequestFailedError,
    ServerError,
    UnexpectedResponseError,
    ValidationError,
)

from .cost import estimate_cost, job_cost
from .journal import (
    AMBIGUOUS,
    FAILED,
    JOURNAL_NAME,
    PENDING,
    SAVED,
    SUBMITTED,
    SUBMITTING,
    Journal,
    JournalRow,
    refuse_changed_lines,
)
from .manifest import BatchJob, ManifestError, read_manifest

__all__ = ["DEFAULT_CONCURRENCY", "BatchOptions", "BatchSummary", "OnEvent", "batch", "lines_to_submit", "run_batch"]

# Jobs in flight at once (submitted and not yet saved). Ours: fal runs 2 requests at once for a new account and up to
# 40 after credit purchases, and never rejects queued requests for concurrency
# (https://docs.fal.ai/documentation/model-apis/concurrency-limits, https://fal.ai/docs/model-apis/faq). Twice the
# new-account limit keeps its runners busy while a crash leaves few jobs mid-flight; raise it for a larger limit.
DEFAULT_CONCURRENCY = 4
# How often a submit refused with 429 is tried again (after the client's own retries), and the longest pause.
_RATE_LIMIT_ATTEMPTS = 8
_MAX_PAUSE = 60.0
# How often waiting for a queued job is tried again after a network or server failure (the job stays queued).
_WAIT_ATTEMPTS = 5


@dataclass
class BatchSummary:
    """How a run ended.

    Attributes:
        total: Lines in the manifest.
        done: Lines saved (in this run or an earlier one).
        failed: ``{id: reason}`` of lines whose request failed.
        ambiguous: ``{id: reason}`` of lines that may have been submitted before a crash (not sent again).
        unfinished: ``{id: reason}`` of lines left queued or unsent after network failures (run again to resume).
        over_budget: Ids not submitted because ``max_cost`` was reached.
        cost_usd: The estimated cost of every line submitted (this run and earlier ones), None if unknown.
        submitted: Submits sent in this run.
        elapsed: Seconds this run took.
    """

    total: int
    done: int = 0
    failed: dict[str, str] = field(default_factory=dict)
    ambiguous: dict[str, str] = field(default_factory=dict)
    unfinished: dict[str, str] = field(default_factory=dict)
    over_budget: list[str] = field(default_factory=list)
    cost_usd: float | None = 0.0
    submitted: int = 0
    elapsed: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        """The summary as JSON-ready data (its fields, in order; the cost and the time rounded)."""
        cost = None if self.cost_usd is None else round(self.cost_usd, 6)
        return {**asdict(self), "cost_usd": cost, "elapsed": round(self.elapsed, 3)}


OnEvent = Callable[[dict[str, Any]], object]


def _failure_reason(err: BaseException) -> str:
    kind = getattr(err, "error_type", None)
    return f"{type(err).__name__}{f' [{kind}]' if kind else ''}: {err}"


@dataclass(frozen=True)
class BatchOptions:
    """How ``run_batch`` runs.

    Attributes:
        concurrency: Jobs in flight at once (submitted and not yet saved).
        max_cost: Stop submitting before the estimated cost of the submitted lines (this run and earlier ones)
            would pass this many USD. Requires every job's price to be known.
        resubmit_ambiguous: Send again the lines whose submit was under way when an earlier run stopped (they may
            be queued already: this can pay twice).
        retry_failed: Submit again the lines whose request failed in an earlier run (a new, paid request).
        max_image_bytes: Largest local image sent inline.
    """

    concurrency: int = DEFAULT_CONCURRENCY
    max_cost: float | None = None
    resubmit_ambiguous: bool = False
    retry_failed: bool = False
    max_image_bytes: int = DEFAULT_MAX_IMAGE_BYTES

    def __post_init__(self) -> None:
        if self.concurrency < 1:
            raise ValueError("concurrency must be >= 1")


def _submits(state: str | None, options: BatchOptions) -> bool:
    """Whether a run with ``options`` submits a line in journal state ``state`` (None: not in the journal). A line
    stopped mid-submit (``SUBMITTING``) is: fal's request list is asked first, and it is sent if not queued."""
    if state in (SAVED, SUBMITTED):
        return False
    if state == FAILED:
        return options.retry_failed
    if state == AMBIGUOUS:
        return options.resubmit_ambiguous
    return True


def lines_to_submit(jobs: Sequence[BatchJob], states: Mapping[str, str], options: BatchOptions) -> list[BatchJob]:
    """The jobs a run with ``options`` would submit, by each line's journal state (``journal_states``): not those
    saved or queued earlier, nor those failed (unless ``retry_failed``) or ambiguous (unless ``resubmit_ambiguous``).
    """
    return [job for job in jobs if _submits(states.get(job.id), options)]


class _Run:
    """One run over the jobs: the shared state of the workers.

    Args:
        kontext: The client.
        journal: The journal, written only through the run's ``writer`` thread (shut down by the caller).
        out: The output folder. options: As ``run_batch``. on_event: As ``run_batch``.
    """

    def __init__(
        self, kontext: AsyncKontext, journal: Journal, out: Path, options: BatchOptions, on_event: OnEvent | None
    ) -> None:
        self.kontext = kontext
        self.journal = journal
        # One thread for every journal write, so they are ordered and never block the event loop.
        self.writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="fal-kontext-journal")
        self.out = out
        self.options = options
        self.on_event = on_event
        self.clock = time.monotonic
        self.summary = BatchSummary(total=0)
        self.spent = 0.0
        self.pause_until = 0.0

    async def record(self, job: BatchJob, state: str, **values: Any) -> None:
        """``Journal.record`` in the journal's own thread: a commit waits for the disk (fsync), other jobs do not."""
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self.writer, functools.partial(self.journal.record, job, state, **values))

    def emit(self, event: str, **fields: Any) -> None:
        if self.on_event is not None:
            self.on_event({"event": event, **fields})

    def reserve(self, job: BatchJob) -> bool:
        """Count the job's cost against ``max_cost``; False (nothing reserved) if it would pass it."""
        cost = job_cost(job) or 0.0
        max_cost = self.options.max_cost
        if max_cost is not None and self.spent + cost > max_cost + 1e-9:
            return False
        self.spent += cost
        return True

    async def pause_for_rate_limit(self) -> None:
        delay = self.pause_until - self.clock()
        if delay > 0:
            await asyncio.sleep(delay)

    def settle(self, job: BatchJob, kind: str, reason: str, request_id: str | None = None) -> None:
        """Count a line that ends this run without images: ``failed``, ``ambiguous`` or ``unfinished``."""
        bucket: dict[str, str] = getattr(self.summary, kind)
        bucket[job.id] = reason
        self.emit(kind, id=job.id, line=job.line, request_id=request_id, reason=reason)

    async def leave_ambiguous(self, job: BatchJob, reason: str) -> None:
        """Record and count a line that may have been queued, saying how to send it anyway."""
        await self.record(job, AMBIGUOUS, reason=reason)
        self.settle(
            job, "ambiguous", f"{reason}; it may have been queued: not sent again (resubmit_ambiguous=True sends it)"
        )

    async def submit(self, job: BatchJob, sent_at: float | None = None) -> str | None:
        """Submit the job, recording "about to submit" first and the request id the moment it is answered. With
        ``sent_at`` (an earlier run stopped while submitting it, then), fal's request list is asked first
        (``AsyncKontext.resubmit``): the job is adopted if it was queued, and sent only if the list shows it was not.

        Returns the request id, or None when the line was settled otherwise (failed, ambiguous, not sent).
        """
        try:
            body = job.input(self.options.max_image_bytes)
        except InvalidInputError as err:
            await self.record(job, FAILED, reason=str(err))
            self.settle(job, "failed", str(err))
            return None
        for attempt in range(_RATE_LIMIT_ATTEMPTS):
            await self.pause_for_rate_limit()
            try:
                if sent_at is None:
                    await self.record(job, SUBMITTING, cost_usd=job_cost(job))
                    handle = await self.kontext.submit(job.endpoint.id, body)
                else:
                    # The row keeps its SUBMITTING time: stopped again now, the next run looks from then again.
                    handle = await self.kontext.resubmit(job.endpoint.id, body, sent_at=sent_at)
            except RateLimitError as err:  # refused: nothing was queued (RFC 6585), safe to send again later
                sent_at = None  # the list showed the earlier attempt queued nothing; this one was refused
                pause = min(_MAX_PAUSE, err.retry_after or 0.5 * 2**attempt)
                self.pause_until = max(self.pause_until, self.clock() + pause)
                await self.record(job, PENDING, reason=str(err))
                self.emit("rate_limited", id=job.id, line=job.line, pause=pause)
                continue
            except APIConnectionError as err:
                reason = _failure_reason(err)
                if not err.reached_server:  # the connection never opened: nothing was sent
                    await self.record(job, PENDING, reason=reason)
                    self.settle(job, "unfinished", f"{reason} (not sent: run the batch again)")
                    return None
                if sent_at is not None:  # the request list could not tell about the earlier run's submit
                    reason = f"the run stopped while submitting it; {reason}"
                await self.leave_ambiguous(job, reason)
                return None
            except (ServerError, UnexpectedResponseError) as err:
                # May have been queued (a gateway's 5xx, an answer we cannot read): the client did not send it
                # again, nor do we.
                reason = _failure_reason(err)
                await self.record(job, AMBIGUOUS, reason=reason)
                self.settle(job, "ambiguous", f"{reason}; it may have been queued: not sent again")
                return None
            except (APIStatusError, InvalidInputError) as err:  # the server answered no: nothing was queued
                reason = _failure_reason(err)
                await self.record(job, FAILED, reason=reason)
                self.settle(job, "failed", reason)
                return None
            await self.record(job, SUBMITTED, request_id=handle.request_id)
            self.summary.submitted += 1
            self.emit("submitted", id=job.id, line=job.line, request_id=handle.request_id, endpoint=job.endpoint.id)
            return handle.request_id
        await self.record(job, PENDING, reason="rate limited")
        self.settle(job, "unfinished", "rate limited: not sent (run the batch again)")
        return None

    async def finish(self, job: BatchJob, request_id: str) -> None:
        """Wait for a queued job and save its images; failures are recorded."""
        handle = self.kontext.handle(request_id)
        for attempt in range(_WAIT_ATTEMPTS):
            try:
                result = await handle.wait(timeout=math.inf, cancel_on_timeout=False, cancel_on_interrupt=False)
                break
            except (RequestFailedError, RequestCancelledError, ValidationError, NotFoundError) as err:
                reason = _failure_reason(err)
                await self.record(job, FAILED, request_id=request_id, reason=reason)
                self.settle(job, "failed", reason, request_id)
                return
            except KontextError as err:  # network, 5xx, 429 after the retries: the job is still queued
                if attempt == _WAIT_ATTEMPTS - 1:
                    reason = f"{_failure_reason(err)} (still queued: run the batch again to resume it)"
                    self.settle(job, "unfinished", reason, request_id)
                    return
                await asyncio.sleep(min(_MAX_PAUSE, 2.0**attempt))
        try:
            files = [str(path) for path in await self.kontext.save(result, self.out / job.id)]
        except (OSError, KontextError) as err:  # the job is paid and done: a run again fetches the images
            reason = f"images not written: {err} (run the batch again to fetch them)"
            self.settle(job, "unfinished", reason, request_id)
            return
        await self.record(job, SAVED, request_id=request_id, files=files)
        self.summary.done += 1
        self.emit("saved", id=job.id, line=job.line, request_id=request_id, files=files)

    async def run_job(self, job: BatchJob, row: JournalRow | None) -> None:
        if row is not None and not _submits(row.state, self.options):
            await self.follow_earlier(job, row)
            return
        # Killed between "about to submit" and the answer: it may be queued, so the request list is asked first.
        stopped = row if row is not None and row.state == SUBMITTING and not self.options.resubmit_ambiguous else None
        sent_at = stopped.updated_at if stopped is not None else None
        if not self.reserve(job):
            self.summary.over_budget.append(job.id)
            self.emit("over_budget", id=job.id, line=job.line)
            return
        request_id = await self.submit(job, sent_at)
        if request_id is None:
            if job.id in self.summary.unfinished:  # not sent: nothing spent (a 422 may be billed)
                self.spent -= job_cost(job) or 0.0
            return
        await self.finish(job, request_id)

    async def follow_earlier(self, job: BatchJob, row: JournalRow) -> None:
        """A line an earlier run left that this one does not submit: saved, failed or ambiguous (counted), or
        queued (waited for and saved)."""
        if row.state == SAVED:
            self.summary.done += 1
        elif row.state == FAILED:
            self.settle(job, "failed", row.reason or "failed", row.request_id)
        elif row.state == AMBIGUOUS:
            # The answer was lost and the client could not tell then whether it was queued: it may be, and paid.
            await self.leave_ambiguous(job, row.reason or "the submit's answer was lost")
        else:
            assert row.request_id is not None  # SUBMITTED is recorded with the request id it was answered
            await self.finish(job, row.request_id)


async def run_batch(
    kontext: AsyncKontext,
    jobs: Sequence[BatchJob],
    out: str | Path,
    options: BatchOptions = BatchOptions(),
    on_event: OnEvent | None = None,
) -> BatchSummary:
    """Run ``jobs`` with at most ``options.concurrency`` in flight, saving each job's images to ``out/<id>/``.

    The journal ``out/.fal-kontext-batch.sqlite`` makes it resumable: run it again after any stop (even
    ``kill -9``) and it resumes queued jobs by request id, skips saved lines and never submits a line twice.

    Args:
        kontext: The client (its retry policy applies to every call).
        jobs: From ``read_manifest``.
        out: The output folder (holds the journal).
        options: Concurrency, cost guard, what to send again (``BatchOptions``).
        on_event: Called with each event (``submitted``, ``saved``, ``failed``, ``ambiguous``, ...), a dict.

    Returns:
        The summary (done, failed with reasons, ambiguous, unfinished, over budget, cost).

    Raises:
        MissingCredentialsError: the client has no key (nothing was sent, no line recorded).
        ManifestError: a journal row belongs to a line that changed, or ``max_cost`` with unknown prices.
        BlockingIOError: another run uses the same output folder.
    """
    kontext.check_credentials()  # every line would fail the same way: refused once, before the journal
    folder = Path(out)
    estimate = estimate_cost(jobs)
    if options.max_cost is not None and not estimate.known:
        unpriced = ", ".join(estimate.unpriced)
        raise ManifestError(folder, [f"max_cost needs a stated price for every endpoint; none for {unpriced}"])
    journal = Journal(folder / JOURNAL_NAME)
    run = _Run(kontext, journal, folder, options, on_event)
    started = run.clock()
    try:
        rows = journal.rows()
        refuse_changed_lines(jobs, {job_id: row.digest for job_id, row in rows.items()}, folder / JOURNAL_NAME)
        run.summary.total = len(jobs)
        run.spent = sum(
            row.cost_usd or 0.0 for row in rows.values() if row.state in (SUBMITTED, SAVED, FAILED, AMBIGUOUS)
        )
        # Jobs already queued first: they run on the server whether we follow them or not.
        order = sorted(jobs, key=lambda job: (rows.get(job.id) is None or rows[job.id].state != SUBMITTED, job.line))
        waiting = iter(order)

        async def worker() -> None:
            # The workers share one iterator: each job goes to the first worker free, in order.
            for job in waiting:
                await run.run_job(job, rows.get(job.id))

        await asyncio.gather(*(worker() for _ in range(min(options.concurrency, max(1, len(jobs))))))
        summary = run.summary
        summary.cost_usd = run.spent if estimate.known else None
        summary.elapsed = run.clock() - started
        return summary
    finally:
        run.writer.shutdown(wait=True)  # a write under way when the run stopped still completes
        journal.close()


def batch(
    manifest: str | Path | Sequence[BatchJob],
    out: str | Path,
    options: BatchOptions = BatchOptions(),
    on_event: OnEvent | None = None,
    client: Mapping[str, Any] | None = None,
) -> BatchSummary:
    """``run_batch`` for code without an event loop: reads ``manifest`` (a path) and runs it on a new ``AsyncKontext``.

    Example::

        summary = batch("jobs.jsonl", "out/", BatchOptions(max_cost=10.0))   # FAL_KEY from the environment
        print(summary.done, summary.failed)

    Args:
        manifest: A JSON lines manifest's path, or jobs from ``read_manifest``.
        out: The output folder (holds the journal).
        options: As ``run_batch``. on_event: As ``run_batch``.
        client: Keyword arguments of the ``AsyncKontext`` (``key``, ``base_url``, ``auth``, ...).

    Raises:
        ManifestError: the manifest cannot be run as written (nothing sent). Everything ``run_batch`` raises.
    """
    jobs = read_manifest(manifest) if isinstance(manifest, (str, Path)) else list(manifest)

    async def go() -> BatchSummary:
        async with AsyncKontext(**(client or {})) as kontext:
            return await run_batch(kontext, jobs, out, options, on_event)

    return asyncio.run(go())
