"""A loopback proxy that applies one named, plausible deviation to a correct fal-like server's answers.

The remote mode of the contract suite is only worth what it catches. Each mutation here is something an aggregator
relaying fal, or a change on fal's side, could plausibly bring (chosen from the aggregators' documents and fal's own
notes, e.g. https://docs.chainhub.tech/integration-tutorial-1957947m0, https://github.com/fal-ai/fal-js/issues/214,
https://github.com/TanStack/ai/pull/396): a status fal does not have,
`200` while a request is pending, URLs on the endpoint's sub-path, relative or on the relay's internal host, a string
`detail` on a 422, an HTML 401, a lost `x-fal-request-id`, an unframed or never-closing stream, results answered 202,
a PNG described as JPEG, one key seeing another's requests, lost queue positions, lenient validation, parameters the
relay drops, wrong status codes. `contracts/test_mutations.py` puts the proxy in front of the reference server and
checks that the remote mode's probe (`contracts/semantics.py`) reports each one; `CONTROLS` are harmless differences
that it must not report.

    python -m contracts.mutations --upstream http://127.0.0.1:8770 --mutation ok_while_pending --port 8771
"""

from __future__ import annotations

import argparse
import asyncio
import gzip
import json
import re
import zlib
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field, replace
from typing import Any
from urllib.parse import urlsplit

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from contracts.paid_job import input_properties
from fal_kontext.spec import operation_path, spec

__all__ = ["CONTROLS", "MUTATIONS", "REQUEST_DRIFTS", "Mutation", "create_proxy"]

_REQUEST_PATH = re.compile(r"/requests/(?P<id>[^/]+)(?P<rest>/status/stream|/status|/cancel)?/?$")
_DROPPED_HEADERS = {"host", "content-length", "transfer-encoding", "connection", "content-encoding", "keep-alive"}


@dataclass
class Outgoing:
    """A request on its way upstream."""

    method: str
    path: str
    query: str
    headers: dict[str, str]
    body: bytes
    operation: str  # submit, status, stream, result, cancel, or other
    request_id: str | None


@dataclass
class Answer:
    """An upstream answer on its way back to the client."""

    status: int
    headers: dict[str, str]
    content: bytes

    def json(self) -> Any:
        try:
            return json.loads(self.content)
        except ValueError:
            return None

    def with_json(self, body: Any, status: int | None = None) -> Answer:
        headers = {**self.headers, "content-type": "application/json"}
        return Answer(self.status if status is None else status, headers, json.dumps(body).encode())


@dataclass
class ProxyState:
    """What a proxy remembers across exchanges (the state a stale or careless relay keeps)."""

    owners: dict[str, str] = field(default_factory=dict)  # request id -> Authorization that submitted it
    endpoints: dict[str, str] = field(default_factory=dict)  # request id -> endpoint path it was submitted to
    completed: set[str] = field(default_factory=set)
    went_back: set[str] = field(default_factory=set)
    polls: Counter[str] = field(default_factory=Counter)
    submits: int = 0  # submits that reached the proxy
    served: set[str] = field(default_factory=set)  # request ids whose result was answered 200
    cancelled: set[str] = field(default_factory=set)  # request ids a cancel was accepted for
    answers: dict[tuple[str, str], Answer] = field(default_factory=dict)  # (endpoint, prompt) -> submit answer


Send = Callable[[Outgoing], Awaitable[Answer]]
ResponseHook = Callable[[ProxyState, Outgoing, Answer, Send], Awaitable[Answer]]


