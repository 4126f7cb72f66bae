"""Scenario 2: 1,000 jobs in flight at once from one process: fal_kontext's AsyncKontext with its defaults vs the
cheapest bare httpx reader we can write and fal_client's AsyncClient.

The floor is the cheapest correct client, not one shaped like ours: a quick calibration runs the bare reader
(bench/bare_reader.py) with several poolings and keeps the one with the least CPU per job; ours, with no pool count
chosen, is then judged against that reader over three runs, the two taking turns, on the medians.
"""

from __future__ import annotations

from typing import Any

from .clients import calls_per_job, overheads_s, run_workload, submits
from .machine import source_revision
from .model import Plot, ScenarioResult, Target, median, percentile
from .server import EmulatorProcess, emulator

# A client still busy after this long is stopped; its unfinished jobs are reported and its CPU per job (CPU so far
# over all jobs) is then a lower bound.
DEADLINE = 300.0
DEADLINE_SMOKE = 60.0
# A pooling still busy after this long in the calibration is not the cheapest one: the others take 5-15 s (one pool
# needs ~90 s of CPU for 1,000 jobs: waiting for it to end would add a minute and a half to `make bench`).
CALIBRATION_DEADLINE = 45.0
RUN_TIME = 1.0
JITTER = 1.0
# The target: with its defaults, AsyncKontext's CPU per job, wall time and peak memory at most this many times the
# cheapest bare reader's, on the median of RUNS runs.
VS_BARE = 1.2
RUNS = 3
# The target against fal_client, kept from the first measurement.
CPU_VS_FAL = 0.5
METHOD = (
    "{jobs} jobs started at once (`asyncio.gather`) from one process pinned to CPU 1, on an emulator (HTTPS, "
    "pinned to CPU 0) "
    "with a runner for every job, so all are in flight at once; each runs {run_time:g} s plus 0-{jitter:g} s. "
    "The floor is the cheapest correct client we can write: the bare httpx reader (bench/bare_reader.py: "
    "submit, status stream read to its end, result GET; no retries or validation; its pools are "
    "`httpx.AsyncClient`s sharing one TLS context, a job staying on one pool, assigned round robin). A quick "
    "calibration first runs it once with each of {poolings} and keeps the pooling with the least CPU per job "
    "(among those that completed every job within {calibration_deadline:g} s). Then {runs} runs, each "
    "`AsyncKontext.submit` + `wait` with every option its default (status stream, the pools it chooses; the notes "
    "say what its defaults were) and the cheapest reader, taking turns (ours first in odd runs, the reader first "
    "in even ones), each in a fresh process; ours is judged on the median over the runs of its ratio to the reader "
    "in the same run, and each run is listed. Last, once, `fal_client.AsyncClient().subscribe` with its defaults "
    "(one httpx pool, 0.1 s polling). Wall time is from the first submit to the last result; CPU per job is the "
    "client process's user+system time over the workload (getrusage; client construction included, imports not) "
    "divided by jobs; peak memory is the client process's max RSS (imports included); requests per job are "
    "counted at the server. Overhead = result held minus server completion (CLOCK_MONOTONIC). A client still "
    "running after {deadline:g} s is stopped there."
)
LABELS = {
    "ours-async": "fal_kontext AsyncKontext (its defaults)",
    "fal-async": "fal_client AsyncClient (its defaults)",
    "bare-async": "bare httpx reader",
}


