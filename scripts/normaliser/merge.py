"""Merge what the sources say into one schema per endpoint, reporting each disagreement resolved.

Endpoints. Every source names its endpoint. An endpoint's input and output schemas are built from its
own sources only: adding, removing or re-rendering one endpoint's document never changes another
endpoint's schemas. Where fal publishes several endpoints with one schema, an override declares it
(shares.py) and the declared endpoints' sources describe that one schema together; sharing an image
field or a family never makes two endpoints share a schema.

The image field an endpoint's input states gives its family, which the client's verbs choose by
(`image_url`: "edit", `image_urls`: "multi-edit", neither: "text-to-image").

Facts. For each fact of a field (its type, required-ness, default, range, values), the most trusted
source that states it decides (SourceDocument.trust: fal's documents before aggregators', structured
before prose). A less trusted source stating something else is reported, never silently dropped;
two equally trusted sources that disagree on a fact are an error naming both (the file name never
breaks a tie). Descriptions are wording, not facts: the most trusted source gives them.

Named types (the items of `images`, `ImageSize`) are fal's: one type per name across every endpoint,
its fields merged the same way from every source that defines it.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from .model import FieldFacts, Resolution, SourceDocument, SourceError
from .shares import Declarations, Part

# The image field that tells the families apart; no image field: text-to-image.
IMAGE_FIELDS = {"image_url": "edit", "image_urls": "multi-edit"}
TEXT_TO_IMAGE = "text-to-image"
FAMILIES = ("edit", "multi-edit", TEXT_TO_IMAGE)
# Facts compared between sources (descriptions are wording).
_COMPARED = (
    "schema",
    "required",
    "nullable",
    "default",
    "enum",
    "minimum",
    "maximum",
    "exclusiveMinimum",
    "exclusiveMaximum",
    "minLength",
    "maxLength",
    "minItems",
    "maxItems",
)
_ORDER = ("schema", "required", "nullable", "description", "default", "enum", *_COMPARED[5:])
# fal's namespaced apps keep a third segment in their app id (fal_client's APP_NAMESPACES:
# https://github.com/fal-ai/fal/blob/main/projects/fal_client/src/fal_client/client.py).
APP_NAMESPACES = ("workflows", "comfy")


@dataclass
class MergedField:
    """A field's merged facts, with the source each fact came from."""

    name: str
    facts: dict[str, Any] = field(default_factory=dict)
    origin: dict[str, str] = field(default_factory=dict)


@dataclass
class MergedSchema:
    """One object schema of the spec: an endpoint's (or a declared group's) input or output, or a fal type."""

    name: str
    fields: list[MergedField]
    sources: list[SourceDocument]
    endpoints: list[str] = field(default_factory=list)
    description: str | None = None


@dataclass
class Endpoint:
    """One endpoint: its id, app, family, the tier its sources state (if any), its schemas and its sources."""

    path: str
    family: str
    image_field: str | None
    tier: str | None
    sources: list[SourceDocument]
    input_schema: str
    output_schema: str | None

    @property
    def id(self) -> str:
        return self.path.strip("/")

    @property
    def app(self) -> str:
        """`owner/app`, where fal serves the endpoint's status, result and cancel (`fal-ai/flux-pro`)."""
        return app_of(self.id)


@dataclass
class MergedApi:
    """Everything the sources say, merged: endpoints, their schemas, and fal's named types."""

    endpoints: list[Endpoint]
    inputs: list[MergedSchema]
    outputs: list[MergedSchema]
    types: list[MergedSchema]
    sources: list[SourceDocument]
    resolutions: list[Resolution]
    type_names: dict[str, str]


def app_of(endpoint_id: str) -> str:
    """The app of an endpoint id: its first two segments (three under fal's namespaces `workflows/`, `comfy/`).

    fal serves status, result and cancel under the app ("Do not add the endpoint path",
    https://fal.ai/docs/api-reference/inference-api).
    """
    parts = endpoint_id.strip("/").split("/")
    keep = 3 if parts[0] in APP_NAMESPACES else 2
    if len(parts) < keep:
        raise ValueError(f"endpoint id {endpoint_id!r} has no app: expected owner/app[/path]")
    return "/".join(parts[:keep])


