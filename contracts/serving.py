"""Serve an ASGI app on a loopback port in a background thread, for the contract suite's own servers."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import uvicorn
from starlette.types import ASGIApp

__all__ = ["serve"]


@contextmanager
def serve(app: ASGIApp, port: int = 0, *, certfile: str | None = None, keyfile: str | None = None) -> Iterator[str]:
    """Run `app` on 127.0.0.1 (`port` 0: any free one) until the block ends; yields its base URL.

    With `certfile` and `keyfile` it serves HTTPS.

    Raises:
        RuntimeError: the server did not start within 10 seconds.
    """
    server = uvicorn.Server(
        uvicorn.Config(
            app,
            host="127.0.0.1",
            port=port,
            log_level="warning",
            lifespan="off",
            timeout_graceful_shutdown=1,
            ssl_certfile=certfile,
            ssl_keyfile=keyfile,
        )
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the server did not start")
        time.sleep(0.01)
    bound = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"{'https' if certfile else 'http'}://127.0.0.1:{bound}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
