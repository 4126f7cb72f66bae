"""The official fal_client, unchanged, against the emulator over HTTPS (fal-protocol.md §3.2's recipe).

fal_client reads its hosts once at import, so it runs in a child process with the environment set.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import trustme

from fal_kontext.mock import EmulatorConfig, run_emulator

from .conftest import image_data_uri

_CLIENT = """
import json, sys, fal_client
image = sys.argv[1]
updates = []
output = fal_client.subscribe(
    "fal-ai/flux-pro/kontext", arguments={"prompt": "x", "image_url": image}, with_logs=True,
    on_queue_update=lambda update: updates.append(type(update).__name__),
)
handle = fal_client.submit("fal-ai/flux-pro/kontext/max", arguments={"prompt": "[runner-failure]", "image_url": image})
try:
    handle.get()
    error = None
except fal_client.client.FalClientHTTPError as err:
    error = [err.status_code, str(err)]
print(json.dumps({"updates": updates, "output": output, "error": error}))
"""


def test_fal_client_subscribe_and_errors_work_unchanged(tmp_path: Path) -> None:
    authority = trustme.CA()
    certificate = authority.issue_cert("127.0.0.1")
    certificate.cert_chain_pems[0].write_to_path(str(tmp_path / "cert.pem"))
    certificate.private_key_pem.write_to_path(str(tmp_path / "key.pem"))
    authority.cert_pem.write_to_path(str(tmp_path / "ca.pem"))
    files = {name: str(tmp_path / f"{name}.pem") for name in ("cert", "key", "ca")}
    with run_emulator(EmulatorConfig(run_time=0.2), certfile=files["cert"], keyfile=files["key"]) as emulator:
        env = {
            **os.environ,
            "FAL_QUEUE_RUN_HOST": emulator.base_url.removeprefix("https://"),
            "FAL_KEY": emulator.key,
            "SSL_CERT_FILE": files["ca"],
        }
        done = subprocess.run(
            [sys.executable, "-c", _CLIENT, image_data_uri()],
            check=False,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert done.returncode == 0, done.stderr
    seen = json.loads(done.stdout)
    assert seen["updates"][0] == "Queued"
    assert "InProgress" in seen["updates"]
    assert seen["updates"][-1] == "Completed"
    assert seen["output"]["images"][0]["url"].startswith(emulator.base_url + "/files/")
    assert seen["error"] == [503, "Runner disconnected"]
