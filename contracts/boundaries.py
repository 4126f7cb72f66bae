"""Request-side drift: the boundary values the spec allows, one job each, and what they cost.

A server whose limits drifted from the spec (the spec allows `num_images` up to 4, the server 2; an aspect ratio the
relay no longer forwards) answers a valid request with a refusal, which only sending it shows. The cases come from the
spec's input schema: every enum value, both ends of every numeric range, both values of every boolean; each case is
the paid jobs' input (contracts/paid_job.py) with one field changed. On a remote server each case is a paid
job, so the run is opt-in (`--contract-boundaries`) and its computed cost must be confirmed (`--confirm-cost USD`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from contracts.paid_job import input_properties
from contracts.target import ContractTarget
from fal_kontext import APIError, Handle, InvalidInputError, Kontext
from fal_kontext.spec import EndpointSpec

__all__ = ["BoundaryCase", "boundary_cases", "cost_of", "send_cases"]


@dataclass(frozen=True)
class BoundaryCase:
    """One valid input at a boundary of the spec: which field, which value, and the whole input."""

    field: str
    value: Any
    input: dict[str, Any]

    @property
    def images(self) -> int:
        return int(self.input.get("num_images", 1))

    def __str__(self) -> str:
        return f"{self.field}={self.value!r}"


def _values(schema: dict[str, Any]) -> list[Any]:
    if schema.get("enum"):
        return list(schema["enum"])
    kind = schema.get("type")
    if kind == "boolean":
        return [True, False]
    if kind in ("integer", "number"):
        step = 1 if kind == "integer" else 0.01
        ends = []
        if "minimum" in schema:
            ends.append(schema["minimum"] + (step if schema.get("exclusiveMinimum") is True else 0))
        if "maximum" in schema:
            ends.append(schema["maximum"] - (step if schema.get("exclusiveMaximum") is True else 0))
        return ends
    return []


def boundary_cases(endpoint: EndpointSpec, baseline: dict[str, Any]) -> list[BoundaryCase]:
    """Every boundary value of `endpoint`'s input schema, each applied to `baseline` (values equal to it skipped)."""
    cases = []
    for name, schema in input_properties(endpoint.id).items():
        for value in _values(schema):
            if baseline.get(name) != value:
                cases.append(BoundaryCase(name, value, {**baseline, name: value}))
    return cases


def cost_of(cases: list[BoundaryCase], endpoint: EndpointSpec) -> float | None:
    """What the cases cost at the spec's price per image; None when the spec states no price."""
    price = endpoint.price_usd_per_image
    return None if price is None else round(sum(price * case.images for case in cases), 4)


def send_cases(target: ContractTarget, endpoint: EndpointSpec, cases: list[BoundaryCase]) -> list[str]:
    """Submit every case through the client, wait for each, and say which the server refused or mishandled.

    A refusal at submit, a failed request, or a number of images other than `num_images` is reported.
    """
    problems: list[str] = []
    with Kontext(target.secret, auth=target.auth, base_url=target.base_url, wait_timeout=300) as kontext:
        submitted: list[tuple[BoundaryCase, Handle]] = []
        for case in cases:
            try:
                submitted.append((case, kontext.submit(endpoint.id, case.input)))
            except (APIError, InvalidInputError) as err:
                problems.append(f"{case}: refused at submit: {err}")
        for case, handle in submitted:
            try:
                result = handle.wait()
            except APIError as err:
                problems.append(f"{case}: failed: {err}")
                continue
            if len(result.images) != case.images:
                problems.append(f"{case}: {case.images} images asked for, {len(result.images)} came back")
    return problems