def pascal(text: str) -> str:
    """`flux-pro/kontext/max` -> `FluxProKontextMax`; `registry__image__fast_sdxl__models__Image` ->
    `RegistryImageFastSdxlModelsImage`."""
    return "".join(part[:1].upper() + part[1:] for part in re.split(r"[^A-Za-z0-9]+", text) if part)


def schema_name(endpoint_id: str, part: Part) -> str:
    """The name of an endpoint's own schema: the id without its owner, PascalCase, plus `Input`/`Output`."""
    return pascal("/".join(endpoint_id.strip("/").split("/")[1:])) + part.capitalize()


def type_name(source_name: str, declared: dict[str, str]) -> str:
    """The spec's name of a fal type: as overrides/ name it, else the PascalCase of fal's name."""
    return declared.get(source_name) or (pascal(source_name) if "__" in source_name else source_name)


def _same(keyword: str, a: Any, b: Any) -> bool:
    if keyword == "enum":
        return sorted(map(str, a)) == sorted(map(str, b))
    if isinstance(a, bool) or isinstance(b, bool):
        return a is b
    if isinstance(a, int | float) and isinstance(b, int | float):
        return float(a) == float(b)
    return bool(a == b)


def _where(source: SourceDocument, facts: FieldFacts) -> str:
    return f"{source.name}:{facts.line}" if facts.line else source.name


def fold(
    name: str, stated: list[tuple[SourceDocument, FieldFacts]], subject: str
) -> tuple[MergedField, list[Resolution]]:
    """Merge one field's facts as several sources state them (most trusted first)."""
    merged = MergedField(name=name)
    resolutions: list[Resolution] = []
    ordered = sorted(stated, key=lambda pair: (pair[0].trust, pair[0].endpoint_id, pair[0].name))
    for keyword in _ORDER:
        candidates = [(s, f, f.stated()[keyword]) for s, f in ordered if keyword in f.stated()]
        if not candidates:
            continue
        best, best_facts, value = candidates[0]
        merged.facts[keyword] = value
        merged.origin[keyword] = best.name
        if keyword not in _COMPARED:
            continue
        for source, facts, other in candidates[1:]:
            if _same(keyword, value, other):
                continue
            if source.trust == best.trust:
                raise SourceError(
                    source.path,
                    facts.line,
                    f"{subject}.{name}.{keyword}: says {other!r} but {_where(best, best_facts)}, equally trusted "
                    f"({best.trust_label}), says {value!r}; the pipeline does not choose between equals: state the "
                    "fact in an override and say why, or remove the wrong document",
                )
            kept = f"kept {value!r} from {best.name}"
            resolutions.append(Resolution(f"{subject}.{name}.{keyword}", f"{source.name} says {other!r}; {kept}"))
    return merged, resolutions


def _merge_fields(
    subject: str, stated: Iterable[tuple[SourceDocument, list[FieldFacts]]]
) -> tuple[list[MergedField], list[Resolution]]:
    """The fields several sources state for one schema, in the order of the most trusted source listing them."""
    by_name: dict[str, list[tuple[SourceDocument, FieldFacts]]] = {}
    for source, facts_list in sorted(stated, key=lambda pair: (pair[0].trust, pair[0].endpoint_id, pair[0].name)):
        for facts in facts_list:
            by_name.setdefault(facts.name, []).append((source, facts))
    fields: list[MergedField] = []
    resolutions: list[Resolution] = []
    for name, pairs in by_name.items():
        merged, found = fold(name, pairs, subject)
        fields.append(merged)
        resolutions += found
    return fields, resolutions


def _endpoint_family(path: str, docs: list[SourceDocument]) -> tuple[str, str | None, str | None]:
    """The family (from the image field its most trusted sources require), image field and tier of an endpoint.

    An aggregator page that lists an optional `image_urls` on a text-to-image endpoint does not make it an edit.
    """
    most_trusted = [s for s in docs if s.trust == min(d.trust for d in docs)]
    images = sorted({f.name for s in most_trusted for f in s.input_fields if f.name in IMAGE_FIELDS and f.required})
    if len(images) > 1:
        raise SourceError(docs[0].path, None, f"{path}: its sources require both {images}; an endpoint takes one")
    tiers = sorted({s.tier for s in docs if s.tier})
    if len(tiers) > 1:
        raise SourceError(docs[0].path, None, f"{path}: its sources name several model tiers {tiers}")
    image = images[0] if images else None
    return (IMAGE_FIELDS[image] if image else TEXT_TO_IMAGE), image, (tiers[0] if tiers else None)


