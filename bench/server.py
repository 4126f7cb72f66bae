"""The emulator as a separate process for the benchmarks: HTTPS with a throwaway CA, pinned to one CPU.

The server runs in its own process so that the clients' CPU time and memory are their own, and it is pinned to
CPU 0 while the clients are pinned to CPU 1 (on a 2-core machine each side gets one core).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import httpx

SERVER_CPU = 0
CLIENT_CPU = 1
_READY = "fal-kontext mock: ready"


# Smoke runs turn pinning off: their scenarios run side by side, and pinned they would all queue on two CPUs.
pinning = True


def pin_to(pid: int, cpu: int) -> None:
    """Pin a process (just started, before it makes threads) to one CPU; no-op where there is only one, or when
    `pinning` is off."""
    available = os.sched_getaffinity(0)
    if pinning and cpu in available and len(available) > 1:
        os.sched_setaffinity(pid, {cpu})


@dataclass
class Certificates:
    """A throwaway CA and a certificate for 127.0.0.1, as PEM files."""

    ca_file: str
    cert_file: str
    key_file: str


def make_certificates(directory: Path) -> Certificates:
    """Issue a CA and a server certificate for 127.0.0.1 with trustme."""
    import trustme

    ca = trustme.CA()
    server = ca.issue_cert("127.0.0.1", "localhost")
    paths = Certificates(str(directory / "ca.pem"), str(directory / "server.pem"), str(directory / "server.key"))
    ca.cert_pem.write_to_path(paths.ca_file)
    server.cert_chain_pems[0].write_to_path(paths.cert_file)
    server.private_key_pem.write_to_path(paths.key_file)
    return paths


@dataclass
class EmulatorProcess:
    """A running `python -m fal_kontext_emulator` process; `restart()` starts it again on the same port."""

    options: list[str]
    certificates: Certificates | None
    port: int = 0
    base_url: str = ""
    process: subprocess.Popen[str] | None = None
    log: list[str] = field(default_factory=list)

    @property
    def key(self) -> str:
        return "test-key"

    @property
    def verify(self) -> Any:
        import ssl

        return ssl.create_default_context(cafile=self.certificates.ca_file) if self.certificates else True

    def start(self) -> None:
        command = [sys.executable, "-m", "fal_kontext_emulator", "--port", str(self.port), *self.options]
        if self.certificates:
            command += ["--certfile", self.certificates.cert_file, "--keyfile", self.certificates.key_file]
        self.process = subprocess.Popen(
            command,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        pin_to(self.process.pid, SERVER_CPU)
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.log.append(line.rstrip())
            if line.startswith("fal-kontext mock: base URL "):
                self.base_url = line.split("base URL ", 1)[1].strip()
                self.port = int(self.base_url.rsplit(":", 1)[1])
            if line.startswith(_READY):
                # Keep reading its output, or a full pipe would stall the server.
                threading.Thread(target=self._collect, args=(self.process.stdout,), daemon=True).start()
                return
        raise RuntimeError("the emulator did not start:\n" + "\n".join(self.log))

    def _collect(self, output: IO[str]) -> None:
        for line in output:
            self.log.append(line.rstrip())

    def stop(self) -> None:
        """Stop it gracefully (SIGTERM: uvicorn shuts down and the state file is saved)."""
        if self.process is None:
            return
        self.process.send_signal(signal.SIGINT)
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.process = None

    def crash_and_restart(self) -> None:
        """Kill it (SIGKILL, as in a crash: open connections are reset) and start it again on the same port."""
        assert self.process is not None
        self.process.kill()
        self.process.wait()
        self.process = None
        self.start()

    def admin(self, method: str, path: str) -> Any:
        with httpx.Client(base_url=self.base_url, verify=self.verify, timeout=30) as client:
            response = client.request(method, "/_emulator" + path)
            response.raise_for_status()
            return response.json()

    def cpu_seconds(self) -> float:
        """User + system CPU the server process has used so far (from /proc)."""
        assert self.process is not None
        fields = Path(f"/proc/{self.process.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@contextmanager
def emulator(options: list[str], *, https: bool = True) -> Iterator[EmulatorProcess]:
    """Run the emulator in a subprocess (HTTPS by default) for the duration of the block."""
    with tempfile.TemporaryDirectory(prefix="bench-emulator-") as scratch:
        certificates = make_certificates(Path(scratch)) if https else None
        running = EmulatorProcess(options, certificates)
        running.start()
        try:
            yield running
        finally:
            running.stop()
