"""Every error fal_kontext raises. No ``httpx`` or generated-code exception escapes the client.

The tree::

    KontextError                          anything this package raises
    ├── InvalidInputError (ValueError)    input rejected before anything was sent: .problems (field, value, allowed)
    │   └── MissingCredentialsError       no key or token to send: .variables to set
    ├── APIError                          talking to the server went wrong: .request_id (None before submit)
    │   ├── APIConnectionError            no usable answer (DNS, refused, reset, TLS): .reached_server
    │   │   ├── APITimeoutError (TimeoutError)   connect or read timeout of one HTTP request
    │   │   └── SubmitOutcomeUnknownError a submit's answer was lost; a job may exist: .request_id, .candidates
    │   ├── APIStatusError                the server answered an error status: .status_code, .body, .error_type
    │   │   ├── BadRequestError           400 (and other 4xx without a kind of their own)
    │   │   │   └── ResultNotReadyError   400 "Request is still in progress": call wait()
    │   │   ├── AuthenticationError       401 / 403: the key or token is missing or wrong
    │   │   ├── NotFoundError             404: unknown request id, or its result expired
    │   │   ├── DirectUnavailableError    404/405 from fal's synchronous endpoint: not offered there; use the queue
    │   │   ├── PayloadTooLargeError      413: the input (usually an inlined image) is too big
    │   │   ├── ValidationError           422: .errors, the server's field list
    │   │   │   └── ContentPolicyError    422 content_policy_violation
    │   │   ├── RateLimitError            429: .retry_after (seconds or None)
    │   │   └── ServerError               5xx (never billed by fal)
    │   │       └── StartTimeoutError     504 + X-Fal-Request-Timeout-Type: user: the start deadline passed
    │   └── UnexpectedResponseError       a 2xx answer the spec does not describe
    ├── RequestFailedError                COMPLETED with an error (e.g. runner disconnected): .error, .error_type
    ├── RequestCancelledError             the request was cancelled before it produced a result
    ├── WaitTimeoutError (TimeoutError)   wait() passed its deadline; the request was cancelled (best effort)
    └── WebhookVerificationError          a webhook delivery is not provably from fal, or not readable

Every message names the request id when there is one, and what to do next. No message, ``repr`` or attribute carries
the API key.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

__all__ = [
    "APIConnectionError",
    "APIError",
    "APIStatusError",
    "APITimeoutError",
    "AuthenticationError",
    "BadRequestError",
    "ContentPolicyError",
    "DirectUnavailableError",
    "FieldError",
    "FieldProblem",
    "InvalidInputError",
    "KontextError",
    "MissingCredentialsError",
    "NotFoundError",
    "PayloadTooLargeError",
    "RateLimitError",
    "RequestCancelledError",
    "RequestFailedError",
    "ResultNotReadyError",
    "ServerError",
    "StartTimeoutError",
    "SubmitOutcomeUnknownError",
    "UnexpectedResponseError",
    "ValidationError",
    "WaitTimeoutError",
    "WebhookVerificationError",
]


def _about(request_id: str | None) -> str:
    return f" (request {request_id})" if request_id else ""


class KontextError(Exception):
    """Base class of every error raised by fal_kontext."""


@dataclass(frozen=True)
class FieldProblem:
    """One thing wrong with an input field, found before sending.

    Attributes:
        field: Dotted path of the field, e.g. ``num_images`` or ``image_urls[1]``.
        value: The value given (``None`` when the field is missing).
        problem: What is wrong and what is allowed, in words.
    """

    field: str
    value: object
    problem: str

    def __str__(self) -> str:
        return f"{self.field}: {self.problem}"


class InvalidInputError(KontextError, ValueError):
    """The input breaks the API spec; nothing was sent.

    Attributes:
        problems: Every problem found, one per field.
        endpoint: The endpoint the input was meant for, if known.
    """

    def __init__(self, problems: Sequence[FieldProblem], *, endpoint: str | None = None) -> None:
        self.problems = tuple(problems)
        self.endpoint = endpoint
        where = f" for {endpoint}" if endpoint else ""
        lines = "; ".join(str(p) for p in self.problems)
        super().__init__(f"invalid input{where}, nothing was sent: {lines}")


class MissingCredentialsError(InvalidInputError):
    """A request needs a key or token and the client has none; nothing was sent. Raised by the first request that
    needs one (a client may be built without: ``handle(id)`` and ``save()`` send no credential).

    Attributes:
        variables: The environment variables that would give one, e.g. ``("FAL_KEY",)``.
    """

    def __init__(self, problem: str, variables: Sequence[str]) -> None:
        super().__init__([FieldProblem("key", None, problem)])
        self.variables = tuple(variables)
        self.args = (f"no credential, nothing was sent: {problem}",)


class APIError(KontextError):
    """Talking to the server failed.

    Attributes:
        request_id: The queued request this concerns, or None (e.g. a failed submit).
    """

    def __init__(self, message: str, *, request_id: str | None = None) -> None:
        self.request_id = request_id
        super().__init__(message)


class APIConnectionError(APIError):
    """No usable HTTP answer: the connection failed, was reset, or the answer was cut off.

    Attributes:
        reached_server: False when the request certainly never reached the server (e.g. connection refused).
    """

    def __init__(self, message: str, *, request_id: str | None = None, reached_server: bool = True) -> None:
        self.reached_server = reached_server
        super().__init__(message, request_id=request_id)


class APITimeoutError(APIConnectionError, TimeoutError):
    """One HTTP request passed its connect or read timeout (``RequestTimeouts``)."""


class SubmitOutcomeUnknownError(APIConnectionError):
    """A submit's answer was lost and nothing can tell whether a job was queued (and billed). It was not sent again.

    Attributes:
        request_id: The id the lost answer carried, if one arrived (check it before resubmitting).
        candidates: Ids of listed requests that may be the job (several matched, or their input was not listed).
        endpoint_id: Where it was sent.
        sent_at: Wall-clock time (Unix seconds) it was sent.
        reason: Why the outcome is unknown, in words.

    Args (besides the attributes): list_url: the request list to point the reader at, when this target has one.
    """

    def __init__(  # noqa: PLR0913 - the error's attributes, each a keyword
        self,
        endpoint_id: str,
        reason: str,
        *,
        sent_at: float,
        request_id: str | None = None,
        candidates: Sequence[str] = (),
        list_url: str | None = None,
    ) -> None:
        self.endpoint_id = endpoint_id
        self.sent_at = sent_at
        self.reason = reason
        self.candidates = tuple(candidates)
        if request_id is not None:
            check = (
                f"It named request {request_id}: check it with Kontext.handle({request_id!r}).status() "
                f"(or `fal-kontext status {request_id}`) before submitting again"
            )
        elif self.candidates:
            check = f"It may be one of {', '.join(self.candidates)}: check them with Kontext.handle(id).status()"
        elif list_url is not None:
            start = datetime.fromtimestamp(math.floor(sent_at) - 60, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
            check = (
                f"Look for it with GET {list_url}?endpoint_id={endpoint_id}&start={start}"
                "&expand=payloads (or in your fal dashboard) before submitting again"
            )
        else:
            check = "Look for it in your provider's dashboard or request history before submitting again"
        super().__init__(
            f"the submit to {endpoint_id} may have queued a job (and be billed): {reason}. It was not sent again, "
            f"so as not to pay twice. {check}",
            request_id=request_id,
            reached_server=True,
        )


@dataclass(frozen=True)
class FieldError:
    """One item of the server's 422 field list (fal: ``{"loc", "msg", "type"}``).

    Attributes:
        loc: Where, e.g. ``("body", "image_url")``.
        msg: The server's message.
        type: The kind, e.g. ``value_error`` or ``content_policy_violation``.
    """

    loc: tuple[str | int, ...]
    msg: str
    type: str

    def __str__(self) -> str:
        where = ".".join(str(part) for part in self.loc if part != "body") or "input"
        return f"{where}: {self.msg} ({self.type})"


class APIStatusError(APIError):
    """The server answered with an error status.

    Attributes:
        status_code: The HTTP status.
        body: The response body as text (may be empty).
        error_type: fal's machine-readable kind (body ``error_type`` or header ``X-Fal-Error-Type``), if any.
        headers: The response headers (lower-case names).
    """

    hint = "see the status code and body"

    def __init__(  # noqa: PLR0913 - the public error's attributes, each a keyword
        self,
        detail: str,
        *,
        status_code: int,
        request_id: str | None = None,
        body: str = "",
        error_type: str | None = None,
        headers: Mapping[str, str] | None = None,
        hint: str | None = None,
    ) -> None:
        self.status_code = status_code
        self.body = body
        self.error_type = error_type
        self.headers = dict(headers or {})
        self.detail = detail
        kind = f" [{error_type}]" if error_type else ""
        advice = hint or self.hint
        super().__init__(
            f"HTTP {status_code}{kind}{_about(request_id)}: {detail.rstrip('.')}. {advice[0].upper()}{advice[1:]}",
            request_id=request_id,
        )


class BadRequestError(APIStatusError):
    """A 4xx answer without a more specific kind."""

    hint = "check the request; see the body for the server's reason"


class ResultNotReadyError(BadRequestError):
    """The result was asked for before the request completed (fal: 400 "Request is still in progress")."""

    hint = "call wait() to wait for completion, or status() to see where the request is"


class AuthenticationError(APIStatusError):
    """401/403: the key or token was missing or not accepted."""

    hint = (
        "set FAL_KEY (or FAL_KEY_ID and FAL_KEY_SECRET) for fal, or the aggregator's token with auth='bearer'; "
        "check that the base URL matches the credential"
    )


class NotFoundError(APIStatusError):
    """404: no such request (or not visible with this key), or its result has expired."""

    hint = "check the request id and the base URL; fal keeps results for a limited time (1 hour, 6 minutes if large)"


class DirectUnavailableError(APIStatusError):
    """404/405 from the synchronous endpoint (``run_direct``): the server does not offer it."""

    hint = (
        "use run() or edit(), which go through the queue (an aggregator may offer only the queue), or pass "
        "sync_url= the server's synchronous base URL"
    )


class PayloadTooLargeError(APIStatusError):
    """413: the request body is larger than the server accepts."""

    hint = "send smaller images, or pass a public URL instead of inlining the file as a data URI"


class ValidationError(APIStatusError):
    """422: the server rejected the input (or, on the result, the output).

    Attributes:
        errors: The server's field list.
    """

    hint = "fix the fields listed"

    def __init__(self, detail: str, *, errors: Sequence[FieldError] = (), **kwargs: object) -> None:
        self.errors = tuple(errors)
        listed = "; ".join(str(e) for e in self.errors)
        super().__init__(listed or detail, **kwargs)  # type: ignore[arg-type]


class ContentPolicyError(ValidationError):
    """422 ``content_policy_violation``: the prompt, an input image or the output was flagged."""

    hint = "change the prompt or the input images; a flagged request may still be billed"


class RateLimitError(APIStatusError):
    """429: too many requests.

    Attributes:
        retry_after: Seconds the server asked to wait (``Retry-After``), or None.
    """

    hint = "wait and retry, or lower the number of concurrent requests"

    def __init__(self, detail: str, *, retry_after: float | None = None, **kwargs: object) -> None:
        self.retry_after = retry_after
        if retry_after is not None:
            detail = f"{detail} (retry after {retry_after:g} s)"
        super().__init__(detail, **kwargs)  # type: ignore[arg-type]


class ServerError(APIStatusError):
    """5xx: the server failed (fal does not bill 5xx)."""

    hint = "retry later; the client already retried what was safe to retry"


class StartTimeoutError(ServerError):
    """504 with ``X-Fal-Request-Timeout-Type: user``: the request did not start within ``start_timeout``."""

    hint = "submit again with a longer start_timeout, or at a quieter time"


class UnexpectedResponseError(APIError):
    """The server answered 2xx with something the spec does not describe (not JSON, missing fields, unknown status)."""

    def __init__(self, what: str, *, request_id: str | None = None, body: str = "") -> None:
        self.body = body
        super().__init__(
            f"unexpected answer{_about(request_id)}: {what}. Is the base URL a fal-compatible queue API?",
            request_id=request_id,
        )


class RequestFailedError(KontextError):
    """The request ended COMPLETED with an error instead of a result.

    Attributes:
        request_id: The request.
        error: fal's message, e.g. "Runner disconnected".
        error_type: fal's kind, e.g. ``runner_disconnected``.
    """

    def __init__(self, request_id: str, error: str, error_type: str | None = None) -> None:
        self.request_id = request_id
        self.error = error
        self.error_type = error_type
        kind = f" [{error_type}]" if error_type else ""
        super().__init__(
            f"request {request_id} failed{kind}: {error}. Submit it again (5xx-type failures are not billed)"
        )


class RequestCancelledError(KontextError):
    """The request was cancelled before it produced a result.

    Attributes:
        request_id: The request.
    """

    def __init__(self, request_id: str, detail: str = "") -> None:
        self.request_id = request_id
        extra = f": {detail}" if detail else ""
        super().__init__(f"request {request_id} was cancelled{extra}. Submit it again to get a result")


class WaitTimeoutError(KontextError, TimeoutError):
    """wait() passed its deadline. The request was cancelled on the server (best effort) unless told not to.

    Attributes:
        request_id: The request.
        timeout: The deadline in seconds.
        cancelled: Whether the server accepted the cancellation.
    """

    def __init__(self, request_id: str, timeout: float, *, cancelled: bool) -> None:
        self.request_id = request_id
        self.timeout = timeout
        self.cancelled = cancelled
        what = "it was cancelled" if cancelled else "it could not be cancelled and may still run (and be billed)"
        super().__init__(
            f"request {request_id} did not complete within {timeout:g} s; {what}. "
            "Wait longer (timeout=...) or resume it later by request id"
        )


class WebhookVerificationError(KontextError):
    """A webhook delivery is not provably from fal (missing headers, bad signature, stale timestamp) or unreadable."""
