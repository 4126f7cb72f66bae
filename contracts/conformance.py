"""Check real HTTP exchanges against specs/openapi.yaml: what a client sent, and what it got back.

`ConformanceRecorder` is an httpx transport (sync and async) that wraps the real one. Every request
that passes through is matched to its operation in the spec and checked (path, query and header
parameters, JSON body); every response is checked by schemathesis against the documented statuses,
headers and schemas, streamed bodies (the SSE status stream) included, once the client has read them.
Requests outside the spec (image downloads from the emulator's `/files/`) are listed, not judged.
"""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import schemathesis
import yaml
from openapi_schema_validator import OAS30Validator
from schemathesis.config import SchemathesisConfig
from schemathesis.core.failures import FailureGroup

from fal_kontext.spec import resolve

SPEC_PATH = Path(__file__).resolve().parent.parent / "specs" / "openapi.yaml"


@dataclass
class Exchange:
    """One request and its response, with what did not conform."""

    operation_id: str | None
    method: str
    path: str
    status: int
    problems: list[str] = field(default_factory=list)


class SpecIndex:
    """The spec, loaded once, with lookups by method and concrete path."""

    def __init__(self, path: Path = SPEC_PATH) -> None:
        self.document: dict[str, Any] = yaml.safe_load(path.read_text(encoding="utf-8"))
        # An explicit config: otherwise schemathesis reads ./schemathesis.toml, which needs ${FAL_KEY}.
        self.schema = schemathesis.openapi.from_dict(self.document, config=SchemathesisConfig.from_dict({}))
        self._components = self.document.get("components", {})

    def _validator(self, schema: dict[str, Any]) -> OAS30Validator:
        return OAS30Validator({"allOf": [schema], "components": self._components})

    def check_schema(self, component: str, value: Any) -> list[str]:
        """What about `value` does not fit the spec's component schema `component`."""
        schema = {"$ref": f"#/components/schemas/{component}"}
        return [
            f"{component} {'/'.join(map(str, e.absolute_path)) or '(root)'}: {e.message}"
            for e in self._validator(schema).iter_errors(value)
        ]

    def parameters(self, method: str, template: str) -> list[dict[str, Any]]:
        item = self.document["paths"][template]
        both = item.get("parameters", []) + item[method.lower()].get("parameters", [])
        return [resolve(p, self.document) for p in both]

    def check_request(self, request: httpx.Request) -> tuple[str | None, list[str]]:
        """The operationId a request maps to, and what about it does not fit the spec."""
        operation = self.schema.find_operation_by_path(request.method, request.url.path)
        if operation is None:
            return None, []
        template = operation.path
        raw = self.document["paths"][template][request.method.lower()]
        problems: list[str] = []
        documented = self.parameters(request.method, template)
        for name, text in request.url.params.multi_items():
            spec = next((p for p in documented if p["in"] == "query" and p["name"] == name), None)
            if spec is None:
                problems.append(f"query parameter {name!r} is not in the spec")
            else:
                problems += [
                    f"query {name}={text!r}: {e.message}" for e in self._validator(spec["schema"]).iter_errors(text)
                ]
        problems += self._header_problems(request, documented)
        if not request.headers.get("authorization", "").startswith(("Key ", "Bearer ")):
            problems.append("no Authorization: Key/Bearer header")
        body_spec = raw.get("requestBody", {}).get("content", {}).get("application/json")
        if body_spec is not None:
            try:
                body = json.loads(request.content)
            except ValueError:
                problems.append("request body is not JSON")
            else:
                problems += [
                    f"body {'/'.join(map(str, e.absolute_path)) or '(root)'}: {e.message}"
                    for e in self._validator(body_spec["schema"]).iter_errors(body)
                ]
        elif request.content:
            problems.append("a body was sent to an operation that takes none")
        return raw.get("operationId"), problems

    def _header_problems(self, request: httpx.Request, documented: list[dict[str, Any]]) -> list[str]:
        problems: list[str] = []
        for spec in (p for p in documented if p["in"] == "header"):
            if spec["name"] not in request.headers:
                continue
            value: Any = request.headers[spec["name"]]
            if spec["schema"].get("type") == "number":
                try:
                    value = float(value)
                except ValueError:
                    problems.append(f"header {spec['name']}: {value!r} is not a number")
                    continue
            problems += [
                f"header {spec['name']}: {e.message}" for e in self._validator(spec["schema"]).iter_errors(value)
            ]
        return problems

    def check_response(self, request: httpx.Request, response: httpx.Response) -> list[str]:
        """What about a (fully read) response does not fit the spec."""
        operation = self.schema.find_operation_by_path(request.method, request.url.path)
        if operation is None:
            return []
        documented = self.document["paths"][operation.path][request.method.lower()]["responses"]
        if str(response.status_code) not in documented:
            return [f"Undocumented status {response.status_code} (documented: {', '.join(documented)})"]
        try:
            operation.validate_response(response)
        except FailureGroup as group:
            return [f"{failure.title}: {_first_line(failure.message)}" for failure in group.exceptions]
        except AssertionError as err:
            return [str(err)]
        return []


def _first_line(message: str) -> str:
    return next((line.strip() for line in message.splitlines() if line.strip()), "")


_RANK = {"IN_QUEUE": 0, "IN_PROGRESS": 1, "COMPLETED": 2}
_REQUEST_PATH = re.compile(r"/requests/(?P<id>[^/]+)(?P<rest>/status(?:/stream)?|/cancel)?/?$")


