"""``import fal_kontext`` loads neither the emulator's web stack nor PIL (nor jsonschema), checked in a fresh
interpreter (the protocol core's own purity: unit/test_purity.py)."""

from __future__ import annotations

import subprocess
import sys


def test_importing_the_client_loads_no_emulator_stack_nor_pil() -> None:
    code = (
        "import sys, fal_kontext\n"
        "print(sorted({m.split('.')[0] for m in sys.modules} & {'starlette', 'uvicorn', 'PIL', 'jsonschema'}))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert done.stdout.strip() == "[]"
