"""Merge what the sources say into one set of facts per field, reporting each disagreement resolved.

Endpoints and families. Every source names its endpoint; the image field its input states decides
the endpoint's family (`image_url`: "edit", `image_urls`: "multi-edit", neither: "text-to-image").
The endpoints of one family share one input schema (fal documents pro and max as having the same
schema: https://fal.ai/models/fal-ai/flux-pro/kontext/max/api), whose fields are the fields the
family's own sources state: a field stated only by another family's page does not leak onto it (an
override in overrides/ can add it, with its source).

Facts. For each attribute of a field, the most trusted source that states it decides (fal's
documentation first, see SourceKind); among equally trusted sources, those of the field's own
family come first. fal documents the fields as identical across the Kontext endpoints, so a fact
from another family's page fills a gap, except defaults: fal states different defaults per
family (`aspect_ratio` "1:1" for text-to-image only), so a default comes only from the family's own
sources. A less trusted source stating something else is reported, never silently dropped; two
equally trusted, equally close sources that disagree on a fact are an error (the file name never
breaks a tie). Descriptions are wording, not facts: among equals, the source of the endpoint id that
sorts first gives it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .model import FieldFacts, Resolution, SourceDocument, SourceError

# The image field that tells the families apart (fal-protocol.md §1.2); no image field: text-to-image.
IMAGE_FIELDS = {"image_url": "edit", "image_urls": "multi-edit"}
TEXT_TO_IMAGE = "text-to-image"
FAMILIES = ("edit", "multi-edit", TEXT_TO_IMAGE)
# Descriptions differ in wording between every pair of sources; only facts are compared.
_COMPARED = ("schema", "required", "default", "minimum", "maximum", "enum")
# Attributes decided by the family's own sources only.
_FAMILY_ONLY = ("default",)


@dataclass
class MergedField:
    """A field's merged facts, with the source each attribute came from."""

    name: str
    facts: dict[str, Any] = field(default_factory=dict)
    origin: dict[str, str] = field(default_factory=dict)


@dataclass
class Endpoint:
    """One endpoint, its family, the tier its sources state (if any) and its sources, most trusted first."""

    path: str
    family: str
    image_field: str | None
    tier: str | None
    sources: list[SourceDocument]


@dataclass
class MergedApi:
    """Everything the sources say, merged: input fields per family, the shared output fields."""

    endpoints: list[Endpoint]
    family_fields: dict[str, list[MergedField]]
    output_fields: list[MergedField]
    sources: list[SourceDocument]
    resolutions: list[Resolution]


def _same(attribute: str, a: Any, b: Any) -> bool:
    if attribute == "enum":
        return sorted(map(str, a)) == sorted(map(str, b))
    if isinstance(a, bool) or isinstance(b, bool):
        return a is b
    if attribute in ("default", "minimum", "maximum") and isinstance(a, int | float) and isinstance(b, int | float):
        return float(a) == float(b)
    return bool(a == b)


def _trust(source: SourceDocument) -> tuple[int, str]:
    """Order sources by trust, then by endpoint id (never by file name)."""
    return (int(source.kind), source.endpoint)


