"""What makes a unit test a unit test here: no socket is opened and no process started (see CONTRIBUTING.md, "Where
a test goes"). A unit folder's conftest applies ``forbid_sockets_and_processes`` to each of its tests."""

from __future__ import annotations

import socket
import subprocess
from typing import NoReturn

import pytest

__all__ = ["forbid_sockets_and_processes"]


def _refuse(what: str) -> NoReturn:
    raise AssertionError(f"a unit test {what}: it belongs in the integration folder next to this one")


def forbid_sockets_and_processes(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make connecting or listening on a socket, and starting a process, fail the test that tries.

    asyncio's own socket pair (made by ``asyncio.run``) neither connects nor binds, so event loops still run.
    """

    def connect(self: socket.socket, *args: object) -> NoReturn:
        _refuse("opened a connection")

    def bind(self: socket.socket, *args: object) -> NoReturn:
        _refuse("listened on a socket")

    def start(self: subprocess.Popen[bytes], *args: object, **kwargs: object) -> NoReturn:
        _refuse("started a process")

    monkeypatch.setattr(socket.socket, "connect", connect)
    monkeypatch.setattr(socket.socket, "connect_ex", connect)
    monkeypatch.setattr(socket.socket, "bind", bind)
    monkeypatch.setattr(subprocess.Popen, "__init__", start)
