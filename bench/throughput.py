"""Scenario 3: the emulator's throughput: status requests per second and completed jobs per second, on one core."""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

import httpx

from .clients import ROOT
from .model import Plot, ScenarioResult, Target
from .server import CLIENT_CPU, EmulatorProcess, emulator, pin_to
from .workload import IMAGE, job_input

TARGET_STATUS_PER_S = 2000
METHOD = (
    "The emulator (`python -m fal_kontext_emulator`, plain HTTP, uvicorn with httptools) is pinned to CPU 0; a "
    "raw-socket keep-alive load generator (bench/loadgen.py: Python selectors, one request in flight per "
    "connection, {connections} connections) runs in another process pinned to CPU 1, for {seconds:g} s per "
    "workload. Status: `GET .../requests/{{id}}/status` round robin over 16 running requests (202 answers). "
    "Jobs: each connection submits a job with run time 0 and no queue wait, reads its status once, then GETs "
    "its result, and starts over; a job counts when its result is 200. Every job sends the same seed, so the "
    "emulator renders the ~1 MP output image once and serves it from its cache (a new image costs it about "
    "5-10 ms). Server CPU is read from /proc for the server process."
)


def _load(server: EmulatorProcess, workload: str, seconds: float, connections: int, **extra: Any) -> dict[str, Any]:
    spec = {
        "workload": workload,
        "host": server.base_url.removeprefix("http://"),
        "key": server.key,
        "seconds": seconds,
        "connections": connections,
        "image": IMAGE,
        **extra,
    }
    cpu_before = server.cpu_seconds()
    process = subprocess.Popen(
        [sys.executable, "-m", "bench.loadgen", json.dumps(spec)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    pin_to(process.pid, CLIENT_CPU)
    stdout, stderr = process.communicate()
    if process.returncode != 0:
        raise RuntimeError(f"load generator failed:\n{stderr[-4000:]}")
    report: dict[str, Any] = json.loads(stdout)
    report["server_cpu_s"] = server.cpu_seconds() - cpu_before
    return report


def run(*, smoke: bool) -> ScenarioResult:
    """Status requests/s and completed jobs/s of one emulator process on one core."""
    seconds = 1.0 if smoke else 6.0
    connections = 16
    results: dict[str, dict[str, Any]] = {}
    with emulator(["--runners", "10000", "--queue-wait", "0", "--run-time", "3600"], https=False) as server:
        with httpx.Client(base_url=server.base_url, headers={"Authorization": f"Key {server.key}"}) as http:
            paths = [
                "/fal-ai/flux-pro/requests/"
                + http.post("/fal-ai/flux-pro/kontext", json=job_input(f"running {i}")).json()["request_id"]
                + "/status"
                for i in range(16)
            ]
        results["status"] = _load(server, "status", seconds, connections, status_paths=paths)
    with emulator(["--runners", "10000", "--queue-wait", "0", "--run-time", "0"], https=False) as server:
        results["jobs"] = _load(server, "jobs", seconds, connections)
    status, jobs = results["status"], results["jobs"]
    status_rate = status["answers"] / status["seconds"]
    job_rate = jobs["jobs"] / jobs["seconds"]
    rows = [
        [
            "status requests",
            status["answers"],
            status["seconds"],
            status_rate,
            status["server_cpu_s"] / status["seconds"],
            json.dumps(status["codes"]),
        ],
        [
            "jobs (submit + status + result)",
            jobs["jobs"],
            jobs["seconds"],
            job_rate,
            jobs["server_cpu_s"] / jobs["seconds"],
            json.dumps(jobs["codes"]),
        ],
    ]
    return ScenarioResult(
        key="throughput",
        title="3. The emulator: status requests and completed jobs per second (one core)",
        method=METHOD.format(connections=connections, seconds=seconds),
        columns=["workload", "count", "seconds", "per second", "server CPU (cores busy)", "HTTP codes"],
        rows=rows,
        targets=[
            Target(
                "Emulator status requests/s",
                f">= {TARGET_STATUS_PER_S:,}/s on one core",
                f"{status_rate:,.0f}/s",
                status_rate >= TARGET_STATUS_PER_S,
                "",
            )
        ],
        plots=[
            Plot(
                "bench-emulator-throughput.png",
                "Emulator on one core (per second)",
                "per second",
                {"status requests": status_rate, "completed jobs": job_rate},
            )
        ],
        data=results,
    )
