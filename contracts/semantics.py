"""The probe that observes one server's whole queue lifecycle with fal's rules that a schema cannot express.

The rules are plain functions in `fal_kontext_emulator.queue_rules` (shared with the validating proxy,
`fal-kontext proxy`), plus `check_image` here (it decodes images). `observe_lifecycle` drives one server through the
lifecycle with raw HTTP and applies them, the same way against the local emulator and against a remote server (fal,
an aggregator, a proxy); every answer is also checked against the spec.

Free probes (no job is queued): a wrong key, an unknown request id on every queue operation, a body the spec refuses.
Paid probe: one job (priced from the spec before it is sent, within the run's `PaidCallBudget`) with the checkable
input of `contracts/paid_job.py`, observed from submit to completion by polling (logs on and off, trailing-slash
forms) and by the status stream at the same time (its framing, each event against the status schema, its logs
incremental); the result before and after completion, fetched twice, its echoes and images checked, a cancel after
completion, and (with a second key) what another key sees of it.

A correct server is not failed for what HTTP allows: bodies are read undone of their Content-Encoding, the stream
through the client's SSE parser (`fal_kontext.sse`), and a 429 is retried as the client retries it (`Retry-After`
when given, else backoff) before the answer is judged.
"""

from __future__ import annotations

import base64
import functools
import io
import random
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import timedelta
from typing import Any

import httpx
from PIL import Image as PILImage

from contracts.conformance import SpecIndex
from contracts.paid_job import PaidJob, RequestIds, check_output, check_ratio, input_properties, paid_job
from contracts.target import BudgetExhausted, ContractTarget, PaidCallBudget, with_trailing_slash
from fal_kontext.retry import Failure, RetryPolicy
from fal_kontext.spec import EndpointSpec, endpoint_specs, resolve, spec
from fal_kontext_emulator.queue_rules import (
    QUEUE_STATUSES,
    STILL_IN_PROGRESS,
    RequestHistory,
    Violation,
    check_returned_url,
    check_status_answer,
    check_stream_logs,
    follow_url,
    parse_event_stream,
)

__all__ = [
    "Observation",
    "ProbeOptions",
    "ProbeSettings",
    "check_image",
    "image_size",
    "invalid_input",
    "observe_lifecycle",
]

# schemathesis' validation is not documented as thread-safe; the mutation test probes several servers at once.
_SPEC_LOCK = threading.Lock()
_MAGIC = {"image/png": b"\x89PNG\r\n\x1a\n", "image/jpeg": b"\xff\xd8\xff", "image/webp": b"RIFF"}


def check_image(
    image: dict[str, Any], data: bytes, served_type: str | None, asked_format: str | None, where: str
) -> list[Violation]:
    """A downloaded output image against what the result says about it and what was asked for."""
    found = []
    claimed = str(image.get("content_type") or "")
    actual = next((kind for kind, magic in _MAGIC.items() if data.startswith(magic)), None)
    if actual is None:
        return [Violation("image-bytes", f"{where}: the file is not an image ({data[:8]!r})")]
    if claimed and claimed != actual:
        found.append(Violation("image-type", f"{where}: content_type {claimed} but the file is {actual}"))
    if served_type and served_type.split(";")[0].strip() not in (actual, "application/octet-stream"):
        found.append(Violation("image-type", f"{where}: served as {served_type} but the file is {actual}"))
    if asked_format and actual != f"image/{asked_format}":
        found.append(Violation("image-format", f"{where}: output_format {asked_format} was asked for, got {actual}"))
    if isinstance(image.get("file_size"), int) and image["file_size"] != len(data):
        found.append(Violation("image-size", f"{where}: file_size {image['file_size']} but {len(data)} bytes"))
    try:
        width, height = PILImage.open(io.BytesIO(data)).size
    except OSError as err:
        return [*found, Violation("image-bytes", f"{where}: the file does not decode ({err})")]
    for name, value in (("width", width), ("height", height)):
        if isinstance(image.get(name), int) and image[name] != value:
            found.append(Violation("image-size", f"{where}: {name} {image[name]} but the file is {value}"))
    return found


def image_size(data: bytes) -> tuple[int, int] | None:
    """Width and height of an encoded image, None if it does not decode."""
    try:
        size: tuple[int, int] = PILImage.open(io.BytesIO(data)).size
    except OSError:
        return None
    return size


