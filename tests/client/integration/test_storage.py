"""fal storage uploads through both clients against the emulator: ``upload()``, large local inputs of ``edit()``
uploaded (in parts too) and small ones inlined, the lifecycle preference, and a storage URL without fal storage."""

from __future__ import annotations

import base64
import io
import math
import os
from collections.abc import Iterator, Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx
import pytest
from PIL import Image as PILImage

from fal_kontext.endpoints import Endpoint
from fal_kontext.errors import InvalidInputError, NotFoundError
from fal_kontext.protocol import inputs, verbs
from fal_kontext.protocol.images import LocalFile
from fal_kontext.protocol.inputs import EditInput, check_input
from fal_kontext.protocol.storage import StorageSettings, upload_flow
from fal_kontext_emulator import EmulatorConfig, RunningEmulator, run_emulator
from tests.client.client_fakes import AnyClient, real_client


@pytest.fixture(scope="module")
def emulator() -> Iterator[RunningEmulator]:
    with run_emulator(EmulatorConfig(run_time=0.1, queue_wait=0.02, runners=4, keepalive_interval=1.0)) as running:
        yield running


@pytest.fixture
def storage_client(emulator: RunningEmulator, kind: str) -> Iterator[AnyClient]:
    with real_client(kind, emulator.key, base_url=emulator.base_url, storage_url=emulator.base_url) as client:
        yield client


