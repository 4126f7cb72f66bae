"""Check real HTTP exchanges against specs/openapi.yaml: what a client sent, and what it got back.

`ConformanceRecorder` is an httpx transport (sync and async) that wraps the real one. Every request
that passes through is matched to its operation in the spec and checked (path, query and header
parameters, JSON body); every response is checked by schemathesis against the documented statuses,
headers and schemas, streamed bodies (the SSE status stream) included, once the client has read them.
Requests outside the spec (image downloads from the emulator's `/files/`) are listed, not judged.
"""

from __future__ import annotations

import functools
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

from fal_kontext.spec import endpoints_of, resolve
from fal_kontext_emulator.queue_rules import RequestHistory, check_stream_logs, parse_event_stream

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

    def output_schema(self, operation_id: str) -> str | None:
        """The output schema of the endpoint a submit operation queues on (``fal_kontext.spec.endpoints_of``: its
        ``x-fal-endpoint.output_schema``, else the queue result's)."""
        return self._output_schemas.get(operation_id)

    @functools.cached_property
    def _output_schemas(self) -> dict[str, str | None]:
        return {endpoint.operation_id: endpoint.output_schema for endpoint in endpoints_of(self.document)}

    @functools.cached_property
    def status_schema(self) -> dict[str, Any]:
        """The schema of a polled status answer (``get_request_status``'s 200): each status stream event's data is
        one (the stream operation's description says so; its own schema types the body as text)."""
        for item in self.document["paths"].values():
            operation = item.get("get", {})
            if operation.get("operationId") == "get_request_status":
                return dict(operation["responses"]["200"]["content"]["application/json"]["schema"])
        raise KeyError("the spec has no get_request_status operation")

    def check_status_event(self, value: Any) -> list[str]:
        """What about one status stream event's data does not fit the status schema (log entries included)."""
        return [
            f"status event {'/'.join(map(str, e.absolute_path)) or '(root)'}: {e.message}"
            for e in self._validator(self.status_schema).iter_errors(value)
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


_REQUEST_PATH = re.compile(r"/requests/(?P<id>[^/]+)(?P<rest>/status(?:/stream)?|/cancel)?/?$")


class LifecycleTracker:
    """What the spec cannot say, over the exchanges of a client: fal's queue rules
    (``fal_kontext_emulator.queue_rules``).

    Per request id: statuses only move forward (IN_QUEUE -> IN_PROGRESS -> COMPLETED), `queue_position` never
    rises, a 200 result means COMPLETED (no status says pending after it), and once COMPLETED has been seen the
    result is never "still in progress". Each status stream is read with the client's SSE parser: its framing,
    each event against the spec's status schema, and its logs incremental (no entry repeated across events).
    """

    def __init__(self, index: SpecIndex) -> None:
        self._index = index
        self._seen: dict[str, RequestHistory] = {}
        # The output schema of each request's endpoint, from its submit: the shared result operation answers with
        # any endpoint's output (EndpointOutput), each request with its own endpoint's.
        self._outputs: dict[str, str] = {}

    def submitted(self, operation_id: str, status_code: int, body: bytes) -> None:
        """Remember the endpoint of a request from its submit answer."""
        answer = json.loads(body) if status_code == 200 else None
        output = self._index.output_schema(operation_id)
        if isinstance(answer, dict) and isinstance(answer.get("request_id"), str) and output:
            self._outputs[answer["request_id"]] = output

    def observe(self, request: httpx.Request, status_code: int, body: bytes) -> list[str]:
        """Check one response of the queue lifecycle (its body undone of any Content-Encoding); returns what went
        wrong."""
        match = _REQUEST_PATH.search(request.url.path)
        if not match or request.method != "GET":
            return []
        request_id, rest = match.group("id"), match.group("rest") or ""
        history = self._seen.setdefault(request_id, RequestHistory())
        where = f"request {request_id}"
        if rest == "/status" and status_code in (200, 202):
            status = json.loads(body)
            return [v.message for v in history.observe(status, where)] if isinstance(status, dict) else []
        if rest == "/status/stream" and status_code == 200:
            events, found = parse_event_stream(body, f"{where} status stream")
            found += check_stream_logs(events, f"{where} status stream")
            problems = [str(v) for v in found]
            for number, event in enumerate(events):
                problems += [f"stream event {number}: {p}" for p in self._index.check_status_event(event)]
                problems += [v.message for v in history.observe(event, f"{where} stream event {number}")]
            return problems
        if rest == "":
            problems = [v.message for v in history.observe_result(status_code, body, where)]
            if status_code == 200 and request_id in self._outputs:
                problems += self._index.check_schema(self._outputs[request_id], json.loads(body))
            return problems
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
        self.lifecycle = LifecycleTracker(self.index)

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
                # complete.content is the body undone of its Content-Encoding (the tee keeps the bytes as sent).
                if request.method == "POST":
                    self.lifecycle.submitted(operation_id, response.status_code, complete.content)
                exchange.problems += self.lifecycle.observe(request, response.status_code, complete.content)
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