def _groups(
    ids: list[str], part: Part, declarations: Declarations, by_id: dict[str, list[SourceDocument]]
) -> dict[str, list[str]]:
    """Schema name -> the endpoints it serves: declared groups, and one schema per other endpoint."""
    groups: dict[str, list[str]] = {}
    for item in declarations.shared:
        if item.part != part:
            continue
        missing = [e for e in item.endpoints if e not in by_id]
        if missing:
            raise SourceError(
                item.declared_in,
                None,
                f"x-fal-shared-schemas {item.name}: no source describes {missing}; add their documents to "
                "specs/sources or remove them from the declaration",
            )
        groups[item.name] = list(item.endpoints)
    for endpoint_id in ids:
        if declarations.shared_with(endpoint_id, part) is None:
            name = schema_name(endpoint_id, part)
            if name in groups:
                raise SourceError(by_id[endpoint_id][0].path, None, f"{endpoint_id}: schema name {name} is taken")
            groups[name] = [endpoint_id]
    return groups


def merge(sources: list[SourceDocument], declarations: Declarations | None = None) -> MergedApi:
    """Merge the sources' facts. Raises SourceError when an endpoint's family or a tie cannot be decided."""
    declarations = declarations or Declarations()
    by_id: dict[str, list[SourceDocument]] = {}
    for source in sources:
        by_id.setdefault(source.endpoint_id, []).append(source)
    ids = sorted(by_id)
    resolutions: list[Resolution] = []

    inputs: list[MergedSchema] = []
    input_of: dict[str, str] = {}
    for name, members in _groups(ids, "input", declarations, by_id).items():
        docs = [s for e in members for s in by_id[e]]
        fields, found = _merge_fields(f"input[{name}]", ((s, s.input_fields) for s in docs))
        resolutions += found
        inputs.append(MergedSchema(name, fields, docs, members))
        input_of.update(dict.fromkeys(members, name))

    outputs: list[MergedSchema] = []
    output_of: dict[str, str] = {}
    for name, members in _groups(ids, "output", declarations, by_id).items():
        docs = [s for e in members for s in by_id[e]]
        stating = [(s, s.output_fields) for s in docs if s.output_fields]
        if not stating:
            continue  # no source states this output: an override may (checked once overlays are applied)
        fields, found = _merge_fields(f"output[{name}]", stating)
        resolutions += found
        outputs.append(MergedSchema(name, fields, docs, members))
        output_of.update(dict.fromkeys(members, name))

    definers: dict[str, list[tuple[SourceDocument, list[FieldFacts]]]] = {}
    descriptions: dict[str, str] = {}
    for source in sorted(sources, key=lambda s: (s.trust, s.endpoint_id, s.name)):
        for definition in source.definitions.values():
            definers.setdefault(definition.name, []).append((source, definition.fields))
            if definition.description:
                descriptions.setdefault(definition.name, definition.description)
    types: list[MergedSchema] = []
    for fal_name, stated in sorted(definers.items()):
        fields, found = _merge_fields(f"type[{fal_name}]", stated)
        resolutions += found
        named = type_name(fal_name, declarations.type_names)
        types.append(MergedSchema(named, fields, [s for s, _ in stated], description=descriptions.get(fal_name)))

    endpoints = []
    for endpoint_id in ids:
        docs = sorted(by_id[endpoint_id], key=lambda s: (s.trust, s.name))
        family, image, tier = _endpoint_family(endpoint_id, docs)
        endpoints.append(
            Endpoint("/" + endpoint_id, family, image, tier, docs, input_of[endpoint_id], output_of.get(endpoint_id))
        )

    schemes = sorted({(s.auth_scheme, s.trust_label) for s in sources if s.auth_scheme})
    if len({scheme for scheme, _ in schemes}) > 1:
        said = "; ".join(f"{label}: {scheme}" for scheme, label in schemes)
        resolutions.append(Resolution("security", f"sources disagree ({said}); the spec offers both schemes"))
    for source in sorted(sources, key=lambda s: (s.trust, s.endpoint_id, s.name)):
        resolutions += [Resolution(source.name, repair) for repair in source.repairs]
    return MergedApi(endpoints, inputs, outputs, types, sources, resolutions, dict(declarations.type_names))
