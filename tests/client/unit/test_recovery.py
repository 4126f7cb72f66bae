"""Recovery of a submit whose answer was lost: the decision table entry by entry, the id in a cut-off answer, where
the request list is (and who gets the key), matching, the lookup flow driven with scripted answers, and both clients
against a fake fal on ``httpx.MockTransport`` (against the emulator: integration/test_recovery.py)."""

from __future__ import annotations

import base64
import contextlib
import json
import logging
import math
import time
import traceback
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from fal_kontext import InvalidInputError
from fal_kontext.errors import APIConnectionError
from fal_kontext.protocol.commands import Answer, Flow, HttpGet, NoAnswer, Sleep
from fal_kontext.protocol.hosts import FAL_API_URL, may_send_key
from fal_kontext.protocol.recovery import (
    DECISIONS,
    REQUESTS_PATH,
    Action,
    JobQuery,
    ListedRequest,
    LookupResult,
    LookupStarted,
    Recovery,
    RecoveryPolicy,
    SubmitAttempt,
    SubmitOutcome,
    SubmitOutcomeUnknownError,
    Verdict,
    classify,
    conclude,
    decide,
    held_request_id,
    lookup_flow,
    match_requests,
    parse_page,
    recover_flow,
    requests_list_url,
)
from fal_kontext.results import EditResult
from tests.client.client_fakes import OUTPUT, FakeClock, MakeClient

Outcome = SubmitOutcome
ENDPOINT = "fal-ai/flux-pro/kontext"
SENT = datetime(2026, 12, 2, 1, 0, 0, tzinfo=UTC).timestamp()
INPUT: dict[str, Any] = {"prompt": "a donut", "image_url": "https://example.test/k.png", "num_images": 1}
LIST_URL = FAL_API_URL + REQUESTS_PATH


# --- the decision table, entry by entry -------------------------------------------------------------------------

# (what happened, id held, lookup possible) -> action: every combination, written out.
EXPECTED: dict[tuple[SubmitOutcome, bool, bool], Action] = {
    (Outcome.NOT_SENT, False, False): Action.RESEND,
    (Outcome.NOT_SENT, False, True): Action.RESEND,
    (Outcome.NOT_SENT, True, False): Action.RESEND,
    (Outcome.NOT_SENT, True, True): Action.RESEND,
    (Outcome.REFUSED, False, False): Action.RESEND,
    (Outcome.REFUSED, False, True): Action.RESEND,
    (Outcome.REFUSED, True, False): Action.RESEND,
    (Outcome.REFUSED, True, True): Action.RESEND,
    (Outcome.REJECTED, False, False): Action.RAISE,
    (Outcome.REJECTED, False, True): Action.RAISE,
    (Outcome.REJECTED, True, False): Action.RAISE,
    (Outcome.REJECTED, True, True): Action.RAISE,
    (Outcome.ANSWER_CUT, True, False): Action.ADOPT,
    (Outcome.ANSWER_CUT, True, True): Action.ADOPT,
    (Outcome.ANSWER_CUT, False, True): Action.LOOK_UP,
    (Outcome.ANSWER_CUT, False, False): Action.RAISE_UNKNOWN,
    (Outcome.DROPPED, False, True): Action.LOOK_UP,
    (Outcome.DROPPED, True, True): Action.LOOK_UP,
    (Outcome.DROPPED, False, False): Action.RAISE_UNKNOWN,
    (Outcome.DROPPED, True, False): Action.RAISE_UNKNOWN,
    (Outcome.READ_TIMEOUT, False, True): Action.LOOK_UP,
    (Outcome.READ_TIMEOUT, True, True): Action.LOOK_UP,
    (Outcome.READ_TIMEOUT, False, False): Action.RAISE_UNKNOWN,
    (Outcome.READ_TIMEOUT, True, False): Action.RAISE_UNKNOWN,
    # a 5xx's x-fal-request-id is a hint, not an answer: it is looked up by id, or carried by the error
    (Outcome.SERVER_ERROR, True, True): Action.LOOK_UP,
    (Outcome.SERVER_ERROR, False, True): Action.LOOK_UP,
    (Outcome.SERVER_ERROR, True, False): Action.RAISE_UNKNOWN,
    (Outcome.SERVER_ERROR, False, False): Action.RAISE_UNKNOWN,
}


def test_the_expected_table_covers_every_situation() -> None:
    assert set(EXPECTED) == {(o, h, c) for o in SubmitOutcome for h in (False, True) for c in (False, True)}


@pytest.mark.parametrize(("situation", "action"), EXPECTED.items(), ids=str)
def test_decision(situation: tuple[SubmitOutcome, bool, bool], action: Action) -> None:
    outcome, holds_id, can_look_up = situation
    row = decide(outcome, holds_id=holds_id, can_look_up=can_look_up)
    assert row.action is action
    assert row.why


def test_no_row_is_dead() -> None:
    used = {decide(o, holds_id=h, can_look_up=c) for (o, h, c) in EXPECTED}
    assert used == set(DECISIONS)


@pytest.mark.parametrize(
    ("verdict", "may_resend", "action"),
    [
        (Verdict.FOUND, True, Action.ADOPT),
        (Verdict.FOUND, False, Action.ADOPT),
        (Verdict.ABSENT, True, Action.RESEND),
        (Verdict.ABSENT, False, Action.RAISE),  # nothing was queued: the failure's own error, not "may exist"
        (Verdict.AMBIGUOUS, True, Action.RAISE_UNKNOWN),
        (Verdict.UNKNOWN, True, Action.RAISE_UNKNOWN),
        (Verdict.UNAVAILABLE, True, Action.RAISE_UNKNOWN),
    ],
)
def test_conclusion_of_a_lookup(verdict: Verdict, may_resend: bool, action: Action) -> None:
    assert conclude(LookupResult(verdict, "rid" if verdict is Verdict.FOUND else None), may_resend=may_resend) is action


