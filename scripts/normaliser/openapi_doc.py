"""Reader for OpenAPI 3.x documents about one endpoint: fal's per-endpoint queue OpenAPI, and Apifox exports.

fal publishes one per endpoint (https://fal.ai/api/openapi/queue/openapi.json?endpoint_id=<id>):
`info.x-fal-metadata.endpointId`, a `POST /<id>` whose body is a `$ref` to the input schema, the
result under `GET /<id>/requests/{request_id}` whose answer is a `$ref` to the output schema, and
fal's named types (`fal__toolkit__image__image__Image`) under `components.schemas`. Nullable fields
are `anyOf: [X, {type: null}]`, unions `anyOf` of a `$ref` and an enum. Apifox exports are the same
format written by hand, with the body inline and facts in the descriptions (`Default: 3.5. Range:
1-20.`, or in Chinese `默认值:3.5 范围值1-20`).

Strict: every property must be understood. A keyword we do not know, a `$ref` that leads nowhere,
an enum of non-scalars, a default that fits neither the type nor the enum, or two POST operations
stop the run with the file, the line and what was not understood. Extensions (`x-…`) are ignored:
they are the vendor's own (a vendored copy of fal's document may carry `x-imgly-…` keys).

The document is read with ruamel.yaml's round-trip loader, which reads JSON too and keeps the line
of every key, so problems are reported on the file's own lines.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedBase
from ruamel.yaml.error import MarkedYAMLError, YAMLError

from .descriptions import facts_from_description
from .model import BOUNDS, NOT_STATED, FieldFacts, Format, SourceDocument, SourceError, TypeDefinition
from .yaml_repair import repair_yaml

_FENCE_OPEN = re.compile(r"^```(?:ya?ml|json)\s*$")
_SCALAR_TYPES = ("string", "integer", "number", "boolean")
# Keywords of a property schema we read, and those that carry no fact we keep (wording, sample values).
_FACT_KEYWORDS = frozenset(
    {"type", "items", "enum", "default", "nullable", "anyOf", "oneOf", "allOf", "$ref", "additionalProperties"}
    | {"properties", "required", "format", "description", *BOUNDS.values()}
)
_IGNORED_KEYWORDS = frozenset({"title", "examples", "example", "deprecated", "readOnly", "writeOnly"})
# Formats carried into the spec; others (`binary` on a JSON string) would change what the generator builds.
_KEPT_FORMATS = frozenset({"uri"})
_REF_PREFIX = "#/components/schemas/"
_METHODS = ("get", "put", "post", "delete", "patch")


class _Reader:
    """Reads one loaded document; knows the file and the line offset of the YAML/JSON inside it."""

    def __init__(self, path: Path, document: Any, first_line: int) -> None:
        self.path = path
        self.document = document
        self.first_line = first_line
        self.definitions: dict[str, TypeDefinition] = {}
        self.repairs: list[str] = []
        self._reading: set[str] = set()
        # The line of the field being read: nested schemas copied while flattening no longer carry their own.
        self.field_line: int | None = None

    # --- where ---------------------------------------------------------------------------------------------------

    def line(self, node: Any, key: str | int | None = None) -> int | None:
        if not isinstance(node, CommentedBase):
            return None
        try:
            row = node.lc.key(key)[0] if key is not None and isinstance(node, dict) else node.lc.line
        except (KeyError, AttributeError, TypeError):
            row = node.lc.line
        return None if row is None else self.first_line + row

    def fail(self, node: Any, key: str | int | None, problem: str) -> SourceError:
        return SourceError(self.path, self.line(node, key) or self.field_line, problem)

    # --- references ----------------------------------------------------------------------------------------------

    def target(self, node: dict[str, Any], where: str) -> tuple[str, Any]:
        """The component a `$ref` names, following aliases (`A: {$ref: B}`); (its name, its schema)."""
        seen: list[str] = []
        while True:
            ref = node.get("$ref")
            if not isinstance(ref, str) or not ref.startswith(_REF_PREFIX):
                raise self.fail(node, "$ref", f"{where}: `$ref` {ref!r} is not a reference to {_REF_PREFIX}<name>")
            name = ref[len(_REF_PREFIX) :]
            schemas = (self.document.get("components") or {}).get("schemas") or {}
            if name not in schemas:
                raise self.fail(node, "$ref", f"{where}: `$ref` {ref!r} names no schema of the document")
            if name in seen:
                raise self.fail(node, "$ref", f"{where}: `$ref` {ref!r} refers to itself")
            seen.append(name)
            target = schemas[name]
            if isinstance(target, dict) and set(target) - {"$ref"} == set() and "$ref" in target:
                node = target
                continue
            return name, target

    # --- schemas -------------------------------------------------------------------------------------------------

    def is_named_object(self, schema: Any) -> bool:
        return (
            isinstance(schema, dict)
            and (schema.get("type") == "object" or "properties" in schema)
            and bool(schema.get("properties"))
        )

    def check_keywords(self, node: dict[str, Any], where: str) -> None:
        for key in node:
            text = str(key)
            if text.startswith("x-") or text in _FACT_KEYWORDS or text in _IGNORED_KEYWORDS:
                continue
            raise self.fail(node, key, f"{where}: keyword `{text}` is not understood by this reader")

    def type_part(self, node: Any, where: str) -> dict[str, Any]:
        """The type part of a schema (what FieldFacts.schema holds), for items and union members."""
        if not isinstance(node, dict):
            raise self.fail(node, None, f"{where}: expected a schema object, found {type(node).__name__}")
        self.check_keywords(node, where)
        if "$ref" in node:
            name, target = self.target(node, where)
            if self.is_named_object(target):
                self.define(name, target)
                return {"$ref": _REF_PREFIX + name}
            return self.type_part({**target, **{k: v for k, v in node.items() if k != "$ref"}}, where)
        if "allOf" in node:
            members = node["allOf"]
            if not isinstance(members, list) or len(members) != 1:
                raise self.fail(node, "allOf", f"{where}: `allOf` of {len(members)} schemas in a field is not read")
            return self.type_part({**members[0], **{k: v for k, v in node.items() if k != "allOf"}}, where)
        union = node.get("anyOf", node.get("oneOf"))
        if union is not None:
            members = [m for m in union if not (isinstance(m, dict) and m.get("type") == "null")]
            parts = [self.type_part(member, f"{where} (anyOf)") for member in members]
            return parts[0] if len(parts) == 1 else {"anyOf": parts}
        kind = _kind(node)
        if kind not in (*_SCALAR_TYPES, "array", "object"):
            raise self.fail(node, "type" if "type" in node else None, f"{where}: no type this reader understands")
        schema: dict[str, Any] = {"type": kind}
        if kind == "array":
            if "items" not in node:
                raise self.fail(node, None, f"{where}: an array without `items`")
            schema["items"] = self.type_part(node["items"], f"{where}[]")
        if kind == "object":
            schema.update(self.object_part(node, where))
        if "format" in node:
            schema.update(self.format_part(node, where))
        if "enum" in node:
            schema["enum"] = self.enum(node, where)
        schema.update({keyword: _plain(node[keyword]) for keyword in BOUNDS.values() if keyword in node})
        return schema

    def object_part(self, node: dict[str, Any], where: str) -> dict[str, Any]:
        """What an object schema nested in a field states: its other properties' type, its own properties."""
        part: dict[str, Any] = {}
        extra = node.get("additionalProperties")
        if extra is not None:
            part["additionalProperties"] = bool(extra) if isinstance(extra, bool) else self.type_part(extra, where)
        if node.get("properties"):
            part["properties"] = {str(k): self.type_part(v, f"{where}.{k}") for k, v in node["properties"].items()}
            if node.get("required"):
                part["required"] = [str(r) for r in node["required"]]
        return part

    def format_part(self, node: dict[str, Any], where: str) -> dict[str, Any]:
        """The `format` kept, or reported: another than `uri` would change the type the generator builds."""
        if node["format"] in _KEPT_FORMATS:
            return {"format": str(node["format"])}
        line = self.line(node, "format") or self.field_line
        self.repairs.append(
            f"line {line}: {where}: format {node['format']!r} not carried into the spec "
            f"(only {', '.join(sorted(_KEPT_FORMATS))}: another would change the type the generator builds)"
        )
        return {}

    def enum(self, node: dict[str, Any], where: str) -> list[Any]:
        values = node["enum"]
        if not isinstance(values, list) or not values:
            raise self.fail(node, "enum", f"{where}: `enum` must be a non-empty list")
        if not all(isinstance(v, str | int | float | bool) or v is None for v in values):
            raise self.fail(node, "enum", f"{where}: `enum` lists a value that is not a string, number or boolean")
        kept = [v for v in values if v is not None]
        repeated = sorted({str(v) for v in kept if kept.count(v) > 1})
        if repeated:
            raise self.fail(node, "enum", f"{where}: enum value {', '.join(repeated)} is listed twice")
        return [_plain(v) for v in kept]

    def flatten(self, node: Any, where: str) -> dict[str, Any]:
        """A property schema with `$ref` (to a non-object), one-member `allOf` and a nullable `anyOf` unwrapped, so
        that its facts (default, range, enum) sit at the top; references to named objects stay."""
        if not isinstance(node, dict):
            raise self.fail(node, None, f"{where}: expected a schema object")
        out = dict(node)
        if "$ref" in out:
            _, target = self.target(out, where)
            if not self.is_named_object(target):
                rest = {k: v for k, v in out.items() if k != "$ref"}
                out = {**self.flatten(target, where), **rest}
        if "allOf" in out and isinstance(out["allOf"], list) and len(out["allOf"]) == 1:
            inner = self.flatten(out["allOf"][0], where)
            out = {**inner, **{k: v for k, v in out.items() if k != "allOf"}}
        union = out.get("anyOf", out.get("oneOf"))
        if isinstance(union, list):
            members = [m for m in union if not (isinstance(m, dict) and m.get("type") == "null")]
            if len(members) < len(union):
                out["nullable"] = True
            if len(members) == 1:
                inner = self.flatten(members[0], where)
                key = "anyOf" if "anyOf" in out else "oneOf"
                out = {**inner, **{k: v for k, v in out.items() if k != key}}
        if isinstance(out.get("type"), list) and "null" in out["type"]:
            out["nullable"] = True
        return out

    def field(self, name: str, node: Any, required: bool, where: str, parent: Any) -> FieldFacts:
        """One property of an object schema, read into facts."""
        spot = f"{where}.{name}"
        self.field_line = self.line(parent, name)
        if isinstance(node, dict):
            self.check_keywords(node, spot)  # here, where the keys still carry their lines
        flat = self.flatten(node, spot)
        facts = FieldFacts(name=name, line=self.field_line, required=required)
        facts.schema = {k: v for k, v in self.type_part(flat, spot).items() if k not in ("enum", *BOUNDS.values())}
        description = flat.get("description")
        facts.description = re.sub(r"\s+", " ", str(description)).strip() or None if description else None
        if flat.get("nullable") is True:
            facts.nullable = True
        if "enum" in flat:
            facts.enum = self.enum(flat, spot)
        for attribute, keyword in BOUNDS.items():
            if keyword in flat:
                value = flat[keyword]
                if isinstance(value, bool) != keyword.startswith("exclusive"):
                    raise self.fail(flat, keyword, f"{spot}: `{keyword}` {value!r} is not understood")
                setattr(facts, attribute, _plain(value))
        if "default" in flat:
            facts.default = self.default(flat, facts, spot)
        self.prose_facts(facts, spot)
        return facts

    def default(self, flat: dict[str, Any], facts: FieldFacts, where: str) -> Any:
        value = _plain(flat["default"])
        kind = (facts.schema or {}).get("type")
        if value is None:
            if not facts.nullable:
                raise self.fail(flat, "default", f"{where}: default null on a field that is not nullable")
            return None
        fits = {
            "string": isinstance(value, str),
            "integer": isinstance(value, int) and not isinstance(value, bool),
            "number": isinstance(value, int | float) and not isinstance(value, bool),
            "boolean": isinstance(value, bool),
            "array": isinstance(value, list),
            "object": isinstance(value, dict),
        }
        if kind == "string" and isinstance(value, int | float) and not isinstance(value, bool):
            self.repairs.append(f"{where}: default {value!r} read as the string {str(value)!r} (the field is a string)")
            value = str(value)
        elif kind in fits and not fits[kind]:
            raise self.fail(flat, "default", f"{where}: default {value!r} does not fit type {kind}")
        if facts.enum is not None and value not in facts.enum:
            raise self.fail(flat, "default", f"{where}: default {value!r} is not one of the enum {facts.enum}")
        return value

    def prose_facts(self, facts: FieldFacts, where: str) -> None:
        """Facts the description states in words; where the schema states them too, the two must agree."""
        worded = FieldFacts(name=facts.name, description=facts.description)
        notes = facts_from_description(worded, (facts.schema or {}).get("type"), path=self.path, line=facts.line)
        self.repairs += [f"line {facts.line}: {where}: {note}" for note in notes]
        for keyword, value in worded.stated().items():
            if keyword == "description":
                continue
            stated = facts.stated().get(keyword, NOT_STATED)
            if stated is NOT_STATED:
                attribute = {v: k for k, v in BOUNDS.items()}.get(keyword, keyword)
                setattr(facts, attribute, value)
            elif keyword == "enum" and sorted(map(str, stated)) != sorted(map(str, value)):
                raise SourceError(
                    self.path, facts.line, f"{where}: its schema lists {stated} but its description {value}"
                )
            elif keyword != "enum" and str(stated) != str(value) and not _numbers_equal(stated, value):
                raise SourceError(
                    self.path,
                    facts.line,
                    f"{where}: its schema says {keyword} {stated!r} but its description {value!r}",
                )

    def object_fields(self, node: Any, where: str) -> list[FieldFacts]:
        """The fields of an object schema (a `$ref`, an inline object or an `allOf` of them), in fal's order."""
        if isinstance(node, dict) and "$ref" in node:
            _, node = self.target(node, where)
        if not isinstance(node, dict):
            raise self.fail(node, None, f"{where}: expected an object schema")
        if "allOf" in node:
            fields: list[FieldFacts] = []
            for member in node["allOf"]:
                fields += [f for f in self.object_fields(member, where) if f.name not in {g.name for g in fields}]
            return fields
        self.check_keywords(node, where)
        properties = node.get("properties")
        if not isinstance(properties, dict):
            raise self.fail(node, None, f"{where}: an object schema without `properties`")
        required = node.get("required") or []
        missing = [r for r in required if r not in properties]
        if missing:
            raise self.fail(node, "required", f"{where}: requires {missing}, which it does not define")
        order = node.get("x-fal-order-properties") or node.get("x-apifox-orders") or []
        names = [n for n in order if n in properties] + [n for n in properties if n not in order]
        return [self.field(str(n), properties[n], n in required, where, properties) for n in names]

    def define(self, name: str, schema: Any) -> None:
        """Record a named object type the document defines (fal's `fal__toolkit__image__image__Image`)."""
        if name in self.definitions or name in self._reading:
            return
        self._reading.add(name)
        fields = self.object_fields(schema, f"components.schemas.{name}")
        description = schema.get("description") if isinstance(schema, dict) else None
        self.definitions[name] = TypeDefinition(name, self.line(schema), fields, description)


