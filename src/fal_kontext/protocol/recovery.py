"""What to do when a submit's answer is lost: one documented decision table, pure matching, and a lookup flow.

A submit creates a paid job. When its outcome is unknown (the connection dropped after sending, the answer was cut
off, a 5xx or a gateway's HTML page of unclear origin, a read timeout), the client must neither lose a queued job
nor pay for it twice. The rules, first match wins (``DECISIONS``, used by ``decide``):

==================  ==========  ===========  ==============  ================================================
what happened       id held     lookup       action          why
==================  ==========  ===========  ==============  ================================================
not sent            any         any          resend          the connection never opened: nothing left here
refused (429)       any         any          resend          a 429 refuses the request (RFC 6585): not queued
rejected (4xx)      any         any          raise           the server answered: nothing was queued
answer cut (2xx)    yes         any          adopt           the queue answered 2xx and named the job
answer cut (2xx)    no          yes          look up         queued, but the id was not read: find it
dropped             any         yes          look up         the job may be queued: find it
read timeout        any         yes          look up         the job may be queued: find it
server error (5xx)  any         yes          look up         a gateway or fal failed, before or after queuing
any of the above    any         no           raise unknown   may be queued; nothing can tell: never resend
==================  ==========  ===========  ==============  ================================================

"resend" rows are ``RetryPolicy``'s to run (how often, how long to wait): recovery sees such an attempt only once the
policy gave up, and raises its error. "answer cut" also covers a whole 2xx answer without a request id. "adopt" uses
the held id as if the submit had answered. "look up" searches fal's request list (``lookup_flow``); its verdict
is concluded by ``conclude``: one job matches -> adopt; the list proves absence (see below) -> resend (the caller
bounds how often: the clients allow ``RetryPolicy.max_retries`` such resends); several match -> raise
``SubmitOutcomeUnknownError`` listing them; the list is unreadable, refused or inconclusive -> raise
``SubmitOutcomeUnknownError``. An id in a 5xx answer's ``x-fal-request-id`` is only a hint (the answer is an error,
the job may not exist): the lookup asks for it by id, and the error carries it when no lookup is possible.

fal's request list (https://fal.ai/docs/platform-apis/v1/models/requests/by-endpoint) lists an account's requests
per endpoint, with their input when asked (``expand=payloads``). fal does not say how soon a new request is listed,
whether it is listed before it ends, or whether its input is listed when payload storage is off. So an empty list
proves nothing by itself: **waiting is our choice**. A lookup concludes "absent" only when the list, read in full,
shows no candidate after ``RecoveryPolicy.absent_after`` seconds of looking (configurable; ``None`` never concludes
absence, so nothing is ever resent after a lost answer). Matching assumes the listed ``json_input`` holds the input
as sent, with any fields fal adds (defaults): every field we sent must be there, equal.
"""

from __future__ import annotations

import enum
import logging
import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from fal_kontext.errors import SubmitOutcomeUnknownError
from fal_kontext.retry import RetryPolicy, parse_retry_after

from .answers import json_or_none, lower_headers
from .commands import INTERRUPTS, Answer, Flow, HttpGet, NoAnswer, Sleep, perform
from .hosts import FAL_API_URL, may_send_key, requests_list_base
from .send import Pacing, send

__all__ = [
    "DECISIONS",
    "DEFAULT_RECOVERY",
    "REQUESTS_PATH",
    "Action",
    "Decision",
    "JobQuery",
    "ListedRequest",
    "LookupResult",
    "LookupStarted",
    "Matches",
    "Recovery",
    "RecoveryPolicy",
    "RequestPage",
    "SubmitAttempt",
    "SubmitOutcome",
    "SubmitOutcomeUnknownError",
    "Verdict",
    "attempt_of",
    "classify",
    "conclude",
    "decide",
    "held_request_id",
    "lookup_flow",
    "match_requests",
    "parse_page",
    "recover_flow",
    "requests_list_url",
]

# The request-list path on fal's Platform API (https://fal.ai/docs/platform-apis/v1/models/requests/by-endpoint).
REQUESTS_PATH = "/v1/models/requests/by-endpoint"
# The largest page the request list allows (its "limit": 1 to 100, default 50; same reference as above).
_MAX_PAGE = 100

logger = logging.getLogger("fal_kontext")


# --- what happened, and the decision table ----------------------------------------------------------------------


