"""Repair of hand-written YAML (Apifox exports): plain values that any YAML loader would misread.

As delivered, Apifox writes descriptions such as `Range value: 1-20` unquoted, and a second `: ` on a
line is a mapping indicator to any YAML loader. The repair quotes such values (single quotes, `'`
doubled), which keeps every character of the text.
"""

from __future__ import annotations

import re

# `key: value` (optionally as a list item) whose plain value holds a second `: ` or ` #`.
_PLAIN_PAIR = re.compile(r"^(?P<lead>\s*(?:-\s+)?)(?P<key>[A-Za-z_$][\w$.-]*):[ \t]+(?P<value>\S.*?)\s*$")
_NOT_PLAIN = ("'", '"', "{", "[", "|", ">", "&", "*", "!", "%", "@", "`")


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