@dataclass
class _Seen:
    rank: int = -1
    position: int | None = None


class LifecycleTracker:
    """What the spec cannot say: a request's statuses over time must only move forward.

    Per request id: IN_QUEUE -> IN_PROGRESS -> COMPLETED, never back; `queue_position` never rises; once
    COMPLETED has been seen, the result is never "still in progress".
    """

    def __init__(self) -> None:
        self._seen: dict[str, _Seen] = {}

    def _status(self, request_id: str, status: dict[str, Any]) -> list[str]:
        seen = self._seen.setdefault(request_id, _Seen())
        problems = []
        rank = _RANK.get(str(status.get("status")), -1)
        if rank < seen.rank:
            problems.append(
                f"request {request_id}: status went back to {status.get('status')} after {list(_RANK)[seen.rank]}"
            )
        position = status.get("queue_position")
        if isinstance(position, int) and seen.position is not None and position > seen.position and rank == 0:
            problems.append(f"request {request_id}: queue_position rose from {seen.position} to {position}")
        seen.rank = max(seen.rank, rank)
        if isinstance(position, int):
            seen.position = position
        return problems

    def observe(self, request: httpx.Request, status_code: int, body: bytes) -> list[str]:
        """Check one response of the queue lifecycle; returns what went wrong."""
        match = _REQUEST_PATH.search(request.url.path)
        if not match or request.method != "GET":
            return []
        request_id, rest = match.group("id"), match.group("rest") or ""
        if rest == "/status" and status_code in (200, 202):
            return self._status(request_id, json.loads(body))
        if rest == "/status/stream" and status_code == 200:
            problems = []
            for line in body.decode("utf-8", "replace").splitlines():
                if line.startswith("data:"):
                    problems += self._status(request_id, json.loads(line[5:]))
            return problems
        if rest == "" and status_code == 400 and self._seen.get(request_id, _Seen()).rank == _RANK["COMPLETED"]:
            return [f"request {request_id}: result still in progress after its status was COMPLETED"]
        return []


class _Tee(httpx.SyncByteStream, httpx.AsyncByteStream):
    """Pass a response body through to the client, keeping a copy; call back when it is closed."""

    def __init__(self, inner: Any, on_close: Any) -> None:
        self._inner = inner
        self._chunks: list[bytes] = []
        self._on_close = on_close
        self._closed = False

    def __iter__(self) -> Iterator[bytes]:
        for chunk in self._inner:
            self._chunks.append(chunk)
            yield chunk

    async def __aiter__(self) -> AsyncIterator[bytes]:
        async for chunk in self._inner:
            self._chunks.append(chunk)
            yield chunk

    def _finish(self) -> None:
        if not self._closed:
            self._closed = True
            self._on_close(b"".join(self._chunks))

    def close(self) -> None:
        self._inner.close()
        self._finish()

    async def aclose(self) -> None:
        await self._inner.aclose()
        self._finish()


class ConformanceRecorder(httpx.BaseTransport, httpx.AsyncBaseTransport):
    """An httpx transport that records and checks every exchange passing through `inner`."""

    def __init__(self, inner: httpx.BaseTransport | httpx.AsyncBaseTransport, index: SpecIndex | None = None) -> None:
        self.inner = inner
        self.index = index or SpecIndex()
        self.exchanges: list[Exchange] = []
        self.outside_spec: list[str] = []
        self.lifecycle = LifecycleTracker()

    def _wrap(self, request: httpx.Request, response: httpx.Response) -> httpx.Response:
        operation_id, problems = self.index.check_request(request)
        if operation_id is None:
            self.outside_spec.append(f"{request.method} {request.url.path}")
            return response
        exchange = Exchange(operation_id, request.method, request.url.path, response.status_code, problems)
        self.exchanges.append(exchange)

        def on_close(body: bytes) -> None:
            complete = httpx.Response(response.status_code, headers=response.headers, content=body, request=request)
            complete.elapsed = timedelta(0)  # schemathesis reads it; only the content matters here
            exchange.problems += self.index.check_response(request, complete)
            try:
                exchange.problems += self.lifecycle.observe(request, response.status_code, body)
            except ValueError as err:
                exchange.problems.append(f"lifecycle: body is not JSON ({err})")

        return httpx.Response(
            response.status_code,
            headers=response.headers,
            stream=_Tee(response.stream, on_close),
            extensions=response.extensions,
            request=request,
        )

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        assert isinstance(self.inner, httpx.BaseTransport)
        return self._wrap(request, self.inner.handle_request(request))

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        assert isinstance(self.inner, httpx.AsyncBaseTransport)
        return self._wrap(request, await self.inner.handle_async_request(request))

    def close(self) -> None:
        if isinstance(self.inner, httpx.BaseTransport):
            self.inner.close()

    async def aclose(self) -> None:
        if isinstance(self.inner, httpx.AsyncBaseTransport):
            await self.inner.aclose()

    def violations(self) -> list[str]:
        """Every problem found so far, each prefixed with its exchange."""
        return [f"{e.method} {e.path} -> {e.status}: {p}" for e in self.exchanges for p in e.problems]

    def operations_seen(self) -> set[str]:
        return {e.operation_id for e in self.exchanges if e.operation_id}
