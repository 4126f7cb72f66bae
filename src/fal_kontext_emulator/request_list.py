"""fal's Platform API request list, on loopback: `GET /v1/models/requests/by-endpoint`.

fal documents it at https://fal.ai/docs/platform-apis/v1/models/requests/by-endpoint:
query `endpoint_id` (required, 1-50, comma-separated or repeated), `start`/`end` (ISO 8601; default the last
24 hours, 90 days back when `request_id` is given; `end` exclusive), `status` (`success` | `error` |
`user_error`), `request_id`, `expand=payloads`, `limit` (1-100, default 50), `cursor`; `Authorization: Key`;
answer `{"items": [...], "next_cursor", "has_more"}`. Our choices, where fal states nothing: the window
applies to `sent_at`; items are sorted by `ended_at`, newest first; only ended requests are listed unless
`request_list_pending` (then queued and running ones come first, with null end fields); a request shows up
`request_list_delay` seconds after it ended; `duration` is run time (start to end); `status` maps 2xx to
success, 4xx to user_error, 5xx to error; the cursor is the base64 of an offset (fal's example cursor `Mg==`
has that form).
"""

from __future__ import annotations

import base64
import binascii
import math
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from fal_kontext_emulator.fal_bodies import validation_error
from fal_kontext_emulator.fault_injection import after_handling, before_handling
from fal_kontext_emulator.fault_rules import EXTRA_OPERATIONS
from fal_kontext_emulator.http_replies import detail_reply, json_reply, unauthorized
from fal_kontext_emulator.operations import Problem
from fal_kontext_emulator.outputs import Outputs
from fal_kontext_emulator.request_checks import is_loopback_host
from fal_kontext_emulator.request_queue import QueuedRequest, iso_timestamp
from fal_kontext_emulator.state import EmulatorState

PATH = "/v1/models/requests/by-endpoint"
OPERATION_ID = EXTRA_OPERATIONS[0]
STATUSES = ("success", "error", "user_error")
_DAY = 86400.0
_MAX_ENDPOINTS = 50
_MAX_LIMIT = 100
_DEFAULT_LIMIT = 50


@dataclass(frozen=True)
class ListQuery:
    """A parsed, valid request list query. Times are Unix seconds."""

    endpoint_ids: frozenset[str]
    start: float
    end: float
    status: str | None
    request_id: str | None
    payloads: bool
    limit: int
    offset: int


def _values(pairs: list[tuple[str, str]], name: str) -> list[str]:
    return [part.strip() for key, value in pairs if key == name for part in value.split(",") if part.strip()]


def _time(text: str, name: str) -> float | Problem:
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return Problem(("query", name), f"{name} must be an ISO 8601 date-time, e.g. 2025-01-01T00:00:00Z", "datetime")
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp()


def parse_query(pairs: list[tuple[str, str]], now: float) -> ListQuery | list[Problem]:  # noqa: PLR0912 - one check per documented query parameter
    """The query of a list call, or every problem with it (each naming its parameter)."""
    problems: list[Problem] = []
    single = dict(pairs)
    endpoints = _values(pairs, "endpoint_id")
    if not endpoints:
        problems.append(Problem(("query", "endpoint_id"), "Field required", "missing"))
    elif len(endpoints) > _MAX_ENDPOINTS:
        problems.append(Problem(("query", "endpoint_id"), f"at most {_MAX_ENDPOINTS} endpoint ids", "too_long"))
    request_id = single.get("request_id") or None
    times = {}
    # Without `end`, nothing is excluded at the top ("now": no request was sent later).
    for name, default in (("start", now - (90 if request_id else 1) * _DAY), ("end", math.inf)):
        parsed = _time(single[name], name) if name in single else default
        if isinstance(parsed, Problem):
            problems.append(parsed)
        else:
            times[name] = parsed
    status = single.get("status")
    if status is not None and status not in STATUSES:
        problems.append(Problem(("query", "status"), f"Input should be {', '.join(map(repr, STATUSES))}", "enum"))
    expand = _values(pairs, "expand")
    if set(expand) - {"payloads"}:
        problems.append(Problem(("query", "expand"), "Input should be 'payloads'", "enum"))
    limit = _DEFAULT_LIMIT
    if "limit" in single:
        try:
            limit = int(single["limit"])
        except ValueError:
            limit = 0
        if not 1 <= limit <= _MAX_LIMIT:
            problems.append(Problem(("query", "limit"), f"limit must be an integer from 1 to {_MAX_LIMIT}", "range"))
    offset = 0
    if single.get("cursor"):
        try:
            offset = int(base64.b64decode(single["cursor"], validate=True).decode())
        except (binascii.Error, ValueError, UnicodeDecodeError):
            offset = -1
        if offset < 0:
            problems.append(
                Problem(("query", "cursor"), "cursor must be a next_cursor this API answered", "value_error")
            )
    if problems:
        return problems
    return ListQuery(
        endpoint_ids=frozenset(endpoints),
        start=times["start"],
        end=times["end"],
        status=status,
        request_id=request_id,
        payloads=bool(expand),
        limit=limit,
        offset=offset,
    )


