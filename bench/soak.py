"""Scenario 5: the fault soak. 1,000 jobs through an emulator that turns 20% of calls into transient faults, some
before the call is handled and some after (forwarded, then the answer lost), and is restarted mid-run from its state
file; ours and fal_client, each on a fresh emulator with the same faults."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tempfile
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from fal_kontext import RecoveryPolicy
from fal_kontext_emulator import Fault, body_fingerprint, key_fingerprint

from .clients import ROOT
from .model import Plot, ScenarioResult, Target
from .server import CLIENT_CPU, EmulatorProcess, make_certificates, pin_to
from .workload import ENDPOINT, job_input

# Faults before the call is handled: nothing happened on the server.
BEFORE_HANDLING = ("429:1", "502", "503", "drop", "slow:2")
# Faults after the call was handled (forwarded, then the answer lost or replaced). Only the ones the
# emulator under test knows are used (`_supported`), so the soak runs against older emulators too.
AFTER_HANDLING = {
    "drop-after": "the connection closed before answering",
    "lost:503": "the answer replaced by fal's JSON 503",
    "lost:502-nginx": "the answer replaced by an nginx HTML 502 without x-fal-request-id",
    "cut": "the real status and headers (x-fal-request-id included), half the body, then the connection closed",
}
RATE = 0.2
CONCURRENCY = 100
DEADLINE = 900.0
DEADLINE_SMOKE = 90.0
METHOD = (
    "Each client gets a fresh emulator (HTTPS, state file, pinned to CPU 0) with the fault rule `{faults}`: "
    "{rate:.0%} of all calls (submit, status, stream, result, and recovery's request-list lookups), drawn with a "
    "fixed seed, get one of these faults. Before the call is handled: 429 with Retry-After 1 s, 502, 503 (JSON "
    "bodies with an x-fal-request-id, as fal's own errors), a dropped connection (closed before the request is "
    "handled) or a normal answer 2 s late. After it was handled (forwarded, then the answer lost): "
    "{after}. Jobs run 0.3 s plus 0-0.3 s. The client process (pinned to CPU 1) runs {jobs} jobs with unique "
    "prompts, {concurrency} at a time. When half of the jobs have been submitted the emulator process is killed "
    "(SIGKILL, as in a crash: open connections are reset) and started again on the same port from its state file. "
    "Each caller uses its client's defaults: fal_kontext `submit` then `wait` (`Kontext` shared by {concurrency} "
    "threads, and `AsyncKontext`); fal_client `AsyncClient.subscribe`, "
    "whose own retries cover 429 and dropped connections. {recovery} "
    "Done = the caller holds the result. Typed error = the caller got the client's own exception class "
    "(fal_kontext's `KontextError`, fal_client's `FalClientError`); untyped = anything else (e.g. a raw httpx "
    "error). Hung = still waiting at the {deadline:g} s deadline. Id held = the emulator has the job and the "
    "caller got its request id (from the submit, or in the error) but no result: it can still fetch it. Lost = the "
    "emulator has the job and the caller never got its id. Never queued = the caller got an error and the emulator "
    "has no such job. Submitted twice = the emulator's per-body submit count (kept in the state file across the "
    "restart, and saved in one transaction with the submit's job, so a submit whose job a crash lost is not "
    "counted) is 2 or more. Held twice = the emulator holds two jobs for one body at the end (its copy of fal's "
    "request list, with payloads): a job paid twice."
)


@dataclass(frozen=True)
class Variant:
    """One soaked client: a workload client name and its options."""

    key: str
    label: str
    client: str
    options: dict[str, Any] = field(default_factory=dict)


def _supported(token: str) -> bool:
    """Whether the emulator under test knows this fault token (its own parser decides)."""
    try:
        return Fault.parse(token) is not None
    except ValueError:
        return False


def fault_rule() -> str:
    """The soak's fault rule: every fault kind above that this emulator supports, at RATE of all calls."""
    tokens = [token for token in (*BEFORE_HANDLING, *AFTER_HANDLING) if _supported(token)]
    return f"*@{RATE:g}=" + "|".join(tokens)


# Request-list recovery, fast enough for a smoke run: look the job up every 0.25 s and resend after 2 s without one
# (the emulator lists a request the moment it is queued; fal's list may take longer, hence the client's defaults);
# give up after 30 s (an emulator restarting on a busy machine can be down for 10 s).
SMOKE_RECOVERY = {"absent_after": 2.0, "interval": 0.25, "timeout": 30.0}


