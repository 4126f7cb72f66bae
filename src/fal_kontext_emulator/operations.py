"""The spec's operations as the emulator serves them: the route table and each operation's validators.

Nothing here restates a schema: every check comes from the OpenAPI document (the shipped
`fal_kontext_api/openapi.json` by default, read by `spec_document`), translated once at load time from OpenAPI 3.0
to JSON Schema draft 4 (the dialect OpenAPI 3.0 is based on: boolean `exclusiveMinimum`, no integer-valued floats).
Problems come out as the items of fal's 422 `detail` list (`Problem`).
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

# jsonschema ships no type information (types-jsonschema is not among our dependencies).
from jsonschema import Draft4Validator  # type: ignore[import-untyped]
from jsonschema.exceptions import ValidationError  # type: ignore[import-untyped]

from fal_kontext.spec import endpoints_of
from fal_kontext_emulator.spec_document import load_spec, resolve, to_json_schema

JsonObject = dict[str, Any]

# The methods an OpenAPI path item may hold, in the order the Allow header lists them.
_METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")

# fal's validation errors are pydantic's (fal apps are FastAPI); these are pydantic v2's type names and
# messages for the JSON Schema keywords our spec uses.
_PYDANTIC_TYPES = {"string": "string", "integer": "int", "number": "float", "boolean": "bool", "array": "list"}


# Marks a problem without an `input` (JSON null is an input).
_NO_INPUT: Any = object()


@dataclass(frozen=True)
class Problem:
    """One problem with a request, as an item of fal's 422 `detail` list.

    `input` is the offending value, as pydantic reports it and fal documents (`{loc, msg, type, url?, ctx?,
    input?}`, https://fal.ai/docs/model-apis/errors); not every problem has one.
    """

    loc: tuple[str | int, ...]
    msg: str
    type: str
    input: Any = field(default=_NO_INPUT, compare=False)

    def as_json(self) -> JsonObject:
        """Return the item in fal's shape: `{"loc": [...], "msg": ..., "type": ..., "input"?: ...}`."""
        item: JsonObject = {"loc": list(self.loc), "msg": self.msg, "type": self.type}
        if self.input is not _NO_INPUT:
            item["input"] = self.input
        return item


@dataclass(frozen=True)
class Parameter:
    """A path, query or header parameter of one operation, with its compiled validator."""

    name: str
    location: str
    required: bool
    validator: Draft4Validator
    json_type: str | None

    def parse(self, raw: str) -> tuple[Any, list[Problem]]:
        """Coerce the raw string to the schema's type and validate it; return the value and any problems."""
        loc: tuple[str | int, ...] = (self.location, self.name)
        value: Any = raw
        if self.json_type in {"number", "integer"}:
            try:
                number = float(raw) if self.json_type == "number" else int(raw)
            except ValueError:
                kind = "float" if self.json_type == "number" else "int"
                return None, [
                    Problem(loc, f"Input should be a valid number, unable to parse {raw!r}", f"{kind}_parsing", raw)
                ]
            if isinstance(number, float) and not math.isfinite(number):
                return None, [Problem(loc, "Input should be a finite number", "finite_number", raw)]
            value = number
        elif self.json_type == "boolean":
            lowered = raw.lower()
            if lowered not in {"true", "false", "1", "0"}:
                return None, [Problem(loc, "Input should be a valid boolean", "bool_parsing", raw)]
            value = lowered in {"true", "1"}
        problems = [problem_from_error(error, loc) for error in self.validator.iter_errors(value)]
        return value, problems


@dataclass(frozen=True)
class Operation:
    """One operation of the spec: where it lives and how its input is checked."""

    operation_id: str
    method: str
    path: str
    pattern: re.Pattern[str]
    parameters: tuple[Parameter, ...]
    body_validator: Draft4Validator | None
    body_required: bool
    endpoint_id: str = field(default="")

    def check_parameters(
        self, path_params: Mapping[str, str], query: Mapping[str, str], headers: Mapping[str, str]
    ) -> tuple[dict[str, Any], list[Problem]]:
        """Validate the declared parameters; return their parsed values (by name) and every problem found."""
        values: dict[str, Any] = {}
        problems: list[Problem] = []
        sources = {"path": path_params, "query": query, "header": headers}
        for parameter in self.parameters:
            source = sources.get(parameter.location, {})
            # Header names are case-insensitive; Starlette's header mapping already is.
            raw = source.get(parameter.name.lower() if parameter.location == "header" else parameter.name)
            if raw is None:
                if parameter.required:
                    problems.append(Problem((parameter.location, parameter.name), "Field required", "missing"))
                continue
            value, found = parameter.parse(raw)
            problems.extend(found)
            if not found:
                values[parameter.name] = value
        return values, problems

    def check_body(self, body: Any) -> list[Problem]:
        """Validate a decoded JSON body against the operation's request schema."""
        if self.body_validator is None:
            return []
        problems: list[Problem] = []
        for error in sorted(self.body_validator.iter_errors(body), key=lambda e: [str(p) for p in e.absolute_path]):
            if error.validator == "required" and isinstance(error.instance, dict):
                # pydantic reports a missing field at its own location, not at the object holding it.
                missing = [name for name in error.validator_value if name not in error.instance]
                base = ("body", *error.absolute_path)
                problems.extend(Problem((*base, name), "Field required", "missing", error.instance) for name in missing)
            else:
                problems.append(problem_from_error(error, ("body",)))
        return list(dict.fromkeys(problems))


def problem_from_error(error: ValidationError, prefix: tuple[str | int, ...]) -> Problem:
    """Turn one jsonschema error into a fal/pydantic-style problem located under `prefix`, with its input."""
    return dataclasses.replace(_described(error, (*prefix, *error.absolute_path)), input=error.instance)


def _described(error: ValidationError, loc: tuple[str | int, ...]) -> Problem:
    keyword = str(error.validator)
    value = error.validator_value
    if keyword == "type":
        expected = value[0] if isinstance(value, list) else value
        name = _PYDANTIC_TYPES.get(str(expected), "model_attributes")
        noun = {"int": "integer", "float": "number", "bool": "boolean", "model_attributes": "object"}.get(name, name)
        if name == "model_attributes":
            return Problem(loc, "Input should be a valid dictionary or object", "model_attributes_type")
        return Problem(loc, f"Input should be a valid {noun}", f"{name}_type")
    if keyword == "enum":
        options = ", ".join(repr(option) for option in value)
        return Problem(loc, f"Input should be {options}", "enum")
    if keyword == "minimum":
        exclusive = bool(error.schema.get("exclusiveMinimum")) if isinstance(error.schema, dict) else False
        if exclusive:
            return Problem(loc, f"Input should be greater than {value}", "greater_than")
        return Problem(loc, f"Input should be greater than or equal to {value}", "greater_than_equal")
    if keyword == "maximum":
        return Problem(loc, f"Input should be less than or equal to {value}", "less_than_equal")
    if keyword == "minItems":
        return Problem(loc, f"List should have at least {value} item after validation", "too_short")
    if keyword == "minLength":
        return Problem(loc, f"String should have at least {value} character", "string_too_short")
    return Problem(loc, error.message, "value_error")


class RouteTable:
    """Matches a method and path to an operation of the spec, accepting a trailing slash as fal's SDK sends it.

    `aliases` maps further path templates to an operation's own path and the path parameters the alias fixes:
    they answer as that operation does (the operation keeps its own path for the URLs the emulator hands out).
    Concrete paths are tried before templated ones, as OpenAPI's path matching prescribes.
    """

    def __init__(self, operations: list[Operation], aliases: Mapping[str, Alias] | None = None) -> None:
        self._by_path: dict[str, list[Operation]] = {}
        for operation in operations:
            self._by_path.setdefault(operation.path, []).append(operation)
        self.aliases = dict(aliases or {})
        patterns: list[tuple[re.Pattern[str], list[Operation], Mapping[str, str]]] = [
            (ops[0].pattern, ops, {}) for ops in self._by_path.values()
        ]
        for alias, (path, fixed) in self.aliases.items():
            if alias not in self._by_path and path in self._by_path:
                patterns.append((_path_pattern(alias), self._by_path[path], fixed))
        self._patterns = sorted(patterns, key=lambda entry: entry[0].pattern.count("(?P<"))

    def match(self, method: str, path: str) -> tuple[Operation, dict[str, str]] | tuple[None, list[str]]:
        """Return `(operation, path_params)`, or `(None, allowed_methods)` (empty when no path matches)."""
        for pattern, operations, fixed in self._patterns:
            found = pattern.fullmatch(path)
            if found is None:
                continue
            for operation in operations:
                if operation.method == method:
                    return operation, {**fixed, **found.groupdict()}
            return None, [operation.method for operation in operations]
        return None, []

    @property
    def operations(self) -> list[Operation]:
        """Every operation, in spec order."""
        return [operation for operations in self._by_path.values() for operation in operations]


# An alias path template: the operation path it answers as, and the path parameters it fixes.
Alias = tuple[str, Mapping[str, str]]


def full_endpoint_aliases(paths: list[str], submits: Mapping[str, str]) -> dict[str, Alias]:
    """The full-endpoint-path form of each request path: `/fal-ai/flux-pro/kontext/max/multi/requests/{id}/status`
    for `/{owner}/{app}/requests/{id}/status` with owner `fal-ai` and app `flux-pro`, for every submit path
    (`submits` maps each to its endpoint's `owner/app`).

    fal's docs and both official clients use the app path ("Do not add the endpoint path",
    https://fal.ai/docs/api-reference/inference-api); fal's published per-endpoint OpenAPI
    (https://fal.ai/api/openapi/queue/openapi.json?endpoint_id=<id>) lists the full form, so both are answered.
    """
    aliases: dict[str, Alias] = {}
    for path in paths:
        _, marker, rest = path.partition("/requests/")
        if not marker:
            continue
        for submit, app in submits.items():
            owner, _, name = app.partition("/")
            aliases[f"{submit}/requests/{rest}"] = (path, {"owner": owner, "app": name})
    return aliases


def _path_pattern(path: str) -> re.Pattern[str]:
    parts = re.split(r"(\{[^}]+\})", path.rstrip("/"))
    regex = "".join(
        f"(?P<{part[1:-1]}>[^/]+)" if part.startswith("{") and part.endswith("}") else re.escape(part) for part in parts
    )
    return re.compile(regex + "/?")


def _inline(spec: JsonObject, node: Any) -> Any:
    """`node` with every `$ref` replaced by its target (parameter schemas are small and not recursive)."""
    if isinstance(node, list):
        return [_inline(spec, item) for item in node]
    if not isinstance(node, dict):
        return node
    if "$ref" in node:
        return _inline(spec, resolve(spec, node))
    return {key: _inline(spec, value) for key, value in node.items()}


def _validator(spec: JsonObject, schema: JsonObject) -> Draft4Validator:
    # A root `$ref` next to `components` lets the spec's own references resolve inside one document.
    return Draft4Validator({**schema, "components": spec.get("components", {})})


def _parameter_type(spec: JsonObject, schema: JsonObject) -> str | None:
    kind = resolve(spec, schema).get("type")
    return kind if isinstance(kind, str) else None


def build_routes(spec: JsonObject | None = None) -> RouteTable:
    """Build the route table and validators for every operation of the spec (the shipped one by default)."""
    raw = spec if spec is not None else load_spec()
    translated: JsonObject = to_json_schema(raw)
    # A submit's endpoint is the spec's (its x-fal-endpoint id where present), so that the queue and the state agree.
    submits = {endpoint.operation_id: endpoint for endpoint in endpoints_of(raw)}
    operations: list[Operation] = []
    for path, item in translated["paths"].items():
        shared = item.get("parameters", [])
        for method in _METHODS:
            if method not in item:
                continue
            op = item[method]
            parameters = []
            for node in [*shared, *op.get("parameters", [])]:
                declared = resolve(translated, node)
                schema = declared.get("schema", {})
                parameters.append(
                    Parameter(
                        name=declared["name"],
                        location=declared["in"],
                        required=bool(declared.get("required")),
                        # Inlined: parameters are checked on every status poll, and a $ref lookup costs more
                        # than the check itself.
                        validator=Draft4Validator(_inline(translated, schema)),
                        json_type=_parameter_type(translated, schema),
                    )
                )
            body_validator = None
            body = op.get("requestBody")
            if body is not None:
                body = resolve(translated, body)
                schema = body.get("content", {}).get("application/json", {}).get("schema")
                if schema is not None:
                    body_validator = _validator(translated, schema)
            operations.append(
                Operation(
                    operation_id=op["operationId"],
                    method=method.upper(),
                    path=path,
                    pattern=_path_pattern(path),
                    parameters=tuple(parameters),
                    body_validator=body_validator,
                    body_required=bool(body and body.get("required")),
                    endpoint_id=submits[op["operationId"]].id if op["operationId"] in submits else path.strip("/"),
                )
            )
    apps = {op.path: submits[op.operation_id].app for op in operations if op.operation_id in submits}
    return RouteTable(operations, full_endpoint_aliases([op.path for op in operations], apps))
