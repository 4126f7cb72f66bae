"""Run the reference server: `python -m contracts.reference_server [--port N] [--key KEY ...]`.

Then `make contracts BASE_URL=http://127.0.0.1:N` with `FAL_KEY=KEY` checks it like any remote server.
"""

from __future__ import annotations

import argparse

import uvicorn

from contracts.reference_server.app import ReferenceConfig, create_app


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m contracts.reference_server", description=__doc__)
    parser.add_argument("--port", type=int, default=8770)
    parser.add_argument("--key", action="append", help="a key it accepts (repeatable; default reference-key)")
    parser.add_argument("--queue-wait", type=float, default=0.3, help="seconds each request waits in the queue")
    parser.add_argument("--run-time", type=float, default=0.3, help="seconds each request runs")
    args = parser.parse_args()
    config = ReferenceConfig(
        keys=frozenset(args.key or ["reference-key"]), queue_wait=args.queue_wait, run_time=args.run_time
    )
    print(f"reference server on http://127.0.0.1:{args.port} (keys: {len(config.keys)})", flush=True)
    uvicorn.run(create_app(config), host="127.0.0.1", port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