# --- what an attempt left behind ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("attempt", "outcome"),
    [
        (SubmitAttempt(reached_server=False), Outcome.NOT_SENT),
        (SubmitAttempt(reached_server=False, timed_out=True), Outcome.NOT_SENT),  # a connect timeout
        (SubmitAttempt(), Outcome.DROPPED),
        (SubmitAttempt(timed_out=True), Outcome.READ_TIMEOUT),
        (SubmitAttempt(200, {"x-fal-request-id": "r"}, b'{"request_id": "r', complete=False), Outcome.ANSWER_CUT),
        (SubmitAttempt(200, {}, b"<html>", complete=True), Outcome.ANSWER_CUT),  # a 2xx without an id
        (SubmitAttempt(429, {}, b'{"detail": "slow down"}', complete=True), Outcome.REFUSED),
        (SubmitAttempt(422, {}, b'{"detail": []}', complete=True), Outcome.REJECTED),
        (SubmitAttempt(401, {}, b"", complete=True), Outcome.REJECTED),
        (SubmitAttempt(502, {}, b"<html><center>nginx</center></html>", complete=True), Outcome.SERVER_ERROR),
        (SubmitAttempt(503, {}, b'{"detail": "x", "error_type": "runner_scheduling_failure"}'), Outcome.SERVER_ERROR),
        (SubmitAttempt(307, {"location": "https://x.test"}, b"", complete=True), Outcome.SERVER_ERROR),
    ],
)
def test_classify(attempt: SubmitAttempt, outcome: SubmitOutcome) -> None:
    assert classify(attempt) is outcome


@pytest.mark.parametrize(
    ("attempt", "rid"),
    [
        (SubmitAttempt(200, {"X-Fal-Request-Id": "hdr-1"}, b""), "hdr-1"),
        (SubmitAttempt(200, {"x-fal-request-id": "hdr-1"}, b'{"request_id": "body-1", "sta'), "hdr-1"),
        (
            SubmitAttempt(200, {}, b'{"status": "IN_QUEUE", "request_id":"body-1", "response_url": "https://qu'),
            "body-1",
        ),
        (SubmitAttempt(200, {}, b'{"request_id": "body-'), None),  # cut inside the id: not trusted
        (SubmitAttempt(200, {"x-fal-request-id": " "}, b'{"request_id" : "body-2"}'), "body-2"),
        (SubmitAttempt(200, {"x-fal-request-id": "a b"}, b""), None),
        (SubmitAttempt(502, {}, b"<html>502 Bad Gateway</html>"), None),
        (SubmitAttempt(), None),
    ],
)
def test_held_request_id(attempt: SubmitAttempt, rid: str | None) -> None:
    assert held_request_id(attempt) == rid


# --- where the list is, and who may get the key -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("base", "scheme", "url"),
    [
        ("https://queue.fal.run", "key", LIST_URL),
        ("https://queue.falrun.com", "key", LIST_URL),
        ("http://127.0.0.1:8000", "key", "http://127.0.0.1:8000" + REQUESTS_PATH),
        ("http://localhost:8000/prefix", "key", "http://localhost:8000/prefix" + REQUESTS_PATH),
        ("https://[::1]:8443", "key", "https://[::1]:8443" + REQUESTS_PATH),
        ("https://proxy.example/fal", "key", None),  # an aggregator: no known list
        ("https://queue.fal.run", "bearer", None),  # fal's list takes a Key
        ("http://127.0.0.1:8000", "bearer", None),
    ],
)
def test_requests_list_url(base: str, scheme: str, url: str | None) -> None:
    found, reason = requests_list_url(base, scheme)
    assert found == url
    assert reason


def test_an_override_is_allowed_on_the_base_origin_only() -> None:
    url, _ = requests_list_url("https://proxy.example/fal", "key", "https://proxy.example/platform/")
    assert url == "https://proxy.example/platform" + REQUESTS_PATH
    assert requests_list_url("https://queue.fal.run", "key", FAL_API_URL)[0] == LIST_URL
    with pytest.raises(ValueError, match=r"requests_base_url.*never sent to another host"):
        requests_list_url("https://proxy.example/fal", "key", FAL_API_URL)  # an aggregator's key is not fal's
    with pytest.raises(ValueError, match="requests_base_url"):
        requests_list_url("https://queue.fal.run", "key", "https://evil.example")


@pytest.mark.parametrize(
    ("url", "base", "allowed"),
    [
        (LIST_URL, "https://queue.fal.run", True),
        ("https://api.fal.ai:443/v1/x", "https://queue.fal.run", True),
        ("http://api.fal.ai/v1/x", "https://queue.fal.run", False),  # not over plain http
        (LIST_URL, "https://proxy.example", False),
        ("http://127.0.0.1:8000/v1/x", "http://127.0.0.1:8000", True),
        ("http://127.0.0.1:8001/v1/x", "http://127.0.0.1:8000", False),
        ("https://api.fal.ai.evil.example/v1", "https://queue.fal.run", False),
    ],
)
def test_may_send_key(url: str, base: str, allowed: bool) -> None:
    assert may_send_key(url, base) is allowed


# --- pages and matching ------------------------------------------------------------------------------------------


def item(rid: str, *, sent: float = SENT + 1, inp: object = INPUT, endpoint: str = ENDPOINT) -> dict[str, Any]:
    """An item as fal's documentation shows it (https://fal.ai/docs/platform-apis/v1/models/requests/by-endpoint)."""
    body: dict[str, Any] = {
        "request_id": rid,
        "endpoint_id": endpoint,
        "sent_at": datetime.fromtimestamp(sent, UTC).isoformat().replace("+00:00", "Z"),
        "started_at": None,
        "ended_at": None,
        "status_code": None,
        "duration": None,
        "json_output": None,
    }
    if inp is not None:
        body["json_input"] = inp
    return body


def page(*items: dict[str, Any], cursor: str | None = None) -> bytes:
    return json.dumps({"items": list(items), "next_cursor": cursor, "has_more": cursor is not None}).encode()


def test_parse_page_reads_the_documented_shape() -> None:
    parsed = parse_page(page(item("a"), {"no": "id"}, item("b", inp=json.dumps(INPUT)), cursor="Mg=="))
    assert parsed is not None
    assert [i.request_id for i in parsed.items] == ["a", "b"]
    assert parsed.items[0].sent_at == datetime.fromtimestamp(SENT + 1, UTC)
    assert parsed.items[1].json_input == INPUT  # listed as JSON text
    assert (parsed.next_cursor, parsed.has_more) == ("Mg==", True)


