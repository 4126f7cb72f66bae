"""The public surface of both clients: exported names, constructor checks, options on the wire, httpx_args."""

from __future__ import annotations

import math
from typing import Any

import httpx
import pytest

import fal_kontext
from fal_kontext import AsyncKontext, InvalidInputError, Kontext, RequestTimeouts
from tests.client.client_fakes import FakeClock, FakeQueue, MakeClient

CLIENTS = [Kontext, AsyncKontext]
INPUT = {"prompt": "a prompt", "image_url": "https://example.test/a.png"}


def test_every_exported_name_exists() -> None:
    missing = [name for name in fal_kontext.__all__ if not hasattr(fal_kontext, name)]
    assert missing == []
    assert {"Kontext", "AsyncKontext", "Handle", "AsyncHandle", "RetryPolicy", "EditResult"} <= set(fal_kontext.__all__)


@pytest.mark.parametrize("client", CLIENTS)
@pytest.mark.parametrize(
    ("kwargs", "words"),
    [
        ({"base_url": "queue.fal.run"}, "not an absolute"),
        ({"base_url": ""}, "base_url"),
        ({"auth": "basic"}, "'key' or 'bearer'"),
        ({"wait_timeout": 0}, "wait_timeout"),
        ({"wait_timeout": math.nan}, "wait_timeout"),
        ({"start_timeout": 0.05}, "start_timeout"),
        ({"key": "a\nb"}, "line break"),
        ({"connection_pools": 0}, "connection_pools"),
        ({"stream_idle_timeout": -1}, "stream_idle_timeout"),
        ({"max_image_bytes": -1}, "max_image_bytes"),
        ({"timeouts": (1, 2)}, "timeouts"),
        ({"httpx_args": {"no_such_option": 1}}, "no_such_option"),
        ({"httpx_args": {"base_url": "https://x.test"}}, "base_url="),
        ({"httpx_args": {"auth": ("u", "p")}}, "key= and auth="),
        ({"httpx_args": {"headers": {"Authorization": "Key other"}}}, "Authorization"),
        ({"httpx_args": {"headers": {"X-A": "1\r\nX-B: 2"}}}, "line break"),
        ({"httpx_args": {"headers": {"X-A": 1}}}, "strings"),
        ({"httpx_args": {"cookies": ["a"]}}, "cookie"),
        ({"httpx_args": {"follow_redirects": "yes"}}, "True or False"),
        ({"httpx_args": {"timeout": -1}}, "timeout"),
        ({"httpx_args": {"timeout": 5}, "timeouts": RequestTimeouts()}, "either"),
        ({"httpx_args": {"event_hooks": {"before": []}}}, "event_hooks"),
        ({"httpx_args": {"limits": 10}}, "Limits"),
        ({"httpx_args": {"verify": 1}}, "verify"),
        ({"httpx_args": ["verify"]}, "httpx_args"),
    ],
)
def test_constructor_checks(client: type[Any], kwargs: dict[str, object], words: str) -> None:
    with pytest.raises(InvalidInputError, match=words):
        client(**{"key": "k", **kwargs})


@pytest.mark.parametrize("client", CLIENTS)
@pytest.mark.parametrize("value", [0, -1, math.nan, math.inf, "10"])
def test_request_timeouts_are_checked_when_built(client: type[Any], value: object) -> None:
    with pytest.raises(InvalidInputError, match=r"timeouts\.connect"):
        RequestTimeouts(connect=value)  # type: ignore[arg-type]
    with pytest.raises(InvalidInputError, match=r"timeouts\.read"):
        RequestTimeouts(read=value)  # type: ignore[arg-type]


def test_event_hooks_must_fit_the_client() -> None:
    def sync_hook(request: httpx.Request) -> None:
        pass

    Kontext("k", httpx_args={"event_hooks": {"request": [sync_hook]}})
    with pytest.raises(InvalidInputError, match="coroutine"):
        AsyncKontext("k", httpx_args={"event_hooks": {"request": [sync_hook]}})
    with pytest.raises(InvalidInputError, match="transport"):
        Kontext("k", httpx_args={"transport": httpx.AsyncHTTPTransport()})


def test_environment_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAL_KONTEXT_BASE_URL", "http://127.0.0.1:9999/")
    monkeypatch.setenv("FAL_KONTEXT_AUTH", "bearer")
    monkeypatch.setenv("FAL_KONTEXT_TOKEN", "tok")
    kontext = Kontext()
    assert kontext.base_url == "http://127.0.0.1:9999"
    assert repr(kontext) == "Kontext(base_url='http://127.0.0.1:9999', auth='bearer')"


