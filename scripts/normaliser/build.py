"""Turn merged source facts into the source-derived part of the OpenAPI document.

Only what the sources state goes in here: the edit operations, their input schemas and enums, the
output schema and the examples. Everything no source states (queue lifecycle, errors, security,
shared image schema) comes from overrides/ afterwards.
"""

from __future__ import annotations

import re
from typing import Any

from .merge import TEXT_TO_IMAGE, Endpoint, MergedApi, MergedField
from .model import SourceError

# The input schema of each family (merge.py), and what its endpoints do.
INPUT_SCHEMAS = {"edit": "KontextInput", "multi-edit": "KontextMultiInput", TEXT_TO_IMAGE: "KontextTextToImageInput"}
FAMILY_WORDS = {
    "edit": ("an image edit", "one input image (`image_url`)"),
    "multi-edit": ("an image edit", "several input images (`image_urls`)"),
    TEXT_TO_IMAGE: ("an image generation from text", "no input image"),
}
OUTPUT_SCHEMA = "KontextOutput"
# fal's app base: the first two segments of an endpoint id (fal-protocol.md §2.1).
_APP_SEGMENTS = 2


def _pascal(name: str) -> str:
    return "".join(part[:1].upper() + part[1:] for part in re.split(r"[_\W]+", name) if part)


def enum_component_name(field: MergedField) -> str:
    """`OutputFormatEnum` -> `OutputFormat`; fal's anonymous `Enum` is named after its field."""
    stated = field.facts.get("enum_name")
    if stated and stated != "Enum":
        return str(stated).removesuffix("Enum")
    return _pascal(field.name)


def field_schema(field: MergedField, enums: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The property schema of one merged field; enums become (shared) named components."""
    facts = field.facts
    schema: dict[str, Any]
    if "enum" in facts:
        name = enum_component_name(field)
        component = {"type": facts.get("schema", {}).get("type", "string"), "enum": [str(v) for v in facts["enum"]]}
        if name in enums and enums[name]["enum"] != component["enum"]:
            raise SourceError(
                field.origin["enum"],
                None,
                f"enum {name} has two value lists: {enums[name]['enum']} and {component['enum']}",
            )
        enums[name] = component
        # A sibling of $ref is ignored in OpenAPI 3.0; allOf keeps the description and default.
        schema = {"allOf": [{"$ref": f"#/components/schemas/{name}"}]}
    else:
        schema = dict(facts.get("schema") or {})
    for attribute in ("description", "default", "minimum", "maximum"):
        if attribute in facts:
            schema[attribute] = facts[attribute]
    if "enum" in facts and "default" in schema:
        schema["default"] = str(schema["default"])
    return schema


def object_schema(fields: list[MergedField], enums: dict[str, dict[str, Any]], description: str) -> dict[str, Any]:
    """An object schema with a property per field, `required` from the merged facts."""
    required = [f.name for f in fields if f.facts.get("required")]
    schema: dict[str, Any] = {"type": "object", "description": description}
    if required:
        schema["required"] = required
    schema["properties"] = {f.name: field_schema(f, enums) for f in fields}
    return schema


def operation_id(endpoint_path: str) -> str:
    """`/fal-ai/flux-pro/kontext/max/multi` -> `submit_kontext_max_multi`."""
    segments = endpoint_path.strip("/").split("/")[_APP_SEGMENTS:]
    return "submit_" + "_".join(re.sub(r"\W+", "_", s) for s in segments)


def _examples(values: list[tuple[str, Any]]) -> dict[str, Any]:
    """Named examples, one per distinct value, keyed by the origin that gave it first."""
    out: dict[str, Any] = {}
    seen: list[Any] = []
    for origin, value in values:
        if value in seen:
            continue
        seen.append(value)
        key = origin if origin not in out else f"{origin}_{len(out) + 1}"
        out[key] = {"summary": f"From the {origin} document", "value": value}
    return out


def submit_operation(endpoint: Endpoint) -> dict[str, Any]:
    """The POST operation of one endpoint, as far as its sources describe it, with `x-fal-endpoint`."""
    endpoint_id = endpoint.path.strip("/")
    docs = next((s.docs_url for s in endpoint.sources if s.docs_url), None)
    described_by = ", ".join(s.name for s in endpoint.sources)
    what, _ = FAMILY_WORDS[endpoint.family]
    description = f"Queues {what} on `{endpoint_id}`. Described by: {described_by}."
    if docs:
        description += f" fal's page: {docs}"
    media: dict[str, Any] = {"schema": {"$ref": f"#/components/schemas/{INPUT_SCHEMAS[endpoint.family]}"}}
    requests = _examples([(s.origin, e) for s in endpoint.sources for e in s.request_examples])
    if requests:
        media["examples"] = requests
    submitted: dict[str, Any] = {}
    answers = _examples([(s.origin, e) for s in endpoint.sources for e in s.submit_examples])
    if answers:
        submitted["examples"] = answers
    # What the sources state about the endpoint; overrides/ add what they do not (tier, price), with a source.
    metadata: dict[str, Any] = {"id": endpoint_id, "family": endpoint.family}
    if endpoint.tier:
        metadata["tier"] = endpoint.tier
    if endpoint.image_field:
        metadata["image_field"] = endpoint.image_field
    return {
        "operationId": operation_id(endpoint.path),
        "summary": f"Queue {what} on {endpoint_id}",
        "description": description,
        "tags": ["edit"],
        "x-fal-endpoint": metadata,
        "requestBody": {"required": True, "content": {"application/json": media}},
        "responses": {"200": {"description": "The request is queued.", "content": {"application/json": submitted}}},
    }


def build_document(api: MergedApi) -> dict[str, Any]:
    """The OpenAPI document the sources alone support (overrides/ complete it)."""
    enums: dict[str, dict[str, Any]] = {}
    schemas: dict[str, Any] = {}
    for family, fields in api.family_fields.items():
        _, takes = FAMILY_WORDS[family]
        schemas[INPUT_SCHEMAS[family]] = object_schema(
            fields, enums, f"Input of the Kontext endpoints that take {takes}."
        )
    if api.output_fields:
        output = object_schema(api.output_fields, enums, "Output of every Kontext endpoint.")
        examples = [e for s in sorted(api.sources, key=lambda s: (s.kind, s.endpoint)) for e in s.output_examples]
        if examples:
            output["example"] = examples[0]
        schemas[OUTPUT_SCHEMA] = output
    schemas.update(dict(sorted(enums.items())))

    servers: list[dict[str, str]] = []
    for source in sorted(api.sources, key=lambda s: (s.kind, s.endpoint, s.name)):
        for server in source.servers:
            if all(s["url"] != server["url"] for s in servers):
                scheme = f"; Authorization: {source.auth_scheme}" if source.auth_scheme else ""
                servers.append({"url": server["url"], "description": f"Aggregator named by {source.name}{scheme}"})

    return {
        "openapi": "3.0.3",
        "info": {"title": "FLUX.1 Kontext on fal.ai", "version": "0.0.0"},
        "servers": servers,
        "paths": {e.path: {"post": submit_operation(e)} for e in api.endpoints},
        "components": {"schemas": schemas},
    }
