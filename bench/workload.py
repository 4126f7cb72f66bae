"""One client's workload, run as its own process: `python -m bench.workload '<json spec>'`.

The parent starts this in a subprocess (pinned to the client CPU) so that the CPU time and peak memory it
reports are this client's alone. It prints one JSON document: per job the prompt, the request id, when the
result was held (`time.monotonic()`, CLOCK_MONOTONIC: system-wide on Linux, the clock the emulator uses too)
and any error surfaced to the caller; plus the CPU seconds and wall seconds of the workload and the process's
peak RSS. fal_client reads its hosts at import, so the parent sets FAL_QUEUE_RUN_HOST, FAL_RUN_HOST, FAL_KEY
and SSL_CERT_FILE in this process's environment (fal_client's `auth.py` reads the hosts into module constants,
https://github.com/fal-ai/fal/blob/main/projects/fal_client/src/fal_client/auth.py, and `client.py` builds
`https://{FAL_QUEUE_RUN_HOST}/` from them). For our client the report also says which waiting and pooling
defaults the installed `fal_kontext` has ("defaults"), so a section measuring "ours with its defaults" records
what those were.
"""

from __future__ import annotations

import asyncio
import json
import resource
import ssl
import sys
import time
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

ENDPOINT = "fal-ai/flux-pro/kontext"
# A tiny PNG (8x8, one colour): inputs are inline data URIs, the emulator never fetches outside URLs.
IMAGE = (
    "data:image/png;base64,"
    "iVBORw0KGgoAAAANSUhEUgAAAAgAAAAICAIAAABLbSncAAAAFElEQVR4nGM8ISfHgA0wYRUdtBIA0MoBFD5jqJkAAAAASUVORK5CYII="
)

Job = dict[str, Any]


def job_input(prompt: str) -> dict[str, object]:
    """The body every client submits for one job: the prompt makes it unique; the fixed seed makes every output
    the same image, which the emulator renders once and then serves from its cache (fal stores a result when the
    job completes; rendering a 1 MP JPEG on each first read would add ~10 ms of emulator CPU to every job)."""
    return {"prompt": prompt, "image_url": IMAGE, "seed": 42}


def _record(prompt: str) -> Job:
    return {
        "prompt": prompt,
        "request_id": None,
        "held_at": None,
        "error": None,
        "error_message": None,
        "error_reason": None,
        "error_typed": None,
        "error_request_id": None,
        "submit_error": False,
    }


def _error_name(err: BaseException) -> str:
    status = getattr(err, "status_code", None)
    return f"{type(err).__name__}({status})" if status is not None else type(err).__name__


def _fail(job: Job, err: BaseException) -> None:
    """Record the error the caller got: its name, whether it is the client's own (typed) error, and the request id
    it carries, if any (ours: `request_id`; fal_client: its response's x-fal-request-id header)."""
    job["error"] = _error_name(err)
    job["error_message"] = str(err)[:300]
    # SubmitOutcomeUnknownError says why the job's fate is unknown (the recovery's verdict): grouped by the soak.
    reason = getattr(err, "reason", None)
    job["error_reason"] = reason if isinstance(reason, str) else None
    job["error_typed"] = type(err).__module__.split(".")[0] in {"fal_kontext", "fal_client"}
    headers = getattr(getattr(err, "response", None), "headers", None)
    header = headers.get("x-fal-request-id") if headers is not None else None
    job["error_request_id"] = getattr(err, "request_id", None) or header


# -- our client ------------------------------------------------------------------------------------------------


def ours_sequential(spec: dict[str, Any]) -> list[Job]:
    from fal_kontext import Kontext

    jobs = []
    verify = ssl.create_default_context(cafile=spec["ca_file"])
    with Kontext(
        spec["key"], base_url=spec["base_url"], stream_status=spec["stream"], httpx_args={"verify": verify}
    ) as kontext:
        for prompt in spec["prompts"]:
            job = _record(prompt)
            try:
                result = kontext.run(ENDPOINT, job_input(prompt))
                job["held_at"] = time.monotonic()
                job["request_id"] = result.request_id
            except Exception as err:
                _fail(job, err)
            jobs.append(job)
    return jobs


def _recovery_option(spec: dict[str, Any]) -> dict[str, Any]:
    """The client's `recovery=` argument from the spec's "recovery": absent = the client's default, "off" = a policy
    that never looks up, else the keyword arguments of a `RecoveryPolicy`."""
    from fal_kontext import RecoveryPolicy

    recovery = spec.get("recovery")
    if recovery is None:
        return {}
    return {"recovery": RecoveryPolicy(look_up=False) if recovery == "off" else RecoveryPolicy(**recovery)}


