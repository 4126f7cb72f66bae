"""Facts that aggregator documents state only in prose: ranges, defaults and value lists in descriptions.

These are the least trusted facts (fal's documentation wins over them), but reading them lets the
merge report where an aggregator's prose contradicts fal (for example `Supported formats: default,
png, jpeg` against fal's `jpeg`, `png`).
"""

from __future__ import annotations

import re
from typing import Any

from .model import FieldFacts

_RANGE = re.compile(r"\b[Rr]ange(?: value)?:\s*(-?\d+(?:\.\d+)?)\s*-\s*(-?\d+(?:\.\d+)?)")
_DEFAULT = re.compile(r"\bDefault(?: value)?:\s*\"?([\w.]+)\"?")
_ENUMERATED = re.compile(r"\b(?:enumerated values|[Ss]upported formats):\s*([^.\n]+)")
_QUOTED_LIST = re.compile(r":\s*((?:\"[^\"]+\"\s*,\s*)+\"[^\"]+\")\s*$")


def _number(text: str, json_type: str | None) -> float | int:
    text = text.rstrip(".")  # "Default: 3.5." ends a sentence
    return int(text) if json_type == "integer" and "." not in text else float(text)


def _typed(text: str, json_type: str | None) -> Any:
    text = text.rstrip(".")
    if json_type in ("integer", "number"):
        try:
            return _number(text, json_type)
        except ValueError:
            return None
    if json_type == "boolean":
        return {"true": True, "false": False}.get(text.lower())
    return text


def facts_from_description(facts: FieldFacts, json_type: str | None) -> None:
    """Fill `facts` with the range, default and value list that its description states, if any."""
    text = facts.description
    if not text:
        return
    if m := _RANGE.search(text):
        facts.minimum = _number(m.group(1), json_type)
        facts.maximum = _number(m.group(2), json_type)
    if (m := _DEFAULT.search(text)) and (value := _typed(m.group(1), json_type)) is not None:
        facts.default = value
    if m := _ENUMERATED.search(text):
        facts.enum = [v.strip().strip('"') for v in m.group(1).split(",") if v.strip()]
    elif m := _QUOTED_LIST.search(text):
        facts.enum = re.findall(r"\"([^\"]+)\"", m.group(1))
