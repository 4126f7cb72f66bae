"""Scenario: waiting by polling. Where the status stream is not available (a proxy that does not pass
`text/event-stream` through, `stream_status=False`), how long after the server completes a job each client holds
its result and how many requests it makes for it: ours polling with its defaults vs `fal_client` (0.1 s polling)
vs ours following the status stream; and 200 jobs polled at once, CPU and requests per job.

The section measures "ours with its defaults" and records what those were (bench/workload.py `ours_defaults`), so
it measures a new default waiting schedule unchanged when the client gets one.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from .clients import calls_per_job, overheads_s, run_workload, submits
from .machine import source_revision
from .model import Plot, ScenarioResult, Target, median, percentile
from .server import EmulatorProcess, emulator


@dataclass(frozen=True)
class JobLength:
    """How long the emulator runs each job: `run_time` plus a random 0..`jitter` s fixed per request id."""

    run_time: float
    jitter: float

    @property
    def label(self) -> str:
        return f"{self.run_time:g} s + 0-{self.jitter:g} s"


# FLUX.1 Kontext's real range, and the short jobs of section 1.
LONG = JobLength(5.0, 3.0)
SHORT = JobLength(0.3, 0.1)
SMOKE_LONG = JobLength(0.2, 0.1)
SMOKE_SHORT = JobLength(0.05, 0.05)
# 20 long jobs take each client about 2.5 minutes; run side by side, the three clients take that together, and
# the section (with the short jobs and the concurrent run) stays under about 5 minutes. p95 of 20 is the slower
# end of the 19th and 20th slowest: a coarse tail, but an honest one.
LONG_JOBS = 20
SHORT_JOBS = 40
CONCURRENT_JOBS = 200
CONCURRENT_DEADLINE = 120.0
# Each sequential client's process runs one job first, unmeasured (bench/workload.py "warm_up").
WARM_UP_JOBS = 1

# The targets for polling, against fal_client's figures in the same run.
P50_VS_FAL = 1.0
P95_VS_FAL = 2.0
REQUESTS_VS_FAL_LONG = 0.3
# "Streaming figures unchanged": section 1's target for the stream, and its three requests (submit, stream, result).
STREAM_P50_MS = 10.0
STREAM_REQUESTS = 3.0

# name -> (bench/workload.py client, its options)
SEQUENTIAL: dict[str, tuple[str, dict[str, Any]]] = {
    "ours-poll": ("ours-sync", {"stream": False}),
    "fal": ("fal-sync", {}),
    "ours-stream": ("ours-sync", {"stream": True}),
}
CONCURRENT: dict[str, tuple[str, dict[str, Any]]] = {
    "ours-poll-async": ("ours-async", {"stream": False}),
    "fal-async": ("fal-async", {}),
}
LABELS = {
    "ours-poll": "fal_kontext Kontext, polling (its defaults)",
    "fal": "fal_client subscribe (its defaults)",
    "ours-stream": "fal_kontext Kontext, status stream (its defaults)",
    "ours-poll-async": "fal_kontext AsyncKontext, polling (its defaults)",
    "fal-async": "fal_client AsyncClient (its defaults)",
}

METHOD = (
    "Where the status stream is not available, the client polls. Sequential jobs, one emulator per job length "
    "(HTTPS, certificate from trustme, pinned to CPU 0, no queue wait) running every job for its run time plus a "
    "random jitter fixed per request id (a fixed run time would end every job at the same point of a fixed "
    "poller's cycle and flatter or punish it by that phase): {long_jobs} jobs of {long} (FLUX.1 Kontext's real "
    "range) and {short_jobs} jobs of {short}. Three clients run their jobs one after another, each in its own "
    "process pinned to CPU 1, on the same server in the same run: fal_kontext `Kontext(stream_status=False)` with "
    "every other option its default (so the waiting schedule is whatever this build's default is; the notes say "
    "which it was), `fal_client.subscribe` with its defaults (a status request every 0.1 s, "
    "`DEFAULT_QUEUE_POLL_INTERVAL` in https://github.com/fal-ai/fal/blob/main/projects/fal_client/src/fal_client/"
    "client.py), and fal_kontext `Kontext()` following the status stream. The three run side by side rather than "
    "one after another: waiting takes little CPU (the CPU column; fal_client's ten polls a second are the most), "
    "and one after another the long jobs alone would take three times as long ({long_jobs} jobs of {long} take "
    "each client about {long_minutes:.1f} minutes); {long_jobs} long jobs keep the section within about 5 minutes "
    "of `make bench`. Each process runs one unmeasured warm-up job first (lazy imports, first-use caches) and "
    "builds its client anew for the measured jobs. Overhead = when the client process held the result "
    "(`time.monotonic()`) minus when the emulator completed the job (its `completed_at`, the same "
    "CLOCK_MONOTONIC, from `GET /_emulator/requests`). HTTP requests per job are counted at the server per "
    "request id (status polls, stream, result), plus one submit per job: side by side, the server cannot tell "
    "whose submit it counted, so its total is checked against the jobs and warm-ups of the three clients (a "
    "difference is reported). Client CPU per job is the process's user+system time (getrusage) over the measured "
    "jobs. Concurrent polling: {concurrent} jobs started at once (`asyncio.gather`) from one process pinned to "
    "CPU 1, `AsyncKontext(stream_status=False)` with its defaults vs `fal_client.AsyncClient().subscribe` with "
    "its defaults, one after another (each needs the core to itself for its CPU figure), on an emulator with a "
    "runner per job, each job {concurrent_length}; CPU per job is the process's user+system time over the "
    "workload (client construction included, imports not) divided by jobs, requests per job are counted at the "
    "server (submits included); a client still busy after {deadline:g} s is stopped there."
)


def _summary(report: dict[str, Any], listed: dict[str, Any], jobs: int, submitted: float) -> dict[str, Any]:
    """One client's figures from its workload report and the server's listing; `submitted` = its submits."""
    overheads = [seconds * 1000 for seconds in overheads_s(listed, report["jobs"])]
    per_job = calls_per_job(listed, [job["request_id"] for job in report["jobs"] if job["request_id"]])
    return {
        "overhead_ms": overheads,
        "p50_ms": median(overheads),
        "p95_ms": percentile(overheads, 0.95),
        "requests_per_job": submitted / jobs + sum(per_job.values()),
        "calls_per_job": per_job,
        "cpu_ms_per_job": report["cpu_s"] * 1000 / jobs,
        "wall_s": report["wall_s"],
        "max_rss_mib": report["max_rss_kib"] / 1024,
        "completed": sum(1 for job in report["jobs"] if job["held_at"] is not None),
        "unfinished": sum(1 for job in report["jobs"] if job["error"] == "unfinished at the deadline"),
        "errors": [job["error"] for job in report["jobs"] if job["error"]],
        "defaults": report.get("defaults"),
    }


def _sequential(server: EmulatorProcess, length: JobLength, jobs: int) -> dict[str, dict[str, Any]]:
    """The three clients of SEQUENTIAL side by side, each running `jobs` jobs one after another."""
    server.admin("DELETE", "/counters")

    def one(name: str) -> dict[str, Any]:
        client, options = SEQUENTIAL[name]
        prompts = [f"polling, {length.label}, {name}, job {i}" for i in range(jobs)]
        return run_workload(server, client, prompts, warm_up=True, **options)

    with ThreadPoolExecutor(max_workers=len(SEQUENTIAL)) as pool:
        reports = dict(zip(SEQUENTIAL, pool.map(one, SEQUENTIAL), strict=True))
    counters = server.admin("GET", "/counters")
    listed = server.admin("GET", "/requests")
    unaccounted = submits(counters) - len(SEQUENTIAL) * (jobs + WARM_UP_JOBS)
    measured = {}
    for name, report in reports.items():
        with_id = sum(1 for job in report["jobs"] if job["request_id"])
        measured[name] = {**_summary(report, listed, jobs, with_id), "submits_unaccounted": unaccounted}
    return measured


def _concurrent(server: EmulatorProcess, jobs: int, deadline: float) -> dict[str, dict[str, Any]]:
    """The clients of CONCURRENT one after another, each with `jobs` jobs at once."""
    measured = {}
    for name, (client, options) in CONCURRENT.items():
        server.admin("DELETE", "/counters")
        server_cpu = server.cpu_seconds()
        prompts = [f"polling, concurrent, {name}, job {i}" for i in range(jobs)]
        report = run_workload(server, client, prompts, deadline_s=deadline, **options)
        server_cpu = server.cpu_seconds() - server_cpu
        counters = server.admin("GET", "/counters")
        listed = server.admin("GET", "/requests")
        measured[name] = {**_summary(report, listed, jobs, submits(counters)), "server_cpu_s": server_cpu}
    return measured


def _failures(measured: dict[str, dict[str, Any]]) -> str:
    """ "" when every job of every client completed, else which failed and how (the first error)."""
    failed = {LABELS[name]: m["errors"] for name, m in measured.items() if m["errors"]}
    return "; ".join(f"{name}: {len(errors)} jobs failed, e.g. {errors[0]}" for name, errors in failed.items())


def _status_calls(m: dict[str, Any]) -> float:
    return float(m["calls_per_job"].get("status", 0.0))


def _long_targets(measured: dict[str, dict[str, Any]], length: JobLength, schedule: str) -> list[Target]:
    ours, fal = measured["ours-poll"], measured["fal"]
    failed = _failures({"ours-poll": ours, "fal": fal})
    p50_ratio, p95_ratio = ours["p50_ms"] / fal["p50_ms"], ours["p95_ms"] / fal["p95_ms"]
    overhead_met = ours["p50_ms"] <= P50_VS_FAL * fal["p50_ms"] and ours["p95_ms"] <= P95_VS_FAL * fal["p95_ms"]
    requests_ratio = ours["requests_per_job"] / fal["requests_per_job"]
    requests_met = requests_ratio <= REQUESTS_VS_FAL_LONG
    sparse = (
        f"Ours polled with {schedule}: {_status_calls(ours):.1f} status requests per job against fal_client's "
        f"{_status_calls(fal):.1f}, so its last poll before the completion is on average much further from it "
        f"(p50 {ours['p50_ms']:.0f} vs {fal['p50_ms']:.0f} ms)."
    )
    return [
        Target(
            f"Polling, {length.label} jobs: overhead vs fal_client",
            f"p50 <= fal_client's, p95 <= {P95_VS_FAL:g}x fal_client's",
            f"p50 {ours['p50_ms']:.0f} vs {fal['p50_ms']:.0f} ms ({p50_ratio:.1f}x); p95 {ours['p95_ms']:.0f} vs "
            f"{fal['p95_ms']:.0f} ms ({p95_ratio:.1f}x)",
            overhead_met and not failed,
            f"Not comparable: {failed}." if failed else "" if overhead_met else sparse,
        ),
        Target(
            f"Polling, {length.label} jobs: HTTP requests per job vs fal_client",
            f"<= {REQUESTS_VS_FAL_LONG:g}x fal_client's",
            f"{ours['requests_per_job']:.1f} vs {fal['requests_per_job']:.1f} ({requests_ratio:.2f}x)",
            requests_met and not failed,
            f"Not comparable: {failed}."
            if failed
            else ""
            if requests_met
            else f"Ours made {_status_calls(ours):.1f} status requests per job against fal_client's "
            f"{_status_calls(fal):.1f}.",
        ),
    ]


def _short_target(measured: dict[str, dict[str, Any]], length: JobLength, schedule: str) -> Target:
    ours, fal = measured["ours-poll"], measured["fal"]
    failed = _failures({"ours-poll": ours, "fal": fal})
    met = ours["p50_ms"] <= P50_VS_FAL * fal["p50_ms"] and ours["requests_per_job"] <= fal["requests_per_job"]
    return Target(
        f"Polling, {length.label} jobs: overhead p50 and HTTP requests per job vs fal_client",
        "p50 <= fal_client's; requests/job <= fal_client's",
        f"p50 {ours['p50_ms']:.0f} vs {fal['p50_ms']:.0f} ms ({ours['p50_ms'] / fal['p50_ms']:.1f}x); "
        f"{ours['requests_per_job']:.1f} vs {fal['requests_per_job']:.1f} requests/job",
        met and not failed,
        f"Not comparable: {failed}."
        if failed
        else ""
        if met
        else f"Ours polled with {schedule}: {_status_calls(ours):.1f} status requests per job against fal_client's "
        f"{_status_calls(fal):.1f}, with its result held {ours['p50_ms']:.0f} ms (p50) after completion against "
        f"{fal['p50_ms']:.0f} ms.",
    )


def _stream_target(rows: dict[str, dict[str, dict[str, Any]]]) -> Target:
    streams = {label: measured["ours-stream"] for label, measured in rows.items()}
    failed = "; ".join(
        f"{label}: {len(m['errors'])} jobs failed, e.g. {m['errors'][0]}" for label, m in streams.items() if m["errors"]
    )
    met = all(m["p50_ms"] <= STREAM_P50_MS and m["requests_per_job"] <= STREAM_REQUESTS for m in streams.values())
    return Target(
        "Polling bench: ours following the status stream, unchanged",
        f"p50 <= {STREAM_P50_MS:g} ms after completion and {STREAM_REQUESTS:g} requests/job, each job length",
        "; ".join(
            f"{label}: p50 {m['p50_ms']:.1f} ms (p95 {m['p95_ms']:.1f}), {m['requests_per_job']:.2f} requests/job"
            for label, m in streams.items()
        ),
        met and not failed,
        f"Not comparable: {failed}."
        if failed
        else ""
        if met
        else "The status stream's figures moved: compare with section 1's stream row and the calls per job.",
    )


def _row(jobs_label: str, name: str, m: dict[str, Any], fal: dict[str, Any]) -> list[Any]:
    return [
        jobs_label,
        LABELS[name],
        m["completed"],
        m["p50_ms"],
        m["p95_ms"],
        m["p50_ms"] / fal["p50_ms"] if fal["p50_ms"] > 0 else float("nan"),
        m["requests_per_job"],
        m["requests_per_job"] / fal["requests_per_job"] if fal["requests_per_job"] > 0 else float("nan"),
        ", ".join(f"{k} {v:.2f}" for k, v in sorted(m["calls_per_job"].items())),
        m["cpu_ms_per_job"],
        m["wall_s"],
        m["max_rss_mib"],
        len(m["errors"]),
    ]


def _schedule(measured: dict[str, Any]) -> str:
    """The waiting defaults a client's report recorded, as one phrase."""
    defaults = measured.get("defaults") or {}
    polls = {value for key, value in defaults.items() if key.endswith("(poll=)")}
    if not polls:
        return "its default schedule (not recorded: the constructor has no `poll` argument)"
    return "its default `poll` " + " / ".join(sorted(polls))


