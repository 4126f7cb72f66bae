"""The normalised OpenAPI spec shipped with the generated package, read once: endpoints, operations, schemas.

Input checks, URL handling and the endpoint list read ranges, enums, paths and endpoints from here, so there is no
second copy of the contract. ``resolve`` is the one ``$ref`` resolver of the client and the contract kit
(``contracts/`` passes its own copy of the document); ``to_json_schema`` is the one translation of its OpenAPI 3.0
schemas to JSON Schema draft 4, which the input checks, the emulator and the proxy validate with.
"""

from __future__ import annotations

import functools
import importlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import resources
from types import ModuleType
from typing import Any, Literal, cast

__all__ = [
    "EndpointSpec",
    "app_of",
    "credentials_required",
    "endpoint_spec",
    "endpoint_specs",
    "generated_model",
    "operation_module",
    "operation_path",
    "output_schemas",
    "parameter_schema",
    "resolve",
    "resolved_schema",
    "spec",
    "to_json_schema",
]

GENERATED_PACKAGE = "fal_kontext_api"

# The queue operation whose answer is an endpoint's output (protocol.commands.Operation names every queue operation).
RESULT_OPERATION = "get_request_result"

Family = Literal["edit", "multi-edit", "text-to-image"]


@functools.cache
def spec() -> dict[str, Any]:
    """The whole spec (``fal_kontext_api/openapi.json``) as a dict."""
    text = (resources.files(GENERATED_PACKAGE) / "openapi.json").read_text(encoding="utf-8")
    return cast(dict[str, Any], json.loads(text))


