"""Passes over the merged and overlaid document: enum member names, and examples that must validate."""

from __future__ import annotations

import copy
import re
from collections.abc import Iterator
from typing import Any

from openapi_schema_validator import OAS30Validator

from .merge import type_name
from .model import Resolution, SourceDocument, SourceError


def _string_enums(schema: Any) -> Iterator[dict[str, Any]]:
    """Every string enum in a schema: itself, its properties, items and union members, at any depth."""
    if not isinstance(schema, dict):
        return
    if schema.get("type") == "string" and "enum" in schema:
        yield schema
    for sub in (schema.get("properties") or {}).values():
        yield from _string_enums(sub)
    yield from _string_enums(schema.get("items"))
    for key in ("allOf", "anyOf", "oneOf"):
        for sub in schema.get(key) or []:
            yield from _string_enums(sub)


def enum_varnames(document: dict[str, Any]) -> None:
    """Give every string enum readable member names (`x-enum-varnames`) for the generator.

    A value starting with a letter is named by itself in upper case (`jpeg` -> `JPEG`); any other
    value is the schema's `x-enum-varname-prefix` (default `VALUE_`) plus the value with every run of
    non-word characters as `_` (`16:9` -> `RATIO_16_9`). Computed here, not typed in overrides/, so
    that a value added to a source gets a name without anyone counting positions.
    """
    for component in document.get("components", {}).get("schemas", {}).values():
        for schema in _string_enums(component):
            prefix = schema.pop("x-enum-varname-prefix", "VALUE_")
            if "x-enum-varnames" in schema and len(schema["x-enum-varnames"]) == len(schema["enum"]):
                continue
            names = []
            for value in schema["enum"]:
                word = re.sub(r"\W+", "_", str(value)).strip("_").upper()
                names.append(word if re.match(r"[A-Za-z]", str(value)) else f"{prefix}{word}")
            schema["x-enum-varnames"] = names


# The union of every endpoint's output, which the shared result operation and the webhook answer with.
ENDPOINT_OUTPUT = "EndpointOutput"


def _resolved(document: dict[str, Any], schema: Any) -> dict[str, Any]:
    while isinstance(schema, dict) and ("$ref" in schema or len(schema.get("allOf") or []) == 1):
        if "$ref" in schema:
            target: Any = document
            for part in str(schema["$ref"]).removeprefix("#/").split("/"):
                target = target.get(part, {}) if isinstance(target, dict) else {}
            schema = target
        else:
            schema = schema["allOf"][0]
    return schema if isinstance(schema, dict) else {}


def _referenced(schema: Any) -> Iterator[str]:
    """The component names a schema (a source's field facts) refers to."""
    if isinstance(schema, dict):
        ref = schema.get("$ref")
        if isinstance(ref, str) and ref.startswith("#/components/schemas/"):
            yield ref.rsplit("/", 1)[1]
        for value in schema.values():
            yield from _referenced(value)
    elif isinstance(schema, list):
        for value in schema:
            yield from _referenced(value)


def check_types_defined(document: dict[str, Any], sources: list[SourceDocument], names: dict[str, str]) -> None:
    """Every named type the sources refer to is defined, by a source or an override.

    Raises SourceError naming the first file and line that refers to a type nobody defines (fal's pages name
    `ImageSize` or `Timings` without defining them; fal's OpenAPI document of the endpoint does).
    """
    schemas = document.get("components", {}).get("schemas", {})
    for source in sources:
        fields = [*source.input_fields, *(source.output_fields or [])]
        fields += [f for definition in source.definitions.values() for f in definition.fields]
        for facts in fields:
            for fal_name in _referenced(facts.schema):
                name = type_name(fal_name, names)
                if name not in schemas:
                    raise SourceError(
                        source.path,
                        facts.line,
                        f"{facts.name}: type `{fal_name}` is defined by no source and no override: add a document "
                        "that defines it (fal's OpenAPI document of the endpoint does), or define it in an override "
                        "with its source",
                    )


def complete_outputs(document: dict[str, Any], sources: list[SourceDocument]) -> None:
    """Check that every endpoint has an output with images, and define `EndpointOutput`, the union of them all.

    Raises SourceError naming the endpoint's sources when none of them (nor an override) states its output, or
    when its output is not images: this client serves endpoints whose output has an `images` list of files.
    """
    outputs: list[str] = []
    for path, item in document.get("paths", {}).items():
        metadata = (item.get("post") or {}).get("x-fal-endpoint") if isinstance(item, dict) else None
        if not isinstance(metadata, dict):
            continue
        files = [s.path for s in sources if s.endpoint_id == path.strip("/")]
        named = ", ".join(p.name for p in files) or "no source"
        output = metadata.get("output_schema")
        if not output:
            raise SourceError(
                files[0] if files else path,
                None,
                f"{path.strip('/')}: no source states its output ({named} describe only its input) and no override "
                "gives x-fal-endpoint.output_schema: add fal's OpenAPI document or llms.txt page of the endpoint to "
                "specs/sources, or an override with its source",
            )
        schema = document.get("components", {}).get("schemas", {}).get(output)
        images = _resolved(document, (schema or {}).get("properties", {}).get("images"))
        item_schema = _resolved(document, images.get("items"))
        if images.get("type") != "array" or "url" not in (item_schema.get("properties") or {}):
            raise SourceError(
                files[0] if files else path,
                None,
                f"{path.strip('/')}: its output {output} has no `images` list of files with a `url`; the client and "
                "the emulator serve image endpoints only, so the endpoint cannot be added",
            )
        if output not in outputs:
            outputs.append(output)
    refs = [{"$ref": f"#/components/schemas/{name}"} for name in outputs]
    document.setdefault("components", {}).setdefault("schemas", {})[ENDPOINT_OUTPUT] = {
        "description": "The output of an endpoint of the spec: " + ", ".join(outputs) + ".",
        ("allOf" if len(refs) == 1 else "anyOf"): refs,
    }