@dataclass(frozen=True)
class Mutation:
    """One deviation: hooks on the request, the answer and the status stream's lines; all optional."""

    name: str
    description: str
    request: Callable[[ProxyState, Outgoing], None] | None = None
    response: ResponseHook | None = None
    stream_line: Callable[[str], str | None] | None = None
    stream_events: int | None = None  # end the stream after this many events
    never_close: bool = False  # keep the stream open after upstream closed it
    upstream_urls: bool = False  # leave the upstream's own origin in answers (a correct relay names itself)
    intercept: Callable[[ProxyState, Outgoing], Answer | None] | None = None  # answer without forwarding
    stream_state: Callable[[ProxyState, Outgoing], Callable[[str], str | None]] | None = None  # per-stream line edit
    line_ending: str = "\n"  # of the status stream's lines
    gzip: bool = False  # answers compressed (Content-Encoding: gzip), streams included


# --- the deviations ---------------------------------------------------------------------------------------------


def _on(operations: set[str], edit: Callable[[ProxyState, Outgoing, Answer], Answer]) -> ResponseHook:
    async def hook(state: ProxyState, out: Outgoing, answer: Answer, send: Send) -> Answer:
        return edit(state, out, answer) if out.operation in operations else answer

    return hook


def _edit_json(edit: Callable[[dict[str, Any]], None]) -> Callable[[ProxyState, Outgoing, Answer], Answer]:
    def apply(state: ProxyState, out: Outgoing, answer: Answer) -> Answer:
        body = answer.json()
        if not isinstance(body, dict):
            return answer
        edit(body)
        return answer.with_json(body)

    return apply


def _status_line(edit: Callable[[dict[str, Any]], None]) -> Callable[[str], str | None]:
    def apply(line: str) -> str:
        if not line.startswith("data:"):
            return line
        body = json.loads(line[5:])
        edit(body)
        return "data: " + json.dumps(body)

    return apply


def _failed(body: dict[str, Any]) -> None:
    if body.get("status") == "COMPLETED":
        body["status"] = "FAILED"


def _urls(edit: Callable[[str], str]) -> Callable[[dict[str, Any]], None]:
    def apply(body: dict[str, Any]) -> None:
        for name in ("status_url", "response_url", "cancel_url"):
            if isinstance(body.get(name), str):
                body[name] = edit(body[name])

    return apply


def _code(operations: set[str], before: int, after: int) -> ResponseHook:
    return _on(operations, lambda s, o, a: replace(a, status=after) if a.status == before else a)


def _on_endpoint_path(state: ProxyState, out: Outgoing, answer: Answer) -> Answer:
    endpoint = out.path if out.operation == "submit" else state.endpoints.get(out.request_id or "", "")
    app = "/".join(endpoint.split("/")[:3])

    def move(url: str) -> str:
        return url.replace(f"{app}/requests/", f"{endpoint}/requests/", 1) if endpoint else url

    return _edit_json(_urls(move))(state, out, answer)


def _relative(url: str) -> str:
    return urlsplit(url).path


def _html_401(state: ProxyState, out: Outgoing, answer: Answer) -> Answer:
    if answer.status != 401:
        return answer
    page = b"<html><body><h1>401 Unauthorized</h1><p>nginx</p></body></html>"
    return Answer(401, {**answer.headers, "content-type": "text/html"}, page)


def _detail_string(state: ProxyState, out: Outgoing, answer: Answer) -> Answer:
    return answer.with_json({"detail": "Unprocessable Entity"}) if answer.status == 422 else answer


def _no_request_id(state: ProxyState, out: Outgoing, answer: Answer) -> Answer:
    return replace(answer, headers={k: v for k, v in answer.headers.items() if k.lower() != "x-fal-request-id"})


def _png_as_jpeg(body: dict[str, Any]) -> None:
    for image in body.get("images") or []:
        if isinstance(image, dict) and image.get("content_type") == "image/png":
            image["content_type"] = "image/jpeg"


def _went_back(state: ProxyState, out: Outgoing, answer: Answer) -> Answer:
    body, request_id = answer.json(), out.request_id or ""
    if not isinstance(body, dict) or body.get("status") != "COMPLETED":
        return answer
    if request_id in state.completed and request_id not in state.went_back:
        state.went_back.add(request_id)  # a stale cache answers once with an older state
        return answer.with_json({**body, "status": "IN_PROGRESS", "metrics": {}}, status=202)
    state.completed.add(request_id)
    return answer