RECOVERY = (
    "Each fal_kontext client runs twice: with its default request-list recovery (after a submit whose answer was "
    "lost it uses an id it already holds, else looks the job up in the emulator's copy of fal's request list, "
    "adopts the job it finds, and sends the submit again only when the list shows none for {absent_after})"
    " and with recovery off (`RecoveryPolicy(look_up=False)`: it never sends such a submit again and raises "
    "`SubmitOutcomeUnknownError`, with the id when it has one; an error for a job the emulator holds that is "
    "neither that error nor carries the job's id is counted as one that does not say the job may exist)."
)


def variants(*, smoke: bool) -> list[Variant]:
    """The clients to soak: ours (`Kontext` in threads, `AsyncKontext`) without request-list recovery and with it
    (its default), and fal_client."""
    recovery = {"recovery": SMOKE_RECOVERY} if smoke else {}
    off = {"recovery": "off"}
    return [
        Variant("ours-threads-off", "fal_kontext Kontext (threads), recovery off", "ours-threads", off),
        Variant("ours-async-off", "fal_kontext AsyncKontext, recovery off", "ours-async", off),
        Variant("ours-threads", "fal_kontext Kontext (threads, request-list recovery)", "ours-threads", recovery),
        Variant("ours-async", "fal_kontext AsyncKontext (request-list recovery, its default)", "ours-async", recovery),
        Variant("fal-async", "fal_client AsyncClient", "fal-async"),
    ]


