"""Reader for fal's llms.txt page of a model (https://fal.ai/models/<id>/llms.txt), saved as `<endpoint>__fal.llms.md`.

The page is Markdown that fal generates from the app's models:

    # FLUX.1 Kontext [dev]
    > One-line summary.
    ## Overview
    - **Endpoint**: `https://fal.run/fal-ai/flux-kontext/dev`
    - **Model ID**: `fal-ai/flux-kontext/dev`
    - **Category**: image-to-image
    - **Kind**: inference
    ### Input Schema
    - **`guidance_scale`** (`float`, _optional_):
      Description lines. Default value: `2.5`
      - Default: `2.5`
      - Range: `1` to `20`
    - **`output_format`** (`OutputFormatEnum`, _optional_):
      - Options: `"jpeg"`, `"png"`
    **Full Example**: (a ```json block)
    ### Output Schema
    - **`images`** (`list<Image>`, _required_):
      - Array of Image

The facts under a field come last, one per sub-bullet: `Default:` and `Options:`/`Possible values:`
hold JSON values between backticks, `Range:` two numbers, `Array of X` and `One of: A | B` repeat
the type, `Examples:` sample values (not read). Sub-bullets before them belong to the description
(fal lists what each value means: `` - `auto`: … ``). Types are read by fal_types.py.

Markdown's structure (headings, lists, code blocks, with their lines) comes from markdown-it-py, a
CommonMark parser; the fields are read from it.

A saved file may hold several pages one after another (`# Title` each): the page read is the one
whose Model ID the file is named after. A copy of fal's queue OpenAPI appended after the page is
reported and not read: save it as its own `<endpoint>__fal.openapi.json` source.

Strict: a bullet of a schema section that is not a field, a sub-bullet that looks like a fact this
reader does not know, an unknown type word, an enum without values, a value listed twice, a default
outside the type or the options, the page's facts and its description disagreeing, an empty schema
section: each stops the run naming the line.
"""

from __future__ import annotations

import difflib
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from markdown_it import MarkdownIt
from markdown_it.tree import SyntaxTreeNode

from .descriptions import apply_description
from .fal_types import FalTypeError, fits, read_type
from .model import NOT_STATED, FieldFacts, Format, SourceDocument, SourceError
from .source_names import Candidate, choose_for_file

# `- **`name`** (`type`, _required_):` and the description, on the same line or the next.
_FIELD = re.compile(
    r"\*\*`(?P<name>[^`]+)`\*\*\s*\(`(?P<type>[^`]+)`,\s*_(?P<req>required|optional)_\)\s*(?::[ \t]*(?P<rest>.*))?"
)
_OVERVIEW_ITEM = re.compile(r"\*\*(?P<label>[^*]+)\*\*:\s*(?P<value>.*)")
_CODE = re.compile(r"`([^`]*)`")
# The facts fal writes under a field, and `Array of X` (no colon).
_FACTS = ("Default", "Range", "Options", "Possible values", "Examples", "One of")
_FACT = re.compile(rf"(?P<label>{'|'.join(_FACTS)}):[ \t]*(?P<value>.*)|Array of (?P<items>\S.*)", re.DOTALL)
# A sub-bullet that reads like a fact (`Label: `value``) but names none we know: a misspelling or a new fact.
_FACT_LIKE = re.compile(r"(?P<label>[A-Z][A-Za-z]*(?: [a-z]+)?):[ \t]*[`\"\d-]")
_RANGE = re.compile(r"`(?P<low>[^`]+)`\s+to\s+`(?P<high>[^`]+)`")
_OPTIONS = re.compile(r"`[^`]*`(?:\s*,\s*`[^`]*`)*")
_DEFAULT_TEXT = re.compile(r"Default value:\s*`([^`]*)`")
_TIER = re.compile(r"Kontext \\?\[(\w+)\\?\]")
_MARKDOWN = MarkdownIt("commonmark")


def _line(node: SyntaxTreeNode) -> int:
    """The file's 1-based line where a block starts."""
    return (node.map[0] if node.map else 0) + 1