def validator_for(document: dict[str, Any], schema: dict[str, Any]) -> OAS30Validator:
    """A validator for one schema of the document.

    The schema is wrapped in a root that also holds the document's components, so that its
    `#/components/...` references resolve as they do in the document.
    """
    return OAS30Validator({"allOf": [schema], "components": document.get("components", {})})


def iter_examples(document: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any], dict[str, Any], str]]:
    """Every example in the document: (where, schema, container, key), `container[key]` being the value."""
    for name, schema in document.get("components", {}).get("schemas", {}).items():
        if "example" in schema:
            yield f"components.schemas.{name}.example", schema, schema, "example"
    for path, item in document.get("paths", {}).items():
        for method, operation in item.items():
            if not isinstance(operation, dict) or "responses" not in operation:
                continue
            medias = [("request", operation.get("requestBody", {}).get("content", {}))]
            medias += [(f"response {code}", r.get("content", {})) for code, r in operation["responses"].items()]
            for label, content in medias:
                for media_type, media in content.items():
                    if not isinstance(media, dict) or "schema" not in media:
                        continue
                    where = f"{method.upper()} {path} {label} {media_type}"
                    if "example" in media:
                        yield f"{where} example", media["schema"], media, "example"
                    for key, example in media.get("examples", {}).items():
                        if isinstance(example, dict) and "value" in example:
                            yield f"{where} examples.{key}", media["schema"], example, "value"


def _errors(validator: OAS30Validator, value: Any) -> list[Any]:
    return sorted(validator.iter_errors(value), key=lambda e: list(e.absolute_path))


def _repair(value: dict[str, Any], validator: OAS30Validator) -> list[str]:
    """Coerce what an aggregator example gets wrong in a known way; return what was changed.

    - a number where fal wants a string enum (`safety_tolerance: 2` -> `"2"`);
    - Apifox's type-name placeholders (`aspect_ratio: string`) where a real value is required: removed.
    """
    changes: list[str] = []
    for error in _errors(validator, value):
        if len(error.absolute_path) != 1 or error.absolute_path[0] not in value:
            continue
        key = error.absolute_path[0]
        current = value[key]
        if isinstance(current, int | float) and not isinstance(current, bool):
            trial = {**value, key: str(current)}
            if not any(list(e.absolute_path)[:1] == [key] for e in _errors(validator, trial)):
                value[key] = str(current)
                changes.append(f"{key}: {current!r} -> {str(current)!r}")
                continue
        if current in ("string", "number", "integer", "boolean"):
            del value[key]
            changes.append(f"{key}: removed the placeholder {current!r}")
    return changes


def check_examples(document: dict[str, Any]) -> list[Resolution]:
    """Repair the examples that can be repaired, drop the rest; report each change."""
    resolutions: list[Resolution] = []
    for where, schema, container, key in list(iter_examples(document)):
        validator = validator_for(document, schema)
        value = container[key]
        if not _errors(validator, value):
            continue
        if isinstance(value, dict):
            value = copy.deepcopy(value)
            changes = _repair(value, validator)
            if changes and not _errors(validator, value):
                container[key] = value
                resolutions.append(Resolution(where, "repaired to fit the schema (" + "; ".join(changes) + ")"))
                continue
        problems = "; ".join(
            f"{'/'.join(map(str, e.absolute_path)) or '(root)'}: {e.message}"
            for e in _errors(validator, container[key])
        )
        resolutions.append(Resolution(where, f"dropped, it does not fit the schema ({problems})"))
        if key == "value":
            _drop_named_example(document, container)
        else:
            del container[key]
    return resolutions


def _drop_named_example(document: dict[str, Any], example: dict[str, Any]) -> None:
    for item in document.get("paths", {}).values():
        for operation in item.values():
            if not isinstance(operation, dict):
                continue
            contents = [operation.get("requestBody", {}).get("content", {})]
            contents += [r.get("content", {}) for r in operation.get("responses", {}).values()]
            for content in contents:
                for media in content.values():
                    examples = media.get("examples", {}) if isinstance(media, dict) else {}
                    for key in [k for k, v in examples.items() if v is example]:
                        del examples[key]
                    if isinstance(media, dict) and "examples" in media and not media["examples"]:
                        del media["examples"]
