"""The batch package uses only the public client API: it imports from ``fal_kontext`` only names ``fal_kontext``
exports, and otherwise only the standard library and its own modules."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import fal_kontext
import fal_kontext.batch

PACKAGE = Path(fal_kontext.batch.__file__).parent


def imports_of(path: Path) -> list[tuple[str, int, list[str]]]:
    """Each import of a module: (module, relative level, names)."""
    found: list[tuple[str, int, list[str]]] = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found += [(alias.name, 0, []) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            found.append((node.module or "", node.level, [alias.name for alias in node.names]))
    return found


def test_the_batch_package_imports_only_the_public_api_and_its_own_modules() -> None:
    modules = sorted(PACKAGE.glob("*.py"))
    assert {path.stem for path in modules} >= {"manifest", "cost", "journal", "runner"}
    for path in modules:
        for module, level, names in imports_of(path):
            where = f"{path.name}: {module or '.'} {names}"
            if level:
                assert level == 1, where  # a sibling module, never the client's internals
            elif module == "fal_kontext":
                assert set(names) <= set(fal_kontext.__all__), where
            else:
                assert module.split(".")[0] in sys.stdlib_module_names or module == "__future__", where
