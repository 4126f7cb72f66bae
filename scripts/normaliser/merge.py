"""Merge what the sources say into one set of facts per field, reporting each disagreement resolved.

The rule: the most trusted source that states an attribute decides it (fal's documentation first,
see SourceKind); a less trusted source stating something else is reported, never silently dropped.

Kontext's single- and multi-image endpoints take the same fields except the image one
(fal-protocol.md §1.2: "identical for pro and max; single vs multi differ only in the image
field"), so facts about shared fields pool across all sources, and the image field decides which
family an endpoint belongs to.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .model import FieldFacts, Resolution, SourceDocument, SourceError

# The image field that tells a single-image endpoint from a multi-image one (fal-protocol.md §1.2).
IMAGE_FIELDS = {"image_url": "single", "image_urls": "multi"}
# Descriptions differ in wording between every pair of sources; only facts are compared.
_COMPARED = ("schema", "required", "default", "minimum", "maximum", "enum")


@dataclass
class MergedField:
    """A field's merged facts, with the source each attribute came from."""

    name: str
    facts: dict[str, Any] = field(default_factory=dict)
    origin: dict[str, str] = field(default_factory=dict)


@dataclass
class Endpoint:
    """One edit endpoint and the sources that describe it, most trusted first."""

    path: str
    family: str
    sources: list[SourceDocument]


@dataclass
class MergedApi:
    """Everything the sources say, merged."""

    endpoints: list[Endpoint]
    shared_fields: list[MergedField]
    image_fields: dict[str, MergedField]
    output_fields: list[MergedField]
    sources: list[SourceDocument]
    resolutions: list[Resolution]


def _same(attribute: str, a: Any, b: Any) -> bool:
    if attribute == "enum":
        return sorted(map(str, a)) == sorted(map(str, b))
    if attribute in ("default", "minimum", "maximum") and isinstance(a, int | float) and isinstance(b, int | float):
        return float(a) == float(b) and not isinstance(a, bool) and not isinstance(b, bool)
    return bool(a == b)


def _fold(
    name: str, stated: list[tuple[SourceDocument, FieldFacts]], subject: str
) -> tuple[MergedField, list[Resolution]]:
    merged = MergedField(name=name)
    resolutions: list[Resolution] = []
    for source, facts in sorted(stated, key=lambda pair: (pair[0].kind, pair[0].name)):
        for attribute, value in facts.stated().items():
            if attribute not in merged.facts:
                merged.facts[attribute] = value
                merged.origin[attribute] = source.name
            elif attribute in _COMPARED and not _same(attribute, merged.facts[attribute], value):
                kept = f"kept {merged.facts[attribute]!r} from {merged.origin[attribute]}"
                resolutions.append(Resolution(f"{subject}.{name}.{attribute}", f"{source.name} says {value!r}; {kept}"))
    return merged, resolutions


def _ordered_names(sources: list[SourceDocument], attr: str) -> list[str]:
    names: list[str] = []
    for source in sorted(sources, key=lambda s: (s.kind, s.name)):
        for facts in getattr(source, attr):
            if facts.name not in names:
                names.append(facts.name)
    return names


def merge(sources: list[SourceDocument]) -> MergedApi:
    """Merge the sources' facts. Raises SourceError when an endpoint's family cannot be told."""
    resolutions: list[Resolution] = []
    by_path: dict[str, list[SourceDocument]] = {}
    for source in sources:
        by_path.setdefault(source.endpoint, []).append(source)

    endpoints: list[Endpoint] = []
    for path in sorted(by_path):
        docs = sorted(by_path[path], key=lambda s: (s.kind, s.name))
        families = {IMAGE_FIELDS[f.name] for s in docs for f in s.input_fields if f.name in IMAGE_FIELDS}
        if len(families) != 1:
            raise SourceError(
                docs[0].path,
                None,
                f"{path}: expected exactly one of {sorted(IMAGE_FIELDS)}, found {sorted(families) or 'none'}",
            )
        endpoints.append(Endpoint(path=path, family=families.pop(), sources=docs))

    shared: list[MergedField] = []
    image_fields: dict[str, MergedField] = {}
    for name in _ordered_names(sources, "input_fields"):
        stated = [(s, f) for s in sources for f in s.input_fields if f.name == name]
        merged, found = _fold(name, stated, "input")
        resolutions += found
        if name in IMAGE_FIELDS:
            image_fields[IMAGE_FIELDS[name]] = merged
        else:
            shared.append(merged)

    outputs: list[MergedField] = []
    for name in _ordered_names(sources, "output_fields"):
        stated = [(s, f) for s in sources for f in s.output_fields if f.name == name]
        merged, found = _fold(name, stated, "output")
        resolutions += found
        outputs.append(merged)

    schemes = sorted({(s.auth_scheme, s.kind.label) for s in sources if s.auth_scheme})
    if len({scheme for scheme, _ in schemes}) > 1:
        said = "; ".join(f"{label}: {scheme}" for scheme, label in schemes)
        resolutions.append(Resolution("security", f"sources disagree ({said}); the spec offers both schemes"))
    for source in sources:
        resolutions += [Resolution(source.name, repair) for repair in source.repairs]
    return MergedApi(endpoints, shared, image_fields, outputs, sources, resolutions)