class SubmitOutcome(enum.StrEnum):
    """What a failed submit attempt tells about the job."""

    NOT_SENT = "not sent"  # the connection could not be opened: the request never left this machine
    REFUSED = "refused"  # 429: the server refused the request
    REJECTED = "rejected"  # another 4xx: the server answered that it will not run it
    ANSWER_CUT = "answer cut"  # a 2xx status line arrived, the body was cut off or has no request id
    DROPPED = "dropped"  # sent, then the connection dropped before any answer
    READ_TIMEOUT = "read timeout"  # sent, then no answer in time
    SERVER_ERROR = "server error"  # 5xx (JSON or a gateway's HTML page), or any other unexpected status


class Action(enum.StrEnum):
    """What the submit does next."""

    RESEND = "resend"  # send the same submit again (as the retry policy allows)
    ADOPT = "adopt"  # carry on with the request id held
    LOOK_UP = "look up"  # search fal's request list for the job
    RAISE = "raise"  # raise the failure's own typed error: nothing was queued
    RAISE_UNKNOWN = "raise unknown"  # raise SubmitOutcomeUnknownError: the job may exist; never resend


@dataclass(frozen=True, slots=True)
class Decision:
    """One row of the table: ``holds_id``/``can_look_up`` None means "either"."""

    outcome: SubmitOutcome
    holds_id: bool | None
    can_look_up: bool | None
    action: Action
    why: str

    def applies(self, outcome: SubmitOutcome, holds_id: bool, can_look_up: bool) -> bool:
        """Whether this row covers the situation."""
        return self.outcome is outcome and self.holds_id in (None, holds_id) and self.can_look_up in (None, can_look_up)


_MAY_BE_QUEUED = (
    SubmitOutcome.ANSWER_CUT,
    SubmitOutcome.DROPPED,
    SubmitOutcome.READ_TIMEOUT,
    SubmitOutcome.SERVER_ERROR,
)

DECISIONS: tuple[Decision, ...] = (
    Decision(SubmitOutcome.NOT_SENT, None, None, Action.RESEND, "the connection never opened, nothing was sent"),
    Decision(SubmitOutcome.REFUSED, None, None, Action.RESEND, "a 429 refuses the request, nothing was queued"),
    Decision(SubmitOutcome.REJECTED, None, None, Action.RAISE, "the server answered that it will not run it"),
    Decision(SubmitOutcome.ANSWER_CUT, True, None, Action.ADOPT, "the queue answered 2xx and named the request"),
    *(
        Decision(outcome, None, True, Action.LOOK_UP, f"{outcome.value}: the job may be queued, look it up")
        for outcome in _MAY_BE_QUEUED
    ),
    *(
        Decision(outcome, None, False, Action.RAISE_UNKNOWN, f"{outcome.value}: the job may be queued")
        for outcome in _MAY_BE_QUEUED
    ),
)


def decide(outcome: SubmitOutcome, *, holds_id: bool, can_look_up: bool) -> Decision:
    """The first row of ``DECISIONS`` that covers the situation (every situation is covered)."""
    for row in DECISIONS:
        if row.applies(outcome, holds_id, can_look_up):
            return row
    raise AssertionError(f"no decision for {outcome}, holds_id={holds_id}, can_look_up={can_look_up}")


# --- what one attempt left behind -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SubmitAttempt:
    """What a submit attempt left behind, as far as recovery is concerned.

    Attributes:
        status_code: The HTTP status, or None when no status line arrived.
        headers: The response headers received (any case), empty without an answer.
        body: The body bytes read, possibly cut off.
        reached_server: False only when the request certainly never left this machine (connect failed).
        timed_out: No answer arrived in time.
        complete: The body was read to its end.
    """

    status_code: int | None = None
    headers: Mapping[str, str] | None = None
    body: bytes = b""
    reached_server: bool = True
    timed_out: bool = False
    complete: bool = False


def attempt_of(outcome: Answer | NoAnswer) -> SubmitAttempt:
    """What a submit's outcome left behind: a whole answer, or none (possibly after its status and headers)."""
    if isinstance(outcome, Answer):
        return SubmitAttempt(outcome.status_code, outcome.headers, outcome.content, complete=True)
    return SubmitAttempt(
        outcome.status_code,
        outcome.headers,
        outcome.body,
        reached_server=outcome.reached_server,
        timed_out=outcome.timed_out,
    )


