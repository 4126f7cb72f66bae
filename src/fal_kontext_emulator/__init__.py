"""A local emulator of fal.ai's queue API for FLUX.1 Kontext: stateful, spec-validated, with real images.

Use it in-process (`create_app`), in a background thread (`run_emulator`), from pytest (the `fal_emulator`
fixture of `fal_kontext_emulator.pytest_plugin`) or from the command line (`fal-kontext mock`,
`python -m fal_kontext_emulator`). The validating proxy (`fal-kontext proxy`, `validating_proxy`) and fal's queue
rules it checks (`queue_rules`) live here too. Everything but the pytest plugin needs the `mock` extra
(`pip install 'fal-kontext[mock]'`).

The names below are imported when first used: pytest loads `fal_kontext_emulator.pytest_plugin` in every session
of every user, extra or not, and importing it imports this package first, so this module imports nothing itself.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

__all__ = [
    "ConnectionDropped",
    "EmulatorConfig",
    "Fault",
    "FaultRule",
    "RunningEmulator",
    "body_fingerprint",
    "create_app",
    "key_fingerprint",
    "run_emulator",
]

if TYPE_CHECKING:
    from fal_kontext_emulator.app import create_app
    from fal_kontext_emulator.emulator_config import EmulatorConfig
    from fal_kontext_emulator.fault_injection import ConnectionDropped
    from fal_kontext_emulator.fault_rules import Fault, FaultRule
    from fal_kontext_emulator.server import RunningEmulator, run_emulator
    from fal_kontext_emulator.state import body_fingerprint, key_fingerprint
else:
    # Where each public name is defined.
    _MODULES = {
        "ConnectionDropped": "fault_injection",
        "EmulatorConfig": "emulator_config",
        "Fault": "fault_rules",
        "FaultRule": "fault_rules",
        "RunningEmulator": "server",
        "body_fingerprint": "state",
        "create_app": "app",
        "key_fingerprint": "state",
        "run_emulator": "server",
    }

    def __getattr__(name: str) -> object:
        """Import a public name from its module on first use (PEP 562)."""
        if name not in _MODULES:
            raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
        return getattr(importlib.import_module(f"{__name__}.{_MODULES[name]}"), name)
