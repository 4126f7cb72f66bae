"""Over a real socket: a restarted emulator with a state file carries on where it was; HTTPS with a certificate."""

from __future__ import annotations

import ssl
from pathlib import Path

import httpx
import pytest
import trustme

from fal_kontext_emulator import EmulatorConfig, run_emulator
from tests.emulator.conftest import REQUESTS, SUBMIT, body


def test_restart_over_a_socket_keeps_requests_and_the_webhook_key(tmp_path: Path) -> None:
    config = EmulatorConfig(runners=1, queue_wait=0.0, run_time=0.3, state_file=str(tmp_path / "state.sqlite"))
    with run_emulator(config) as emulator:
        headers = {"Authorization": f"Key {emulator.key}"}
        submitted = httpx.post(emulator.base_url + SUBMIT, json=body(), headers=headers).json()
        jwks = httpx.get(emulator.base_url + "/.well-known/jwks.json").json()
        port = int(emulator.base_url.rsplit(":", 1)[1])
    # The URLs it handed out name its address: restart on the same port (or set public_base_url).
    with run_emulator(config, port=port) as emulator:
        assert httpx.get(emulator.base_url + "/.well-known/jwks.json").json() == jwks
        # Submit counts survive, so a resubmission across a restart still shows as a second submit.
        assert emulator.submit_count(body=body()) == 1
        status_url = f"{emulator.base_url}{REQUESTS}/{submitted['request_id']}/status"
        with httpx.stream("GET", status_url + "/stream", headers=headers, timeout=10) as stream:
            last = [line for line in stream.iter_lines() if line.startswith("data: ")][-1]
        assert '"COMPLETED"' in last
        result = httpx.get(f"{emulator.base_url}{REQUESTS}/{submitted['request_id']}", headers=headers)
        assert result.status_code == 200
        assert result.json()["images"][0]["url"].startswith(emulator.base_url)


def test_https_with_a_certificate_and_key(tmp_path: Path) -> None:
    authority = trustme.CA()
    certificate = authority.issue_cert("127.0.0.1", "localhost")
    cert_file, key_file, ca_file = tmp_path / "cert.pem", tmp_path / "key.pem", tmp_path / "ca.pem"
    certificate.cert_chain_pems[0].write_to_path(str(cert_file))
    certificate.private_key_pem.write_to_path(str(key_file))
    authority.cert_pem.write_to_path(str(ca_file))
    with run_emulator(certfile=str(cert_file), keyfile=str(key_file), ca_file=str(ca_file)) as emulator:
        assert emulator.base_url.startswith("https://127.0.0.1:")
        context = ssl.create_default_context(cafile=str(ca_file))
        headers = {"Authorization": f"Key {emulator.key}"}
        submitted = httpx.post(emulator.base_url + SUBMIT, json=body(), headers=headers, verify=context)
        assert submitted.status_code == 200
        assert submitted.json()["status_url"].startswith("https://127.0.0.1:")
        assert emulator.counters()["submits"]
        with pytest.raises(httpx.ConnectError):
            httpx.get(emulator.base_url + "/_emulator/health")
