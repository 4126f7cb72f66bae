"""Batch edits: many jobs from a JSON lines manifest, with bounded concurrency, a crash-safe journal and a cost guard.

A manifest has one job per line, a JSON object: the input fields of the endpoint (``prompt``, ``aspect_ratio``, ...)
plus, all optional, ``id`` (default ``line-N``), ``endpoint`` (an endpoint id of the spec) or ``model`` (a tier),
and ``image`` / ``images`` (paths, relative to the manifest, or URLs; read and inlined when the job is submitted).

The journal (SQLite, next to the output) records each line's request id the moment its submit is answered, its
state and its saved files, so a run killed at any point and started again resumes every queued job by request id,
never submits a line twice and skips lines already saved. A line whose submit was under way when the run died may
or may not have been queued: the next run looks it up in fal's request list (``AsyncKontext.resubmit``), adopts the
job if it is listed and sends the line only if the list shows it was not queued. Where the list cannot tell (an
aggregator, recovery off) the line is *ambiguous*, as is one whose answer was lost and not recovered during a run:
it is not sent again unless asked (``resubmit_ambiguous``).

This module uses only the public client API (``AsyncKontext``, its handles and errors).
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import functools
import hashlib
import json
import math
import sqlite3
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .aio import AsyncKontext
from .endpoints import Endpoint
from .errors import (
    APIConnectionError,
    APIStatusError,
    FieldProblem,
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
from .files import DEFAULT_MAX_IMAGE_BYTES, image_source_to_url
from .inputs import check_input
from .spec import EndpointSpec, endpoint_specs, resolved_schema

__all__ = [
    "DEFAULT_CONCURRENCY",
    "BatchJob",
    "BatchOptions",
    "BatchSummary",
    "CostEstimate",
    "Journal",
    "ManifestError",
    "batch",
    "check_journal",
    "choose_endpoint_spec",
    "estimate_cost",
    "journal_states",
    "read_manifest",
    "run_batch",
    "tier_order",
]

# Jobs in flight at once (submitted and not yet saved). Ours: fal runs 2 requests at once for a new account and up to
# 40 after credit purchases, and never rejects queued requests for concurrency
# (https://docs.fal.ai/documentation/model-apis/concurrency-limits, https://fal.ai/docs/model-apis/faq). Twice the
# new-account limit keeps its runners busy while a crash leaves few jobs mid-flight; raise it for a larger limit.
DEFAULT_CONCURRENCY = 4
JOURNAL_NAME = ".fal-kontext-batch.sqlite"
_RESERVED = frozenset({"id", "endpoint", "model", "image", "images"})
# How often a submit refused with 429 is tried again (after the client's own retries), and the longest pause.
_RATE_LIMIT_ATTEMPTS = 8
_MAX_PAUSE = 60.0
# How often waiting for a queued job is tried again after a network or server failure (the job stays queued).
_WAIT_ATTEMPTS = 5


def tier_order(specs: Sequence[EndpointSpec] = ()) -> list[str]:
    """Every tier, in the order the spec first names them (then any other tier of ``specs``): the first is the
    default model."""
    return list(dict.fromkeys(c.tier for c in (*endpoint_specs(), *specs) if c.tier is not None))


def choose_endpoint_spec(
    specs: Sequence[EndpointSpec], *, images: int, model: str | None = None, endpoint: str | None = None
) -> EndpointSpec:
    """The endpoint for ``images`` input images: ``endpoint`` if given, else the family's endpoint of tier ``model``
    (default: the first tier, in the spec's order, that has one).

    No image picks text-to-image, one picks edit (or multi-edit if the tier has no single-image one), several pick
    multi-edit.

    Raises:
        InvalidInputError: an unknown endpoint, or no endpoint of that tier takes that many images.
    """
    if endpoint is not None:
        chosen = next((candidate for candidate in specs if candidate.id == endpoint), None)
        if chosen is None:
            allowed = ", ".join(candidate.id for candidate in specs)
            problem = f"{endpoint!r} is not an endpoint of the spec; allowed: {allowed}"
            raise InvalidInputError([FieldProblem("endpoint", endpoint, problem)])
        takes = {"text-to-image": images == 0, "edit": images == 1, "multi-edit": images >= 1}[chosen.family]
        if not takes:
            raise InvalidInputError(
                [FieldProblem("image", images, f"{images} image(s) given; {endpoint} is of family {chosen.family}")]
            )
        return chosen
    families = ["text-to-image"] if images == 0 else ["edit", "multi-edit"] if images == 1 else ["multi-edit"]
    for family in families:
        for tier in [model] if model else tier_order(specs):
            for candidate in specs:
                if candidate.family == family and candidate.tier == tier:
                    return candidate
    offered = ", ".join(f"{c.id} ({c.family})" for c in specs if model is None or c.tier == model)
    problem = f"{images} image(s) given; {f'model {model!r} has' if model else 'the endpoints are'} {offered}"
    raise InvalidInputError([FieldProblem("model" if model else "image", model or images, problem)])


# --- the manifest --------------------------------------------------------------------------------------------------


class ManifestError(KontextError, ValueError):
    """The manifest cannot be run as written (nothing was sent): every problem, by line, and what to do."""

    def __init__(self, path: Path | str, problems: Sequence[str], hint: str | None = None) -> None:
        self.path = str(path)
        self.problems = tuple(problems)
        self.hint = hint
        shown = "; ".join(self.problems[:20]) + ("; ..." if len(self.problems) > 20 else "")
        advice = f". {hint[:1].upper()}{hint[1:]}" if hint else ""
        super().__init__(f"{path}: {len(self.problems)} problem(s), nothing was sent: {shown}{advice}")


@dataclass(frozen=True)
class BatchJob:
    """One line of a manifest.

    Attributes:
        id: The line's id (its ``id`` field, else ``line-N``): names its output folder and its journal row.
        line: The line number (1-based).
        endpoint: The endpoint it goes to.
        fields: The input fields, with images as given (paths are read when the job is submitted).
        digest: A fingerprint of the line, so a journal is never applied to a line that changed.
        num_images: Images it asks for (its ``num_images``, else the spec's default).
    """

    id: str
    line: int
    endpoint: EndpointSpec
    fields: Mapping[str, Any]
    digest: str
    num_images: int

    def input(self, max_image_bytes: int = DEFAULT_MAX_IMAGE_BYTES) -> dict[str, Any]:
        """The input to submit: local images read and inlined as data URIs.

        Raises:
            InvalidInputError: an image is missing, not an image or too large.
        """
        body = dict(self.fields)
        name = self.endpoint.image_field
        if name is not None:
            value = body[name]
            if isinstance(value, list):
                body[name] = [
                    image_source_to_url(item, field=f"{name}[{index}]", max_bytes=max_image_bytes)
                    for index, item in enumerate(value)
                ]
            else:
                body[name] = image_source_to_url(value, field=name, max_bytes=max_image_bytes)
        return body


def _is_url(value: object) -> bool:
    return isinstance(value, str) and value.lower().startswith(("http://", "https://", "data:"))


def _images_of(data: Mapping[str, Any], fields: dict[str, Any], specs: Sequence[EndpointSpec]) -> list[Any]:
    """The line's images: ``image``, ``images``, or an endpoint's own image field (taken out of ``fields``)."""
    if "image" in data:
        return [data["image"]]
    own_fields = [name for name in dict.fromkeys(c.image_field for c in specs if c.image_field) if name in fields]
    value = data["images"] if "images" in data else fields.pop(own_fields[0]) if own_fields else None
    if value is None:
        return []
    return list(value) if isinstance(value, list) else [value]


def _local_images(images: Sequence[Any], base: Path, where: str) -> tuple[list[Any], list[str]]:
    """URLs as they are, paths made absolute (relative to the manifest); a problem for each missing file."""
    resolved: list[Any] = []
    problems: list[str] = []
    for item in images:
        if _is_url(item):
            resolved.append(item)
            continue
        path = (base / str(item)).expanduser() if isinstance(item, str) else None
        if path is None or not path.is_file():
            problems.append(f"{where}: image {item!r} is not a URL or an existing file")
        resolved.append(str(path))
    return resolved, problems


def _job_from_line(
    number: int, data: Any, base: Path, specs: Sequence[EndpointSpec]
) -> tuple[BatchJob | None, list[str]]:
    if not isinstance(data, dict):
        return None, [f"line {number}: not a JSON object"]
    job_id = data.get("id", f"line-{number}")
    if not isinstance(job_id, str) or not job_id.strip() or "/" in job_id or job_id in (".", ".."):
        return None, [f"line {number}: id {job_id!r} must be a non-empty string without '/'"]
    where = f"line {number} ({job_id})"
    fields = {key: value for key, value in data.items() if key not in _RESERVED}
    images = _images_of(data, fields, specs)
    try:
        chosen = choose_endpoint_spec(specs, images=len(images), model=data.get("model"), endpoint=data.get("endpoint"))
    except InvalidInputError as err:
        return None, [f"{where}: {'; '.join(str(problem) for problem in err.problems)}"]
    resolved, problems = _local_images(images, base, where)
    # Checked against the spec now, with a placeholder for local files (they are read at submit).
    checked = dict(fields)
    placeholders = [item if _is_url(item) else "data:image/png;base64,AA==" for item in resolved]
    if chosen.image_field is not None:
        multi = chosen.family == "multi-edit"
        fields[chosen.image_field] = resolved if multi else resolved[0]
        checked[chosen.image_field] = placeholders if multi else placeholders[0]
    try:
        check_input(Endpoint(chosen.id), checked)
    except InvalidInputError as err:
        problems += [f"{where}: {problem}" for problem in err.problems]
    schema = resolved_schema(chosen.input_schema).get("properties", {})
    count = fields.get("num_images", schema.get("num_images", {}).get("default", 1))
    digest = hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:16]
    job = BatchJob(job_id, number, chosen, fields, digest, count if isinstance(count, int) else 1)
    return job, problems


def read_manifest(path: str | Path, specs: Sequence[EndpointSpec] | None = None) -> list[BatchJob]:
    """Read and check a JSON lines manifest; relative image paths are relative to its folder.

    Raises:
        ManifestError: with every problem (bad JSON, unknown endpoint, fields the spec does not allow, missing
            images, duplicate ids), before anything is sent.
    """
    source = Path(path)
    chosen_specs = tuple(specs) if specs is not None else endpoint_specs()
    jobs: list[BatchJob] = []
    problems: list[str] = []
    seen: dict[str, int] = {}
    with source.open(encoding="utf-8") as lines:
        for number, text in enumerate(lines, start=1):
            if not text.strip():
                continue
            try:
                data = json.loads(text)
            except json.JSONDecodeError as err:
                problems.append(f"line {number}: not JSON ({err.msg} at column {err.colno})")
                continue
            job, found = _job_from_line(number, data, source.parent, chosen_specs)
            problems += found
            if job is None:
                continue
            if job.id in seen:
                problems.append(f"line {number}: id {job.id!r} is also the id of line {seen[job.id]}")
            seen[job.id] = number
            jobs.append(job)
    if problems:
        raise ManifestError(source, problems)
    return jobs


# --- cost ----------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CostEstimate:
    """What a set of jobs would cost, from the per-image prices the spec states (interfaces §1).

    Attributes:
        usd: The total of the jobs whose price is known.
        images: Images asked for.
        unpriced: Endpoints without a stated price (their jobs are not in ``usd``).
    """

    usd: float
    images: int
    unpriced: tuple[str, ...]

    @property
    def known(self) -> bool:
        """Whether every job's price is stated."""
        return not self.unpriced

    def __str__(self) -> str:
        if not self.images:
            return "$0.00 (nothing to submit)"
        if not self.unpriced:
            return f"${self.usd:.2f} for {self.images} image(s)"
        known = f"${self.usd:.2f} for the priced jobs, " if self.usd else ""
        return f"{known}unknown for {', '.join(self.unpriced)} (no price stated in the spec)"


def job_cost(job: BatchJob) -> float | None:
    """A job's price in USD (``price_usd_per_image`` x ``num_images``), or None when the spec states no price."""
    price = job.endpoint.price_usd_per_image
    return None if price is None else price * job.num_images


def estimate_cost(jobs: Sequence[BatchJob]) -> CostEstimate:
    """The estimated cost of submitting ``jobs``."""
    usd, images, unpriced = 0.0, 0, dict[str, None]()
    for job in jobs:
        images += job.num_images
        cost = job_cost(job)
        if cost is None:
            unpriced[job.endpoint.id] = None
        else:
            usd += cost
    return CostEstimate(round(usd, 6), images, tuple(unpriced))


# --- the journal ---------------------------------------------------------------------------------------------------

PENDING = "pending"  # not submitted (yet, or refused with 429, or the connection never opened)
SUBMITTING = "submitting"  # the submit is about to be sent: after a crash, the line is ambiguous
SUBMITTED = "submitted"  # the server answered with a request id
SAVED = "saved"  # the images are written
FAILED = "failed"  # the request failed (a final answer: not resumable)
AMBIGUOUS = "ambiguous"  # may or may not be queued: never sent again unless asked


@dataclass(frozen=True)
class JournalRow:
    """What the journal knows of one line."""

    id: str
    digest: str
    state: str
    request_id: str | None
    files: tuple[str, ...]
    reason: str | None
    cost_usd: float | None
    updated_at: float  # Unix time of the last change (for SUBMITTING: just before the submit was sent)


class Journal:
    """The batch's SQLite journal: one row per line, each change committed (and synced) before the run goes on.

    A run holds an exclusive lock on it, so two runs never share one output folder.

    Args:
        path: The journal file (created with its folder).

    Raises:
        BlockingIOError: another run holds the journal.
    """

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._lock = (path.parent / (path.name + ".lock")).open("a")
        try:
            fcntl.flock(self._lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self._lock.close()
            raise
        # Used by one thread at a time: the run's journal thread (see _Run.record).
        self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        # WAL + FULL: a commit is on disk before the call returns, so a SIGKILL (or power loss) keeps it.
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS jobs (id TEXT PRIMARY KEY, line INTEGER, digest TEXT NOT NULL, "
            "state TEXT NOT NULL, endpoint TEXT, request_id TEXT, files TEXT NOT NULL DEFAULT '[]', reason TEXT, "
            "cost_usd REAL, updated_at REAL NOT NULL)"
        )

    def rows(self) -> dict[str, JournalRow]:
        """Every line the journal knows, by id."""
        found = self._db.execute("SELECT id, digest, state, request_id, files, reason, cost_usd, updated_at FROM jobs")
        return {
            row[0]: JournalRow(row[0], row[1], row[2], row[3], tuple(json.loads(row[4])), row[5], row[6], row[7])
            for row in found
        }

    def record(self, job: BatchJob, state: str, **values: Any) -> None:
        """Set a line's state (and ``request_id``, ``files``, ``reason``, ``cost_usd``), committed at once."""
        columns = {"state": state, "updated_at": time.time(), **values}
        if "files" in columns:
            columns["files"] = json.dumps(columns["files"])
        names = ", ".join(columns)
        updates = ", ".join(f"{name} = excluded.{name}" for name in columns)
        self._db.execute(
            f"INSERT INTO jobs (id, line, digest, endpoint, {names}) VALUES (?, ?, ?, ?{', ?' * len(columns)}) "
            f"ON CONFLICT(id) DO UPDATE SET {updates}",
            (job.id, job.line, job.digest, job.endpoint.id, *columns.values()),
        )

    def close(self) -> None:
        """Close the database and release the lock."""
        self._db.close()
        self._lock.close()


# --- the run -------------------------------------------------------------------------------------------------------


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

    @property
    def in_flight(self) -> int:
        """Lines neither done nor settled otherwise yet."""
        settled = self.done + len(self.failed) + len(self.ambiguous) + len(self.unfinished) + len(self.over_budget)
        return self.total - settled

    def to_dict(self) -> dict[str, Any]:
        """The summary as JSON-ready data."""
        return {
            "total": self.total,
            "done": self.done,
            "failed": self.failed,
            "ambiguous": self.ambiguous,
            "unfinished": self.unfinished,
            "over_budget": self.over_budget,
            "cost_usd": None if self.cost_usd is None else round(self.cost_usd, 6),
            "submitted": self.submitted,
            "elapsed": round(self.elapsed, 3),
        }


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


@dataclass(frozen=True)
class _Settings:
    """What a run was asked for (see ``run_batch``)."""

    out: Path
    options: BatchOptions
    on_event: OnEvent | None


class _Run:
    """One run over the jobs: the shared state of the workers.

    Args:
        kontext: The client.
        journal: The journal, written only through ``writer`` (one thread).
        writer: The journal's thread.
        settings: What the run was asked for.
    """

    def __init__(
        self, kontext: AsyncKontext, journal: Journal, writer: ThreadPoolExecutor, settings: _Settings
    ) -> None:
        self.kontext = kontext
        self.journal = journal
        self.writer = writer
        self.out = settings.out
        self.max_cost = settings.options.max_cost
        self.resubmit_ambiguous = settings.options.resubmit_ambiguous
        self.retry_failed = settings.options.retry_failed
        self.max_image_bytes = settings.options.max_image_bytes
        self.on_event = settings.on_event
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
        if self.max_cost is not None and self.spent + cost > self.max_cost + 1e-9:
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

    async def submit(self, job: BatchJob, sent_at: float | None = None) -> str | None:
        """Submit the job, recording "about to submit" first and the request id the moment it is answered. With
        ``sent_at`` (an earlier run stopped while submitting it, then), fal's request list is asked first
        (``AsyncKontext.resubmit``): the job is adopted if it was queued, and sent only if the list shows it was not.

        Returns the request id, or None when the line was settled otherwise (failed, ambiguous, not sent).
        """
        try:
            body = job.input(self.max_image_bytes)
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
                await self.record(job, AMBIGUOUS, reason=reason)
                self.settle(
                    job,
                    "ambiguous",
                    f"{reason}; it may have been queued: not sent again (resubmit_ambiguous=True sends it)",
                )
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
        if row is not None and row.state == SAVED:
            self.summary.done += 1
            return
        if row is not None and row.state == FAILED and not self.retry_failed:
            self.summary.failed[job.id] = row.reason or "failed"
            return
        if row is not None and row.state == AMBIGUOUS and not self.resubmit_ambiguous:
            # The answer was lost and the client could not tell then whether it was queued: it may be, and paid.
            reason = row.reason or "the submit's answer was lost"
            await self.record(job, AMBIGUOUS, reason=reason)
            self.settle(
                job,
                "ambiguous",
                f"{reason}; it may have been queued: not sent again (resubmit_ambiguous=True sends it)",
            )
            return
        # Killed between "about to submit" and the answer: it may be queued, so the request list is asked first.
        stopped = row if row is not None and row.state == SUBMITTING and not self.resubmit_ambiguous else None
        sent_at = stopped.updated_at if stopped is not None else None
        request_id = row.request_id if row is not None and row.state == SUBMITTED else None
        if request_id is None:
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
    if options.max_cost is not None and not estimate_cost(jobs).known:
        unpriced = ", ".join(estimate_cost(jobs).unpriced)
        raise ManifestError(folder, [f"max_cost needs a stated price for every endpoint; none for {unpriced}"])
    clock = time.monotonic
    started = clock()
    journal = Journal(folder / JOURNAL_NAME)
    # One thread for every journal write, so they are ordered and never block the event loop.
    writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="fal-kontext-journal")
    try:
        rows = journal.rows()
        _refuse_changed_lines(jobs, {job_id: row.digest for job_id, row in rows.items()}, folder / JOURNAL_NAME)
        settings = _Settings(folder, options, on_event)
        run = _Run(kontext, journal, writer, settings)
        run.summary.total = len(jobs)
        run.spent = sum(
            row.cost_usd or 0.0 for row in rows.values() if row.state in (SUBMITTED, SAVED, FAILED, AMBIGUOUS)
        )
        # Jobs already queued first: they run on the server whether we follow them or not.
        order = sorted(jobs, key=lambda job: (rows.get(job.id) is None or rows[job.id].state != SUBMITTED, job.line))
        pending: asyncio.Queue[BatchJob] = asyncio.Queue()
        for job in order:
            pending.put_nowait(job)

        async def worker() -> None:
            while True:
                try:
                    job = pending.get_nowait()
                except asyncio.QueueEmpty:
                    return
                await run.run_job(job, rows.get(job.id))

        await asyncio.gather(*(worker() for _ in range(min(options.concurrency, max(1, len(jobs))))))
        summary = run.summary
        summary.cost_usd = run.spent if estimate_cost(jobs).known else None
        summary.elapsed = clock() - started
        return summary
    finally:
        writer.shutdown(wait=True)  # a write under way when the run stopped still completes
        journal.close()


def _refuse_changed_lines(jobs: Sequence[BatchJob], digests: Mapping[str, str], journal: Path) -> None:
    changed = [
        f"line {job.line}: id {job.id!r} changed since the journal was written"
        for job in jobs
        if job.id in digests and digests[job.id] != job.digest
    ]
    if changed:
        raise ManifestError(journal, changed, hint="use a new output folder, or restore those lines")


def check_journal(jobs: Sequence[BatchJob], out: str | Path) -> None:
    """Refuse, before anything is planned or sent, a manifest whose lines changed since the journal in ``out`` was
    written (``run_batch`` checks again under its lock); read without taking the lock.

    Raises:
        ManifestError: every changed line.
    """
    path = Path(out) / JOURNAL_NAME
    if not path.exists():
        return
    with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as db:
        digests = {str(row[0]): str(row[1]) for row in db.execute("SELECT id, digest FROM jobs")}
    _refuse_changed_lines(jobs, digests, path)


def journal_states(out: str | Path) -> dict[str, str]:
    """The state of each line in the journal of ``out`` (empty when there is none), read without taking the lock."""
    path = Path(out) / JOURNAL_NAME
    if not path.exists():
        return {}
    with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as db:
        return {str(row[0]): str(row[1]) for row in db.execute("SELECT id, state FROM jobs")}


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