@pytest.mark.parametrize("client", CLIENTS)
def test_fal_key_is_not_sent_as_a_bearer_token_to_another_host(
    client: type[Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("FAL_KONTEXT_TOKEN", raising=False)
    monkeypatch.delenv("FAL_KONTEXT_AUTH", raising=False)
    monkeypatch.setenv("FAL_KEY", "fal-secret")
    unusable = client(auth="bearer", base_url="https://proxy.example.test")  # refused at its first request
    with pytest.raises(InvalidInputError, match="FAL_KONTEXT_TOKEN") as caught:
        unusable.check_credentials()
    assert "fal-secret" not in str(caught.value)
    # fal's own host, an explicit key, or the aggregator's token are fine
    assert repr(client(auth="bearer", base_url="https://queue.fal.run")).endswith("auth='bearer')")
    client("fal-secret", auth="bearer", base_url="https://proxy.example.test")
    monkeypatch.setenv("FAL_KONTEXT_TOKEN", "agg-token")
    client(auth="bearer", base_url="https://proxy.example.test")


def test_submit_options_reach_the_wire(fake: FakeQueue, clock: FakeClock, make: MakeClient) -> None:
    kontext = make(fake, clock, key="k")
    kontext.submit(
        "fal-ai/flux-pro/kontext/max",
        INPUT,
        webhook_url="https://hooks.example.test/fal",
        start_timeout=30,
        priority="low",
        runner_hint="warm",
        no_retry=True,
    )
    request = fake.requests[0]
    assert request.url.path == "/fal-ai/flux-pro/kontext/max"
    assert request.url.params["fal_webhook"] == "https://hooks.example.test/fal"
    assert request.headers["x-fal-request-timeout"] == "30"
    assert request.headers["x-fal-queue-priority"] == "low"
    assert request.headers["x-fal-runner-hint"] == "warm"
    assert request.headers["x-fal-no-retry"] == "1"
    assert request.headers["authorization"] == "Key k"
    assert request.headers["user-agent"].startswith("fal-kontext/")


def test_httpx_args_merge_with_what_the_client_sets(
    fake: FakeQueue, clock: FakeClock, kind: str, make: MakeClient
) -> None:
    seen: list[str] = []

    def hook(request: httpx.Request) -> None:
        seen.append(request.url.path)

    async def async_hook(request: httpx.Request) -> None:
        hook(request)

    httpx_args = {
        "headers": {"X-Team": "vision", "User-Agent": "my-app/2"},
        "cookies": {"session": "s1"},
        "timeout": httpx.Timeout(7.0, connect=3.0),
        "follow_redirects": True,
        "event_hooks": {"request": [hook if kind == "sync" else async_hook]},
    }
    kontext = make(fake, clock, key="k", httpx_args=httpx_args, stream_status=False)
    kontext.run("fal-ai/flux-pro/kontext", INPUT)
    request = fake.requests[0]
    assert request.headers["x-team"] == "vision" and request.headers["user-agent"] == "my-app/2"
    assert request.headers["authorization"] == "Key k"  # the client's own header stays
    assert request.headers["cookie"] == "session=s1"
    assert request.extensions["timeout"]["connect"] == 3.0 and request.extensions["timeout"]["read"] == 7.0
    assert seen == [r.url.path for r in fake.requests]
    kontext.close()


@pytest.mark.parametrize("client", CLIENTS)
def test_close_builds_no_client(client: type[Any], monkeypatch: pytest.MonkeyPatch) -> None:
    built: list[object] = []
    for http_class in (httpx.Client, httpx.AsyncClient):
        original = http_class.__init__

        def counting(self: object, *args: Any, _original: Any = original, **kwargs: Any) -> None:
            built.append(self)
            _original(self, *args, **kwargs)

        monkeypatch.setattr(http_class, "__init__", counting)
    kontext = client("k", httpx_args={"headers": {"X-A": "1"}, "timeout": 5})
    closing = kontext.close()
    if client is AsyncKontext:
        import asyncio

        asyncio.run(closing)
    assert built == []


def test_edit_rejects_unknown_options_before_sending(fake: FakeQueue, clock: FakeClock, make: MakeClient) -> None:
    kontext = make(fake, clock)
    with pytest.raises(InvalidInputError, match="aspect_ratio"):
        kontext.edit("a prompt", image="https://example.test/a.png", aspect="16:9")
    assert fake.requests == []
