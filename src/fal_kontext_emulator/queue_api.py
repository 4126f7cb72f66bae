"""fal's queue API, as the spec's operations: routing, fault injection, auth and parameter checks, then submit/
status/stream/result/cancel, each answering as fal does; and fal's synchronous endpoint, under `/sync`."""

from __future__ import annotations

import dataclasses
import urllib.parse
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.types import Receive, Scope, Send

from fal_kontext_emulator.fal_bodies import STILL_IN_PROGRESS, validation_error
from fal_kontext_emulator.fault_injection import after_handling, before_handling
from fal_kontext_emulator.http_replies import detail_reply, json_reply, unauthorized
from fal_kontext_emulator.operations import Operation, Problem
from fal_kontext_emulator.outputs import Outputs
from fal_kontext_emulator.request_checks import (
    content_type_problem,
    data_uri_problems,
    decode_json,
    read_body,
    webhook_problem,
)
from fal_kontext_emulator.request_queue import QueuedRequest
from fal_kontext_emulator.state import EmulatorState, body_fingerprint
from fal_kontext_emulator.status_stream import status_events, until_completed

# fal's synchronous host (`https://fal.run`, https://docs.fal.ai/model-endpoints/synchronous-requests) is
# served under this path prefix: point `fal_client.run` at it with FAL_RUN_HOST=<host:port>/sync.
SYNC_PREFIX = "/sync"


Handler = Callable[[Request, Operation, str, dict[str, Any]], Awaitable[Response]]
# What routing found: the operation and its path parameters, or None and the methods the path allows.
Routed = tuple[Operation, dict[str, str]] | tuple[None, list[str]]


