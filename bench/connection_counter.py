"""Count the TLS connections a client opens, at the server side: a TCP pass-through in front of the emulator.

The emulator does not count connections, so the bench puts this relay between a client and it: every accepted
connection whose first bytes are a TLS handshake record (content type 22, a ClientHello) counts as one TLS
connection, then bytes are copied both ways unchanged (TLS is end to end, between client and emulator). The
emulator builds status and result URLs from the Host the client used, so follow-up calls come back through here.
It runs in a thread of the bench process and only for the runs that count connections, never for the ones that
time clients.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass

_TLS_HANDSHAKE = 22


@dataclass
class ConnectionCounts:
    """What the relay saw so far."""

    connections: int = 0
    tls_handshakes: int = 0

    def reset(self) -> None:
        self.connections = 0
        self.tls_handshakes = 0


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, first: bytes = b"") -> None:
    try:
        if first:
            writer.write(first)
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except (ConnectionError, OSError):
        pass
    finally:
        with suppress(ConnectionError, OSError):
            writer.close()


@contextmanager
def counting_relay(upstream_port: int) -> Iterator[tuple[int, ConnectionCounts]]:
    """Run the relay to 127.0.0.1:`upstream_port` for the block; yields its own port and the live counts."""
    counts = ConnectionCounts()
    loop = asyncio.new_event_loop()
    started = threading.Event()
    port: list[int] = []
    stopping: list[Callable[[], object]] = []

    async def accept(client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        counts.connections += 1
        first = await client_reader.read(65536)
        if first[:1] == bytes([_TLS_HANDSHAKE]):
            counts.tls_handshakes += 1
        try:
            upstream_reader, upstream_writer = await asyncio.open_connection("127.0.0.1", upstream_port)
        except OSError:
            client_writer.close()
            return
        await asyncio.gather(_pipe(client_reader, upstream_writer, first), _pipe(upstream_reader, client_writer))

    async def serve() -> None:
        server = await asyncio.start_server(accept, "127.0.0.1", 0)
        port.append(server.sockets[0].getsockname()[1])
        stop = asyncio.Event()
        stopping.append(lambda: loop.call_soon_threadsafe(stop.set))
        started.set()
        await stop.wait()
        server.close()
        relays = asyncio.all_tasks() - {asyncio.current_task()}
        for task in relays:
            task.cancel()
        await asyncio.gather(*relays, return_exceptions=True)

    def run() -> None:
        loop.run_until_complete(serve())
        loop.close()

    thread = threading.Thread(target=run, name="connection-counter", daemon=True)
    thread.start()
    started.wait()
    try:
        yield port[0], counts
    finally:
        stopping[0]()
        thread.join(timeout=10)
