"""`fal-kontext proxy --upstream URL`: a loopback proxy that checks your application's own traffic to fal or an
aggregator against the spec and fal's queue rules, like Prism's proxy mode with the queue's state rules.

Point your client at the proxy (our client's ``base_url``; fal_client's ``FAL_QUEUE_RUN_HOST``, which needs HTTPS:
give ``--certfile``/``--keyfile``). Every exchange is forwarded to the upstream unchanged and checked:

- the request: its operation in the spec, parameters and JSON body (the emulator's validators, `operations`);
- the answer: a documented status, a documented media type, the body's schema;
- the lifecycle (`queue_rules`): 202 while pending and 200 once COMPLETED, statuses only forward, queue
  positions only down, returned URLs absolute and on the app path, the status stream's SSE framing ending with
  COMPLETED, the result "still in progress" only before completion, no cancel accepted after it.

Violations are printed as they happen; at exit a JUnit report (one test case per exchange) is written. URLs in the
answers that point at the upstream (or at fal's queue host) are rewritten to the proxy, so clients that follow them
(fal_client does) stay on it. Requests outside the spec (image downloads, storage) are forwarded and not judged.
Needs the ``mock`` extra (starlette, uvicorn).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import tempfile
import threading
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO
from urllib.parse import urlsplit, urlunsplit
from xml.etree import ElementTree

import httpx

# jsonschema ships no type information (types-jsonschema is not among our dependencies).
from jsonschema import Draft4Validator  # type: ignore[import-untyped]
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from fal_kontext.spec import endpoints_of
from fal_kontext_emulator.operations import RouteTable, build_routes
from fal_kontext_emulator.queue_rules import (
    FAL_QUEUE_HOSTS,
    STILL_IN_PROGRESS,
    RequestHistory,
    Violation,
    check_returned_url,
    check_status_answer,
    parse_event_stream,
)
from fal_kontext_emulator.spec_document import load_spec, resolve, to_json_schema

__all__ = ["Exchange", "ValidatingProxy", "add_arguments", "create_proxy_app", "run_proxy_command"]

_HOP_HEADERS = {"host", "content-length", "transfer-encoding", "connection", "content-encoding", "keep-alive"}
_URL_FIELDS = (
    ("status_url", "get_request_status"),
    ("response_url", "get_request_result"),
    ("cancel_url", "cancel_request"),
)


@dataclass
class Exchange:
    """One request through the proxy, its answer's status, and what broke the spec or the queue rules."""

    method: str
    path: str
    operation_id: str | None
    status: int = 0
    violations: list[str] = field(default_factory=list)