def _rising_position(state: ProxyState, out: Outgoing, answer: Answer) -> Answer:
    body = answer.json()
    if isinstance(body, dict) and isinstance(body.get("queue_position"), int):
        state.polls[out.request_id or ""] += 1
        return answer.with_json({**body, "queue_position": body["queue_position"] + state.polls[out.request_id or ""]})
    return answer


def _omit_null_logs(body: dict[str, Any]) -> None:
    if body.get("logs") is None:
        body.pop("logs", None)


def _other_id(body: dict[str, Any]) -> None:
    if "request_id" in body:
        body["request_id"] = "gw-" + str(body["request_id"])


def _as_text(state: ProxyState, out: Outgoing, answer: Answer) -> Answer:
    return replace(answer, headers={**answer.headers, "content-type": "text/plain; charset=utf-8"})


async def _shared_requests(state: ProxyState, out: Outgoing, answer: Answer, send: Send) -> Answer:
    # The relay asks upstream with the caller's key; when that key is valid but not the submitter's (404), it asks
    # again with the key that submitted the request. A key upstream refuses (401) is still refused.
    owner = state.owners.get(out.request_id or "")
    if out.operation == "submit" or answer.status != 404 or not owner or owner == out.headers.get("authorization"):
        return answer
    return await send(replace(out, headers={**out.headers, "authorization": owner}))


def _ignore_key(state: ProxyState, out: Outgoing) -> None:
    # The relay authenticates upstream with its own key and never checks the caller's.
    out.headers["authorization"] = state.owners.get("", out.headers.get("authorization", ""))


async def _lenient(state: ProxyState, out: Outgoing, answer: Answer, send: Send) -> Answer:
    if out.operation != "submit" or answer.status != 422:
        return answer
    body, refused = json.loads(out.body or b"{}"), answer.json()
    for item in refused.get("detail", []) if isinstance(refused, dict) else []:
        location = item.get("loc", []) if isinstance(item, dict) else []
        if len(location) == 2 and location[0] == "body":
            body.pop(str(location[1]), None)
    return await send(replace(out, body=json.dumps(body).encode()))


def _drop_parameters(state: ProxyState, out: Outgoing) -> None:
    if out.operation == "submit" and out.body:
        body = json.loads(out.body)
        out.body = json.dumps({k: v for k, v in body.items() if k in ("prompt", "image_url", "image_urls")}).encode()


def _logs_always(state: ProxyState, out: Outgoing) -> None:
    if out.operation == "status":
        out.query = "logs=1"


def _unframed(line: str) -> str:
    return line[5:].lstrip() if line.startswith("data:") else line


# --- what the user asked for, the stream's content, results, ids --------------------------------------


def _drop(name: str) -> Callable[[ProxyState, Outgoing], None]:
    def apply(state: ProxyState, out: Outgoing) -> None:
        if out.operation == "submit" and out.body:
            body = json.loads(out.body)
            body.pop(name, None)
            out.body = json.dumps(body).encode()

    return apply


def _double_encoded(body: dict[str, Any]) -> None:
    # UTF-8 bytes read as Latin-1 and encoded again: "crème" becomes "crÃ¨me" (an emoji cannot, so it is dropped).
    if isinstance(body.get("prompt"), str):
        body["prompt"] = body["prompt"].encode("utf-8").decode("latin-1", "ignore")


def _events_with_all_logs(state: ProxyState, out: Outgoing) -> Callable[[str], str | None]:
    # Each event carries every log entry so far (as a polled status does) instead of those since the last event.
    so_far: list[Any] = []

    def apply(body: dict[str, Any]) -> None:
        if isinstance(body.get("logs"), list):
            so_far.extend(body["logs"])
            body["logs"] = list(so_far)

    return _status_line(apply)