def _kind(node: dict[str, Any]) -> str | None:
    """The JSON type a schema states (a list with "null", OpenAPI 3.1's nullable, counts as its other member), or the
    one its enum or properties imply."""
    kind = node.get("type")
    if isinstance(kind, list):
        kinds = [k for k in kind if k != "null"]
        kind = kinds[0] if len(kinds) == 1 else None
    if kind is None and "enum" in node:
        kind = "string" if all(isinstance(v, str) for v in node["enum"]) else None
    if kind is None and "properties" in node:
        kind = "object"
    return kind if isinstance(kind, str) else None


def _numbers_equal(a: Any, b: Any) -> bool:
    try:
        return float(a) == float(b)
    except (TypeError, ValueError):
        return False


def _json_media(operation: dict[str, Any], *keys: str) -> dict[str, Any] | None:
    node: Any = operation
    for key in keys:
        node = node.get(key) if isinstance(node, dict) else None
    content = node.get("content") if isinstance(node, dict) else None
    media = content.get("application/json") if isinstance(content, dict) else None
    return media if isinstance(media, dict) else None


def read_document(document: Any, path: Path, first_line: int, repairs: list[str], fmt: Format) -> SourceDocument:
    """Read an OpenAPI 3.x document that describes one endpoint. Raises SourceError naming file, line, problem."""
    if not isinstance(document, dict) or not str(document.get("openapi", "")).startswith("3."):
        raise SourceError(path, first_line, "not an OpenAPI 3.x document (no `openapi: 3.x` at its top)")
    reader = _Reader(path, document, first_line)
    reader.repairs += repairs
    paths = document.get("paths")
    if not isinstance(paths, dict):
        raise reader.fail(document, None, "the document has no `paths`")
    submits = [(p, item["post"]) for p, item in paths.items() if isinstance(item, dict) and "post" in item]
    metadata = (document.get("info") or {}).get("x-fal-metadata") or {}
    if not isinstance(metadata, dict):
        metadata = {}
    if len(submits) != 1:
        listed = ", ".join(str(p) for p, _ in submits) or "none"
        raise reader.fail(paths, None, f"expected one POST operation (the endpoint's submit), found: {listed}")
    endpoint, operation = submits[0]
    stated_id = metadata.get("endpointId")
    if stated_id and str(stated_id).strip("/") != str(endpoint).strip("/"):
        raise reader.fail(metadata, "endpointId", f"x-fal-metadata.endpointId {stated_id!r} but the POST is {endpoint}")
    source = SourceDocument(path=path, format=fmt, endpoint="/" + str(endpoint).strip("/"))
    if isinstance(operation.get("summary"), str):
        source.summary = operation["summary"]
    _read_submit(reader, source, operation)
    _read_output(reader, source, paths)
    _read_hosts(reader, source, document)
    docs = metadata.get("documentationUrl")
    if isinstance(docs, str):
        source.docs_url = docs
    elif m := re.search(r"(?i)official documentation:\s*(https://fal\.ai/\S+)", str(operation.get("description", ""))):
        source.docs_url = m.group(1).rstrip("'\".,")
    source.definitions = reader.definitions
    source.repairs = reader.repairs
    return source