# --- the probe (I/O) --------------------------------------------------------------------------------------------


@dataclass
class Observation:
    """What one probe of a server saw."""

    violations: list[Violation] = field(default_factory=list)
    observed: set[str] = field(default_factory=set)  # which rules were exercised
    paid: list[tuple[str, float | None]] = field(default_factory=list)  # what was paid for, and its price

    def add(self, found: list[Violation]) -> None:
        self.violations += found


@dataclass(frozen=True)
class ProbeOptions:
    """What a probe does beyond the free probes and one job of one image.

    Attributes:
        second_secret: another key of the same server, to check that it cannot see the job (skipped without).
        images: images the paid job asks for (more than 1 costs more: the opt-in priced check).
        ids: the request ids the run's other submits got (each submit must get a new one).
        cancel_pending: also submit a job and cancel it while pending, then follow it to its end (one more job).
        error_job: also submit a job whose start deadline passes in the queue, and follow it to its error ending
            (one more job; a free server's, as a paid server may well run it).
    """

    second_secret: str | None = None
    images: int = 1
    ids: RequestIds = field(default_factory=RequestIds)
    cancel_pending: bool = False
    error_job: bool = False


@dataclass(frozen=True)
class ProbeSettings:
    """Timings of a probe: how long to wait for completion, and how soon a stream must close after COMPLETED."""

    wait_timeout: float = 300.0
    poll_interval: float = 0.1
    stream_close_timeout: float = 5.0
    stream_read_timeout: float = 20.0  # fal sends a keep-alive comment every 15 s


def invalid_input(endpoint: EndpointSpec, valid: dict[str, Any]) -> tuple[dict[str, Any], str]:
    """A body the spec refuses, before anything is queued: one enum field set to a value outside its enum."""
    name, schema = next((n, s) for n, s in input_properties(endpoint.id).items() if s.get("enum"))
    return {**valid, name: f"not-{schema['enum'][0]}"}, name


# A 429 is retried the way the client retries it (Retry-After when the answer has one, else backoff) before the
# answer is judged: 429 is in the spec for every operation, and fal's clients retry it.
_RATE_LIMIT_RETRIES = RetryPolicy(max_retries=6, initial_delay=0.5, max_delay=10.0)


