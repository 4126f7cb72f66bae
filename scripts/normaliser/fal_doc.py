"""Reader for fal's API reference pages (Markdown with `<ParamField>` tags), one endpoint or several in `<Tabs>`.

A field reads like:

    <ParamField body="num_images" type="integer" default="1">
      The number of images to generate. Default value: `1`

      Range: `1` to `4`
    </ParamField>

Types are fal's (fal_types.py): `string`, `integer`, `float`, `boolean`, `list<T>`, enum type names
(`*Enum`, or a bare `Enum`) whose values follow `Possible values:`, named types by fal's full name
(`registry__image__fast_sdxl__models__Image`, `Timings`) and unions (`ImageSize | Enum`).

A page for several endpoints (fal's current pages, e.g. https://fal.ai/models/fal-ai/flux/krea/api)
puts each in a `<Tab title="…">` inside `<Tabs>`, with its own `**Endpoint ID:**`, schemas and
examples, indented; the tab read is the one for the endpoint the file is named after.

Strict: an unknown tag or attribute, a tag never closed, a value listed twice, a default outside the
values, a type word not understood, a `<ParamField>` outside the schema sections, a fact in words
that cannot be read: each stops the run naming the line.
"""

from __future__ import annotations

import difflib
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .descriptions import apply_description
from .fal_types import FalTypeError, fits, read_type
from .model import NOT_STATED, FieldFacts, Format, SourceDocument, SourceError
from .source_names import Candidate, choose_for_file

