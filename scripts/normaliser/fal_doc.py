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

import difflib
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .model import NOT_STATED, FieldFacts, Format, SourceDocument, SourceError

_ENDPOINT_ID = re.compile(r"\*\*Endpoint ID:\*\*\s*`([^`]+)`")
# The model tier as fal's page names it in its summary: "FLUX.1 Kontext [max]".
_TIER = re.compile(r"Kontext \\?\[(\w+)\\?\]")
_RANGE = re.compile(r"Range:\s*`([^`]+)`\s*to\s*`([^`]+)`")
_DEFAULT_TEXT = re.compile(r"Default value:\s*`([^`]*)`")
_POSSIBLE = re.compile(r"Possible values:\s*(.+)")
_SCALARS = {"string": "string", "integer": "integer", "float": "number", "boolean": "boolean"}
# The tags a fal API reference page uses, with the attributes each may carry. Any other tag or
# attribute is an error (a misspelt `<ParamFeild` would otherwise drop a field without a word).
KNOWN_TAGS: dict[str, frozenset[str]] = {
    "ParamField": frozenset({"body", "type", "required", "default"}),
    "Card": frozenset({"title", "icon", "href"}),
    "CodeGroup": frozenset(),
}
_TAG_START = re.compile(r"<(/?)([A-Za-z][\w.]*)")
_ATTR_NAME = re.compile(r"[A-Za-z_][\w-]*")
_FENCE = re.compile(r"^\s*```")
_INLINE_CODE = re.compile(r"`[^`\n]*`")


@dataclass(frozen=True)
class Element:
    """One tag of the page, with its attributes and the (unmasked) text between its open and close tags."""

    name: str
    attrs: dict[str, str | None]
    line: int
    start: int
    body: str
    body_start: int


def _line_of(text: str, index: int) -> int:
    return text.count("\n", 0, index) + 1


def _section(text: str, heading: str, path: Path) -> tuple[int, int]:
    """The offsets of the text under a Markdown heading, up to the next heading of the same or a higher level."""
    m = re.search(rf"^(#+) {re.escape(heading)}\s*$", text, re.MULTILINE)
    if not m:
        raise SourceError(path, None, f"no '{heading}' section; a fal API reference page has one")
    level = len(m.group(1))
    end = re.compile(rf"^#{{1,{level}}} ", re.MULTILINE).search(text, m.end())
    return m.end(), end.start() if end else len(text)


def type_to_schema(fal_type: str, enum_values: list[str] | None) -> dict[str, Any] | None:
    """Map a fal type name to a schema; another type is a reference by fal's own name (the build renames it)."""
    if fal_type in _SCALARS:
        return {"type": _SCALARS[fal_type]}
    if m := re.fullmatch(r"list<(.+)>", fal_type):
        inner = type_to_schema(m.group(1), None)
        return {"type": "array", "items": inner} if inner else None
    if enum_values is not None and (fal_type == "Enum" or fal_type.endswith("Enum")):
        # fal's Kontext enums are string enums, even SafetyToleranceEnum ("1".."6"):
        # https://fal.ai/models/fal-ai/flux-pro/kontext/max/api ("safety_tolerance": "2").
        return {"type": "string"}
    return {"$ref": f"#/components/schemas/{fal_type}"}


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


def _masked(text: str, path: Path) -> str:
    """The page with code (fenced blocks and inline spans) blanked out, offsets and lines kept.

    Tags are looked for in what is left: a `<` inside an example is not a tag.
    """
    out: list[str] = []
    fence_line: int | None = None
    for number, line in enumerate(text.split("\n"), start=1):
        if _FENCE.match(line):
            fence_line = None if fence_line is not None else number
            out.append(" " * len(line))
        elif fence_line is not None:
            out.append(" " * len(line))
        else:
            out.append(_INLINE_CODE.sub(lambda m: " " * len(m.group(0)), line))
    if fence_line is not None:
        raise SourceError(path, fence_line, "a ``` code block is never closed")
    return "\n".join(out)


