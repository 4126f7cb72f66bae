"""The `fal_emulator` pytest fixture (fal_kontext_emulator.pytest_plugin): it serves, takes an overridden config, and
pytest loads it where the `mock` extra is missing."""

from __future__ import annotations

import subprocess
import sys

import httpx
import pytest

from fal_kontext_emulator import EmulatorConfig, RunningEmulator
from tests.emulator.conftest import SUBMIT, body


def test_pytest_plugin_loads_without_the_mock_extra() -> None:
    """pytest loads the plugin in every session of every user: it must not need Starlette, uvicorn or Pillow."""
    blocked = "import sys\nfor name in ('starlette', 'uvicorn', 'PIL', 'jsonschema'): sys.modules[name] = None\n"
    done = subprocess.run(
        [sys.executable, "-c", blocked + "import fal_kontext_emulator.pytest_plugin"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr


@pytest.fixture
def fal_emulator_config() -> EmulatorConfig:
    return EmulatorConfig(keys=("fixture-key",), run_time=0.05)


def test_the_fal_emulator_fixture_serves_with_the_overridden_config(fal_emulator: RunningEmulator) -> None:
    assert fal_emulator.key == "fixture-key"
    response = httpx.post(fal_emulator.base_url + SUBMIT, json=body(), headers={"Authorization": "Key fixture-key"})
    assert response.status_code == 200
    assert fal_emulator.submit_count() == 1
