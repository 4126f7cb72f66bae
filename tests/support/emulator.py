"""The local emulator for integration tests, imported here only: where the emulator's package lives is one line."""

from fal_kontext.mock import EmulatorConfig, RunningEmulator, run_emulator

__all__ = ["EmulatorConfig", "RunningEmulator", "run_emulator"]
