"""The official fal_client, unchanged, against the emulator over HTTPS (its hosts set by FAL_QUEUE_RUN_HOST and FAL_RUN_HOST), with
fal's own example inputs: the request examples of the spec, whose images are fal CDN URLs.

fal_client reads its hosts once at import, so it runs in a child process with the environment set.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import trustme

from fal_kontext.spec import endpoints_of
from fal_kontext_emulator import EmulatorConfig, RunningEmulator, run_emulator
from fal_kontext_emulator.spec_document import load_spec

_CLIENT = """
import asyncio, json, sys, fal_client
examples = json.loads(sys.argv[1])
first = next(endpoint for endpoint, arguments in examples.items() if "image_url" in arguments)
report = {"subscribe": {}, "updates": []}
for endpoint, arguments in examples.items():
    report["subscribe"][endpoint] = fal_client.subscribe(
        endpoint, arguments=arguments, with_logs=True,
        on_queue_update=lambda update: report["updates"].append(type(update).__name__),
    )

handle = fal_client.submit(first, arguments=examples[first])
report["events"] = [type(event).__name__ for event in handle.iter_events(with_logs=True)]
report["status"] = type(fal_client.status(first, handle.request_id, with_logs=True)).__name__
report["result"] = fal_client.result(first, handle.request_id)

doomed = fal_client.submit(first, arguments={**examples[first], "prompt": "cancel me"})
doomed.cancel()
report["cancelled"] = type(doomed.status()).__name__

def http_error(call):
    try:
        call()
    except fal_client.FalClientHTTPError as err:
        return [err.status_code, err.response.json()["detail"][0]["type"]]
    return None

report["invalid"] = http_error(lambda: fal_client.submit(first, arguments={**examples[first], "num_images": 99}))
broken = {**examples[first], "image_url": "https://download-error.invalid/cat.png"}
report["download_error"] = http_error(lambda: fal_client.subscribe(first, arguments=broken))
failing = fal_client.submit(first, arguments={**examples[first], "prompt": "[runner-failure]"})
try:
    failing.get()
except fal_client.FalClientHTTPError as err:
    report["runner_failure"] = [err.status_code, str(err)]

async def run_async():
    handle = await fal_client.submit_async(first, arguments=examples[first])
    statuses = [type(event).__name__ async for event in handle.iter_events(with_logs=True)]
    result = await handle.get()
    subscribed = await fal_client.subscribe_async(first, arguments=examples[first])
    return {"statuses": statuses, "result": result, "subscribed": subscribed}

report["async"] = asyncio.run(run_async())
report["run"] = fal_client.run(first, arguments=examples[first])
report["run_invalid"] = http_error(lambda: fal_client.run(first, arguments={**examples[first], "num_images": 99}))
print(json.dumps(report))
"""


_UPLOADS = """
import asyncio, io, json, sys, fal_client
import fal_client.client as internals
from PIL import Image

# fal_client has no setting for its storage hosts: they are module constants, read when first used.
internals.REST_URL = internals.CDN_URL = sys.argv[1]
# Multipart starts above 100 MB; lowered so that a small file takes that path too.
internals.MULTIPART_THRESHOLD = 64 * 1024
internals.MULTIPART_CHUNK_SIZE = 32 * 1024
example = json.loads(sys.argv[2])
buffer = io.BytesIO()
Image.new("RGB", (64, 48), (0, 90, 200)).save(buffer, format="PNG")
small = buffer.getvalue()
noise = Image.frombytes("RGB", (160, 160), bytes(range(256)) * 300)
buffer = io.BytesIO()
noise.save(buffer, format="PNG", compress_level=0)
large = buffer.getvalue()
with open(sys.argv[3], "wb") as file:
    file.write(small)
report = {
    "single": fal_client.upload(small, "image/png", "small.png"),
    "multipart": fal_client.upload(large, "image/png", "large.png"),
    "file": fal_client.upload_file(sys.argv[3]),
    "lifecycle": fal_client.upload(b"x", "text/plain", lifecycle=fal_client.StorageSettings(expires_in="1h")),
    "sizes": [len(small), len(large)],
}
report["edited"] = fal_client.subscribe(example["endpoint"], arguments={**example["arguments"], "image_url": report["single"]})
report["async"] = asyncio.run(fal_client.AsyncClient().upload(small, "image/png", "async.png"))
print(json.dumps(report))
"""


def _examples() -> dict[str, Any]:
    """Each submit endpoint's first request example from the spec (fal's own; the edits' images are fal CDN URLs)."""
    spec = load_spec()
    examples = {}
    for endpoint in endpoints_of(spec):
        media = spec["paths"]["/" + endpoint.id]["post"]["requestBody"]["content"]["application/json"]
        found = [example["value"] for example in media.get("examples", {}).values()]
        if found:
            examples[endpoint.id] = found[0]
    return examples