def resolve(node: Mapping[str, Any], document: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """``node`` with a local ``$ref`` (and a one-element ``allOf``, how the spec attaches descriptions to enums)
    replaced by its target; keys beside the reference win. ``document`` defaults to the shipped spec."""
    root: Mapping[str, Any] = spec() if document is None else document
    resolved = dict(node)
    while True:
        if "$ref" in resolved:
            target: Any = root
            for part in str(resolved["$ref"]).removeprefix("#/").split("/"):
                target = target[part]
            resolved = {**target, **{k: v for k, v in resolved.items() if k != "$ref"}}
        elif len(resolved.get("allOf", ())) == 1:
            inner = resolve(resolved["allOf"][0], root)
            resolved = {**inner, **{k: v for k, v in resolved.items() if k != "allOf"}}
        else:
            return resolved


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


@functools.cache
def resolved_schema(name: str) -> dict[str, Any]:
    """A component schema with each property's ``$ref``/``allOf`` resolved one level (enough for our inputs)."""
    schema = dict(spec()["components"]["schemas"][name])
    if "properties" in schema:
        schema["properties"] = {key: resolve(value) for key, value in schema["properties"].items()}
    return schema


@functools.cache
def parameter_schema(name: str) -> dict[str, Any]:
    """The schema of a component parameter, e.g. ``RequestTimeout``."""
    return resolve(spec()["components"]["parameters"][name]["schema"])


@functools.cache
def credentials_required() -> bool:
    """Whether the spec's operations need a credential: its ``security`` names schemes and offers no empty
    alternative (``{}``, which OpenAPI reads as "or none")."""
    requirements = spec().get("security") or []
    return bool(requirements) and all(requirements)


def _operations(document: Mapping[str, Any] | None = None) -> list[tuple[str, str, dict[str, Any]]]:
    return [
        (path, method, operation)
        for path, item in (spec() if document is None else document)["paths"].items()
        for method, operation in item.items()
        if method != "parameters"
    ]


@functools.cache
def operation_path(operation_id: str) -> str:
    """The path template of an operation, e.g. ``/{owner}/{app}/requests/{request_id}/status``."""
    for path, _, operation in _operations():
        if operation.get("operationId") == operation_id:
            return path
    raise KeyError(f"no operation {operation_id!r} in the spec")


@functools.cache
def operation_module(operation_id: str) -> ModuleType:
    """The generated module of an operation (``fal_kontext_api.api.<tag>.<operationId>``), which holds its two
    pure halves, ``request_kwargs`` and ``parse_response`` (see ``scripts/templates/``)."""
    for _, _, operation in _operations():
        if operation.get("operationId") == operation_id:
            tag = (operation.get("tags") or ["default"])[0]
            return importlib.import_module(f"{GENERATED_PACKAGE}.api.{tag}.{operation_id}")
    raise KeyError(f"no operation {operation_id!r} in the spec")


@dataclass(frozen=True, slots=True)
class EndpointSpec:
    """One submit operation of the spec and what it is for (``x-fal-endpoint``, see ``endpoint_specs``).

    Attributes:
        id: The endpoint id, e.g. ``fal-ai/flux-pro/kontext`` (the submit path without its leading slash).
        app: ``owner/app``, under which fal serves the endpoint's status, result and cancel (``fal-ai/flux-pro``).
        family: ``"edit"`` (one input image), ``"multi-edit"`` (several) or ``"text-to-image"``.
        tier: The model tier ``model=`` selects, e.g. ``"pro"`` or ``"max"``; None for an endpoint outside the tiers
            (callable by its id only).
        image_field: The input's image field (``image_url``/``image_urls``), None for text-to-image.
        operation_id: The submit's operationId (its generated module's name).
        input_schema: The component schema name of the input ("" where a document other than the shipped spec
            writes its input inline).
        output_schema: The component schema name of the result (the queue result's), if the spec names one.
        price_usd_per_image: The price per image where a source states it, else None.
    """

    id: str
    app: str
    family: Family
    tier: str | None
    image_field: str | None
    operation_id: str
    input_schema: str
    output_schema: str | None
    price_usd_per_image: float | None


def _schema_name(node: Mapping[str, Any] | None) -> str | None:
    ref = (node or {}).get("$ref")
    return str(ref).rsplit("/", 1)[-1] if ref else None


def app_of(endpoint_id: str) -> str:
    """The app of an endpoint id: its first two segments (three under fal's namespaces ``workflows/``, ``comfy/``,
    as fal_client's ``APP_NAMESPACES``), where fal serves its status, result and cancel ("Do not add the endpoint
    path", https://fal.ai/docs/api-reference/inference-api)."""
    parts = endpoint_id.strip("/").split("/")
    return "/".join(parts[: 3 if parts[0] in ("workflows", "comfy") else 2])


def endpoint_spec(path: str, operation: Mapping[str, Any], document: Mapping[str, Any] | None = None) -> EndpointSpec:
    """The endpoint of a submit operation of ``document`` (default: the shipped spec): its ``x-fal-endpoint`` where
    present, else derived from the path and the input schema (``image_url`` -> edit, ``image_urls`` -> multi-edit,
    none -> text-to-image; no tier)."""
    extension: Mapping[str, Any] = operation.get("x-fal-endpoint") or {}
    schema = operation["requestBody"]["content"]["application/json"]["schema"]
    required = resolve(schema, document).get("required", [])
    derived_field = next((str(name) for name in required if str(name).startswith("image_url")), None)
    image_field = extension.get("image_field", derived_field)
    derived_family: Family = (
        "text-to-image" if image_field is None else "multi-edit" if image_field == "image_urls" else "edit"
    )
    price = extension.get("price_usd_per_image")
    endpoint_id = str(extension.get("id", path.lstrip("/")))
    tier = extension.get("tier")
    return EndpointSpec(
        id=endpoint_id,
        app=str(extension.get("app") or app_of(endpoint_id)),
        family=extension.get("family", derived_family),
        tier=str(tier) if tier else None,
        image_field=image_field,
        operation_id=str(operation["operationId"]),
        input_schema=_schema_name(schema) or "",
        output_schema=extension.get("output_schema", _result_schema(document)),
        price_usd_per_image=float(price) if price is not None else None,
    )


def _result_schema(document: Mapping[str, Any] | None) -> str | None:
    """The schema of the queue's result (every endpoint's output until the spec says otherwise per endpoint)."""
    for _, _, operation in _operations(document):
        if operation.get("operationId") == RESULT_OPERATION:
            content = operation.get("responses", {}).get("200", {}).get("content", {})
            return _schema_name(content.get("application/json", {}).get("schema"))
    return None


@functools.cache
def output_schemas() -> tuple[str, ...]:
    """Every endpoint's output schema name, in the spec's order, each once."""
    return tuple(dict.fromkeys(item.output_schema for item in endpoint_specs() if item.output_schema))


def generated_model(schema: str) -> Any:
    """The generated attrs class of a component schema (``fal_kontext_api.models.<schema>``)."""
    return getattr(importlib.import_module(f"{GENERATED_PACKAGE}.models"), schema)


@functools.cache
def endpoint_specs() -> tuple[EndpointSpec, ...]:
    """Every endpoint of the shipped spec, in its order (``endpoints_of``)."""
    return endpoints_of(spec())


def endpoints_of(document: Mapping[str, Any]) -> tuple[EndpointSpec, ...]:
    """Every endpoint of an OpenAPI document (each ``POST`` with a JSON body), in the document's order. The
    emulator reads the spec it serves with this too, so that client and emulator agree on what an endpoint is."""
    return tuple(
        endpoint_spec(path, operation, document)
        for path, method, operation in _operations(document)
        if method == "post" and "application/json" in operation.get("requestBody", {}).get("content", {})
    )
