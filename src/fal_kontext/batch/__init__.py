"""Batch edits: many jobs from a JSON lines manifest, with bounded concurrency, a crash-safe journal and a cost guard.

A manifest has one job per line (``manifest``); the journal (SQLite, next to the output: ``journal``) records each
line's request id the moment its submit is answered, its state and its saved files, so a run killed at any point and
started again resumes every queued job by request id, never submits a line twice and skips lines already saved
(``runner``). ``cost`` estimates what the lines would cost from the spec's prices.

The package uses only the public client API (``from fal_kontext import ...``)::

    summary = batch("jobs.jsonl", "out/", BatchOptions(max_cost=10.0))   # FAL_KEY from the environment
    print(summary.done, summary.failed)
"""

from .cost import CostEstimate, estimate_cost, job_cost
from .journal import JOURNAL_NAME, Journal, check_journal, journal_states
from .manifest import BatchJob, ManifestError, choose_endpoint_spec, read_manifest, tier_order
from .runner import DEFAULT_CONCURRENCY, BatchOptions, BatchSummary, OnEvent, batch, lines_to_submit, run_batch

__all__ = [
    "DEFAULT_CONCURRENCY",
    "JOURNAL_NAME",
    "BatchJob",
    "BatchOptions",
    "BatchSummary",
    "CostEstimate",
    "Journal",
    "ManifestError",
    "OnEvent",
    "batch",
    "check_journal",
    "choose_endpoint_spec",
    "estimate_cost",
    "job_cost",
    "journal_states",
    "lines_to_submit",
    "read_manifest",
    "run_batch",
    "tier_order",
]
