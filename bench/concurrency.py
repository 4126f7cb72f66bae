"""Scenario 2: 1,000 jobs in flight at once from one process: fal_kontext's AsyncKontext vs fal_client's AsyncClient."""

from __future__ import annotations

from typing import Any

from .clients import calls_per_job, run_workload, submits
from .model import Plot, ScenarioResult, Target, median, percentile
from .server import emulator

# A client still busy after this long is stopped; its unfinished jobs are reported and its CPU per job (CPU so far
# over all jobs) is then a lower bound.
DEADLINE = 300.0
DEADLINE_SMOKE = 60.0
RUN_TIME = 1.0
JITTER = 1.0
# Issue 9's target: AsyncKontext's CPU per job at most this many times the bare reader's.
CPU_VS_BARE = 1.2
METHOD = (
    "{jobs} jobs started at once (`asyncio.gather`) from one process pinned to CPU 1: `AsyncKontext.submit` + "
    "`wait` (status stream, 64 small connection pools, its defaults) vs `fal_client.AsyncClient().subscribe` "
    "(its defaults: one httpx pool, 0.1 s polling) vs the peer, a bare httpx reader (bench/bare_reader.py: submit, "
    "status stream read to its end, result GET; 64 small `httpx.AsyncClient` pools sharing one TLS context, a job "
    "staying on one pool; no retries or validation). The emulator (HTTPS, pinned to CPU 0) has a runner for every "
    "job, so all are in flight at once; each runs {run_time:g} s plus 0-{jitter:g} s. Wall time is from the "
    "first submit to the last result; CPU per job is the client process's user+system time over the workload "
    "(getrusage) divided by jobs; peak memory is the client process's max RSS (imports included); requests per "
    "job are counted at the server. Overhead = result held minus server completion (CLOCK_MONOTONIC). A client "
    "still running after {deadline:g} s is stopped there."
)


def _measure(server: Any, client: str, prompts: list[str], deadline: float) -> dict[str, Any]:
    server.admin("DELETE", "/counters")
    server_cpu = server.cpu_seconds()
    report = run_workload(server, client, prompts, deadline_s=deadline)
    server_cpu = server.cpu_seconds() - server_cpu
    counters = server.admin("GET", "/counters")
    listed = server.admin("GET", "/requests")
    overheads = []
    for job in report["jobs"]:
        held = listed["requests"].get(job["request_id"] or "")
        if job["held_at"] is not None and held and held["completed_at"] is not None:
            overheads.append(job["held_at"] - (held["completed_at"] + listed["clock_offset"]))
    jobs = len(prompts)
    per_job = calls_per_job(listed, [job["request_id"] for job in report["jobs"] if job["request_id"]])
    return {
        "wall_s": report["wall_s"],
        "cpu_ms_per_job": report["cpu_s"] * 1000 / jobs,
        "max_rss_mib": report["max_rss_kib"] / 1024,
        "requests_per_job": submits(counters) / jobs + sum(per_job.values()),
        "overhead_p50_s": median(overheads),
        "overhead_p95_s": percentile(overheads, 0.95),
        "completed": sum(1 for job in report["jobs"] if job["held_at"] is not None),
        "unfinished": sum(1 for job in report["jobs"] if job["error"] == "unfinished at the deadline"),
        "server_cpu_s": server_cpu,
        "errors": [job["error"] for job in report["jobs"] if job["error"]],
    }