def _client_options(spec: dict[str, Any]) -> dict[str, Any]:
    """`Kontext`/`AsyncKontext` arguments for a concurrent workload: the emulator, its CA, and the recovery asked."""
    verify = ssl.create_default_context(cafile=spec["ca_file"])
    return {
        "key": spec["key"],
        "base_url": spec["base_url"],
        "stream_status": spec["stream"],
        "httpx_args": {"verify": verify},
        **_recovery_option(spec),
    }


def _submit_failed(job: Job, err: BaseException) -> Job:
    _fail(job, err)
    job["submit_error"] = True
    return job


def ours_threaded(spec: dict[str, Any]) -> list[Job]:
    """`Kontext` shared by `concurrency` threads, each job `submit` then `wait` (as the async workload does)."""
    from concurrent.futures import ThreadPoolExecutor, wait

    from fal_kontext import Kontext

    with Kontext(**_client_options(spec)) as kontext:

        def one(prompt: str) -> Job:
            job = _record(prompt)
            try:
                handle = kontext.submit(ENDPOINT, job_input(prompt))
            except Exception as err:
                return _submit_failed(job, err)
            job["request_id"] = handle.request_id
            try:
                handle.wait()
                job["held_at"] = time.monotonic()
            except Exception as err:
                _fail(job, err)
            return job

        with ThreadPoolExecutor(max_workers=spec.get("concurrency") or len(spec["prompts"])) as pool:
            futures = [pool.submit(one, prompt) for prompt in spec["prompts"]]
            # A thread cannot be cancelled: past the deadline the unfinished jobs are reported and left to end.
            wait(futures, timeout=spec.get("deadline_s"))
            return [
                future.result() if future.done() else {**_record(prompt), "error": "unfinished at the deadline"}
                for future, prompt in zip(futures, spec["prompts"], strict=True)
            ]


async def ours_concurrent(spec: dict[str, Any]) -> list[Job]:
    from fal_kontext import AsyncKontext

    limit = asyncio.Semaphore(spec.get("concurrency") or len(spec["prompts"]))

    async with AsyncKontext(**_client_options(spec)) as kontext:

        async def one(prompt: str) -> Job:
            job = _record(prompt)
            async with limit:
                try:
                    handle = await kontext.submit(ENDPOINT, job_input(prompt))
                except Exception as err:
                    return _submit_failed(job, err)
                job["request_id"] = handle.request_id
                try:
                    await handle.wait()
                    job["held_at"] = time.monotonic()
                except Exception as err:
                    _fail(job, err)
            return job

        return await _gather(spec, [one(p) for p in spec["prompts"]])


async def _gather(spec: dict[str, Any], work: list[Coroutine[Any, Any, Job]]) -> list[Job]:
    """Run every job at once; past `deadline_s` the unfinished ones are cancelled and reported as such."""
    tasks = [asyncio.ensure_future(job) for job in work]
    await asyncio.wait(tasks, timeout=spec.get("deadline_s"))
    jobs = []
    for task, prompt in zip(tasks, spec["prompts"], strict=True):
        if task.done():
            jobs.append(task.result())
        else:
            task.cancel()
            jobs.append({**_record(prompt), "error": "unfinished at the deadline"})
    await asyncio.gather(*tasks, return_exceptions=True)
    return jobs


# -- the bare reader (bench/bare_reader.py): the peer ------------------------------------------------------------


def bare_sequential(spec: dict[str, Any]) -> list[Job]:
    from .bare_reader import BareReader

    jobs = []
    verify = ssl.create_default_context(cafile=spec["ca_file"])
    with BareReader(spec["base_url"], spec["key"], verify) as reader:
        for prompt in spec["prompts"]:
            job = _record(prompt)
            try:
                submitted = reader.submit(ENDPOINT, job_input(prompt))
                job["request_id"] = submitted["request_id"]
                reader.wait(submitted)
                job["held_at"] = time.monotonic()
            except Exception as err:
                _fail(job, err)
                job["submit_error"] = job["request_id"] is None
            jobs.append(job)
    return jobs


async def bare_concurrent(spec: dict[str, Any]) -> list[Job]:
    from .bare_reader import AsyncBareReader

    verify = ssl.create_default_context(cafile=spec["ca_file"])
    limit = asyncio.Semaphore(spec.get("concurrency") or len(spec["prompts"]))
    async with AsyncBareReader(spec["base_url"], spec["key"], verify, spec.get("pools", 64)) as reader:

        async def one(prompt: str) -> Job:
            job = _record(prompt)
            http = reader.pool()
            async with limit:
                try:
                    submitted = await reader.submit(http, ENDPOINT, job_input(prompt))
                    job["request_id"] = submitted["request_id"]
                    result = await reader.wait(http, submitted)
                    if spec.get("fetch_images"):
                        for image in result["images"]:
                            (await http.get(image["url"])).raise_for_status()
                    job["held_at"] = time.monotonic()
                except Exception as err:
                    _fail(job, err)
                    job["submit_error"] = job["request_id"] is None
            return job

        return await _gather(spec, [one(p) for p in spec["prompts"]])


