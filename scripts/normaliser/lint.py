"""Checks of our own on the finished spec, beyond what openapi-spec-validator knows.

Each check returns a list of problems, each naming where it is; an empty list passes.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from .finish import iter_examples, validator_for
from .merge import FAMILIES, app_of

_COMPOSED = ("$ref", "allOf", "anyOf", "oneOf")
_METHODS = ("get", "put", "post", "delete", "patch", "head", "options", "trace")


def _walk_schemas(schema: Any, where: str) -> Iterator[tuple[str, dict[str, Any]]]:
    if not isinstance(schema, dict):
        return
    yield where, schema
    for key in ("properties",):
        for name, sub in schema.get(key, {}).items():
            yield from _walk_schemas(sub, f"{where}.{name}")
    if isinstance(schema.get("items"), dict):
        yield from _walk_schemas(schema["items"], f"{where}[]")
    if isinstance(schema.get("additionalProperties"), dict):
        yield from _walk_schemas(schema["additionalProperties"], f"{where}{{*}}")
    for key in ("allOf", "anyOf", "oneOf"):
        for index, sub in enumerate(schema.get(key, [])):
            yield from _walk_schemas(sub, f"{where}.{key}[{index}]")


def _document_schemas(document: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    components = document.get("components", {})
    for name, schema in components.get("schemas", {}).items():
        yield from _walk_schemas(schema, f"components.schemas.{name}")
    for name, parameter in components.get("parameters", {}).items():
        yield from _walk_schemas(parameter.get("schema"), f"components.parameters.{name}")
    for name, response in components.get("responses", {}).items():
        for media_type, media in response.get("content", {}).items():
            yield from _walk_schemas(media.get("schema"), f"components.responses.{name}.{media_type}")
    for path, method, operation in _operations(document):
        body = operation.get("requestBody", {}).get("content", {})
        for media_type, media in body.items():
            yield from _walk_schemas(media.get("schema"), f"{method.upper()} {path} request {media_type}")
        for code, response in operation.get("responses", {}).items():
            for media_type, media in response.get("content", {}).items():
                yield from _walk_schemas(media.get("schema"), f"{method.upper()} {path} {code} {media_type}")


def _operations(document: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    for path, item in document.get("paths", {}).items():
        for method in _METHODS:
            if isinstance(item.get(method), dict):
                yield path, method, item[method]


def every_schema_has_a_type(document: dict[str, Any]) -> list[str]:
    """Every schema states its type, or says with ``x-any-json: true`` that any JSON value is meant (fal's 422 items
    echo the refused input, whatever it was)."""
    return [
        f"{where}: schema has no type"
        for where, s in _document_schemas(document)
        if "type" not in s and not any(k in s for k in _COMPOSED) and s.get("x-any-json") is not True
    ]


def no_empty_response_schema(document: dict[str, Any]) -> list[str]:
    problems = []
    for path, method, operation in _operations(document):
        for code, response in operation.get("responses", {}).items():
            if "$ref" in response:
                continue
            for media_type, media in response.get("content", {}).items():
                schema = media.get("schema")
                empty = not schema or (
                    schema.get("type") == "object"
                    and not schema.get("properties")
                    and "additionalProperties" not in schema
                )
                if empty:
                    problems.append(f"{method.upper()} {path} {code} {media_type}: empty response schema")
    return problems


def operations_are_complete(document: dict[str, Any]) -> list[str]:
    problems = []
    ids: list[str] = []
    for path, method, operation in _operations(document):
        where = f"{method.upper()} {path}"
        if not operation.get("operationId"):
            problems.append(f"{where}: no operationId")
        ids.append(operation.get("operationId", ""))
        codes = {str(code) for code in operation.get("responses", {})}
        if not any(c.startswith("4") for c in codes) or not any(c.startswith("5") for c in codes):
            problems.append(f"{where}: error responses (4xx and 5xx) are not documented")
    problems += [f"operationId {i!r} is used twice" for i in sorted({i for i in ids if ids.count(i) > 1})]
    for path, method, operation in _operations(document):
        for code, response in operation.get("responses", {}).items():
            for name, link in response.get("links", {}).items():
                if link.get("operationId") not in ids:
                    problems.append(
                        f"{method.upper()} {path} {code} link {name}: no operation {link.get('operationId')!r}"
                    )
    return problems


def every_example_validates(document: dict[str, Any]) -> list[str]:
    problems = []
    for where, schema, container, key in iter_examples(document):
        for error in validator_for(document, schema).iter_errors(container[key]):
            problems.append(f"{where}: {'/'.join(map(str, error.absolute_path)) or '(root)'}: {error.message}")
    return problems


def every_endpoint_is_described(document: dict[str, Any]) -> list[str]:
    """Every submit operation carries `x-fal-endpoint` with its id, app and family (what clients select by); a tier
    only where a source or an override names one (an endpoint without one is callable by its id)."""
    problems = []
    for path, item in document.get("paths", {}).items():
        operation = item.get("post")
        if not isinstance(operation, dict):
            continue
        metadata = operation.get("x-fal-endpoint")
        if not isinstance(metadata, dict):
            problems.append(f"POST {path}: no x-fal-endpoint")
            continue
        if metadata.get("id") != path.strip("/"):
            problems.append(f"POST {path}: x-fal-endpoint.id is {metadata.get('id')!r}, not the path")
        if metadata.get("family") not in FAMILIES:
            problems.append(f"POST {path}: x-fal-endpoint.family {metadata.get('family')!r} is not one of {FAMILIES}")
        if metadata.get("app") != app_of(path):
            problems.append(f"POST {path}: x-fal-endpoint.app is {metadata.get('app')!r}, not {app_of(path)!r}")
        output = metadata.get("output_schema")
        if output is not None and output not in document.get("components", {}).get("schemas", {}):
            problems.append(f"POST {path}: x-fal-endpoint.output_schema {output!r} is not a schema of the spec")
    return problems


LINTS = (
    every_schema_has_a_type,
    no_empty_response_schema,
    operations_are_complete,
    every_example_validates,
    every_endpoint_is_described,
)


def lint(document: dict[str, Any]) -> list[str]:
    """All problems every lint finds."""
    return [problem for check in LINTS for problem in check(document)]
