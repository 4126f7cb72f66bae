"""Reader for Apifox exports: an OpenAPI 3.0 document in YAML, wrapped in Markdown.

As delivered, the YAML does not parse: Apifox writes descriptions such as `Range value: 1-20`
unquoted, and a second `: ` on a line is a mapping indicator to any YAML loader. The repair quotes
such values (single quotes, `'` doubled), which keeps every character of the text.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from ruamel.yaml import YAML
from ruamel.yaml.error import MarkedYAMLError, YAMLError

from .descriptions import facts_from_description
from .model import FieldFacts, SourceDocument, SourceError, SourceKind

_FENCE_OPEN = re.compile(r"^```ya?ml\s*$")
# `key: value` (optionally as a list item) whose plain value holds a second `: ` or ` #`.
_PLAIN_PAIR = re.compile(r"^(?P<lead>\s*(?:-\s+)?)(?P<key>[A-Za-z_$][\w$.-]*):[ \t]+(?P<value>\S.*?)\s*$")
_NOT_PLAIN = ("'", '"', "{", "[", "|", ">", "&", "*", "!", "%", "@", "`")


def extract_yaml(text: str, path: Path) -> tuple[str, int]:
    """Return the fenced YAML block of an Apifox Markdown export and the file line it starts on."""
    lines = text.splitlines()
    for index, line in enumerate(lines):
        if _FENCE_OPEN.match(line):
            for end in range(index + 1, len(lines)):
                if lines[end].strip() == "```":
                    return "\n".join(lines[index + 1 : end]) + "\n", index + 2
            raise SourceError(path, index + 1, "the ```yaml block is never closed")
    raise SourceError(path, None, "no ```yaml block found; an Apifox export wraps its OpenAPI YAML in one")


def repair_yaml(block: str, first_line: int) -> tuple[str, list[str]]:
    """Quote plain scalar values that YAML would misread; return the repaired text and what was done.

    A value is quoted when it contains `: ` (YAML reads a nested mapping) or ` #` (YAML reads a
    comment and drops the rest). Values already quoted, block scalars, flow collections, anchors
    and aliases are left alone.
    """
    repaired: list[str] = []
    repairs: list[str] = []
    for offset, original in enumerate(block.split("\n")):
        line = original
        m = _PLAIN_PAIR.match(line)
        if m and not m.group("value").startswith(_NOT_PLAIN):
            value = m.group("value")
            if ": " in value or value.endswith(":") or " #" in value:
                quoted = "'" + value.replace("'", "''") + "'"
                line = f"{m.group('lead')}{m.group('key')}: {quoted}"
                repairs.append(f"line {first_line + offset}: quoted the value of `{m.group('key')}` (it contains ': ')")
        repaired.append(line)
    return "\n".join(repaired), repairs


def load_yaml(text: str, path: Path, first_line: int) -> Any:
    """Parse YAML 1.2 (so `16:9` stays a string); a failure names the file's own line number."""
    try:
        return YAML(typ="safe", pure=True).load(text)
    except MarkedYAMLError as err:
        mark = err.problem_mark or err.context_mark
        line = first_line + mark.line if mark is not None else None
        problem = err.problem or err.context or "invalid YAML"
        raise SourceError(path, line, f"YAML does not parse even after repair: {problem}") from err
    except YAMLError as err:
        raise SourceError(path, None, f"YAML does not parse even after repair: {err}") from err


def _schema_of(prop: dict[str, Any]) -> dict[str, Any] | None:
    json_type = prop.get("type")
    if not isinstance(json_type, str):
        return None
    schema: dict[str, Any] = {"type": json_type}
    if json_type == "array" and isinstance(prop.get("items"), dict) and "type" in prop["items"]:
        schema["items"] = {"type": prop["items"]["type"]}
    return schema


def read_apifox(path: Path) -> SourceDocument:
    """Read one Apifox export into a SourceDocument. Raises SourceError naming file, line and problem."""
    block, first_line = extract_yaml(path.read_text(encoding="utf-8"), path)
    text, repairs = repair_yaml(block, first_line)
    doc = load_yaml(text, path, first_line)
    if not isinstance(doc, dict) or not isinstance(doc.get("paths"), dict) or len(doc["paths"]) != 1:
        raise SourceError(path, first_line, "expected an OpenAPI document with exactly one path")
    endpoint, item = next(iter(doc["paths"].items()))
    operation = item.get("post") if isinstance(item, dict) else None
    if not isinstance(operation, dict):
        raise SourceError(path, None, f"{endpoint} has no POST operation")

    source = SourceDocument(path=path, kind=SourceKind.APIFOX, endpoint=str(endpoint), repairs=repairs)
    source.summary = operation.get("summary")
    if m := re.search(r"https://fal\.ai/\S+", str(operation.get("description", ""))):
        source.docs_url = m.group(0).rstrip("'\"")

    media = operation.get("requestBody", {}).get("content", {}).get("application/json", {})
    body_schema = media.get("schema", {})
    required = set(body_schema.get("required", []))
    for name, prop in body_schema.get("properties", {}).items():
        schema = _schema_of(prop)
        facts = FieldFacts(name=name, schema=schema, required=name in required, description=prop.get("description"))
        facts_from_description(facts, schema["type"] if schema else None)
        source.input_fields.append(facts)
    if "example" in media:
        source.request_examples.append(media["example"])

    ok = operation.get("responses", {}).get("200", {}).get("content", {}).get("application/json", {})
    if "example" in ok:
        source.submit_examples.append(ok["example"])

    for index, server in enumerate(doc.get("servers") or []):
        url = server.get("url") if isinstance(server, dict) else None
        if isinstance(url, str) and urlsplit(url).scheme in ("http", "https"):
            source.servers.append({"url": url, "description": str(server.get("description", "")).strip()})
        else:
            source.repairs.append(f"servers[{index}] is not a server object (no url): ignored")

    schemes = doc.get("components", {}).get("securitySchemes", {}) or {}
    for scheme in schemes.values():
        if isinstance(scheme, dict) and scheme.get("type") == "http" and scheme.get("scheme") == "bearer":
            source.auth_scheme = "Bearer"
    return source
