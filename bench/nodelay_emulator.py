"""`python bench/nodelay_emulator.py ARGS`: `python -m fal_kontext.mock ARGS` with TCP_NODELAY on its connections.

The emulator binds its own listening socket (`fal_kontext.mock.command.listening_socket`) as
`socket.socket(family, SOCK_STREAM)`, whose protocol number is 0; asyncio sets TCP_NODELAY on an accepted
connection only when that number is IPPROTO_TCP (`_set_nodelay` in CPython's asyncio/base_events.py,
https://github.com/python/cpython/blob/3.11/Lib/asyncio/base_events.py), so the emulator's answers go out under
Nagle's algorithm: an answer written in two parts (headers, then body) waits for the client's delayed ACK, about
40 ms, on every request but the first of a kept-alive connection. That is no property of fal's servers and it
would swamp what the benchmarks measure (a result GET took 44 ms instead of 3), so the benchmarks serve the
emulator through this launcher, which sets TCP_NODELAY on the listening socket (Linux hands it on to the
connections it accepts). Once the emulator sets it itself, this is a no-op and can go.

Run as a script (not `-m`): the emulator's process does not need the bench package on its path.
"""

from __future__ import annotations

import socket
import sys

from fal_kontext.mock import command
from fal_kontext.mock.__main__ import main

_listening_socket = command.listening_socket


def _listening_socket_without_nagle(host: str, port: int) -> socket.socket:
    sock = _listening_socket(host, port)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


command.listening_socket = _listening_socket_without_nagle

if __name__ == "__main__":
    sys.exit(main())
