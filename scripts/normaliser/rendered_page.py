"""Reader for an aggregator's rendered documentation page (plain text copied from the browser).

Its parameter table lost its column separators when rendered: a row reads
`num_imagesintegerOptionalNumber of images to generate, range: 1-4`. Field names are
lower-case with underscores and the type and required columns come from small vocabularies, so
a row splits unambiguously.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from .descriptions import facts_from_description
from .model import FieldFacts, Format, SourceDocument, SourceError

_ENDPOINT = re.compile(r"^POST (https?://[^\s/]+)(/\S+)\s*$", re.MULTILINE)
_ROW = re.compile(
    r"^(?P<name>[a-z][a-z0-9_]*?)(?P<type>string|number|integer|boolean|object|array\[(?:string|number|integer)\])"
    r"(?P<req>Required|Optional)(?P<desc>.*)$"
)
_HEADER = "ParameterTypeRequiredDescription"


def _line_of(text: str, index: int) -> int:
    return text.count("\n", 0, index) + 1


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


def read_rendered_page(path: Path) -> SourceDocument:
    """Read one rendered aggregator page into a SourceDocument. Raises SourceError on what it cannot read."""
    text = path.read_text(encoding="utf-8")
    m = _ENDPOINT.search(text)
    if not m:
        raise SourceError(path, None, "no 'POST https://host/path' line naming the endpoint")
    host = urlsplit(m.group(1))
    source = SourceDocument(path=path, format=Format.PAGE, endpoint=m.group(2))
    source.servers.append({"url": f"{host.scheme}://{host.netloc}", "description": "Aggregator (rendered page)"})
    source.summary = m.group(2)
    if re.search(r"Authorization: Bearer", text):
        source.auth_scheme = "Bearer"
    if docs := re.search(r"Official Documentation:\s*(\S+)", text):
        source.docs_url = docs.group(1)

    header = text.find(_HEADER)
    if header < 0:
        raise SourceError(path, None, f"no parameter table (a '{_HEADER}' header row)")
    for offset, line in enumerate(text[header + len(_HEADER) :].lstrip("\n").splitlines()):
        if not line.strip():
            break
        row = _ROW.match(line.strip())
        if not row:
            raise SourceError(path, _line_of(text, header) + 1 + offset, f"cannot split table row {line.strip()!r}")
        json_type = row.group("type")
        schema: dict[str, Any] = {"type": json_type}
        if json_type.startswith("array["):
            schema = {"type": "array", "items": {"type": json_type[6:-1]}}
        facts = FieldFacts(
            name=row.group("name"),
            schema=schema,
            required=row.group("req") == "Required",
            description=row.group("desc").strip() or None,
        )
        facts_from_description(facts, schema["type"])
        source.input_fields.append(facts)

    if (example := _json_after(text, "Request Example", path)) is not None:
        source.request_examples.append(example)
    if (example := _json_after(text, "Response Example", path)) is not None:
        source.submit_examples.append(example)
    return source