def run(*, smoke: bool) -> ScenarioResult:
    """Polling: sequential long and short jobs side by side, then 200 jobs at once."""
    long, short = (SMOKE_LONG, SMOKE_SHORT) if smoke else (LONG, SHORT)
    long_jobs, short_jobs = (2, 2) if smoke else (LONG_JOBS, SHORT_JOBS)
    concurrent_jobs = 10 if smoke else CONCURRENT_JOBS
    deadline = 60.0 if smoke else CONCURRENT_DEADLINE
    sequential: dict[str, dict[str, dict[str, Any]]] = {}
    server_cpu: dict[str, float] = {}
    for length, jobs in ((long, long_jobs), (short, short_jobs)):
        options = ["--runners", "8", "--queue-wait", "0", "--run-time", f"{length.run_time}"]
        with emulator([*options, "--run-time-jitter", f"{length.jitter}"]) as server:
            before = server.cpu_seconds()
            sequential[length.label] = _sequential(server, length, jobs)
            server_cpu[length.label] = server.cpu_seconds() - before
    # Every job holds a connection while it waits, and clients keep them for the next call: the emulator's default
    # cap on idle connections (512) is raised above what two clients' jobs can hold.
    options = ["--runners", str(concurrent_jobs), "--queue-wait", "0", "--run-time", f"{long.run_time}"]
    options += ["--run-time-jitter", f"{long.jitter}", "--max-idle-connections", str(4 * concurrent_jobs)]
    with emulator(options) as server:
        concurrent = _concurrent(server, concurrent_jobs, deadline)

    long_measured, short_measured = sequential[long.label], sequential[short.label]
    schedule = _schedule(long_measured["ours-poll"])
    async_schedule = _schedule(concurrent["ours-poll-async"])
    rows = []
    for length, jobs in ((long, long_jobs), (short, short_jobs)):
        measured = sequential[length.label]
        rows += [_row(f"{jobs} one after another, {length.label}", n, m, measured["fal"]) for n, m in measured.items()]
    rows += [
        _row(f"{concurrent_jobs} at once, {long.label}", name, m, concurrent["fal-async"])
        for name, m in concurrent.items()
    ]
    revision = source_revision()
    notes = [
        f"Ours polled with {schedule} (sequential) and {async_schedule} (concurrent): the defaults of the "
        f"constructors' arguments in this build of fal_kontext "
        f"{(long_measured['ours-poll'].get('defaults') or {}).get('fal_kontext', '?')}, {revision}.",
    ]
    for label, measured in sequential.items():
        cpu = sum(m["cpu_ms_per_job"] for m in measured.values()) * (long_jobs if label == long.label else short_jobs)
        wall = max(m["wall_s"] for m in measured.values())
        unaccounted = next(iter(measured.values()))["submits_unaccounted"]
        notes.append(
            f"{label}, side by side: the three clients used {cpu / 1000:.1f} s of CPU 1 together over "
            f"{wall:.0f} s ({cpu / 10 / wall:.1f}% of the core), the emulator {server_cpu[label]:.1f} s of CPU 0; "
            + (
                "the server counted one submit per job and warm-up."
                if unaccounted == 0
                else f"the server counted {unaccounted:+d} submits against one per job and warm-up, not attributable "
                "to a client (requests per job assume one submit each)."
            )
        )
    notes.append(
        f"{concurrent_jobs} at once: emulator CPU "
        + ", ".join(f"{LABELS[name]} {m['server_cpu_s']:.1f} s" for name, m in concurrent.items())
        + "; unfinished at the deadline: "
        + ", ".join(f"{LABELS[name]} {m['unfinished']}" for name, m in concurrent.items())
        + "."
    )
    notes.append(
        "Errors by type: "
        + "; ".join(
            f"{length} {LABELS[name]}: {sorted(set(m['errors'])) or 'none'}"
            for length, measured in [*sequential.items(), (f"{concurrent_jobs} at once", concurrent)]
            for name, m in measured.items()
        )
    )
    targets = [
        *_long_targets(long_measured, long, schedule),
        _short_target(short_measured, short, schedule),
        _stream_target(sequential),
    ]
    return ScenarioResult(
        key="polling",
        title="7. Polling: when the status stream is not available",
        method=METHOD.format(
            long=long.label,
            short=short.label,
            long_jobs=long_jobs,
            short_jobs=short_jobs,
            long_minutes=long_jobs * (long.run_time + long.jitter / 2) / 60,
            concurrent=concurrent_jobs,
            concurrent_length=long.label,
            deadline=deadline,
        ),
        columns=[
            "jobs",
            "client",
            "jobs done",
            "overhead p50 ms",
            "overhead p95 ms",
            "p50: this / fal_client",
            "HTTP requests/job",
            "requests: this / fal_client",
            "calls/job (excl. submit)",
            "client CPU ms/job",
            "wall s",
            "peak RSS MiB",
            "errors",
        ],
        rows=rows,
        targets=targets,
        plots=[
            Plot(
                "bench-polling-overhead.png",
                "Sequential jobs: result held after the server completed the job (p50, ms)",
                "milliseconds",
                {
                    f"{LABELS[name].split(' (')[0]}, {label}": m["p50_ms"]
                    for label, measured in sequential.items()
                    for name, m in measured.items()
                },
            ),
            Plot(
                "bench-polling-requests.png",
                "HTTP requests per job",
                "requests",
                {
                    f"{LABELS[name].split(' (')[0]}, {label}": m["requests_per_job"]
                    for label, measured in [*sequential.items(), (f"{concurrent_jobs} at once", concurrent)]
                    for name, m in measured.items()
                },
            ),
            Plot(
                "bench-polling-concurrent-cpu.png",
                f"{concurrent_jobs} jobs polled at once: client CPU per job (ms)",
                "milliseconds",
                {LABELS[name]: m["cpu_ms_per_job"] for name, m in concurrent.items()},
            ),
        ],
        notes=notes,
        data={
            "sequential": sequential,
            "concurrent": concurrent,
            "emulator_cpu_s": server_cpu,
            "source": revision,
            "schedule": {"sequential": schedule, "concurrent": async_schedule},
        },
    )