class ValidatingProxy:
    """The checks and the record of every exchange; `create_proxy_app` serves it.

    Args:
        upstream: the server to forward to, e.g. https://queue.fal.run.
        out: where violations are printed as they happen.
        verify: httpx's ``verify=`` for the upstream.
    """

    def __init__(self, upstream: str, *, out: TextIO = sys.stderr, verify: Any = True) -> None:
        self.upstream = _base_url(upstream)
        self.out = out
        self.verify = verify
        spec = load_spec()
        self.routes: RouteTable = build_routes(spec)
        self.document: dict[str, Any] = to_json_schema(spec)
        # The app (`owner/app`) each submit operation's requests live under.
        self._apps = {endpoint.operation_id: endpoint.app for endpoint in endpoints_of(spec)}
        self.exchanges: list[Exchange] = []
        self.histories: dict[str, RequestHistory] = {}
        self._lock = threading.Lock()

    # --- checks -------------------------------------------------------------------------------------------------
    def report(self, exchange: Exchange, found: list[str]) -> None:
        """Record violations of one exchange and print them."""
        with self._lock:
            exchange.violations += found
            for line in found:
                print(
                    f"fal-kontext proxy: VIOLATION {exchange.method} {exchange.path}: {line}", file=self.out, flush=True
                )

    def check_request(self, exchange: Exchange, request: Request, body: bytes) -> dict[str, str]:
        """The spec's checks of the request; returns its path parameters."""
        operation, params = self.routes.match(request.method, request.url.path)
        if operation is None:
            return {}
        assert isinstance(params, dict)
        exchange.operation_id = operation.operation_id
        _, problems = operation.check_parameters(params, request.query_params, request.headers)
        if operation.body_validator is not None:
            try:
                problems += operation.check_body(json.loads(body))
            except ValueError:
                self.report(exchange, ["request: the body is not JSON"])
        self.report(exchange, [f"request {'.'.join(map(str, p.loc))}: {p.msg}" for p in problems])
        return params

    def check_answer(self, exchange: Exchange, method: str, status: int, content_type: str, body: bytes) -> None:
        """The spec's checks of an answer: documented status, media type, body schema."""
        operation, _ = self.routes.match(method, exchange.path)
        if operation is None:
            return
        responses = self.document["paths"][operation.path][method.lower()]["responses"]
        documented = responses.get(str(status))
        if documented is None:
            self.report(exchange, [f"status {status} is not documented (documented: {', '.join(responses)})"])
            return
        documented = resolve(self.document, documented)
        content = documented.get("content", {})
        kind = content_type.split(";", maxsplit=1)[0].strip()
        if content and kind not in content:
            self.report(exchange, [f"served as {kind!r}; the spec says {sorted(content)}"])
            return
        schema = content.get(kind, {}).get("schema")
        if kind == "application/json" and schema is not None:
            try:
                value = json.loads(body)
            except ValueError:
                self.report(exchange, ["the body is not JSON"])
                return
            validator = Draft4Validator({**schema, "components": self.document["components"]})
            self.report(
                exchange,
                [
                    f"body {'/'.join(map(str, e.absolute_path)) or '(root)'}: {e.message}"
                    for e in validator.iter_errors(value)
                ],
            )

    def check_lifecycle(
        self, exchange: Exchange, request: Request, params: dict[str, str], status: int, body: bytes
    ) -> None:
        """fal's queue rules (`queue_rules`) on one answer."""
        operation, request_id = exchange.operation_id, params.get("request_id", "")
        try:
            value = json.loads(body) if body else None
        except ValueError:
            return
        found: list[Violation] = []
        app = f"{params['owner']}/{params['app']}" if "owner" in params and "app" in params else ""
        if operation in self._apps and status == 200 and isinstance(value, dict):
            request_id = str(value.get("request_id", ""))
            app = self._apps.get(operation, app)
            for name, target in _URL_FIELDS:
                found += check_returned_url(value.get(name), target, app, request_id, self.upstream, where=name)
        history = self.histories.setdefault(request_id, RequestHistory()) if request_id else RequestHistory()
        if operation == "get_request_status" and status in (200, 202) and isinstance(value, dict):
            flag = request.query_params.get("logs")
            logs = None if flag is None else flag in ("1", "true")
            found += check_status_answer(status, value, request_id, logs_requested=logs, where="status")
            found += history.observe(value, "status")
            for name, target in _URL_FIELDS:
                if value.get(name) is not None:
                    found += check_returned_url(value[name], target, app, request_id, self.upstream, where=name)
        still = isinstance(value, dict) and value.get("detail") == STILL_IN_PROGRESS
        if operation == "get_request_result" and status == 400 and still and history.completed:
            found.append(Violation("result-after-completion", "result still in progress after COMPLETED"))
        if operation == "cancel_request" and status == 202 and history.completed:
            found.append(Violation("cancel-after-completion", "cancel accepted (202) after COMPLETED (fal: 400)"))
        self.report(exchange, [str(v) for v in found])

    def check_stream(self, exchange: Exchange, request_id: str, raw: bytes) -> None:
        """The status stream, once it ended: SSE framing, each event's rules, ending with COMPLETED."""
        events, found = parse_event_stream(raw, "stream")
        history = self.histories.setdefault(request_id, RequestHistory())
        for number, event in enumerate(events):
            found += check_status_answer(0, event, request_id, logs_requested=None, where=f"stream event {number}")
            found += history.observe(event, f"stream event {number}")
        if not events or events[-1].get("status") != "COMPLETED":
            found.append(
                Violation("stream-closing", f"the stream ended without a COMPLETED event ({len(events)} events)")
            )
        self.report(exchange, [str(v) for v in found])

    # --- forwarding -----------------------------------------------------------------------------------------------
    def local(self, content: bytes, origin: str) -> bytes:
        """Answers name the proxy where they named the upstream or fal's queue host, so clients stay on the proxy."""
        content = content.replace(self.upstream.encode(), origin.encode())
        for host in FAL_QUEUE_HOSTS:
            content = content.replace(f"https://{host}".encode(), origin.encode())
        return content

    def junit(self) -> str:
        """The JUnit XML report: one test case per exchange, a failure per exchange with violations."""
        failing = sum(1 for e in self.exchanges if e.violations)
        suite = ElementTree.Element(
            "testsuite", name="fal-kontext proxy", tests=str(len(self.exchanges)), failures=str(failing), errors="0"
        )
        for exchange in self.exchanges:
            case = ElementTree.SubElement(
                suite,
                "testcase",
                classname=exchange.operation_id or "outside the spec",
                name=f"{exchange.method} {exchange.path} -> {exchange.status}",
            )
            if exchange.violations:
                failure = ElementTree.SubElement(case, "failure", message=exchange.violations[0])
                failure.text = "\n".join(exchange.violations)
        return ElementTree.tostring(suite, encoding="unicode", xml_declaration=True)

    def write_junit(self, path: Path) -> None:
        """Write the report to `path` whole (a temporary file renamed into place)."""
        path.parent.mkdir(parents=True, exist_ok=True)
        handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=".proxy-junit-")
        with os.fdopen(handle, "w", encoding="utf-8") as stream:
            stream.write(self.junit())
        os.chmod(temporary, 0o644)
        os.replace(temporary, path)


