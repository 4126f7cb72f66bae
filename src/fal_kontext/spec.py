"""The normalised OpenAPI spec shipped with the generated package, read once: paths, schemas and parameters.

Input checks and URL handling read ranges, enums and paths from here, so there is no second copy of the contract.
"""

from __future__ import annotations

import functools
import json
from importlib import resources
from typing import Any, cast

__all__ = ["operation_path", "parameter_schema", "resolved_schema", "spec"]


@functools.cache
def spec() -> dict[str, Any]:
    """The whole spec (``fal_kontext_api/openapi.json``) as a dict."""
    text = (resources.files("fal_kontext_api") / "openapi.json").read_text(encoding="utf-8")
    return cast(dict[str, Any], json.loads(text))


def _follow(node: dict[str, Any]) -> dict[str, Any]:
    """Resolve a local ``$ref`` and a one-element ``allOf`` wrapper (how the spec attaches descriptions to enums)."""
    while True:
        if "$ref" in node:
            target: Any = spec()
            for part in node["$ref"].removeprefix("#/").split("/"):
                target = target[part]
            node = {**target, **{k: v for k, v in node.items() if k != "$ref"}}
        elif len(node.get("allOf", ())) == 1:
            inner = node["allOf"][0]
            node = {**_follow(inner), **{k: v for k, v in node.items() if k != "allOf"}}
        else:
            return node


@functools.cache
def resolved_schema(name: str) -> dict[str, Any]:
    """A component schema with each property's ``$ref``/``allOf`` resolved one level (enough for our inputs)."""
    schema = dict(spec()["components"]["schemas"][name])
    if "properties" in schema:
        schema["properties"] = {key: _follow(value) for key, value in schema["properties"].items()}
    return schema


@functools.cache
def parameter_schema(name: str) -> dict[str, Any]:
    """The schema of a component parameter, e.g. ``RequestTimeout``."""
    return _follow(spec()["components"]["parameters"][name]["schema"])


@functools.cache
def operation_path(operation_id: str) -> str:
    """The path template of an operation, e.g. ``/fal-ai/flux-pro/requests/{request_id}/status``."""
    for path, item in spec()["paths"].items():
        for method, operation in item.items():
            if method != "parameters" and operation.get("operationId") == operation_id:
                return str(path)
    raise KeyError(f"no operation {operation_id!r} in the spec")
