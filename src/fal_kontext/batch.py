"""Batch edits: many jobs from a JSON lines manifest, with bounded concurrency, a crash-safe journal and a cost guard.

This module uses only the public client API (``Kontext``/``AsyncKontext``, their handles and errors).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

from .spec import spec

__all__ = ["EndpointSpec", "endpoint_specs"]


@dataclass(frozen=True)
class EndpointSpec:
    """One submit operation of the spec and what it is (``x-fal-endpoint``, interfaces §1).

    Attributes:
        id: The endpoint id, e.g. ``fal-ai/flux-pro/kontext`` (the submit path without its leading slash).
        family: ``edit`` (one input image), ``multi-edit`` (several) or ``text-to-image`` (none).
        tier: The model tier (``pro``, ``max``, ...), what ``model=`` selects.
        image_field: The input's image field, None for text-to-image.
        operation_id: The spec's operationId of the submit.
        input_schema: The component schema name of the input.
        output_schema: The component schema name of the result, if the spec names one.
        price_usd_per_image: The price a source or an override states, or None (unknown).
    """

    id: str
    family: str
    tier: str
    image_field: str | None
    operation_id: str
    input_schema: str
    output_schema: str | None
    price_usd_per_image: float | None


def _ref_name(node: Any) -> str | None:
    if isinstance(node, dict) and isinstance(node.get("$ref"), str):
        return str(node["$ref"]).rsplit("/", 1)[-1]
    return None


@functools.cache
def endpoint_specs() -> tuple[EndpointSpec, ...]:
    """Every submit operation of the spec, in spec order.

    A local copy of ``fal_kontext.spec.endpoint_specs`` (interfaces §1) until that one lands: the ``x-fal-endpoint``
    extension wins; without it ``family``, ``tier`` and ``image_field`` are derived from the path and input schema.
    """
    document = spec()
    schemas = document["components"]["schemas"]
    found: list[EndpointSpec] = []
    for path, item in document["paths"].items():
        operation = item.get("post")
        if not isinstance(operation, dict) or "requestBody" not in operation:
            continue
        body = operation["requestBody"]["content"]["application/json"]["schema"]
        input_schema = _ref_name(body)
        if input_schema is None:
            continue
        required = [str(name) for name in schemas[input_schema].get("required", ())]
        image_field = next((name for name in required if name.startswith("image_url")), None)
        derived_family = {"image_url": "edit", "image_urls": "multi-edit"}.get(image_field or "", "text-to-image")
        extension: dict[str, Any] = operation.get("x-fal-endpoint") or {}
        price = extension.get("price_usd_per_image")
        found.append(
            EndpointSpec(
                id=str(extension.get("id") or path.lstrip("/")),
                family=str(extension.get("family") or derived_family),
                tier=str(extension.get("tier") or ("max" if "max" in path.split("/") else "pro")),
                image_field=extension.get("image_field", image_field),
                operation_id=str(operation["operationId"]),
                input_schema=input_schema,
                # The result operation is shared by every endpoint, so the spec names no output per endpoint.
                output_schema=None,
                price_usd_per_image=float(price) if isinstance(price, (int, float)) else None,
            )
        )
    return tuple(found)
