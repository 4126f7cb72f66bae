"""Reader for an aggregator's rendered documentation page (plain text copied from the browser).

The same page renders in two ways (https://docs.kkiai.com/Other-Model-APIs/fal-ai-api/flux-pro-kontext-api.html):

- the parameter table without column separators, a row reading
  `num_imagesintegerOptionalNumber of images to generate, range: 1-4` under a
  `ParameterTypeRequiredDescription` header; field names are lower case with underscores and the
  type and required columns come from small vocabularies, so a row splits unambiguously;
- the table with `|` between the columns (`num_images | integer | Optional | Number of … |`) under
  `| Parameter | Type | Required | Description |` and a `|---|` rule.

The endpoint is the path of its `POST` URL, on one line (`POST https://host/path`) or two (`POST`
alone, the URL on the next). The host is the aggregator's server, unless it is fal's own (a page
that shows fal's queue URL names no aggregator server). `Official documentation:` (any case, or
官方文档) links fal's page. Descriptions state defaults, ranges and value lists in words
(descriptions.py). The page shows only the submit: it does not describe the output.

Strict: a row that does not split, an unknown type, a field listed twice, a table with no rows, two
different POST URLs, or a fact in words that cannot be read stops the run naming the line.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from .descriptions import apply_description
from .model import FieldFacts, Format, SourceDocument, SourceError

_POST = re.compile(r"^POST[ \t]*(?:\n[ \t]*\n?)?[ \t]*(https?://\S+)[ \t]*$", re.MULTILINE)
_PATH_LINE = re.compile(r"^(/[\w.\-/]+)[ \t]*$", re.MULTILINE)
_DOCS = re.compile(r"^(?:official documentation|官方文档)[ \t]*[:：][ \t]*(\S+)[ \t]*$", re.MULTILINE | re.IGNORECASE)
_TYPES = r"string|number|integer|boolean|object|array\[(?:string|number|integer|boolean|object)\]"
_GLUED_ROW = re.compile(rf"^(?P<name>[a-z][a-z0-9_]*?)(?P<type>{_TYPES})(?P<req>Required|Optional)(?P<desc>.*)$")
_GLUED_HEADER = re.compile(r"^[ \t]*ParameterTypeRequiredDescription[ \t]*$", re.MULTILINE)
_PIPE_HEADER = re.compile(
    r"^[ \t]*\|?[ \t]*Parameter[ \t]*\|[ \t]*Type[ \t]*\|[ \t]*Required[ \t]*\|[ \t]*Description[ \t]*\|?[ \t]*$",
    re.MULTILINE,
)
_PIPE_RULE = re.compile(r"^[ \t]*\|?[ \t]*:?-{3,}:?[ \t]*(?:\|[ \t]*:?-{3,}:?[ \t]*){3}\|?[ \t]*$")
_NAME = re.compile(r"[a-z][a-z0-9_]*")


def _line_of(text: str, index: int) -> int:
    return text.count("\n", 0, index) + 1


def is_fal_host(host: str) -> bool:
    """Whether a host is fal's own (fal.run, queue.fal.run, fal.ai …): never an aggregator server."""
    host = host.lower().split(":", 1)[0]
    return any(host == domain or host.endswith("." + domain) for domain in ("fal.run", "fal.ai", "fal.media"))


def _json_after(text: str, heading: str, path: Path) -> Any | None:
    m = re.search(rf"^{re.escape(heading)}\s*$", text, re.MULTILINE)
    if not m:
        return None
    start = text.find("{", m.end())
    if start < 0:
        return None
    try:
        value, _ = json.JSONDecoder().raw_decode(text, start)
    except json.JSONDecodeError as err:
        raise SourceError(path, _line_of(text, err.pos), f"{heading}: {err.msg}") from err
    return value


def _schema(json_type: str) -> dict[str, Any]:
    if json_type.startswith("array["):
        return {"type": "array", "items": {"type": json_type[6:-1]}}
    return {"type": json_type}


def _glued_rows(lines: list[str], first: int, path: Path) -> list[tuple[int, str, str, str, str]]:
    """Rows of the table without separators: (line, name, type, required, description)."""
    rows = []
    for offset, line in enumerate(lines):
        if not line.strip():
            break
        row = _GLUED_ROW.match(line.strip())
        if not row:
            raise SourceError(path, first + offset, f"cannot split table row {line.strip()!r}")
        rows.append((first + offset, row.group("name"), row.group("type"), row.group("req"), row.group("desc").strip()))
    return rows


