"""Which endpoints share one schema, and what fal's type names are called in the spec: read from overrides/.

Every endpoint has input and output schemas of its own, built from its own sources only, so adding,
removing or re-rendering one endpoint's document never changes another's. Where fal publishes two
endpoints with one schema ([pro] and [max] of FLUX.1 Kontext take the same input), an overlay says
so at its top level, with its source, and their sources then describe one schema together:

    x-fal-shared-schemas:
      - name: KontextInput                     # the component's name
        part: input                            # or output
        endpoints: [fal-ai/flux-pro/kontext, fal-ai/flux-pro/kontext/max]
        x-source: "where fal says they are one"

fal's documents name the types of nested objects by their module path
(`registry__image__fast_sdxl__models__Image`); the spec calls such a type by the PascalCase of that
name (fal-js's rule: `RegistryImageFastSdxlModelsImage`) unless an overlay names it:

    x-fal-schema-names:
      - fal_name: registry__image__fast_sdxl__models__Image
        name: SizedImage
        x-source: "..."

Both are read before the merge (they decide what is merged); the overlay's actions apply later, as
every overlay's do.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from .model import SourceError

Part = Literal["input", "output"]
_NAME = re.compile(r"^[A-Z][A-Za-z0-9]*$")


@dataclass(frozen=True)
class SharedSchema:
    """Endpoints whose input (or output) is one schema, as an override declares with its source."""

    name: str
    part: Part
    endpoints: tuple[str, ...]
    source: str
    declared_in: Path


@dataclass(frozen=True)
class Declarations:
    """What overrides/ declares before the merge: shared schemas and the names of fal's types."""

    shared: tuple[SharedSchema, ...] = ()
    type_names: dict[str, str] = field(default_factory=dict)

    def shared_with(self, endpoint_id: str, part: Part) -> SharedSchema | None:
        """The shared schema an endpoint's input or output belongs to, if an override declares one."""
        return next((s for s in self.shared if s.part == part and endpoint_id in s.endpoints), None)


def _text(entry: dict[str, Any], key: str, path: Path, where: str) -> str:
    value = entry.get(key)
    if not isinstance(value, str) or not value.strip():
        raise SourceError(path, None, f"{where}: `{key}` must be a non-empty string")
    return value.strip()


def _shared(entry: Any, path: Path, index: int) -> SharedSchema:
    where = f"x-fal-shared-schemas[{index}]"
    if not isinstance(entry, dict):
        raise SourceError(path, None, f"{where}: expected a mapping with name, part, endpoints, x-source")
    unknown = sorted(set(entry) - {"name", "part", "endpoints", "x-source", "description"})
    if unknown:
        raise SourceError(path, None, f"{where}: unknown keys {unknown}")
    name = _text(entry, "name", path, where)
    if not _NAME.match(name):
        raise SourceError(path, None, f"{where}: name {name!r} must be PascalCase letters and digits")
    part = entry.get("part")
    if part not in ("input", "output"):
        raise SourceError(path, None, f"{where}: part must be 'input' or 'output', not {part!r}")
    endpoints = entry.get("endpoints")
    if not isinstance(endpoints, list) or len(endpoints) < 2 or not all(isinstance(e, str) for e in endpoints):
        raise SourceError(path, None, f"{where}: endpoints must list two or more endpoint ids")
    ids = tuple(e.strip("/") for e in endpoints)
    if len(set(ids)) != len(ids):
        raise SourceError(path, None, f"{where}: an endpoint is listed twice")
    return SharedSchema(name, part, ids, _text(entry, "x-source", path, where), path)


def _read_names(mapping: Any, path: Path, names: dict[str, str]) -> None:
    """Add one overlay's `x-fal-schema-names` to `names`."""
    if not isinstance(mapping, list):
        raise SourceError(path, None, "x-fal-schema-names must be a list")
    for index, entry in enumerate(mapping):
        where = f"x-fal-schema-names[{index}]"
        if not isinstance(entry, dict) or set(entry) - {"fal_name", "name", "x-source"}:
            raise SourceError(path, None, f"{where}: expected fal_name, name and x-source")
        fal_name, name = _text(entry, "fal_name", path, where), _text(entry, "name", path, where)
        _text(entry, "x-source", path, where)
        if not _NAME.match(name):
            raise SourceError(path, None, f"{where}: name {name!r} must be PascalCase letters and digits")
        if names.get(fal_name, name) != name:
            raise SourceError(path, None, f"{where}: {fal_name} is named both {names[fal_name]} and {name}")
        names[fal_name] = name


def read_declarations(overlays: list[tuple[Path, dict[str, Any]]]) -> Declarations:
    """Collect the declarations of every overlay. Raises SourceError on a malformed or contradictory one."""
    shared: list[SharedSchema] = []
    names: dict[str, str] = {}
    for path, overlay in overlays:
        if not isinstance(overlay, dict):
            continue
        entries = overlay.get("x-fal-shared-schemas", [])
        if not isinstance(entries, list):
            raise SourceError(path, None, "x-fal-shared-schemas must be a list")
        shared += [_shared(entry, path, index) for index, entry in enumerate(entries)]
        _read_names(overlay.get("x-fal-schema-names", []), path, names)
    seen: dict[tuple[str, str], str] = {}
    for item in shared:
        for endpoint in item.endpoints:
            other = seen.setdefault((item.part, endpoint), item.name)
            if other != item.name:
                raise SourceError(
                    item.declared_in,
                    None,
                    f"{endpoint}: its {item.part} is declared part of both {other} and {item.name}",
                )
    duplicated = sorted({s.name for s in shared if sum(t.name == s.name for t in shared) > 1})
    if duplicated:
        raise SourceError(shared[0].declared_in, None, f"shared schema names declared twice: {duplicated}")
    clashes = sorted(set(names.values()) & {s.name for s in shared})
    if clashes:
        raise SourceError(shared[0].declared_in, None, f"names used both for a shared schema and a fal type: {clashes}")
    return Declarations(tuple(shared), names)