class _Probe:
    def __init__(
        self,
        target: ContractTarget,
        budget: PaidCallBudget,
        *,
        settings: ProbeSettings,
        options: ProbeOptions,
        announce: Callable[[str], None],
    ) -> None:
        self.target, self.budget, self.settings, self.announce = target, budget, settings, announce
        self.second_secret, self.images_asked, self.ids = options.second_secret, options.images, options.ids
        self.options = options
        self.index = _spec_index()
        self.seen = Observation()
        self.client = httpx.Client(verify=target.verify, timeout=httpx.Timeout(30.0), follow_redirects=False)
        self.endpoint = next((e for e in endpoint_specs() if e.id == target.endpoint), None)

    def url(self, operation_id: str, request_id: str) -> str:
        return self.target.queue_url(operation_id, request_id)

    def call(self, method: str, url: str, *, secret: str | None = None, **kwargs: Any) -> httpx.Response:
        """One call, a 429 retried first (``_RATE_LIMIT_RETRIES``); the answer is checked against the spec."""
        scheme = "Key" if self.target.auth == "key" else "Bearer"
        headers = {"Authorization": f"{scheme} {secret or self.target.secret}", **kwargs.pop("headers", {})}
        retry = 0
        while True:
            response = self.client.request(method, url, headers=headers, **kwargs)
            if response.status_code != 429:
                break
            retry += 1
            failure = Failure(429, response.headers)
            delay = _RATE_LIMIT_RETRIES.delay_before_retry(retry, failure, random.random, idempotent=method != "POST")
            if delay is None:
                break
            self.seen.observed.add("rate-limit-retried")
            time.sleep(delay)
        self.schema(response)
        return response

    def submit(self, body: dict[str, Any], what: str, headers: dict[str, str] | None = None) -> httpx.Response:
        """POST ``body`` to the endpoint; a request id it gets must be new to the run (``RequestIds``)."""
        assert self.endpoint is not None
        response = self.call("POST", self.target.url(self.endpoint.id), json=body, headers=headers or {})
        request_id = response.json().get("request_id") if response.status_code == 200 and _is_json(response) else None
        if isinstance(request_id, str):
            self.seen.observed.add("request-id-distinct")
            self.seen.add(self.ids.add(request_id, what))
        return response

    def schema(self, response: httpx.Response) -> None:
        """Every answer also fits the spec (documented status, headers, schema, media type)."""
        with _SPEC_LOCK:
            problems = self.index.check_response(response.request, response)
            operation = self.index.schema.find_operation_by_path(response.request.method, response.request.url.path)
        where = f"{response.request.method} {response.request.url.path}"
        self.seen.add([Violation("spec", f"{where}: {p}") for p in problems])
        if operation is None:
            return
        documented = self.index.document["paths"][operation.path][response.request.method.lower()]["responses"]
        answer = documented.get(str(response.status_code))
        while isinstance(answer, dict) and "$ref" in answer:
            answer = self.index.document["components"]["responses"][answer["$ref"].rsplit("/", 1)[-1]]
        kinds = set((answer or {}).get("content", {}))
        served = response.headers.get("content-type", "").split(";")[0].strip()
        if kinds and served not in kinds:
            self.seen.add([Violation("content-type", f"{where}: served as {served!r}; the spec says {sorted(kinds)}")])

    def expect(self, rule: str, response: httpx.Response, code: int, where: str) -> bool:
        self.seen.observed.add(rule)
        if response.status_code != code:
            self.seen.add(
                [Violation(rule, f"{where}: HTTP {response.status_code} (fal: {code}): {response.text[:160]!r}")]
            )
            return False
        return True

    def json_detail(self, rule: str, response: httpx.Response, where: str, *, listed: bool = False) -> Any:
        """fal's error bodies are JSON with `detail` (a string; a list of {loc, msg, type} for validation)."""
        try:
            body = response.json()
        except ValueError:
            self.seen.add(
                [Violation(rule, f"{where}: the error body is not JSON ({response.headers.get('content-type')})")]
            )
            return None
        detail = body.get("detail") if isinstance(body, dict) else None
        if listed and not (isinstance(detail, list) and all(isinstance(i, dict) and "loc" in i for i in detail)):
            self.seen.add(
                [Violation(rule, f"{where}: detail is not fal's list of {{loc, msg, type}}: {detail!r:.160}")]
            )
        elif not listed and not isinstance(detail, str):
            self.seen.add([Violation(rule, f"{where}: detail is not a message string: {detail!r:.160}")])
        return detail

    # --- free probes ---
    def free_probes(self) -> None:
        unknown = str(uuid.uuid4())
        wrong = "wrong-" + uuid.uuid4().hex
        response = self.call("GET", self.url("get_request_status", unknown), secret=wrong)
        if self.expect("wrong-key", response, 401, "status with a wrong key"):
            self.json_detail("wrong-key", response, "status with a wrong key")
        for operation, method in (
            ("get_request_status", "GET"),
            ("stream_request_status", "GET"),
            ("get_request_result", "GET"),
        ):
            response = self.call(method, self.url(operation, unknown))
            if self.expect("unknown-request", response, 404, f"{operation} of an unknown id"):
                self.json_detail("unknown-request", response, f"{operation} of an unknown id")
        response = self.call("PUT", self.url("cancel_request", unknown))
        if self.expect("unknown-request", response, 404, "cancel of an unknown id"):
            body = response.json() if _is_json(response) else None
            if not (isinstance(body, dict) and body.get("status") == "NOT_FOUND"):
                self.seen.add(
                    [Violation("unknown-request", f"cancel of an unknown id: {response.text[:160]!r}, fal: NOT_FOUND")]
                )

    def malformed_body(self) -> None:
        """https://fal.ai/docs/model-apis/errors: an input the model refuses answers 422, detail[].loc naming it."""
        assert self.endpoint is not None
        valid = paid_job(self.endpoint, remote=self.target.remote).body
        body, name = invalid_input(self.endpoint, valid)
        where = f"submit with {name}={body[name]!r}"
        response = self.submit(body, where)
        if response.status_code == 200:
            # Lenient: the server queued what it should have refused. Cancel it at once; it may be billed.
            self.seen.paid.append((f"{where} (accepted, cancelled at once)", self.price()))
            request_id = response.json().get("request_id", "") if _is_json(response) else ""
            if request_id:
                self.call("PUT", self.url("cancel_request", request_id))
        if self.expect("malformed-body", response, 422, where):
            detail = self.json_detail("malformed-body", response, where, listed=True)
            if isinstance(detail, list) and not any(
                isinstance(item, dict) and name in map(str, item.get("loc") or []) for item in detail
            ):
                self.seen.add(
                    [Violation("malformed-body", f"{where}: no detail item's loc names {name}: {detail!r:.200}")]
                )

    # --- the paid lifecycle ---
    def price(self) -> float | None:
        if not self.target.remote:
            return 0.0
        return self.endpoint.price_usd_per_image if self.endpoint else None

    def paid_submit(
        self, job: PaidJob, what: str, headers: dict[str, str] | None = None
    ) -> tuple[str, dict[str, str], dict[str, Any]] | None:
        """Submit a paid job within the budget, its price said first; returns its request id, the URLs to follow
        (each checked) and the submit answer, or None when it was not sent or not queued."""
        assert self.endpoint is not None
        app = self.endpoint.app
        price = self.price()
        try:
            self.budget.spend(what)
        except BudgetExhausted as exhausted:
            self.announce(f"{what}: skipped: {exhausted}")
            return None
        cost = (
            "free (local emulator)"
            if price == 0
            else (f"${price * job.images:.2f}" if price else "price not stated in the spec")
        )
        if self.target.remote:
            self.announce(
                f"paid call {self.budget.spent}/{self.budget.limit}: {what} on {self.target.base_url}: {cost}"
            )
        self.seen.paid.append((what, None if price is None else price * job.images))
        response = self.submit(job.body, what, headers=headers)
        if not self.expect("submit", response, 200, f"submit of {what}") or not _is_json(response):
            return None
        submitted = response.json()
        request_id = str(submitted.get("request_id", ""))
        if not request_id:
            self.seen.add([Violation("submit", f"submit of {what}: answer without request_id")])
            return None
        urls = {}
        for name, operation in (
            ("status_url", "get_request_status"),
            ("response_url", "get_request_result"),
            ("cancel_url", "cancel_request"),
        ):
            self.seen.observed.add("returned-urls")
            self.seen.add(
                check_returned_url(
                    submitted.get(name),
                    operation,
                    app,
                    request_id,
                    self.target.base_url,
                    where=f"submit {name}",
                )
            )
            urls[operation] = (
                follow_url(submitted[name], self.target.base_url)
                if isinstance(submitted.get(name), str) and "://" in submitted[name]
                else self.url(operation, request_id)
            )
        return request_id, urls, submitted

    def lifecycle(self) -> None:
        assert self.endpoint is not None
        job = paid_job(self.endpoint, remote=self.target.remote, images=self.images_asked)
        what = f"one job on {self.endpoint.id} ({job.images} image{'s' if job.images > 1 else ''})"
        submitted = self.paid_submit(job, what)
        if submitted is None:
            return
        request_id, urls, answer = submitted
        history = RequestHistory()
        if "status" in answer:  # the submit answer is the request's first status (IN_QUEUE, maybe a position)
            self.seen.add(history.observe(answer, "submit"))
        stream = _StreamReader(self, request_id, self.settings)
        stream.start()
        self.poll(request_id, urls, history)
        stream.join(self.settings.wait_timeout)
        self.seen.add(stream.found)
        self.finish(request_id, urls, job)

    # --- jobs that end without output ---
    # fal: "A failed or cancelled request also has the status COMPLETED" (https://fal.ai/docs/inference-api/queue/status):
    # such a request is followed to its end, where a status fal does not have (FAILED, CANCELLED) shows.

    def cancelled_job(self) -> None:
        """One job cancelled while pending (https://fal.ai/docs/inference-api/queue/cancel: a queued request is
        removed, a running one signalled), then followed to its end."""
        assert self.endpoint is not None
        job = paid_job(self.endpoint, remote=self.target.remote)
        what = f"a job on {self.endpoint.id} cancelled while pending (1 image, billed only if it starts first)"
        submitted = self.paid_submit(job, what)
        if submitted is None:
            return
        request_id, urls, _ = submitted
        cancel = self.call("PUT", urls["cancel_request"])
        self.seen.observed.add("cancel-pending")
        body = cancel.json() if _is_json(cancel) else None
        state = body.get("status") if isinstance(body, dict) else None
        # Which answers a cancel has is the spec's to say (every answer is checked against it in call()); fal's
        # prose adds what their status says.
        if cancel.status_code == 202 and state != "CANCELLATION_REQUESTED":
            self.seen.add(
                [Violation("cancel-pending", f"cancel answered 202 {cancel.text[:160]!r}, fal: CANCELLATION_REQUESTED")]
            )
        elif cancel.status_code == 400 and state != "ALREADY_COMPLETED":  # it ended before the cancel arrived
            self.seen.add(
                [Violation("cancel-pending", f"cancel answered 400 {cancel.text[:160]!r}, fal: ALREADY_COMPLETED")]
            )
        elif cancel.status_code not in (200, 202, 400):
            self.seen.add(
                [
                    Violation(
                        "cancel-pending", f"cancel of a pending job: HTTP {cancel.status_code}: {cancel.text[:160]!r}"
                    )
                ]
            )
        self.until_ended(request_id, urls, "cancelled job")

    def timed_out_job(self) -> None:
        """One job whose start deadline (``X-Fal-Request-Timeout`` at the smallest value the spec allows) passes
        while it is queued: it ends with fal's request_timeout error
        (https://docs.fal.ai/documentation/model-apis/request-errors). A server with no queue wait may run it instead:
        then no error ending was seen, and nothing is reported."""
        assert self.endpoint is not None
        job = paid_job(self.endpoint, remote=self.target.remote)
        seconds = _smallest_start_timeout(self.endpoint.id)
        if seconds is None:
            return
        what = f"a job on {self.endpoint.id} with a start deadline of {seconds:g} s (1 image, billed only if it starts)"
        submitted = self.paid_submit(job, what, headers={"X-Fal-Request-Timeout": f"{seconds:g}"})
        if submitted is None:
            return
        request_id, urls, _ = submitted
        ended = self.until_ended(request_id, urls, "job past its start deadline")
        if isinstance(ended, dict) and ended.get("error"):
            self.seen.observed.add("error-ending")

    def until_ended(self, request_id: str, urls: dict[str, str], where: str) -> dict[str, Any] | None:
        """Poll a request until COMPLETED (each status checked, in order), read its stream (COMPLETED, then closed),
        fetch its result (an answer the spec documents) and cancel it again (400 ALREADY_COMPLETED). Returns the
        last status."""
        history = RequestHistory()
        deadline = time.monotonic() + self.settings.wait_timeout
        turn = 0
        while True:
            turn += 1
            response = self.call("GET", urls["get_request_status"], params={"logs": "1"})
            said = f"{where}: status #{turn}"
            if response.status_code not in (200, 202) or not _is_json(response):
                self.seen.add(
                    [Violation("status-code", f"{said}: HTTP {response.status_code}: {response.text[:160]!r}")]
                )
                return None
            body = response.json()
            self.seen.add(check_status_answer(response.status_code, body, request_id, logs_requested=True, where=said))
            if not isinstance(body, dict):
                return None
            self.seen.add(history.observe(body, said))
            if body.get("status") == "COMPLETED" or body.get("status") not in QUEUE_STATUSES:
                break
            if time.monotonic() > deadline:
                self.seen.add(
                    [Violation("completion", f"{where}: not COMPLETED within {self.settings.wait_timeout} s")]
                )
                return None
            time.sleep(self.settings.poll_interval)
        stream = _StreamReader(self, request_id, self.settings)
        stream.run()
        self.seen.add([replace(v, message=f"{where}: {v.message}") for v in stream.found])
        self.call("GET", urls["get_request_result"])
        again = self.call("PUT", urls["cancel_request"])
        if self.expect("cancel-after-completion", again, 400, f"{where}: cancel after its end"):
            state = again.json().get("status") if _is_json(again) and isinstance(again.json(), dict) else None
            if state != "ALREADY_COMPLETED":
                self.seen.add(
                    [Violation("cancel-after-completion", f"{where}: {again.text[:160]!r}, fal: ALREADY_COMPLETED")]
                )
        return body

    def poll(self, request_id: str, urls: dict[str, str], history: RequestHistory) -> None:
        assert self.endpoint is not None
        app = self.endpoint.app
        deadline = time.monotonic() + self.settings.wait_timeout
        forms = [("0", False, ""), ("1", True, ""), ("true", True, "/"), ("false", False, "/")]
        checked_early_result = False
        turn = 0
        while time.monotonic() < deadline:
            flag, logs, slash = forms[turn % len(forms)]
            turn += 1
            url = with_trailing_slash(urls["get_request_status"]) if slash else urls["get_request_status"]
            response = self.call("GET", url, params={"logs": flag})
            where = f"status #{turn} (logs={flag}{', trailing slash' if slash else ''})"
            self.seen.observed.add("status-code")
            if response.status_code not in (200, 202) or not _is_json(response):
                self.seen.add(
                    [Violation("status-code", f"{where}: HTTP {response.status_code}: {response.text[:160]!r}")]
                )
                return
            body = response.json()
            self.seen.add(check_status_answer(response.status_code, body, request_id, logs_requested=logs, where=where))
            self.seen.add(history.observe(body, where) if isinstance(body, dict) else [])
            for name, operation in (
                ("status_url", "get_request_status"),
                ("response_url", "get_request_result"),
                ("cancel_url", "cancel_request"),
            ):
                if isinstance(body, dict) and body.get(name) is not None:
                    self.seen.add(
                        check_returned_url(
                            body[name],
                            operation,
                            app,
                            request_id,
                            self.target.base_url,
                            where=f"{where} {name}",
                        )
                    )
            status = body.get("status") if isinstance(body, dict) else None
            if status == "IN_QUEUE":
                self.seen.observed.add("queue-position")
            if status in ("IN_QUEUE", "IN_PROGRESS") and not checked_early_result:
                early = self.call("GET", urls["get_request_result"])
                if early.status_code == 200:
                    # It completed between the two calls (then the next status says so), or the result answered
                    # before completion (then the next status still says pending: RequestHistory reports it).
                    self.seen.add(history.observe_result(200, early.content, f"result after {where}"))
                    continue
                checked_early_result = True
                if self.expect("result-before-completion", early, 400, "result before completion"):
                    detail = self.json_detail("result-before-completion", early, "result before completion")
                    if detail != STILL_IN_PROGRESS:
                        self.seen.add(
                            [Violation("result-before-completion", f"detail {detail!r}, fal: {STILL_IN_PROGRESS!r}")]
                        )
            if status == "COMPLETED" or status not in QUEUE_STATUSES:
                return
            time.sleep(self.settings.poll_interval)
        self.seen.add([Violation("completion", f"not COMPLETED within {self.settings.wait_timeout} s")])

    def finish(self, request_id: str, urls: dict[str, str], job: PaidJob) -> None:
        response = self.call("GET", urls["get_request_result"])
        if not self.expect("result", response, 200, "result after completion") or not _is_json(response):
            return
        if response.headers.get("x-fal-request-id") != request_id:
            # fal-js reads the request id of a result from this header (Result.requestId, https://github.com/fal-ai/fal-js).
            self.seen.add(
                [
                    Violation(
                        "request-id-header",
                        f"result: x-fal-request-id {response.headers.get('x-fal-request-id')!r}, expected {request_id}",
                    )
                ]
            )
        output = response.json()
        self.seen.observed.add("echo")
        self.seen.add(check_output(output, job, "result"))
        self.images(output, job)
        # fal keeps a result for a while after completion (https://fal.ai/docs/inference-api/queue/result): a second
        # fetch answers the same.
        again = self.call("GET", urls["get_request_result"])
        self.seen.observed.add("result-kept")
        if again.status_code != 200 or not _is_json(again) or again.json() != output:
            self.seen.add(
                [
                    Violation(
                        "result-kept",
                        f"the result fetched a second time: HTTP {again.status_code} {again.text[:160]!r}, "
                        "not the same output",
                    )
                ]
            )
        again = self.call("GET", urls["get_request_status"], params={"logs": "0"})
        if self.expect("completed-stays", again, 200, "status after the result") and _is_json(again):
            self.seen.add(
                check_status_answer(
                    200, again.json(), request_id, logs_requested=False, where="status after the result"
                )
            )
        cancel = self.call("PUT", urls["cancel_request"])
        if self.expect("cancel-after-completion", cancel, 400, "cancel after completion"):
            body = cancel.json() if _is_json(cancel) else None
            if not (isinstance(body, dict) and body.get("status") == "ALREADY_COMPLETED"):
                self.seen.add([Violation("cancel-after-completion", f"{cancel.text[:160]!r}, fal: ALREADY_COMPLETED")])
        wrong = self.call("GET", urls["get_request_status"], secret="wrong-" + uuid.uuid4().hex)
        self.expect("wrong-key", wrong, 401, "status of a real request with a wrong key")
        if self.second_secret:
            for operation, method in (
                ("get_request_status", "GET"),
                ("get_request_result", "GET"),
                ("cancel_request", "PUT"),
            ):
                other = self.call(method, urls[operation], secret=self.second_secret)
                self.expect("per-key-isolation", other, 404, f"{operation} of another key's request")

    def images(self, output: Any, job: PaidJob) -> None:
        """Each output image downloaded and checked against what the result says and what the job asked for."""
        produced = output.get("images") if isinstance(output, dict) else None
        if not isinstance(produced, list):
            return
        self.seen.observed.add("images")
        for number, image in enumerate(produced):
            url = image.get("url") if isinstance(image, dict) else None
            if not isinstance(url, str) or not url.startswith(("http://", "https://", "data:")):
                self.seen.add([Violation("image-url", f"image {number}: {url!r} is not a URL")])
                continue
            if url.startswith("data:"):
                data, served = base64.b64decode(url.split(",", 1)[1]), url[5:].split(";")[0]
            else:
                download = self.client.get(url)
                if download.status_code != 200:
                    self.seen.add(
                        [Violation("image-url", f"image {number}: GET {url} answered {download.status_code}")]
                    )
                    continue
                data, served = download.content, download.headers.get("content-type")
            assert isinstance(image, dict)
            self.seen.add(check_image(image, data, served, job.output_format, f"image {number}"))
            size = image_size(data)
            if size is not None and job.aspect_ratio is not None:
                self.seen.add(check_ratio(*size, job.aspect_ratio, f"image {number}"))


