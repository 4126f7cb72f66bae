"""The local emulator for integration tests, imported here only: where the emulator's package lives is one line."""

from fal_kontext_emulator import EmulatorConfig, RunningEmulator, run_emulator

__all__ = ["EmulatorConfig", "RunningEmulator", "run_emulator"]