def _read_submit(reader: _Reader, source: SourceDocument, operation: dict[str, Any]) -> None:
    """The input fields and examples of the submit operation."""
    body = _json_media(operation, "requestBody")
    if body is None or "schema" not in body:
        raise reader.fail(operation, None, f"POST {source.endpoint} has no application/json request body schema")
    source.input_fields = reader.object_fields(body["schema"], f"POST {source.endpoint} request body")
    if "example" in body:
        source.request_examples.append(_plain(body["example"]))
    for example in (body.get("examples") or {}).values():
        if isinstance(example, dict) and "value" in example:
            source.request_examples.append(_plain(example["value"]))
    answers = (operation.get("responses") or {}).get("200") or (operation.get("responses") or {}).get(200)
    submitted = _json_media({"answer": answers}, "answer")
    if submitted and "example" in submitted:
        source.submit_examples.append(_plain(submitted["example"]))


def _read_output(reader: _Reader, source: SourceDocument, paths: dict[str, Any]) -> None:
    """The output: the 200 answer of the result operation (`GET …/requests/{request_id}`), if the document has one."""
    result_path = next((p for p in paths if re.fullmatch(r".*/requests/\{[^}/]+\}/?", str(p))), None)
    if result_path is None or not isinstance(paths[result_path], dict) or "get" not in paths[result_path]:
        return
    media = _json_media(paths[result_path]["get"], "responses", "200")
    if media is not None and "schema" in media:
        source.output_fields = reader.object_fields(media["schema"], f"GET {result_path} 200")
        if "example" in media:
            source.output_examples.append(_plain(media["example"]))


