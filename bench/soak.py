"""Scenario 5: the fault soak. 1,000 jobs through an emulator that turns 20% of responses into transient faults
and is restarted mid-run from its state file; ours and fal_client, each on a fresh emulator with the same faults."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

from fal_kontext.mock import body_fingerprint, key_fingerprint

from .clients import ROOT
from .model import Plot, ScenarioResult, Target
from .server import CLIENT_CPU, EmulatorProcess, make_certificates, pin_to
from .workload import job_input

FAULTS = "*@0.2=429:1|502|503|drop|slow:2"
CONCURRENCY = 100
METHOD = (
    "Each client gets a fresh emulator (HTTPS, state file, pinned to CPU 0) with the fault rule `{faults}`: 20% "
    "of all calls (submit, status, stream, result), drawn with a fixed seed, answer one of 429 with Retry-After "
    "1 s, 502, 503 (JSON bodies with an x-fal-request-id, as fal's own errors), a dropped connection (closed "
    "before the request is handled) or a normal answer 2 s late. Jobs run 0.3 s plus 0-0.3 s. The client process "
    "(pinned to CPU 1) runs {jobs} jobs with unique prompts, {concurrency} at a time. When half of the jobs have "
    "been submitted the emulator process is killed (SIGKILL, as in a crash: open connections are reset) and "
    "started again on the same port from its state file. Each caller uses its client's defaults: fal_kontext "
    "`submit` then `wait` (the client sends a submit refused with 429 again, since nothing was queued, and retries "
    "the idempotent status and result calls until the wait deadline); fal_client `AsyncClient.subscribe`, whose "
    "own retries cover 429 and dropped connections. "
    "Completed = the caller holds the result. Lost = the emulator accepted the job but the caller has no result. "
    "Not submitted = the caller got an error at submit and the emulator has no such job. Submitted twice = the "
    "emulator's per-body submit count (kept in the state file across the restart) is 2 or more."
)


def _soak(client: str, jobs: int, scratch: Path) -> dict[str, Any]:
    certificates = make_certificates(scratch)
    state = scratch / f"{client}.sqlite"
    server = EmulatorProcess(
        [
            "--runners", str(CONCURRENCY), "--queue-wait", "0", "--run-time", "0.3", "--run-time-jitter", "0.3",
            "--state-file", str(state), "--fault", FAULTS, "--fault-seed", "6",
        ],
        certificates,
    )  # fmt: skip
    server.start()
    prompts = [f"soak, {client}, job {i}" for i in range(jobs)]
    host = server.base_url.removeprefix("https://")
    env = {
        **os.environ,
        "FAL_QUEUE_RUN_HOST": host,
        "FAL_RUN_HOST": host,
        "FAL_KEY": server.key,
        "SSL_CERT_FILE": certificates.ca_file,
    }
    spec = {
        "client": client,
        "prompts": prompts,
        "base_url": server.base_url,
        "key": server.key,
        "ca_file": certificates.ca_file,
        "stream": True,
        "concurrency": CONCURRENCY,
    }
    owner = key_fingerprint(server.key)
    faults: Counter[str] = Counter()
    restart_seconds: float | None = None
    try:
        worker = subprocess.Popen(
            [sys.executable, "-m", "bench.workload", json.dumps(spec)],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        pin_to(worker.pid, CLIENT_CPU)
        while worker.poll() is None:
            counters = server.admin("GET", "/counters")
            if counters["submits"].get(owner, {}).get("total", 0) >= jobs // 2:
                faults.update(counters["faults"])
                stopped = time.monotonic()
                server.crash_and_restart()
                restart_seconds = time.monotonic() - stopped
                break
            time.sleep(0.1)
        out, err = worker.communicate()
        if worker.returncode != 0:
            raise RuntimeError(f"soak workload {client} failed:\n{err[-4000:]}")
        report = json.loads(out)
        counters = server.admin("GET", "/counters")
        faults.update(counters["faults"])
    finally:
        server.stop()
    by_body = counters["submits"].get(owner, {}).get("by_body", {})
    counts = [by_body.get(body_fingerprint(job_input(job["prompt"])), 0) for job in report["jobs"]]
    done = [job["held_at"] is not None for job in report["jobs"]]
    errors = Counter(job["error"] for job in report["jobs"] if job["error"])
    return {
        "jobs": jobs,
        "completed": sum(done),
        "lost": sum(1 for held, n in zip(done, counts, strict=True) if not held and n >= 1),
        "not_submitted": sum(1 for held, n in zip(done, counts, strict=True) if not held and n == 0),
        "submitted_twice": sum(1 for n in counts if n >= 2),
        "submits_not_matched": sum(by_body.values()) - sum(counts),
        "errors_surfaced": sum(errors.values()),
        "errors_at_submit": sum(1 for job in report["jobs"] if job["submit_error"]),
        "errors_by_type": dict(errors),
        "errors_while_waiting": dict(
            Counter(job["error"] for job in report["jobs"] if job["error"] and not job["submit_error"])
        ),
        "faults_injected": sum(faults.values()),
        "faults_by_operation": dict(faults),
        "restarted": restart_seconds is not None,
        "restart_s": restart_seconds if restart_seconds is not None else float("nan"),
        "wall_s": report["wall_s"],
    }


def run(*, smoke: bool) -> ScenarioResult:
    """The fault soak, ours and fal_client."""
    jobs = 20 if smoke else 1000
    labels = {"ours-async": "fal_kontext AsyncKontext", "fal-async": "fal_client AsyncClient"}
    measured: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory(prefix="bench-soak-") as scratch:
        for client in labels:
            folder = Path(scratch) / client
            folder.mkdir()
            measured[client] = _soak(client, jobs, folder)
    rows = [
        [
            labels[name],
            m["jobs"],
            m["completed"],
            m["lost"],
            m["submitted_twice"],
            m["not_submitted"],
            m["errors_surfaced"],
            m["errors_at_submit"],
            m["faults_injected"],
            m["wall_s"],
        ]
        for name, m in measured.items()
    ]
    ours = measured["ours-async"]
    met = ours["completed"] == jobs and ours["lost"] == 0 and ours["submitted_twice"] == 0
    why = ""
    if not met:
        why = (
            f"{jobs - ours['completed']} jobs short ({ours['lost']} lost, {ours['submitted_twice']} submitted twice, "
            f"{ours['not_submitted']} never queued). Errors surfaced: {ours['errors_by_type']}. "
            + (
                f"The lost ones failed while waiting ({ours['errors_while_waiting']}); the caller still has the "
                "request id and can resume with `kontext.handle(request_id).wait()`. "
                if ours["lost"]
                else ""
            )
            + "The rest failed at submit: a submit answered with a 502 or 503, or whose connection dropped after it "
            "was sent, may have queued a paid job, so fal_kontext never sends it again (by design: no job "
            "submitted twice) and the caller gets the error. Here the emulator injects those faults before "
            "handling, so nothing was queued, but a client cannot know that. What would close it: an idempotency "
            "key on submit (fal documents none), or treating a 502/503 that carries fal's JSON error body as a "
            "refusal if fal confirms it is one."
        )
    return ScenarioResult(
        key="soak",
        title="5. Fault soak: 20% transient faults and a restart",
        method=METHOD.format(faults=FAULTS, jobs=jobs, concurrency=CONCURRENCY),
        columns=[
            "client",
            "jobs",
            "completed",
            "lost",
            "submitted twice",
            "not submitted",
            "errors surfaced",
            "of them at submit",
            "faults injected",
            "wall s",
        ],
        rows=rows,
        targets=[
            Target(
                "Soak: ours completes every job, none lost or submitted twice",
                f"{jobs} of {jobs} completed, 0 lost, 0 submitted twice",
                f"{ours['completed']} completed, {ours['lost']} lost, {ours['submitted_twice']} submitted twice",
                met,
                why,
            )
        ],
        plots=[
            Plot(
                "bench-soak.png",
                f"Fault soak: jobs completed of {jobs}",
                "jobs",
                {labels[name]: float(m["completed"]) for name, m in measured.items()},
            )
        ],
        notes=[
            "fal_client retries 429 and transport errors on every call, submit included, but 502/503/504 only when "
            "the body looks like an nginx page without x-fal-request-id (fal-protocol.md §3.5): a status poll "
            "answered with fal's JSON 502 or 503 ends its `subscribe` with FalClientHTTPError while the job runs on "
            "(its lost jobs), and a submit whose connection was reset after the server queued it (the crash) can "
            "be sent again (a job submitted twice).",
        ]
        + [
            f"{labels[name]}: errors by type {m['errors_by_type'] or 'none'}; faults injected by operation "
            f"{m['faults_by_operation']}; emulator down for {m['restart_s']:.1f} s during the restart; "
            f"submits the harness could not match to a job: {m['submits_not_matched']}."
            for name, m in measured.items()
        ],
        data=measured,
    )