@pytest.fixture(scope="module")
def tls_emulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[RunningEmulator, str]]:
    """An emulator over HTTPS with a private CA, and the CA file's path."""
    folder = tmp_path_factory.mktemp("tls")
    authority = trustme.CA()
    certificate = authority.issue_cert("127.0.0.1")
    certificate.cert_chain_pems[0].write_to_path(str(folder / "cert.pem"))
    certificate.private_key_pem.write_to_path(str(folder / "key.pem"))
    authority.cert_pem.write_to_path(str(folder / "ca.pem"))
    # A queue wait long enough that the first status poll always finds the request still queued.
    config = EmulatorConfig(queue_wait=0.5, run_time=0.2, runners=8)
    with run_emulator(
        config, certfile=str(folder / "cert.pem"), keyfile=str(folder / "key.pem"), ca_file=str(folder / "ca.pem")
    ) as emulator:
        yield emulator, str(folder / "ca.pem")


def run_fal_client(emulator: RunningEmulator, ca_file: str, script: str, *args: str) -> Any:
    """Run `script` with fal_client pointed at the emulator (queue host, sync host under /sync, key, CA)."""
    host = emulator.base_url.removeprefix("https://")
    env = {
        **os.environ,
        "FAL_QUEUE_RUN_HOST": host,
        "FAL_RUN_HOST": host + "/sync",
        "FAL_KEY": emulator.key,
        "SSL_CERT_FILE": ca_file,
    }
    done = subprocess.run(
        [sys.executable, "-c", script, *args], check=False, env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_fal_client_works_unchanged_with_fal_example_urls(tls_emulator: tuple[RunningEmulator, str]) -> None:
    emulator, ca_file = tls_emulator
    examples = _examples()
    assert any("image_urls" in example for example in examples.values()), "the spec lost its multi-image examples"
    seen = run_fal_client(emulator, ca_file, _CLIENT, json.dumps(examples))
    assert set(seen["subscribe"]) == set(examples)
    for output in seen["subscribe"].values():
        assert output["images"][0]["url"].startswith(emulator.base_url + "/files/")
    assert seen["updates"][0] == "Queued"
    assert "InProgress" in seen["updates"]
    assert seen["events"][-1] == "Completed"
    assert seen["status"] == "Completed"
    assert seen["result"]["images"]
    assert seen["cancelled"] == "Completed"
    assert seen["invalid"] == [422, "less_than_equal"]
    assert seen["download_error"] == [422, "file_download_error"]
    assert seen["runner_failure"] == [503, "Runner disconnected"]
    assert seen["async"]["statuses"][-1] == "Completed"
    assert seen["async"]["result"]["images"]
    assert seen["async"]["subscribed"]["images"]
    assert seen["run"]["images"][0]["url"].startswith(emulator.base_url + "/files/")
    assert seen["run_invalid"] == [422, "less_than_equal"]


def test_fal_client_uploads_to_the_emulator_storage(tls_emulator: tuple[RunningEmulator, str], tmp_path: Path) -> None:
    emulator, ca_file = tls_emulator
    endpoint, arguments = next((key, value) for key, value in _examples().items() if "image_url" in value)
    example = json.dumps({"endpoint": endpoint, "arguments": arguments})
    seen = run_fal_client(emulator, ca_file, _UPLOADS, emulator.base_url, example, str(tmp_path / "local.png"))
    assert seen["sizes"][1] > 64 * 1024, "the large file must take the multipart path"
    held = {item["file_name"]: item for item in emulator.uploads()}
    assert {"small.png", "large.png", "local.png", "async.png"} <= set(held)
    assert [held["small.png"]["size"], held["large.png"]["size"]] == seen["sizes"]
    assert held["upload.bin"]["lifecycle"] == {"expiration_duration_seconds": 3600}
    for name in ("single", "multipart", "file", "async"):
        assert seen[name].startswith(emulator.base_url + "/files/uploads/")
    assert seen["edited"]["images"][0]["url"].startswith(emulator.base_url + "/files/")
