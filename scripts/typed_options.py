"""Emit `options.py` for the generated package: the spec's optional input fields as typed option definitions.

Per input schema a `TypedDict` (total=False) of its optional fields, enums as `Literal[...]`, so a
client verb can take `**options: Unpack[KontextInputOptions]` and an editor completes the values;
and `Tier`, `EndpointId` and `Family` as `Literal`s of what the operations' `x-fal-endpoint` say, for
`model: Tier`; and per family of x-fal-endpoint (`EditOptions`, `MultiEditOptions`, `TextToImageOptions`) the
fields every endpoint of that family accepts, which the verbs that pick an endpoint by family take.

A small emitter rather than datamodel-code-generator: its TypedDict output always includes the required fields
(the prompt and the image are the verbs' own parameters, not options) and knows nothing of `x-fal-endpoint`.
"""

from __future__ import annotations

import re
from typing import Any

_SCALARS = {"string": "str", "integer": "int", "number": "float", "boolean": "bool"}


def _literal(values: list[Any]) -> str:
    return "Literal[" + ", ".join(repr(str(v)) for v in values) + "]"


def _alias(component: str) -> str:
    """The name of an enum component's Literal alias: `AspectRatio` -> `AspectRatioValue`."""
    return f"{component}Value"


def _annotation(schema: dict[str, Any], enums: dict[str, list[Any]]) -> str:
    if "allOf" in schema and len(schema["allOf"]) == 1:
        return _annotation({**schema["allOf"][0], **{k: v for k, v in schema.items() if k != "allOf"}}, enums)
    if "$ref" in schema:
        name = str(schema["$ref"]).rsplit("/", 1)[-1]
        return _alias(name) if name in enums else "dict[str, Any]"
    if "enum" in schema:
        return _literal(schema["enum"])
    if schema.get("type") == "array":
        return f"list[{_annotation(schema.get('items') or {}, enums)}]"
    return _SCALARS.get(str(schema.get("type")), "Any")


def _submit_operations(document: dict[str, Any]) -> list[tuple[dict[str, Any], str]]:
    """(x-fal-endpoint, input schema name) of every submit operation, in document order."""
    found = []
    for item in document.get("paths", {}).values():
        operation = item.get("post") if isinstance(item, dict) else None
        if not isinstance(operation, dict) or "x-fal-endpoint" not in operation:
            continue
        ref = operation["requestBody"]["content"]["application/json"]["schema"]["$ref"]
        found.append((operation["x-fal-endpoint"], str(ref).rsplit("/", 1)[-1]))
    return found


# The vocabulary of `x-fal-endpoint.family` (overrides/15-endpoints.overlay.yaml): every family gets its options
# class, empty when the spec has no endpoint of it, so the client's verbs always import the same names.
FAMILIES = ("edit", "multi-edit", "text-to-image")


def _family_class(family: str) -> str:
    """`multi-edit` -> `MultiEditOptions`."""
    return "".join(part.capitalize() for part in family.split("-")) + "Options"


def _docstring(text: str) -> str:
    return '    """' + re.sub(r"\s+", " ", text.replace("\\", "\\\\").replace('"""', "'''")).strip() + '"""'


def render_options(document: dict[str, Any]) -> str:
    """The text of `options.py` for `document` (a normalised spec)."""
    schemas = document.get("components", {}).get("schemas", {})
    enums = {name: s["enum"] for name, s in schemas.items() if "enum" in s}
    operations = _submit_operations(document)
    ids = [endpoint["id"] for endpoint, _ in operations]
    tiers = sorted({str(endpoint["tier"]) for endpoint, _ in operations if endpoint.get("tier")})
    families = sorted({str(endpoint["family"]) for endpoint, _ in operations})
    inputs = list(dict.fromkeys(schema for _, schema in operations))

    lines = [
        '"""Typed options of the Kontext endpoints, from the spec: what a verb\'s `**options` accept.',
        "",
        "One TypedDict per input schema with its optional fields (enums as Literal), and the endpoint ids,",
        "tiers and families that the submit operations' `x-fal-endpoint` name. Written by scripts/typed_options.py.",
        '"""',
        "",
        "from typing import Any, Literal, TypedDict",
        "",
        f"EndpointId = {_literal(ids)}",
        f"Tier = {_literal(tiers)}",
        f"Family = {_literal(families)}",
        "",
    ]
    used = {
        str(ref).rsplit("/", 1)[-1]
        for name in inputs
        for prop in schemas[name].get("properties", {}).values()
        for ref in [prop.get("$ref"), *[m.get("$ref") for m in prop.get("allOf", [])]]
        if ref
    }
    for name in sorted(used & set(enums)):
        lines.append(f"{_alias(name)} = {_literal(enums[name])}")
    for name in inputs:
        schema = schemas[name]
        required = set(schema.get("required", []))
        endpoints = ", ".join(f"`{endpoint['id']}`" for endpoint, schema_name in operations if schema_name == name)
        lines += ["", "", f"class {name}Options(TypedDict, total=False):"]
        lines.append(_docstring(f"The optional fields of {name}, the input of {endpoints}."))
        lines.append("")
        for field, prop in schema.get("properties", {}).items():
            if field in required:
                continue
            lines.append(f"    {field}: {_annotation(prop, enums)}")
    for family in FAMILIES:
        members = [schema for endpoint, schema in operations if endpoint["family"] == family]
        shared = [
            field
            for field in (schemas[members[0]].get("properties", {}) if members else {})
            if all(
                field in schemas[name].get("properties", {}) and field not in schemas[name].get("required", [])
                for name in members
            )
        ]
        lines += ["", "", f"class {_family_class(family)}(TypedDict, total=False):"]
        lines.append(_docstring(f"The optional fields every `{family}` endpoint accepts ({len(members)} in the spec)."))
        lines.append("")
        for field in shared:
            lines.append(f"    {field}: {_annotation(schemas[members[0]]['properties'][field], enums)}")
        if not shared:
            lines.append("    pass")
    lines += [
        "",
        "",
        "OPTIONS_BY_SCHEMA: dict[str, type[Any]] = {",
        *[f'    "{name}": {name}Options,' for name in inputs],
        "}",
    ]
    return "\n".join(lines) + "\n"