@pytest.mark.parametrize(
    "content", [b"<html>", b"[]", b'{"requests": []}', b'{"items": {}}', "{\udcff}".encode(errors="surrogatepass")]
)
def test_parse_page_refuses_other_shapes(content: bytes) -> None:
    assert parse_page(content) is None


def test_has_more_without_a_cursor_ends_the_pages() -> None:
    parsed = parse_page(b'{"items": [], "has_more": true, "next_cursor": null}')
    assert parsed is not None and parsed.has_more is False


def listed(*items: dict[str, Any]) -> tuple[ListedRequest, ...]:
    parsed = parse_page(page(*items))
    assert parsed is not None
    return parsed.items


QUERY = JobQuery(ENDPOINT, INPUT, SENT)


@pytest.mark.parametrize(
    ("items", "matched", "unverifiable"),
    [
        ([item("a")], ("a",), ()),
        ([item("a", inp={**INPUT, "guidance_scale": 3.5, "seed": None})], ("a",), ()),  # fal added defaults
        ([item("a", inp={**INPUT, "num_images": 1.0})], ("a",), ()),  # 1 == 1.0 in JSON
        ([item("a", inp={**INPUT, "num_images": "1"})], (), ()),
        ([item("a", inp={**INPUT, "num_images": True})], (), ()),
        ([item("a", inp={**INPUT, "prompt": "a bagel"})], (), ()),
        ([item("a", inp={"prompt": "a donut"})], (), ()),  # a field we sent is missing
        ([item("a", sent=SENT - 61)], (), ()),  # before the window (60 s of skew)
        ([item("a", sent=SENT - 59)], ("a",), ()),
        ([item("a", endpoint="fal-ai/flux-pro/kontext/max")], (), ()),
        ([item("a", inp=None)], (), ("a",)),  # no payload listed: cannot tell
        ([item("a", inp="not json")], (), ("a",)),
        ([item("a"), item("a")], ("a",), ()),  # the same item on two pages counts once
        ([item("a"), item("b"), item("c", inp=None)], ("a", "b"), ("c",)),
    ],
)
def test_match_requests(items: list[dict[str, Any]], matched: tuple[str, ...], unverifiable: tuple[str, ...]) -> None:
    found = match_requests(QUERY, listed(*items), clock_skew=60)
    assert (found.matched, found.unverifiable) == (matched, unverifiable)


def test_lists_in_the_input_compare_whole() -> None:
    query = JobQuery("fal-ai/flux-pro/kontext/multi", {"prompt": "a prompt", "image_urls": ["u1", "u2"]}, SENT)
    same = item("a", endpoint=query.endpoint_id, inp={"prompt": "a prompt", "image_urls": ["u1", "u2"]})
    fewer = item("b", endpoint=query.endpoint_id, inp={"prompt": "a prompt", "image_urls": ["u1"]})
    found = match_requests(query, listed(same, fewer), clock_skew=60)
    assert found.matched == ("a",)


def test_a_queried_id_narrows_the_match() -> None:
    found = match_requests(JobQuery(ENDPOINT, INPUT, SENT, "b"), listed(item("a"), item("b")), clock_skew=60)
    assert found.matched == ("b",)


# --- the lookup flow ---------------------------------------------------------------------------------------------

Server = Callable[[HttpGet, float], Answer | NoAnswer]


class Driven:
    """A lookup (or a whole recovery) run to its end against a scripted server and a fake clock."""

    def __init__(
        self,
        server: Server,
        policy: RecoveryPolicy,
        query: JobQuery = QUERY,
        lookup: Mapping[str, Any] | None = None,
        **recover: Any,
    ) -> None:
        """``lookup``: more keywords of ``lookup_flow``; ``recover``: run ``recover_flow`` with these keywords."""
        self.clock = FakeClock()
        self.gets: list[HttpGet] = []
        if recover:
            flow: Flow[Any] = recover_flow(query=query, policy=policy, clock=self.clock, random=lambda: 0.5, **recover)
        else:
            flow = lookup_flow(LIST_URL, query, policy, self.clock, random=lambda: 0.5, **(lookup or {}))
        outcome: Answer | NoAnswer | None = None
        try:
            command = next(flow)
            while True:
                if isinstance(command, Sleep):
                    self.clock.sleep(command.seconds)
                    outcome = None
                else:
                    assert isinstance(command, HttpGet), command
                    self.gets.append(command)
                    outcome = server(command, self.clock.now)
                command = flow.send(outcome)
        except StopIteration as stop:
            self.result: Any = stop.value

    def params(self, n: int) -> dict[str, str]:
        return dict(self.gets[n].params)


def ok(content: bytes) -> Answer:
    return Answer(200, {"content-type": "application/json"}, content)


POLICY = RecoveryPolicy(absent_after=10.0, timeout=30.0, interval=2.0)
START = 1000.0  # FakeClock's start


def test_found_on_the_first_reading() -> None:
    run = Driven(lambda get, now: ok(page(item("other", inp={**INPUT, "prompt": "x"}), item("ours"))), POLICY)
    assert (run.result.verdict, run.result.request_id) == (Verdict.FOUND, "ours")
    assert len(run.gets) == 1
    assert run.gets[0].url == LIST_URL
    assert run.params(0) == {
        "endpoint_id": ENDPOINT,
        "start": "2026-12-02T00:59:00Z",
        "expand": "payloads",
        "limit": "50",
    }
    assert 0 < run.gets[0].timeout <= POLICY.timeout


