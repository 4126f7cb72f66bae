"""A raw-socket HTTP/1.1 keep-alive load generator, run as its own process: `python -m bench.loadgen '<json>'`.

Python's `selectors` over plain sockets, one request in flight per connection: cheap enough that one core of
load generator keeps one core of emulator busy. Two workloads:

- `status`: GET the status of a few running requests, round robin, over `connections` connections;
- `jobs`: each connection submits a job (run time 0), reads its status, then its result, and starts over.

Prints JSON: completed status requests or jobs, seconds, and the HTTP status codes seen.
"""

from __future__ import annotations

import json
import selectors
import socket
import sys
import time
from collections import Counter
from collections.abc import Generator
from typing import Any

# A request to send, answered with (status code, body).
Exchange = Generator[bytes, tuple[int, bytes], None]


def _request(method: str, path: str, host: str, key: str, body: bytes = b"") -> bytes:
    head = f"{method} {path} HTTP/1.1\r\nHost: {host}\r\nAuthorization: Key {key}\r\n"
    if body:
        head += f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
    return head.encode() + b"\r\n" + body


def _status_script(spec: dict[str, Any], offset: int) -> Exchange:
    requests = [_request("GET", path, spec["host"], spec["key"]) for path in spec["status_paths"]]
    index = offset
    while True:
        yield requests[index % len(requests)]
        index += 1


def _job_script(spec: dict[str, Any], offset: int) -> Exchange:
    host, key = spec["host"], spec["key"]
    number = 0
    while True:
        body = json.dumps({"prompt": f"throughput {offset} {number}", "image_url": spec["image"], "seed": 42}).encode()
        number += 1
        code, answer = yield _request("POST", "/fal-ai/flux-pro/kontext", host, key, body)
        if code != 200:
            continue
        request_id = json.loads(answer)["request_id"]
        yield _request("GET", f"/fal-ai/flux-pro/requests/{request_id}/status", host, key)
        yield _request("GET", f"/fal-ai/flux-pro/requests/{request_id}", host, key)


class _Connection:
    def __init__(self, address: tuple[str, int], script: Exchange) -> None:
        self.sock = socket.create_connection(address)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sock.setblocking(False)
        self.script = script
        self.buffer = b""
        self.sent_at = 0.0
        self.last_path = b""
        self.pending = next(script)
        self.sock.sendall(self.pending)

    def feed(self, data: bytes) -> tuple[int, bytes] | None:
        """Add received bytes; returns (status, body) once a whole response is in."""
        self.buffer += data
        end = self.buffer.find(b"\r\n\r\n")
        if end < 0:
            return None
        head = self.buffer[:end].decode("latin-1").split("\r\n")
        length = 0
        for line in head[1:]:
            name, _, value = line.partition(":")
            if name.lower() == "content-length":
                length = int(value)
        if len(self.buffer) < end + 4 + length:
            return None
        body = self.buffer[end + 4 : end + 4 + length]
        self.buffer = self.buffer[end + 4 + length :]
        return int(head[0].split()[1]), body


def run(spec: dict[str, Any]) -> dict[str, Any]:
    """Drive `spec["connections"]` connections for `spec["seconds"]`; count answers (and finished jobs)."""
    address = (spec["host"].split(":")[0], int(spec["host"].split(":")[1]))
    script = _status_script if spec["workload"] == "status" else _job_script
    selector = selectors.DefaultSelector()
    for offset in range(spec["connections"]):
        opened = _Connection(address, script(spec, offset))
        selector.register(opened.sock, selectors.EVENT_READ, opened)
    codes: Counter[int] = Counter()
    jobs = 0
    started = time.monotonic()
    deadline = started + spec["seconds"]
    while time.monotonic() < deadline:
        for selected, _ in selector.select(timeout=0.5):
            connection = selected.data
            data = connection.sock.recv(262144)
            if not data:
                raise RuntimeError("the server closed a connection")
            answer = connection.feed(data)
            if answer is None:
                continue
            codes[answer[0]] += 1
            if (
                spec["workload"] == "jobs"
                and connection.pending.startswith(b"GET /fal-ai/flux-pro/requests/")
                and (b"/status " not in connection.pending.split(b"\r\n", 1)[0])
            ):
                jobs += answer[0] == 200
            connection.pending = connection.script.send(answer)
            connection.sock.sendall(connection.pending)
    seconds = time.monotonic() - started
    return {"answers": sum(codes.values()), "jobs": jobs, "seconds": seconds, "codes": dict(codes)}


if __name__ == "__main__":
    json.dump(run(json.loads(sys.argv[1])), sys.stdout)
