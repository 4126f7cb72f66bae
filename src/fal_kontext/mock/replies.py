"""HTTP answers in fal's shapes: JSON bodies, `{"detail": ...}` errors and the injected faults' answers."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import Any

from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.types import Receive, Scope, Send

from fal_kontext.mock.faults import Fault


class ConnectionDropped(Exception):
    """Raised after a response has started, so the server closes the connection without finishing it."""


def json_reply(status: int, body: Any, headers: Mapping[str, str] | None = None) -> JSONResponse:
    """A JSON answer with that status and headers."""
    return JSONResponse(body, status_code=status, headers=dict(headers or {}))


def detail_reply(status: int, message: str, headers: Mapping[str, str] | None = None) -> JSONResponse:
    """fal's error shape for everything but validation: `{"detail": "<message>"}`."""
    return json_reply(status, {"detail": message}, headers)


def unauthorized(authorization: str | None) -> JSONResponse:
    """fal's 401 for a missing or unknown key."""
    if authorization:
        return detail_reply(401, "Invalid key: the Authorization header carries a key this server does not accept")
    return detail_reply(401, "Authorization header is required: send Authorization: Key <your fal key>")


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
