"""Every bad input is refused before anything is sent, with a typed error naming the field, in both clients: the
scripted queue counts the requests that reached it, and it must be zero."""

from __future__ import annotations

import math
from typing import Any

import pytest

from fal_kontext import InvalidInputError, PollSchedule, RequestTimeouts, RetryPolicy
from tests.client.client_fakes import FakeClock, FakeQueue, MakeClient

EP = "fal-ai/flux-pro/kontext"
URL = "https://example.test/in.png"
INPUT = {"prompt": "a donut", "image_url": URL}

BAD_WAIT_TIMEOUTS = [-1, 0, math.nan, "10"]


@pytest.mark.parametrize("timeout", BAD_WAIT_TIMEOUTS)
def test_a_bad_wait_timeout_is_refused_before_the_paid_submit(
    fake: FakeQueue, clock: FakeClock, make: MakeClient, timeout: object
) -> None:
    kontext = make(fake, clock)
    with pytest.raises(InvalidInputError, match="timeout"):
        kontext.run(EP, INPUT, timeout=timeout)
    with pytest.raises(InvalidInputError, match="timeout"):
        kontext.edit("a donut", image=URL, timeout=timeout)
    with pytest.raises(InvalidInputError, match="timeout"):
        kontext.handle("req-1").wait(timeout=timeout)
    assert fake.requests == []


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("image_url", "data:image/png;base64,!!!"),
        ("image_url", "data:text/plain,hello"),
        ("image_url", "data:,"),
        ("image_url", "data:image/png,notbase64"),
        ("image_url", "https://example.test/in.png\n"),
        ("image_url", "https://exa mple.test/in.png"),
        ("image_url", "ftp://example.test/in.png"),
        ("image_url", "javascript:alert(1)"),
        ("prompt", "a lone surrogate \ud800 here"),
    ],
)
def test_bad_input_fields_are_refused(
    fake: FakeQueue, clock: FakeClock, make: MakeClient, field: str, value: str
) -> None:
    kontext = make(fake, clock)
    with pytest.raises(InvalidInputError) as caught:
        kontext.submit(EP, {**INPUT, field: value})
    assert caught.value.problems[0].field == field
    if field == "image_url":
        with pytest.raises(InvalidInputError, match=field):
            kontext.edit("a donut", image=value)
    assert fake.requests == []


@pytest.mark.parametrize(
    ("options", "field"),
    [
        ({"webhook_url": "javascript:alert(1)"}, "webhook_url"),
        ({"webhook_url": "not a url"}, "webhook_url"),
        ({"webhook_url": "https://hooks.example.test/x\n"}, "webhook_url"),
        ({"runner_hint": 123}, "runner_hint"),
        ({"runner_hint": "warm\r\nX-Evil: 1"}, "runner_hint"),
        ({"priority": "urgent"}, "priority"),
        ({"priority": 1}, "priority"),
        ({"start_timeout": math.nan}, "start_timeout"),
        ({"start_timeout": "10"}, "start_timeout"),
        ({"no_retry": "yes"}, "no_retry"),
    ],
)
def test_bad_submit_options_are_refused(
    fake: FakeQueue, clock: FakeClock, make: MakeClient, options: dict[str, Any], field: str
) -> None:
    kontext = make(fake, clock)
    with pytest.raises(InvalidInputError) as caught:
        kontext.submit(EP, INPUT, **options)
    assert [p.field for p in caught.value.problems] == [field]
    with pytest.raises(InvalidInputError, match=field):
        kontext.run(EP, INPUT, **options)
    assert fake.requests == []


@pytest.mark.parametrize("request_id", ["", "   ", "req\n1", 7])
def test_a_bad_request_id_is_refused(fake: FakeQueue, clock: FakeClock, make: MakeClient, request_id: object) -> None:
    with pytest.raises(InvalidInputError, match="request_id"):
        make(fake, clock).handle(request_id)
    assert fake.requests == []


@pytest.mark.parametrize(
    ("build", "field"),
    [
        (lambda: PollSchedule(initial=math.nan), "poll.initial"),
        (lambda: PollSchedule(initial=-1), "poll.initial"),
        (lambda: PollSchedule(factor=0.5), "poll.factor"),
        (lambda: RetryPolicy(initial_delay=math.nan), "retry.initial_delay"),
        (lambda: RetryPolicy(max_delay=-1), "retry.max_delay"),
        (lambda: RetryPolicy(max_retries=-1), "retry.max_retries"),
        (lambda: RetryPolicy(jitter=math.nan), "retry.jitter"),
        (lambda: RequestTimeouts(connect=-1), "timeouts.connect"),
    ],
)
def test_settings_are_checked_when_built(build: Any, field: str) -> None:
    with pytest.raises(InvalidInputError) as caught:
        build()
    assert caught.value.problems[0].field == field


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"stream_idle_timeout": -1}, "stream_idle_timeout"),
        ({"stream_idle_timeout": math.nan}, "stream_idle_timeout"),
        ({"max_image_bytes": -1}, "max_image_bytes"),
        ({"base_url": ""}, "base_url"),
        ({"base_url": " "}, "base_url"),
        ({"wait_timeout": -5}, "wait_timeout"),
        ({"httpx_args": {"headers": {"X-Team": "a\nb"}}}, "httpx_args['headers']['X-Team']"),
        ({"httpx_args": {"headers": {"X-Team": 5}}}, "httpx_args['headers']['X-Team']"),
    ],
)
def test_client_options_are_checked_when_built(
    fake: FakeQueue, clock: FakeClock, make: MakeClient, kwargs: dict[str, Any], field: str
) -> None:
    with pytest.raises(InvalidInputError) as caught:
        make(fake, clock, **kwargs)
    assert caught.value.problems[0].field == field
    assert fake.requests == []