def _logs_as_strings(body: dict[str, Any]) -> None:
    if isinstance(body.get("logs"), list):
        body["logs"] = [entry.get("message", "") if isinstance(entry, dict) else entry for entry in body["logs"]]


def _result_while_pending(state: ProxyState, out: Outgoing, answer: Answer) -> Answer:
    # A cache in front of the result answers an empty output while the job is still pending.
    refused = answer.json()
    if answer.status == 400 and isinstance(refused, dict) and refused.get("detail") == "Request is still in progress":
        empty = {"images": [], "timings": {}, "seed": 0, "has_nsfw_concepts": [], "prompt": ""}
        return answer.with_json(empty, status=200)
    return answer


def _one_shot_result(state: ProxyState, out: Outgoing, answer: Answer) -> Answer:
    # The relay hands a result out once and forgets it.
    request_id = out.request_id or ""
    if answer.status != 200:
        return answer
    if request_id in state.served:
        return answer.with_json({"detail": "Request not found"}, status=404)
    state.served.add(request_id)
    return answer


async def _shared_ids(state: ProxyState, out: Outgoing, answer: Answer, send: Send) -> Answer:
    # An idempotency cache keyed on the endpoint and the prompt: a second submit of the same prompt gets the first
    # submit's answer (its request id), though the client asked for, and may be billed for, a second job.
    if out.operation != "submit" or answer.status != 200:
        return answer
    try:
        prompt = str(json.loads(out.body or b"{}").get("prompt"))
    except ValueError:
        return answer
    return state.answers.setdefault((out.path, prompt), answer)


def _ended_badly(state: ProxyState, request_id: str, body: dict[str, Any]) -> bool:
    return body.get("status") == "COMPLETED" and (bool(body.get("error")) or request_id in state.cancelled)


def _failed_when_errored(state: ProxyState, out: Outgoing, answer: Answer) -> Answer:
    # Third-party fal specs list FAILED; a relay built on them reports a request that ended without output so.
    body, request_id = answer.json(), out.request_id or ""
    if out.operation == "cancel" and answer.status in (200, 202):
        state.cancelled.add(request_id)
    elif out.operation == "status" and isinstance(body, dict) and _ended_badly(state, request_id, body):
        return answer.with_json({**body, "status": "FAILED"})
    return answer


def _failed_events(state: ProxyState, out: Outgoing) -> Callable[[str], str | None]:
    def apply(body: dict[str, Any]) -> None:
        if _ended_badly(state, out.request_id or "", body):
            body["status"] = "FAILED"

    return _status_line(apply)


def _every_other_submit(retry_after: str | None) -> Callable[[ProxyState, Outgoing], Answer | None]:
    # A rate limiter: the first of every two submits is refused with 429 (nothing is queued).
    def apply(state: ProxyState, out: Outgoing) -> Answer | None:
        if out.operation != "submit":
            return None
        state.submits += 1
        if state.submits % 2 == 0:
            return None
        headers = {"content-type": "application/json", **({"retry-after": retry_after} if retry_after else {})}
        return Answer(429, headers, json.dumps({"detail": "Too many requests"}).encode())

    return apply


def _without_urls(body: dict[str, Any]) -> None:
    for name in ("status_url", "response_url", "cancel_url"):
        body.pop(name, None)


def _trailing_slash(body: dict[str, Any]) -> None:
    _urls(lambda url: url.rstrip("/") + "/")(body)


def _refuse_double_slash(state: ProxyState, out: Outgoing) -> Answer | None:
    # Many servers answer 404 for an empty path segment.
    if "//" in out.path:
        return Answer(404, {"content-type": "application/json"}, json.dumps({"detail": "Not Found"}).encode())
    return None


def _multiline(line: str) -> str:
    # The JSON of each event spread over several data: lines (the standard joins them with newlines), with id: and
    # retry: fields.
    if not line.startswith("data:"):
        return line
    body = json.loads(line[5:])
    lines = json.dumps(body, indent=1).split("\n")
    return "\r\n".join(["id: evt-1", "retry: 3000", *(f"data: {part}" for part in lines)])