def classify(attempt: SubmitAttempt) -> SubmitOutcome:
    """Which kind of outcome ``attempt`` is (a complete 2xx with a request id is not a failure: do not ask)."""
    code = attempt.status_code
    if code is None:
        if not attempt.reached_server:
            return SubmitOutcome.NOT_SENT
        return SubmitOutcome.READ_TIMEOUT if attempt.timed_out else SubmitOutcome.DROPPED
    if code == 429:
        return SubmitOutcome.REFUSED
    if 200 <= code < 300:
        return SubmitOutcome.ANSWER_CUT
    if 400 <= code < 500:
        return SubmitOutcome.REJECTED
    return SubmitOutcome.SERVER_ERROR


# A request id as fal's submit answer writes it: "request_id": "<id>" (the closing quote must have arrived).
_BODY_ID = re.compile(rb'"request_id"\s*:\s*"([^"\\\s]{1,200})"')
_HEADER_ID = "x-fal-request-id"


def _usable_id(value: str) -> str | None:
    value = value.strip()
    if not value or len(value) > 200 or any(c.isspace() or not c.isprintable() for c in value):
        return None
    return value


def held_request_id(attempt: SubmitAttempt) -> str | None:
    """The request id the attempt received, if any: the ``x-fal-request-id`` header (fal's JS client reads the id
    from it: https://github.com/fal-ai/fal-js/blob/main/libs/client/src/response.ts), else ``"request_id": "..."``
    in the (possibly cut-off) body."""
    for name, value in (attempt.headers or {}).items():
        if name.lower() == _HEADER_ID and (rid := _usable_id(value)):
            return rid
    found = _BODY_ID.search(attempt.body)
    return _usable_id(found.group(1).decode("utf-8", "replace")) if found else None


# --- where the request list is, and who may get the key --------------------------------------------------------


def requests_list_url(configured_base: str, auth_scheme: str, override: str | None = None) -> tuple[str | None, str]:
    """The request-list URL for this client, or None, and the reason in words.

    Args:
        configured_base: The client's (normalised) base URL.
        auth_scheme: ``"key"`` or ``"bearer"``; fal's Platform API takes ``Authorization: Key``.
        override: ``RecoveryPolicy.requests_base_url``: a base URL to ask instead (e.g. a self-hosted gateway on the
            configured origin).

    Raises:
        ValueError: ``override`` is neither fal's API host (with fal's queue as the base) nor the configured origin:
            the key is never sent anywhere else.
    """
    if override is not None:
        base = override.rstrip("/")
        if not may_send_key(base, configured_base):
            raise ValueError(
                f"requests_base_url {override!r} must be {FAL_API_URL} (with fal's queue as the base URL) or on the "
                f"base URL's own origin {configured_base!r}: the key is never sent to another host"
            )
    else:
        found = requests_list_base(configured_base)
        if found is None:
            return None, "this base URL offers no known request list (fal's is at api.fal.ai, for fal's queue)"
        base = found
    if auth_scheme != "key":
        return None, "fal's request list takes a fal key (Authorization: Key), not a bearer token"
    return base + REQUESTS_PATH, f"the request list at {base}"


# --- the request list: its pages and matching -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ListedRequest:
    """One item of fal's request list (the fields recovery reads).

    Attributes:
        request_id: The request.
        endpoint_id: Its endpoint, if listed.
        sent_at: When it was sent (``sent_at``, UTC), if listed and readable.
        json_input: Its input (``expand=payloads``), or None when not listed.
    """

    request_id: str
    endpoint_id: str | None
    sent_at: datetime | None
    json_input: object | None


@dataclass(frozen=True, slots=True)
class RequestPage:
    """One page of the request list."""

    items: tuple[ListedRequest, ...]
    next_cursor: str | None
    has_more: bool


def _timestamp(value: object) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        when = datetime.fromisoformat(value)
    except ValueError:
        return None
    return when if when.tzinfo is not None else when.replace(tzinfo=UTC)


def _payload(value: object) -> object | None:
    # tolerate an input listed as JSON text
    return json_or_none(value) if isinstance(value, str) else value


def parse_page(content: bytes) -> RequestPage | None:
    """A page from the list's JSON body, or None when it is not the documented shape (``items``, ``next_cursor``,
    ``has_more``). Items without a ``request_id`` are skipped."""
    body = json_or_none(content)
    if not isinstance(body, dict) or not isinstance(body.get("items"), list):
        return None
    items: list[ListedRequest] = []
    for raw in body["items"]:
        if not isinstance(raw, dict) or not isinstance(raw.get("request_id"), str) or not raw["request_id"]:
            continue
        endpoint = raw.get("endpoint_id")
        items.append(
            ListedRequest(
                raw["request_id"],
                endpoint if isinstance(endpoint, str) else None,
                _timestamp(raw.get("sent_at")),
                _payload(raw.get("json_input")),
            )
        )
    cursor = body.get("next_cursor")
    cursor = cursor if isinstance(cursor, str) and cursor else None
    return RequestPage(tuple(items), cursor, body.get("has_more") is True and cursor is not None)


