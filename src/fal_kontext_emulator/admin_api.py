"""The emulator's own controls under /_emulator (faults, counters, clock, requests, webhooks). Not fal's API."""

from __future__ import annotations

import math

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from fal_kontext_emulator.fault_rules import FaultRule, FaultSyntaxError
from fal_kontext_emulator.http_replies import detail_reply, json_reply
from fal_kontext_emulator.state import EmulatorState

ADMIN_PREFIX = "/_emulator"


class AdminEndpoints:
    """Handlers of the admin API; `routes()` lists them for mounting under ADMIN_PREFIX."""

    def __init__(self, state: EmulatorState) -> None:
        self.state = state

    def routes(self) -> list[BaseRoute]:
        """The admin routes, relative to ADMIN_PREFIX."""
        return [
            Route("/health", self.health, methods=["GET"]),
            Route("/faults", self.faults, methods=["GET", "POST", "DELETE"]),
            Route("/counters", self.counters, methods=["GET", "DELETE"]),
            Route("/clock", self.clock, methods=["GET", "POST"]),
            Route("/requests", self.requests, methods=["GET"]),
            Route("/webhooks", self.webhooks, methods=["GET"]),
            Route("/settings", self.settings, methods=["GET", "PATCH"]),
            Route("/uploads", self.uploads, methods=["GET"]),
        ]

    async def health(self, request: Request) -> Response:
        """Liveness: 200 {"status": "ok"}."""
        return json_reply(200, {"status": "ok"})

    async def faults(self, request: Request) -> Response:
        """GET lists the rules, POST adds one (JSON, see fault_rules.py), DELETE removes all."""
        plan = self.state.faults
        if request.method == "POST":
            try:
                rule = FaultRule.from_json(await request.json())
            except (ValueError, FaultSyntaxError) as err:
                return detail_reply(422, str(err))
            plan.add(rule)
            return json_reply(201, rule.as_json())
        if request.method == "DELETE":
            plan.clear()
        return json_reply(200, {"rules": [rule.as_json() for rule in plan.rules]})

    async def counters(self, request: Request) -> Response:
        """GET the counters; DELETE resets them."""
        if request.method == "DELETE":
            self.state.reset_counters()
        return json_reply(200, self.state.counters.as_json())

    async def requests(self, request: Request) -> Response:
        """GET every request the emulator holds: its times and the calls made for it (for benchmarks).

        Times are queue seconds; add `clock_offset` to get the emulator's clock (`time.monotonic()` under
        `run_emulator` and `fal-kontext mock`, which is system-wide on Linux).
        """
        state = self.state
        by_request = state.counters.by_request
        held = {
            rid: {
                "submitted_at": queued.submitted_at,
                "started_at": queued.started_at,
                "completed_at": queued.completed_at,
                "calls": dict(by_request.get(rid, {})),
            }
            for rid, queued in state.queue.requests.items()
        }
        return json_reply(200, {"clock_offset": state.clock_offset(), "requests": held})

    async def clock(self, request: Request) -> Response:
        """POST {"advance": seconds} moves queue time forward (for tests against a running emulator)."""
        if request.method == "POST":
            try:
                data = await request.json()
                seconds = float(data["advance"])
            except (ValueError, KeyError, TypeError) as err:
                return detail_reply(422, f'send {{"advance": <seconds >= 0>}}: {err}')
            if not math.isfinite(seconds) or seconds < 0:
                return detail_reply(422, '"advance" must be a finite number of seconds >= 0')
            self.state.offset += seconds
            self.state.queue.advance(self.state.now())
            self.state.persist(always=True)
            self.state.notify()
        return json_reply(200, {"now": self.state.now()})

    async def webhooks(self, request: Request) -> Response:
        """GET every webhook delivery attempt (most recent 1000)."""
        return json_reply(200, [attempt.as_json() for attempt in self.state.webhooks.deliveries])

    async def settings(self, request: Request) -> Response:
        """GET the settings changeable at run time; PATCH some of them, e.g. `{"remote_images": "refuse"}`."""
        if request.method == "PATCH":
            try:
                data = await request.json()
            except ValueError as err:
                return detail_reply(422, f"send a JSON object: {err}")
            problems = self.state.settings.update(data)
            if problems:
                return detail_reply(422, "; ".join(problems))
        return json_reply(200, self.state.settings.as_json())

    async def uploads(self, request: Request) -> Response:
        """GET every file held by the storage endpoints (no bytes): id, owner fingerprint, name, type, size,
        times (queue seconds) and lifecycle."""
        return json_reply(200, {"uploads": self.state.uploads.listing(self.state.now())})
