"""fal's type names, as its pages write them (the API reference page and the llms.txt page), read into schemas.

fal generates both pages from the app's models (https://fal.ai/models/<id>/api and
https://fal.ai/models/<id>/llms.txt) and names each field's type with a small vocabulary:

- scalars `string`, `integer`, `float`, `boolean`; lists `list<T>`;
- enums: `Enum`, or a name ending in `Enum` (`OutputFormatEnum`), with the values listed apart
  (`Possible values:` / `Options:`); fal's Kontext enums are string enums, even
  SafetyToleranceEnum ("1".."6": https://fal.ai/models/fal-ai/flux-pro/kontext/max/api);
- named object types, by fal's own name: `Timings`, `Image`, or qualified by their Python module
  (`fal__toolkit__image__image__Image`, `registry__image__fast_sdxl__models__Image`);
- unions `A | B` (`ImageSize | Enum`: an object or one of a few preset names).

A named type is a reference to `#/components/schemas/<the name exactly as written>` (the build
renames it). A union reads like fal's queue OpenAPI states it, as `anyOf`, the enum's values kept
with their member. Any other word (`int`, `dict<str, any>`, `object`) is not understood: an error.
"""

from __future__ import annotations

import re
from typing import Any

SCALARS = {"string": "string", "integer": "integer", "float": "number", "boolean": "boolean"}
_LIST = re.compile(r"list<(?P<inner>.+)>")
# `Timings`, `ImageSize`, `fal__toolkit__image__image__Image`: module parts in lower case, the class last.
_NAMED = re.compile(r"(?:[a-z][a-z0-9_]*?__)*[A-Z][A-Za-z0-9_]*")
REF_PREFIX = "#/components/schemas/"


class FalTypeError(ValueError):
    """A type the page names that this reader does not understand, or an enum without its values."""


def is_enum(word: str) -> bool:
    """Whether a type word names an enum (`Enum`, `OutputFormatEnum`)."""
    return word == "Enum" or (word.endswith("Enum") and _NAMED.fullmatch(word) is not None)


def _split_union(text: str) -> list[str]:
    """`A | list<B | C>` -> [`A`, `list<B | C>`]: split on `|` outside angle brackets."""
    members, depth, current = [], 0, ""
    for char in text:
        depth += {"<": 1, ">": -1}.get(char, 0)
        if char == "|" and depth == 0:
            members.append(current.strip())
            current = ""
        else:
            current += char
    members.append(current.strip())
    return members


def _values_schema(values: list[Any]) -> dict[str, Any]:
    """The type of an enum's values: integers stated as JSON numbers make an integer enum, otherwise strings."""
    if values and all(isinstance(v, int) and not isinstance(v, bool) for v in values):
        return {"type": "integer"}
    if values and all(isinstance(v, int | float) and not isinstance(v, bool) for v in values):
        return {"type": "number"}
    return {"type": "string"}


def _member(word: str, values: list[Any] | None, unlisted: list[str]) -> dict[str, Any]:
    if word in SCALARS:
        return {"type": SCALARS[word]}
    if m := _LIST.fullmatch(word):
        inner = m.group("inner").strip()
        if is_enum(inner):
            raise FalTypeError(f"list<{inner}>: a list of enum values is not read by this reader")
        return {"type": "array", "items": read_type(inner, None)[0]}
    if is_enum(word):
        if values is None:
            unlisted.append(word)
            return {"type": "string"}
        return {**_values_schema(values), "enum": list(values)}
    if _NAMED.fullmatch(word):
        return {"$ref": REF_PREFIX + word}
    raise FalTypeError(
        f"{word!r} is not a type this reader knows (string, integer, float, boolean, list<T>, an enum "
        "with its values, a named fal type such as Timings or fal__toolkit__image__image__Image, or A | B)"
    )


def read_type(text: str, values: list[Any] | None) -> tuple[dict[str, Any], list[Any] | None, list[str]]:
    """Read a fal type name with the values the page lists for it (None when it lists none).

    Returns the schema's type part, the field's enum (its values when the field itself is an enum;
    None for a union, whose enum member keeps them), and the enum members whose values the page
    does not list (an llms.txt page writes `ImageSize | Enum` without the enum's values). Raises
    FalTypeError for a type word not understood, an enum field without values, or values listed for
    a type that takes none.
    """
    members = _split_union(text.strip())
    if any(not m for m in members):
        raise FalTypeError(f"{text!r}: an empty member in the union")
    unlisted: list[str] = []
    for member in members:  # every word understood before the values are matched to them
        if not is_enum(member):
            _member(member, None, unlisted)
    if len(members) == 1:
        word = members[0]
        if is_enum(word):
            if values is None:
                raise FalTypeError(f"{word} is an enum but the page lists no values for it")
            return _values_schema(values), list(values), []
        schema = _member(word, None, unlisted)
        if values is not None:
            if schema.get("type") not in ("string", "integer", "number"):
                raise FalTypeError(f"values are listed for type {word!r}, which takes none")
            return schema, list(values), []
        return schema, None, unlisted
    enums = [m for m in members if is_enum(m)]
    if len(enums) > 1:
        raise FalTypeError(f"{text!r}: two enums in one union; which one the values belong to is not stated")
    if values is not None and not enums:
        raise FalTypeError(f"values are listed for {text!r}, which has no enum member")
    parts = [_member(m, values if is_enum(m) else None, unlisted) for m in members]
    return {"anyOf": parts}, None, unlisted


def fits(value: Any, schema: dict[str, Any], enum: list[Any] | None) -> bool:
    """Whether a stated default fits the field's schema and enum (a union: any member)."""
    if value is None:
        return True
    if enum is not None:
        return str(value) in map(str, enum)
    if "anyOf" in schema:
        return any(fits(value, member, member.get("enum")) for member in schema["anyOf"])
    kind = schema.get("type")
    checks = {
        "string": isinstance(value, str),
        "integer": isinstance(value, int) and not isinstance(value, bool),
        "number": isinstance(value, int | float) and not isinstance(value, bool),
        "boolean": isinstance(value, bool),
        "array": isinstance(value, list),
        "object": isinstance(value, dict),
    }
    return checks.get(kind, isinstance(value, dict)) if kind is not None else isinstance(value, dict)