def _text(node: SyntaxTreeNode) -> str:
    """The raw text of a paragraph or heading (its inline child), as written."""
    return "".join(child.content for child in node.children if child.type == "inline")


@dataclass
class _Page:
    """One `# Title` of the file and the blocks up to the next."""

    title: SyntaxTreeNode
    blocks: list[SyntaxTreeNode] = field(default_factory=list)


def _pages(root: SyntaxTreeNode) -> list[_Page]:
    pages: list[_Page] = []
    for node in root.children:
        if node.type == "heading" and node.tag == "h1":
            pages.append(_Page(node))
        elif pages:
            pages[-1].blocks.append(node)
    return pages


def _section(page: _Page, heading: str, path: Path) -> tuple[SyntaxTreeNode, list[SyntaxTreeNode]] | None:
    """The heading `heading` of a page and the blocks under it (up to the next heading of its level or higher)."""
    found = [i for i, n in enumerate(page.blocks) if n.type == "heading" and _text(n).strip() == heading]
    if not found:
        return None
    if len(found) > 1:
        raise SourceError(path, _line(page.blocks[found[1]]), f"a second '{heading}' section in one page")
    start = found[0]
    level = int(page.blocks[start].tag[1:])
    blocks = []
    for node in page.blocks[start + 1 :]:
        if node.type == "heading" and int(node.tag[1:]) <= level:
            break
        blocks.append(node)
    return page.blocks[start], blocks


def _model_id(page: _Page, path: Path) -> tuple[str, int] | None:
    """The page's `**Model ID**` from its Overview (checked against its `**Endpoint**`), or None if it has none."""
    section = _section(page, "Overview", path)
    if section is None:
        return None
    stated: dict[str, tuple[str, int]] = {}
    for block in section[1]:
        for item in block.children if block.type == "bullet_list" else []:
            paragraph = item.children[0] if item.children else None
            if paragraph is not None and (m := _OVERVIEW_ITEM.match(_text(paragraph).split("\n", 1)[0])):
                stated[m.group("label").strip()] = (m.group("value").strip(), _line(item))
    if "Model ID" not in stated:
        return None
    value, line = stated["Model ID"]
    code = _CODE.fullmatch(value)
    model_id = (code.group(1) if code else value).strip().strip("/")
    if not re.fullmatch(r"[\w.\-]+(?:/[\w.\-]+)+", model_id):
        raise SourceError(path, line, f"Model ID {value!r} is not an endpoint id such as fal-ai/flux-kontext/dev")
    if "Endpoint" in stated:
        endpoint, endpoint_line = stated["Endpoint"]
        url = _CODE.fullmatch(endpoint)
        if (url.group(1) if url else endpoint).rstrip("/").rsplit("fal.run/", 1)[-1] != model_id:
            raise SourceError(path, endpoint_line, f"the Endpoint {endpoint} is not the Model ID {model_id}")
    return model_id, line


def _appended_openapi(blocks: list[SyntaxTreeNode], path: Path) -> list[str]:
    """Notes for a copy of fal's queue OpenAPI appended after the page (a JSON object with `openapi`), not read."""
    notes = []
    for block in blocks:
        if block.type == "fence":
            content = block.content
        elif block.type == "paragraph" and _text(block).lstrip().startswith("{"):
            content = _text(block)
        else:
            continue
        try:
            document = json.loads(content)
        except json.JSONDecodeError as err:
            if block.type == "paragraph":  # raw JSON after the page that does not parse: neither read nor skipped
                raise SourceError(path, _line(block) + err.lineno - 1, f"JSON after the page: {err.msg}") from err
            continue
        if isinstance(document, dict) and "openapi" in document:
            endpoint = ((document.get("info") or {}).get("x-fal-metadata") or {}).get("endpointId", "?")
            notes.append(
                f"line {_line(block)}: the queue OpenAPI document appended to the page (for {endpoint}) is not "
                "read with it: save it as its own <endpoint>__fal.openapi.json source to use its facts"
            )
    return notes


