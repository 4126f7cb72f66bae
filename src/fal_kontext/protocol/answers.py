"""What an answer means: an HTTP error status, or a call without an answer, as the error it raises.

The mapping from statuses to the error tree (``errors``) lives here, next to the commands whose outcomes it reads,
as anthropic-sdk-python keeps ``_make_status_error`` next to its client rather than in its exception module.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from fal_kontext import errors
from fal_kontext.retry import parse_retry_after

from .commands import Answer, NoAnswer

__all__ = [
    "STILL_IN_PROGRESS",
    "answered",
    "detail_of",
    "error_from_no_answer",
    "error_from_status",
    "error_of",
    "json_or_none",
    "lower_headers",
]

# fal's answer to a result asked for too early (400): https://fal.ai/docs/inference-api/queue/result
STILL_IN_PROGRESS = "Request is still in progress"


def lower_headers(headers: Mapping[str, str]) -> dict[str, str]:
    """``headers`` with lower-case names (HTTP names are case-insensitive; an executor may give either)."""
    return {name.lower(): value for name, value in headers.items()}


def json_or_none(content: str | bytes) -> Any:
    """The JSON value of a body (or a text), or None when it is not JSON."""
    try:
        return json.loads(content)
    except (ValueError, UnicodeDecodeError):
        return None


def _field_errors(items: list[Any]) -> list[errors.FieldError]:
    found: list[errors.FieldError] = []
    for item in items:
        if isinstance(item, dict):
            loc = tuple(p for p in item.get("loc", ()) if isinstance(p, (str, int)))
            found.append(errors.FieldError(loc, str(item.get("msg", "")), str(item.get("type", ""))))
    return found


def detail_of(content: bytes) -> tuple[str, list[errors.FieldError], str | None]:
    """The message, the 422 field list and the error_type of an error body in any of the shapes seen in the wild:
    fal's ``{"detail": str | [items], "error_type"?}``, a gateway's ``{"error": {"message"}}`` or
    ``{"error", "message"}``, or plain text."""
    body = json_or_none(content)
    if isinstance(body, dict):
        detail = body.get("detail")
        error_type = body.get("error_type") if isinstance(body.get("error_type"), str) else None
        if isinstance(detail, list):
            listed = _field_errors(detail)
            return "; ".join(str(e) for e in listed) or "invalid input", listed, error_type
        if isinstance(detail, str):
            return detail, [], error_type
        nested = body.get("error")
        if isinstance(nested, dict) and isinstance(nested.get("message"), str):
            kind = nested.get("type") or nested.get("code")
            return nested["message"], [], error_type or (str(kind) if kind else None)
        for key in ("message", "status"):
            if isinstance(body.get(key), str):
                return body[key], [], error_type
    text = content.decode("utf-8", "replace").strip()
    return (text[:300] or "no body"), [], None


def error_from_status(
    status_code: int, headers: Mapping[str, str], content: bytes, request_id: str | None
) -> errors.APIStatusError:
    """The typed error for an HTTP error answer (the body already redacted)."""
    lower = lower_headers(headers)
    detail, field_errors, error_type = detail_of(content)
    error_type = error_type or lower.get("x-fal-error-type")
    common: dict[str, Any] = {
        "status_code": status_code,
        "request_id": request_id,
        "body": content.decode("utf-8", "replace")[:2000],
        "error_type": error_type,
        "headers": lower,
    }
    if status_code in (401, 403):
        return errors.AuthenticationError(detail, **common)
    if status_code == 404:
        return errors.NotFoundError(detail, **common)
    if status_code == 413:
        return errors.PayloadTooLargeError(detail, **common)
    if status_code == 422:
        if error_type == "content_policy_violation" or any(e.type == "content_policy_violation" for e in field_errors):
            return errors.ContentPolicyError(detail, errors=field_errors, **common)
        return errors.ValidationError(detail, errors=field_errors, **common)
    if status_code == 429:
        return errors.RateLimitError(detail, retry_after=parse_retry_after(lower), **common)
    if status_code == 400 and detail == STILL_IN_PROGRESS:
        return errors.ResultNotReadyError(detail, **common)
    if status_code == 504 and lower.get("x-fal-request-timeout-type") == "user":
        return errors.StartTimeoutError(detail, **common)
    if status_code >= 500:
        return errors.ServerError(detail, **common)
    return errors.BadRequestError(detail, **common)


# What to do after a call got no answer: a submit that reached the server may have queued a paid job.
_SUBMIT_ADVICE = (
    "The submit may have reached the server and queued a job: it was not sent again, to avoid paying twice. "
    "Check your fal dashboard before resubmitting"
)
_NETWORK_ADVICE = "Check the network and the base URL, then try again"


def error_from_no_answer(  # noqa: PLR0913 - each a keyword
    outcome: NoAnswer,
    *,
    request_id: str | None,
    operation: str,
    submit: bool,
    failed: str = "failed",
    advice: str | None = None,
) -> errors.APIConnectionError:
    """The typed error for a call that got no HTTP answer: ``<operation> <failed> (request <id>): <what happened>.
    <advice>``, an ``APITimeoutError`` when a timeout caused it.

    Args:
        outcome: What happened.
        request_id: The request it was about, if any.
        operation: The spec's operationId, or what was done.
        submit: Whether it was a submit, which may have queued a paid job (the default advice says so).
        failed: How the message says it went wrong.
        advice: What to do next, instead of the default (check the network, or the dashboard after a submit).
            Left out when the certificate was rejected: the error's text says what to do then.
    """
    reached_server = outcome.reached_server
    if advice is None:
        advice = _SUBMIT_ADVICE if submit and reached_server else _NETWORK_ADVICE
    message = f"{operation} {failed}{errors._about(request_id)}: {outcome.error}"
    if not outcome.certificate_rejected:  # its text says what to do: trusting the certificate, not trying again
        message += f". {advice}"
    if outcome.timed_out:
        return errors.APITimeoutError(message, request_id=request_id, reached_server=reached_server)
    return errors.APIConnectionError(message, request_id=request_id, reached_server=reached_server)


def error_of(outcome: Answer | NoAnswer, request_id: str | None, what: str, *, submit: bool = False) -> errors.APIError:
    """The typed error of a failed call: its status's, or its missing answer's (``what``: the operation, or what
    was done, for the message; ``submit``: the call may have queued a paid job)."""
    if isinstance(outcome, NoAnswer):
        return error_from_no_answer(outcome, request_id=request_id, operation=what, submit=submit)
    return error_from_status(outcome.status_code, outcome.headers, outcome.content, request_id)


def answered(outcome: Answer | NoAnswer, request_id: str | None, what: str) -> Answer:
    """``outcome`` if it is a success answer; else raises its typed error."""
    if isinstance(outcome, NoAnswer) or outcome.status_code >= 400:
        raise error_of(outcome, request_id, what)
    return outcome