def status_class(status_code: int) -> str:
    """The list's `status` filter value of an HTTP status (our mapping)."""
    if status_code >= 500:
        return "error"
    return "user_error" if status_code >= 400 else "success"


class RequestListEndpoint:
    """The list handler; per key: a key sees only the requests it submitted."""

    def __init__(self, state: EmulatorState, outputs: Outputs) -> None:
        self.state = state
        self.outputs = outputs

    def route(self) -> Route:
        """The route, at the top level."""
        return Route(PATH, self.list_requests, methods=["GET"])

    async def list_requests(self, request: Request) -> Response:
        """Answer one list call (faults of the `platform` group apply, as to fal's own operations)."""
        state = self.state
        if not is_loopback_host(request.client.host if request.client else ""):
            return detail_reply(403, "The request list is served to loopback clients only")
        state.counters.calls[OPERATION_ID] += 1
        fault, instead = await before_handling(state, OPERATION_ID, "platform")
        if instead is not None:
            return instead
        owner = state.owner_of(request.headers.get("authorization"))
        if owner is None:
            return unauthorized(request.headers.get("authorization"))
        query = parse_query(list(request.query_params.multi_items()), state.epoch_of(state.now()))
        if isinstance(query, list):
            return json_reply(422, validation_error(query))
        return after_handling(fault, json_reply(200, await self._page(owner, query)))

    async def _page(self, owner: str, query: ListQuery) -> dict[str, Any]:
        state = self.state
        now = state.now()
        settings = state.settings
        listed = []
        for held in list(state.queue.requests.values()):
            found = state.queue.find(held.request_id, now)
            if found is None or found.owner != owner or found.endpoint_id not in query.endpoint_ids:
                continue
            if query.request_id is not None and found.request_id != query.request_id:
                continue
            sent = state.epoch_of(found.submitted_at)
            if not query.start <= sent < query.end:
                continue
            ended = found.completed_at
            shown = ended is not None and now >= ended + settings.request_list_delay
            if shown or settings.request_list_pending:
                listed.append(found)
        listed.sort(key=lambda r: (-(r.completed_at if r.completed_at is not None else math.inf), -r.submitted_at))
        if query.status is not None:
            # Only a status filter needs every candidate's outcome (which may render its images); otherwise
            # only the page's items are built.
            codes = [
                (found, (await self.outputs.outcome_of(found))[0]) for found in listed if found.completed_at is not None
            ]
            listed = [found for found, code in codes if status_class(code) == query.status]
        page = [await self._item(found, query.payloads) for found in listed[query.offset : query.offset + query.limit]]
        more = query.offset + query.limit < len(listed)
        cursor = base64.b64encode(str(query.offset + query.limit).encode()).decode() if more else None
        return {"items": page, "next_cursor": cursor, "has_more": more}

    async def _item(self, request: QueuedRequest, payloads: bool) -> dict[str, Any]:
        state = self.state

        def moment(queue_time: float | None) -> str | None:
            return None if queue_time is None else iso_timestamp(state.epoch_of(queue_time))

        ended = request.completed_at
        status_code, output = (None, None)
        if ended is not None:
            status_code, output, _ = await self.outputs.outcome_of(request)
        started = request.started_at
        item: dict[str, Any] = {
            "request_id": request.request_id,
            "endpoint_id": request.endpoint_id,
            "sent_at": moment(request.submitted_at),
            "started_at": moment(started),
            "ended_at": moment(ended),
            "status_code": status_code,
            "duration": None if ended is None or started is None else round(ended - started, 6),
        }
        if payloads:
            item["json_input"] = request.arguments
            item["json_output"] = output
        return item