class SpecEndpoints:
    """Handlers of the spec's operations, dispatched by a catch-all ASGI app."""

    def __init__(self, state: EmulatorState, outputs: Outputs) -> None:
        self.state = state
        self.outputs = outputs
        # operationId -> (fault group, handler)
        handlers: dict[str, tuple[str, Handler]] = {
            "get_request_status": ("status", self.status),
            "stream_request_status": ("stream", self.stream),
            "get_request_result": ("result", self.result),
            "cancel_request": ("cancel", self.cancel),
        }
        submits = {endpoint.operation_id for endpoint in state.endpoints.values()}
        self._handlers: dict[str, tuple[str, Handler]] = {}
        for operation in state.routes.operations:
            if operation.operation_id in submits:
                self._handlers[operation.operation_id] = ("submit", self.submit)
            elif operation.operation_id in handlers:
                self._handlers[operation.operation_id] = handlers[operation.operation_id]
            else:
                raise RuntimeError(
                    f"the spec has an operation the emulator does not implement: {operation.operation_id}"
                )
        # Each submit also answers synchronously under SYNC_PREFIX, as its own operation (own counters).
        self._synchronous = {
            operation.operation_id: dataclasses.replace(
                operation, operation_id=f"sync_{operation.operation_id}", path=SYNC_PREFIX + operation.path
            )
            for operation in state.routes.operations
            if operation.operation_id in submits
        }
        for synchronous in self._synchronous.values():
            self._handlers[synchronous.operation_id] = ("sync", self.run)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        request = Request(scope, receive)
        response = await self.dispatch(request, self.route(request))
        await response(scope, receive, send)

    def route(self, request: Request) -> Routed:
        """The operation a request addresses, matched on the path as sent: a request id may hold an encoded
        "/" (or a newline), which must stay inside its segment."""
        raw_path = request.scope.get("raw_path")
        path = raw_path.decode("latin-1") if raw_path else urllib.parse.quote(request.url.path)
        if not path.startswith(SYNC_PREFIX + "/"):
            return self.state.routes.match(request.method, path)
        routed = self.state.routes.match(request.method, path.removeprefix(SYNC_PREFIX))
        if routed[0] is None:
            return routed
        synchronous = self._synchronous.get(routed[0].operation_id)
        return (synchronous, routed[1]) if synchronous is not None else (None, [])

    async def dispatch(self, request: Request, routed: Routed) -> Response:
        """Inject faults, authenticate, validate, then run the operation."""
        state = self.state
        operation, found = routed
        if operation is None:
            if found:
                return detail_reply(405, f"Method {request.method} not allowed", {"Allow": ", ".join(found)})
            return detail_reply(404, f"Path {request.url.path} not found")
        assert isinstance(found, dict)
        path_params = {name: urllib.parse.unquote(value) for name, value in found.items()}
        state.counters.calls[operation.operation_id] += 1
        if "request_id" in path_params:
            state.counters.by_request[path_params["request_id"]][operation.operation_id] += 1
        group, handler = self._handlers[operation.operation_id]
        fault, instead = await before_handling(state, operation.operation_id, group)
        if instead is not None:
            return instead
        owner = state.owner_of(request.headers.get("authorization"))
        if owner is None:
            return unauthorized(request.headers.get("authorization"))
        params, problems = operation.check_parameters(path_params, request.query_params, request.headers)
        if problems:
            return json_reply(422, validation_error(problems))
        response = await handler(request, operation, owner, params)
        state.persist()
        return after_handling(fault, response)

    async def submit(self, request: Request, operation: Operation, owner: str, params: dict[str, Any]) -> Response:
        """Queue a request (every submit operation of the spec)."""
        queued = await self._accept(request, operation, owner, params)
        if isinstance(queued, Response):
            return queued
        answer = {**self.state.status_of(queued, with_logs=False), "gateway_request_id": queued.request_id}
        return json_reply(200, answer, {"x-fal-request-id": queued.request_id})

    async def run(self, request: Request, operation: Operation, owner: str, params: dict[str, Any]) -> Response:
        """fal's synchronous endpoint (`POST https://fal.run/<endpoint-id>`, served under SYNC_PREFIX): the
        request runs like a queued one (runners, run time, failures) and the answer is what its result would be."""
        if params.get("fal_webhook") is not None:
            # fal documents webhooks for the queue only; refusing one here is our choice.
            problem = Problem(("query", "fal_webhook"), "fal_webhook is for the queue API, not fal.run", "value_error")
            return json_reply(422, validation_error([problem]))
        queued = await self._accept(request, operation, owner, params)
        if isinstance(queued, Response):
            return queued
        await until_completed(self.state, queued)
        status, body, extra = await self.outputs.outcome_of(queued)
        return json_reply(status, body, {"x-fal-request-id": queued.request_id, **extra})

    async def _accept(
        self, request: Request, operation: Operation, owner: str, params: dict[str, Any]
    ) -> QueuedRequest | Response:
        """Validate a submit and queue it; the queued request, or the error answer."""
        state = self.state
        raw = await read_body(request, state.config.max_body_bytes)
        if raw is None:
            return detail_reply(413, f"Request body is larger than {state.config.max_body_bytes} bytes")
        bad_type = content_type_problem(request.headers.get("content-type"))
        if bad_type is not None:
            return json_reply(422, validation_error([bad_type]))
        body, bad_json = decode_json(raw)
        if bad_json is not None:
            return json_reply(422, validation_error([bad_json]))
        problems = operation.check_body(body)
        if not problems:
            image_field = state.endpoints[operation.endpoint_id].image_field
            problems = data_uri_problems(body, image_field, state.config.max_data_uri_bytes)
        webhook = params.get("fal_webhook")
        if webhook is not None and (refused := webhook_problem(webhook)) is not None:
            problems.append(refused)
        if problems:
            return json_reply(422, validation_error(problems))
        base = state.config.public_base_url or str(request.base_url)
        queued = state.queue.submit(
            request_id=str(uuid.uuid4()),
            owner=owner,
            endpoint_id=operation.endpoint_id,
            arguments=body,
            now=state.now(),
            base_url=base.rstrip("/"),
            priority=params.get("X-Fal-Queue-Priority", "normal"),
            start_timeout=params.get("X-Fal-Request-Timeout"),
            webhook_url=webhook,
        )
        state.count_submit(owner, body_fingerprint(body))
        # A new request changes no other request's status or queue position (positions count only requests
        # submitted earlier), so open status streams need not wake.
        state.notify(streams=False)
        return queued

    async def status(self, request: Request, operation: Operation, owner: str, params: dict[str, Any]) -> Response:
        """The status of a request: 202 while waiting or running, 200 once COMPLETED."""
        state = self.state
        found = self._find(params, owner)
        if found is None:
            return detail_reply(404, "Request not found")
        body = state.status_of(found, with_logs=params.get("logs") in {"1", "true"})
        code = 200 if found.status == "COMPLETED" else 202
        return json_reply(code, body, {"x-fal-request-id": found.request_id})

    async def stream(self, request: Request, operation: Operation, owner: str, params: dict[str, Any]) -> Response:
        """Server-sent status events: one per change, keep-alive comments, closed after COMPLETED."""
        state = self.state
        found = self._find(params, owner)
        if found is None:
            return detail_reply(404, "Request not found")
        with_logs = params.get("logs") in {"1", "true"}
        headers = {"x-fal-request-id": found.request_id, "Cache-Control": "no-cache"}
        events = status_events(state, found, with_logs)
        return StreamingResponse(events, media_type="text/event-stream", headers=headers)

    async def result(self, request: Request, operation: Operation, owner: str, params: dict[str, Any]) -> Response:
        """The output of a completed request, or the error it ended with."""
        found = self._find(params, owner)
        if found is None:
            return detail_reply(404, "Request not found")
        headers = {"x-fal-request-id": found.request_id}
        if found.status != "COMPLETED":
            return json_reply(400, STILL_IN_PROGRESS, headers)
        status, body, extra = await self.outputs.outcome_of(found)
        return json_reply(status, body, {**headers, **extra})

    def _find(self, params: dict[str, Any], owner: str) -> QueuedRequest | None:
        """The request the path names, if this key submitted it to an endpoint of the app the path names: fal serves
        a request's status, result and cancel under its endpoint's own app only."""
        state = self.state
        found = state.queue.get(params["request_id"], owner, state.now())
        if found is None or state.endpoints[found.endpoint_id].app != f"{params['owner']}/{params['app']}":
            return None
        return found

    async def cancel(self, request: Request, operation: Operation, owner: str, params: dict[str, Any]) -> Response:
        """Cancel a request: 202 CANCELLATION_REQUESTED, 400 ALREADY_COMPLETED or 404 NOT_FOUND."""
        state = self.state
        if self._find(params, owner) is None:
            return json_reply(404, {"status": "NOT_FOUND"})
        outcome = state.queue.cancel(params["request_id"], owner, state.now())
        state.notify()
        code = {"CANCELLATION_REQUESTED": 202, "ALREADY_COMPLETED": 400, "NOT_FOUND": 404}[outcome]
        headers = {"x-fal-request-id": params["request_id"]} if outcome != "NOT_FOUND" else {}
        return json_reply(code, {"status": outcome}, headers)
