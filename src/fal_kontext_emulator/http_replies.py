"""HTTP answers in fal's shapes: JSON with headers, `{"detail": ...}` errors, the 401 for a missing or wrong key."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from starlette.responses import JSONResponse


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
