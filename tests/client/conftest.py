"""Fixtures of the client tests."""

from __future__ import annotations

import pytest

from tests.client.client_fakes import FakeClock, FakeQueue


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def fake() -> FakeQueue:
    return FakeQueue()