def _decoded(raw: str) -> Any:
    """A value as fal writes it between backticks: JSON (`"jpeg"`, `2.5`, `false`), or a bare word."""
    try:
        return json.loads(raw)
    except json.JSONDecodeError:
        return raw


def _typed(raw: str, schema: dict[str, Any], what: str) -> Any:
    """A value between backticks as the field's type; raises ValueError when it is not one."""
    value = _decoded(raw)
    kind = schema.get("type")
    if value is None:
        return None
    if kind == "number" and isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if kind == "string" and isinstance(value, int | float) and not isinstance(value, bool):
        return raw  # a string enum's value written as a number
    if not fits(value, schema, None):
        raise ValueError(f"{what} `{raw}` is not a value of type {kind or 'of the union'}")
    return value


@dataclass
class _Facts:
    """What the sub-bullets of one field state: each fact as (its text, its line)."""

    default: tuple[str, int] | None = None
    range: tuple[str, int] | None = None
    options: tuple[str, int] | None = None
    one_of: tuple[str, int] | None = None
    items: tuple[str, int] | None = None
    seen: bool = False  # a fact has been read: every later sub-bullet must be one


_KEYS = {"Default": "default", "Range": "range", "Options": "options", "Possible values": "options", "One of": "one_of"}


def _sub_bullets(bullets: SyntaxTreeNode, name: str, path: Path, facts: _Facts) -> list[str]:
    """Sort a field's sub-bullets into `facts` and description bullets (returned); fal writes the facts last."""
    description = []
    for sub in bullets.children:
        line = _line(sub)
        if len(sub.children) != 1 or sub.children[0].type != "paragraph":
            raise SourceError(path, line, f"{name}: a sub-bullet that is not one paragraph")
        text = _text(sub.children[0]).strip()
        fact = _FACT.fullmatch(text)
        if fact is None:
            if (like := _FACT_LIKE.match(text)) is not None:
                close = difflib.get_close_matches(like.group("label"), _FACTS, n=1)
                hint = f" (did you mean {close[0]!r}?)" if close else f" (known: {', '.join(_FACTS)}, Array of)"
                raise SourceError(path, line, f"{name}: {like.group('label')!r} is not a fact this reader knows{hint}")
            if facts.seen:
                raise SourceError(path, line, f"{name}: a sub-bullet after the facts that is none: {text[:60]!r}")
            description.append(f"- {text}")
            continue
        facts.seen = True
        if fact.group("items") is not None:
            label, key, value = "Array of", "items", fact.group("items").strip()
        else:
            label, value = fact.group("label"), fact.group("value").strip()
            key = _KEYS.get(label, "")
        if not key:
            continue  # Examples: sample values, not facts of the schema
        if "\n" in value:
            raise SourceError(path, line, f"{name}: text after the {label} bullet: {value!r}")
        if getattr(facts, key) is not None:
            raise SourceError(path, line, f"{name}: a second {label} bullet")
        setattr(facts, key, (value, line))
    return description


def _options(stated: tuple[str, int] | None, name: str, path: Path) -> list[Any] | None:
    if stated is None:
        return None
    text, line = stated
    if not _OPTIONS.fullmatch(text):
        raise SourceError(path, line, f"{name}: cannot read the options {text!r} (expected `value`, `value`, …)")
    values = [_decoded(raw) for raw in _CODE.findall(text)]
    repeated = sorted({str(v) for v in values if values.count(v) > 1})
    if repeated:
        raise SourceError(path, line, f"{name}: option {', '.join(map(repr, repeated))} is listed twice")
    return values


def _check_type_repeats(facts: _Facts, fal_type: str, name: str, path: Path) -> None:
    """`Array of X` and `One of: A | B` repeat the type: they must say the same."""
    if facts.items is not None:
        m = re.fullmatch(r"list<(.+)>", fal_type)
        if m is None or m.group(1).strip() != facts.items[0]:
            raise SourceError(path, facts.items[1], f"{name}: 'Array of {facts.items[0]}' but the type is {fal_type}")
    if facts.one_of is not None:
        said = [m.strip() for m in facts.one_of[0].split("|")]
        if said != [m.strip() for m in fal_type.split("|")]:
            raise SourceError(path, facts.one_of[1], f"{name}: 'One of: {facts.one_of[0]}' but the type is {fal_type}")