def _read_hosts(reader: _Reader, source: SourceDocument, document: dict[str, Any]) -> None:
    """The servers the document names and the authorization scheme it asks for."""
    for index, server in enumerate(document.get("servers") or []):
        url = server.get("url") if isinstance(server, dict) else None
        if isinstance(url, str) and urlsplit(url).scheme in ("http", "https"):
            source.servers.append({"url": url, "description": str(server.get("description", "")).strip()})
        else:
            reader.repairs.append(f"servers[{index}] is not a server object (no url): ignored")
    schemes = (document.get("components") or {}).get("securitySchemes") or {}
    for scheme in schemes.values():
        if isinstance(scheme, dict) and scheme.get("type") == "http" and str(scheme.get("scheme")).lower() == "bearer":
            source.auth_scheme = "Bearer"
        elif isinstance(scheme, dict) and scheme.get("type") == "apiKey" and scheme.get("name") == "Authorization":
            source.auth_scheme = "Key"


def _plain(node: Any) -> Any:
    """A loaded YAML/JSON value as plain dicts and lists (ruamel's round-trip types compare the same, but
    are not what the rest of the pipeline and the YAML dumper expect)."""
    if isinstance(node, dict):
        return {str(k): _plain(v) for k, v in node.items()}
    if isinstance(node, list):
        return [_plain(v) for v in node]
    if isinstance(node, str):
        return str(node)
    if isinstance(node, bool):
        return bool(node)
    if isinstance(node, int):
        return int(node)
    if isinstance(node, float):
        return float(node)
    return node


