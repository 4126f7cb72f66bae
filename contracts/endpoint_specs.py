"""The spec's submit endpoints with their metadata, for the contract kit.

A local copy of the interface `fal_kontext.spec.endpoint_specs()` (same signature and fallback rules), kept here
only until that function is on the main branch; then this module goes and its readers import the client's.
The `x-fal-endpoint` extension of a submit operation wins; without it each field is derived from the spec.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

from fal_kontext.spec import spec

__all__ = ["EndpointSpec", "endpoint_specs"]


@dataclass(frozen=True)
class EndpointSpec:
    """One submit endpoint of the spec."""

    id: str
    family: str
    tier: str
    image_field: str | None
    operation_id: str
    input_schema: str
    output_schema: str
    price_usd_per_image: float | None


def _schema_name(node: dict[str, Any]) -> str:
    return str(node["$ref"]).rsplit("/", 1)[-1]


@functools.cache
def endpoint_specs() -> tuple[EndpointSpec, ...]:
    """Every submit operation (`paths["/<endpoint-id>"].post`) of the spec, in the spec's order."""
    document = spec()
    found = []
    for path, item in document["paths"].items():
        operation = item.get("post")
        if operation is None:
            continue
        extension = operation.get("x-fal-endpoint", {})
        input_schema = _schema_name(operation["requestBody"]["content"]["application/json"]["schema"])
        output_schema = _output_schema(document)
        required = document["components"]["schemas"][input_schema].get("required", [])
        derived_field = next((str(name) for name in required if str(name).startswith("image_url")), None)
        image_field = extension.get("image_field", derived_field)
        derived_family = {"image_url": "edit", "image_urls": "multi-edit"}.get(image_field or "", "text-to-image")
        price = extension.get("price_usd_per_image")
        found.append(
            EndpointSpec(
                id=str(extension.get("id", path.removeprefix("/"))),
                family=str(extension.get("family", derived_family)),
                tier=str(extension.get("tier", "max" if "max" in path.split("/") else "pro")),
                image_field=image_field,
                operation_id=str(operation["operationId"]),
                input_schema=input_schema,
                output_schema=output_schema,
                price_usd_per_image=float(price) if price is not None else None,
            )
        )
    return tuple(found)


def _output_schema(document: dict[str, Any]) -> str:
    """The schema of the result operation's 200 answer (one output schema for every endpoint in the current spec)."""
    for item in document["paths"].values():
        operation = item.get("get", {})
        if operation.get("operationId") == "get_request_result":
            return _schema_name(operation["responses"]["200"]["content"]["application/json"]["schema"])
    return ""