_STATUS = {"status", "submit"}
_OPS = {"submit", "status", "stream", "result", "cancel"}
MUTATIONS: dict[str, Mutation] = {
    m.name: m
    for m in [
        Mutation("failed_status", "COMPLETED reported as FAILED (third-party fal specs list it)",
                 response=_on({"status"}, _edit_json(_failed)), stream_line=_status_line(_failed)),
        Mutation("ok_while_pending", "status answers 200 while IN_QUEUE/IN_PROGRESS", response=_code({"status"}, 202, 200)),
        Mutation("accepted_when_completed", "status answers 202 once COMPLETED", response=_code({"status"}, 200, 202)),
        Mutation("urls_on_endpoint_path", "URLs on the endpoint sub-path (fal-js #214)", response=_on(_STATUS, _on_endpoint_path)),
        Mutation("relative_urls", "status/response/cancel URLs relative", response=_on(_STATUS, _edit_json(_urls(_relative)))),
        Mutation("upstream_host_urls", "URLs left on the relay's upstream host", upstream_urls=True),
        Mutation("detail_as_string", "422 with detail as a string", response=_on({"submit"}, _detail_string)),
        Mutation("unauthorized_html", "401 answered with an HTML page", response=_on(_OPS, _html_401)),
        Mutation("no_request_id_header", "x-fal-request-id dropped", response=_on(_OPS, _no_request_id)),
        Mutation("unframed_stream", "status stream without data: framing", stream_line=_unframed),
        Mutation("stream_never_closes", "status stream kept open after COMPLETED", never_close=True),
        Mutation("stream_closes_early", "status stream closed after its first event", stream_events=1),
        Mutation("result_answered_202", "the result answered 202", response=_code({"result"}, 200, 202)),
        Mutation("png_as_jpeg", "a PNG described as image/jpeg", response=_on({"result"}, _edit_json(_png_as_jpeg))),
        Mutation("shared_requests", "one key sees another key's requests", response=_shared_requests),
        Mutation("no_auth", "any key accepted", request=_ignore_key),
        Mutation("missing_queue_position", "queue_position dropped",
                 response=_on(_STATUS, _edit_json(lambda b: b.pop("queue_position", None))),
                 stream_line=_status_line(lambda b: b.pop("queue_position", None))),
        Mutation("rising_queue_position", "queue_position rises between polls", response=_on({"status"}, _rising_position)),
        Mutation("status_goes_back", "a stale cache answers IN_PROGRESS after COMPLETED", response=_on({"status"}, _went_back)),
        Mutation("lenient_validation", "refused fields dropped and the job queued anyway", response=_lenient),
        Mutation("parameters_dropped", "the relay forwards only prompt and images", request=_drop_parameters),
        Mutation("early_result_404", "result before completion answered 404", response=_code({"result"}, 400, 404)),
        Mutation("cancel_completed_202", "cancel after completion answered 202", response=_code({"cancel"}, 400, 202)),
        Mutation("unknown_id_400", "an unknown request answered 400", response=_code({"status", "result"}, 404, 400)),
        Mutation("unknown_cancel_200", "cancel of an unknown request answered 200", response=_code({"cancel"}, 404, 200)),
        Mutation("submit_201", "submit answered 201 Created", response=_code({"submit"}, 200, 201)),
        Mutation("null_logs_omitted", "logs: null left out (omitempty)",
                 response=_on({"status"}, _edit_json(_omit_null_logs))),
        Mutation("logs_always", "logs sent though not asked for", request=_logs_always),
        Mutation("gateway_request_id", "status names the relay's own request id", response=_on({"status"}, _edit_json(_other_id))),
        Mutation("json_as_text", "JSON answers served as text/plain", response=_on({"status", "result"}, _as_text)),
        Mutation("seed_dropped", "the relay drops seed", request=_drop("seed")),
        Mutation("aspect_ratio_dropped", "the relay drops aspect_ratio", request=_drop("aspect_ratio")),
        Mutation("num_images_dropped", "the relay drops num_images", request=_drop("num_images")),
        Mutation("prompt_double_encoded", "the echoed prompt double-encoded (UTF-8 read as Latin-1)",
                 response=_on({"result"}, _edit_json(_double_encoded))),
        Mutation("prompt_emptied", "the echoed prompt empty", response=_on({"result"}, _edit_json(lambda b: b.update(prompt="")))),
        Mutation("seed_altered", "the echoed seed is not the one sent",
                 response=_on({"result"}, _edit_json(lambda b: b.update(seed=int(b.get("seed", 0)) + 1)))),
        Mutation("nsfw_flags_short", "has_nsfw_concepts shorter than images",
                 response=_on({"result"}, _edit_json(lambda b: b.update(has_nsfw_concepts=b.get("has_nsfw_concepts", [])[:-1])))),
        Mutation("repeated_stream_logs", "every stream event repeats all logs so far", stream_state=_events_with_all_logs),
        Mutation("stream_logs_as_strings", "stream events' log entries turned into strings",
                 stream_line=_status_line(_logs_as_strings)),
        Mutation("result_while_pending", "the result answers 200 with no images while the job is pending",
                 response=_on({"result"}, _result_while_pending)),
        Mutation("one_shot_result", "the result answers once, then 404", response=_on({"result"}, _one_shot_result)),
        Mutation("shared_ids", "a second submit of the same prompt gets the first one's request id", response=_shared_ids),
        Mutation("failed_when_errored", "a request that ended in an error or was cancelled reported FAILED",
                 response=_on({"status", "cancel"}, _failed_when_errored), stream_state=_failed_events),
    ]
}  # fmt: skip