def test_every_page_is_read_so_a_second_match_is_seen() -> None:
    def server(get: HttpGet, now: float) -> Answer:
        if dict(get.params).get("cursor") == "Mg==":
            return ok(page(item("ours")))
        return ok(page(item("other", inp={**INPUT, "prompt": "x"}), cursor="Mg=="))

    run = Driven(server, POLICY)
    assert (run.result.verdict, run.result.request_id) == (Verdict.FOUND, "ours")
    assert [run.params(n).get("cursor") for n in range(2)] == [None, "Mg=="]

    def twice(get: HttpGet, now: float) -> Answer:
        return ok(page(item("second"))) if dict(get.params).get("cursor") else ok(page(item("first"), cursor="Mg=="))

    run = Driven(twice, POLICY)
    assert (run.result.verdict, run.result.candidates) == (Verdict.AMBIGUOUS, ("first", "second"))
    assert run.result.request_id is None


def test_a_job_listed_late_is_found() -> None:
    run = Driven(lambda get, now: ok(page(item("ours"))) if now >= START + 5 else ok(page()), POLICY)
    assert (run.result.verdict, run.result.request_id) == (Verdict.FOUND, "ours")
    assert run.clock.sleeps == [2.0, 2.0, 2.0]


def test_absence_is_concluded_only_after_absent_after_seconds_of_looking() -> None:
    run = Driven(lambda get, now: ok(page()), POLICY)
    assert run.result.verdict is Verdict.ABSENT
    assert "10 s" in run.result.reason
    # readings at 0, 2, 4, 6, 8 s say nothing yet; the one started at 10 s concludes
    assert len(run.gets) == 6
    assert run.clock.now == START + 10


def test_without_absent_after_absence_is_never_concluded() -> None:
    run = Driven(lambda get, now: ok(page()), RecoveryPolicy(absent_after=None, timeout=9.0, interval=2.0))
    assert run.result.verdict is Verdict.UNKNOWN
    assert "absent_after=None" in run.result.reason
    assert run.clock.now == START + 9  # stopped at the timeout, not later


def test_inputs_not_listed_end_in_unknown_with_the_candidates() -> None:
    run = Driven(lambda get, now: ok(page(item("maybe", inp=None))), POLICY)
    assert (run.result.verdict, run.result.candidates) == (Verdict.UNKNOWN, ("maybe",))
    assert "payload storage" in run.result.reason
    run = Driven(lambda get, now: ok(page(item("ours"), item("maybe", inp=None))), POLICY)
    assert (run.result.verdict, run.result.candidates) == (Verdict.AMBIGUOUS, ("ours", "maybe"))


@pytest.mark.parametrize(
    ("answer", "reason"),
    [
        (Answer(401, {}, b'{"detail": "invalid key"}'), "may not read the account's requests (HTTP 401)"),
        (Answer(403, {}, b'{"detail": "forbidden"}'), "may not read the account's requests (HTTP 403)"),
        (Answer(404, {}, b'{"detail": "Not Found"}'), "HTTP 404 is not fal's request list"),
        (Answer(200, {}, b"<html>hello</html>"), "HTTP 200 is not fal's request list"),
    ],
)
def test_a_refused_or_missing_list_is_unavailable_at_once(answer: Answer, reason: str) -> None:
    run = Driven(lambda get, now: answer, POLICY)
    assert run.result.verdict is Verdict.UNAVAILABLE
    assert reason in run.result.reason
    assert len(run.gets) == 1


def test_transient_failures_are_read_again_honouring_retry_after() -> None:
    answers: list[Answer | NoAnswer] = [
        Answer(503, {}, b"{}"),
        Answer(429, {"Retry-After": "5"}, b"{}"),
        NoAnswer("ReadError: reset", True),
    ]

    def server(get: HttpGet, now: float) -> Answer | NoAnswer:
        return answers.pop(0) if answers else ok(page(item("ours")))

    run = Driven(server, POLICY)
    assert (run.result.verdict, run.result.request_id) == (Verdict.FOUND, "ours")
    assert run.clock.sleeps == [2.0, 5.0, 2.0]


def test_a_failed_page_is_asked_again_in_place_keeping_the_pages_read() -> None:
    # Every other call fails, as a list under faults may: a reading of three pages never gets through whole, so
    # discarding the reading at a failed page would never find the job listed on its last page.
    calls = {"n": 0}

    def server(get: HttpGet, now: float) -> Answer | NoAnswer:
        calls["n"] += 1
        if calls["n"] % 2 == 0:
            return Answer(503, {}, b"{}") if calls["n"] % 4 else NoAnswer("ReadError: reset", True)
        cursor = dict(get.params).get("cursor")
        if cursor is None:
            return ok(page(item("a", inp={**INPUT, "prompt": "a"}), cursor="MQ=="))
        if cursor == "MQ==":
            return ok(page(item("b", inp={**INPUT, "prompt": "b"}), cursor="Mg=="))
        return ok(page(item("ours")))

    run = Driven(server, POLICY)
    assert (run.result.verdict, run.result.request_id) == (Verdict.FOUND, "ours")
    assert [run.params(n).get("cursor") for n in range(5)] == [None, "MQ==", "MQ==", "Mg==", "Mg=="]
    assert run.clock.sleeps == [2.0, 2.0]


def test_a_list_that_never_answers_gives_up_at_the_timeout() -> None:
    policy = replace(POLICY, outage_after=None)
    run = Driven(lambda get, now: NoAnswer("ConnectError: refused", False), policy)
    assert run.result.verdict is Verdict.UNKNOWN
    assert "did not answer (ConnectError: refused) within 30 s" in run.result.reason
    assert run.clock.now == START + POLICY.timeout
    assert all(get.timeout <= POLICY.timeout for get in run.gets)


@pytest.mark.parametrize(
    "failure",
    [NoAnswer("ConnectError: refused", False), NoAnswer("ReadError: reset", True), Answer(502, {}, b"<html>")],
)
def test_a_list_failing_outage_after_times_in_a_row_is_an_outage(failure: Answer | NoAnswer) -> None:
    run = Driven(lambda get, now: failure, POLICY)
    assert run.result.verdict is Verdict.UNKNOWN
    assert f"{POLICY.outage_after} times in a row: fal or the proxy looks down" in run.result.reason
    assert len(run.gets) == POLICY.outage_after
    assert run.clock.now == START + (len(run.gets) - 1) * POLICY.interval  # well before the timeout


