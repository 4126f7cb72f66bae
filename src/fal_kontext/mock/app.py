"""The ASGI layer: HTTP in, calls into the queue, fal's answers out. Kept thin; the logic lives elsewhere."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import json
import math
import time
import urllib.parse
import uuid
from collections import Counter, defaultdict
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Mount, Route
from starlette.types import Receive, Scope, Send

from fal_kontext.mock.config import EmulatorConfig
from fal_kontext.mock.faults import Fault, FaultPlan, FaultRule, FaultSyntaxError
from fal_kontext.mock.images import ImageRenderer, InputImageError, ReadInput, RenderedImage, decode_data_uri
from fal_kontext.mock.queue import Outcome, QueuedRequest, RequestQueue
from fal_kontext.mock.responses import (
    STILL_IN_PROGRESS,
    failed_result,
    log_entries,
    model_error,
    status_body,
    validation_error,
    webhook_payload,
)
from fal_kontext.mock.spec import Operation, Problem, RouteTable, build_routes
from fal_kontext.mock.store import StateFile
from fal_kontext.mock.webhooks import JWKS_PATH, WebhookSender, WebhookSigner

Clock = Callable[[], float]
JsonObject = dict[str, Any]

ADMIN_PREFIX = "/_emulator"
_FILES_PREFIX = "/files"
# Inputs may name files the emulator served, whose bytes come from rendering another request; this bounds
# how deep such references may nest.
_MAX_INPUT_DEPTH = 4


class ConnectionDropped(Exception):
    """Raised after a response has started, so the server closes the connection without finishing it."""


def key_fingerprint(key: str) -> str:
    """A short, non-secret name for an API key, used in counters and webhook user ids."""
    return hashlib.sha256(key.encode()).hexdigest()[:12]


def body_fingerprint(body: Any) -> str:
    """The hash the submit counters use: SHA-256 of the JSON body with sorted keys, so key order does not matter."""
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()


@dataclass
class Counters:
    """What the emulator saw: calls per operation, faults injected, and submits per key and per body."""

    calls: Counter[str] = field(default_factory=Counter)
    faults: Counter[str] = field(default_factory=Counter)
    submits: dict[str, Counter[str]] = field(default_factory=dict)
    # Calls per request id and operation (status, stream, result, cancel): benchmarks count requests per job.
    by_request: defaultdict[str, Counter[str]] = field(default_factory=lambda: defaultdict(Counter))

    def as_json(self) -> JsonObject:
        """The counters as the admin API shows them."""
        return {
            "calls": dict(self.calls),
            "faults": dict(self.faults),
            "submits": {
                owner: {"total": sum(bodies.values()), "by_body": dict(bodies)}
                for owner, bodies in self.submits.items()
            },
        }


class EmulatorState:
    """Everything one emulator instance holds: config, clock, queue, routes, images, faults and counters."""

    def __init__(self, config: EmulatorConfig, clock: Clock) -> None:
        self.config = config
        self._clock = clock
        self._clock_origin = clock()
        self._epoch_origin = time.time()
        self.routes: RouteTable = build_routes()
        self.queue = RequestQueue(config.queue_settings)
        self.store = StateFile(config.state_file) if config.state_file else None
        signer = WebhookSigner()
        self.offset = 0.0
        if self.store is not None:
            requests, self.offset = self.store.load()
            self.queue.restore(requests, self.offset)
            signer = WebhookSigner.from_bytes(self.store.signing_key(signer.private_bytes()))
        self._queue_origin = self.offset
        self._saved_at = self.offset
        self.renderer = ImageRenderer(config.image_cache_bytes)
        self.faults = FaultPlan(list(config.faults), seed=config.fault_seed)
        self.counters = Counters()
        if self.store is not None:
            # Submit counts survive restarts: a client that resubmits after one must still show up twice.
            for owner, bodies in self.store.submits().items():
                self.counters.submits[owner] = Counter(bodies)
        self.owners: dict[str, str] = {}
        for key in config.keys:
            self.owners[key] = key_fingerprint(key)
        self._url_templates = {op.operation_id: op.path for op in self.routes.operations}
        self.changed = asyncio.Event()
        # Status streams wait on their own event: a submit must not wake every open stream (1,000 streams and
        # 1,000 submits would be a million wake-ups).
        self.streams_changed = asyncio.Event()
        self.webhooks = WebhookSender(
            signer,
            attempts=config.webhook_attempts,
            retry_delay=config.webhook_retry_delay,
            timeout=config.webhook_timeout,
            sleep=asyncio.sleep,
        )

    def now(self) -> float:
        """Queue time: seconds on the injected clock since start, plus any admin-requested advance."""
        return self._clock() - self._clock_origin + self.offset

    def clock_offset(self) -> float:
        """What to add to a queue time to get the injected clock's reading (valid until the next advance)."""
        return self._clock_origin - self.offset

    def epoch_of(self, queue_time: float) -> float:
        """Unix time of a queue time (for log timestamps)."""
        return self._epoch_origin + queue_time - self._queue_origin

    def persist(self, *, always: bool = False) -> None:
        """Save what changed to the state file, if there is one.

        The queue time is saved with every change, with `always`, and at least once a second of queue time
        otherwise: after a restart requests resume from the last saved time.
        """
        if self.store is None:
            return
        changed, removed = self.queue.take_changes()
        if changed or removed or always or self.queue.now - self._saved_at >= 1.0:
            self.store.save(changed, removed, self.queue.now)
            self._saved_at = self.queue.now

    def notify(self, *, streams: bool = True) -> None:
        """Wake the timers and, with `streams`, the status streams: the queue changed in a way time alone does
        not predict."""
        self.changed.set()
        self.changed = asyncio.Event()
        if streams:
            self.streams_changed.set()
            self.streams_changed = asyncio.Event()

    def count_submit(self, owner: str, body_hash: str) -> None:
        """Count one accepted submit of `owner` with that body (saved at once when there is a state file)."""
        self.counters.submits.setdefault(owner, Counter())[body_hash] += 1
        if self.store is not None:
            self.store.count_submit(owner, body_hash)

    def reset_counters(self) -> None:
        """Set every counter back to zero (saved submit counts too)."""
        self.counters = Counters()
        if self.store is not None:
            self.store.reset_submits()

    def owner_of(self, authorization: str | None) -> str | None:
        """The fingerprint of the key in an `Authorization: Key <k>` or `Bearer <k>` header, or None."""
        if not authorization:
            return None
        scheme, _, token = authorization.strip().partition(" ")
        if scheme.lower() not in {"key", "bearer"}:
            return None
        return self.owners.get(token.strip())

    def urls(self, request: QueuedRequest) -> dict[str, str]:
        """Absolute status, result and cancel URLs of a request, on the emulator's own base URL."""
        base = request.base_url
        rid = urllib.parse.quote(request.request_id, safe="")

        def url(operation_id: str) -> str:
            return base + self._url_templates[operation_id].replace("{request_id}", rid)

        return {
            "response_url": url("get_request_result"),
            "status_url": url("get_request_status"),
            "cancel_url": url("cancel_request"),
        }

    def status_of(self, request: QueuedRequest, *, with_logs: bool, logs_after: int = 0) -> JsonObject:
        """The QueueStatus body of a request now; with logs from index `logs_after` on when asked for."""
        logs = None
        if with_logs:
            logs = log_entries(self.queue.logs(request, self.queue.now)[logs_after:], self.epoch_of)
        return status_body(request, self.urls(request), queue_position=self.queue.queue_position(request), logs=logs)


