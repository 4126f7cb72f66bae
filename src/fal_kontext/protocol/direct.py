"""fal's synchronous endpoint without I/O: one POST answered with the output itself, no queue.

fal documents it at https://docs.fal.ai/model-endpoints/synchronous-requests: ``POST https://fal.run/<endpoint-id>``
with the same body and auth as a queue submit answers 200 with the endpoint's output. fal states its trade-offs: the
connection is held until the result arrives, the request cannot be interrupted, and if the connection is lost the
result cannot be obtained although the request is still charged. So:

- the POST is sent again only when it certainly never ran: the connection could not be opened, or the server refused
  it with 429 (the queue submit's rule). After anything else (a read timeout, a dropped connection, a 5xx) it may have
  run and been charged, so it is never resent;
- the connection is held for the whole run: the read timeout is the caller's budget for the run, not the per-request
  read timeout (None waits without limit, as ``fal_client.run`` does);
- a server without the endpoint (404/405: aggregators re-expose fal's queue, not necessarily ``fal.run``) raises
  ``DirectUnavailableError``, which says to use the queue.

Where it is: the spec's ``x-fal-sync.server`` (else https://fal.run) when the client talks to fal's queue host; for
any other base URL, ``<base>/sync`` (the emulator's layout, our choice); ``sync_url=`` overrides both.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from fal_kontext.errors import (
    APIConnectionError,
    APIStatusError,
    DirectUnavailableError,
    UnexpectedResponseError,
)
from fal_kontext.spec import spec

from .answers import error_from_no_answer, error_from_status, json_or_none, lower_headers
from .commands import Answer, Flow, NoAnswer, Send
from .hosts import FAL_SYNC_URL, is_fal_queue, normalise_base_url
from .send import Pacing, send

__all__ = [
    "DirectAnswer",
    "DirectCall",
    "direct_base_url",
    "direct_flow",
]

T = TypeVar("T")
OutputT = TypeVar("OutputT")

# Ours: the path prefix under which a non-fal base URL (the emulator) serves the synchronous endpoint.
DIRECT_PREFIX = "/sync"


@dataclass(frozen=True, slots=True)
class DirectAnswer(Generic[OutputT]):
    """What the synchronous endpoint answered.

    Attributes:
        request_id: fal's ``x-fal-request-id`` header, or None when the server sent none.
        output: The endpoint's output, parsed with its generated model.
    """

    request_id: str | None
    output: OutputT


def _spec_sync_server() -> str:
    extension = spec().get("x-fal-sync")
    server = extension.get("server") if isinstance(extension, dict) else None
    return str(server) if isinstance(server, str) and server else FAL_SYNC_URL


def direct_base_url(queue_base_url: str, sync_url: str | None = None) -> str:
    """The base URL of the synchronous endpoint for a client whose queue base URL is ``queue_base_url``.

    ``sync_url`` if given; fal's synchronous host (the spec's ``x-fal-sync.server``) when the queue base is fal's
    queue host; else ``<queue base>/sync``, where the emulator serves it (an aggregator may not: see
    ``DirectUnavailableError``).

    Raises:
        ValueError: ``sync_url`` is not an absolute http(s) URL.
    """
    if sync_url is not None:
        return normalise_base_url(sync_url)
    if is_fal_queue(queue_base_url):
        return normalise_base_url(_spec_sync_server())
    return normalise_base_url(queue_base_url) + DIRECT_PREFIX


@dataclass(frozen=True, slots=True)
class DirectCall:
    """One call of the synchronous endpoint: where it goes, the input, and how long the connection is held.

    Attributes:
        base_url: From ``direct_base_url``.
        endpoint_id: e.g. ``fal-ai/flux-pro/kontext``.
        body: The input fields as JSON values (already checked against the spec).
        authorization: The ``Authorization`` header value, or None (never shown in ``repr``).
        run_timeout: Seconds the connection is held waiting for the output (None: no limit).
        start_timeout: ``X-Fal-Request-Timeout`` (fal applies it to synchronous requests too).
        runner_hint: ``X-Fal-Runner-Hint``.
    """

    base_url: str
    endpoint_id: str
    body: Mapping[str, Any]
    authorization: str | None = field(default=None, repr=False)
    run_timeout: float | None = None
    start_timeout: float | None = None
    runner_hint: str | None = None

    def request(self) -> Send:
        """The POST of the body as JSON to ``<base_url>/<endpoint_id>``."""
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if self.authorization:
            headers["Authorization"] = self.authorization
        if self.start_timeout is not None:
            headers["X-Fal-Request-Timeout"] = f"{self.start_timeout:g}"
        if self.runner_hint is not None:
            headers["X-Fal-Runner-Hint"] = self.runner_hint
        content = json.dumps(dict(self.body), separators=(",", ":")).encode("utf-8")
        url = f"{self.base_url}/{self.endpoint_id.strip('/')}"
        return Send("POST", url, headers, content, self.run_timeout)


def _no_answer(outcome: NoAnswer, url: str) -> APIConnectionError:
    if outcome.reached_server:
        advice = (
            "It may have run and been charged (fal: a synchronous request whose connection is lost cannot be "
            "recovered); it was not sent again. For long runs use run() or edit(), which go through the queue"
        )
    else:
        advice = "Nothing was sent. Check the network and the URL, then try again"
    return error_from_no_answer(
        outcome,
        request_id=None,
        operation=f"the synchronous call to {url}",
        submit=False,
        failed="got no answer",
        advice=advice,
    )


def _error(answer: Answer, request_id: str | None, url: str) -> APIStatusError:
    if answer.status_code in (404, 405):
        return DirectUnavailableError(
            f"{url} does not offer fal's synchronous endpoint",
            status_code=answer.status_code,
            request_id=request_id,
            body=answer.content.decode("utf-8", "replace")[:500],
            headers=lower_headers(answer.headers),
        )
    return error_from_status(answer.status_code, answer.headers, answer.content, request_id)


def _parsed(answer: Answer, parse: Callable[[Mapping[str, Any]], T], request_id: str | None) -> T:
    body = json_or_none(answer.content)
    if isinstance(body, dict):
        try:
            return parse(body)
        except (ValueError, KeyError, TypeError):  # not the output model's shape
            pass
    raise UnexpectedResponseError(
        f"the synchronous endpoint answered {answer.status_code} with something that is not the endpoint's output "
        "(is sync_url a synchronous host such as https://fal.run, not a queue? A queue would have queued a job)",
        request_id=request_id,
        body=answer.content.decode("utf-8", "replace")[:500],
    )


def direct_flow(request: Send, parse: Callable[[Mapping[str, Any]], T], *, pacing: Pacing) -> Flow[DirectAnswer[T]]:
    """Send the synchronous request and parse its output; returns ``DirectAnswer``.

    Args:
        request: From ``DirectCall.request``.
        parse: The endpoint's generated output model's ``from_dict``.
        pacing: The retry policy and its clock; the request may start a paid run, so it is sent again only when it
            certainly never ran (not sent, or refused with 429).

    Raises:
        DirectUnavailableError: the server has no synchronous endpoint (404/405).
        APIStatusError: the run failed (422 validation or content policy, 5xx, ...), as the queue's errors.
        APIConnectionError: no answer (``APITimeoutError`` after ``run_timeout``).
        UnexpectedResponseError: a 2xx answer that is not the endpoint's output.
    """
    outcome = (yield from send(request, pacing, idempotent=False)).outcome
    if isinstance(outcome, NoAnswer):
        raise _no_answer(outcome, request.url)
    request_id = lower_headers(outcome.headers).get("x-fal-request-id")
    if outcome.status_code >= 400:
        raise _error(outcome, request_id, request.url)
    return DirectAnswer(request_id, _parsed(outcome, parse, request_id))