def _fold(
    name: str, stated: list[tuple[SourceDocument, FieldFacts]], subject: str, family: set[str]
) -> tuple[MergedField, list[Resolution]]:
    """Merge one field's facts as stated by several sources; `family` holds the endpoints of its own family."""
    merged = MergedField(name=name)
    resolutions: list[Resolution] = []

    def rank(pair: tuple[SourceDocument, FieldFacts]) -> tuple[int, bool]:
        return (int(pair[0].kind), pair[0].endpoint not in family)

    ordered = sorted(stated, key=lambda pair: (*rank(pair), pair[0].endpoint))
    for attribute in ("schema", "required", "description", "default", "minimum", "maximum", "enum", "enum_name"):
        candidates = [
            (source, facts.stated()[attribute])
            for source, facts in ordered
            if attribute in facts.stated() and (attribute not in _FAMILY_ONLY or source.endpoint in family)
        ]
        if not candidates:
            continue
        best, value = candidates[0]
        merged.facts[attribute] = value
        merged.origin[attribute] = best.name
        if attribute not in _COMPARED:
            continue
        best_rank = rank((best, FieldFacts(name)))
        for source, other in candidates[1:]:
            if _same(attribute, value, other):
                continue
            if rank((source, FieldFacts(name))) == best_rank:
                raise SourceError(
                    source.path,
                    None,
                    f"{subject}.{name}.{attribute}: says {other!r} but {best.name}, equally trusted, says {value!r}; "
                    "the pipeline does not choose between equals: state the fact in an override and say why",
                )
            if source.endpoint not in family:
                continue  # another family's source: reported where it belongs
            kept = f"kept {value!r} from {best.name}"
            resolutions.append(Resolution(f"{subject}.{name}.{attribute}", f"{source.name} says {other!r}; {kept}"))
    return merged, resolutions


def _ordered_names(sources: list[SourceDocument], attr: str) -> list[str]:
    names: list[str] = []
    for source in sorted(sources, key=_trust):
        for facts in getattr(source, attr):
            if facts.name not in names:
                names.append(facts.name)
    return names


def _endpoint(path: str, docs: list[SourceDocument]) -> Endpoint:
    images = sorted({f.name for s in docs for f in s.input_fields if f.name in IMAGE_FIELDS})
    if len(images) > 1:
        raise SourceError(docs[0].path, None, f"{path}: its sources state both {images}; an endpoint takes one")
    tiers = sorted({s.tier for s in docs if s.tier})
    if len(tiers) > 1:
        raise SourceError(docs[0].path, None, f"{path}: its sources name several model tiers {tiers}")
    image = images[0] if images else None
    family = IMAGE_FIELDS[image] if image else TEXT_TO_IMAGE
    return Endpoint(path=path, family=family, image_field=image, tier=tiers[0] if tiers else None, sources=docs)


def merge(sources: list[SourceDocument]) -> MergedApi:
    """Merge the sources' facts. Raises SourceError when an endpoint's family or a tie cannot be decided."""
    resolutions: list[Resolution] = []
    by_path: dict[str, list[SourceDocument]] = {}
    for source in sources:
        by_path.setdefault(source.endpoint, []).append(source)
    endpoints = [_endpoint(path, sorted(by_path[path], key=_trust)) for path in sorted(by_path)]

    family_fields: dict[str, list[MergedField]] = {}
    for family in FAMILIES:
        members = {e.path for e in endpoints if e.family == family}
        own = [s for s in sources if s.endpoint in members]
        if not own:
            continue
        fields: list[MergedField] = []
        # The family's fields, in the order of the most trusted page that lists them (fal's order).
        members_fields = set(_ordered_names(own, "input_fields"))
        for name in [n for n in _ordered_names(sources, "input_fields") if n in members_fields]:
            stated = [(s, f) for s in sources for f in s.input_fields if f.name == name]
            merged, found = _fold(name, stated, f"input[{family}]", members)
            resolutions += found
            fields.append(merged)
        family_fields[family] = fields

    outputs: list[MergedField] = []
    everyone = {e.path for e in endpoints}
    for name in _ordered_names(sources, "output_fields"):
        stated = [(s, f) for s in sources for f in s.output_fields if f.name == name]
        merged, found = _fold(name, stated, "output", everyone)
        resolutions += found
        outputs.append(merged)

    schemes = sorted({(s.auth_scheme, s.kind.label) for s in sources if s.auth_scheme})
    if len({scheme for scheme, _ in schemes}) > 1:
        said = "; ".join(f"{label}: {scheme}" for scheme, label in schemes)
        resolutions.append(Resolution("security", f"sources disagree ({said}); the spec offers both schemes"))
    for source in sorted(sources, key=_trust):
        resolutions += [Resolution(source.name, repair) for repair in source.repairs]
    return MergedApi(endpoints, family_fields, outputs, sources, resolutions)