_ENDPOINT_ID = re.compile(r"\*\*Endpoint ID:\*\*\s*`([^`]+)`")
# The model tier as fal's page names it in its summary: "FLUX.1 Kontext [max]".
_TIER = re.compile(r"Kontext \\?\[(\w+)\\?\]")
_RANGE = re.compile(r"Range:\s*`([^`]+)`\s*to\s*`([^`]+)`")
_DEFAULT_TEXT = re.compile(r"Default value:\s*`([^`]*)`")
_POSSIBLE = re.compile(r"Possible values:\s*(.+)")
# The tags a fal API reference page uses, with the attributes each may carry. Any other tag or
# attribute is an error (a misspelt `<ParamFeild` would otherwise drop a field without a word).
KNOWN_TAGS: dict[str, frozenset[str]] = {
    "ParamField": frozenset({"body", "type", "required", "default"}),
    "Card": frozenset({"title", "icon", "href"}),
    "CodeGroup": frozenset(),
    "Tabs": frozenset(),
    "Tab": frozenset({"title"}),
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


def _section(masked: str, heading: str, region: tuple[int, int]) -> tuple[int, int, int] | None:
    """The offsets of the text under a heading within `region` (up to the next heading of its level or higher),
    and the heading's offset; None when the region has no such heading. Headings may be indented (inside a tab)."""
    start, stop = region
    m = re.compile(rf"^[ \t]*(#+) {re.escape(heading)}[ \t]*$", re.MULTILINE).search(masked, start, stop)
    if not m:
        return None
    level = len(m.group(1))
    end = re.compile(rf"^[ \t]*#{{1,{level}}} ", re.MULTILINE).search(masked, m.end(), stop)
    return m.end(), end.start() if end else stop, m.start()


def type_to_schema(fal_type: str, enum_values: list[str] | None) -> dict[str, Any]:
    """Map a fal type name to a schema's type part; a named type is a reference by fal's own full name.

    Raises FalTypeError for a type this reader does not understand (see fal_types.read_type).
    """
    return read_type(fal_type, enum_values)[0]


def _typed_value(raw: str, schema: dict[str, Any]) -> Any:
    """A value the page writes as text (`default="3.5"`, `Default value: `"jpeg"``) as the field's type."""
    raw = raw.strip()
    json_type = schema.get("type")
    if json_type in ("array", "object"):
        try:
            return json.loads(raw)
        except json.JSONDecodeError as err:
            raise ValueError(f"{raw!r} is not a JSON {json_type}") from err
    raw = raw.strip('"')
    if json_type == "integer":
        return int(raw)
    if json_type == "number":
        return float(raw)
    if json_type == "boolean":
        if raw.lower() not in ("true", "false"):
            raise ValueError(f"{raw!r} is not true or false")
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


def _field(element: Element, text: str, path: Path, notes: list[str]) -> FieldFacts:
    """Read one `<ParamField>`: its type, required, description, default, range and values."""
    attrs, line, body = element.attrs, element.line, element.body
    if not attrs.get("body") or not attrs.get("type"):
        raise SourceError(path, line, "<ParamField> without body= or type=")
    name, fal_type = str(attrs["body"]), str(attrs["type"])
    values, values_line = _possible_values(element, text, path, name)
    try:
        schema, enum, unlisted = read_type(fal_type, values)
    except FalTypeError as err:
        raise SourceError(path, line, f"{name}: type {fal_type!r}: {err}") from err
    notes += [f"line {line}: {name}: the page lists no values for the {word} in {fal_type!r}" for word in unlisted]
    facts = FieldFacts(
        name=name, schema=schema, required="required" in attrs, description=_description(body), enum=enum, line=line
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
            if schema.get("type") not in ("integer", "number"):
                raise ValueError(f"a range on a field of type {fal_type!r}")
            facts.minimum = _typed_value(r.group(1), schema)
            facts.maximum = _typed_value(r.group(2), schema)
    except ValueError as err:
        raise SourceError(path, line, f"{name}: {err}") from err
    if facts.default is not NOT_STATED and not fits(facts.default, schema, enum):
        where = values_line if values is not None else line
        among = f"among the possible values {values}" if values is not None else f"of type {fal_type!r}"
        raise SourceError(path, where, f"{name}: default {facts.default!r} is not {among}")
    notes += [f"line {line}: {note}" for note in apply_description(facts, schema.get("type"), path, line)]
    return facts


def read_fields(
    elements: list[Element], span: tuple[int, int], text: str, path: Path, notes: list[str]
) -> list[FieldFacts]:
    """Read every `<ParamField>` between the offsets of `span` (one schema section).

    What is reported rather than read (an enum's values the page does not list) goes to `notes`.
    """
    fields: list[FieldFacts] = []
    for element in elements:
        if element.name != "ParamField" or not span[0] <= element.start < span[1]:
            continue
        facts = _field(element, text, path, notes)
        if any(f.name == facts.name for f in fields):
            raise SourceError(
                path, element.line, f"{facts.name}: a second <ParamField> for the same field in one schema"
            )
        fields.append(facts)
    return fields


def _json_block(text: str, masked: str, heading: str, region: tuple[int, int], path: Path) -> Any | None:
    """The JSON of the ```json block right under a heading (`## Input Example`, or `### …` in a tab), if any."""
    section = _section(masked, heading, region)
    if section is None:
        return None
    m = re.compile(r"\s*^[ \t]*```json[^\n]*\n(.*?)^[ \t]*```", re.MULTILINE | re.DOTALL).match(text, section[0])
    if not m:
        raise SourceError(path, _line_of(text, section[2]), f"{heading}: no ```json block under the heading")
    try:
        return json.loads(m.group(1))
    except json.JSONDecodeError as err:
        raise SourceError(path, _line_of(text, m.start(1)) + err.lineno - 1, f"{heading}: {err.msg}") from err


def _endpoint_ids(text: str, masked: str, start: int, end: int) -> list[tuple[str, int]]:
    """Every `**Endpoint ID:** `id`` between two offsets outside code, with its offset."""
    return [
        (m.group(1).strip("/"), m.start())
        for m in _ENDPOINT_ID.finditer(text, start, end)
        if masked[m.start()] == "*"  # not inside a code block
    ]


def _region(text: str, masked: str, elements: list[Element], path: Path) -> tuple[str, tuple[int, int]]:
    """The endpoint the file is for and the part of the page about it: the whole page, or its tab."""
    tabs = [e for e in elements if e.name == "Tab"]
    groups = [e for e in elements if e.name == "Tabs"]
    if not tabs:
        ids = _endpoint_ids(text, masked, 0, len(text))
        if not ids:
            raise SourceError(path, None, "no '**Endpoint ID:**' line; a fal API reference page has one")
        if len(ids) > 1:
            lines = ", ".join(str(_line_of(text, offset)) for _, offset in ids)
            raise SourceError(
                path, _line_of(text, ids[1][1]), f"several '**Endpoint ID:**' lines outside tabs (lines {lines})"
            )
        return ids[0][0], (0, len(text))
    candidates: list[Candidate] = []
    spans: dict[int, tuple[int, int]] = {}
    covered: list[tuple[int, int]] = []
    for tab in tabs:
        span = (tab.body_start, tab.body_start + len(tab.body))
        covered.append(span)
        if not any(g.body_start <= tab.start < g.body_start + len(g.body) for g in groups):
            raise SourceError(path, tab.line, "a <Tab> outside <Tabs>")
        if not tab.attrs.get("title"):
            raise SourceError(path, tab.line, '<Tab> without title="…"')
        ids = _endpoint_ids(text, masked, *span)
        if len(ids) != 1:
            found = "no" if not ids else f"{len(ids)}"
            raise SourceError(
                path, tab.line, f"tab {tab.attrs['title']!r} has {found} '**Endpoint ID:**' lines; one expected"
            )
        candidates.append(Candidate(str(tab.attrs["title"]), ids[0][0], tab.line))
        spans[tab.line] = span
    outside = [o for _, o in _endpoint_ids(text, masked, 0, len(text)) if not any(a <= o < b for a, b in covered)]
    if outside:
        raise SourceError(
            path, _line_of(text, outside[0]), "an '**Endpoint ID:**' line outside the tabs of a page with tabs"
        )
    chosen = choose_for_file(path, candidates, "tab", groups[0].line if groups else None)
    return chosen.endpoint_id, spans[chosen.line]


def read_fal_doc(path: Path) -> SourceDocument:
    """Read one fal API reference page (the tab of the file's endpoint, if it has tabs) into a SourceDocument.

    Raises SourceError naming the file, the line and what was not understood.
    """
    text = path.read_text(encoding="utf-8")
    elements = read_elements(text, path)
    masked = _masked(text, path)
    endpoint_id, region = _region(text, masked, elements, path)
    source = SourceDocument(path=path, format=Format.FAL_DOC, endpoint="/" + endpoint_id)
    if title := re.search(r"^> (API reference for .+)$", text, re.MULTILINE):
        source.summary = title.group(1).strip()
        if tier := _TIER.search(source.summary):
            source.tier = tier.group(1).lower()
    if re.search(r"Authorization: Key", text):  # fal's scheme, shown in the cURL example of any tab
        source.auth_scheme = "Key"
    source.docs_url = f"https://fal.ai/models/{endpoint_id}"

    inputs = _section(masked, "Input Schema", region)
    if inputs is None:
        raise SourceError(
            path, _line_of(text, region[0]), "no 'Input Schema' section; a fal API reference page has one"
        )
    source.input_fields = read_fields(elements, inputs[:2], text, path, source.repairs)
    if not source.input_fields:
        raise SourceError(path, _line_of(text, inputs[2]), "the Input Schema section has no <ParamField>")
    outputs = _section(masked, "Output Schema", region)
    if outputs is not None:
        source.output_fields = read_fields(elements, outputs[:2], text, path, source.repairs)
        if not source.output_fields:
            raise SourceError(path, _line_of(text, outputs[2]), "the Output Schema section has no <ParamField>")
    sections = [s for s in (inputs, outputs) if s is not None]
    for element in elements:
        inside = region[0] <= element.start < region[1]
        if element.name == "ParamField" and inside and not any(a <= element.start < b for a, b, _ in sections):
            raise SourceError(path, element.line, "a <ParamField> outside the Input Schema and Output Schema sections")
    if (example := _json_block(text, masked, "Input Example", region, path)) is not None:
        source.request_examples.append(example)
    if (example := _json_block(text, masked, "Output Example", region, path)) is not None:
        source.output_examples.append(example)
    return source