def noise_png(size: int) -> bytes:
    """A PNG of at least ``size`` bytes that does not compress (random pixels, stored without compression)."""
    side = math.isqrt(size // 3) + 1
    buffer = io.BytesIO()
    PILImage.frombytes("RGB", (side, side), os.urandom(side * side * 3)).save(buffer, format="PNG", compress_level=0)
    return buffer.getvalue()


def listed(emulator: RunningEmulator, url: str) -> dict[str, Any]:
    """The emulator's record of the upload served at ``url``."""
    [upload] = [u for u in emulator.uploads() if url.endswith(f"/{u['file_id']}/{u['file_name']}")]
    return upload


def test_a_25_mib_local_image_is_uploaded_not_inlined(
    storage_client: AnyClient, emulator: RunningEmulator, tmp_path: Path
) -> None:
    photo = tmp_path / "kitchen-25mib.png"
    photo.write_bytes(noise_png(25 * 1024 * 1024))
    assert photo.stat().st_size >= 25 * 1024 * 1024 > emulator.config.max_body_bytes  # inlined, it would be a 413
    before = {u["file_id"] for u in emulator.uploads()}
    result = storage_client.edit("Put a donut next to the flour", image=photo, seed=7)
    assert len(result.images) == 1
    [upload] = [u for u in emulator.uploads() if u["file_id"] not in before]
    assert (upload["file_name"], upload["size"], upload["complete"]) == (
        "kitchen-25mib.png",
        photo.stat().st_size,
        True,
    )
    url = f"{emulator.base_url}/files/uploads/{upload['file_id']}/kitchen-25mib.png"
    submitted = {"prompt": "Put a donut next to the flour", "image_url": url, "seed": 7}
    assert emulator.submit_count(body=submitted) == 1  # the submit carried the uploaded file's URL


def test_an_edit_with_an_upload_checks_its_input_once(
    emulator: RunningEmulator, kind: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Checked with the upload's stand-in, before anything is uploaded; the uploaded URL replaces it unchecked."""
    checked: list[dict[str, Any]] = []

    def counted(endpoint: Endpoint, data: Mapping[str, object] | EditInput) -> dict[str, Any]:
        checked.append(dict(data) if isinstance(data, Mapping) else data.to_dict())
        return check_input(endpoint, data)

    monkeypatch.setattr(inputs, "check_input", counted)
    monkeypatch.setattr(verbs, "check_input", counted)
    photo = tmp_path / "kitchen.png"
    photo.write_bytes(noise_png(20_000))
    before = {u["file_id"] for u in emulator.uploads()}
    with real_client(
        kind, emulator.key, base_url=emulator.base_url, storage_url=emulator.base_url, upload_threshold=10_000
    ) as client:
        client.edit("a cat", image=photo, seed=3)
    assert len(checked) == 1 and checked[0]["image_url"].startswith("https://upload.invalid/")
    [upload] = [u for u in emulator.uploads() if u["file_id"] not in before]
    url = f"{emulator.base_url}/files/uploads/{upload['file_id']}/kitchen.png"
    assert emulator.submit_count(body={"prompt": "a cat", "image_url": url, "seed": 3}) == 1


def test_small_local_images_stay_inlined(storage_client: AnyClient, emulator: RunningEmulator) -> None:
    before = len(emulator.uploads())
    small = noise_png(10_000)
    storage_client.edit("a cat", image=small, seed=3)
    assert len(emulator.uploads()) == before
    inlined = {"prompt": "a cat", "image_url": "data:image/png;base64," + base64.b64encode(small).decode(), "seed": 3}
    assert emulator.submit_count(body=inlined) == 1


def test_upload_takes_paths_bytes_and_pil_images_and_the_url_serves_them(
    storage_client: AnyClient, emulator: RunningEmulator, tmp_path: Path
) -> None:
    picture = PILImage.new("RGB", (16, 8), "orange")
    path = tmp_path / "notes.txt"
    path.write_bytes(b"not an image, still a file")
    urls = [storage_client.upload(path), storage_client.upload(noise_png(3000)), storage_client.upload(picture)]
    served = [httpx.get(url) for url in urls]
    assert [r.status_code for r in served] == [200, 200, 200]
    assert served[0].content == path.read_bytes() and served[0].headers["content-type"].startswith("text/plain")
    assert PILImage.open(io.BytesIO(served[2].content)).size == (16, 8)
    names = [listed(emulator, url)["file_name"] for url in urls]
    assert names == ["notes.txt", "image.png", "image.png"]
    named = storage_client.upload(b"raw", file_name="data.bin", content_type="application/x-test")
    assert listed(emulator, named)["content_type"] == "application/x-test"


def test_the_lifecycle_preference_reaches_storage(emulator: RunningEmulator, kind: str) -> None:
    with real_client(
        kind, emulator.key, base_url=emulator.base_url, storage_url=emulator.base_url, upload_expires_in="1h"
    ) as client:
        url = client.upload(noise_png(1000))
    assert listed(emulator, url)["lifecycle"] == {"expiration_duration_seconds": 3600}


def test_large_files_go_in_parts_that_the_emulator_joins(emulator: RunningEmulator, kind: str) -> None:
    data = noise_png(300_000)
    storage = StorageSettings.at(emulator.base_url, multipart_threshold=100_000, part_size=64 * 1024)
    with real_client(kind, emulator.key, base_url=emulator.base_url) as client:
        upload = LocalFile(data, "image/png", "parts.png", "parts.png")
        url = client._run_upload(upload_flow(upload, replace(client._settings, storage=storage)))
    assert httpx.get(url).content == data
    assert listed(emulator, url)["size"] == len(data)


def test_against_the_emulator_a_25_mib_image_is_edited_with_nothing_configured(
    emulator: RunningEmulator, kind: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The quick start's two variables and nothing else: the emulator's own storage takes the upload."""
    for name in ("FAL_KONTEXT_STORAGE_URL", "FAL_KONTEXT_AUTH", "FAL_KONTEXT_TOKEN", "FAL_KEY_ID", "FAL_KEY_SECRET"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("FAL_KEY", emulator.key)
    monkeypatch.setenv("FAL_KONTEXT_BASE_URL", emulator.base_url)
    photo = tmp_path / "kitchen.png"
    photo.write_bytes(noise_png(25 * 1024 * 1024))
    before = {u["file_id"] for u in emulator.uploads()}
    with real_client(kind) as client:
        result = client.edit("Put a donut next to the flour", image=photo, seed=11)
    assert len(result.images) == 1
    [upload] = [u for u in emulator.uploads() if u["file_id"] not in before]
    assert (upload["file_name"], upload["size"]) == ("kitchen.png", photo.stat().st_size)
    url = f"{emulator.base_url}/files/uploads/{upload['file_id']}/kitchen.png"
    assert emulator.submit_count(body={"prompt": "Put a donut next to the flour", "image_url": url, "seed": 11}) == 1


def test_inlining_only_refuses_a_large_image_before_sending(emulator: RunningEmulator, kind: str) -> None:
    emulator.reset_counters()
    with (
        real_client(kind, emulator.key, base_url=emulator.base_url, upload_threshold=None) as client,
        pytest.raises(InvalidInputError, match="limit for inlined images"),
    ):
        client.edit("a cat", image=noise_png(11 * 1024 * 1024))
    assert emulator.submit_count() == 0


def test_a_storage_url_without_fal_storage_says_so(emulator: RunningEmulator, kind: str) -> None:
    elsewhere = emulator.base_url + "/no-storage-here"
    with (
        real_client(kind, emulator.key, base_url=emulator.base_url, storage_url=elsewhere) as client,
        pytest.raises(NotFoundError, match="does not offer fal storage"),
    ):
        client.upload(b"abc")


def test_the_storage_url_may_come_from_the_environment(
    emulator: RunningEmulator, kind: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FAL_KONTEXT_STORAGE_URL", emulator.base_url)
    with real_client(kind, emulator.key, base_url=emulator.base_url) as client:
        url = client.upload(b"from the environment")
    assert httpx.get(url).content == b"from the environment"
