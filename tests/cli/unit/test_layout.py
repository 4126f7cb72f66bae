"""The tests of the command, the batch library, the clients and the protocol core keep the rule of CONTRIBUTING.md
("Where a test goes"): tests in unit/ or integration/ (no test file directly under the area, no other folder), each
unit folder isolated by its conftest, and helpers shared through tests/support, never imported from another area's
tests."""

from __future__ import annotations

import ast
from pathlib import Path

TESTS = Path(__file__).resolve().parents[2]
AREAS = (TESTS / "cli", TESTS / "batch", TESTS / "client", TESTS / "protocol")


def test_every_test_is_a_unit_or_an_integration_test() -> None:
    for area in AREAS:
        folders = {path.name for path in area.iterdir() if path.is_dir() and path.name != "__pycache__"}
        assert folders <= {"unit", "integration"}, (area, folders)
        for path in area.rglob("test_*.py"):
            assert path.parent.name in ("unit", "integration") and path.parent.parent == area, path
        conftest = (area / "unit" / "conftest.py").read_text(encoding="utf-8")
        assert "forbid_sockets_and_processes(monkeypatch)" in conftest, area


def test_no_area_imports_another_area_s_tests() -> None:
    for area in AREAS:
        for path in area.rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                names = [node.module or ""] if isinstance(node, ast.ImportFrom) else []
                names += [alias.name for alias in node.names] if isinstance(node, ast.Import) else []
                for name in names:
                    if name.startswith("tests."):
                        assert name.startswith(("tests.support.", f"tests.{area.name}.")), f"{path}: {name}"
