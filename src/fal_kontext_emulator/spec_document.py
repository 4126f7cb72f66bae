"""Reading the OpenAPI document the emulator serves: load the shipped spec, follow `$ref`, translate to JSON Schema.

The emulator reads `fal_kontext_api/openapi.json` (the normalised `specs/openapi.yaml`) itself: the routes, the
parameters and the schemas it checks every request against. What the spec says about each endpoint (`x-fal-endpoint`:
id, app, family, tier, image field, output schema) and the translation of OpenAPI 3.0 to JSON Schema come from the
client's `fal_kontext.spec` (`endpoints_of`, `to_json_schema`): they state no fact about fal of their own, and two
readings of them could only drift apart (the emulator's own reading once did).
"""

from __future__ import annotations

import functools
import importlib.resources
import json
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

from fal_kontext.spec import to_json_schema

__all__ = ["JsonObject", "load_spec", "operation_paths", "resolve", "shipped_operation_paths", "to_json_schema"]

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
