"""The input flags of ``fal-kontext``, read from the spec: one flag per optional input field of the endpoints
(enums are choices, numbers typed, booleans ``--flag/--no-flag``), and ``--model``/``--endpoint`` from its
endpoints."""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from typing import Any

from fal_kontext.batch import tier_order
from fal_kontext.spec import EndpointSpec, resolve, resolved_schema

__all__ = ["InputFlag", "add_input_flags", "add_model_options", "flag_for_field", "input_flags", "input_values"]


@dataclass(frozen=True)
class InputFlag:
    """A command-line flag for one optional input field of the spec."""

    field: str
    flag: str
    schema: dict[str, Any]


def _optional_fields(specs: Iterable[EndpointSpec]) -> dict[str, dict[str, Any]]:
    """Every optional input field of these endpoints, merged by name (enum choices united), in spec order."""
    fields: dict[str, dict[str, Any]] = {}
    for endpoint in specs:
        schema = resolved_schema(endpoint.input_schema)
        required = set(schema.get("required", ()))
        for name, prop in schema.get("properties", {}).items():
            if name in required or name == endpoint.image_field:
                continue
            if name in fields and "enum" in prop and "enum" in fields[name]:
                merged = list(fields[name]["enum"]) + [v for v in prop["enum"] if v not in fields[name]["enum"]]
                fields[name] = {**fields[name], "enum": merged}
            fields.setdefault(name, dict(prop))
    return fields


def input_flags(specs: Iterable[EndpointSpec]) -> list[InputFlag]:
    """The flags for the optional input fields of ``specs`` (``aspect_ratio`` -> ``--aspect-ratio``)."""
    return [InputFlag(name, "--" + name.replace("_", "-"), schema) for name, schema in _optional_fields(specs).items()]


def _first_sentence(text: str) -> str:
    sentence = text.strip().split(". ", 1)[0].rstrip(".")
    return sentence[:1].lower() + sentence[1:] if sentence else ""


def _flag_help(schema: dict[str, Any]) -> str:
    parts = [_first_sentence(str(schema.get("description", "")))]
    if "minimum" in schema and "maximum" in schema:
        parts.append(f"{schema['minimum']:g} to {schema['maximum']:g}")
    if "default" in schema:
        parts.append(f"server default {schema['default']}")
    return "; ".join(part for part in parts if part).replace("%", "%%")


def _json_value(text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as err:
        raise argparse.ArgumentTypeError(f"not JSON: {err}") from None


_ARG_TYPES: dict[str, Callable[[str], Any]] = {"integer": int, "number": float, "string": str}


def _union_value(schema: dict[str, Any]) -> Callable[[str], Any]:
    """A flag of a union field (fal's `image_size`: a named size or an object): a value one of its enums lists is
    taken as it is, anything else as JSON."""
    named = {str(v) for member in schema["anyOf"] for v in resolve(member).get("enum", [])}

    def parse(text: str) -> Any:
        return text if text in named else _json_value(text)

    return parse


def add_input_flags(parser: argparse.ArgumentParser, flags: Sequence[InputFlag]) -> None:
    """Add the flags (after the command's own: a field named like one of them gets an ``--input-`` prefix)."""
    group = parser.add_argument_group("input fields (from the API spec)")
    taken = set(parser._option_string_actions)
    flags = [replace(item, flag="--input-" + item.flag[2:]) if item.flag in taken else item for item in flags]
    for item in flags:
        schema = item.schema
        kind = schema.get("type")
        common: dict[str, Any] = {"dest": f"input_{item.field}", "default": None, "help": _flag_help(schema)}
        if "enum" in schema:
            group.add_argument(item.flag, choices=[str(v) for v in schema["enum"]], **common)
        elif "anyOf" in schema:
            group.add_argument(item.flag, type=_union_value(schema), metavar="VALUE|JSON", **common)
        elif kind == "boolean":
            group.add_argument(item.flag, action=argparse.BooleanOptionalAction, **common)
        elif kind == "array":
            items = schema.get("items", {})
            group.add_argument(item.flag, nargs="+", type=_ARG_TYPES.get(items.get("type"), _json_value), **common)
        else:
            metavar = {"integer": "N", "number": "X"}.get(kind or "", "VALUE")
            group.add_argument(item.flag, type=_ARG_TYPES.get(kind or "", _json_value), metavar=metavar, **common)
    parser.set_defaults(input_flags=tuple(flags))


def input_values(args: argparse.Namespace) -> dict[str, Any]:
    """The input fields given as flags (by field name), those left out omitted."""
    return {
        item.field: value
        for item in getattr(args, "input_flags", ())
        if (value := getattr(args, f"input_{item.field}")) is not None
    }


def flag_for_field(field: str, args: argparse.Namespace) -> str:
    """How the command line names an input field: its flag, or the PROMPT/IMAGE argument."""
    base = field.split("[", 1)[0]
    flags: tuple[InputFlag, ...] = getattr(args, "input_flags", ())
    for item in flags:
        if item.field == base:
            return item.flag + field[len(base) :]
    if base.startswith("image_url") or base == "image":
        return "IMAGE"
    return base.upper() if base == "prompt" else field


def add_model_options(parser: argparse.ArgumentParser, specs: Sequence[EndpointSpec]) -> None:
    """Add ``--model`` (the tiers of ``specs``, the spec's first the default) and ``--endpoint`` (their ids)."""
    tiers = [tier for tier in tier_order(specs) if any(endpoint.tier == tier for endpoint in specs)]
    parser.add_argument(
        "--model", choices=tiers, default=None, help=f"the model tier (default {tiers[0]}); see also --endpoint"
    )
    parser.add_argument(
        "--endpoint", choices=[endpoint.id for endpoint in specs], help="the exact endpoint (overrides --model)"
    )
    parser.set_defaults(endpoint_specs=tuple(specs))