def load(text: str, path: Path, first_line: int) -> Any:
    """Parse YAML 1.2 or JSON keeping lines (so `16:9` stays a string); a failure names the file's own line."""
    try:
        return YAML(typ="rt", pure=True).load(text)
    except MarkedYAMLError as err:
        mark = err.problem_mark or err.context_mark
        line = first_line + mark.line if mark is not None else None
        raise SourceError(path, line, f"does not parse: {err.problem or err.context or 'invalid YAML/JSON'}") from err
    except YAMLError as err:
        raise SourceError(path, None, f"does not parse: {err}") from err


def fenced_block(text: str) -> tuple[str, int] | None:
    """The first ```yaml / ```json block of a Markdown file and the file line it starts on, if any."""
    lines = text.splitlines()
    for index, line in enumerate(lines):
        if _FENCE_OPEN.match(line):
            for end in range(index + 1, len(lines)):
                if lines[end].strip() == "```":
                    return "\n".join(lines[index + 1 : end]) + "\n", index + 2
            raise SourceError("", index + 1, "the ``` block is never closed")
    return None


def read_openapi(path: Path) -> SourceDocument:
    """Read a `.openapi.json` / `.openapi.yaml` source: fal's queue OpenAPI or an Apifox export, fenced or not."""
    text = path.read_text(encoding="utf-8")
    try:
        fenced = fenced_block(text)
    except SourceError as err:
        raise SourceError(path, err.line, err.problem) from err
    block, first_line = fenced if fenced else (text, 1)
    repairs: list[str] = []
    if not block.lstrip().startswith(("{", "[")):
        block, repairs = repair_yaml(block, first_line)
    return read_document(load(block, path, first_line), path, first_line, repairs, Format.OPENAPI)
