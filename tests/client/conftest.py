"""Fixtures of the client tests (unit/ and integration/). ``kind`` runs a test against both clients: ``Kontext`` and
``AsyncKontext`` (driven through ``Blocking``), so that a drift between them fails by construction. Below them, what
the two halves of a split file share."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.client.client_fakes import FakeClock, FakeQueue, MakeClient, client_factory


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def fake() -> FakeQueue:
    return FakeQueue()


@pytest.fixture(params=["sync", "async"])
def kind(request: pytest.FixtureRequest) -> str:
    """Which client a test drives."""
    return str(request.param)


@pytest.fixture
def make(kind: str) -> Iterator[MakeClient]:
    """``make(fake, clock, **kwargs)``: the client of ``kind`` on the scripted queue, with the fake clock."""
    with client_factory(kind) as factory:
        yield factory


# test_bounded_waits.py: the timeout every verb is given, and how far past it a call may return.
TIMEOUT = 3.0
MARGIN = 1.0
URL = "https://example.test/in.png"

# test_client_secrets.py: a key that must never be shown.
CANARY = "canary-7c1d-QzXwv93-do-not-print"


def assert_clean(text: str) -> None:
    assert CANARY not in text
    assert CANARY.split("-")[2] not in text  # not even a fragment of it


# test_log_redaction.py: a key of fal's ``id:secret`` form, each part of it secret too.
ID_SECRET_CANARY = "canary-id-0042:canary-secret-7c1dQzXwv93"

# test_sync_call.py
ENDPOINT = "fal-ai/flux-pro/kontext"