async def _narrower_limits(state: ProxyState, out: Outgoing, answer: Answer, send: Send) -> Answer:
    if out.operation != "submit" or answer.status != 200:
        return answer
    body = json.loads(out.body or b"{}")
    fields = _submit_properties(out.path)
    limit = fields.get("num_images", {}).get("maximum")
    if isinstance(limit, int) and body.get("num_images") == limit:
        refusal = {"loc": ["body", "num_images"], "msg": f"must be at most {limit - 1}", "type": "value_error"}
        return Answer(422, {"content-type": "application/json"}, json.dumps({"detail": [refusal]}).encode())
    return answer


def _submit_properties(path: str) -> dict[str, Any]:
    return input_properties(path.lstrip("/")) if "post" in spec()["paths"].get(path, {}) else {}


# Request-side drift: a valid request the server refuses. Only sending it shows (contracts/boundaries.py), so these
# are checked by the boundary run, not by the lifecycle probe.
REQUEST_DRIFTS: dict[str, Mutation] = {
    m.name: m
    for m in [
        Mutation("narrower_limits", "the spec's largest num_images refused (the server's limit is lower)",
                 response=_narrower_limits),
    ]
}  # fmt: skip


def _cancel_success(state: ProxyState, out: Outgoing, answer: Answer) -> Answer:
    # fal's per-endpoint queue OpenAPI answers a cancel 200 {"success": bool}; its prose 202 CANCELLATION_REQUESTED.
    return answer.with_json({"success": True}, status=200) if answer.status == 202 else answer


def _documents(operation_id: str, method: str, code: str) -> bool:
    """Whether the spec documents answer ``code`` for an operation."""
    return code in spec()["paths"][operation_path(operation_id)][method].get("responses", {})


