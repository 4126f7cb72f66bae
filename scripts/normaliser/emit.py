"""Write the spec as YAML that YAML 1.1 and 1.2 loaders read the same way.

Every string value is double-quoted, so `"16:9"` never becomes the base-60 integer 969 (PyYAML,
schemathesis) and `"yes"` never becomes True. Keys are quoted unless they are plain identifiers.
"""

from __future__ import annotations

import re
from typing import Any

import yaml

_PLAIN_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]*$")
# Words YAML 1.1 reads as booleans or null: never left plain, even as keys.
_RESERVED = {"y", "n", "yes", "no", "on", "off", "true", "false", "null"}


class _QuotedDumper(yaml.SafeDumper):
    """A SafeDumper that quotes every string value; keys stay plain when that is safe."""

    def represent_mapping(self, tag: str, mapping: Any, flow_style: bool | None = None) -> yaml.MappingNode:
        node = super().represent_mapping(tag, mapping, flow_style)
        for key_node, _ in node.value:
            if isinstance(key_node, yaml.ScalarNode) and key_node.tag == "tag:yaml.org,2002:str":
                plain = _PLAIN_KEY.match(key_node.value) and key_node.value.lower() not in _RESERVED
                key_node.style = None if plain else '"'
        return node


def _represent_str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style='"')


_QuotedDumper.add_representer(str, _represent_str)


def dump_spec(document: dict[str, Any]) -> str:
    """The document as YAML text: block style, insertion order, string values quoted and on one line (clean diffs)."""
    return yaml.dump(
        document, Dumper=_QuotedDumper, sort_keys=False, allow_unicode=True, width=1_000_000, default_flow_style=False
    )
