"""Fixtures of the client tests. ``kind`` runs a test against both clients: ``Kontext`` and ``AsyncKontext``
(driven through ``Blocking``), so that a drift between them fails by construction."""

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