def test_only_failures_of_the_submit_s_kind_make_an_outage() -> None:
    def mixed(get: HttpGet, now: float) -> Answer | NoAnswer:
        return Answer(503, {}, b"{}") if int(now) % 4 < 2 else NoAnswer("ReadError: reset", True)

    outage_of = {"outage_of": SubmitOutcome.SERVER_ERROR}
    run = Driven(mixed, POLICY, lookup=outage_of)  # 503s, then drops, in turn: never 8 alike in a row
    assert "looks down" not in run.result.reason
    run = Driven(lambda get, now: Answer(503, {}, b"{}"), POLICY, lookup=outage_of)
    assert "looks down" in run.result.reason and len(run.gets) == POLICY.outage_after


def test_an_answer_between_failures_starts_the_count_again() -> None:
    calls = {"n": 0}

    def server(get: HttpGet, now: float) -> Answer | NoAnswer:
        calls["n"] += 1
        return ok(page()) if calls["n"] % 4 == 0 else Answer(503, {}, b"{}")  # three failures, then an answer

    run = Driven(server, POLICY)
    assert run.result.verdict is Verdict.ABSENT  # never outage_after in a row: looked until absence was proven


def test_a_call_deadline_ends_the_lookup_first() -> None:
    run = Driven(lambda get, now: ok(page()), POLICY, lookup={"deadline": START + 3.0})
    assert run.result.verdict is Verdict.UNKNOWN and "before the call's timeout" in run.result.reason
    assert run.clock.now <= START + 3.0 and len(run.gets) == 2


def test_a_held_id_is_asked_for() -> None:
    run = Driven(lambda get, now: ok(page(item("hint"))), POLICY, JobQuery(ENDPOINT, INPUT, SENT, "hint"))
    assert run.params(0)["request_id"] == "hint"
    assert (run.result.verdict, run.result.request_id) == (Verdict.FOUND, "hint")


# --- the whole recovery of one failed attempt -------------------------------------------------------------------


def nothing_listed(get: HttpGet, now: float) -> Answer:
    return ok(page())


def recovered(attempt: SubmitAttempt, server: Server = nothing_listed, **options: Any) -> tuple[Recovery, Driven]:
    options.setdefault("list_url", LIST_URL)
    options.setdefault("may_resend", True)
    run = Driven(server, options.pop("policy", POLICY), attempt=attempt, **options)
    assert isinstance(run.result, Recovery)
    return run.result, run


CUT = SubmitAttempt(200, {"x-fal-request-id": "rid-cut"}, b'{"status": "IN_QU')
DROPPED = SubmitAttempt()
GATEWAY = SubmitAttempt(502, {"content-type": "text/html"}, b"<html>502 Bad Gateway</html>", complete=True)


def test_a_cut_answer_with_an_id_is_adopted_without_looking() -> None:
    recovery, run = recovered(CUT)
    assert (recovery.action, recovery.request_id) == (Action.ADOPT, "rid-cut")
    assert run.gets == []


def test_a_dropped_submit_whose_job_is_listed_is_adopted() -> None:
    recovery, run = recovered(DROPPED, lambda get, now: ok(page(item("listed"))))
    assert (recovery.action, recovery.request_id, recovery.error) == (Action.ADOPT, "listed", None)
    assert "request_id" not in run.params(0)


def test_a_gateway_page_whose_job_is_not_listed_is_sent_again_after_absent_after() -> None:
    recovery, run = recovered(GATEWAY)
    assert recovery.action is Action.RESEND
    assert run.clock.now == START + 10.0  # POLICY.absent_after
    recovery, _ = recovered(GATEWAY, may_resend=False)
    assert recovery.action is Action.RAISE and "not listed" in recovery.why


def test_a_5xx_id_is_a_hint_looked_up_by_id() -> None:
    attempt = SubmitAttempt(503, {"x-fal-request-id": "hint"}, b'{"detail": "busy"}', complete=True)
    recovery, run = recovered(attempt, lambda get, now: ok(page(item("hint"))))
    assert (recovery.action, recovery.request_id) == (Action.ADOPT, "hint")
    assert run.params(0)["request_id"] == "hint"


def test_without_a_list_the_error_carries_the_id_and_nothing_is_asked() -> None:
    attempt = SubmitAttempt(503, {"x-fal-request-id": "hint"}, b"{}", complete=True)
    recovery, run = recovered(attempt, list_url=None)
    assert recovery.action is Action.RAISE_UNKNOWN and run.gets == []
    assert recovery.error is not None and recovery.error.request_id == "hint"
    assert "no request list" in str(recovery.error) and "Kontext.handle('hint')" in str(recovery.error)
    recovery, run = recovered(DROPPED, policy=RecoveryPolicy(look_up=False))
    assert recovery.error is not None and recovery.error.request_id is None and run.gets == []
    assert "look_up=False" in str(recovery.error) and f"GET {LIST_URL}" in str(recovery.error)


def test_several_matches_raise_listing_them() -> None:
    recovery, _ = recovered(DROPPED, lambda get, now: ok(page(item("a"), item("b"))))
    assert recovery.action is Action.RAISE_UNKNOWN and recovery.error is not None
    assert recovery.error.candidates == ("a", "b") and "one of a, b" in str(recovery.error)


def test_a_list_the_key_may_not_read_raises_the_unknown_error() -> None:
    recovery, _ = recovered(DROPPED, lambda get, now: Answer(403, {}, b'{"detail": "forbidden"}'))
    assert recovery.action is Action.RAISE_UNKNOWN and recovery.error is not None
    assert "may not read the account's requests" in str(recovery.error)


@pytest.mark.parametrize(
    ("attempt", "may_resend", "action"),
    [
        # the retry policy resends these; recovery sees them only once it gave up
        (SubmitAttempt(reached_server=False), True, Action.RAISE),
        (SubmitAttempt(429, {}, b"{}", complete=True), True, Action.RAISE),
        (SubmitAttempt(422, {}, b'{"detail": []}', complete=True), True, Action.RAISE),
    ],
)
def test_clear_outcomes_are_not_looked_up(attempt: SubmitAttempt, may_resend: bool, action: Action) -> None:
    recovery, run = recovered(attempt, may_resend=may_resend)
    assert recovery.action is action and run.gets == []