def _read_attributes(
    masked: str, position: int, name: str, line: int, path: Path
) -> tuple[dict[str, str | None], int, bool]:
    """Read the attributes of a tag from `position`; return them, the end offset and whether it closes itself."""
    attrs: dict[str, str | None] = {}
    while True:
        while position < len(masked) and masked[position].isspace():
            position += 1
        if position >= len(masked):
            raise SourceError(path, line, f"<{name}> is never ended with '>'")
        if masked.startswith("/>", position):
            return attrs, position + 2, True
        if masked[position] == ">":
            return attrs, position + 1, False
        m = _ATTR_NAME.match(masked, position)
        if not m:
            where = _line_of(masked, position)
            raise SourceError(path, where, f"<{name}>: unexpected {masked[position]!r} among the attributes")
        attribute, position = m.group(0), m.end()
        if attribute not in KNOWN_TAGS[name]:
            raise SourceError(
                path,
                _line_of(masked, m.start()),
                f"<{name}> has an unknown attribute {attribute!r}{_suggest(attribute, KNOWN_TAGS[name])}",
            )
        if attribute in attrs:
            raise SourceError(path, _line_of(masked, m.start()), f"<{name}> has {attribute!r} twice")
        if not masked.startswith('="', position):
            attrs[attribute] = None
            continue
        opening = position + 1
        closing = masked.find('"', opening + 1)
        newline = masked.find("\n", opening + 1)
        if closing < 0 or (0 <= newline < closing):
            raise SourceError(
                path, _line_of(masked, opening), f"<{name}> {attribute}=: the quote is never closed on its line"
            )
        attrs[attribute] = masked[opening + 1 : closing]
        position = closing + 1
        if position < len(masked) and not (masked[position].isspace() or masked[position] in "/>"):
            raise SourceError(
                path,
                _line_of(masked, position),
                f"<{name}> {attribute}={attrs[attribute]!r} is followed by {masked[position]!r}: "
                "a quote is missing or misplaced",
            )


def _suggest(word: str, known: frozenset[str] | set[str]) -> str:
    close = difflib.get_close_matches(word, sorted(known), n=1)
    return f" (did you mean {close[0]!r}?)" if close else f" (known: {', '.join(sorted(known)) or 'none'})"


def read_elements(text: str, path: Path) -> list[Element]:
    """Every tag of the page, in order, checked: known names and attributes, quotes closed, tags balanced.

    Raises SourceError naming the line of the first problem.
    """
    masked = _masked(text, path)
    elements: list[Element] = []
    open_tags: list[tuple[str, dict[str, str | None], int, int, int]] = []  # name, attrs, line, start, body start
    position = 0
    while m := _TAG_START.search(masked, position):
        closing, name = m.group(1) == "/", m.group(2)
        line = _line_of(masked, m.start())
        if name not in KNOWN_TAGS:
            raise SourceError(path, line, f"unknown tag <{m.group(1)}{name}>{_suggest(name, set(KNOWN_TAGS))}")
        if closing:
            end = masked.find(">", m.end())
            if end < 0 or masked[m.end() : end].strip():
                raise SourceError(path, line, f"</{name}> is not closed with '>'")
            if not open_tags or open_tags[-1][0] != name:
                still = (
                    f"<{open_tags[-1][0]}> from line {open_tags[-1][2]} is still open"
                    if open_tags
                    else "nothing is open"
                )
                raise SourceError(path, line, f"</{name}> closes no <{name}>: {still}")
            opened, attrs, opened_line, start, body_start = open_tags.pop()
            elements.append(Element(opened, attrs, opened_line, start, text[body_start : m.start()], body_start))
            position = end + 1
            continue
        attrs, position, self_closing = _read_attributes(masked, m.end(), name, line, path)
        if self_closing:
            elements.append(Element(name, attrs, line, m.start(), "", position))
        else:
            outer = next((t for t in open_tags if t[0] == "ParamField"), None)
            if name == "ParamField" and outer is not None:
                raise SourceError(path, outer[2], f"<ParamField> is never closed: line {line} opens the next one")
            open_tags.append((name, attrs, line, m.start(), position))
    if open_tags:
        name, _, line, _, _ = open_tags[-1]
        raise SourceError(path, line, f"<{name}> is never closed (no </{name}>)")
    return sorted(elements, key=lambda e: e.start)