def _soak(variant: Variant, jobs: int, scratch: Path, deadline: float) -> dict[str, Any]:
    certificates = make_certificates(scratch)
    state = scratch / "emulator.sqlite"
    server = EmulatorProcess(
        [
            "--runners", str(CONCURRENCY), "--queue-wait", "0", "--run-time", "0.3", "--run-time-jitter", "0.3",
            "--state-file", str(state), "--fault", fault_rule(), "--fault-seed", "6",
        ],
        certificates,
    )  # fmt: skip
    server.start()
    prompts = [f"soak, {variant.key}, job {i}" for i in range(jobs)]
    host = server.base_url.removeprefix("https://")
    env = {
        **os.environ,
        "FAL_QUEUE_RUN_HOST": host,
        "FAL_RUN_HOST": host,
        "FAL_KEY": server.key,
        "SSL_CERT_FILE": certificates.ca_file,
    }
    spec = {
        "client": variant.client,
        "prompts": prompts,
        "base_url": server.base_url,
        "key": server.key,
        "ca_file": certificates.ca_file,
        "stream": True,
        "concurrency": CONCURRENCY,
        "deadline_s": deadline,
        **variant.options,
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
            raise RuntimeError(f"soak workload {variant.key} failed:\n{err[-4000:]}")
        report = json.loads(out)
        counters = server.admin("GET", "/counters")
        faults.update(counters["faults"])
        queued = set(server.admin("GET", "/requests")["requests"])
        held_per_prompt = _jobs_per_prompt(server)
    finally:
        server.stop()
    by_body = counters["submits"].get(owner, {}).get("by_body", {})
    return {
        **outcomes(report["jobs"], by_body, queued),
        "held_twice": sum(1 for job in report["jobs"] if held_per_prompt[job["prompt"]] >= 2),
        "jobs": jobs,
        "faults_injected": sum(faults.values()),
        "faults_by_operation": dict(faults),
        "restarted": restart_seconds is not None,
        "restart_s": restart_seconds if restart_seconds is not None else float("nan"),
        "wall_s": report["wall_s"],
    }


def _jobs_per_prompt(server: EmulatorProcess) -> Counter[str]:
    """How many jobs the emulator holds per prompt, read from its copy of fal's request list with payloads (faults
    off; every job has ended by now, as the list shows ended requests)."""
    server.admin("DELETE", "/faults")
    time.sleep(1.0)  # the longest job (0.6 s) submitted last has ended
    held: Counter[str] = Counter()
    headers = {"Authorization": f"Key {server.key}"}
    params: dict[str, str | int] = {"endpoint_id": ENDPOINT, "expand": "payloads", "limit": 100}
    with httpx.Client(base_url=server.base_url, verify=server.verify, headers=headers, timeout=60) as http:
        while True:
            page = http.get("/v1/models/requests/by-endpoint", params=params).raise_for_status().json()
            held.update(item["json_input"]["prompt"] for item in page["items"])
            if not page.get("has_more"):
                return held
            params["cursor"] = page["next_cursor"]


def outcomes(jobs: list[dict[str, Any]], by_body: dict[str, int], queued: set[str]) -> dict[str, Any]:
    """Classify every job (see METHOD) from what the caller got and what the emulator holds.

    `by_body`: the emulator's submit count per body fingerprint; `queued`: the request ids it holds.
    """
    counts = [by_body.get(body_fingerprint(job_input(job["prompt"])), 0) for job in jobs]
    held = [job["held_at"] is not None for job in jobs]
    hung = [job["error"] == "unfinished at the deadline" for job in jobs]
    errors = [job for job, done, late in zip(jobs, held, hung, strict=True) if not done and not late]
    id_held = lost = unsaid = 0
    for job, done, late, count in zip(jobs, held, hung, counts, strict=True):
        if done or late or count == 0:
            continue
        known = job["request_id"] or (job["error_request_id"] if job["error_request_id"] in queued else None)
        if known:
            id_held += 1
        else:
            lost += 1
        # A queued job's error must say that it may exist: our SubmitOutcomeUnknownError, or an error carrying its id.
        if not known and job["error"] != "SubmitOutcomeUnknownError":
            unsaid += 1
    return {
        "completed": sum(held),
        "typed_errors": sum(1 for job in errors if job["error_typed"]),
        "untyped_errors": sum(1 for job in errors if not job["error_typed"]),
        "hung": sum(hung),
        "id_held": id_held,
        "lost": lost,
        "may_exist_unsaid": unsaid,
        "not_submitted": sum(
            1 for done, late, count in zip(held, hung, counts, strict=True) if not done and not late and count == 0
        ),
        "submitted_twice": sum(1 for count in counts if count >= 2),
        "submits_not_matched": sum(by_body.values()) - sum(counts),
        "errors_at_submit": sum(1 for job in errors if job["submit_error"]),
        "errors_by_type": dict(Counter(job["error"] for job in errors)),
        "errors_while_waiting": dict(Counter(job["error"] for job in errors if not job["submit_error"])),
        "errors_with_id": sum(1 for job in errors if job["error_request_id"] in queued),
        "errors_by_reason": dict(Counter(_reason(job) for job in errors).most_common()),
    }


def _reason(job: dict[str, Any]) -> str:
    """An error's reason (the recovery's, else its message) with ids, numbers and times blanked, so like ones group."""
    text = job.get("error_reason") or job.get("error_message") or job["error"]
    text = re.sub(r"[0-9a-f]{8}-[0-9a-f-]{27,}", "<id>", str(text))
    return f"{job['error']}: " + re.sub(r"\d+(\.\d+)?", "N", text)


def run(*, smoke: bool) -> ScenarioResult:
    """The fault soak: ours (with and without request-list recovery, where available) and fal_client."""
    jobs = 10 if smoke else 1000
    soaked = variants(smoke=smoke)
    deadline = DEADLINE_SMOKE if smoke else DEADLINE
    with tempfile.TemporaryDirectory(prefix="bench-soak-") as scratch:

        def soak(variant: Variant) -> dict[str, Any]:
            folder = Path(scratch) / variant.key
            folder.mkdir()
            return _soak(variant, jobs, folder, deadline)

        # A smoke run soaks the clients side by side (its numbers mean nothing); a real one, one after another.
        with ThreadPoolExecutor(max_workers=len(soaked) if smoke else 1) as pool:
            measured = dict(zip([variant.key for variant in soaked], pool.map(soak, soaked), strict=True))
    labels = {variant.key: variant.label for variant in soaked}
    rows = [
        [
            labels[name],
            m["jobs"],
            m["completed"],
            m["typed_errors"],
            m["untyped_errors"],
            m["hung"],
            m["id_held"],
            m["lost"],
            m["submitted_twice"],
            m["held_twice"],
            m["not_submitted"],
            m["faults_injected"],
            m["wall_s"],
        ]
        for name, m in measured.items()
    ]
    ours = [variant for variant in soaked if variant.client.startswith("ours")]
    twice = {
        variant.label: (measured[variant.key]["held_twice"], measured[variant.key]["submitted_twice"])
        for variant in ours
    }
    paid_twice = any(held for held, _ in twice.values())
    after = [f"`{token}` ({meaning})" for token, meaning in AFTER_HANDLING.items() if _supported(token)]
    return ScenarioResult(
        key="soak",
        title="5. Fault soak: 20% transient faults (before and after handling) and a restart",
        method=METHOD.format(
            faults=fault_rule(),
            rate=RATE,
            after="; ".join(after) or "none (this emulator has no such fault)",
            jobs=jobs,
            concurrency=CONCURRENCY,
            deadline=DEADLINE_SMOKE if smoke else DEADLINE,
            recovery=RECOVERY.format(
                absent_after=f"{SMOKE_RECOVERY['absent_after']:g} s (smoke)"
                if smoke
                else f"{RecoveryPolicy().absent_after:g} s (its default)"
            ),
        ),
        columns=[
            "client",
            "jobs",
            "done",
            "typed error",
            "untyped error",
            "hung",
            "id held, no result",
            "lost (no id)",
            "submitted twice",
            "jobs held twice",
            "never queued",
            "faults injected",
            "wall s",
        ],
        rows=rows,
        targets=[_recovered(variant, measured[variant.key], jobs) for variant in ours]
        + [
            Target(
                "Soak: ours never has a job queued twice",
                "0 jobs held twice",
                "; ".join(
                    f"{label}: {held} held twice ({sent} submitted twice)" for label, (held, sent) in twice.items()
                ),
                not paid_twice,
                "A submit was sent again while the server held the job it had queued." if paid_twice else "",
            ),
        ],
        plots=[
            Plot(
                "bench-soak.png",
                f"Fault soak: jobs done of {jobs}",
                "jobs",
                {labels[name]: float(m["completed"]) for name, m in measured.items()},
            )
        ],
        notes=[
            "fal_client retries 429 and transport errors on every call, submit included, but 502/503/504 only when "
            "the body looks like an nginx page without x-fal-request-id (`_is_ingress_error` in "
            "https://github.com/fal-ai/fal/blob/main/projects/fal_client/src/fal_client/client.py): a status poll "
            "answered with fal's JSON 502 or 503 ends its `subscribe` with FalClientHTTPError while the job runs on, "
            "and a submit whose connection was reset after the server queued it (the crash, or a forwarded-then-lost "
            "fault) can be sent again (a job submitted twice).",
        ]
        + [
            f"{labels[name]}: errors by type {m['errors_by_type'] or 'none'} ({m['errors_at_submit']} at submit; "
            f"{m['errors_with_id']} carry the id of a queued job; {m['may_exist_unsaid']} for a queued job do not say "
            "it may exist); faults injected by operation "
            f"{m['faults_by_operation']}; emulator down for {m['restart_s']:.1f} s during the restart; "
            f"submits the harness could not match to a job: {m['submits_not_matched']}. "
            f"Errors by reason: {m.get('errors_by_reason') or 'none'}."
            for name, m in measured.items()
        ],
        data=measured,
    )


def _recovered(variant: Variant, measured: dict[str, Any], jobs: int) -> Target:
    """The soak's target for one of our clients: with recovery, every job done and none submitted twice; without,
    none submitted twice and every error for a job that may exist says so (SubmitOutcomeUnknownError or its id)."""
    twice = f"{measured['submitted_twice']} submitted twice, {measured['held_twice']} held twice"
    if variant.options.get("recovery") == "off":
        met = measured["submitted_twice"] == 0 and measured["may_exist_unsaid"] == 0
        return Target(
            f"Soak: {variant.label} submits nothing twice and says when a job may exist",
            "0 submitted twice; 0 errors for a queued job that do not say it may exist",
            f"{twice}; {measured['may_exist_unsaid']} such errors ({measured['id_held']} errors carry the id)",
            met,
            "" if met else "A submit was sent twice, or an error for a queued job did not say the job may exist.",
        )
    met = (
        measured["completed"] == jobs
        and measured["lost"] == 0
        and measured["submitted_twice"] == 0
        and measured["held_twice"] == 0
    )
    return Target(
        f"Soak: {variant.label} completes every job, none lost or submitted twice",
        f"{jobs} of {jobs} done, 0 lost, 0 submitted twice",
        f"{measured['completed']} done, {measured['lost']} lost, {twice}",
        met,
        "" if met else _why_short(measured, jobs),
    )


def _why_short(ours: dict[str, Any], jobs: int) -> str:
    """Why ours did not complete every job, from what the soak saw."""
    lookups = ours["faults_by_operation"].get("list_requests_by_endpoint", 0)
    return (
        f"{jobs - ours['completed']} jobs short: {ours['lost']} lost (queued, the caller never got the id), "
        f"{ours['id_held']} queued with the id held but no result, {ours['held_twice']} held twice, "
        f"{ours['not_submitted']} never queued, {ours['hung']} hung. Errors surfaced: {ours['errors_by_type']}. "
        "The errors are submits whose answer was lost (dropped or cut after sending, a 502/503 of unclear origin): "
        "fal_kontext sends such a submit again only when the request list proves nothing was queued, and otherwise "
        "raises SubmitOutcomeUnknownError (the job may exist)."
        + (
            f" Its lookups in the request list meet the same {RATE:.0%} faults ({lookups} of those calls were "
            "faulted here); a lookup that cannot conclude ends in that error rather than a guess."
            if lookups
            else ""
        )
    )
