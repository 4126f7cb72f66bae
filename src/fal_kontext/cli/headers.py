"""``--headers``: transports that write each HTTP response's status line and headers (never the request's, which
carry the key), credentials redacted."""

from __future__ import annotations

import os
from collections.abc import Callable

import httpx

from fal_kontext.config import redact

from .logs import secrets_of

__all__ = ["AsyncHeaderEcho", "HeaderEcho"]


def _response_headers(request: httpx.Request, response: httpx.Response, secrets: tuple[str, ...]) -> str:
    """An answer's status line and headers (never the request's: they carry the key), ``secrets`` redacted."""
    lines = [f"< {response.status_code} {request.method} {request.url}"]
    text = "\n".join(lines + [f"< {name}: {value}" for name, value in response.headers.multi_items()])
    for secret in secrets:
        text = redact(text, secret)
    return text


class HeaderEcho(httpx.BaseTransport):
    """A transport that writes each response's status line and headers.

    Args:
        inner: The transport that sends.
        write: Where each block of lines goes.
    """

    def __init__(self, inner: httpx.BaseTransport, write: Callable[[str], None]) -> None:
        self.inner = inner
        self.write = write
        self.secrets = secrets_of(os.environ)

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        """Send, then write the answer's headers."""
        response = self.inner.handle_request(request)
        self.write(_response_headers(request, response, self.secrets))
        return response

    def close(self) -> None:
        """Close the inner transport."""
        self.inner.close()


class AsyncHeaderEcho(httpx.AsyncBaseTransport):
    """``HeaderEcho`` for ``AsyncKontext`` (batch)."""

    def __init__(self, inner: httpx.AsyncBaseTransport, write: Callable[[str], None]) -> None:
        self.inner = inner
        self.write = write
        self.secrets = secrets_of(os.environ)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        """Send, then write the answer's headers."""
        response = await self.inner.handle_async_request(request)
        self.write(_response_headers(request, response, self.secrets))
        return response

    async def aclose(self) -> None:
        """Close the inner transport."""
        await self.inner.aclose()