def _stated_values(result: FieldFacts, facts: _Facts, text: str, path: Path) -> str:
    """Read the default and range bullets into `result`, and the description's `Default value: `x``, which must
    agree with the bullet; return the description without it (as the reference page reader keeps it)."""
    schema, name = result.schema or {}, result.name
    if facts.default is not None:
        code = _CODE.fullmatch(facts.default[0])
        try:
            if code is None:
                raise ValueError(f"cannot read the default {facts.default[0]!r} (expected `value`)")
            result.default = _typed(code.group(1), schema, "the default")
        except ValueError as err:
            raise SourceError(path, facts.default[1], f"{name}: {err}") from err
    if said := _DEFAULT_TEXT.search(text):
        try:
            worded = _typed(said.group(1), schema, "the default")
        except ValueError as err:
            raise SourceError(path, result.line, f"{name}: the description's {err}") from err
        if result.default is not NOT_STATED and worded != result.default:
            raise SourceError(
                path, result.line, f"{name}: Default: {result.default!r} but the description says {worded!r}"
            )
        result.default = worded
        text = re.sub(r"\s+", " ", _DEFAULT_TEXT.sub("", text)).strip()
    if facts.range is not None:
        bounds = _RANGE.fullmatch(facts.range[0])
        try:
            if bounds is None or schema.get("type") not in ("integer", "number"):
                raise ValueError(f"cannot read the range {facts.range[0]!r} (expected `low` to `high` on a number)")
            result.minimum = _typed(bounds.group("low"), schema, "the lower bound")
            result.maximum = _typed(bounds.group("high"), schema, "the upper bound")
        except ValueError as err:
            raise SourceError(path, facts.range[1], f"{name}: {err}") from err
    return text


def _field(item: SyntaxTreeNode, path: Path, notes: list[str]) -> FieldFacts:
    """Read one field bullet: its header, description and facts."""
    line = _line(item)
    if not item.children or item.children[0].type != "paragraph":
        raise SourceError(path, line, "a bullet of a schema section that is not a field")
    header, _, more = _text(item.children[0]).partition("\n")
    m = _FIELD.fullmatch(header.strip())
    if m is None:
        raise SourceError(
            path, line, f"a bullet that is not a field: {header.strip()!r} (expected **`name`** (`type`, _required_):)"
        )
    name, fal_type = m.group("name"), m.group("type")
    description = [t for t in (m.group("rest"), more) if t and t.strip()]
    facts = _Facts()
    for child in item.children[1:]:
        if child.type == "paragraph" and not facts.seen:
            description.append(_text(child))
        elif child.type == "bullet_list":
            description += _sub_bullets(child, name, path, facts)
        else:
            raise SourceError(path, _line(child), f"{name}: a {child.type.replace('_', ' ')} inside a field bullet")
    options = _options(facts.options, name, path)
    try:
        schema, enum, unlisted = read_type(fal_type, options)
    except FalTypeError as err:
        raise SourceError(path, line, f"{name}: type {fal_type!r}: {err}") from err
    notes += [f"line {line}: {name}: the page lists no values for the {word} in {fal_type!r}" for word in unlisted]
    _check_type_repeats(facts, fal_type, name, path)
    result = FieldFacts(name=name, line=line, schema=schema, required=m.group("req") == "required", enum=enum)
    text = _stated_values(result, facts, re.sub(r"\s+", " ", " ".join(description)).strip(), path)
    if result.default is not NOT_STATED and not fits(result.default, schema, enum):
        raise SourceError(path, line, f"{name}: default {result.default!r} is not a value of {fal_type} {enum or ''}")
    result.description = text or None
    notes += [f"line {line}: {note}" for note in apply_description(result, schema.get("type"), path, line)]
    return result


@dataclass
class _Section:
    """A schema section read: its fields and the examples under it."""

    fields: list[FieldFacts]
    examples: list[Any]


