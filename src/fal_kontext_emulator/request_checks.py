"""Checks of what a submit sends that the spec's schema cannot express: size, content type, JSON, inputs."""

from __future__ import annotations

import ipaddress
import json
import math
import urllib.parse
from typing import Any

from starlette.requests import Request

from fal_kontext_emulator.images import InputImageError, decode_data_uri
from fal_kontext_emulator.operations import Problem

JsonObject = dict[str, Any]
Location = tuple[str | int, ...]


async def read_body(request: Request, limit: int) -> bytes | None:
    """The body, or None when it is over `limit` bytes (read no further than that)."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        return None
    chunks = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


def content_type_problem(content_type_header: str | None) -> Problem | None:
    """A problem when the body is declared as anything but JSON (no header means JSON, as fal accepts)."""
    content_type = (content_type_header or "application/json").split(";")[0].strip().lower()
    if content_type == "application/json":
        return None
    return Problem(("body",), f"Content-Type must be application/json, not {content_type!r}", "model_attributes_type")


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"{text} is out of range for a number")
    return value


def decode_json(raw: bytes) -> tuple[Any, Problem | None]:
    """The decoded body, or the problem that makes it invalid JSON (NaN, lone surrogates, too deep)."""
    try:
        body = json.loads(raw, parse_constant=_reject_constant, parse_float=_finite_float)
        # A lone surrogate ("\ud800") decodes but can never be written back out: refuse it now, not as a 500 later.
        json.dumps(body, ensure_ascii=False).encode("utf-8")
    except RecursionError:
        return None, Problem(("body",), "JSON decode error: nested too deeply", "json_invalid")
    except ValueError as err:
        position = getattr(err, "pos", 0)
        return None, Problem(("body", position), f"JSON decode error: {err}", "json_invalid")
    return body, None


def input_urls(arguments: JsonObject, image_field: str | None) -> list[tuple[Location, str]]:
    """Each input image URL with its location: none for text-to-image, one for `image_url`, a list otherwise."""
    if image_field is None or image_field not in arguments:
        return []
    value = arguments[image_field]
    if isinstance(value, list):
        return [(("body", image_field, index), url) for index, url in enumerate(value)]
    return [(("body", image_field), value)]


def data_uri_problems(arguments: JsonObject, image_field: str | None, max_bytes: int) -> list[Problem]:
    """Malformed or oversized data URIs: visibly bad input, refused at submit."""
    problems = []
    for loc, url in input_urls(arguments, image_field):
        if url.startswith("data:"):
            try:
                decode_data_uri(url, max_bytes)
            except InputImageError as err:
                problems.append(Problem(loc, err.message, err.kind))
    return problems


def webhook_problem(url: str) -> Problem | None:
    """Why `fal_webhook` is refused, or None: the emulator calls loopback receivers only."""
    loc = ("query", "fal_webhook")
    parsed = urllib.parse.urlsplit(url)
    if parsed.scheme not in {"http", "https"} or not parsed.hostname:
        return Problem(loc, "fal_webhook must be an absolute http:// or https:// URL", "url_parsing")
    if not is_loopback_host(parsed.hostname):
        return Problem(
            loc,
            "The emulator delivers webhooks only to loopback addresses: an IP literal in 127.0.0.0/8 or ::1, "
            "or localhost",
            "value_error",
        )
    return None


def is_loopback_host(host: str) -> bool:
    """Whether a URL host is loopback without any name lookup: `localhost`, or a loopback IP literal.

    The emulator never calls out of the machine. A name is never trusted by its look (`127.evil.example`,
    `127.0.0.1.nip.io` resolve wherever their owner likes); only `localhost`, which resolvers answer locally.
    """
    if host.lower().rstrip(".") == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
