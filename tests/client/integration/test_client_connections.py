"""Connections as both clients use them on a real emulator: TLS with a private CA everywhere (downloads included),
and one connection for sequential jobs (the status stream is read to its end)."""

from __future__ import annotations

import io
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import trustme
from PIL import Image

from fal_kontext import APIConnectionError, Kontext
from fal_kontext_emulator import EmulatorConfig, RunningEmulator, run_emulator
from tests.client.client_fakes import real_client


def _png() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (16, 16), "teal").save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.fixture(scope="module")
def https_emulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningEmulator]:
    """The emulator over HTTPS with a certificate of a private CA (``RunningEmulator.verify`` trusts it)."""
    ca = trustme.CA()
    certificate = ca.issue_cert("127.0.0.1")
    folder = tmp_path_factory.mktemp("tls")
    certfile, keyfile, ca_file = folder / "cert.pem", folder / "key.pem", folder / "ca.pem"
    certificate.cert_chain_pems[0].write_to_path(str(certfile))
    certificate.private_key_pem.write_to_path(str(keyfile))
    ca.cert_pem.write_to_path(str(ca_file))
    config = EmulatorConfig(run_time=0.05, queue_wait=0.0)
    with run_emulator(config, certfile=str(certfile), keyfile=str(keyfile), ca_file=str(ca_file)) as running:
        yield running


def test_a_private_ca_serves_every_call_and_the_downloads(
    https_emulator: RunningEmulator, kind: str, tmp_path: Path
) -> None:
    """``httpx_args={"verify": ctx}`` reaches the queue calls and ``save()``'s downloads, in both clients (the async
    client's downloads used to ignore it and fail with APIConnectionError)."""
    assert https_emulator.base_url.startswith("https://")
    args: dict[str, Any] = {"verify": https_emulator.verify}
    with real_client(kind, https_emulator.key, base_url=https_emulator.base_url, httpx_args=args) as kontext:
        result = kontext.edit("a teal square", image=_png())
        assert result.images[0].url.startswith("https://")
        paths = kontext.save(result, tmp_path)
    assert paths and paths[0].stat().st_size > 0


def test_sequential_sync_jobs_share_one_connection(
    https_emulator: RunningEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Polling and the status stream alike: the stream is read to its end after COMPLETED, so its connection goes
    back to the pool for the result request and the next job (one TLS handshake for them all)."""
    opened: list[object] = []
    original = socket.create_connection

    def counting(*args: Any, **kwargs: Any) -> socket.socket:
        opened.append(args[0])
        return original(*args, **kwargs)

    monkeypatch.setattr(socket, "create_connection", counting)
    for stream in (True, False):
        opened.clear()
        with Kontext(
            https_emulator.key,
            base_url=https_emulator.base_url,
            httpx_args={"verify": https_emulator.verify},
            stream_status=stream,
        ) as kontext:
            for _ in range(5):
                kontext.edit("a prompt", image=_png())
        assert len(opened) == 1, f"stream={stream}: {len(opened)} connections for 5 sequential jobs"


@pytest.mark.parametrize("verb", ["status", "edit"])
def test_a_certificate_that_does_not_verify_is_not_retried_and_says_what_to_do(
    https_emulator: RunningEmulator, kind: str, verb: str
) -> None:
    sleeps: list[float] = []

    async def asleep(seconds: float) -> None:
        sleeps.append(seconds)

    sleep = sleeps.append if kind == "sync" else asleep
    # No verify=: the emulator's private CA is not trusted, as a self-signed server's is not.
    with (
        real_client(kind, https_emulator.key, base_url=https_emulator.base_url, sleep=sleep) as kontext,
        pytest.raises(APIConnectionError) as raised,
    ):
        if verb == "status":
            kontext.handle("request-1").status()
        else:
            kontext.edit("a teal square", image=_png())
    message = str(raised.value)
    assert "CERTIFICATE_VERIFY_FAILED" in message and "SSL_CERT_FILE" in message and "verify=" in message
    assert sleeps == [] and raised.value.reached_server is False  # not retried: nothing was sent