# --- the policy and the error ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"timeout": float("nan")}, "timeout"),
        ({"interval": -1}, "interval"),
        ({"clock_skew": float("inf")}, "clock_skew"),
        ({"absent_after": 100.0, "timeout": 90.0}, "absent_after"),
        ({"absent_after": float("nan")}, "absent_after"),
        ({"page_size": 0}, "page_size"),
        ({"page_size": 101}, "page_size"),
    ],
)
def test_policy_refuses_bad_values(kwargs: dict[str, Any], field: str) -> None:
    with pytest.raises(ValueError, match=f"RecoveryPolicy.{field}"):
        RecoveryPolicy(**kwargs)


def test_the_error_says_the_job_may_exist_and_how_to_check() -> None:
    err = SubmitOutcomeUnknownError(ENDPOINT, "the answer was cut off", sent_at=SENT, request_id="rid-7")
    assert isinstance(err, APIConnectionError)
    assert (err.request_id, err.reached_server, err.endpoint_id) == ("rid-7", True, ENDPOINT)
    text = str(err)
    assert "may have queued a job" in text and "not sent again" in text
    assert "Kontext.handle('rid-7').status()" in text and "fal-kontext status rid-7" in text

    err = SubmitOutcomeUnknownError(ENDPOINT, "2 match", sent_at=SENT, candidates=("a", "b"))
    assert err.request_id is None and err.candidates == ("a", "b") and "one of a, b" in str(err)

    err = SubmitOutcomeUnknownError(ENDPOINT, "dropped", sent_at=SENT, list_url=LIST_URL)
    assert f"GET {LIST_URL}?endpoint_id={ENDPOINT}&start=2026-12-02T00:59:00Z" in str(err)

    err = SubmitOutcomeUnknownError(ENDPOINT, "dropped", sent_at=SENT)
    assert "provider's dashboard" in str(err)


# --- both clients, end to end, against a fake fal that loses answers and lists its requests ----------------------

KEY = "test-key"
LOOPBACK = "http://127.0.0.1:9"  # MockTransport: nothing listens; loopback, so the list is asked on the base
FAST = RecoveryPolicy(absent_after=4.0, timeout=10.0, interval=1.0)
JOB_INPUT: dict[str, Any] = {"prompt": "a donut", "image_url": "https://example.test/kitchen.png"}


class CutStream(httpx.SyncByteStream, httpx.AsyncByteStream):
    """A body that stops after its first bytes, as a connection cut mid-answer."""

    def __init__(self, first: bytes) -> None:
        self.first = first

    def __iter__(self) -> Iterator[bytes]:
        yield self.first
        raise httpx.ReadError("peer closed the connection mid-body")

    async def __aiter__(self) -> AsyncIterator[bytes]:
        yield self.first
        raise httpx.ReadError("peer closed the connection mid-body")


