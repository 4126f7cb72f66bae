"""TEST ONLY: bugs seeded into the emulator from outside it, so the contract suite can prove it notices each one.

The emulator holds no trace of them. `seeded_app(config, defects)` builds the emulator with `create_app` and applies
each defect around it: enums by handing `create_app` a spec whose request bodies list none (its `spec` argument),
the others as ASGI middleware that rewrites the emulator's finished answers (`DefectiveAnswers`). Serve it with
`run_emulator(config, app=seeded_app(config, defects))`; `--contract-emulator-defect NAME` does (contracts/conftest.py).
"""

from __future__ import annotations

import copy
import json
import urllib.parse
from collections import Counter
from collections.abc import Callable, Collection
from types import MappingProxyType
from typing import Any

from starlette.applications import Starlette
from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from fal_kontext_emulator import EmulatorConfig, create_app
from fal_kontext_emulator.spec_document import load_spec, resolve
from fal_kontext_emulator.state import Clock

SEEDED_DEFECTS = MappingProxyType(
    {
        "wrong_status_code": "cancel answers 200 with the body of its 202",
        "missing_required_field": "the submit answer has no status",
        "accepted_invalid_enum": "enum values are not checked: output_format 'gif' is queued",
        "backward_transition": "a COMPLETED request reads IN_PROGRESS (202) again on every second status call",
        "dropped_header": "405 answers have no Allow header",
    }
)

JsonObject = dict[str, Any]
# An answer: status, headers and body.
Answer = tuple[int, MutableHeaders, bytes]
# Which requests a defect touches: their operationId (None outside the spec's operations) and, for a path the
# request's method is not allowed on, the methods it allows.
Applies = Callable[[str | None, list[str]], bool]


def seeded_app(config: EmulatorConfig, defects: Collection[str], *, clock: Clock | None = None) -> ASGIApp:
    """The emulator `create_app(config, clock=clock)` builds, with `defects` (names of SEEDED_DEFECTS) applied.

    Raises:
        ValueError: a name that is not a seeded defect.
    """
    unknown = sorted(set(defects) - set(SEEDED_DEFECTS))
    if unknown:
        raise ValueError(f"unknown seeded defects {unknown}, known: {sorted(SEEDED_DEFECTS)}")
    spec = load_spec()
    if "accepted_invalid_enum" in defects:
        spec = without_request_enums(spec)
    app = create_app(config, clock=clock, spec=spec)
    answer_defects = set(defects) - {"accepted_invalid_enum"}
    return DefectiveAnswers(app, answer_defects) if answer_defects else app


def without_request_enums(spec: JsonObject) -> JsonObject:
    """`spec` with every request body schema inlined and stripped of its enums: any value of an enum field passes."""
    changed = copy.deepcopy(spec)
    for item in changed["paths"].values():
        for operation in item.values():
            if isinstance(operation, dict) and "requestBody" in operation:
                operation["requestBody"] = _without_enums(changed, operation["requestBody"])
    return changed


def _without_enums(spec: JsonObject, node: Any) -> Any:
    node = resolve(spec, node)
    if isinstance(node, list):
        return [_without_enums(spec, item) for item in node]
    if not isinstance(node, dict):
        return node
    return {key: _without_enums(spec, value) for key, value in node.items() if key != "enum"}


class DefectiveAnswers:
    """ASGI middleware: the emulator's answers with the seeded answer defects applied.

    It finds each request's operation with the emulator's own route table (`app.state.emulator.routes`), and holds
    back only the answers a defect may rewrite (never the status stream).
    """

    def __init__(self, app: Starlette, defects: Collection[str]) -> None:
        self._app = app
        state = app.state.emulator
        self._routes = state.routes
        self._submits = {endpoint.operation_id for endpoint in state.endpoints.values()}
        self._completed_reads: Counter[str] = Counter()
        available: dict[str, tuple[Applies, Callable[[Answer], Answer]]] = {
            "wrong_status_code": (lambda op, _: op == "cancel_request", self._cancel_answers_200),
            "missing_required_field": (lambda op, _: op in self._submits, self._submit_without_status),
            "backward_transition": (lambda op, _: op == "get_request_status", self._completed_goes_back),
            "dropped_header": (lambda op, allowed: op is None and bool(allowed), self._no_allow_header),
        }
        self._defects = [available[name] for name in sorted(defects)]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self._app(scope, receive, send)
            return
        # Matched on the path as sent, as the emulator matches it (an encoded "/" stays inside its segment).
        raw_path = scope.get("raw_path")
        path = raw_path.decode("latin-1") if raw_path else urllib.parse.quote(scope["path"])
        operation, found = self._routes.match(scope["method"], path)
        operation_id = operation.operation_id if operation is not None else None
        allowed = found if isinstance(found, list) else []
        rewrites = [rewrite for applies, rewrite in self._defects if applies(operation_id, allowed)]
        if not rewrites:
            await self._app(scope, receive, send)
            return
        start: Message = {}
        chunks: list[bytes] = []

        async def hold(message: Message) -> None:
            if message["type"] == "http.response.start":
                start.update(message)
            elif message["type"] == "http.response.body":
                chunks.append(message.get("body", b""))

        await self._app(scope, receive, hold)
        answer: Answer = (start["status"], MutableHeaders(raw=list(start["headers"])), b"".join(chunks))
        for rewrite in rewrites:
            answer = rewrite(answer)
        status, headers, body = answer
        headers["content-length"] = str(len(body))
        await send({"type": "http.response.start", "status": status, "headers": headers.raw})
        await send({"type": "http.response.body", "body": body})

    @staticmethod
    def _cancel_answers_200(answer: Answer) -> Answer:
        status, headers, body = answer
        return (200 if status == 202 else status), headers, body

    @staticmethod
    def _submit_without_status(answer: Answer) -> Answer:
        status, headers, body = answer
        decoded = _json_object(body)
        if status != 200 or decoded is None:
            return answer
        decoded.pop("status", None)
        return status, headers, json.dumps(decoded).encode()

    def _completed_goes_back(self, answer: Answer) -> Answer:
        _, headers, body = answer
        decoded = _json_object(body)
        if decoded is None or decoded.get("status") != "COMPLETED":
            return answer
        self._completed_reads[str(decoded.get("request_id"))] += 1
        if self._completed_reads[str(decoded.get("request_id"))] % 2:
            return answer
        return 202, headers, json.dumps({**decoded, "status": "IN_PROGRESS", "metrics": {}}).encode()

    @staticmethod
    def _no_allow_header(answer: Answer) -> Answer:
        _, headers, _ = answer
        if "allow" in headers:
            del headers["allow"]
        return answer


def _json_object(body: bytes) -> JsonObject | None:
    try:
        decoded = json.loads(body)
    except ValueError:
        return None
    return decoded if isinstance(decoded, dict) else None