def _pipe_rows(lines: list[str], first: int, path: Path) -> list[tuple[int, str, str, str, str]]:
    """Rows of the table with `|` between its columns; the table ends at the first line without one."""
    rows = []
    for offset, line in enumerate(lines):
        if "|" not in line:
            break
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) < 3:
            raise SourceError(path, first + offset, f"cannot split table row {line.strip()!r}: fewer than 3 columns")
        name, json_type, required = cells[:3]
        description = " | ".join(cells[3:]).strip()  # a `|` inside the description column
        if not _NAME.fullmatch(name):
            raise SourceError(path, first + offset, f"table row {line.strip()!r}: {name!r} is not a field name")
        if not re.fullmatch(_TYPES, json_type):
            raise SourceError(
                path, first + offset, f"table row {line.strip()!r}: type {json_type!r} is not one this reader knows"
            )
        if required not in ("Required", "Optional"):
            raise SourceError(
                path, first + offset, f"table row {line.strip()!r}: {required!r} is neither Required nor Optional"
            )
        rows.append((first + offset, name, json_type, required, description))
    return rows


def _table(text: str, path: Path) -> list[tuple[int, str, str, str, str]]:
    """The rows of the page's parameter table, in either rendering."""
    glued, piped = _GLUED_HEADER.search(text), _PIPE_HEADER.search(text)
    if glued is not None and piped is not None:
        raise SourceError(path, _line_of(text, piped.start()), "two parameter tables on one page")
    header = glued if glued is not None else piped
    if header is None:
        raise SourceError(
            path,
            None,
            "no parameter table (a 'ParameterTypeRequiredDescription' header row, or "
            "'| Parameter | Type | Required | Description |')",
        )
    first = _line_of(text, header.start()) + 1
    lines = text[header.end() :].split("\n")[1:]
    if piped is not None:
        if not lines or not _PIPE_RULE.match(lines[0]):
            raise SourceError(path, first - 1, "the table header is not followed by its '|---|---|---|---|' rule")
        rows = _pipe_rows(lines[1:], first + 1, path)
    else:
        while lines and not lines[0].strip():  # the glued rendering may leave a blank line under its header
            lines, first = lines[1:], first + 1
        rows = _glued_rows(lines, first, path)
    if not rows:
        raise SourceError(path, first - 1, "the parameter table has no rows")
    return rows


def _endpoint(text: str, path: Path) -> SourceDocument:
    """The page's endpoint (its POST URL's path), server (unless fal's own host), auth scheme and fal link."""
    posts = list(_POST.finditer(text))
    if not posts:
        raise SourceError(path, None, "no 'POST https://host/path' line (or 'POST' and the URL on the next line)")
    if len({m.group(1) for m in posts}) > 1:
        raise SourceError(path, _line_of(text, posts[1].start()), f"a second POST URL {posts[1].group(1)!r}")
    url = urlsplit(posts[0].group(1))
    if not url.path or url.path == "/":
        raise SourceError(path, _line_of(text, posts[0].start()), f"the POST URL {posts[0].group(1)!r} has no path")
    source = SourceDocument(path=path, format=Format.PAGE, endpoint=url.path.rstrip("/"))
    # A page title repeating the path (`/fal-ai/flux-pro/kontext`) must agree with the POST.
    for title in _PATH_LINE.finditer(text[: posts[0].start()]):
        if title.group(1).rstrip("/") != source.endpoint:
            raise SourceError(
                path, _line_of(text, title.start()), f"the page is titled {title.group(1)} but POSTs to {url.path}"
            )
    if not is_fal_host(url.netloc):
        source.servers.append({"url": f"{url.scheme}://{url.netloc}", "description": "Aggregator (rendered page)"})
    source.summary = source.endpoint
    if re.search(r"Authorization: Bearer", text):
        source.auth_scheme = "Bearer"
    if docs := _DOCS.search(text):
        link = docs.group(1).rstrip(".,;")
        if not is_fal_host(urlsplit(link).netloc):
            raise SourceError(
                path, _line_of(text, docs.start()), f"the official documentation link {link!r} is not fal's"
            )
        source.docs_url = link
    return source


def read_rendered_page(path: Path) -> SourceDocument:
    """Read one rendered aggregator page into a SourceDocument. Raises SourceError on what it cannot read."""
    text = path.read_text(encoding="utf-8").replace("\r\n", "\n")
    source = _endpoint(text, path)
    for line, name, json_type, required, description in _table(text, path):
        if any(f.name == name for f in source.input_fields):
            raise SourceError(path, line, f"{name}: listed twice in the parameter table")
        schema = _schema(json_type)
        facts = FieldFacts(
            name=name, line=line, schema=schema, required=required == "Required", description=description or None
        )
        source.repairs += [f"line {line}: {note}" for note in apply_description(facts, schema["type"], path, line)]
        source.input_fields.append(facts)

    if (example := _json_after(text, "Request Example", path)) is not None:
        source.request_examples.append(example)
    if (example := _json_after(text, "Response Example", path)) is not None:
        source.submit_examples.append(example)
    return source
