"""Turn merged source facts into the source-derived part of the OpenAPI document.

Only what the sources state goes in here: the submit operations, each endpoint's input and output
schemas, fal's named types and the examples, plus what follows from an endpoint's id alone: the app
its status, result and cancel live under (`x-fal-endpoint.app`) and the links from its submit to
them. Everything no source states (queue lifecycle, errors, security) comes from overrides/ after.
"""

from __future__ import annotations

import copy
import re
from typing import Any
from urllib.parse import urlsplit

from .merge import Endpoint, MergedApi, MergedField, MergedSchema, type_name
from .model import FAL_ORIGIN

_REF = "#/components/schemas/"
FAMILY_WORDS = {
    "edit": "an image edit",
    "multi-edit": "an image edit",
    "text-to-image": "an image generation from text",
}
# The queue operations a submit links to (defined in overrides/40-queue.overlay.yaml), by link name.
QUEUE_LINKS = {
    "GetRequestStatus": "get_request_status",
    "StreamRequestStatus": "stream_request_status",
    "GetRequestResult": "get_request_result",
    "CancelRequest": "cancel_request",
}


def _renamed(schema: Any, names: dict[str, str]) -> Any:
    """`schema` with every reference to a source's type name pointing at the spec's name for that type."""
    if isinstance(schema, list):
        return [_renamed(item, names) for item in schema]
    if not isinstance(schema, dict):
        return schema
    out = {key: _renamed(value, names) for key, value in schema.items()}
    if isinstance(out.get("$ref"), str) and out["$ref"].startswith(_REF):
        out["$ref"] = _REF + type_name(out["$ref"][len(_REF) :], names)
    return out


def field_schema(field: MergedField, names: dict[str, str]) -> dict[str, Any]:
    """The property schema of one merged field; an enum stays inline, one per schema (fal's OpenAPI does the
    same), so that two endpoints never share a value list by accident."""
    facts = field.facts
    schema: dict[str, Any] = _renamed(copy.deepcopy(facts.get("schema") or {}), names)
    if "enum" in facts:
        schema.setdefault("type", "string")
        schema["enum"] = [str(v) for v in facts["enum"]] if schema["type"] == "string" else list(facts["enum"])
    if "$ref" in schema and len(schema) == 1 and any(k in facts for k in ("description", "default", "nullable")):
        # A sibling of $ref is ignored in OpenAPI 3.0; allOf keeps the description and default.
        schema = {"allOf": [schema]}
    for keyword in (
        "description",
        "default",
        "nullable",
        "minimum",
        "maximum",
        "exclusiveMinimum",
        "exclusiveMaximum",
        "minLength",
        "maxLength",
        "minItems",
        "maxItems",
    ):
        if keyword in facts:
            schema[keyword] = facts[keyword]
    if "enum" in facts and "default" in schema and schema.get("type") == "string" and schema["default"] is not None:
        schema["default"] = str(schema["default"])
    return schema


def object_schema(merged: MergedSchema, names: dict[str, str], description: str) -> dict[str, Any]:
    """An object schema with a property per field, `required` from the merged facts."""
    required = [f.name for f in merged.fields if f.facts.get("required")]
    schema: dict[str, Any] = {"type": "object", "description": merged.description or description}
    if required:
        schema["required"] = required
    schema["properties"] = {f.name: field_schema(f, names) for f in merged.fields}
    return schema


def operation_id(endpoint_id: str) -> str:
    """`fal-ai/flux-pro/kontext/max/multi` -> `submit_flux_pro_kontext_max_multi`: the id without its owner, so
    that endpoints of different apps (`fal-ai/flux-kontext/dev`, `fal-ai/flux-1/dev`) never share a name."""
    segments = endpoint_id.strip("/").split("/")[1:]
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


def _listed(endpoints: list[str]) -> str:
    return ", ".join(f"`{e}`" for e in endpoints)


def submit_operation(endpoint: Endpoint) -> dict[str, Any]:
    """The POST operation of one endpoint, as far as its sources describe it, with `x-fal-endpoint`."""
    docs = next((s.docs_url for s in endpoint.sources if s.docs_url), None)
    described_by = ", ".join(s.name for s in endpoint.sources)
    what = FAMILY_WORDS[endpoint.family]
    description = f"Queues {what} on `{endpoint.id}`. Described by: {described_by}."
    if docs:
        description += f" fal's page: {docs}"
    media: dict[str, Any] = {"schema": {"$ref": _REF + endpoint.input_schema}}
    requests = _examples([(s.origin, e) for s in endpoint.sources for e in s.request_examples])
    if requests:
        media["examples"] = requests
    submitted: dict[str, Any] = {}
    answers = _examples([(s.origin, e) for s in endpoint.sources for e in s.submit_examples])
    if answers:
        submitted["examples"] = answers
    owner, app = endpoint.app.split("/", 1)
    links = {
        name: {
            "operationId": target,
            "parameters": {"owner": owner, "app": app, "request_id": "$response.body#/request_id"},
        }
        for name, target in QUEUE_LINKS.items()
    }
    # What the sources state about the endpoint, and its app; overrides/ add what they do not (tier, price).
    metadata: dict[str, Any] = {"id": endpoint.id, "app": endpoint.app, "family": endpoint.family}
    if endpoint.tier:
        metadata["tier"] = endpoint.tier
    if endpoint.image_field:
        metadata["image_field"] = endpoint.image_field
    if endpoint.output_schema:
        metadata["output_schema"] = endpoint.output_schema
    return {
        "operationId": operation_id(endpoint.id),
        "summary": f"Queue {what} on {endpoint.id}",
        "description": description,
        "tags": ["submit"],
        "x-fal-endpoint": metadata,
        "requestBody": {"required": True, "content": {"application/json": media}},
        "responses": {
            "200": {
                "description": "The request is queued.",
                "content": {"application/json": submitted},
                "links": links,
            }
        },
    }


def _is_fal_host(url: str) -> bool:
    host = (urlsplit(url).hostname or "").lower()
    return host in ("fal.run", "fal.ai") or host.endswith((".fal.run", ".fal.ai", ".fal.media"))


def build_document(api: MergedApi) -> dict[str, Any]:
    """The OpenAPI document the sources alone support (overrides/ complete it)."""
    names = api.type_names
    schemas: dict[str, Any] = {}
    for merged in api.inputs:
        schemas[merged.name] = object_schema(merged, names, f"Input of {_listed(merged.endpoints)}.")
    for merged in api.outputs:
        output = object_schema(merged, names, f"Output of {_listed(merged.endpoints)}.")
        examples = [e for s in sorted(merged.sources, key=lambda s: (s.trust, s.name)) for e in s.output_examples]
        if examples:
            output["example"] = examples[0]
        schemas[merged.name] = output
    for merged in api.types:
        schemas[merged.name] = object_schema(merged, names, f"fal's {merged.name}.")

    servers: list[dict[str, str]] = []
    for source in sorted(api.sources, key=lambda s: (s.trust, s.endpoint_id, s.name)):
        if source.origin == FAL_ORIGIN:
            continue  # fal's own hosts are stated once, by overrides/10-document.overlay.yaml
        for server in source.servers:
            if _is_fal_host(server["url"]):
                continue  # an aggregator's document that names fal's host names fal, not itself
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