def _schema_section(heading: SyntaxTreeNode, blocks: list[SyntaxTreeNode], path: Path, notes: list[str]) -> _Section:
    """Read the fields (bullets) and examples (```json blocks) of an Input Schema or Output Schema section."""
    section = _Section([], [])
    for block in blocks:
        if block.type == "bullet_list":
            for item in block.children:
                facts = _field(item, path, notes)
                if any(f.name == facts.name for f in section.fields):
                    raise SourceError(path, facts.line, f"{facts.name}: listed twice in one schema")
                section.fields.append(facts)
        elif block.type == "fence":
            if block.info.strip().split(" ", 1)[0] != "json":
                continue  # a code sample in another language: not a fact
            try:
                example = json.loads(block.content)
            except json.JSONDecodeError as err:
                raise SourceError(path, _line(block) + err.lineno, f"example: {err.msg}") from err
            # fal writes the required-fields example first and the full one second; the full one says more.
            section.examples.insert(0, example)
        elif block.type == "paragraph":
            if _FIELD.match(_text(block).strip()):
                raise SourceError(path, _line(block), "a field written outside a bullet list ('- ' is missing)")
        else:
            raise SourceError(path, _line(block), f"a {block.type.replace('_', ' ')} in the {_text(heading)} section")
    if not section.fields:
        raise SourceError(path, _line(heading), f"the {_text(heading)} section lists no fields")
    return section


def read_llms(path: Path) -> SourceDocument:
    """Read fal's llms.txt page of a model (the page the file is named after) into a SourceDocument.

    Raises SourceError naming the file, the line and what was not understood.
    """
    text = path.read_text(encoding="utf-8")
    root = SyntaxTreeNode(_MARKDOWN.parse(text))
    pages = _pages(root)
    identified = [(page, found) for page in pages if (found := _model_id(page, path)) is not None]
    for page in pages:
        if all(page is not p for p, _ in identified) and _section(page, "Input Schema", path) is not None:
            raise SourceError(path, _line(page.title), f"page {_text(page.title)!r} has schemas but no **Model ID**")
    if not identified:
        raise SourceError(path, None, "no '# Title' page with a '- **Model ID**:' in its Overview")
    if len(identified) == 1:
        page, (endpoint_id, _) = identified[0]
    else:
        candidates = [Candidate(_text(p.title), found[0], _line(p.title)) for p, found in identified]
        chosen = choose_for_file(path, candidates, "page", None)
        page, (endpoint_id, _) = next((p, f) for p, f in identified if _line(p.title) == chosen.line)

    source = SourceDocument(path=path, format=Format.LLMS, endpoint="/" + endpoint_id)
    title = _text(page.title).strip()
    # The tier is the model's name ("FLUX.1 Kontext [pro]"), never a mention in its summary.
    if tier := _TIER.search(title):
        source.tier = tier.group(1).lower()
    quote = next((b for b in page.blocks[:1] if b.type == "blockquote"), None)
    source.summary = " ".join(_text(p) for p in quote.children).strip() if quote else title
    source.docs_url = f"https://fal.ai/models/{endpoint_id}"
    if any("Authorization: Key" in b.content for b in page.blocks if b.type == "fence"):  # the cURL example
        source.auth_scheme = "Key"

    inputs = _section(page, "Input Schema", path)
    if inputs is None:
        raise SourceError(path, _line(page.title), "no 'Input Schema' section; fal's llms.txt page has one")
    read = _schema_section(*inputs, path, source.repairs)
    source.input_fields, source.request_examples = read.fields, read.examples
    if (outputs := _section(page, "Output Schema", path)) is not None:
        read = _schema_section(*outputs, path, source.repairs)
        source.output_fields, source.output_examples = read.fields, read.examples
    schema_blocks = {id(b) for s in (inputs, outputs) if s is not None for b in s[1]}
    others = [b for p in pages for b in p.blocks if id(b) not in schema_blocks]
    source.repairs += _appended_openapi(others, path)
    return source
