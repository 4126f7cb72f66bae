"""A second fal-like queue server, written from fal's documentation only, to check the contract suite itself.

The contract suite is developed against our own emulator; an expectation that only the emulator meets would reject
a correct fal-compatible server. This server is small and independent (it shares no code with
`fal_kontext_emulator`) and follows fal's documented queue protocol (docs.fal.ai/documentation/model-apis/inference/queue
and the pages it links):

- `POST /<endpoint-id>` for every submit operation of the spec: the input is validated against the spec
  (422 `{"detail": [{loc, msg, type}]}`, https://fal.ai/docs/model-apis/errors), else 200 with `request_id`,
  `status_url`, `response_url`, `cancel_url` on the app path (`/<owner>/<app>/requests/<id>`, "do not add the
  endpoint path", https://fal.ai/docs/api-reference/inference-api), `status: IN_QUEUE` and `queue_position`.
- status: 202 while IN_QUEUE / IN_PROGRESS, 200 once COMPLETED; `queue_position` while IN_QUEUE; `logs` null
  unless `logs=1|true`; `metrics.inference_time` once COMPLETED (https://fal.ai/docs/inference-api/queue/status).
- status stream: `data: <status JSON>` per change, a keep-alive comment, closed after COMPLETED
  (https://fal.ai/docs/inference-api/queue/status-stream).
- result: the output once COMPLETED, 400 `{"detail": "Request is still in progress"}` before.
- cancel: 202 `CANCELLATION_REQUESTED`, 400 `ALREADY_COMPLETED`, 404 `NOT_FOUND`
  (https://fal.ai/docs/inference-api/queue/cancel); a cancelled request ends COMPLETED.
- `Authorization: Key <key>` (or `Bearer <key>`); 401 otherwise; each key sees only its own requests (404).
- trailing-slash forms of the request paths, as fal's SDK sends them.

Where fal documents nothing, this server's own choices (marked "ours") differ from the emulator's on purpose
where that is harmless, so a test that encodes the emulator's choice fails here: the result of a cancelled
request, the log lines, the image size, the absence of webhook deliveries.

Time is simulated simply: every request waits `queue_wait` seconds in its endpoint's queue, then runs `run_time`
seconds; runners are unlimited, so queue positions only fall.
"""

from __future__ import annotations

import asyncio
import io
import json
import math
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from openapi_schema_validator import OAS30Validator
from PIL import Image as PILImage
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from contracts.target import queue_path
from fal_kontext.spec import endpoint_specs, operation_path, spec

__all__ = ["ReferenceConfig", "create_app"]

STILL_IN_PROGRESS = "Request is still in progress"  # https://fal.ai/docs/inference-api/queue/result


@dataclass(frozen=True)
class ReferenceConfig:
    """How the reference server behaves: its keys and its simulated times (seconds)."""

    keys: frozenset[str] = frozenset({"reference-key"})
    queue_wait: float = 0.3
    run_time: float = 0.3
    keepalive: float = 15.0  # fal: a comment line every 15 s (status-stream page)


@dataclass
class _Job:
    request_id: str
    endpoint: str
    owner: str
    body: dict[str, Any]
    submitted: float
    start_timeout: float | None
    start: float
    end: float
    cancelled: bool = False
    files: dict[str, bytes] = field(default_factory=dict)

    def state(self, now: float) -> str:
        if now >= self.end:
            return "COMPLETED"
        return "IN_PROGRESS" if now >= self.start else "IN_QUEUE"

    def timed_out(self) -> bool:
        return self.start_timeout is not None and self.end == self.submitted + self.start_timeout


def _iso(moment: float) -> str:
    return datetime.fromtimestamp(moment, UTC).isoformat().replace("+00:00", "Z")


