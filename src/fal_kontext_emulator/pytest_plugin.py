"""pytest plugin: the `fal_emulator` fixture, a running emulator for your own tests.

Installed with fal-kontext (entry point `pytest11`), so it needs no import, and loaded where the `mock` extra is
missing too (its fixtures then say which extra to install). Override `fal_emulator_config` in your conftest.py to
change the emulator's knobs:

    from fal_kontext_emulator import EmulatorConfig

    @pytest.fixture
    def fal_emulator_config():
        return EmulatorConfig(run_time=0.05, runners=8)

    def test_my_client(fal_emulator):
        client = MyClient(base_url=fal_emulator.base_url, key=fal_emulator.key)
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from fal_kontext_emulator.emulator_config import EmulatorConfig
    from fal_kontext_emulator.server import RunningEmulator


def _missing_extra(err: ModuleNotFoundError) -> ModuleNotFoundError:
    """The error to raise when the emulator cannot be imported: which module is missing and what to install."""
    return ModuleNotFoundError(
        f"the fal_emulator fixture needs the mock extra (missing module {err.name!r}): pip install 'fal-kontext[mock]'",
        name=err.name,
    )


# The emulator is imported inside the fixtures, so that pytest loads this plugin where the `mock` extra is missing.
@pytest.fixture
def fal_emulator_config() -> EmulatorConfig:
    """The config `fal_emulator` runs with: test defaults (key `test-key`, 0.05 s queue wait, 0.2 s runs)."""
    try:
        from fal_kontext_emulator.emulator_config import EmulatorConfig
    except ModuleNotFoundError as err:
        raise _missing_extra(err) from err
    return EmulatorConfig()


@pytest.fixture
def fal_emulator(fal_emulator_config: EmulatorConfig) -> Iterator[RunningEmulator]:
    """A fresh emulator on a free loopback port for one test: `.base_url`, `.key`, fault and counter helpers."""
    try:
        from fal_kontext_emulator.server import run_emulator
    except ModuleNotFoundError as err:
        raise _missing_extra(err) from err
    with run_emulator(fal_emulator_config) as emulator:
        yield emulator