def run(*, smoke: bool) -> ScenarioResult:
    """1,000 concurrent jobs, ours vs fal_client."""
    jobs = 20 if smoke else 1000
    # Smoke: short jobs, only to prove the harness runs.
    run_time, jitter = (0.2, 0.2) if smoke else (RUN_TIME, JITTER)
    options = ["--runners", str(jobs), "--queue-wait", "0", "--run-time", f"{run_time}"]
    # Every job holds a connection, and the clients keep them for the next call: the emulator's default cap on idle
    # connections (512, a guard for a long-running mock) would close some and make clients reconnect.
    options += ["--run-time-jitter", f"{jitter}", "--max-idle-connections", str(2 * jobs)]
    labels = {
        "ours-async": "fal_kontext AsyncKontext",
        "fal-async": "fal_client AsyncClient",
        "bare-async": "bare httpx reader (the peer)",
    }
    measured: dict[str, dict[str, Any]] = {}
    with emulator(options) as server:
        for client in labels:
            prompts = [f"concurrency, {client}, job {i}" for i in range(jobs)]
            measured[client] = _measure(server, client, prompts, DEADLINE_SMOKE if smoke else DEADLINE)
    ours, fal, bare = measured["ours-async"], measured["fal-async"], measured["bare-async"]
    rows = [
        [
            labels[name],
            m["completed"],
            m["wall_s"],
            m["overhead_p50_s"],
            m["overhead_p95_s"],
            m["cpu_ms_per_job"],
            m["max_rss_mib"],
            m["requests_per_job"],
            len(m["errors"]) - m["unfinished"],
            m["unfinished"],
            m["server_cpu_s"],
        ]
        for name, m in measured.items()
    ]
    ratio = ours["cpu_ms_per_job"] / fal["cpu_ms_per_job"]
    vs_bare = ours["cpu_ms_per_job"] / bare["cpu_ms_per_job"]
    return ScenarioResult(
        key="concurrency",
        title="2. Concurrency: 1,000 jobs in flight from one process",
        method=METHOD.format(
            jobs=jobs, run_time=run_time, jitter=jitter, deadline=DEADLINE_SMOKE if smoke else DEADLINE
        ),
        columns=[
            "client",
            "jobs done",
            "wall s",
            "overhead p50 s",
            "overhead p95 s",
            "CPU ms/job",
            "peak RSS MiB",
            "HTTP requests/job",
            "errors",
            "unfinished at deadline",
            "emulator CPU s",
        ],
        rows=rows,
        targets=[
            Target(
                "Concurrency: CPU per job vs fal_client",
                "<= 0.5x fal_client's",
                f"{ratio:.2f}x ({ours['cpu_ms_per_job']:.1f} vs {fal['cpu_ms_per_job']:.1f} ms/job)",
                ratio <= 0.5,
                "",
            ),
            Target(
                f"Concurrency: CPU per job vs the bare httpx reader, {jobs} jobs in flight (issue 9)",
                f"<= {CPU_VS_BARE:g}x",
                f"{vs_bare:.2f}x ({ours['cpu_ms_per_job']:.1f} vs {bare['cpu_ms_per_job']:.1f} ms/job; peak RSS "
                f"{ours['max_rss_mib'] / bare['max_rss_mib']:.2f}x)",
                vs_bare <= CPU_VS_BARE and not ours["errors"] and not bare["errors"],
                ""
                if vs_bare <= CPU_VS_BARE and not ours["errors"] and not bare["errors"]
                else f"Not comparable: jobs failed (ours {len(ours['errors'])}, the reader {len(bare['errors'])}), "
                f"e.g. {(ours['errors'] or bare['errors'])[0]}."
                if ours["errors"] or bare["errors"]
                else f"AsyncKontext spends {ours['cpu_ms_per_job'] - bare['cpu_ms_per_job']:.1f} ms/job more CPU than "
                f"the bare reader with the same pools and {ours['requests_per_job']:.2f} vs "
                f"{bare['requests_per_job']:.2f} requests per job: the difference is the client's own work per "
                "call (models, validation, flow driving).",
            ),
        ],
        plots=[
            Plot(
                "bench-concurrency-cpu.png",
                f"{jobs} concurrent jobs: client CPU per job (ms)",
                "milliseconds",
                {labels[name]: m["cpu_ms_per_job"] for name, m in measured.items()},
            ),
            Plot(
                "bench-concurrency-wall.png",
                f"{jobs} concurrent jobs: wall time (s)",
                "seconds",
                {labels[name]: m["wall_s"] for name, m in measured.items()},
            ),
        ],
        notes=[
            "Overhead here is mostly queueing inside the client: with 1,000 jobs a client process is CPU-bound on its "
            "one core (compare CPU ms/job x jobs with the wall time), so results wait for the client to get to them.",
            "Errors by type: "
            + "; ".join(f"{labels[n]}: {sorted(set(m['errors'])) or 'none'}" for n, m in measured.items()),
        ],
        data=measured,
    )