class _Queue:
    """Every request the server knows, by id."""

    def __init__(self, config: ReferenceConfig) -> None:
        self.config = config
        self.jobs: dict[str, _Job] = {}

    def submit(self, endpoint: str, owner: str, body: dict[str, Any], start_timeout: float | None) -> _Job:
        now = time.time()
        start, end = now + self.config.queue_wait, now + self.config.queue_wait + self.config.run_time
        if start_timeout is not None and start_timeout < self.config.queue_wait:
            start = end = now + start_timeout  # never started: ends at the deadline (request_timeout)
        job = _Job(uuid.uuid4().hex, endpoint, owner, body, now, start_timeout, start, end)
        self.jobs[job.request_id] = job
        return job

    def find(self, request_id: str, owner: str) -> _Job | None:
        job = self.jobs.get(request_id)
        return job if job is not None and job.owner == owner else None

    def position(self, job: _Job, now: float) -> int:
        return sum(
            1
            for other in self.jobs.values()
            if other.endpoint == job.endpoint and other.submitted < job.submitted and other.state(now) == "IN_QUEUE"
        )

    def cancel(self, job: _Job, now: float) -> None:
        job.cancelled = True
        job.start = min(job.start, now)
        job.end = now


def _logs(job: _Job, now: float, since: float = -math.inf) -> list[dict[str, Any]]:
    # Ours: one line when the run starts and one when it ends (fal's log item: message, level, source, timestamp).
    lines = []
    if job.start <= now and not job.timed_out():
        lines.append((job.start, f"Generating {job.body.get('num_images', 1)} image(s)"))
    if job.end <= now:
        lines.append((job.end, "Cancelled" if job.cancelled else "Done"))
    return [
        {"message": text, "level": "INFO", "source": "USER", "timestamp": _iso(moment)}
        for moment, text in lines
        if moment > since
    ]


