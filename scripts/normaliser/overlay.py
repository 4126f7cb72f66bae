"""Apply OpenAPI Overlay 1.0 documents (https://spec.openapis.org/overlay/v1.0.0.html).

Each action selects nodes with a JSONPath `target` (RFC 9535, read by jsonpath-rfc9535) and either
merges `update` into them (objects merge recursively, arrays are appended to, scalars are replaced)
or deletes them (`remove: true`). Appending an item an array already holds adds nothing: our arrays
are sets (`required`, `enum`, `servers`), and an override restating a fact that a source now states
too must not repeat it. An action that selects nothing is an error: an override that no longer
applies must be noticed.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jsonpath_rfc9535

from .model import SourceError


@dataclass(frozen=True)
class Selected:
    """A node a target selects, with its parent and its key in the parent (None for the root)."""

    parent: Any
    key: str | int | None
    value: Any


def select(document: Any, target: str) -> list[Selected]:
    """Every node the target selects, in document order. Raises ValueError on a query that is not RFC 9535."""
    try:
        nodes = jsonpath_rfc9535.find(target, document)
    except jsonpath_rfc9535.JSONPathError as err:
        raise ValueError(f"target {target!r} is not an RFC 9535 JSONPath: {err}") from err
    return [
        Selected(node.parent.value if node.parent else None, node.location[-1] if node.location else None, node.value)
        for node in nodes
    ]


def merge_into(target: Any, update: Any) -> Any:
    """Overlay merge: objects recursively, arrays appended, anything else replaced."""
    if isinstance(target, dict) and isinstance(update, dict):
        for key, value in update.items():
            target[key] = merge_into(target[key], value) if key in target else copy.deepcopy(value)
        return target
    if isinstance(target, list):
        for item in update if isinstance(update, list) else [update]:
            if item not in target:
                target.append(copy.deepcopy(item))
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
        # Removals from one list run from the end, so that each index still names the item it selected.
        ordered = reversed(selected) if action.get("remove") is True else selected
        for node in ordered:
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