# Differences a correct client copes with: the remote mode must not report them.
CONTROLS: dict[str, Mutation] = {
    m.name: m
    for m in [
        Mutation("identity", "no change"),
        Mutation("fal_host_urls", "URLs on queue.fal.run (aggregators pass fal's body through; clients rewrite them)",
                 response=_on(_STATUS, _edit_json(_urls(lambda u: "https://queue.fal.run" + urlsplit(u).path)))),
        Mutation("extra_fields", "extra fields in every JSON answer",
                 response=_on(_OPS, _edit_json(lambda b: b.update(gateway="relay-1")))),
        Mutation("keepalive_comments", "a comment line before every stream line",
                 stream_line=lambda line: f": ping\n{line}" if line.startswith("data:") else line),
        Mutation("gzip", "every answer gzip-compressed (Content-Encoding: gzip), the status stream included", gzip=True),
        Mutation("multiline_sse", "stream events spread over several data: lines, with id: and retry:, CRLF line ends",
                 stream_line=_multiline, line_ending="\r\n"),
        Mutation("rate_limited", "every other submit refused with 429, no Retry-After", intercept=_every_other_submit(None)),
        Mutation("rate_limited_retry_after", "every other submit refused with 429, Retry-After: 1",
                 intercept=_every_other_submit("1")),
        Mutation("status_without_urls", "status answers and stream events without status/response/cancel URLs",
                 response=_on({"status"}, _edit_json(_without_urls)), stream_line=_status_line(_without_urls)),
        Mutation("trailing_slash_urls", "returned URLs end with a slash; a path with // answers 404",
                 response=_on(_STATUS, _edit_json(_trailing_slash)), intercept=_refuse_double_slash),
        # A shape of fal's own documents is a control only once the spec documents it (the spec says which).
        *([Mutation("cancel_success_shape", "cancel accepted as 200 {success: true} (fal's queue OpenAPI)",
                    response=_on({"cancel"}, _cancel_success))] if _documents("cancel_request", "put", "200") else []),
    ]
}  # fmt: skip


# --- the proxy --------------------------------------------------------------------------------------------------


def _operation(method: str, path: str) -> tuple[str, str | None]:
    match = _REQUEST_PATH.search(path)
    if match:
        rest = match.group("rest") or ""
        kind = {"/status/stream": "stream", "/status": "status", "/cancel": "cancel", "": "result"}[rest]
        return kind, match.group("id")
    if method == "POST":
        return "submit", None
    return "other", None


