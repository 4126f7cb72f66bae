"""The protocol core is pure: no module of ``fal_kontext.protocol`` imports an HTTP library or does file I/O (the
executors do). What ``import fal_kontext`` loads: integration/test_purity.py."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import fal_kontext.protocol

PROTOCOL = Path(fal_kontext.protocol.__file__).parent
# Modules whose import would mean I/O or an HTTP library in the protocol (``os.PathLike`` for typing is allowed
# under ``TYPE_CHECKING`` only).
FORBIDDEN = {"httpx", "httpcore", "pathlib", "os", "io", "shutil", "tempfile", "socket", "ssl", "starlette", "PIL"}


def _runtime_imports(tree: ast.Module) -> list[tuple[str, int]]:
    """Every module imported outside ``if TYPE_CHECKING:`` blocks, with its line."""
    found: list[tuple[str, int]] = []
    typing_only: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING":
            typing_only.update(id(child) for child in ast.walk(node))
    for node in ast.walk(tree):
        if id(node) in typing_only:
            continue
        if isinstance(node, ast.Import):
            found += [(alias.name, node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.append((node.module, node.lineno))
    return found


@pytest.mark.parametrize("module", sorted(path.name for path in PROTOCOL.glob("*.py")))
def test_no_protocol_module_imports_io_or_http(module: str) -> None:
    tree = ast.parse((PROTOCOL / module).read_text(encoding="utf-8"))
    bad = [(name, line) for name, line in _runtime_imports(tree) if name.split(".")[0] in FORBIDDEN]
    assert not bad, f"{module} imports {bad}"
    calls = [node for node in ast.walk(tree) if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "open"]
    assert not calls, f"{module} opens a file at line {calls[0].lineno}"