# -- responses ----------------------------------------------------------------------------------------------------


def _json(status: int, body: Any, headers: Mapping[str, str] | None = None) -> JSONResponse:
    return JSONResponse(body, status_code=status, headers=dict(headers or {}))


def _detail(status: int, message: str, headers: Mapping[str, str] | None = None) -> JSONResponse:
    return _json(status, {"detail": message}, headers)


class _DroppedResponse(Response):
    """Starts a response promising a body, then fails: the server closes the connection mid-answer."""

    def __init__(self) -> None:
        super().__init__(status_code=502)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 502, "headers": [(b"content-length", b"64")]})
        raise ConnectionDropped("fault injection: connection dropped")


def _fault_response(fault: Fault) -> Response:
    headers: dict[str, str] = {}
    if fault.with_request_id:
        headers["x-fal-request-id"] = str(uuid.uuid4())
    if fault.ingress:
        # What an nginx ingress answers; fal_client retries 502-504 only when it looks like this (§3.5).
        page = f"<html><head><title>{fault.status}</title></head><body><center>nginx</center></body></html>"
        return Response(page, status_code=fault.status, media_type="text/html", headers=headers)
    if fault.status == 429:
        headers["Retry-After"] = f"{fault.retry_after:g}" if fault.retry_after is not None else "1"
        return _detail(429, "Too many requests (injected fault)", headers)
    error_type = {503: "runner_scheduling_failure", 504: "startup_timeout"}.get(fault.status)
    body: JsonObject = {"detail": f"Injected fault {fault.status}"}
    if error_type:
        body["error_type"] = error_type
        headers["X-Fal-Error-Type"] = error_type
    return _json(fault.status, body, headers)