class _Proxy:
    def __init__(self, upstream: str, mutation: Mutation, verify: Any) -> None:
        self.upstream = upstream.rstrip("/")
        self.mutation = mutation
        self.state = ProxyState()
        self.client = httpx.AsyncClient(verify=verify, timeout=httpx.Timeout(60.0))

    def build(self, out: Outgoing) -> httpx.Request:
        url = self.upstream + out.path + (f"?{out.query}" if out.query else "")
        return self.client.build_request(out.method, url, headers=out.headers, content=out.body or None)

    async def send(self, out: Outgoing) -> Answer:
        response = await self.client.send(self.build(out))
        headers = {k: v for k, v in response.headers.items() if k.lower() not in _DROPPED_HEADERS}
        return Answer(response.status_code, headers, response.content)

    def local(self, content: bytes, origin: str) -> bytes:
        # A correct relay answers with its own origin where the upstream named its own.
        if self.mutation.upstream_urls:
            return content
        return content.replace(self.upstream.encode(), origin.encode())

    async def handle(self, request: Request) -> Response:
        operation, request_id = _operation(request.method, request.url.path)
        headers = {k: v for k, v in request.headers.items() if k.lower() not in _DROPPED_HEADERS}
        out = Outgoing(
            request.method, request.url.path, request.url.query, headers, await request.body(), operation, request_id
        )
        if self.mutation.request:
            self.mutation.request(self.state, out)
        intercepted = self.mutation.intercept(self.state, out) if self.mutation.intercept else None
        if intercepted is not None:
            return Response(intercepted.content, intercepted.status, headers=intercepted.headers)
        origin = str(request.base_url).rstrip("/")
        if operation == "stream":
            response = await self.client.send(self.build(out), stream=True)
            if response.status_code == 200:
                kept = {k: v for k, v in response.headers.items() if k.lower() not in _DROPPED_HEADERS}
                if self.mutation.response:  # the hooks see the stream's status and headers, not its body
                    kept = (await self.mutation.response(self.state, out, Answer(200, kept, b""), self.send)).headers
                lines = self.stream(response, origin, out)
                if self.mutation.gzip:
                    kept["content-encoding"] = "gzip"
                    lines = _gzip_stream(lines)
                return StreamingResponse(lines, status_code=200, headers=kept)
            await response.aread()
            answer = Answer(
                response.status_code,
                {k: v for k, v in response.headers.items() if k.lower() not in _DROPPED_HEADERS},
                response.content,
            )
            await response.aclose()
        else:
            answer = await self.send(out)
        answer = replace(answer, content=self.local(answer.content, origin))
        if operation == "submit" and answer.status == 200:
            body = answer.json()
            if isinstance(body, dict) and "request_id" in body:
                self.state.owners[str(body["request_id"])] = out.headers.get("authorization", "")
                self.state.owners.setdefault("", out.headers.get("authorization", ""))
                self.state.endpoints[str(body["request_id"])] = out.path
        if self.mutation.response:
            answer = await self.mutation.response(self.state, out, answer, self.send)
        if self.mutation.gzip:
            answer = replace(answer, headers={**answer.headers, "content-encoding": "gzip"})
            answer = replace(answer, content=gzip.compress(answer.content))
        return Response(answer.content, answer.status, headers=answer.headers)

    async def stream(self, response: httpx.Response, origin: str, out: Outgoing) -> AsyncIterator[bytes]:
        events = 0
        buffer = ""
        edit = self.mutation.stream_state(self.state, out) if self.mutation.stream_state else self.mutation.stream_line
        try:
            async for chunk in response.aiter_text():
                buffer += chunk
                while "\n" in buffer:
                    line, buffer = buffer.split("\n", 1)
                    line = self.local(line.encode(), origin).decode()
                    if edit and line:
                        line = edit(line) or ""
                    yield (line + self.mutation.line_ending).encode()
                    if line == "" and self.mutation.stream_events is not None:
                        events += 1
                        if events >= self.mutation.stream_events:
                            return
            if buffer:
                yield buffer.encode()
        finally:
            await response.aclose()
        while self.mutation.never_close:
            await asyncio.sleep(0.5)
            yield b": keep-alive\n\n"


async def _gzip_stream(chunks: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    """``chunks`` as one gzip stream, flushed after each chunk so that every event arrives when it is sent."""
    compressor = zlib.compressobj(wbits=31)  # 31: the gzip container
    async for chunk in chunks:
        yield compressor.compress(chunk) + compressor.flush(zlib.Z_SYNC_FLUSH)
    yield compressor.flush()


def create_proxy(upstream: str, mutation: Mutation, *, verify: Any = True) -> Starlette:
    """The proxy as an ASGI app: every request forwarded to `upstream`, its answer changed by `mutation`."""
    proxy = _Proxy(upstream, mutation, verify)
    methods = ["GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS"]
    return Starlette(routes=[Route("/{path:path}", proxy.handle, methods=methods)])


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m contracts.mutations", description=__doc__)
    parser.add_argument("--upstream", required=True)
    parser.add_argument("--mutation", choices=sorted({**MUTATIONS, **REQUEST_DRIFTS, **CONTROLS}), default="identity")
    parser.add_argument("--port", type=int, default=8771)
    args = parser.parse_args()
    import uvicorn

    mutation = {**MUTATIONS, **REQUEST_DRIFTS, **CONTROLS}[args.mutation]
    print(f"{mutation.name}: {mutation.description}; http://127.0.0.1:{args.port} -> {args.upstream}", flush=True)
    uvicorn.run(create_proxy(args.upstream, mutation), host="127.0.0.1", port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
