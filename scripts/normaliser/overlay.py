"""Apply OpenAPI Overlay 1.0 documents (https://spec.openapis.org/overlay/v1.0.0.html).

Each action selects nodes with a JSONPath `target` and either merges `update` into them (objects
merge recursively, arrays are appended to, scalars are replaced) or deletes them (`remove: true`).
The JSONPath subset read here is what overrides/ needs: `$`, `.name`, `['name']`, `.*` and `[*]`.
An action that selects nothing is an error: an override that no longer applies must be noticed.
"""

from __future__ import annotations

import copy
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .model import SourceError

_TOKEN = re.compile(r"\.(?P<name>[A-Za-z_$][\w$-]*)|\[\s*'(?P<quoted>[^']*)'\s*\]|(?P<star>\.\*|\[\s*\*\s*\])")


@dataclass(frozen=True)
class Selected:
    """A node a target selects, with its parent and its key in the parent (None for the root)."""

    parent: Any
    key: str | int | None
    value: Any


def parse_target(target: str) -> list[str | None]:
    """Split a JSONPath into steps: a name, or None for a wildcard. Raises ValueError on other syntax."""
    if not target.startswith("$"):
        raise ValueError(f"target {target!r} must start with '$'")
    steps: list[str | None] = []
    position = 1
    while position < len(target):
        m = _TOKEN.match(target, position)
        if not m:
            raise ValueError(f"target {target!r}: unsupported JSONPath at {target[position:]!r}")
        steps.append(None if m.group("star") else (m.group("name") or m.group("quoted")))
        position = m.end()
    return steps


def select(document: Any, target: str) -> list[Selected]:
    """Every node the target selects, in document order."""
    found = [Selected(None, None, document)]
    for step in parse_target(target):
        following: list[Selected] = []
        for node in found:
            value = node.value
            if isinstance(value, dict):
                keys = list(value) if step is None else [step] if step in value else []
                following += [Selected(value, k, value[k]) for k in keys]
            elif isinstance(value, list) and step is None:
                following += [Selected(value, i, v) for i, v in enumerate(value)]
        found = following
    return found


def merge_into(target: Any, update: Any) -> Any:
    """Overlay merge: objects recursively, arrays appended, anything else replaced."""
    if isinstance(target, dict) and isinstance(update, dict):
        for key, value in update.items():
            target[key] = merge_into(target[key], value) if key in target else copy.deepcopy(value)
        return target
    if isinstance(target, list):
        target.extend(copy.deepcopy(update) if isinstance(update, list) else [copy.deepcopy(update)])
        return target
    return copy.deepcopy(update)


def apply_overlay(document: dict[str, Any], overlay: dict[str, Any], path: Path) -> int:  # noqa: PLR0912 - one check per Overlay 1.0 rule
    """Apply one overlay document in place; return how many actions it had. Raises SourceError."""
    if not str(overlay.get("overlay", "")).startswith("1.0"):
        raise SourceError(path, None, "not an Overlay 1.0 document (its `overlay:` field must be 1.0.x)")
    actions = overlay.get("actions")
    if not isinstance(actions, list) or not actions:
        raise SourceError(path, None, "an overlay needs a non-empty `actions` list")
    for index, action in enumerate(actions):
        where = f"actions[{index}] ({action.get('description', action.get('target'))})"
        if not action.get("x-source"):
            raise SourceError(path, None, f"{where}: every override names its source in `x-source`")
        try:
            selected = select(document, str(action.get("target", "")))
        except ValueError as err:
            raise SourceError(path, None, f"{where}: {err}") from err
        if not selected:
            raise SourceError(path, None, f"{where}: target {action.get('target')!r} selects nothing")
        for node in selected:
            if action.get("remove") is True:
                if node.parent is None:
                    raise SourceError(path, None, f"{where}: cannot remove the root")
                del node.parent[node.key]
            elif "update" in action:
                if node.parent is None and not isinstance(action["update"], dict):
                    raise SourceError(path, None, f"{where}: the root can only be updated with an object")
                merged = merge_into(node.value, action["update"])
                if node.parent is not None:
                    node.parent[node.key] = merged
            else:
                raise SourceError(path, None, f"{where}: an action needs `update` or `remove: true`")
    return len(actions)