# -- the spec's operations ----------------------------------------------------------------------------------------


async def _read_body(request: Request, limit: int) -> bytes | None:
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


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"{text} is out of range for a number")
    return value


def _decode_json(raw: bytes) -> tuple[Any, Problem | None]:
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


def _input_urls(arguments: JsonObject) -> list[tuple[tuple[str | int, ...], str]]:
    if "image_urls" in arguments:
        return [(("body", "image_urls", index), url) for index, url in enumerate(arguments["image_urls"])]
    return [(("body", "image_url"), arguments["image_url"])]


def _check_webhook(url: str) -> Problem | None:
    loc = ("query", "fal_webhook")
    parsed = urllib.parse.urlsplit(url)
    if parsed.scheme not in {"http", "https"} or not parsed.hostname:
        return Problem(loc, "fal_webhook must be an absolute http:// or https:// URL", "url_parsing")
    host = parsed.hostname
    # The emulator never calls out of the machine: webhooks go to loopback receivers only.
    if host != "localhost" and not host.startswith("127.") and host != "::1":
        return Problem(
            loc, "The emulator delivers webhooks only to loopback addresses (127.0.0.1, ::1, localhost)", "value_error"
        )
    return None


_Handler = Callable[[Request, Operation, str, dict[str, Any]], Awaitable[Response]]