def _smallest_start_timeout(endpoint_id: str) -> float | None:
    """The smallest ``X-Fal-Request-Timeout`` the spec allows on the endpoint's submit (its minimum, doubled when
    exclusive); None when the spec has no such header there."""
    item = spec()["paths"]["/" + endpoint_id]
    for node in [*item.get("parameters", []), *item["post"].get("parameters", [])]:
        parameter = resolve(node)
        if parameter.get("in") == "header" and str(parameter.get("name")).lower() == "x-fal-request-timeout":
            schema = resolve(parameter.get("schema", {}))
            minimum = float(schema.get("minimum", 0))
            return minimum * 2 if schema.get("exclusiveMinimum") is True else max(minimum, 0.1)
    return None


@functools.cache
def _spec_index() -> SpecIndex:
    """The spec, loaded once per process (several probes share it; see _SPEC_LOCK)."""
    return SpecIndex()


def _is_json(response: httpx.Response) -> bool:
    try:
        response.json()
    except ValueError:
        return False
    return True


class _StreamReader(threading.Thread):
    """Reads the status stream of a request while the probe polls, and checks its framing, order and closing."""

    def __init__(self, probe: _Probe, request_id: str, settings: ProbeSettings) -> None:
        super().__init__(daemon=True)
        self.probe, self.request_id, self.settings = probe, request_id, settings
        self.found: list[Violation] = []

    def run(self) -> None:
        try:
            self.read()
        except Exception as err:  # the thread reports, never raises: what went wrong is the finding
            self.found.append(Violation("stream", f"status stream: {type(err).__name__}: {err}"))

    def read(self) -> None:
        probe = self.probe
        probe.seen.observed.add("stream")
        url = probe.url("stream_request_status", self.request_id)
        scheme = "Key" if probe.target.auth == "key" else "Bearer"
        timeout = httpx.Timeout(30.0, read=self.settings.stream_read_timeout)
        chunks: list[bytes] = []
        completed_at: float | None = None
        closed = False
        with probe.client.stream(
            "GET",
            url,
            params={"logs": "1"},
            headers={"Authorization": f"{scheme} {probe.target.secret}", "Accept": "text/event-stream"},
            timeout=timeout,
        ) as response:
            if response.status_code != 200:
                response.read()
                self.found.append(
                    Violation("stream", f"status stream: HTTP {response.status_code}: {response.text[:160]!r}")
                )
                return
            kind = response.headers.get("content-type", "")
            if not kind.startswith("text/event-stream"):
                self.found.append(
                    Violation("stream-framing", f"status stream served as {kind!r}, not text/event-stream")
                )
            try:
                # iter_bytes, not iter_raw: the events are read undone of any Content-Encoding.
                for chunk in response.iter_bytes():
                    chunks.append(chunk)
                    if completed_at is None and b"COMPLETED" in b"".join(chunks[-2:]):
                        completed_at = time.monotonic()
                    if (
                        completed_at is not None
                        and time.monotonic() - completed_at > self.settings.stream_close_timeout
                    ):
                        break
                else:
                    late = (
                        completed_at is not None
                        and time.monotonic() - completed_at > self.settings.stream_close_timeout
                    )
                    closed = not late
            except httpx.ReadTimeout:
                closed = False
        raw = b"".join(chunks)
        events, framing = parse_event_stream(raw, "status stream")
        self.found += framing
        self.found += check_stream_logs(events, "status stream")
        history = RequestHistory()
        for number, event in enumerate(events):
            where = f"stream event {number}"
            self.found += [
                Violation("stream-event-schema", f"{where}: {p}") for p in probe.index.check_status_event(event)
            ]
            self.found += check_status_answer(0, event, self.request_id, logs_requested=True, where=where)
            self.found += history.observe(event, where)
            if number < len(events) - 1 and event.get("status") == "COMPLETED":
                self.found.append(Violation("stream-closing", f"{where}: events after COMPLETED"))
        if not events or events[-1].get("status") != "COMPLETED":
            self.found.append(
                Violation("stream-closing", f"status stream ended without a COMPLETED event ({len(events)} events)")
            )
        elif not closed:
            self.found.append(
                Violation(
                    "stream-closing",
                    f"status stream still open {self.settings.stream_close_timeout} s after COMPLETED (fal closes it)",
                )
            )
        probe.seen.observed.add("stream-closing")
        # The body as read (decoded): without the headers that described its encoding on the wire.
        headers = {k: v for k, v in response.headers.items() if k.lower() not in ("content-encoding", "content-length")}
        whole = httpx.Response(200, headers=headers, content=raw, request=response.request)
        whole.elapsed = timedelta(0)  # schemathesis reads it; only the content matters here
        probe.schema(whole)


