"""The submit endpoints the spec describes: id, family, tier and input image field, one place for all of them.

The spec's `x-fal-endpoint` extension wins when present. Until every spec carries it, the same facts are
derived from the operation (the emulator's copy of the fallback the client's `fal_kontext.spec` keeps: the
emulator reads the shipped spec on its own on purpose, as an independent oracle of the contract).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from fal_kontext_emulator.spec_document import resolve

JsonObject = dict[str, Any]
Family = Literal["edit", "multi-edit", "text-to-image"]


@dataclass(frozen=True)
class EndpointSpec:
    """One submit endpoint of the spec.

    Attributes:
        id: the endpoint id, e.g. `fal-ai/flux-pro/kontext` (the submit path without its leading slash).
        app: `owner/app`, under which the queue serves its requests' status, result and cancel.
        family: `edit` (one input image), `multi-edit` (several) or `text-to-image` (none).
        tier: the model tier, e.g. `pro` or `max`; None outside the tiers.
        image_field: the input's image field (`image_url`, `image_urls`), None for text-to-image.
        operation_id: the submit operation's id.
        input_schema: the request body schema (`$ref`s resolved at the top level).
        output_schema: the schema of what the result answers (`$ref`s resolved at the top level): the
            extension's `output_schema` (a component name, or a schema) where present, else the queue result's.
        price_usd_per_image: the price, where the spec states one.
    """

    id: str
    app: str
    family: Family
    tier: str | None
    image_field: str | None
    operation_id: str
    input_schema: JsonObject
    output_schema: JsonObject
    price_usd_per_image: float | None = None


def _json_schema(spec: JsonObject, holder: JsonObject | None) -> JsonObject:
    content = resolve(spec, holder or {}).get("content", {}).get("application/json", {})
    schema = resolve(spec, content.get("schema", {}))
    return schema if isinstance(schema, dict) else {}


def _result_schema(spec: JsonObject) -> JsonObject:
    """The 200 schema of the GET operation on `.../requests/{request_id}` (the queue result)."""
    for path, item in spec.get("paths", {}).items():
        if path.rstrip("/").endswith("/requests/{request_id}") and "get" in item:
            return _json_schema(spec, item["get"].get("responses", {}).get("200"))
    return {}


def _image_field(input_schema: JsonObject) -> str | None:
    required = input_schema.get("required", [])
    fields = [name for name in required if str(name).startswith("image_url")]
    return str(fields[0]) if fields else None


def _output_schema(spec: JsonObject, declared: Any, fallback: JsonObject) -> JsonObject:
    if isinstance(declared, str):
        declared = {"$ref": f"#/components/schemas/{declared}"}
    schema = resolve(spec, declared) if isinstance(declared, dict) else None
    return schema if isinstance(schema, dict) else fallback


def is_submit(path: str, method: str) -> bool:
    """Whether an operation is a submit: a POST on a path without a request id."""
    return method == "post" and "{request_id}" not in path


def endpoint_specs(spec: JsonObject) -> tuple[EndpointSpec, ...]:
    """Every submit endpoint of `spec`, in spec order."""
    result_schema = _result_schema(spec)
    found = []
    for path, item in spec.get("paths", {}).items():
        operation = item.get("post")
        if operation is None or not is_submit(path, "post"):
            continue
        declared: JsonObject = operation.get("x-fal-endpoint", {})
        input_schema = _json_schema(spec, operation.get("requestBody"))
        # In the extension, no image_field means text-to-image.
        image_field = declared.get("image_field") if declared else _image_field(input_schema)
        family: Family = (
            "text-to-image" if image_field is None else "multi-edit" if image_field.endswith("s") else "edit"
        )
        price = declared.get("price_usd_per_image")
        endpoint_id = str(declared.get("id", path.strip("/")))
        tier = declared.get("tier")
        found.append(
            EndpointSpec(
                id=endpoint_id,
                app=str(declared.get("app") or "/".join(endpoint_id.split("/")[:2])),
                family=declared.get("family", family),
                tier=str(tier) if tier else None,
                image_field=image_field,
                operation_id=str(operation["operationId"]),
                input_schema=input_schema,
                output_schema=_output_schema(spec, declared.get("output_schema"), result_schema),
                price_usd_per_image=float(price) if price is not None else None,
            )
        )
    return tuple(found)
