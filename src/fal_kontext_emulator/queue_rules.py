"""fal's queue rules that a schema cannot express, as plain functions over what a client saw (no I/O).

A response can fit the spec and still be wrong: `200` with `IN_PROGRESS` (both are in the spec), a status that goes
back, a queue position that rises, a status URL on the endpoint's sub-path, an event stream without `data:` lines.
The contract suite's probe (`contracts/semantics.py`) and the validating proxy (`validating_proxy`) apply the same
rules; each cites the fal document it rests on. They judge what a client saw, never through the client's own
flows.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, urlsplit

# The project's one parser of server-sent events, shared on purpose: the rules, the client and the contract
# suite's recorder must agree on what an event is.
from fal_kontext.sse import decode_stream
from fal_kontext_emulator.spec_document import load_spec, shipped_operation_paths

__all__ = [
    "FAL_QUEUE_HOSTS",
    "QUEUE_STATUSES",
    "STILL_IN_PROGRESS",
    "RequestHistory",
    "Violation",
    "check_returned_url",
    "check_status_answer",
    "check_stream_logs",
    "follow_url",
    "parse_event_stream",
]

STILL_IN_PROGRESS = "Request is still in progress"  # https://fal.ai/docs/inference-api/queue/result
# The spec's statuses in the order a request goes through them (its enum lists them in that order).
QUEUE_STATUSES: tuple[str, ...] = tuple(load_spec()["components"]["schemas"]["QueueStatusValue"]["enum"])
# fal's queue host and its backup (https://fal.ai/docs/api-reference/inference-api/openapi/queue.json lists both):
# an aggregator may pass fal's answers through with URLs on them, which clients rewrite to their own base URL.
FAL_QUEUE_HOSTS = frozenset({"queue.fal.run", "queue.falrun.com"})
_RANK = {status: rank for rank, status in enumerate(QUEUE_STATUSES)}


@dataclass(frozen=True)
class Violation:
    """One broken rule: its name and what was seen."""

    rule: str
    message: str

    def __str__(self) -> str:
        return f"[{self.rule}] {self.message}"


def check_status_answer(
    code: int, body: Any, request_id: str, *, logs_requested: bool | None, where: str
) -> list[Violation]:
    """A status answer (polled, or one stream event with `code` 200) against fal's status rules.

    https://fal.ai/docs/api-reference/inference-api: 202 while IN_QUEUE or IN_PROGRESS, 200 once COMPLETED.
    https://fal.ai/docs/inference-api/queue/status: `queue_position` while IN_QUEUE; `logs` is null unless logs=1
    was sent (fal_client reads the `logs` key of IN_PROGRESS and COMPLETED answers and fails without it:
    https://github.com/fal-ai/fal, projects/fal_client); the body names its own request.
    """
    if not isinstance(body, dict):
        return [Violation("status-body", f"{where}: the status answer is not a JSON object: {body!r:.200}")]
    found: list[Violation] = []
    status = body.get("status")
    if status not in _RANK:
        found.append(Violation("status-value", f"{where}: status {status!r} is not one of fal's {list(_RANK)}"))
    elif code != 0:  # 0: a stream event, which has no status code of its own
        expected = 200 if status == "COMPLETED" else 202
        if code != expected:
            found.append(Violation("status-code", f"{where}: HTTP {code} with status {status} (fal: {expected})"))
    if body.get("request_id") != request_id:
        found.append(Violation("status-request-id", f"{where}: request_id {body.get('request_id')!r} for {request_id}"))
    if status == "IN_QUEUE" and not (isinstance(body.get("queue_position"), int) and body["queue_position"] >= 0):
        found.append(Violation("queue-position", f"{where}: IN_QUEUE without a queue_position"))
    if status in ("IN_PROGRESS", "COMPLETED") and "logs" not in body:
        found.append(Violation("status-logs-key", f"{where}: {status} without the logs key (null or a list)"))
    if logs_requested is False and body.get("logs"):
        found.append(Violation("status-logs-flag", f"{where}: logs were not asked for but came back"))
    return found


@dataclass
class RequestHistory:
    """The statuses of one request over time: they only move forward, its queue position only falls, and once its
    result has answered 200 no status says it is still pending (the result exists only once it completed:
    https://fal.ai/docs/inference-api/queue/result)."""

    rank: int = -1
    position: int | None = None
    statuses: list[str] = field(default_factory=list)
    result_answered: bool = False
    early_result_reported: bool = False

    @property
    def completed(self) -> bool:
        """Whether COMPLETED has been seen."""
        return self.rank == len(QUEUE_STATUSES) - 1

    def observe(self, body: dict[str, Any], where: str) -> list[Violation]:
        """Record one status answer (polled or streamed); returns what broke the order."""
        status = str(body.get("status"))
        rank = _RANK.get(status, -1)
        self.statuses.append(status)
        found = []
        if 0 <= rank < self.rank:
            found.append(
                Violation("status-order", f"{where}: status went back to {status} after {list(_RANK)[self.rank]}")
            )
        elif 0 <= rank < len(QUEUE_STATUSES) - 1 and self.result_answered and not self.early_result_reported:
            self.early_result_reported = True  # once per request: later pending statuses say nothing new
            found.append(
                Violation(
                    "result-before-completion",
                    f"{where}: status {status} after the result answered 200 (a result before completion)",
                )
            )
        position = body.get("queue_position")
        if status == "IN_QUEUE" and isinstance(position, int):
            if self.position is not None and position > self.position:
                found.append(
                    Violation(
                        "queue-position-order", f"{where}: queue_position rose from {self.position} to {position}"
                    )
                )
            self.position = position
        self.rank = max(self.rank, rank)
        return found

    def observe_result(self, code: int, body: bytes, where: str) -> list[Violation]:
        """Record one answer of the result operation (its body undone of any Content-Encoding)."""
        if code == 200:
            self.result_answered = True
            return []
        if code == 400 and self.completed:
            detail = _json_or_none(body)
            if isinstance(detail, dict) and detail.get("detail") == STILL_IN_PROGRESS:
                message = f"{where}: result still in progress after its status was COMPLETED"
                return [Violation("result-after-completion", message)]
        return []


def check_stream_logs(events: list[dict[str, Any]], where: str) -> list[Violation]:
    """The logs of a status stream are incremental: each event carries the entries since the previous one
    (https://fal.ai/docs/inference-api/queue/status-stream; fal-js accumulates them), so no entry comes twice."""
    seen: set[str] = set()
    found = []
    for number, event in enumerate(events):
        logs = event.get("logs")
        entries = [json.dumps(entry, sort_keys=True) for entry in logs] if isinstance(logs, list) else []
        repeated = [entry for entry in entries if entry in seen]
        if repeated:
            found.append(
                Violation(
                    "stream-logs-incremental",
                    f"{where}: event {number} repeats {len(repeated)} log entr{'y' if len(repeated) == 1 else 'ies'} "
                    f"of earlier events: {repeated[0]:.160}",
                )
            )
        seen.update(entries)
    return found


def _json_or_none(raw: bytes) -> Any:
    try:
        return json.loads(raw)
    except ValueError:
        return None


def check_returned_url(  # noqa: PLR0913 - judged against the operation, the request (its app and id) and the base
    url: Any, operation_id: str, app: str, request_id: str, base_url: str, *, where: str
) -> list[Violation]:
    """A `status_url`/`response_url`/`cancel_url` the server returned for a request of `app` (`owner/app`).

    https://fal.ai/docs/api-reference/inference-api: use these URLs, do not build them; they are on the app path
    `/<owner>/<app>/requests/<id>` ("do not add the endpoint path"), which is the spec's path of the operation. The URL
    must be absolute, its path the base URL's path plus the spec's, its host the base URL's or fal's own queue host
    (an aggregator passing fal's body through; clients rewrite it to their base URL). Any other host would make a
    client send its key elsewhere.
    """
    if not isinstance(url, str) or not url:
        return [Violation("url-missing", f"{where}: no URL")]
    parts, base = urlsplit(url), urlsplit(base_url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        return [Violation("url-absolute", f"{where}: {url!r} is not an absolute http(s) URL")]
    owner, _, name = app.partition("/")
    expected = shipped_operation_paths()[operation_id].format(
        owner=quote(owner, safe=""), app=quote(name, safe=""), request_id=quote(request_id, safe="")
    )
    found = []
    on_fal = (parts.hostname or "").lower() in FAL_QUEUE_HOSTS
    prefix = "" if on_fal else base.path.rstrip("/")
    if parts.path.rstrip("/") != prefix + expected:
        found.append(Violation("url-path", f"{where}: {url!r} is not on the app path {prefix + expected}"))
    if not on_fal and (parts.scheme, parts.netloc.lower()) != (base.scheme, base.netloc.lower()):
        found.append(Violation("url-host", f"{where}: {url!r} is neither on {base.scheme}://{base.netloc} nor on fal"))
    return found


def follow_url(url: str, base_url: str) -> str:
    """The URL a client calls for a returned URL: fal's queue host is rewritten to the base URL (aggregators)."""
    parts = urlsplit(url)
    if (parts.hostname or "").lower() in FAL_QUEUE_HOSTS and urlsplit(base_url).netloc != parts.netloc:
        return base_url.rstrip("/") + parts.path + (f"?{parts.query}" if parts.query else "")
    return url


def parse_event_stream(raw: bytes, where: str) -> tuple[list[dict[str, Any]], list[Violation]]:
    """The status events of a status stream body (undone of any ``Content-Encoding``), and what breaks the SSE
    framing fal documents. The body is decoded by ``fal_kontext.sse``, the parser the client uses.

    https://fal.ai/docs/inference-api/queue/status-stream: each event has a `data:` line with a status object;
    comment lines (`:`) keep the connection alive. A line with a field name SSE does not have (a status object
    sent without `data:`) is not the framing fal documents, nor is event data that is not JSON.
    """
    decoded = decode_stream(raw)
    found = [
        Violation("stream-framing", f"{where}: {line!r:.120} is not an SSE field or comment")
        for line in decoded.ignored_lines
    ]
    events: list[dict[str, Any]] = []
    for event in decoded.events:
        try:
            body = json.loads(event.data)
        except ValueError:
            found.append(Violation("stream-framing", f"{where}: event data is not JSON: {event.data!r:.200}"))
        else:
            events.append(body if isinstance(body, dict) else {"status": body})
    return events, found
