"""Launch a client workload (bench/workload.py) in its own process, pinned to the client CPU, and read its report."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from .server import CLIENT_CPU, EmulatorProcess, pin_to

ROOT = Path(__file__).resolve().parent.parent

LABELS = {
    "ours-stream": "fal_kontext (status stream)",
    "ours-poll": "fal_kontext (polling)",
    "fal": "fal_client (defaults)",
    "bare": "bare httpx reader (the peer)",
}


def run_workload(
    server: EmulatorProcess, client: str, prompts: list[str], *, port: int | None = None, **options: Any
) -> dict[str, Any]:
    """Run `client` (a name in bench/workload.py's CLIENTS) over `prompts` against `server`, or against another
    `port` on 127.0.0.1 that leads to it (the connection counter)."""
    assert server.certificates is not None
    base_url = server.base_url if port is None else f"https://127.0.0.1:{port}"
    host = base_url.removeprefix("https://")
    env = {
        **os.environ,
        # fal_client reads these at import and always speaks https: its auth.py and client.py,
        # https://github.com/fal-ai/fal/blob/main/projects/fal_client/src/fal_client/auth.py
        "FAL_QUEUE_RUN_HOST": host,
        "FAL_RUN_HOST": host,
        "FAL_KEY": server.key,
        "SSL_CERT_FILE": server.certificates.ca_file,
    }
    spec = {
        "client": client,
        "prompts": prompts,
        "base_url": base_url,
        "key": server.key,
        "ca_file": server.certificates.ca_file,
        "stream": True,
        **options,
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "bench.workload", json.dumps(spec)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    pin_to(process.pid, CLIENT_CPU)
    stdout, stderr = process.communicate()
    if process.returncode != 0:
        raise RuntimeError(f"workload {client} failed ({process.returncode}):\n{stderr[-4000:]}")
    report: dict[str, Any] = json.loads(stdout)
    return report


def calls_per_job(listed: dict[str, Any], request_ids: list[str]) -> dict[str, float]:
    """Mean calls per job by operation group, from GET /_emulator/requests (submits are counted separately)."""
    totals: dict[str, float] = {}
    for rid in request_ids:
        for operation, count in listed["requests"].get(rid, {}).get("calls", {}).items():
            group = {"get_request_status": "status", "stream_request_status": "stream"}.get(operation, operation)
            group = {"get_request_result": "result", "cancel_request": "cancel"}.get(group, group)
            totals[group] = totals.get(group, 0.0) + count
    return {group: count / max(len(request_ids), 1) for group, count in totals.items()}


def overheads_s(listed: dict[str, Any], jobs: list[dict[str, Any]]) -> list[float]:
    """Seconds from the server completing each job to its client holding the result (`held_at`, CLOCK_MONOTONIC),
    for the jobs held whose completion the server recorded; `listed` is GET /_emulator/requests."""
    overheads = []
    for job in jobs:
        held = listed["requests"].get(job["request_id"] or "")
        if job["held_at"] is not None and held and held["completed_at"] is not None:
            overheads.append(job["held_at"] - (held["completed_at"] + listed["clock_offset"]))
    return overheads


def submits(counters: dict[str, Any]) -> int:
    """Every submit call the server saw, faulted or not."""
    return sum(n for operation, n in counters["calls"].items() if operation.startswith("submit_"))
