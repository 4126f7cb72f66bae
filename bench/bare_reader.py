"""The bare reader: a minimal correct queue client written straight on httpx, the peer our clients are measured
against. Submit, follow `GET {status_url}/stream` (server-sent events) until COMPLETED, read the stream to
its end (the server closes it after that event, so the connection goes back to the pool), then GET the result.

No retries, no validation, no models: the least work a correct client can do, so that "CPU per job of ours /
CPU per job of this" is the price of everything our client adds. Its async form spreads requests over `pools`
connection pools (`httpx.AsyncClient`s) sharing one TLS context: with hundreds of connections in one pool, httpx's
pool bookkeeping costs CPU per request that grows with them. How many pools is cheapest depends on the load, so the
concurrency bench (bench/concurrency.py) tries several and keeps the cheapest: its calibration rows in
docs/benchmarks.md show what each costs.
"""

from __future__ import annotations

import asyncio
import json
import ssl
from typing import Any

import httpx

COMPLETED = "COMPLETED"


class JobFailed(Exception):
    """The status stream ended without COMPLETED, or a call answered with an error status."""


# The same work as our client's default (`wait(logs=True)`): the stream carries each event's log lines.
LOGS = {"logs": "1"}


def _status_of(line: str) -> str | None:
    """The `status` of one `data:` line of the stream; None for comments, blank lines and other fields."""
    if not line.startswith("data:"):
        return None
    status: str = json.loads(line[5:])["status"]
    return status


def _submitted(response: httpx.Response) -> dict[str, Any]:
    if response.status_code != 200:
        raise JobFailed(f"submit answered {response.status_code}")
    body: dict[str, Any] = response.json()
    return body


def _result(response: httpx.Response) -> dict[str, Any]:
    if response.status_code != 200:
        raise JobFailed(f"result answered {response.status_code}")
    body: dict[str, Any] = response.json()
    return body


class BareReader:
    """Sync: one `httpx.Client`, so sequential jobs share one kept-alive connection."""

    def __init__(self, base_url: str, key: str, verify: ssl.SSLContext) -> None:
        headers = {"Authorization": f"Key {key}"}
        self._http = httpx.Client(base_url=base_url, headers=headers, verify=verify, timeout=60)

    def __enter__(self) -> BareReader:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._http.close()

    def submit(self, endpoint: str, arguments: dict[str, object]) -> dict[str, Any]:
        """POST the job; the queue's answer (request_id, status_url, response_url)."""
        return _submitted(self._http.post(f"/{endpoint}", json=arguments))

    def wait(self, submitted: dict[str, Any]) -> dict[str, Any]:
        """Follow the status stream to COMPLETED and to its end, then GET the result."""
        completed = False
        headers = {"Accept": "text/event-stream"}
        with self._http.stream("GET", submitted["status_url"] + "/stream", headers=headers, params=LOGS) as events:
            if events.status_code != 200:
                raise JobFailed(f"status stream answered {events.status_code}")
            for line in events.iter_lines():
                completed = completed or _status_of(line) == COMPLETED
        if not completed:
            raise JobFailed("the status stream ended before COMPLETED")
        return _result(self._http.get(submitted["response_url"]))


class AsyncBareReader:
    """Async: `pools` `httpx.AsyncClient`s sharing one TLS context; each job stays on one pool (round robin)."""

    def __init__(self, base_url: str, key: str, verify: ssl.SSLContext, pools: int) -> None:
        headers = {"Authorization": f"Key {key}"}
        self._pools = [
            httpx.AsyncClient(base_url=base_url, headers=headers, verify=verify, timeout=60) for _ in range(pools)
        ]
        self._next = 0

    async def __aenter__(self) -> AsyncBareReader:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await asyncio.gather(*(pool.aclose() for pool in self._pools))

    def pool(self) -> httpx.AsyncClient:
        """The next pool, round robin: a job keeps it from submit to result."""
        self._next = (self._next + 1) % len(self._pools)
        return self._pools[self._next]

    @staticmethod
    async def submit(http: httpx.AsyncClient, endpoint: str, arguments: dict[str, object]) -> dict[str, Any]:
        """POST the job; the queue's answer (request_id, status_url, response_url)."""
        return _submitted(await http.post(f"/{endpoint}", json=arguments))

    @staticmethod
    async def wait(http: httpx.AsyncClient, submitted: dict[str, Any]) -> dict[str, Any]:
        """Follow the status stream to COMPLETED and to its end, then GET the result."""
        completed = False
        headers = {"Accept": "text/event-stream"}
        async with http.stream("GET", submitted["status_url"] + "/stream", headers=headers, params=LOGS) as events:
            if events.status_code != 200:
                raise JobFailed(f"status stream answered {events.status_code}")
            async for line in events.aiter_lines():
                completed = completed or _status_of(line) == COMPLETED
        if not completed:
            raise JobFailed("the status stream ended before COMPLETED")
        return _result(await http.get(submitted["response_url"]))
