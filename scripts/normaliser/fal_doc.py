"""Reader for fal's API reference pages (Markdown with `<ParamField>` tags).

A field reads like:

    <ParamField body="num_images" type="integer" default="1">
      The number of images to generate. Default value: `1`

      Range: `1` to `4`
    </ParamField>

Types are fal's: `string`, `integer`, `float`, `boolean`, `list<T>`, enum type names (`*Enum`, or
a bare `Enum`) whose values follow `Possible values:`, and qualified model names such as
`registry__image__fast_sdxl__models__Image` (a module path joined by `__`; the last part names it).
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from .model import FieldFacts, SourceDocument, SourceError, SourceKind

_ENDPOINT_ID = re.compile(r"\*\*Endpoint ID:\*\*\s*`([^`]+)`")
# Attribute values may hold `>` (`type="list<string>"`), so quoted values are matched whole.
_PARAM = re.compile(r"<ParamField\s+(?P<attrs>(?:[^>\"]|\"[^\"]*\")*?)\s*(?:/>|>(?P<body>.*?)</ParamField>)", re.DOTALL)
_ATTR = re.compile(r"(\w+)(?:=\"([^\"]*)\")?")
_RANGE = re.compile(r"Range:\s*`([^`]+)`\s*to\s*`([^`]+)`")
_DEFAULT_TEXT = re.compile(r"Default value:\s*`([^`]*)`")
_POSSIBLE = re.compile(r"Possible values:\s*(.+)")
_SCALARS = {"string": "string", "integer": "integer", "float": "number", "boolean": "boolean"}


def _line_of(text: str, index: int) -> int:
    return text.count("\n", 0, index) + 1


def _section(text: str, heading: str, path: Path) -> tuple[str, int]:
    """The text under a Markdown heading, up to the next heading of the same or a higher level."""
    m = re.search(rf"^(#+) {re.escape(heading)}\s*$", text, re.MULTILINE)
    if not m:
        raise SourceError(path, None, f"no '{heading}' section; a fal API reference page has one")
    level = len(m.group(1))
    end = re.compile(rf"^#{{1,{level}}} ", re.MULTILINE).search(text, m.end())
    return text[m.end() : end.start() if end else len(text)], m.end()


def type_to_schema(fal_type: str, enum_values: list[str] | None) -> tuple[dict[str, Any] | None, str | None]:
    """Map a fal type name to (schema, enum name). Enum types give no schema: the merge names them."""
    if fal_type in _SCALARS:
        return {"type": _SCALARS[fal_type]}, None
    if m := re.fullmatch(r"list<(.+)>", fal_type):
        inner, _ = type_to_schema(m.group(1), None)
        return ({"type": "array", "items": inner} if inner else None), None
    if enum_values is not None and (fal_type == "Enum" or fal_type.endswith("Enum")):
        # fal's Kontext enums are string enums, even SafetyToleranceEnum ("1".."6"): fal-protocol.md §1.2.
        return {"type": "string"}, fal_type
    return {"$ref": f"#/components/schemas/{fal_type.rsplit('__', 1)[-1]}"}, None


def _typed_value(raw: str, schema: dict[str, Any] | None) -> Any:
    raw = raw.strip().strip('"')
    json_type = (schema or {}).get("type")
    if json_type == "integer":
        return int(raw)
    if json_type == "number":
        return float(raw)
    if json_type == "boolean":
        return raw.lower() == "true"
    return raw


def _description(body: str) -> str | None:
    kept = [
        line.strip()
        for line in body.strip().splitlines()
        if not line.strip().startswith(("Range:", "Possible values:"))
    ]
    text = " ".join(line for line in kept if line)
    text = _DEFAULT_TEXT.sub("", text).strip()
    return re.sub(r"\s+", " ", text) or None


def read_fields(section: str, section_start: int, text: str, path: Path) -> list[FieldFacts]:
    """Read every `<ParamField>` of one schema section."""
    fields: list[FieldFacts] = []
    for m in _PARAM.finditer(section):
        attrs = dict(_ATTR.findall(m.group("attrs")))
        line = _line_of(text, section_start + m.start())
        if "body" not in attrs or "type" not in attrs:
            raise SourceError(path, line, "<ParamField> without body= or type=")
        body = m.group("body") or ""
        possible = _POSSIBLE.search(body)
        values = re.findall(r"`([^`]*)`", possible.group(1)) if possible else None
        schema, enum_name = type_to_schema(attrs["type"], values)
        if schema is None:
            raise SourceError(path, line, f"type {attrs['type']!r} of {attrs['body']!r} is not a type we can read")
        facts = FieldFacts(
            name=attrs["body"],
            schema=schema,
            required="required" in attrs,
            description=_description(body),
            enum=values,
            enum_name=enum_name,
        )
        try:
            if "default" in attrs:
                facts.default = _typed_value(attrs["default"], schema)
            if d := _DEFAULT_TEXT.search(body):
                stated = _typed_value(d.group(1), schema)
                if facts.default is not None and stated != facts.default:
                    raise SourceError(path, line, f"{facts.name}: default={facts.default!r} but text says {stated!r}")
                facts.default = stated
            if r := _RANGE.search(body):
                facts.minimum = _typed_value(r.group(1), schema)
                facts.maximum = _typed_value(r.group(2), schema)
        except ValueError as err:
            raise SourceError(path, line, f"{facts.name}: {err}") from err
        fields.append(facts)
    return fields


def _json_block(text: str, heading: str, path: Path) -> Any | None:
    m = re.search(rf"^## {re.escape(heading)}\s*$\s*```json[^\n]*\n(.*?)^```", text, re.MULTILINE | re.DOTALL)
    if not m:
        return None
    try:
        return json.loads(m.group(1))
    except json.JSONDecodeError as err:
        raise SourceError(path, _line_of(text, m.start(1)) + err.lineno - 1, f"{heading}: {err.msg}") from err


def read_fal_doc(path: Path) -> SourceDocument:
    """Read one fal API reference page into a SourceDocument. Raises SourceError on what it cannot read."""
    text = path.read_text(encoding="utf-8")
    m = _ENDPOINT_ID.search(text)
    if not m:
        raise SourceError(path, None, "no '**Endpoint ID:**' line; a fal API reference page has one")
    source = SourceDocument(path=path, kind=SourceKind.FAL_DOC, endpoint="/" + m.group(1).strip("/"))
    if title := re.search(r"^> (API reference for .+)$", text, re.MULTILINE):
        source.summary = title.group(1).strip()
    if re.search(r"Authorization: Key", text):
        source.auth_scheme = "Key"
    source.docs_url = f"https://fal.ai/models/{m.group(1).strip('/')}"

    inputs, start = _section(text, "Input Schema", path)
    source.input_fields = read_fields(inputs, start, text, path)
    outputs, start = _section(text, "Output Schema", path)
    source.output_fields = read_fields(outputs, start, text, path)
    if not source.input_fields:
        raise SourceError(path, _line_of(text, start), "the Input Schema section has no <ParamField>")
    if (example := _json_block(text, "Input Example", path)) is not None:
        source.request_examples.append(example)
    if (example := _json_block(text, "Output Example", path)) is not None:
        source.output_examples.append(example)
    return source