class SpecEndpoints:
    """Handlers of the spec's operations, dispatched by a catch-all ASGI app."""

    def __init__(self, state: EmulatorState) -> None:
        self.state = state
        # Only for the backward_transition seeded defect.
        self._completed_reads: Counter[str] = Counter()
        handlers: dict[str, _Handler] = {
            "get_request_status": self.status,
            "stream_request_status": self.stream,
            "get_request_result": self.result,
            "cancel_request": self.cancel,
        }
        self._handlers: dict[str, _Handler] = {}
        for operation in state.routes.operations:
            if operation.operation_id.startswith("submit_"):
                self._handlers[operation.operation_id] = self.submit
            elif operation.operation_id in handlers:
                self._handlers[operation.operation_id] = handlers[operation.operation_id]
            else:
                raise RuntimeError(
                    f"the spec has an operation the emulator does not implement: {operation.operation_id}"
                )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        request = Request(scope, receive)
        response = await self.dispatch(request)
        await response(scope, receive, send)

    async def dispatch(self, request: Request) -> Response:
        """Route, inject faults, authenticate, validate, then run the operation."""
        state = self.state
        # Match on the path as sent: a request id may hold an encoded "/" (or a newline), which must stay inside
        # its segment.
        raw_path = request.scope.get("raw_path")
        path = raw_path.decode("latin-1") if raw_path else urllib.parse.quote(request.url.path)
        operation, found = state.routes.match(request.method, path)
        if operation is None:
            if found:
                allow = {} if "dropped_header" in state.config.defects else {"Allow": ", ".join(found)}
                return _detail(405, f"Method {request.method} not allowed", allow)
            return _detail(404, f"Path {request.url.path} not found")
        assert isinstance(found, dict)
        found = {name: urllib.parse.unquote(value) for name, value in found.items()}
        state.counters.calls[operation.operation_id] += 1
        if "request_id" in found:
            state.counters.by_request[found["request_id"]][operation.operation_id] += 1
        latency, fault = state.faults.next(operation.operation_id)
        if latency:
            await asyncio.sleep(latency)
        if fault is not None:
            state.counters.faults[operation.operation_id] += 1
            if fault.kind == "drop":
                return _DroppedResponse()
            if fault.kind == "status":
                return _fault_response(fault)
            if fault.kind == "slow":
                await asyncio.sleep(fault.delay)
        owner = state.owner_of(request.headers.get("authorization"))
        if owner is None:
            if request.headers.get("authorization"):
                return _detail(401, "Invalid key: the Authorization header carries a key this server does not accept")
            return _detail(401, "Authorization header is required: send Authorization: Key <your fal key>")
        params, problems = operation.check_parameters(found, request.query_params, request.headers)
        if problems:
            return _json(422, validation_error(problems))
        response = await self._handlers[operation.operation_id](request, operation, owner, params)
        state.persist()
        if fault is not None and fault.kind == "drop-after":
            return _DroppedResponse()
        return response

    async def submit(self, request: Request, operation: Operation, owner: str, params: dict[str, Any]) -> Response:
        """Queue a request (the four submit operations)."""
        state = self.state
        raw = await _read_body(request, state.config.max_body_bytes)
        if raw is None:
            return _detail(413, f"Request body is larger than {state.config.max_body_bytes} bytes")
        content_type = request.headers.get("content-type", "application/json").split(";")[0].strip().lower()
        if content_type != "application/json":
            problem = Problem(
                ("body",), f"Content-Type must be application/json, not {content_type!r}", "model_attributes_type"
            )
            return _json(422, validation_error([problem]))
        body, bad_json = _decode_json(raw)
        if bad_json is not None:
            return _json(422, validation_error([bad_json]))
        problems = operation.check_body(body)
        if "accepted_invalid_enum" in state.config.defects:
            problems = [problem for problem in problems if problem.type != "enum"]
        if not problems:
            problems = self._check_inputs(body)
        webhook = params.get("fal_webhook")
        if webhook is not None and (webhook_problem := _check_webhook(webhook)) is not None:
            problems.append(webhook_problem)
        if problems:
            return _json(422, validation_error(problems))
        request_id = str(uuid.uuid4())
        base = state.config.public_base_url or str(request.base_url)
        queued = state.queue.submit(
            request_id=request_id,
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
        answer = {**state.status_of(queued, with_logs=False), "gateway_request_id": request_id}
        if "missing_required_field" in state.config.defects:
            del answer["cancel_url"]
        return _json(200, answer, {"x-fal-request-id": request_id})

    def _check_inputs(self, body: JsonObject) -> list[Problem]:
        problems = []
        for loc, url in _input_urls(body):
            if url.startswith("data:"):
                try:
                    decode_data_uri(url, self.state.config.max_data_uri_bytes)
                except InputImageError as err:
                    problems.append(Problem(loc, err.message, err.kind))
        return problems

    async def status(self, request: Request, operation: Operation, owner: str, params: dict[str, Any]) -> Response:
        """The status of a request: 202 while waiting or running, 200 once COMPLETED."""
        state = self.state
        found = state.queue.get(params["request_id"], owner, state.now())
        if found is None:
            return _detail(404, "Request not found")
        body = state.status_of(found, with_logs=params.get("logs") in {"1", "true"})
        code = 200 if found.status == "COMPLETED" else 202
        if "backward_transition" in state.config.defects and found.status == "COMPLETED":
            self._completed_reads[found.request_id] += 1
            if self._completed_reads[found.request_id] % 2 == 0:
                body, code = {**body, "status": "IN_PROGRESS", "metrics": {}}, 202
        return _json(code, body, {"x-fal-request-id": found.request_id})

    async def stream(self, request: Request, operation: Operation, owner: str, params: dict[str, Any]) -> Response:
        """Server-sent status events: one per change, keep-alive comments, closed after COMPLETED."""
        state = self.state
        found = state.queue.get(params["request_id"], owner, state.now())
        if found is None:
            return _detail(404, "Request not found")
        with_logs = params.get("logs") in {"1", "true"}
        headers = {"x-fal-request-id": found.request_id, "Cache-Control": "no-cache"}
        return StreamingResponse(self._events(found, with_logs), media_type="text/event-stream", headers=headers)

    async def _events(self, request: QueuedRequest, with_logs: bool) -> AsyncIterator[str]:
        state = self.state
        last: tuple[object, ...] | None = None
        logs_sent = 0
        last_sent_at = state.now()
        while True:
            now = state.now()
            state.queue.advance(now)
            log_count = len(state.queue.logs(request, state.queue.now)) if with_logs else 0
            key = (request.status, state.queue.queue_position(request), log_count)
            if key != last:
                body = state.status_of(request, with_logs=with_logs, logs_after=logs_sent)
                logs_sent = log_count
                last = key
                last_sent_at = now
                yield f"data: {json.dumps(body, separators=(',', ':'))}\n\n"
                if request.status == "COMPLETED":
                    return
            elif now - last_sent_at >= state.config.keepalive_interval:
                last_sent_at = now
                yield ": keep-alive\n\n"
            # A running request changes only when it ends (or logs); a waiting one with any start in the queue.
            next_change = request.ends_at if request.status == "IN_PROGRESS" else state.queue.next_event_at()
            wait = min(
                next_change - now,
                state.queue.next_log_at(request, now) - now if with_logs else math.inf,
                state.config.keepalive_interval - (now - last_sent_at),
                state.config.stream_poll_interval,
            )
            changed = state.streams_changed
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(changed.wait(), timeout=max(wait, 0.001))

    async def result(self, request: Request, operation: Operation, owner: str, params: dict[str, Any]) -> Response:
        """The output of a completed request, or the error it ended with."""
        state = self.state
        found = state.queue.get(params["request_id"], owner, state.now())
        if found is None:
            return _detail(404, "Request not found")
        headers = {"x-fal-request-id": found.request_id}
        if found.status != "COMPLETED":
            return _json(400, STILL_IN_PROGRESS, headers)
        status, body, extra = await self.outcome_of(found)
        return _json(status, body, {**headers, **extra})

    async def outcome_of(self, request: QueuedRequest) -> tuple[int, JsonObject, dict[str, str]]:
        """The status, body and headers of a completed request's result (renders its images if needed)."""
        failed = failed_result(request)
        if failed is not None:
            return failed
        inputs = self._input_readers(request, 0)
        try:
            images = await run_in_threadpool(self._render, request, inputs)
        except InputImageError as err:
            loc: list[str | int] = (
                ["body", "image_url"]
                if err.index is None or "image_url" in request.arguments
                else ["body", "image_urls", err.index]
            )
            return 422, model_error(loc, err.message, err.kind), {"X-Fal-Retryable": "false"}
        return 200, self._output(request, images), {}

    def _render(self, request: QueuedRequest, inputs: list[ReadInput]) -> list[RenderedImage]:
        arguments = request.arguments
        return self.state.renderer.render(
            inputs,
            seed=request.seed,
            count=int(arguments.get("num_images", 1)),
            aspect_ratio=arguments.get("aspect_ratio"),
            output_format=str(arguments.get("output_format", "jpeg")),
        )

    def _input_readers(self, request: QueuedRequest, depth: int) -> list[ReadInput]:
        """Callables that produce each input's bytes. Resolved here, on the event loop, because they may look
        at other requests; the callables themselves only render, so they can run in a worker thread."""
        readers: list[ReadInput] = []
        for _, url in _input_urls(request.arguments):
            readers.append(self._reader(url, depth))
        return readers

    def _reader(self, url: str, depth: int) -> ReadInput:
        state = self.state
        if url.startswith("data:"):
            limit = state.config.max_data_uri_bytes
            return lambda: decode_data_uri(url, limit)
        source = self._own_file(url)
        if source is None or depth >= _MAX_INPUT_DEPTH:
            # The emulator never fetches from outside; fal would download it, we cannot.
            message = (
                f"Failed to download the file at {url!r}: the emulator reads only data URIs and its own /files URLs"
            )
            return _failing(message)
        other, index = source
        inputs = self._input_readers(other, depth + 1)

        def read() -> bytes:
            return self._render(other, inputs)[index].data

        return read

    def _own_file(self, url: str) -> tuple[QueuedRequest, int] | None:
        """The request and image index a URL of this emulator's /files names, if it still exists."""
        parsed = urllib.parse.urlsplit(url)
        parts = parsed.path.split("/")
        if len(parts) != 4 or f"/{parts[1]}" != _FILES_PREFIX:
            return None
        origin = f"{parsed.scheme}://{parsed.netloc}"
        request_id, file_name = urllib.parse.unquote(parts[2]), parts[3]
        other = self.state.queue.find(request_id, self.state.now())
        if other is None or other.base_url.rstrip("/") != origin or not _serves_files(other):
            return None
        index = _file_index(other, file_name)
        return None if index is None else (other, index)

    def _output(self, request: QueuedRequest, images: list[RenderedImage]) -> JsonObject:
        sync = bool(request.arguments.get("sync_mode"))
        items = []
        for index, image in enumerate(images):
            name = _file_name(request, index)
            if sync:
                url = f"data:{image.content_type};base64,{base64.b64encode(image.data).decode()}"
            else:
                url = f"{request.base_url}{_FILES_PREFIX}/{urllib.parse.quote(request.request_id, safe='')}/{name}"
            items.append(
                {
                    "url": url,
                    "content_type": image.content_type,
                    "file_name": name,
                    "file_size": len(image.data),
                    "width": image.width,
                    "height": image.height,
                }
            )
        inference = request.run_time if request.started_at is not None else 0.0
        return {
            "images": items,
            "timings": {"inference": round(inference, 6)},
            "seed": request.seed,
            "has_nsfw_concepts": [False] * len(items),
            "prompt": request.arguments.get("prompt", ""),
        }

    async def cancel(self, request: Request, operation: Operation, owner: str, params: dict[str, Any]) -> Response:
        """Cancel a request: 202 CANCELLATION_REQUESTED, 400 ALREADY_COMPLETED or 404 NOT_FOUND."""
        state = self.state
        outcome = state.queue.cancel(params["request_id"], owner, state.now())
        state.notify()
        code = {"CANCELLATION_REQUESTED": 202, "ALREADY_COMPLETED": 400, "NOT_FOUND": 404}[outcome]
        if "wrong_status_code" in state.config.defects and code == 202:
            code = 200
        headers = {"x-fal-request-id": params["request_id"]} if outcome != "NOT_FOUND" else {}
        return _json(code, {"status": outcome}, headers)

    async def file(self, request: Request) -> Response:
        """An output image the emulator rendered, at the URL its result gave."""
        state = self.state
        found = state.queue.find(request.path_params["request_id"], state.now())
        if found is None or found.status != "COMPLETED" or not _serves_files(found):
            return _detail(404, "File not found")
        index = _file_index(found, request.path_params["file_name"])
        if index is None:
            return _detail(404, "File not found")
        try:
            images = await run_in_threadpool(self._render, found, self._input_readers(found, 0))
        except InputImageError:
            return _detail(404, "File not found")
        image = images[index]
        return Response(image.data, media_type=image.content_type, headers={"Cache-Control": "max-age=3600"})


def _failing(message: str) -> ReadInput:
    def read() -> bytes:
        raise InputImageError(message)

    return read


def _serves_files(request: QueuedRequest) -> bool:
    # sync_mode outputs are data URIs that fal does not store; failed requests have no output.
    return (
        request.status == "COMPLETED"
        and request.ending is None
        and request.outcome is Outcome.OK
        and not request.arguments.get("sync_mode")
    )


def _file_name(request: QueuedRequest, index: int) -> str:
    extension = "png" if request.arguments.get("output_format") == "png" else "jpg"
    return f"{request.request_id}_{index}.{extension}"


def _file_index(request: QueuedRequest, file_name: str) -> int | None:
    count = int(request.arguments.get("num_images", 1))
    for index in range(count):
        if _file_name(request, index) == file_name:
            return index
    return None


# -- admin API ----------------------------------------------------------------------------------------------------


class AdminEndpoints:
    """The emulator's own controls under /_emulator: faults, counters, clock. Not part of fal's API."""

    def __init__(self, state: EmulatorState) -> None:
        self.state = state

    async def health(self, request: Request) -> Response:
        """Liveness: 200 {"status": "ok"}."""
        return _json(200, {"status": "ok"})

    async def faults(self, request: Request) -> Response:
        """GET lists the rules, POST adds one (JSON, see faults.py), DELETE removes all."""
        plan = self.state.faults
        if request.method == "POST":
            try:
                rule = FaultRule.from_json(await request.json())
            except (ValueError, FaultSyntaxError) as err:
                return _detail(422, str(err))
            plan.add(rule)
            return _json(201, rule.as_json())
        if request.method == "DELETE":
            plan.clear()
        return _json(200, {"rules": [rule.as_json() for rule in plan.rules]})

    async def counters(self, request: Request) -> Response:
        """GET the counters; DELETE resets them."""
        if request.method == "DELETE":
            self.state.reset_counters()
        return _json(200, self.state.counters.as_json())

    async def requests(self, request: Request) -> Response:
        """GET every request the emulator holds: its times and the calls made for it (for benchmarks).

        Times are queue seconds; add `clock_offset` to get the emulator's clock (`time.monotonic()` under
        `run_emulator` and `fal-kontext mock`, which is system-wide on Linux).
        """
        state = self.state
        by_request = state.counters.by_request
        held = {
            rid: {
                "submitted_at": queued.submitted_at,
                "started_at": queued.started_at,
                "completed_at": queued.completed_at,
                "calls": dict(by_request.get(rid, {})),
            }
            for rid, queued in state.queue.requests.items()
        }
        return _json(200, {"clock_offset": state.clock_offset(), "requests": held})

    async def clock(self, request: Request) -> Response:
        """POST {"advance": seconds} moves queue time forward (for tests against a running emulator)."""
        if request.method == "POST":
            try:
                data = await request.json()
                seconds = float(data["advance"])
            except (ValueError, KeyError, TypeError) as err:
                return _detail(422, f'send {{"advance": <seconds >= 0>}}: {err}')
            if not math.isfinite(seconds) or seconds < 0:
                return _detail(422, '"advance" must be a finite number of seconds >= 0')
            self.state.offset += seconds
            self.state.queue.advance(self.state.now())
            self.state.persist(always=True)
            self.state.notify()
        return _json(200, {"now": self.state.now()})

    async def webhooks(self, request: Request) -> Response:
        """GET every webhook delivery attempt (most recent 1000)."""
        return _json(200, [attempt.as_json() for attempt in self.state.webhooks.deliveries])

    async def jwks(self, request: Request) -> Response:
        """The public key webhook signatures verify with."""
        return _json(200, self.state.webhooks.signer.jwks())


class Timers:
    """What happens with nobody asking: completed requests' webhooks go out on time (a background task)."""

    def __init__(self, state: EmulatorState, spec: SpecEndpoints) -> None:
        self.state = state
        self.spec = spec
        self._tasks: set[asyncio.Task[None]] = set()

    async def run(self) -> None:
        """Loop until cancelled: advance the queue to each event and dispatch due webhooks."""
        state = self.state
        while True:
            now = state.now()
            state.queue.advance(now)
            for request in state.queue.take_completed():
                task = asyncio.create_task(self._deliver(request))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)
            state.persist(always=True)
            # Wake for the next event, or sooner when a submit, cancel or clock jump changes the schedule.
            wait = min(state.queue.next_event_at() - now, 1.0)
            changed = state.changed
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(changed.wait(), timeout=max(wait, 0.001))

    async def _deliver(self, request: QueuedRequest) -> None:
        assert request.webhook_url is not None
        status, body, _ = await self.spec.outcome_of(request)
        payload = webhook_payload(request, status, body)
        await self.state.webhooks.deliver(request.webhook_url, request.request_id, request.owner, payload)
        self.state.queue.mark_webhook_finished(request.request_id)

    async def stop(self) -> None:
        """Cancel pending deliveries."""
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    return _detail(exc.status_code, str(exc.detail), exc.headers)