def poolings(jobs: int) -> list[int]:
    """The pool counts the calibration tries for `jobs` jobs: one pool, 16, 64, pools of 5 jobs, a pool per job."""
    return sorted({count for count in (1, 16, 64, max(jobs // 5, 1), jobs) if count <= jobs})


def describe_pooling(pools: int, jobs: int) -> str:
    if pools == 1:
        return "1 pool"
    if pools == jobs:
        return f"{pools} pools (one per job)"
    if jobs % pools == 0:
        return f"{pools} pools ({jobs // pools} jobs each)"
    return f"{pools} pools"


def _measure(
    server: EmulatorProcess, client: str, prompts: list[str], deadline: float, **options: Any
) -> dict[str, Any]:
    server.admin("DELETE", "/counters")
    server_cpu = server.cpu_seconds()
    report = run_workload(server, client, prompts, deadline_s=deadline, **options)
    server_cpu = server.cpu_seconds() - server_cpu
    counters = server.admin("GET", "/counters")
    listed = server.admin("GET", "/requests")
    overheads = overheads_s(listed, report["jobs"])
    jobs = len(prompts)
    per_job = calls_per_job(listed, [job["request_id"] for job in report["jobs"] if job["request_id"]])
    return {
        "wall_s": report["wall_s"],
        "cpu_ms_per_job": report["cpu_s"] * 1000 / jobs,
        "max_rss_mib": report["max_rss_kib"] / 1024,
        "start_rss_mib": report["start_rss_kib"] / 1024,
        "requests_per_job": submits(counters) / jobs + sum(per_job.values()),
        "overhead_p50_s": median(overheads),
        "overhead_p95_s": percentile(overheads, 0.95),
        "completed": sum(1 for job in report["jobs"] if job["held_at"] is not None),
        "unfinished": sum(1 for job in report["jobs"] if job["error"] == "unfinished at the deadline"),
        "server_cpu_s": server_cpu,
        "errors": [job["error"] for job in report["jobs"] if job["error"]],
        "defaults": report.get("defaults"),
        **options,
    }


def _row(label: str, run: str, m: dict[str, Any]) -> list[Any]:
    return [
        label,
        run,
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


def _medians(measured: list[dict[str, Any]]) -> dict[str, Any]:
    """The median of each figure over the runs; jobs done is the least, errors and unfinished jobs add up."""
    numbers = ["wall_s", "cpu_ms_per_job", "max_rss_mib", "start_rss_mib", "requests_per_job", "server_cpu_s"]
    numbers += ["overhead_p50_s", "overhead_p95_s"]
    return {
        **{key: median([m[key] for m in measured]) for key in numbers},
        "completed": min(m["completed"] for m in measured),
        "unfinished": sum(m["unfinished"] for m in measured),
        "errors": [error for m in measured for error in m["errors"]],
    }


def _vs_bare_targets(
    runs: list[dict[str, dict[str, Any]]], calibration: dict[int, dict[str, Any]], cheapest: int, jobs: int
) -> list[Target]:
    ours = _medians([run["ours-async"] for run in runs])
    bare = _medians([run["bare-async"] for run in runs])
    failed = "; ".join(
        f"{LABELS[name]}: {len(m['errors'])} jobs failed over the runs, e.g. {m['errors'][0]}"
        for name, m in (("ours-async", ours), ("bare-async", bare))
        if m["errors"]
    )
    pooling = describe_pooling(cheapest, jobs)
    tried = ", ".join(f"{pools}" for pools in calibration)
    cpu_range = [m["cpu_ms_per_job"] for m in calibration.values() if not m["errors"]]
    targets = []
    for figure, what, unit in (
        ("cpu_ms_per_job", "CPU per job", "ms/job"),
        ("wall_s", "wall time", "s"),
        ("max_rss_mib", "peak memory", "MiB"),
    ):
        ratios = [run["ours-async"][figure] / run["bare-async"][figure] for run in runs]
        ratio = median(ratios)
        met = ratio <= VS_BARE and not failed
        if failed:
            why = f"Not comparable: {failed}."
        elif met:
            why = ""
        elif figure == "cpu_ms_per_job":
            why = (
                f"AsyncKontext with its defaults spends {ours[figure] - bare[figure]:.1f} ms/job more CPU than the "
                f"reader with {pooling} (medians). The same reader spent {min(cpu_range):.1f}-{max(cpu_range):.1f} "
                "ms/job over the poolings of the calibration: how requests are spread over pools moves it that much "
                "by itself; the rest is the client's own work per call (models, validation, flow driving)."
            )
        elif figure == "wall_s":
            busy = [m["cpu_ms_per_job"] * jobs / 1000 / m["wall_s"] for m in (ours, bare)]
            why = (
                f"With {jobs} jobs the client is CPU-bound on its one core (ours used {busy[0]:.0%} of it over its "
                "wall time, median): its wall time follows its CPU per job."
                if busy[0] >= 0.8
                else f"Ours used {busy[0]:.0%} of its core over its wall time, the reader {busy[1]:.0%} (medians): "
                "wall time here is not CPU alone but waiting too (the jobs' own run time, the server, a core shared "
                "with other work on the machine), and the per-run ratios move with it."
            )
        else:
            why = (
                f"Peak RSS counts the imports: before its jobs ours held {ours['start_rss_mib']:.0f} MiB, the reader "
                f"{bare['start_rss_mib']:.0f} MiB; over the jobs ours grew by "
                f"{ours['max_rss_mib'] - ours['start_rss_mib']:.0f} MiB, the reader by "
                f"{bare['max_rss_mib'] - bare['start_rss_mib']:.0f} MiB (medians)."
            )
        targets.append(
            Target(
                f"Concurrency, {jobs} jobs with defaults: {what} vs the cheapest bare httpx reader",
                f"<= {VS_BARE:g}x (median of {len(runs)} runs)",
                f"{ratio:.2f}x (runs: {', '.join(f'{r:.2f}' for r in ratios)}; medians {ours[figure]:.1f} vs "
                f"{bare[figure]:.1f} {unit}; the reader with {pooling}, the cheapest of {tried} pools)",
                met,
                why,
            )
        )
    return targets


def run(*, smoke: bool) -> ScenarioResult:
    """1,000 concurrent jobs: the bare reader's calibration, ours vs the cheapest reader in turns, fal_client."""
    jobs = 20 if smoke else 1000
    deadline = DEADLINE_SMOKE if smoke else DEADLINE
    calibration_deadline = DEADLINE_SMOKE if smoke else CALIBRATION_DEADLINE
    # Smoke: short jobs, only to prove the harness runs.
    run_time, jitter = (0.2, 0.2) if smoke else (RUN_TIME, JITTER)
    options = ["--runners", str(jobs), "--queue-wait", "0", "--run-time", f"{run_time}"]
    # Every job holds a connection, and the clients keep them for the next call: the emulator's default cap on idle
    # connections (512, a guard for a long-running mock) would close some and make clients reconnect.
    options += ["--run-time-jitter", f"{jitter}", "--max-idle-connections", str(2 * jobs)]
    calibration: dict[int, dict[str, Any]] = {}
    runs: list[dict[str, dict[str, Any]]] = []
    with emulator(options) as server:
        for pools in poolings(jobs):
            prompts = [f"concurrency, calibration, {pools} pools, job {i}" for i in range(jobs)]
            calibration[pools] = _measure(server, "bare-async", prompts, calibration_deadline, pools=pools)
        complete = [pools for pools, m in calibration.items() if not m["errors"]] or list(calibration)
        cheapest = min(complete, key=lambda pools: calibration[pools]["cpu_ms_per_job"])
        for index in range(RUNS):
            order = ("ours-async", "bare-async") if index % 2 == 0 else ("bare-async", "ours-async")
            turn = {}
            for client in order:
                prompts = [f"concurrency, run {index + 1}, {client}, job {i}" for i in range(jobs)]
                extra = {"pools": cheapest} if client == "bare-async" else {}
                turn[client] = _measure(server, client, prompts, deadline, **extra)
            runs.append(turn)
        prompts = [f"concurrency, fal-async, job {i}" for i in range(jobs)]
        fal = _measure(server, "fal-async", prompts, deadline)

    pooling = describe_pooling(cheapest, jobs)
    bare_label = f"{LABELS['bare-async']}, {pooling} (the cheapest)"
    ours = _medians([turn["ours-async"] for turn in runs])
    bare = _medians([turn["bare-async"] for turn in runs])
    rows = [
        _row(f"{LABELS['bare-async']}, {describe_pooling(pools, jobs)}", "calibration", m)
        for pools, m in calibration.items()
    ]
    for index, turn in enumerate(runs):
        rows += [
            _row(LABELS["ours-async"], f"run {index + 1}", turn["ours-async"]),
            _row(bare_label, f"run {index + 1}", turn["bare-async"]),
        ]
    rows += [
        _row(LABELS["ours-async"], f"median of {len(runs)}", ours),
        _row(bare_label, f"median of {len(runs)}", bare),
        _row(LABELS["fal-async"], "once", fal),
    ]
    fal_ratio = ours["cpu_ms_per_job"] / fal["cpu_ms_per_job"]
    defaults = runs[0]["ours-async"].get("defaults") or {}
    own = ", ".join(f"{key} {value}" for key, value in defaults.items() if key.startswith("AsyncKontext("))
    every = [m for turn in runs for m in turn.values()] + [*calibration.values(), fal]
    return ScenarioResult(
        key="concurrency",
        title="2. Concurrency: 1,000 jobs in flight from one process",
        method=METHOD.format(
            jobs=jobs,
            run_time=run_time,
            jitter=jitter,
            poolings=", ".join(describe_pooling(pools, jobs) for pools in calibration),
            calibration_deadline=calibration_deadline,
            runs=len(runs),
            deadline=deadline,
        ),
        columns=[
            "client",
            "run",
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
                f"<= {CPU_VS_FAL:g}x fal_client's",
                f"{fal_ratio:.2f}x ({ours['cpu_ms_per_job']:.1f} (median) vs {fal['cpu_ms_per_job']:.1f} ms/job)",
                fal_ratio <= CPU_VS_FAL,
                "",
            ),
            *_vs_bare_targets(runs, calibration, cheapest, jobs),
        ],
        plots=[
            Plot(
                "bench-concurrency-cpu.png",
                f"{jobs} concurrent jobs: client CPU per job (ms)",
                "milliseconds",
                {
                    **{f"reader, {describe_pooling(p, jobs)}": m["cpu_ms_per_job"] for p, m in calibration.items()},
                    f"{LABELS['ours-async']}, median": ours["cpu_ms_per_job"],
                    f"reader, {pooling}, median": bare["cpu_ms_per_job"],
                    LABELS["fal-async"]: fal["cpu_ms_per_job"],
                },
            ),
            Plot(
                "bench-concurrency-wall.png",
                f"{jobs} concurrent jobs: wall time (s)",
                "seconds",
                {
                    **{f"reader, {describe_pooling(p, jobs)}": m["wall_s"] for p, m in calibration.items()},
                    f"{LABELS['ours-async']}, median": ours["wall_s"],
                    f"reader, {pooling}, median": bare["wall_s"],
                    LABELS["fal-async"]: fal["wall_s"],
                },
            ),
        ],
        notes=[
            f"The calibration kept {pooling} for the reader: the least CPU per job of "
            + ", ".join(f"{describe_pooling(p, jobs)} {m['cpu_ms_per_job']:.1f}" for p, m in calibration.items())
            + " ms/job (one run each).",
            f"Ours ran with every option its default; in this build (fal_kontext {defaults.get('fal_kontext', '?')}, "
            f"{source_revision()}) those are {own or 'not recorded'} (None: the client's own choice).",
            "Overhead here is mostly queueing inside the client: with 1,000 jobs a client process is CPU-bound on its "
            "one core (compare CPU ms/job x jobs with the wall time), so results wait for the client to get to them.",
            "Errors by type: "
            + "; ".join(
                f"{label}: {sorted(set(m['errors'])) or 'none'}"
                for label, m in (("ours, all runs", ours), ("the reader, all runs", bare), (LABELS["fal-async"], fal))
            )
            + (
                "; calibration: "
                + "; ".join(
                    f"{describe_pooling(p, jobs)}: {sorted(set(m['errors']))}"
                    for p, m in calibration.items()
                    if m["errors"]
                )
                if any(m["errors"] for m in calibration.values())
                else ""
            ),
        ],
        data={
            "calibration": {str(pools): m for pools, m in calibration.items()},
            "cheapest_pools": cheapest,
            "runs": runs,
            "medians": {"ours-async": ours, "bare-async": bare},
            "fal-async": fal,
            "emulator_cpu_s": sum(m["server_cpu_s"] for m in every),
        },
    )
