"""Fault injection around a handler: what happens before the call is handled, and to its answer after, and the
answers an injected fault gives (fal's error shapes, an nginx page, a dropped or cut connection)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Mapping
from typing import Any

from starlette.responses import Response, StreamingResponse
from starlette.types import Receive, Scope, Send

from fal_kontext_emulator.fault_rules import Fault
from fal_kontext_emulator.http_replies import detail_reply, json_reply
from fal_kontext_emulator.state import EmulatorState


class ConnectionDropped(Exception):
    """Raised after a response has started, so the server closes the connection without finishing it."""


class DroppedResponse(Response):
    """Starts a response promising a body, then fails: the server closes the connection mid-answer."""

    def __init__(self) -> None:
        super().__init__(status_code=502)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 502, "headers": [(b"content-length", b"64")]})
        raise ConnectionDropped("fault injection: connection dropped")


def nginx_page(status: int, headers: Mapping[str, str] | None = None) -> Response:
    """What an nginx ingress answers; fal_client retries 502-504 only when it looks like this
    (its `_maybe_retry_request`: no x-fal-request-id and "nginx" in the body)."""
    page = f"<html><head><title>{status}</title></head><body><center>nginx</center></body></html>"
    return Response(page, status_code=status, media_type="text/html", headers=dict(headers or {}))


class CutResponse(Response):
    """The real answer's status and headers (with its x-fal-request-id), half its body, then a dropped
    connection: a forwarded-then-lost answer cut mid-body."""

    def __init__(self, answer: Response) -> None:
        super().__init__(status_code=answer.status_code)
        self._answer = answer

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        answer = self._answer
        body = b"" if isinstance(answer, StreamingResponse) else bytes(answer.body)
        await send({"type": "http.response.start", "status": answer.status_code, "headers": answer.raw_headers})
        await send({"type": "http.response.body", "body": body[: len(body) // 2], "more_body": True})
        raise ConnectionDropped("fault injection: answer cut mid-body")


def fault_reply(fault: Fault, request_id: str | None = None) -> Response:
    """The answer of an injected status fault (429 with Retry-After, 5xx JSON, or an nginx page).

    Args:
        fault: the fault.
        request_id: the id of a request that was handled (a forwarded-then-lost answer), sent as
            x-fal-request-id unless the fault has none; a random id when None.
    """
    headers: dict[str, str] = {}
    if fault.with_request_id:
        headers["x-fal-request-id"] = request_id or str(uuid.uuid4())
    if fault.ingress:
        return nginx_page(fault.status, headers)
    if fault.status == 429:
        headers["Retry-After"] = f"{fault.retry_after:g}" if fault.retry_after is not None else "1"
        return detail_reply(429, "Too many requests (injected fault)", headers)
    error_type = {503: "runner_scheduling_failure", 504: "startup_timeout"}.get(fault.status)
    body: dict[str, Any] = {"detail": f"Injected fault {fault.status}"}
    if error_type:
        body["error_type"] = error_type
        headers["X-Fal-Error-Type"] = error_type
    return json_reply(fault.status, body, headers)


async def before_handling(state: EmulatorState, operation_id: str, group: str) -> tuple[Fault | None, Response | None]:
    """Draw the call's fault and apply what comes before handling: latency, a slow answer, or an answer
    instead of handling it (a status fault, a drop). Returns the fault and that answer (None: handle the call)."""
    latency, fault = state.faults.next(operation_id, group)
    if latency:
        await asyncio.sleep(latency)
    if fault is None:
        return None, None
    state.counters.faults[operation_id] += 1
    if fault.kind == "drop":
        return fault, DroppedResponse()
    if fault.kind == "status":
        return fault, fault_reply(fault)
    if fault.kind == "slow":
        await asyncio.sleep(fault.delay)
    return fault, None


def after_handling(fault: Fault | None, response: Response) -> Response:
    """What a forwarded-then-lost fault makes of a handled call's answer (others leave it as it is)."""
    if fault is None:
        return response
    if fault.kind == "drop-after":
        return DroppedResponse()
    if fault.kind == "lost":
        return fault_reply(fault, response.headers.get("x-fal-request-id"))
    if fault.kind == "cut":
        return CutResponse(response)
    return response