class _Server:
    def __init__(self, config: ReferenceConfig) -> None:
        self.config = config
        self.queue = _Queue(config)
        self.document = spec()
        self.validator_components = {"components": self.document["components"]}

    # --- helpers -------------------------------------------------------------------------------------------
    def owner(self, request: Request) -> str | None:
        scheme, _, secret = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() in ("key", "bearer") and secret in self.config.keys:
            return secret
        return None

    def urls(self, request: Request, job: _Job) -> dict[str, str]:
        # The spec's path of each operation for the job's endpoint (its app's segments filled where the path names them).
        base = str(request.base_url).rstrip("/")
        return {
            name: base + queue_path(operation, job.endpoint, job.request_id)
            for name, operation in (
                ("response_url", "get_request_result"),
                ("status_url", "get_request_status"),
                ("cancel_url", "cancel_request"),
            )
        }

    def status_body(
        self, request: Request, job: _Job, now: float, *, logs: bool, since: float = -math.inf
    ) -> dict[str, Any]:
        state = job.state(now)
        body: dict[str, Any] = {"status": state, "request_id": job.request_id, **self.urls(request, job)}
        if state == "IN_QUEUE":
            body["queue_position"] = self.queue.position(job, now)
        body["logs"] = _logs(job, now, since) if logs else None
        body["metrics"] = {}
        if state == "COMPLETED":
            ran = 0.0 if job.cancelled or job.timed_out() else job.end - job.start
            body["metrics"] = {"inference_time": round(ran, 3)}
            if job.timed_out():
                body["error"], body["error_type"] = "Request timed out", "request_timeout"
        return body

    def validate(self, schema: dict[str, Any], value: Any, where: list[str]) -> list[dict[str, Any]]:
        validator = OAS30Validator({"allOf": [schema], **self.validator_components})
        problems = []
        for error in validator.iter_errors(value):
            location = [*where, *map(str, error.absolute_path)]
            if error.validator == "required":
                missing = error.message.split("'")[1] if "'" in error.message else ""
                location.append(missing)
            problems.append({"loc": location, "msg": error.message, "type": "value_error"})
        return problems

    def parameter_problems(
        self, request: Request, operation: dict[str, Any], path_item: dict[str, Any]
    ) -> list[dict[str, Any]]:
        problems = []
        for reference in [*path_item.get("parameters", []), *operation.get("parameters", [])]:
            parameter = self.resolve(reference)
            source = request.query_params if parameter["in"] == "query" else request.headers
            if parameter["in"] not in ("query", "header") or parameter["name"] not in source:
                continue
            value: Any = source[parameter["name"]]
            schema = self.resolve(parameter["schema"])
            if schema.get("type") == "number":
                try:
                    value = float(value)
                except ValueError:
                    problems.append(
                        {"loc": [parameter["in"], parameter["name"]], "msg": "not a number", "type": "value_error"}
                    )
                    continue
            problems += self.validate(schema, value, [parameter["in"], parameter["name"]])
            if schema.get("format") == "uri" and not str(value).startswith(("http://", "https://")):
                problems.append(
                    {"loc": [parameter["in"], parameter["name"]], "msg": "not an http(s) URL", "type": "value_error"}
                )
        return problems

    def resolve(self, node: dict[str, Any]) -> dict[str, Any]:
        while "$ref" in node:
            target: Any = self.document
            for part in node["$ref"].removeprefix("#/").split("/"):
                target = target[part]
            node = target
        return node

    def image(self, job: _Job, index: int) -> tuple[str, bytes, int, int]:
        """The generated file of image `index`: name, bytes, width, height. Ours: 64 pixels wide."""
        fmt = str(job.body.get("output_format", "jpeg"))
        ratio = str(job.body.get("aspect_ratio", "1:1"))
        across, down = (int(part) for part in ratio.split(":"))
        width, height = 64, max(1, round(64 * down / across))
        name = f"{job.request_id}-{index}.{'png' if fmt == 'png' else 'jpg'}"
        if name not in job.files:
            buffer = io.BytesIO()
            PILImage.new("RGB", (width, height), (40 * index % 255, 120, 200)).save(
                buffer, format="PNG" if fmt == "png" else "JPEG"
            )
            job.files[name] = buffer.getvalue()
        return name, job.files[name], width, height

    def output(self, request: Request, job: _Job) -> dict[str, Any]:
        fmt = str(job.body.get("output_format", "jpeg"))
        images = []
        for index in range(int(job.body.get("num_images", 1))):
            name, data, width, height = self.image(job, index)
            images.append(
                {
                    "url": f"{str(request.base_url).rstrip('/')}/files/{name}",
                    "content_type": f"image/{fmt}",
                    "file_name": name,
                    "file_size": len(data),
                    "width": width,
                    "height": height,
                }
            )
        return {
            "images": images,
            "timings": {"inference": round(job.end - job.start, 3)},
            "seed": int(job.body.get("seed", 42)),
            "has_nsfw_concepts": [False] * len(images),
            "prompt": str(job.body.get("prompt", "")),
        }

    # --- endpoints -----------------------------------------------------------------------------------------
    def submit_route(self, endpoint_id: str, input_schema: str) -> Callable[[Request], Awaitable[Response]]:
        path_item = self.document["paths"]["/" + endpoint_id]
        operation = path_item["post"]
        schema = {"$ref": f"#/components/schemas/{input_schema}"}

        async def submit(request: Request) -> Response:
            owner = self.owner(request)
            if owner is None:
                return _unauthorized()
            problems = self.parameter_problems(request, operation, path_item)
            try:
                body = json.loads(await request.body())
            except ValueError:
                return JSONResponse(
                    {"detail": [{"loc": ["body"], "msg": "the body is not JSON", "type": "value_error"}]}, 422
                )
            problems += self.validate(schema, body, ["body"])
            if problems:
                return JSONResponse({"detail": problems}, 422)
            timeout = request.headers.get("x-fal-request-timeout")
            job = self.queue.submit(endpoint_id, owner, body, float(timeout) if timeout else None)
            now = time.time()
            answer = {
                "request_id": job.request_id,
                **self.urls(request, job),
                "status": "IN_QUEUE",
                "queue_position": self.queue.position(job, now),
            }
            return JSONResponse(answer, headers={"x-fal-request-id": job.request_id})

        return submit

    async def status(self, request: Request) -> Response:
        found = self.lookup(request)
        if isinstance(found, Response):
            return found
        now = time.time()
        body = self.status_body(request, found, now, logs=_flag(request.query_params.get("logs")))
        code = 200 if body["status"] == "COMPLETED" else 202
        return JSONResponse(body, code, headers={"x-fal-request-id": found.request_id})

    async def stream(self, request: Request) -> Response:
        found = self.lookup(request)
        if isinstance(found, Response):
            return found
        job, logs = found, _flag(request.query_params.get("logs"))

        async def events() -> AsyncIterator[bytes]:
            last_state, since, last_sent = "", -math.inf, time.monotonic()
            while True:
                now = time.time()
                state = job.state(now)
                if state != last_state:
                    body = self.status_body(request, job, now, logs=logs, since=since)
                    yield f"data: {json.dumps(body)}\n\n".encode()
                    last_state, since, last_sent = state, now, time.monotonic()
                    if state == "COMPLETED":
                        return
                elif time.monotonic() - last_sent >= self.config.keepalive:
                    yield b": keep-alive\n\n"
                    last_sent = time.monotonic()
                await asyncio.sleep(0.02)

        return StreamingResponse(events(), media_type="text/event-stream", headers={"x-fal-request-id": job.request_id})

    async def result(self, request: Request) -> Response:
        found = self.lookup(request)
        if isinstance(found, Response):
            return found
        job, headers = found, {"x-fal-request-id": found.request_id}
        if job.state(time.time()) != "COMPLETED":
            return JSONResponse({"detail": STILL_IN_PROGRESS}, 400, headers=headers)
        if job.timed_out():  # https://docs.fal.ai/documentation/model-apis/request-errors
            return JSONResponse(
                {"detail": "Request timed out", "error_type": "request_timeout"},
                504,
                headers={**headers, "X-Fal-Request-Timeout-Type": "user", "X-Fal-Error-Type": "request_timeout"},
            )
        if job.cancelled:  # ours: fal documents no result for a cancelled request
            return JSONResponse({"detail": "Request was cancelled"}, 400, headers=headers)
        return JSONResponse(self.output(request, job), headers=headers)

    async def cancel(self, request: Request) -> Response:
        owner = self.owner(request)
        if owner is None:
            return _unauthorized()
        job = self.queue.find(request.path_params["request_id"], owner)
        if job is None:
            return JSONResponse({"status": "NOT_FOUND"}, 404)
        now, headers = time.time(), {"x-fal-request-id": job.request_id}
        if job.state(now) == "COMPLETED":
            return JSONResponse({"status": "ALREADY_COMPLETED"}, 400, headers=headers)
        self.queue.cancel(job, now)
        return JSONResponse({"status": "CANCELLATION_REQUESTED"}, 202, headers=headers)

    async def file(self, request: Request) -> Response:
        # Output files are public, like fal's CDN URLs: no key needed.
        name = request.path_params["name"]
        job = self.queue.jobs.get(name.split("-", 1)[0])
        if job is None or name not in job.files:
            return JSONResponse({"detail": "File not found"}, 404)
        return Response(job.files[name], media_type="image/png" if name.endswith(".png") else "image/jpeg")

    def lookup(self, request: Request) -> _Job | Response:
        owner = self.owner(request)
        if owner is None:
            return _unauthorized()
        job = self.queue.find(request.path_params["request_id"], owner)
        if job is None:
            return JSONResponse({"detail": "Request not found"}, 404)
        return job

    def routes(self) -> Iterable[Route]:
        # The spec's `{request_id}` is Starlette's path parameter syntax too.
        for endpoint in endpoint_specs():
            yield Route("/" + endpoint.id, self.submit_route(endpoint.id, endpoint.input_schema), methods=["POST"])
        yield Route(operation_path("get_request_status"), self.status, methods=["GET"])
        yield Route(operation_path("stream_request_status"), self.stream, methods=["GET"])
        yield Route(operation_path("get_request_result"), self.result, methods=["GET"])
        yield Route(operation_path("cancel_request"), self.cancel, methods=["PUT"])
        yield Route("/files/{name}", self.file, methods=["GET"])


def _flag(value: str | None) -> bool:
    return value in ("1", "true")  # fal-js sends 1/0, fal_client true/false


def _unauthorized() -> JSONResponse:
    return JSONResponse({"detail": "Invalid key"}, 401)


class _StripTrailingSlash:
    """fal's SDK calls `.../status/` and `.../requests/{id}/`: both forms answer the same."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and len(scope["path"]) > 1 and scope["path"].endswith("/"):
            scope = {**scope, "path": scope["path"].rstrip("/"), "raw_path": scope["raw_path"].rstrip(b"/")}
        await self.app(scope, receive, send)


async def _not_found(request: Request, exc: Exception) -> Response:
    return JSONResponse({"detail": f"Path {request.url.path} not found"}, 404)


def create_app(config: ReferenceConfig | None = None) -> ASGIApp:
    """The reference server as an ASGI app."""
    server = _Server(config or ReferenceConfig())
    app = Starlette(routes=list(server.routes()), exception_handlers={404: _not_found})
    return _StripTrailingSlash(app)
