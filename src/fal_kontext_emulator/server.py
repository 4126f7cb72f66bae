"""Serve the emulator over a real socket: uvicorn in a background thread, plus a small admin client."""

from __future__ import annotations

import logging
import ssl
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import httpx
import uvicorn
from starlette.types import ASGIApp

from fal_kontext_emulator.admin_api import ADMIN_PREFIX
from fal_kontext_emulator.app import create_app
from fal_kontext_emulator.connection_limits import guarded_protocol
from fal_kontext_emulator.emulator_config import EmulatorConfig
from fal_kontext_emulator.fault_injection import ConnectionDropped
from fal_kontext_emulator.fault_rules import FaultRule
from fal_kontext_emulator.state import body_fingerprint, key_fingerprint

_STARTUP_TIMEOUT = 10.0


class _HideDroppedConnections(logging.Filter):
    """Injected connection drops are intended; keep their tracebacks out of the log."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        return not isinstance(exc, ConnectionDropped)


def quiet_injected_drops() -> None:
    """Install the log filter that hides tracebacks of injected connection drops (idempotent)."""
    logger = logging.getLogger("uvicorn.error")
    if not any(isinstance(existing, _HideDroppedConnections) for existing in logger.filters):
        logger.addFilter(_HideDroppedConnections())


@dataclass
class RunningEmulator:
    """A served emulator: where it is, the key to use, and helpers for its admin API.

    Attributes:
        base_url: e.g. `http://127.0.0.1:54321` (no trailing slash).
        key: the first accepted key; send it as `Authorization: Key <key>`.
        config: the config it runs with.
        verify: what to pass as httpx's `verify=`: an SSL context trusting `ca_file` for HTTPS, else True.
    """

    base_url: str
    key: str
    config: EmulatorConfig
    verify: ssl.SSLContext | bool = True

    def _admin(self, method: str, path: str, **kwargs: Any) -> Any:
        with httpx.Client(base_url=self.base_url, verify=self.verify, timeout=10.0) as client:
            response = client.request(method, ADMIN_PREFIX + path, **kwargs)
            response.raise_for_status()
            return response.json()

    def add_fault(self, rule: str | FaultRule) -> None:
        """Activate a fault rule, given as text (`"submit=503,ok"`) or a FaultRule."""
        parsed = FaultRule.parse(rule) if isinstance(rule, str) else rule
        self._admin("POST", "/faults", json=parsed.as_json())

    def clear_faults(self) -> None:
        """Remove every fault rule."""
        self._admin("DELETE", "/faults")

    def counters(self) -> dict[str, Any]:
        """The counters: `calls` and `faults` per operationId, `submits` per key fingerprint."""
        result: dict[str, Any] = self._admin("GET", "/counters")
        return result

    def submit_count(self, key: str | None = None, body: Any = None) -> int:
        """How many requests `key` (default: `self.key`) submitted; with `body`, only those with that JSON body."""
        submits = self.counters()["submits"].get(key_fingerprint(key or self.key), {"total": 0, "by_body": {}})
        if body is None:
            return int(submits["total"])
        return int(submits["by_body"].get(body_fingerprint(body), 0))

    def reset_counters(self) -> None:
        """Set every counter back to zero."""
        self._admin("DELETE", "/counters")

    def advance(self, seconds: float) -> None:
        """Move the emulator's queue time forward (requests progress as if that time had passed)."""
        self._admin("POST", "/clock", json={"advance": seconds})

    def update_settings(self, **changes: Any) -> dict[str, Any]:
        """Change settings while it runs (`remote_images`, `request_list_pending`, `request_list_delay`, as in
        EmulatorConfig); returns them all."""
        result: dict[str, Any] = self._admin("PATCH", "/settings", json=changes)
        return result

    def set_remote_images(self, mode: str) -> None:
        """Switch how remote input URLs read: "placeholder" or "refuse" (see EmulatorConfig.remote_images)."""
        self.update_settings(remote_images=mode)

    def uploads(self) -> list[dict[str, Any]]:
        """Every file uploaded to the emulator's storage endpoints (without the bytes)."""
        result: list[dict[str, Any]] = self._admin("GET", "/uploads")["uploads"]
        return result

    def webhook_deliveries(self) -> list[dict[str, Any]]:
        """Every webhook delivery attempt so far."""
        result: list[dict[str, Any]] = self._admin("GET", "/webhooks")
        return result


def build_server(  # noqa: PLR0913 - the server options, each a keyword
    config: EmulatorConfig,
    *,
    host: str,
    port: int,
    certfile: str | None = None,
    keyfile: str | None = None,
    log_level: str = "warning",
    app: ASGIApp | None = None,
) -> uvicorn.Server:
    """A uvicorn server for the emulator (not started); `app` as in `run_emulator`."""
    quiet_injected_drops()
    uv_config = uvicorn.Config(
        app if app is not None else create_app(config),
        host=host,
        port=port,
        log_level=log_level,
        access_log=False,
        ssl_certfile=certfile,
        ssl_keyfile=keyfile,
        lifespan="on",
        # Clients keep connections open between polls; do not drop idle ones sooner than httpx would.
        timeout_keep_alive=30,
        http=guarded_protocol(config.header_timeout, config.max_idle_connections),
    )
    return uvicorn.Server(uv_config)


@contextmanager
def run_emulator(  # noqa: PLR0913 - the server options, each a keyword
    config: EmulatorConfig | None = None,
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    certfile: str | None = None,
    keyfile: str | None = None,
    ca_file: str | None = None,
    app: ASGIApp | None = None,
) -> Iterator[RunningEmulator]:
    """Serve the emulator with uvicorn in a background thread for the duration of the `with` block.

    Args:
        config: the knobs (test defaults when None).
        host: interface to bind; loopback by default.
        port: TCP port; 0 picks a free one.
        certfile, keyfile: PEM certificate and key; both given means HTTPS.
        ca_file: CA bundle clients should trust (becomes `RunningEmulator.verify`); with HTTPS only.
        app: what to serve instead of `create_app(config)`: an app made by `create_app` with this same config
            (another `spec`, say), or one wrapped in ASGI middleware that watches or changes the traffic. The
            config still gives the key and the server's connection limits.

    Raises:
        RuntimeError: the server did not start within 10 seconds.
    """
    config = config or EmulatorConfig()
    if (certfile is None) != (keyfile is None):
        raise ValueError("certfile and keyfile go together: give both for HTTPS, or neither")
    server = build_server(config, host=host, port=port, certfile=certfile, keyfile=keyfile, app=app)
    thread = threading.Thread(target=server.run, name="fal-kontext-emulator", daemon=True)
    thread.start()
    deadline = time.monotonic() + _STARTUP_TIMEOUT
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            server.should_exit = True
            raise RuntimeError(f"the emulator did not start on {host}:{port}")
        time.sleep(0.01)
    # With port 0 the OS chose one; ask the listening socket.
    chosen = server.servers[0].sockets[0].getsockname()[1]
    scheme = "https" if certfile else "http"
    shown_host = f"[{host}]" if ":" in host else host
    running = RunningEmulator(
        base_url=f"{scheme}://{shown_host}:{chosen}",
        key=config.keys[0],
        config=config,
        verify=ssl.create_default_context(cafile=ca_file) if ca_file else True,
    )
    try:
        yield running
    finally:
        server.should_exit = True
        thread.join(timeout=10)
