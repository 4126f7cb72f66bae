"""Fixtures of the command-line integration tests: an emulator, the environment pointing at it, an input image."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from PIL import Image as PILImage

from tests.support.emulator import EmulatorConfig, RunningEmulator, run_emulator


@pytest.fixture(scope="module")
def emulator() -> Iterator[RunningEmulator]:
    with run_emulator(EmulatorConfig(run_time=0.2, queue_wait=0.05, keepalive_interval=1.0)) as running:
        yield running


@pytest.fixture
def env(emulator: RunningEmulator, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """The environment of a command pointed at ``emulator`` (also set in this process, for ``main``)."""
    values = {"FAL_KEY": emulator.key, "FAL_KONTEXT_BASE_URL": emulator.base_url}
    for name in ("FAL_KEY_ID", "FAL_KEY_SECRET", "FAL_KONTEXT_AUTH", "FAL_KONTEXT_TOKEN", "FAL_KONTEXT_LOG_LEVEL"):
        monkeypatch.delenv(name, raising=False)
    for name, value in values.items():
        monkeypatch.setenv(name, value)
    return {k: v for k, v in os.environ.items() if k != "FAL_KONTEXT_LOG_LEVEL"} | values


@pytest.fixture
def image(tmp_path: Path) -> Path:
    path = tmp_path / "in.png"
    PILImage.new("RGB", (40, 30), "purple").save(path)
    return path