# -- fal_client -------------------------------------------------------------------------------------------------


def fal_sequential(spec: dict[str, Any]) -> list[Job]:
    import fal_client

    jobs = []
    for prompt in spec["prompts"]:
        job = _record(prompt)

        def enqueued(request_id: str, job: Job = job) -> None:
            job["request_id"] = request_id

        try:
            fal_client.subscribe(ENDPOINT, arguments=job_input(prompt), on_enqueue=enqueued)
            job["held_at"] = time.monotonic()
        except Exception as err:
            _fail(job, err)
            job["submit_error"] = job["request_id"] is None
        jobs.append(job)
    return jobs


async def fal_concurrent(spec: dict[str, Any]) -> list[Job]:
    import fal_client

    client = fal_client.AsyncClient()
    limit = asyncio.Semaphore(spec.get("concurrency") or len(spec["prompts"]))

    async def one(prompt: str) -> Job:
        job = _record(prompt)

        def enqueued(request_id: str) -> None:
            job["request_id"] = request_id

        async with limit:
            try:
                await client.subscribe(ENDPOINT, arguments=job_input(prompt), on_enqueue=enqueued)
                job["held_at"] = time.monotonic()
            except Exception as err:
                _fail(job, err)
                job["submit_error"] = job["request_id"] is None
        return job

    return await _gather(spec, [one(p) for p in spec["prompts"]])


def _run_async(work: Callable[[dict[str, Any]], Awaitable[list[Job]]]) -> Callable[[dict[str, Any]], list[Job]]:
    return lambda spec: asyncio.run(work(spec))  # type: ignore[arg-type]


CLIENTS: dict[str, Callable[[dict[str, Any]], list[Job]]] = {
    "ours-sync": ours_sequential,
    "ours-threads": ours_threaded,
    "ours-async": _run_async(ours_concurrent),
    "fal-sync": fal_sequential,
    "fal-async": _run_async(fal_concurrent),
    "bare-sync": bare_sequential,
    "bare-async": _run_async(bare_concurrent),
}


def ours_defaults() -> dict[str, str]:
    """What "ours with its defaults" means in this build: the defaults of the constructor arguments that decide how
    a job is waited for and how connections are pooled, as `repr`s, and the package version. Read from the public
    signatures, so it needs nothing private and describes a rewritten client as well (an argument it no longer has
    is left out)."""
    import inspect
    from importlib import metadata

    from fal_kontext import AsyncKontext, Kontext

    described = {"fal_kontext": metadata.version("fal-kontext")}
    for client in (Kontext, AsyncKontext):
        parameters = inspect.signature(client).parameters
        for name in ("poll", "stream_status", "connection_pools"):
            if name in parameters:
                described[f"{client.__name__}({name}=)"] = repr(parameters[name].default)
    return described


def main() -> None:
    spec = json.loads(sys.argv[1])
    # Import the client before measuring: start-up is not part of the per-job cost.
    if spec["client"].startswith("fal"):
        import fal_client  # noqa: F401
    elif spec["client"].startswith("bare"):
        import httpx  # noqa: F401
    else:
        import fal_kontext  # noqa: F401
    # With "warm_up", one job first, unmeasured, as the import above: what a process pays once (lazy imports,
    # first-use caches) is start-up, not per-job cost. It is reported apart ("warm_up_cpu_s").
    warm_up_cpu = 0.0
    if spec.get("warm_up"):
        before = resource.getrusage(resource.RUSAGE_SELF)
        CLIENTS[spec["client"]]({**spec, "prompts": [f"warm-up: {spec['prompts'][0]}"]})
        after = resource.getrusage(resource.RUSAGE_SELF)
        warm_up_cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    before = resource.getrusage(resource.RUSAGE_SELF)
    started = time.monotonic()
    jobs = CLIENTS[spec["client"]](spec)
    wall = time.monotonic() - started
    after = resource.getrusage(resource.RUSAGE_SELF)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    report = {
        "jobs": jobs,
        "cpu_s": cpu,
        "warm_up_cpu_s": warm_up_cpu,
        "wall_s": wall,
        "started_at": started,
        "max_rss_kib": after.ru_maxrss,
        # The peak before the measured jobs: the imports (and the warm-up job, if any).
        "start_rss_kib": before.ru_maxrss,
    }
    if spec["client"].startswith("ours"):
        report["defaults"] = ours_defaults()
    json.dump(report, sys.stdout)


if __name__ == "__main__":
    main()