@dataclass(frozen=True, slots=True)
class JobQuery:
    """The job a lost submit may have created.

    Attributes:
        endpoint_id: The endpoint it was sent to, e.g. ``fal-ai/flux-pro/kontext``.
        input: The exact JSON body sent.
        sent_at: Wall-clock time (Unix seconds) just before it was sent.
        request_id: An id the failed answer named (``x-fal-request-id`` on a 5xx), to ask for; None otherwise.
    """

    endpoint_id: str
    input: Mapping[str, Any]
    sent_at: float
    request_id: str | None = None


@dataclass(frozen=True, slots=True)
class Matches:
    """The listed requests that may be the job.

    Attributes:
        matched: Ids whose listed input holds every field sent, equal.
        unverifiable: Ids in the window without a readable input (payload storage off, or not expanded).
    """

    matched: tuple[str, ...]
    unverifiable: tuple[str, ...]


def _holds(listed: object, sent: object) -> bool:
    """Whether ``listed`` holds ``sent``: equal, with extra keys allowed in objects (fal may add defaults)."""
    if isinstance(sent, Mapping):
        return isinstance(listed, Mapping) and all(k in listed and _holds(listed[k], v) for k, v in sent.items())
    if isinstance(sent, list):
        return isinstance(listed, list) and len(listed) == len(sent) and all(map(_holds, listed, sent))
    numbers = (int, float)
    same_kind = type(listed) is type(sent) or (type(listed) in numbers and type(sent) in numbers)
    return same_kind and listed == sent


def match_requests(query: JobQuery, items: Sequence[ListedRequest], *, clock_skew: float) -> Matches:
    """The items that may be the job: same endpoint, sent no earlier than ``query.sent_at - clock_skew`` (either
    unknown counts as a yes), the queried id if any, and an input holding every field sent (``matched``) or no
    readable input (``unverifiable``)."""
    earliest = datetime.fromtimestamp(query.sent_at - clock_skew, UTC)
    matched: list[str] = []
    unverifiable: list[str] = []
    for item in items:
        if item.endpoint_id is not None and item.endpoint_id != query.endpoint_id:
            continue
        if item.sent_at is not None and item.sent_at < earliest:
            continue
        if query.request_id is not None and item.request_id != query.request_id:
            continue
        if item.request_id in matched or item.request_id in unverifiable:
            continue
        if not isinstance(item.json_input, Mapping):
            unverifiable.append(item.request_id)
        elif _holds(item.json_input, query.input):
            matched.append(item.request_id)
    return Matches(tuple(matched), tuple(unverifiable))


