"""The sizes of what the client returns are ``int | None``, which ``mypy --strict`` accepts after a None check and
refuses without one: user code checked by mypy in a process of its own."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]


USER_CODE = """
from fal_kontext import AsyncKontext, EditResult, Kontext


def pixels(result: EditResult) -> int:
    total = 0
    for img in result.images:
        if img.width is not None and img.height is not None:
            total += img.width * img.height
    return total


def first_size(result: EditResult) -> int:
    size = result.images[0].file_size
    return size if size is not None else 0


def edited() -> int:
    with Kontext("key", base_url="http://127.0.0.1:9") as kontext:
        return pixels(kontext.edit("a prompt", image="in.png"))


async def edited_async() -> int:
    async with AsyncKontext("key", base_url="http://127.0.0.1:9") as kontext:
        return pixels(await kontext.edit("a prompt", image="in.png")) + first_size(await kontext.generate("a prompt"))
"""


def _mypy(tmp_path: Path, code: str) -> subprocess.CompletedProcess[str]:
    script = tmp_path / "user_code.py"
    script.write_text(code)
    command = [sys.executable, "-m", "mypy", "--strict", "--config-file", str(ROOT / "pyproject.toml"), str(script)]
    return subprocess.run(command, cwd=ROOT, capture_output=True, text=True, check=False)


def test_sizes_are_int_or_none_for_mypy_strict(tmp_path: Path) -> None:
    done = _mypy(
        tmp_path, USER_CODE + "\n\ndef unchecked(result: EditResult) -> int:\n    return result.images[0].width * 2\n"
    )
    errors = [line for line in done.stdout.splitlines() if ": error:" in line]
    # Only the product without a None check is refused: width may be missing.
    assert len(errors) == 1 and 'Unsupported operand types for * ("None" and "int")' in errors[0], done.stdout
