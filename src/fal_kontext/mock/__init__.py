"""A local emulator of fal.ai's queue API for FLUX.1 Kontext: stateful, spec-validated, with real images.

Use it in-process (`create_app`), in a background thread (`run_emulator`), from pytest (the `fal_emulator`
fixture of `fal_kontext.pytest_plugin`) or from the command line (`fal-kontext mock`).
"""

from fal_kontext.mock.app import create_app
from fal_kontext.mock.config import SEEDED_DEFECTS, EmulatorConfig
from fal_kontext.mock.faults import Fault, FaultRule
from fal_kontext.mock.replies import ConnectionDropped
from fal_kontext.mock.server import RunningEmulator, run_emulator
from fal_kontext.mock.state import body_fingerprint, key_fingerprint

__all__ = [
    "SEEDED_DEFECTS",
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
