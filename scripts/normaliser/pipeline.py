"""The whole normalisation: read sources, merge, apply overrides, finish, validate, write."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from openapi_spec_validator import validate as validate_openapi
from openapi_spec_validator.validation.exceptions import OpenAPIValidationError
from ruamel.yaml import YAML
from ruamel.yaml.error import YAMLError

from .apifox import read_apifox
from .build import build_document
from .emit import dump_spec
from .fal_doc import read_fal_doc
from .finish import check_examples, check_types_defined, complete_outputs, enum_varnames
from .lint import lint
from .llms import read_llms
from .merge import merge
from .model import Resolution, SourceDocument, SourceError
from .openapi_doc import read_openapi
from .overlay import apply_overlay
from .rendered_page import read_rendered_page
from .shares import read_declarations

# A source's format is the end of its file name: specs/sources/<endpoint>__<origin>.<format>.
READERS: dict[str, Callable[[Path], SourceDocument]] = {
    ".openapi.json": read_openapi,
    ".openapi.yaml": read_openapi,
    ".apifox.md": read_apifox,
    ".llms.md": read_llms,
    ".fal-doc.md": read_fal_doc,
    ".page.txt": read_rendered_page,
}
OVERLAY_SUFFIX = ".overlay.yaml"


class SpecError(Exception):
    """The finished document is not a valid spec, or fails one of our lints."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("the normalised spec is invalid:\n  " + "\n  ".join(problems))


@dataclass
class Normalised:
    """The result of a run: the document, its YAML text, and what was resolved on the way."""

    document: dict[str, Any]
    text: str
    sources: list[SourceDocument]
    overlays: list[Path]
    resolutions: list[Resolution]


def file_stem(endpoint: str) -> str:
    """The endpoint part of a source's file name: the endpoint id without its owner, `/` as `-`.

    `/fal-ai/flux-pro/kontext/max/multi` -> `flux-pro-kontext-max-multi`.
    """
    return "-".join(endpoint.strip("/").split("/")[1:])


def read_sources(directory: Path) -> list[SourceDocument]:
    """Read every source; a file whose name ends in no known format, or names another endpoint, is an error."""
    sources = []
    for path in sorted(p for p in directory.iterdir() if p.is_file()):
        reader = next((r for suffix, r in READERS.items() if path.name.endswith(suffix)), None)
        if reader is None:
            raise SourceError(path, None, f"unknown format: name a source <endpoint>__<origin>{{{','.join(READERS)}}}")
        source = reader(path)
        expected = file_stem(source.endpoint)
        stated = path.name.split("__", 1)[0]
        if stated != expected:
            raise SourceError(
                path,
                None,
                f"the file name says endpoint {stated!r} but the document describes {source.endpoint.strip('/')!r}: "
                f"name it {expected}__<origin>{path.name[path.name.index('.') :]}",
            )
        sources.append(source)
    if not sources:
        raise SourceError(directory, None, "no source documents")
    return sources


def read_overlays(directory: Path) -> list[tuple[Path, dict[str, Any]]]:
    """Every overlay in name order (the order they apply in)."""
    overlays = []
    for path in sorted(directory.glob(f"*{OVERLAY_SUFFIX}")):
        try:
            overlays.append((path, YAML(typ="safe", pure=True).load(path.read_text(encoding="utf-8"))))
        except YAMLError as err:
            raise SourceError(path, None, f"YAML does not parse: {err}") from err
    return overlays


def normalise(sources_dir: Path, overrides_dir: Path) -> Normalised:
    """Build the normalised spec in memory. Raises SourceError or SpecError; writes nothing."""
    sources = read_sources(sources_dir)
    overlays = read_overlays(overrides_dir)
    api = merge(sources, read_declarations(overlays))
    document = build_document(api)
    for path, overlay in overlays:
        apply_overlay(document, overlay, path)
    check_types_defined(document, sources, api.type_names)
    complete_outputs(document, sources)
    enum_varnames(document)
    # Validate the structure before reading examples against its schemas: a malformed schema must be
    # reported as such, not crash the example checks.
    try:
        validate_openapi(document)
    except OpenAPIValidationError as err:
        raise SpecError([f"openapi-spec-validator: {err.message} at {'/'.join(map(str, err.absolute_path))}"]) from err
    resolutions = api.resolutions + check_examples(document)
    problems = lint(document)
    text = dump_spec(document)
    # The text must mean the same to a YAML 1.1 loader (PyYAML, schemathesis) and a 1.2 one (the generator).
    if yaml.safe_load(text) != document or YAML(typ="safe", pure=True).load(text) != document:
        problems.append("the written YAML does not load back as the same document")
    if problems:
        raise SpecError(problems)
    return Normalised(document, text, sources, [p for p, _ in overlays], resolutions)


def write_if_changed(path: Path, text: str) -> bool:
    """Write atomically (temporary file, then rename) with the usual mode, and only when the content differs."""
    if path.exists() and path.read_text(encoding="utf-8") == text:
        return False
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        # mkstemp creates 0600; the spec gets the mode any new file gets (0666 minus the umask).
        mask = os.umask(0)
        os.umask(mask)
        os.chmod(temporary, 0o666 & ~mask)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return True


def summary(result: Normalised) -> list[str]:
    """A few lines saying what the spec holds."""
    document = result.document
    operations = [
        f"{op['operationId']} ({method.upper()} {path})"
        for path, item in document["paths"].items()
        for method, op in item.items()
        if isinstance(op, dict) and "operationId" in op
    ]
    schemas = document["components"]["schemas"]
    read = [
        f"  {s.name}: {s.endpoint_id}, {len(s.input_fields)} input fields, "
        + ("no output" if s.output_fields is None else f"{len(s.output_fields)} output fields")
        + (f", {len(s.definitions)} types" if s.definitions else "")
        for s in result.sources
    ]
    return [
        f"sources: {len(result.sources)}",
        *read,
        f"overrides: {len(result.overlays)} overlays ({', '.join(p.name for p in result.overlays)})",
        f"operations: {len(operations)}",
        *[f"  {o}" for o in operations],
        f"schemas: {len(schemas)}",
        f"servers: {', '.join(s['url'] for s in document.get('servers', []))}",
        f"security: {', '.join(document['components']['securitySchemes'])}",
    ]
