"""`fal-kontext mock`: serve the emulator from the command line."""

from __future__ import annotations

import argparse
import errno
import socket
import sys
from collections.abc import Callable
from typing import Any

import uvicorn

from fal_kontext_emulator.emulator_config import EmulatorConfig
from fal_kontext_emulator.fault_rules import FaultRule, FaultSyntaxError
from fal_kontext_emulator.remote_images import REMOTE_IMAGE_MODES
from fal_kontext_emulator.server import build_server

READY_LINE = "fal-kontext mock: ready"


# The EmulatorConfig fields the command line sets, each with its help. A field's flag is its name with dashes; its
# type and default are the field's, and an empty text turns an optional text field off (None).
_CONFIG_OPTIONS: dict[str, str] = {
    "runners": "requests run at once",
    "queue_wait": "least seconds in the queue",
    "run_time": "seconds a request runs",
    "run_time_jitter": "up to this many seconds added to each run time, fixed per request",
    "retention": "seconds a completed request is kept, then 404; fal keeps results 1 hour",
    "content_policy_trigger": "prompt text that ends in a 422 content_policy_violation; empty disables",
    "failure_trigger": "prompt text that makes the runner disconnect (503 on the result); empty disables",
    "public_base_url": "base of the URLs handed out, when clients reach the emulator by a proxy",
    "state_file": "SQLite file that keeps every request across restarts (default: in memory)",
    "fault_seed": "seed of rate-based faults",
    "max_body_bytes": "larger bodies get 413",
    "keepalive_interval": "seconds between keep-alive comments on the status stream",
    "webhook_attempts": "deliveries tried",
    "webhook_retry_delay": "seconds before the first retry, doubling after",
    "remote_images": "remote http(s) input URLs are never fetched: read as a placeholder derived from the URL, or "
    "refused as fal's file_download_error",
    "max_upload_bytes": "largest file the storage endpoints accept; larger gets 413",
    "request_list_pending": "the request list (/v1/models/requests/by-endpoint) shows queued and running requests too",
    "request_list_delay": "seconds after a request ends before the request list shows it",
    "header_timeout": "seconds a connection may take to send a request's headers",
    "max_idle_connections": "idle connections kept open; above it the oldest are closed",
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the emulator's options to `parser`."""
    parser.add_argument("--host", default="127.0.0.1", help="interface to listen on (default: %(default)s)")
    parser.add_argument("--port", type=int, default=8765, help="TCP port; 0 picks a free one (default: %(default)s)")
    parser.add_argument(
        "--key",
        action="append",
        dest="keys",
        metavar="KEY",
        help="an accepted API key, as `Authorization: Key KEY` or `Bearer KEY`; repeat for more (default: test-key)",
    )
    parser.add_argument(
        "--fault",
        action="append",
        default=[],
        metavar="RULE",
        help="inject faults, e.g. submit=503,429:2,ok  status@0.1=502|drop|slow:2  result~0.5; repeatable",
    )
    defaults = EmulatorConfig()
    for name, text in _CONFIG_OPTIONS.items():
        flag = "--" + name.replace("_", "-")
        default = getattr(defaults, name)
        if isinstance(default, bool):
            parser.add_argument(flag, action="store_true", help=text)
        elif default is None:
            parser.add_argument(flag, help=text)
        else:
            choices = list(REMOTE_IMAGE_MODES) if name == "remote_images" else None
            parser.add_argument(
                flag, type=type(default), default=default, choices=choices, help=f"{text} (default: %(default)s)"
            )
    parser.add_argument("--certfile", help="PEM certificate: serve HTTPS (with --keyfile)")
    parser.add_argument("--keyfile", help="PEM private key of --certfile")
    parser.add_argument(
        "--log-level",
        default="warning",
        choices=["critical", "error", "warning", "info", "debug"],
        help="uvicorn's log level (default: %(default)s)",
    )


def config_from_arguments(args: argparse.Namespace) -> EmulatorConfig:
    """Build the EmulatorConfig the parsed options describe.

    Raises:
        ValueError: an option is out of range or a fault rule does not parse (the message names it).
    """
    options: dict[str, Any] = {}
    for name in _CONFIG_OPTIONS:
        value = getattr(args, name)
        options[name] = None if value == "" else value
    return EmulatorConfig(
        keys=tuple(args.keys) if args.keys else EmulatorConfig().keys,
        faults=tuple(FaultRule.parse(text) for text in args.fault),
        **options,
    )


class _AnnouncingServer(uvicorn.Server):
    """Prints the base URL and the ready line once the socket listens."""

    def __init__(self, config: uvicorn.Config, scheme: str) -> None:
        super().__init__(config)
        self._scheme = scheme

    async def startup(self, sockets: Any = None) -> None:
        await super().startup(sockets)
        if self.started:
            host, port = self.servers[0].sockets[0].getsockname()[:2]
            shown = f"[{host}]" if ":" in host else host
            print(f"fal-kontext mock: base URL {self._scheme}://{shown}:{port}", flush=True)
            print(READY_LINE, flush=True)


def _print_usage_error(message: str) -> int:
    print(f"fal-kontext mock: {message}", file=sys.stderr)
    return 2


# Why a port cannot be listened on, in words, by errno.
_BIND_PROBLEMS = {
    errno.EADDRINUSE: "the port is in use (another emulator?); choose another --port, or --port 0 for a free one",
    errno.EACCES: "permission denied (ports below 1024 need privileges); choose another --port",
    errno.EADDRNOTAVAIL: "that is not an address of this machine; see --host",
}


def listening_socket(host: str, port: int) -> socket.socket:
    """A TCP socket bound to ``host``:``port`` for uvicorn to serve on, bound here so that a port in use is our
    error to word, not uvicorn's exit (uvicorn binds its own the same way: SO_REUSEADDR, inheritable).

    Raises:
        OSError: the address cannot be bound (``errno`` says why).
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # IPPROTO_TCP, not 0: asyncio turns Nagle's algorithm off (TCP_NODELAY) on accepted connections only when the
    # socket says it is TCP (``_set_nodelay``, https://github.com/python/cpython/blob/3.11/Lib/asyncio/base_events.py);
    # with it on, an answer written in two parts waits for the client's delayed ACK, about 40 ms a request.
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    sock.set_inheritable(True)
    return sock


def run_mock_command(args: argparse.Namespace, usage_error: Callable[[str], int] = _print_usage_error) -> int:
    """Serve the emulator until interrupted; the exit code is 0, or what ``usage_error`` returns (2 by default) for
    bad options or an address that cannot be listened on, 1 if it cannot start otherwise.

    Args:
        args: The parsed options (``add_arguments``).
        usage_error: Reports a usage error (its message) and returns the exit code.
    """
    if (args.certfile is None) != (args.keyfile is None):
        return usage_error("--certfile and --keyfile go together (both for HTTPS)")
    try:
        config = config_from_arguments(args)
    except (ValueError, FaultSyntaxError) as err:
        return usage_error(str(err))
    try:
        sock = listening_socket(args.host, args.port)
    except OSError as err:
        problem = _BIND_PROBLEMS.get(err.errno or 0, err.strerror or str(err))
        return usage_error(f"cannot listen on {args.host}:{args.port}: {problem}")
    built = build_server(
        config, host=args.host, port=args.port, certfile=args.certfile, keyfile=args.keyfile, log_level=args.log_level
    )
    server = _AnnouncingServer(built.config, "https" if args.certfile else "http")
    try:
        server.run(sockets=[sock])
    except SystemExit as exit_:
        # uvicorn exits(1) when it cannot start; it has logged why.
        return int(exit_.code or 1)
    except KeyboardInterrupt:
        return 0
    finally:
        sock.close()
    return 0 if server.started else 1


def add_mock_command(subparsers: Any) -> argparse.ArgumentParser:
    """Add the `mock` sub-command to a `fal-kontext` argparse sub-parsers object.

    Args:
        subparsers: what `ArgumentParser.add_subparsers()` returned.

    Returns:
        The `mock` parser; its `handler` default is `run_mock_command(args) -> int`.
    """
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "mock",
        help="run the local emulator of fal's queue API",
        description="Serve a local emulator of fal.ai's queue API for FLUX.1 Kontext (see docs/emulator.md).",
    )
    add_arguments(parser)
    parser.set_defaults(handler=run_mock_command)
    return parser
