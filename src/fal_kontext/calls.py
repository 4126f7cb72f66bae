"""What both drivers share to execute a ``Call``: which generated operation, and how outcomes are normalised."""

from __future__ import annotations

from collections.abc import Mapping
from contextvars import ContextVar
from types import ModuleType
from typing import Any

import httpx
from fal_kontext_api.api.edit import submit_kontext, submit_kontext_max, submit_kontext_max_multi, submit_kontext_multi
from fal_kontext_api.api.queue import cancel_request, get_request_result, get_request_status
from fal_kontext_api.types import Response

from .endpoints import Endpoint
from .errors import APIConnectionError, NotFoundError, UnexpectedResponseError
from .queue import Answer, Call, NoAnswer
from .retry import Operation

__all__ = ["call_arguments", "captured_responses", "no_answer", "operation_module"]

_SUBMITS: dict[Endpoint, ModuleType] = {
    Endpoint.PRO: submit_kontext,
    Endpoint.MAX: submit_kontext_max,
    Endpoint.PRO_MULTI: submit_kontext_multi,
    Endpoint.MAX_MULTI: submit_kontext_max_multi,
}
_QUEUE: dict[Operation, ModuleType] = {
    Operation.STATUS: get_request_status,
    Operation.RESULT: get_request_result,
    Operation.CANCEL: cancel_request,
}

# The generated operations parse the body before returning; when the body is not what the spec says (an HTML 502
# from a gateway, an aggregator's own error envelope) they raise and the status code is lost. A response event hook
# keeps the raw response of the call in flight here, so such answers are still mapped by status code.
captured_responses: ContextVar[list[httpx.Response] | None] = ContextVar("captured_responses", default=None)


def remember_response(response: httpx.Response) -> None:
    """httpx response hook (sync clients)."""
    box = captured_responses.get()
    if box is not None:
        box.append(response)


async def aremember_response(response: httpx.Response) -> None:
    """httpx response hook (async clients)."""
    remember_response(response)


def operation_module(call: Call) -> ModuleType:
    """The generated module that performs ``call``."""
    if call.operation is Operation.SUBMIT:
        assert call.endpoint is not None
        return _SUBMITS[call.endpoint]
    return _QUEUE[call.operation]


def call_arguments(call: Call) -> tuple[tuple[Any, ...], dict[str, Any]]:
    """Positional and keyword arguments (besides ``client``) of the generated ``*_detailed`` function."""
    positional = () if call.operation is Operation.SUBMIT else (call.request_id,)
    return positional, dict(call.kwargs)


def _redacted(content: bytes, headers: Mapping[str, str], secret: str | None) -> tuple[bytes, Mapping[str, str]]:
    """Body and headers with the secret replaced, should a server echo it (error messages quote both)."""
    if not secret:
        return content, headers
    token = secret.encode("utf-8")
    if token in content:
        content = content.replace(token, b"***")
    if any(secret in value for value in headers.values()):
        headers = {name: value.replace(secret, "***") for name, value in headers.items()}
    return content, headers


def answer(response: Response[Any], secret: str | None) -> Answer:
    """A generated ``Response`` as an ``Answer`` (the secret redacted from body and headers)."""
    content, headers = _redacted(response.content, response.headers, secret)
    return Answer(int(response.status_code), headers, content, response.parsed)


def raw_answer(response: httpx.Response, secret: str | None) -> Answer:
    """An httpx response whose body the generated parser could not read, as an ``Answer`` without ``parsed``."""
    content, headers = _redacted(response.content, response.headers, secret)
    return Answer(response.status_code, headers, content, None)


def no_answer(error: httpx.HTTPError) -> NoAnswer:
    """An httpx exception as ``NoAnswer``; ``reached_server`` is False only when nothing can have been sent."""
    never_sent = isinstance(
        error, (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout, httpx.UnsupportedProtocol)
    )
    timed_out = isinstance(error, httpx.TimeoutException)
    name = type(error).__name__
    text = str(error) or "no detail"
    return NoAnswer(f"{name}: {text}", reached_server=not never_sent, timed_out=timed_out)


def download_failed(url: str, request_id: str, error: httpx.HTTPError) -> APIConnectionError:
    """The error for an image download that got no answer."""
    return APIConnectionError(
        f"could not download {url} (request {request_id}): {no_answer(error).error}. Check the network and retry",
        request_id=request_id,
    )


def downloaded(response: httpx.Response, url: str, request_id: str) -> tuple[str | None, bytes]:
    """The content type and bytes of an image download, or the typed error for a failed one."""
    if response.status_code in (403, 404, 410):
        raise NotFoundError(
            f"image {url} is gone",
            status_code=response.status_code,
            request_id=request_id,
            hint="fal's result URLs expire; save results as soon as they complete",
        )
    if response.status_code >= 400:
        raise UnexpectedResponseError(f"downloading {url} answered {response.status_code}", request_id=request_id)
    return response.headers.get("content-type"), response.content
