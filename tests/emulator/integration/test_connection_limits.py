"""The server's connection limits over a real socket: a deadline for request headers, a cap on idle connections."""

from __future__ import annotations

import socket
import time
import urllib.parse
from collections.abc import Iterator

import httpx
import pytest

from fal_kontext_emulator import EmulatorConfig, RunningEmulator, run_emulator

PARTIAL = b"GET /_emulator/health HTTP/1.1\r\nHost: emulator\r\nX-Half: "


def connect(emulator: RunningEmulator) -> socket.socket:
    address = urllib.parse.urlsplit(emulator.base_url)
    return socket.create_connection((address.hostname or "", address.port or 0), timeout=5)


def closed_by_server(connection: socket.socket, within: float) -> bool:
    """Whether the server closes the connection within `within` seconds (reading whatever it sends first)."""
    connection.settimeout(within)
    try:
        while connection.recv(4096):
            pass
    except TimeoutError:
        return False
    except ConnectionResetError:
        return True
    return True


@pytest.fixture
def strict() -> Iterator[RunningEmulator]:
    with run_emulator(EmulatorConfig(header_timeout=0.3, max_idle_connections=1000)) as emulator:
        yield emulator


def test_half_sent_headers_are_cut_off(strict: RunningEmulator) -> None:
    held = [connect(strict) for _ in range(50)]
    for connection in held:
        connection.sendall(PARTIAL)
    assert all(closed_by_server(connection, within=5) for connection in held)
    for connection in held:
        connection.close()


def test_a_silent_new_connection_is_cut_off(strict: RunningEmulator) -> None:
    with connect(strict) as connection:
        assert closed_by_server(connection, within=5)


def test_complete_requests_are_served_and_kept_alive(strict: RunningEmulator) -> None:
    with httpx.Client(base_url=strict.base_url) as client:
        for _ in range(3):
            assert client.get("/_emulator/health").status_code == 200
            time.sleep(0.1)
    with connect(strict) as connection:
        connection.sendall(PARTIAL)
        time.sleep(0.1)
        connection.sendall(b"yes\r\n\r\n")
        assert connection.recv(4096).startswith(b"HTTP/1.1 200")
        # Idle after its response: uvicorn's keep-alive timeout (30 s) applies, not the header deadline.
        assert not closed_by_server(connection, within=0.6)


def test_the_oldest_idle_connections_are_closed_above_the_cap() -> None:
    with run_emulator(EmulatorConfig(header_timeout=30, max_idle_connections=3)) as emulator:
        held = []
        for _ in range(5):
            held.append(connect(emulator))
            time.sleep(0.05)
        with httpx.Client(base_url=emulator.base_url) as client:
            assert client.get("/_emulator/health").status_code == 200
        assert [closed_by_server(connection, within=0.3) for connection in held] == [True, True, True, False, False]
        for connection in held:
            connection.close()


def test_limits_are_checked_in_the_config() -> None:
    with pytest.raises(ValueError, match="header_timeout"):
        EmulatorConfig(header_timeout=0)
    with pytest.raises(ValueError, match="max_idle_connections"):
        EmulatorConfig(max_idle_connections=0)