def _base_url(url: str) -> str:
    """The upstream's base URL without a trailing slash.

    Raises:
        ValueError: `url` is not an absolute http(s) URL, or has a query or fragment.
    """
    parts = urlsplit(url.strip())
    if parts.scheme in ("http", "https") and parts.netloc and not parts.query and not parts.fragment:
        return urlunsplit((parts.scheme, parts.netloc, parts.path.rstrip("/"), "", ""))
    raise ValueError(f"{url!r} is not an absolute http(s) URL without a query, e.g. https://queue.fal.run")


def create_proxy_app(proxy: ValidatingProxy, *, junit: Path | None = None) -> Starlette:
    """The proxy as an ASGI app; with `junit`, the report is written there when the server shuts down."""
    client = httpx.AsyncClient(verify=proxy.verify, timeout=httpx.Timeout(120.0, connect=30.0))

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        # Written at shutdown, inside the server: uvicorn re-raises the stopping signal once it has shut down.
        try:
            yield
        finally:
            await client.aclose()
            if junit is not None:
                proxy.write_junit(junit)
                failing = sum(1 for e in proxy.exchanges if e.violations)
                print(
                    f"fal-kontext proxy: {len(proxy.exchanges)} exchanges, {failing} with violations; JUnit: {junit}",
                    file=proxy.out,
                    flush=True,
                )

    async def forward(request: Request) -> Response:
        body = await request.body()
        exchange = Exchange(request.method, request.url.path, None)
        proxy.exchanges.append(exchange)
        params = proxy.check_request(exchange, request, body)
        headers = {k: v for k, v in request.headers.items() if k.lower() not in _HOP_HEADERS}
        url = proxy.upstream + request.url.path + (f"?{request.url.query}" if request.url.query else "")
        upstream = await client.send(
            client.build_request(request.method, url, headers=headers, content=body or None), stream=True
        )
        exchange.status = upstream.status_code
        kept = {k: v for k, v in upstream.headers.items() if k.lower() not in _HOP_HEADERS}
        origin = str(request.base_url).rstrip("/")
        kind = upstream.headers.get("content-type", "")
        if exchange.operation_id == "stream_request_status" and upstream.status_code == 200:
            proxy.check_answer(exchange, request.method, 200, kind, b"")

            async def relay() -> AsyncIterator[bytes]:
                chunks: list[bytes] = []
                try:
                    async for chunk in upstream.aiter_raw():
                        chunks.append(chunk)
                        yield proxy.local(chunk, origin)
                finally:
                    await upstream.aclose()
                    proxy.check_stream(exchange, params.get("request_id", ""), b"".join(chunks))

            return StreamingResponse(relay(), status_code=200, headers=kept)
        content = await upstream.aread()
        await upstream.aclose()
        if exchange.operation_id:
            proxy.check_answer(exchange, request.method, upstream.status_code, kind, content)
            proxy.check_lifecycle(exchange, request, params, upstream.status_code, content)
        return Response(proxy.local(content, origin), upstream.status_code, headers=kept)

    methods = ["GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS"]
    return Starlette(routes=[Route("/{path:path}", forward, methods=methods)], lifespan=lifespan)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``fal-kontext proxy`` (parsed when it runs, so ``fal-kontext --help`` imports no server)."""
    parser.add_argument("--upstream", required=True, help="where to forward, e.g. https://queue.fal.run")
    parser.add_argument("--host", default="127.0.0.1", help="interface to listen on (default: %(default)s)")
    parser.add_argument("--port", type=int, default=8766, help="TCP port (default: %(default)s)")
    parser.add_argument(
        "--junit", default="proxy-junit.xml", help="JUnit report written at exit (default: %(default)s)"
    )
    parser.add_argument("--certfile", help="PEM certificate: serve HTTPS (fal_client only speaks HTTPS)")
    parser.add_argument("--keyfile", help="PEM key of --certfile")


def run_proxy_command(args: argparse.Namespace) -> int:
    """Serve the proxy until stopped (Ctrl-C, SIGTERM); the JUnit report is written on the way out.

    Returns 1 if any exchange broke a rule, else 0.
    """
    import uvicorn

    if (args.certfile is None) != (args.keyfile is None):
        print("fal-kontext proxy: --certfile and --keyfile go together", file=sys.stderr)
        return 2
    try:
        proxy = ValidatingProxy(args.upstream)
    except ValueError as err:
        print(f"fal-kontext proxy: --upstream: {err}", file=sys.stderr)
        return 2
    scheme = "https" if args.certfile else "http"
    print(
        f"fal-kontext proxy: {scheme}://{args.host}:{args.port} -> {proxy.upstream}; ready", file=sys.stderr, flush=True
    )
    # uvicorn re-raises Ctrl-C after its shutdown, by when the report is written.
    with contextlib.suppress(KeyboardInterrupt):
        uvicorn.run(
            create_proxy_app(proxy, junit=Path(args.junit)),
            host=args.host,
            port=args.port,
            log_level="warning",
            ssl_certfile=args.certfile,
            ssl_keyfile=args.keyfile,
        )
    return 1 if any(e.violations for e in proxy.exchanges) else 0