@dataclass
class FakeFal:
    """fal's queue and request list. Each submit takes the next fault: ``ok``; forwarded, then the answer lost:
    ``drop`` (connection closed), ``cut`` (200 cut mid-body, with ``x-fal-request-id``), ``cut-body`` and
    ``cut-early`` (without the header, cut after or inside the body's id), ``html`` (an HTML 502), ``5xx-id`` (a
    503 naming the job); not forwarded: ``before`` (an HTML 502, no job)."""

    faults: list[str] = field(default_factory=list)
    list_status: int = 200
    list_fails_every: int = 0  # every n-th call to the list answers 503 (0: none)
    jobs: dict[str, dict[str, Any]] = field(default_factory=dict)
    requests: list[httpx.Request] = field(default_factory=list)

    def handler(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        path = request.url.path
        if path == REQUESTS_PATH:
            return self.request_list(request)
        if request.method == "POST":
            return self.submit(request)
        rid = path.split("/requests/")[1].split("/")[0]
        if rid not in self.jobs:
            return httpx.Response(404, json={"detail": "Request not found"})
        if path.endswith("/status"):
            return httpx.Response(200, json={"status": "COMPLETED", "request_id": rid})
        return httpx.Response(200, json=OUTPUT)

    def submit(self, request: httpx.Request) -> httpx.Response:
        fault = self.faults.pop(0) if self.faults else "ok"
        if fault == "before":
            return httpx.Response(502, html="<html><center>nginx</center></html>")
        rid = f"job-{len(self.jobs) + 1}"
        endpoint = request.url.path.lstrip("/")
        self.jobs[rid] = {"endpoint": endpoint, "input": json.loads(request.content), "sent": time.time()}
        answer = json.dumps({"request_id": rid, "status": "IN_QUEUE", "queue_position": 0}).encode()
        if fault == "drop":
            raise httpx.RemoteProtocolError("Server disconnected without sending a response.")
        if fault == "cut":
            return httpx.Response(200, headers={"x-fal-request-id": rid}, stream=CutStream(answer[:30]))
        if fault.startswith("cut-"):  # no header: the id is in what arrived ("cut-body"), or not ("cut-early")
            return httpx.Response(200, stream=CutStream(answer[: 30 if fault == "cut-body" else 18]))
        if fault == "html":
            return httpx.Response(502, html="<html>502 Bad Gateway</html>")
        if fault == "5xx-id":
            return httpx.Response(503, headers={"x-fal-request-id": rid}, json={"detail": "busy"})
        return httpx.Response(200, content=answer, headers={"x-fal-request-id": rid})

    def request_list(self, request: httpx.Request) -> httpx.Response:
        if request.headers.get("authorization") != f"Key {KEY}":
            return httpx.Response(401, json={"detail": "invalid key"})
        if self.list_status != 200:
            return httpx.Response(self.list_status, json={"detail": "no"})
        if self.list_fails_every and len(self.lookups()) % self.list_fails_every == 0:
            return httpx.Response(503, json={"detail": "busy"})
        query = request.url.params
        start = datetime.fromisoformat(query["start"]).timestamp()
        items = [
            item(rid, sent=job["sent"], inp=job["input"], endpoint=job["endpoint"])
            for rid, job in self.jobs.items()
            if job["endpoint"] == query["endpoint_id"] and job["sent"] >= start
        ]
        # Pages of `limit` items, the cursor an offset in base64 (as the emulator's).
        offset = int(base64.b64decode(query["cursor"])) if "cursor" in query else 0
        limit = int(query.get("limit", "50"))
        more = offset + limit < len(items)
        cursor = base64.b64encode(str(offset + limit).encode()).decode() if more else None
        return httpx.Response(200, content=page(*items[offset : offset + limit], cursor=cursor))

    def transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(self.handler)

    def lookups(self) -> list[httpx.Request]:
        return [r for r in self.requests if r.url.path == REQUESTS_PATH]

    def submits(self) -> int:
        return sum(r.method == "POST" for r in self.requests)


def run_job(make: MakeClient, fal: FakeFal, **options: Any) -> str:
    """One ``run`` through a client of the test's kind; returns the request id of the result."""
    options = {"base_url": LOOPBACK, "key": KEY, "stream_status": False, "recovery": FAST, **options}
    result: EditResult = make(fal, FakeClock(), **options).run(ENDPOINT, JOB_INPUT)
    return result.request_id


@pytest.mark.parametrize("fault", ["drop", "html", "5xx-id", "cut-early"])
def test_a_forwarded_then_lost_submit_is_adopted_not_sent_twice(make: MakeClient, fault: str) -> None:
    fal = FakeFal([fault])
    assert run_job(make, fal) == "job-1"
    assert (len(fal.jobs), fal.submits()) == (1, 1)
    assert fal.lookups() and {r.url.host for r in fal.lookups()} == {"127.0.0.1"}


@pytest.mark.parametrize("fault", ["cut", "cut-body"])
def test_a_cut_answer_is_adopted_from_its_header_or_body_without_a_lookup(make: MakeClient, fault: str) -> None:
    fal = FakeFal([fault])
    assert run_job(make, fal) == "job-1"
    assert (len(fal.jobs), fal.submits(), fal.lookups()) == (1, 1, [])


def test_a_submit_proven_not_queued_is_sent_again(make: MakeClient) -> None:
    fal = FakeFal(["before"])
    assert run_job(make, fal) == "job-1"
    assert (len(fal.jobs), fal.submits()) == (1, 2)


def test_a_job_on_the_last_page_of_a_list_failing_every_other_call_is_adopted(make: MakeClient) -> None:
    # Two other jobs come first in the list, one per page: no reading of three pages gets through whole.
    others = {f"other-{n}": {"endpoint": ENDPOINT, "input": {"prompt": f"{n}"}, "sent": time.time()} for n in (1, 2)}
    fal = FakeFal(["drop"], list_fails_every=2, jobs=others)
    policy = RecoveryPolicy(absent_after=4.0, timeout=10.0, interval=1.0, page_size=1)
    assert run_job(make, fal, recovery=policy) == "job-3"
    assert (len(fal.jobs), fal.submits()) == (3, 1)


def test_on_fal_the_list_is_asked_at_api_fal_ai_with_the_key(make: MakeClient) -> None:
    fal = FakeFal(["drop"])
    assert run_job(make, fal, base_url="https://queue.fal.run") == "job-1"
    assert {(r.url.scheme, r.url.host) for r in fal.lookups()} == {("https", "api.fal.ai")}
    assert {r.headers["authorization"] for r in fal.lookups()} == {f"Key {KEY}"}


@pytest.mark.parametrize(
    ("options", "words"),
    [
        ({"base_url": "https://proxy.example/fal"}, "no request list"),  # an aggregator
        ({"recovery": RecoveryPolicy(look_up=False)}, "look_up=False"),
    ],
)
def test_without_a_lookup_nothing_is_resent_and_the_error_says_so(
    make: MakeClient, options: dict[str, Any], words: str
) -> None:
    fal = FakeFal(["drop"])
    with pytest.raises(SubmitOutcomeUnknownError, match=words) as caught:
        run_job(make, fal, **options)
    assert (len(fal.jobs), fal.submits(), fal.lookups()) == (1, 1, [])
    assert caught.value.request_id is None and "not sent again" in str(caught.value)


def test_a_list_the_key_may_not_read_gives_the_error_with_the_id_received(make: MakeClient) -> None:
    fal = FakeFal(["5xx-id"], list_status=403)
    with pytest.raises(SubmitOutcomeUnknownError) as caught:
        run_job(make, fal)
    assert caught.value.request_id == "job-1"
    assert "may not read the account's requests" in str(caught.value)
    assert (len(fal.jobs), fal.submits()) == (1, 1)


class _Records(logging.Handler):
    """Every record of the ``fal_kontext`` logger at INFO and above, whatever earlier tests set on it."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


@contextlib.contextmanager
def _logged() -> Iterator[list[str]]:
    logger = logging.getLogger("fal_kontext")
    handler, level = _Records(), logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        yield handler.messages
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)


def test_a_lookup_is_announced_and_logged_as_it_starts(make: MakeClient) -> None:
    fal = FakeFal(["before"])  # a gateway's 502 page: looked up, not listed, sent again after absent_after
    started: list[LookupStarted] = []
    with _logged() as messages:
        assert run_job(make, fal, recovery=replace(FAST, on_lookup=started.append)) == "job-1"
    [event] = started
    assert (event.endpoint_id, event.what_happened, event.request_id, event.timeout) == (
        ENDPOINT,
        "server error",
        None,
        FAST.timeout,
    )
    assert str(event) == "answer lost (server error); looking for the job in the request list, up to 10 s"
    assert f"submit to {ENDPOINT}: {event}" in messages  # what -v shows


class _InterruptingClock(FakeClock):
    """A fake clock whose sleeps are Ctrl-C once ``armed`` (by the lookup's start)."""

    armed = False

    def sleep(self, seconds: float) -> None:
        if self.armed:
            raise KeyboardInterrupt
        super().sleep(seconds)


@pytest.mark.parametrize(("fault", "held"), [("5xx-id", "job-1"), ("before", None)])
def test_ctrl_c_during_a_lookup_says_the_job_may_exist(make: MakeClient, fault: str, held: str | None) -> None:
    clock = _InterruptingClock()
    fal = FakeFal([fault], list_status=503)  # the list is busy: the lookup waits, and is interrupted then
    policy = replace(FAST, on_lookup=lambda _: setattr(clock, "armed", True))
    kontext = make(fal, clock, base_url=LOOPBACK, key=KEY, stream_status=False, recovery=policy)
    with pytest.raises(KeyboardInterrupt) as raised:
        kontext.run(ENDPOINT, JOB_INPUT)
    notes = " ".join(getattr(raised.value, "__notes__", []))
    assert "may have queued a job" in notes and "interrupted while looking for it in the request list" in notes
    assert (f"fal-kontext status {held}" if held else f"GET {LOOPBACK}{REQUESTS_PATH}") in notes
    assert fal.submits() == 1  # not sent again


def test_a_requests_base_url_elsewhere_is_refused_when_the_client_is_built(make: MakeClient) -> None:
    with pytest.raises(InvalidInputError, match=r"recovery\.requests_base_url"):
        make(FakeFal(), FakeClock(), recovery=RecoveryPolicy(requests_base_url="https://evil.example"))


def test_a_cut_answer_echoing_the_key_leaves_no_key_in_the_error_or_its_frames(make: MakeClient) -> None:
    canary = "canary-secret-4711"

    def echo(request: httpx.Request) -> httpx.Response:
        if request.url.path == REQUESTS_PATH:
            return httpx.Response(
                200, content=page(item("job-1", sent=time.time(), inp=None))
            )  # no input listed: inconclusive
        return httpx.Response(
            200, headers={"x-echo": f"Key {canary}"}, stream=CutStream(f'{{"echo": "{canary}'.encode())
        )

    fake = FakeFal()
    fake.handler = echo  # type: ignore[method-assign]
    policy = RecoveryPolicy(absent_after=1.0, timeout=2.0, interval=1.0)
    with pytest.raises(SubmitOutcomeUnknownError) as caught:
        run_job(make, fake, key=canary, recovery=policy)
    rendered: list[str] = []
    chained: traceback.TracebackException | None = traceback.TracebackException.from_exception(
        caught.value, capture_locals=True
    )
    while chained is not None:  # the error, its causes, and the locals of every frame of the client
        rendered.append("".join(chained.format_exception_only()))
        for frame in chained.stack:
            if "/fal_kontext/" in frame.filename:
                rendered.extend(f"{name}={value}" for name, value in (frame.locals or {}).items())
        chained = chained.__cause__ or chained.__context__
    text = "\n".join(rendered)
    assert "job-1" in text and "sent_at" in text  # the error and the flows' locals were rendered
    assert canary not in text


def test_a_redirect_off_fal_s_api_host_does_not_carry_the_key(make: MakeClient) -> None:
    fal = FakeFal(["drop"])
    answer_fal = fal.handler

    def redirecting(request: httpx.Request) -> httpx.Response:
        if request.url.host == "api.fal.ai":
            fal.requests.append(request)
            return httpx.Response(302, headers={"location": "https://elsewhere.example/list"})
        if request.url.host == "elsewhere.example":
            fal.requests.append(request)
            return httpx.Response(404)
        return answer_fal(request)

    fal.handler = redirecting  # type: ignore[method-assign]
    with pytest.raises(SubmitOutcomeUnknownError, match="not fal's request list"):
        run_job(make, fal, base_url="https://queue.fal.run")
    hosts = {r.url.host: r.headers.get("authorization") for r in fal.requests if r.method == "GET"}
    assert hosts == {"api.fal.ai": f"Key {KEY}", "elsewhere.example": None}


# --- resubmit: a submit an earlier process may have sent -----------------------------------------------------------


def resubmit(make: MakeClient, fal: FakeFal, sent_at: object, **options: Any) -> str:
    """``resubmit`` of ``JOB_INPUT`` through a client of the test's kind; returns the handle's request id."""
    options = {"base_url": LOOPBACK, "key": KEY, "stream_status": False, "recovery": FAST, **options}
    request_id: str = make(fal, FakeClock(), **options).resubmit(ENDPOINT, JOB_INPUT, sent_at=sent_at).request_id
    return request_id


def test_resubmit_adopts_the_job_the_earlier_process_queued(make: MakeClient) -> None:
    fal = FakeFal(jobs={"job-1": {"endpoint": ENDPOINT, "input": JOB_INPUT, "sent": time.time()}})
    assert resubmit(make, fal, time.time() - 1) == "job-1"
    assert (fal.submits(), len(fal.jobs)) == (0, 1) and fal.lookups()


def test_resubmit_sends_a_job_the_list_shows_was_not_queued(make: MakeClient) -> None:
    sent_before = time.time() - 1
    # A job with the same input queued before the earlier send is another job: not adopted.
    fal = FakeFal(jobs={"old": {"endpoint": ENDPOINT, "input": JOB_INPUT, "sent": sent_before - 600}})
    assert resubmit(make, fal, sent_before) == "job-2"
    assert fal.submits() == 1


@pytest.mark.parametrize(
    ("options", "words"),
    [
        ({"base_url": "https://proxy.example/fal"}, "no request list"),  # an aggregator
        ({"recovery": RecoveryPolicy(look_up=False)}, "look_up=False"),
    ],
)
def test_resubmit_without_a_lookup_sends_nothing(make: MakeClient, options: dict[str, Any], words: str) -> None:
    fal = FakeFal()
    with pytest.raises(SubmitOutcomeUnknownError, match=words):
        resubmit(make, fal, time.time() - 1, **options)
    assert fal.requests == []


@pytest.mark.parametrize("sent_at", [math.nan, math.inf, "yesterday", True, None])
def test_resubmit_refuses_a_sent_at_that_is_not_a_time(make: MakeClient, sent_at: object) -> None:
    fal = FakeFal()
    with pytest.raises(InvalidInputError, match="sent_at"):
        resubmit(make, fal, sent_at)
    assert fal.requests == []
