"""fal's response bodies and headers, as pure functions of the emulator's state."""

from __future__ import annotations

from typing import Any

from fal_kontext_emulator.operations import Problem
from fal_kontext_emulator.request_queue import Ending, LogLine, Outcome, QueuedRequest, iso_timestamp

JsonObject = dict[str, Any]

STILL_IN_PROGRESS = {"detail": "Request is still in progress"}
_DOCS = "https://docs.fal.ai/errors#"
# The message fal answers for flagged content, as observed on fal (docs/emulator.md, "Failures"); the error type is
# fal's documented `content_policy_violation` (https://fal.ai/docs/model-apis/errors).
CONTENT_POLICY_MESSAGE = (
    "The content could not be processed because it contained material flagged by a content checker."
)


def validation_error(problems: list[Problem]) -> JsonObject:
    """fal's 422 body for input problems."""
    return {"detail": [problem.as_json() for problem in problems]}


def model_error(loc: list[str | int], message: str, error_type: str) -> JsonObject:
    """fal's 422 body for an error the model raised (content policy, unreadable input file)."""
    return {"detail": [{"loc": loc, "msg": message, "type": error_type, "url": _DOCS + error_type}]}


def log_entries(lines: list[LogLine], epoch_of: Any) -> list[JsonObject]:
    """Log lines in fal's shape; `epoch_of` turns a queue time into Unix seconds."""
    return [
        {"message": line.message, "level": line.level, "source": "USER", "timestamp": iso_timestamp(epoch_of(line.at))}
        for line in lines
    ]


def status_body(
    request: QueuedRequest,
    urls: dict[str, str],
    *,
    queue_position: int | None,
    logs: list[JsonObject] | None,
) -> JsonObject:
    """A QueueStatus: status, request_id, the three URLs, queue_position while IN_QUEUE, logs, metrics, error."""
    status = request.status
    body: JsonObject = {"status": status, "request_id": request.request_id, **urls}
    if status == "IN_QUEUE":
        body["queue_position"] = queue_position
    # fal_client reads `logs` on IN_PROGRESS and COMPLETED (KeyError without it); null means not asked for.
    body["logs"] = logs
    body["metrics"] = {}
    if status == "COMPLETED":
        inference = None
        if request.started_at is not None and request.completed_at is not None:
            inference = round(request.completed_at - request.started_at, 6)
        body["metrics"] = {"inference_time": inference}
        error = request.error
        if error is not None:
            body["error"], body["error_type"] = error
    return body


def failed_result(request: QueuedRequest) -> tuple[int, JsonObject, dict[str, str]] | None:
    """The status, body and headers the result answers for a request that produced no output, else None."""
    ending = request.ending
    if ending is Ending.TIMED_OUT:
        # fal's request error (DRE): 504, and the header that tells clients not to retry (their own deadline).
        body = {"detail": "Request timed out", "error_type": "request_timeout"}
        return 504, body, {"X-Fal-Request-Timeout-Type": "user", "X-Fal-Error-Type": "request_timeout"}
    if ending is Ending.RUNNER_FAILED:
        body = {"detail": "Runner disconnected", "error_type": "runner_disconnected"}
        return 503, body, {"X-Fal-Error-Type": "runner_disconnected"}
    if ending is Ending.CANCELLED:
        # fal does not document the result of a cancelled request; the emulator answers a 400 that clients
        # can tell from "still in progress" by its detail and error_type.
        return 400, {"detail": "Request was cancelled", "error_type": "request_cancelled"}, {}
    if request.outcome is Outcome.CONTENT_POLICY:
        body = model_error(["body", "prompt"], CONTENT_POLICY_MESSAGE, "content_policy_violation")
        return 422, body, {"X-Fal-Retryable": "false"}
    return None


def webhook_payload(request: QueuedRequest, status_code: int, body: JsonObject) -> JsonObject:
    """What fal POSTs to `fal_webhook` when a request completes (https://docs.fal.ai/model-apis/model-endpoints/webhooks)."""
    payload: JsonObject = {
        "request_id": request.request_id,
        "gateway_request_id": request.request_id,
        "status": "OK" if status_code == 200 else "ERROR",
        "payload": body,
    }
    if status_code != 200:
        payload["error"] = f"Invalid status code: {status_code}"
    return payload
