"""The public surface: exported names, constructor checks, submit options on the wire."""

from __future__ import annotations

import pytest

import fal_kontext
from fal_kontext import AsyncKontext, InvalidInputError, Kontext
from tests.client.client_fakes import BASE, FakeClock, FakeQueue


def test_every_exported_name_exists() -> None:
    missing = [name for name in fal_kontext.__all__ if not hasattr(fal_kontext, name)]
    assert missing == []
    assert {"Kontext", "AsyncKontext", "Handle", "AsyncHandle", "RetryPolicy", "EditResult"} <= set(fal_kontext.__all__)


@pytest.mark.parametrize(
    ("kwargs", "words"),
    [
        ({"base_url": "queue.fal.run"}, "not an absolute"),
        ({"auth": "basic"}, "'key' or 'bearer'"),
        ({"wait_timeout": 0}, "wait_timeout"),
        ({"start_timeout": 0.05}, "start_timeout"),
        ({"key": "a\nb"}, "line break"),
    ],
)
def test_constructor_checks(kwargs: dict[str, object], words: str) -> None:
    with pytest.raises(ValueError, match=words):
        Kontext(**{"key": "k", **kwargs})  # type: ignore[arg-type]


def test_async_needs_a_pool() -> None:
    with pytest.raises(ValueError, match="connection_pools"):
        AsyncKontext("k", connection_pools=0)


def test_environment_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAL_KONTEXT_BASE_URL", "http://127.0.0.1:9999/")
    monkeypatch.setenv("FAL_KONTEXT_AUTH", "bearer")
    monkeypatch.setenv("FAL_KONTEXT_TOKEN", "tok")
    kontext = Kontext()
    assert kontext.base_url == "http://127.0.0.1:9999"
    assert repr(kontext) == "Kontext(base_url='http://127.0.0.1:9999', auth='bearer')"


def test_submit_options_reach_the_wire(fake: FakeQueue, clock: FakeClock) -> None:
    kontext = Kontext("k", base_url=BASE, transport=fake.transport(), sleep=clock.sleep, clock=clock)
    kontext.submit(
        "fal-ai/flux-pro/kontext/max",
        {"prompt": "p", "image_url": "https://example.test/a.png"},
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


def test_edit_rejects_unknown_options_before_sending(fake: FakeQueue, clock: FakeClock) -> None:
    kontext = Kontext("k", base_url=BASE, transport=fake.transport(), sleep=clock.sleep, clock=clock)
    with pytest.raises(InvalidInputError, match="aspect_ratio"):
        kontext.edit("p", image="https://example.test/a.png", aspect="16:9")
    assert fake.requests == []