def observe_lifecycle(
    target: ContractTarget,
    budget: PaidCallBudget,
    *,
    options: ProbeOptions | None = None,
    settings: ProbeSettings | None = None,
    announce: Callable[[str], None] = print,
) -> Observation:
    """Probe `target` with every rule: the free probes, then one paid job if the budget allows it.

    Args:
        target: the server (its base URL, auth scheme and key, and the endpoint of the paid job).
        budget: the run's paid-call budget; the job is skipped (and said so through `announce`) when it is used up.
        options: a second key, the images of the paid job, the run's request ids (``ProbeOptions``).
        settings: timings; the defaults suit a live server.
        announce: where each paid call's price is printed before it runs.

    Returns:
        The violations, the rules exercised and the paid calls made with their price (None: the spec has none).

    Raises:
        ValueError: the target's endpoint is not one of the spec's submit endpoints.
    """
    probe = _Probe(
        target,
        budget,
        settings=settings or ProbeSettings(),
        options=options or ProbeOptions(),
        announce=announce,
    )
    if probe.endpoint is None:
        raise ValueError(f"endpoint {target.endpoint!r} is not in the spec; one of: {[e.id for e in endpoint_specs()]}")
    try:
        probe.free_probes()
        probe.malformed_body()
        probe.lifecycle()
        if probe.options.cancel_pending:
            probe.cancelled_job()
        if probe.options.error_job:
            probe.timed_out_job()
    finally:
        probe.client.close()
    return probe.seen
