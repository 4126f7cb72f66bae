"""TEST ONLY: the seeded defects, applied from outside the handlers.

Each defect of `SEEDED_DEFECTS` is a modifier: either of the route table (what gets validated) or of the answers
the spec's handlers give (a rewrite of a finished response). The handlers themselves know nothing of them; the
app puts `DefectiveEndpoints` in front of the handlers only when a config names defects.
"""

from __future__ import annotations

import dataclasses
import json
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.types import Receive, Scope, Send

from fal_kontext.mock.handlers import Routed, SpecEndpoints
from fal_kontext.mock.spec import RouteTable

# Rewrites a finished answer of the operation `routed` names.
Rewrite = Callable[[Routed, Response], Response]


class _EnumBlindValidator:
    """A body validator that never reports an `enum` violation (the `accepted_invalid_enum` defect)."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner

    def iter_errors(self, instance: Any) -> Iterator[Any]:
        return (error for error in self._inner.iter_errors(instance) if error.validator != "enum")


def enum_blind_routes(routes: RouteTable) -> RouteTable:
    """The same routes, with body validators that accept any enum value."""
    return RouteTable(
        [
            dataclasses.replace(op, body_validator=_EnumBlindValidator(op.body_validator))
            if op.body_validator is not None
            else op
            for op in routes.operations
        ],
        routes.aliases,
    )


def _json_body(response: Response) -> Any:
    return json.loads(bytes(response.body)) if isinstance(response, JSONResponse) else None


def _rebuilt(response: Response, status: int, body: Any) -> Response:
    headers = {k: v for k, v in response.headers.items() if k not in {"content-length", "content-type"}}
    return JSONResponse(body, status_code=status, headers=headers)


class DefectiveEndpoints:
    """The spec's handlers with the seeded defects applied to their answers."""

    def __init__(self, endpoints: SpecEndpoints, defects: frozenset[str]) -> None:
        self._endpoints = endpoints
        self._completed_reads: Counter[str] = Counter()
        submits = {endpoint.operation_id for endpoint in endpoints.state.endpoints.values()}
        available: dict[str, Rewrite] = {
            "wrong_status_code": self._cancel_answers_200,
            "missing_required_field": lambda routed, response: self._submit_without_status(routed, response, submits),
            "backward_transition": self._completed_goes_back,
            "dropped_header": self._no_allow_header,
        }
        self._rewrites = [available[name] for name in sorted(defects) if name in available]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        request = Request(scope, receive)
        routed = self._endpoints.route(request)
        response = await self._endpoints.dispatch(request, routed)
        for rewrite in self._rewrites:
            response = rewrite(routed, response)
        await response(scope, receive, send)

    @staticmethod
    def _cancel_answers_200(routed: Routed, response: Response) -> Response:
        operation, _ = routed
        if operation is not None and operation.operation_id == "cancel_request" and response.status_code == 202:
            response.status_code = 200
        return response

    @staticmethod
    def _submit_without_status(routed: Routed, response: Response, submits: set[str]) -> Response:
        operation, _ = routed
        body = _json_body(response)
        if operation is None or operation.operation_id not in submits or not isinstance(body, dict):
            return response
        if response.status_code != 200:
            return response
        body.pop("status", None)
        return _rebuilt(response, 200, body)

    def _completed_goes_back(self, routed: Routed, response: Response) -> Response:
        operation, _ = routed
        body = _json_body(response)
        if operation is None or operation.operation_id != "get_request_status" or not isinstance(body, dict):
            return response
        if body.get("status") != "COMPLETED":
            return response
        self._completed_reads[body["request_id"]] += 1
        if self._completed_reads[body["request_id"]] % 2:
            return response
        return _rebuilt(response, 202, {**body, "status": "IN_PROGRESS", "metrics": {}})

    @staticmethod
    def _no_allow_header(routed: Routed, response: Response) -> Response:
        operation, allowed = routed
        if operation is None and allowed and "allow" in response.headers:
            del response.headers["allow"]
        return response
