"""Reading the OpenAPI document the emulator serves: load the shipped spec, follow `$ref`, translate to JSON Schema.

The emulator reads `fal_kontext_api/openapi.json` (the normalised `specs/openapi.yaml`) on its own, not through the
client's `fal_kontext.spec`, on purpose: it is an oracle of the contract independent of the client it tests.
"""

from __future__ import annotations

import functools
import importlib.resources
import json
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

JsonObject = dict[str, Any]


def load_spec() -> JsonObject:
    """Return the normalised OpenAPI document shipped with the generated client (a fresh copy each call)."""
    text = (importlib.resources.files("fal_kontext_api") / "openapi.json").read_text(encoding="utf-8")
    spec: JsonObject = json.loads(text)
    return spec


def resolve(spec: JsonObject, node: Any) -> Any:
    """`node` with a top-level local `$ref` followed (repeatedly); anything else as it is."""
    while isinstance(node, dict) and "$ref" in node:
        target: Any = spec
        for part in str(node["$ref"]).removeprefix("#/").split("/"):
            target = target[part]
        node = target
    return node


def to_json_schema(node: Any) -> Any:
    """Translate an OpenAPI 3.0 schema (or a whole document) to JSON Schema draft 4.

    The only OpenAPI 3.0 keyword JSON Schema lacks is `nullable`: `type: T, nullable: true` becomes
    `type: [T, "null"]` (and `null` joins an `enum`). Everything else is already draft 4.
    """
    if isinstance(node, list):
        return [to_json_schema(item) for item in node]
    if not isinstance(node, dict):
        return node
    out = {key: to_json_schema(value) for key, value in node.items() if key != "nullable"}
    if node.get("nullable") is True:
        if "type" in out:
            types = out["type"] if isinstance(out["type"], list) else [out["type"]]
            out["type"] = [*types, "null"]
        if "enum" in out:
            out["enum"] = [*out["enum"], None]
    return out


def operation_paths(spec: JsonObject) -> dict[str, str]:
    """Every operationId of `spec` and the path template it lives at."""
    return {
        operation["operationId"]: path
        for path, item in spec.get("paths", {}).items()
        for operation in item.values()
        if isinstance(operation, dict) and "operationId" in operation
    }


@functools.cache
def shipped_operation_paths() -> Mapping[str, str]:
    """`operation_paths` of the shipped spec, read once (fault rules and the queue rules name operations by id)."""
    return MappingProxyType(operation_paths(load_spec()))
