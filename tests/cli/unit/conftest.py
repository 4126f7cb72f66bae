"""Unit tests: no socket, no process (tests/support/isolation.py)."""

import pytest

from tests.support.isolation import forbid_sockets_and_processes


@pytest.fixture(autouse=True)
def _unit_test_isolation(monkeypatch: pytest.MonkeyPatch) -> None:
    forbid_sockets_and_processes(monkeypatch)
