"""Passes over the merged and overlaid document: enum member names, and examples that must validate."""

from __future__ import annotations

import copy
import re
from collections.abc import Iterator
from typing import Any

from openapi_schema_validator import OAS30Validator

from .model import Resolution


def enum_varnames(document: dict[str, Any]) -> None:
    """Give every string enum readable member names (`x-enum-varnames`) for the generator.

    A value starting with a letter is named by itself in upper case (`jpeg` -> `JPEG`); any other
    value is the schema's `x-enum-varname-prefix` (default `VALUE_`) plus the value with every run of
    non-word characters as `_` (`16:9` -> `RATIO_16_9`). Computed here, not typed in overrides/, so
    that a value added to a source gets a name without anyone counting positions.
    """
    for schema in document.get("components", {}).get("schemas", {}).values():
        if schema.get("type") != "string" or "enum" not in schema:
            continue
        prefix = schema.pop("x-enum-varname-prefix", "VALUE_")
        if "x-enum-varnames" in schema and len(schema["x-enum-varnames"]) == len(schema["enum"]):
            continue
        names = []
        for value in schema["enum"]:
            word = re.sub(r"\W+", "_", str(value)).strip("_").upper()
            names.append(word if re.match(r"[A-Za-z]", str(value)) else f"{prefix}{word}")
        schema["x-enum-varnames"] = names


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