def _possible_values(element: Element, text: str, path: Path, name: str) -> tuple[list[str] | None, int]:
    """The values after `Possible values:` and the line they are on (the element's line if there are none)."""
    possible = _POSSIBLE.search(element.body)
    if not possible:
        return None, element.line
    line = _line_of(text, element.body_start + possible.start())
    values = re.findall(r"`([^`]*)`", possible.group(1))
    if not values:
        raise SourceError(path, line, f"{name}: 'Possible values:' lists no `value`")
    repeated = sorted({v for v in values if values.count(v) > 1})
    if repeated:
        raise SourceError(path, line, f"{name}: possible value {', '.join(map(repr, repeated))} is listed twice")
    return values, line


def read_fields(elements: list[Element], start: int, end: int, text: str, path: Path) -> list[FieldFacts]:
    """Read every `<ParamField>` between offsets `start` and `end` (one schema section)."""
    fields: list[FieldFacts] = []
    for element in elements:
        if element.name != "ParamField" or not start <= element.start < end:
            continue
        attrs, line, body = element.attrs, element.line, element.body
        if not attrs.get("body") or not attrs.get("type"):
            raise SourceError(path, line, "<ParamField> without body= or type=")
        name, fal_type = str(attrs["body"]), str(attrs["type"])
        if any(f.name == name for f in fields):
            raise SourceError(path, line, f"{name}: a second <ParamField> for the same field in one schema")
        values, values_line = _possible_values(element, text, path, name)
        schema = type_to_schema(fal_type, values)
        if schema is None:
            raise SourceError(path, line, f"type {fal_type!r} of {name!r} is not a type we can read")
        facts = FieldFacts(
            name=name,
            schema=schema,
            required="required" in attrs,
            description=_description(body),
            enum=values,
            line=line,
        )
        try:
            if attrs.get("default") is not None:
                facts.default = _typed_value(str(attrs["default"]), schema)
            if d := _DEFAULT_TEXT.search(body):
                stated = _typed_value(d.group(1), schema)
                if facts.default is not NOT_STATED and stated != facts.default:
                    raise SourceError(path, line, f"{name}: default={facts.default!r} but text says {stated!r}")
                facts.default = stated
            if r := _RANGE.search(body):
                facts.minimum = _typed_value(r.group(1), schema)
                facts.maximum = _typed_value(r.group(2), schema)
        except ValueError as err:
            raise SourceError(path, line, f"{name}: {err}") from err
        if values is not None and facts.default is not NOT_STATED and str(facts.default) not in values:
            raise SourceError(
                path, values_line, f"{name}: default {facts.default!r} is not among the possible values {values}"
            )
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
    source = SourceDocument(path=path, format=Format.FAL_DOC, endpoint="/" + m.group(1).strip("/"))
    if title := re.search(r"^> (API reference for .+)$", text, re.MULTILINE):
        source.summary = title.group(1).strip()
        if tier := _TIER.search(source.summary):
            source.tier = tier.group(1).lower()
    if re.search(r"Authorization: Key", text):
        source.auth_scheme = "Key"
    source.docs_url = f"https://fal.ai/models/{m.group(1).strip('/')}"

    elements = read_elements(text, path)
    start, end = _section(text, "Input Schema", path)
    source.input_fields = read_fields(elements, start, end, text, path)
    if not source.input_fields:
        raise SourceError(path, _line_of(text, start), "the Input Schema section has no <ParamField>")
    start, end = _section(text, "Output Schema", path)
    source.output_fields = read_fields(elements, start, end, text, path)
    if (example := _json_block(text, "Input Example", path)) is not None:
        source.request_examples.append(example)
    if (example := _json_block(text, "Output Example", path)) is not None:
        source.output_examples.append(example)
    return source