def create_app(config: EmulatorConfig | None = None, *, clock: Clock | None = None) -> Starlette:
    """Build the emulator as an ASGI app.

    Args:
        config: the knobs; `EmulatorConfig()` (test defaults) when None.
        clock: monotonic seconds; `time.monotonic` when None. Tests pass a manual clock and move it.

    Returns:
        A Starlette app; `app.state.emulator` is its EmulatorState.
    """
    state = EmulatorState(config or EmulatorConfig(), clock or time.monotonic)
    spec = SpecEndpoints(state)
    admin = AdminEndpoints(state)
    timers = Timers(state, spec)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        loop = asyncio.create_task(timers.run())
        try:
            yield
        finally:
            loop.cancel()
            await asyncio.gather(loop, return_exceptions=True)
            await timers.stop()
            state.persist(always=True)
            if state.store is not None:
                state.store.close()

    admin_routes = [
        Route("/health", admin.health, methods=["GET"]),
        Route("/faults", admin.faults, methods=["GET", "POST", "DELETE"]),
        Route("/counters", admin.counters, methods=["GET", "DELETE"]),
        Route("/clock", admin.clock, methods=["GET", "POST"]),
        Route("/requests", admin.requests, methods=["GET"]),
        Route("/webhooks", admin.webhooks, methods=["GET"]),
    ]
    # Few top-level routes: every status poll is matched against each of them before reaching the spec's.
    routes = [
        Mount(ADMIN_PREFIX, routes=admin_routes),
        Route(JWKS_PATH, admin.jwks, methods=["GET"]),
        Route(_FILES_PREFIX + "/{request_id}/{file_name}", spec.file, methods=["GET"]),
    ]
    app = Starlette(routes=routes, lifespan=lifespan, exception_handlers={HTTPException: _http_error})
    # Whatever the emulator's own routes do not match goes to the spec's operations, which answer 404 and 405
    # themselves (a Mount would not see paths holding a newline).
    app.router.default = spec
    app.state.emulator = state
    return app
