"""Reader for Apifox exports: an OpenAPI 3.0 document in YAML, wrapped in Markdown (read as any OpenAPI document is,
by openapi_doc.py, once it parses).

As delivered, the YAML does not parse: Apifox writes descriptions such as `Range value: 1-20`
unquoted, and a second `: ` on a line is a mapping indicator to any YAML loader. The repair quotes
such values (single quotes, `'` doubled), which keeps every character of the text.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.error import MarkedYAMLError, YAMLError

from .model import Format, SourceDocument, SourceError
from .openapi_doc import read_document
from .yaml_repair import repair_yaml

_FENCE_OPEN = re.compile(r"^```ya?ml\s*$")


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


def load_yaml(text: str, path: Path, first_line: int) -> Any:
    """Parse YAML 1.2 (so `16:9` stays a string), keeping lines; a failure names the file's own line number."""
    try:
        return YAML(typ="rt", pure=True).load(text)
    except MarkedYAMLError as err:
        mark = err.problem_mark or err.context_mark
        line = first_line + mark.line if mark is not None else None
        problem = err.problem or err.context or "invalid YAML"
        raise SourceError(path, line, f"YAML does not parse even after repair: {problem}") from err
    except YAMLError as err:
        raise SourceError(path, None, f"YAML does not parse even after repair: {err}") from err


def read_apifox(path: Path) -> SourceDocument:
    """Read one Apifox export into a SourceDocument. Raises SourceError naming file, line and problem."""
    block, first_line = extract_yaml(path.read_text(encoding="utf-8"), path)
    text, repairs = repair_yaml(block, first_line)
    return read_document(load_yaml(text, path, first_line), path, first_line, repairs, Format.APIFOX)