# --- the lookup -------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RecoveryPolicy:
    """How a submit whose answer was lost is recovered. Frozen; every default is our choice (fal states none).

    Attributes:
        look_up: Search fal's request list after a lost answer (where one is available); False never looks.
        absent_after: Seconds of looking after which a list with no candidate counts as "not queued" and the submit
            is sent again. fal does not say how soon a request is listed, so this is a bet; None never resends.
        timeout: Seconds a lookup may take in all; then it gives up (the error says the job may exist). Our
            default leaves 90 s after ``absent_after`` for the reading that proves absence: with hundreds of
            requests in the window that reading is many pages, each of which may need asking again. The call's own
            ``timeout=`` bounds the lookup too: it ends at whichever comes first.
        interval: Seconds between two readings of the list.
        outage_after: The request list failing this many times in a row in the way the submit did (each a 5xx, each
            without an answer, each a timeout, or each refused) is taken as an outage of fal or of the proxy: the
            lookup gives up at once, with that reason, rather than spend its whole ``timeout``. A failure of another
            kind, or an answer, starts the count again. None never gives up early. Ours: with 8, a list that fails
            one request in five, in mixed ways, still gets through (a run of eight failures of one kind is rarer
            than one in a million requests), and an outage is recognised after seven pauses of ``interval`` (14 s
            by default).
        clock_skew: Seconds this machine's clock may be ahead of fal's: the window starts this long before sending.
        page_size: Items per page (fal: 1 to 100).
        requests_base_url: Ask the request list here instead (fal's API host or the base URL's own origin only).
        on_lookup: Called with a ``LookupStarted`` when a lookup begins (it may take up to ``timeout`` seconds),
            e.g. to tell the person waiting; called from the submit (not awaited), so it must return quickly. The
            same news is logged at INFO on the ``fal_kontext`` logger.
    """

    look_up: bool = True
    absent_after: float | None = 60.0
    timeout: float = 150.0
    interval: float = 2.0
    outage_after: int | None = 8
    clock_skew: float = 60.0
    page_size: int = 50
    requests_base_url: str | None = None
    on_lookup: Callable[[LookupStarted], object] | None = field(default=None, repr=False, compare=False)

    def __post_init__(self) -> None:
        for name in ("timeout", "interval", "clock_skew"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or math.isnan(value) or value < 0 or math.isinf(value):
                raise ValueError(f"RecoveryPolicy.{name} must be a finite number >= 0, not {value!r}")
        if self.absent_after is not None and (
            not isinstance(self.absent_after, (int, float)) or not 0 <= self.absent_after < self.timeout
        ):
            raise ValueError(
                f"RecoveryPolicy.absent_after must be None or >= 0 and less than timeout ({self.timeout:g}), "
                f"not {self.absent_after!r}"
            )
        if self.outage_after is not None and (
            not isinstance(self.outage_after, int) or isinstance(self.outage_after, bool) or self.outage_after < 1
        ):
            raise ValueError(
                f"RecoveryPolicy.outage_after must be None or a whole number >= 1, not {self.outage_after!r}"
            )
        if not isinstance(self.page_size, int) or not 1 <= self.page_size <= _MAX_PAGE:
            raise ValueError(f"RecoveryPolicy.page_size must be an integer from 1 to {_MAX_PAGE}")
        if self.on_lookup is not None and not callable(self.on_lookup):
            raise ValueError(f"RecoveryPolicy.on_lookup must be a function of a LookupStarted, not {self.on_lookup!r}")


@dataclass(frozen=True, slots=True)
class LookupStarted:
    """A submit's answer was lost, and the client is looking for the job in the request list.

    Attributes:
        endpoint_id: Where the submit went.
        what_happened: How the answer was lost (``dropped``, ``read timeout``, ``server error``, ``answer cut``).
        request_id: The id the lost answer named, if one arrived (the lookup asks for it).
        timeout: Seconds the lookup may take at most (``RecoveryPolicy.timeout``).
        absent_after: Seconds of looking after which an unlisted job counts as not queued, or None.
        list_url: The request list asked.
        sent_at: Wall-clock time (Unix seconds) the submit was sent.
    """

    endpoint_id: str
    what_happened: str
    request_id: str | None
    timeout: float
    absent_after: float | None
    list_url: str
    sent_at: float

    def __str__(self) -> str:
        return f"answer lost ({self.what_happened}); looking for the job in the request list, up to {self.timeout:g} s"

    def interrupted(self) -> SubmitOutcomeUnknownError:
        """What an interruption of the lookup leaves: a job that may exist, and how to look it up."""
        return SubmitOutcomeUnknownError(
            self.endpoint_id,
            "interrupted while looking for it in the request list",
            sent_at=self.sent_at,
            request_id=self.request_id,
            list_url=self.list_url,
        )


DEFAULT_RECOVERY = RecoveryPolicy()


class Verdict(enum.StrEnum):
    """What a lookup concluded."""

    FOUND = "found"  # exactly one listed request is the job
    ABSENT = "absent"  # no candidate after absent_after seconds of looking
    AMBIGUOUS = "ambiguous"  # several listed requests may be the job
    UNKNOWN = "unknown"  # the list was not conclusive before the timeout
    UNAVAILABLE = "unavailable"  # the list refused or is not there (no right, not served, not its shape)


@dataclass(frozen=True, slots=True)
class LookupResult:
    """A lookup's verdict.

    Attributes:
        verdict: What it concluded.
        request_id: The job found (``FOUND``).
        candidates: Ids that may be the job (``AMBIGUOUS``, ``UNKNOWN``).
        reason: Why, in words (for the error message and logs).
    """

    verdict: Verdict
    request_id: str | None = None
    candidates: tuple[str, ...] = ()
    reason: str = ""


def conclude(result: LookupResult, *, may_resend: bool) -> Action:
    """The action after a lookup: adopt the one job found; resend when it proved absence (``RAISE`` once no resend
    is left: nothing was queued); otherwise raise ``SubmitOutcomeUnknownError``."""
    if result.verdict is Verdict.FOUND:
        return Action.ADOPT
    if result.verdict is Verdict.ABSENT:
        return Action.RESEND if may_resend else Action.RAISE
    return Action.RAISE_UNKNOWN


def _iso(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _query(query: JobQuery, policy: RecoveryPolicy, cursor: str | None) -> tuple[tuple[str, str], ...]:
    params = [
        ("endpoint_id", query.endpoint_id),
        ("start", _iso(math.floor(query.sent_at - policy.clock_skew))),
        ("expand", "payloads"),
        ("limit", str(policy.page_size)),
    ]
    if query.request_id is not None:
        params.append(("request_id", query.request_id))
    if cursor is not None:
        params.append(("cursor", cursor))
    return tuple(params)


@dataclass(frozen=True, slots=True)
class _Listing:
    """A full reading of the list (``items``), or why it failed: ``final`` when asking again cannot help, ``down``
    when the list failed ``outage_after`` times in a row."""

    items: tuple[ListedRequest, ...] = ()
    failure: str | None = None
    final: bool = False
    down: bool = False
    wait: float | None = None


_MAX_PAGES = 50
# Statuses of the request list that are asked again: it creates nothing, so every transient failure is retried.
_TRANSIENT = frozenset({408, 429, *range(500, 600)})


class _Lookup:
    """One lookup's pacing: its deadline, and the list's failures in a row of the submit's kind (``outage_after``)."""

    def __init__(
        self,
        policy: RecoveryPolicy,
        random: Callable[[], float],
        clock: Callable[[], float],
        deadline: float,
        outage_of: SubmitOutcome | None,
    ) -> None:
        self.policy = policy
        self.clock = clock
        self.deadline = deadline
        self.outage_of = outage_of
        self.failures_in_a_row = 0
        # Each failed page is asked again in place after ``interval`` (or the answer's Retry-After, honoured up to
        # the lookup's timeout), until the deadline or the outage rule ends it.
        retry = RetryPolicy(
            initial_delay=policy.interval,
            max_delay=policy.interval,
            jitter=0.0,
            max_retry_after=policy.timeout,
            retry_statuses=_TRANSIENT,
        )
        self.pacing = Pacing(retry, random, clock)

    def down(self, outcome: Answer | NoAnswer) -> bool:
        """Count a failed request of the list; True once ``outage_after`` in a row failed as the submit did."""
        if self.policy.outage_after is None:
            return False
        kind = classify(attempt_of(outcome))
        self.failures_in_a_row = self.failures_in_a_row + 1 if self.outage_of in (None, kind) else 0
        return self.failures_in_a_row >= self.policy.outage_after


def _failure_text(outcome: Answer | NoAnswer) -> str:
    if isinstance(outcome, NoAnswer):
        return f"the request list did not answer ({outcome.error})"
    return f"the request list answered HTTP {outcome.status_code}"


def _read_page(url: str, query: JobQuery, lookup: _Lookup, cursor: str | None) -> Flow[Answer | _Listing]:
    """One page's answer, asked again after a transient failure until the lookup's deadline or an outage; a
    ``_Listing`` with the failure when it cannot be had.

    Ours: a failed page is asked again in place, keeping the pages already read, rather than failing the whole
    reading. Each reading of a window holding many requests takes several pages; were one failed page to discard
    the reading, a list answering 20% of calls with transient faults would rarely be read whole (0.8^10 for ten
    pages) and the lookup would end UNKNOWN for a job it could have found (the fault soak, docs/benchmarks.md §5).
    """
    remaining = lookup.deadline - lookup.clock()
    if remaining <= 0:
        return _Listing(failure="the lookup's time ran out while reading the list")
    request = HttpGet(url, _query(query, lookup.policy, cursor), remaining)
    sent = yield from send(
        request, lookup.pacing, idempotent=True, deadline=lookup.deadline, until_deadline=True, give_up=lookup.down
    )
    outcome = sent.outcome
    if isinstance(outcome, Answer) and outcome.status_code not in _TRANSIENT:
        lookup.failures_in_a_row = 0
        return outcome
    if isinstance(outcome, NoAnswer) and outcome.certificate_rejected:
        return _Listing(failure=f"the request list could not be asked ({outcome.error})", final=True)
    wait = parse_retry_after(lower_headers(outcome.headers)) if isinstance(outcome, Answer) else None
    outage_after = lookup.policy.outage_after
    if not sent.out_of_time and outage_after is not None and lookup.failures_in_a_row >= outage_after:
        why = f"{_failure_text(outcome)}, {lookup.failures_in_a_row} times in a row: fal or the proxy looks down"
        return _Listing(failure=why, down=True, wait=wait)
    return _Listing(failure=_failure_text(outcome), wait=wait)


def _read_list(url: str, query: JobQuery, lookup: _Lookup) -> Flow[_Listing]:
    items: list[ListedRequest] = []
    cursor: str | None = None
    for _ in range(_MAX_PAGES):
        outcome = yield from _read_page(url, query, lookup, cursor)
        if isinstance(outcome, _Listing):
            return outcome
        code = outcome.status_code
        if code in (401, 403):
            return _Listing(failure=f"the key may not read the account's requests (HTTP {code})", final=True)
        page = parse_page(outcome.content) if code == 200 else None
        if page is None:
            return _Listing(failure=f"HTTP {code} is not fal's request list (is it served here?)", final=True)
        items.extend(page.items)
        if not page.has_more:
            return _Listing(tuple(items))
        cursor = page.next_cursor
    return _Listing(failure=f"more than {_MAX_PAGES} pages of requests in the window", final=True)


def _judge(found: Matches, *, settled: bool, absent_after: float | None) -> LookupResult | None:
    """The verdict of one full reading of the list, or None to read it again. ``settled``: the reading started
    ``absent_after`` seconds or more after the lookup did, so an empty window counts as absence."""
    candidates = found.matched + found.unverifiable
    if len(found.matched) == 1 and not found.unverifiable:
        return LookupResult(Verdict.FOUND, found.matched[0], candidates, "one listed request matches")
    if found.matched:
        why = f"{len(candidates)} listed requests may be it (same endpoint, input and time)"
        return LookupResult(Verdict.AMBIGUOUS, None, candidates, why)
    if settled and not found.unverifiable:
        return LookupResult(Verdict.ABSENT, reason=f"not listed after {absent_after:g} s of looking")
    if settled:
        why = "listed requests in the window have no input to compare (is payload storage off?)"
        return LookupResult(Verdict.UNKNOWN, None, found.unverifiable, why)
    return None


def lookup_flow(  # noqa: PLR0913 - what to look for, where, how and until when: each a keyword past the query
    url: str,
    query: JobQuery,
    policy: RecoveryPolicy,
    clock: Callable[[], float],
    *,
    random: Callable[[], float],
    deadline: float | None = None,
    outage_of: SubmitOutcome | None = None,
) -> Flow[LookupResult]:
    """Search the request list at ``url`` for ``query``'s job until a verdict, ``policy.timeout`` or ``deadline``.

    Yields ``HttpGet`` and ``Sleep``; returns the ``LookupResult``. Every reading goes through every page
    (``cursor``), so "several match" is seen. ``clock`` is monotonic seconds, ``deadline`` a time on it (the
    call's own timeout): the lookup ends at it with ``UNKNOWN``. The list failing ``policy.outage_after`` times in
    a row in the way ``outage_of`` says the submit did (any way, for None) ends it at once with ``UNKNOWN`` too,
    saying so.
    """
    start = clock()
    bound = start + policy.timeout
    lookup = _Lookup(policy, random, clock, bound if deadline is None else min(bound, deadline), outage_of)
    within = f"within {policy.timeout:g} s" if lookup.deadline == bound else "before the call's timeout"
    last_failure = "the job was not listed"
    last_candidates: tuple[str, ...] = ()
    while True:
        reading_started = clock()
        if reading_started >= lookup.deadline:
            if policy.absent_after is None:
                last_failure += "; absent_after=None never takes absence for proof"
            return LookupResult(Verdict.UNKNOWN, None, last_candidates, f"{last_failure} {within}")
        listing = yield from _read_list(url, query, lookup)
        wait = policy.interval
        if listing.failure is not None:
            if listing.final:
                return LookupResult(Verdict.UNAVAILABLE, reason=listing.failure)
            if listing.down:
                return LookupResult(Verdict.UNKNOWN, None, last_candidates, listing.failure)
            last_failure = listing.failure
            wait = max(wait, listing.wait or 0.0)
        else:
            found = match_requests(query, listing.items, clock_skew=policy.clock_skew)
            settled = policy.absent_after is not None and reading_started - start >= policy.absent_after
            judged = _judge(found, settled=settled, absent_after=policy.absent_after)
            if judged is not None:
                return judged
            last_candidates = found.unverifiable
            last_failure = "the job was not listed"
            if found.unverifiable:
                last_failure = f"{len(found.unverifiable)} listed requests have no input to compare"
        remaining = lookup.deadline - clock()
        if remaining > 0:
            yield from perform(Sleep(min(wait, remaining)))


# --- the whole recovery of one failed attempt ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Recovery:
    """What to do after a submit attempt failed.

    Attributes:
        action: ``ADOPT`` (carry on with ``request_id``), ``RESEND``, ``RAISE`` (the failure's own error: nothing was
            queued) or ``RAISE_UNKNOWN`` (raise ``error``).
        request_id: The job to carry on with (``ADOPT``).
        error: The error to raise (``RAISE_UNKNOWN``).
        why: The reason, in words (for logs, and for the ``RAISE`` message).
    """

    action: Action
    request_id: str | None = None
    error: SubmitOutcomeUnknownError | None = None
    why: str = ""


def recover_flow(  # noqa: PLR0913 - what happened, what was sent, and how to look: each a keyword
    attempt: SubmitAttempt,
    query: JobQuery,
    *,
    list_url: str | None,
    policy: RecoveryPolicy,
    clock: Callable[[], float],
    random: Callable[[], float],
    may_resend: bool,
    deadline: float | None = None,
) -> Flow[Recovery]:
    """Decide what a failed submit attempt means (``decide``), looking the job up in the request list at
    ``list_url`` when the table says so (``lookup_flow``, ``conclude``); returns the ``Recovery``.

    Call it with the attempt the retry policy gave up on: a situation the table answers with "resend" (not sent,
    429) has had its retries, so it ends in ``RAISE``; only a lookup that proves absence can resend.

    Args:
        attempt: What the attempt left behind.
        query: The job it may have created (``query.request_id`` is ignored: the held id, if any, is used).
        list_url: The request list (``requests_list_url``), or None where there is none.
        policy: How to look.
        clock: Monotonic seconds.
        random: Jitter source in [0, 1) (the pauses between failed requests of the list).
        may_resend: Whether another attempt is allowed after a lookup proved absence (the caller's count).
        deadline: When the call's own timeout passes (on ``clock``): the lookup ends at it, the job unknown.
    """
    held = held_request_id(attempt)
    can_look_up = list_url is not None and policy.look_up
    row = decide(classify(attempt), holds_id=held is not None, can_look_up=can_look_up)
    if row.action is Action.ADOPT:
        return Recovery(Action.ADOPT, held, why=row.why)
    if row.action in (Action.RESEND, Action.RAISE):
        # RESEND rows are the retry policy's to run (``RetryPolicy``): when recovery is asked, it has given up.
        return Recovery(Action.RAISE, why=row.why)
    why = row.why
    candidates: tuple[str, ...] = ()
    if row.action is Action.LOOK_UP:
        assert list_url is not None
        asked = JobQuery(query.endpoint_id, query.input, query.sent_at, held)
        started = LookupStarted(
            query.endpoint_id, row.outcome.value, held, policy.timeout, policy.absent_after, list_url, query.sent_at
        )
        logger.info("submit to %s: %s", query.endpoint_id, started)
        if policy.on_lookup is not None:
            policy.on_lookup(started)
        try:
            result = yield from lookup_flow(
                list_url, asked, policy, clock, random=random, deadline=deadline, outage_of=row.outcome
            )
        except INTERRUPTS as stop:  # Ctrl-C, or the task cancelled: the job may exist all the same
            stop.add_note(f"fal_kontext: {started.interrupted()}")
            raise
        action = conclude(result, may_resend=may_resend)
        if action is Action.ADOPT:
            return Recovery(Action.ADOPT, result.request_id, why=f"{row.why}; {result.reason}")
        if action in (Action.RESEND, Action.RAISE):
            return Recovery(action, why=f"{row.why}; {result.reason}")
        why, candidates = f"{row.why}; the request list: {result.reason}", result.candidates
    elif list_url is None:
        why = f"{row.why}; no request list to look it up in"
    else:
        why = f"{row.why}; looking it up is turned off (RecoveryPolicy(look_up=False))"
    error = SubmitOutcomeUnknownError(
        query.endpoint_id, why, sent_at=query.sent_at, request_id=held, candidates=candidates, list_url=list_url
    )
    return Recovery(Action.RAISE_UNKNOWN, held, error, why)
