"""Emit `options.py` for the generated package: the spec's optional input fields, and the verbs typed per tier.

Per input schema a `TypedDict` (total=False) of its optional fields, enums as `Literal[...]`, so a client verb
can take `**options: Unpack[KontextInputOptions]` and an editor completes the values; `Tier`, `EndpointId`,
`Family` and `App` as `Literal`s of what the operations' `x-fal-endpoint` say; and, per verb (`edit` with one image,
`edit` with several, `generate`), a Protocol whose `__call__` has one overload per tier: `model="dev"` takes the
options of the dev tier's endpoint, so mypy refuses a field that endpoint does not have. The client
(`fal_kontext.base`) types its verbs with these Protocols.

The overloads repeat the client's own keywords of the verbs (`VERB_KEYWORDS`, the default tier): they are the
client's API, not the spec's; tests/spec/test_options.py checks that they match the implementation's signature.

A small emitter rather than datamodel-code-generator: its TypedDict output always includes the required fields
(the prompt and the image are the verbs' own parameters, not options) and knows nothing of `x-fal-endpoint`.
"""

from __future__ import annotations

import re
from typing import Any

_SCALARS = {"string": "str", "integer": "int", "number": "float", "boolean": "bool"}

# The keywords every typed verb takes besides the prompt, the image(s), the model and the endpoint's options
# (fal_kontext.protocol.verbs.PROMPTED_KEYWORDS, the same order), with their annotations in the Protocol's type
# parameters.
VERB_KEYWORDS = (
    ("timeout", "float | None"),
    ("on_update", "_OnUpdate | None"),
    ("webhook_url", "str | None"),
    ("start_timeout", "float | None"),
    ("priority", "str | None"),
)
# The tier `model=` defaults to in the client's verbs.
DEFAULT_TIER = "pro"
# The verbs typed per tier: Protocol name -> (family of x-fal-endpoint, how the verb takes the input image(s)).
VERBS: dict[str, tuple[tuple[str, str | None], ...]] = {
    "EditVerb": (("edit", "image: _Image"), ("multi-edit", "images: Sequence[_Image]")),
    "GenerateVerb": (("text-to-image", None),),
}
# The vocabulary of `x-fal-endpoint.family`.
FAMILIES = ("edit", "multi-edit", "text-to-image")


def _literal(values: list[Any]) -> str:
    return "Literal[" + ", ".join(repr(str(v)) for v in values) + "]"


def _annotation(schema: dict[str, Any]) -> str:
    if "allOf" in schema and len(schema["allOf"]) == 1:
        return _annotation({**schema["allOf"][0], **{k: v for k, v in schema.items() if k != "allOf"}})
    if "anyOf" in schema:
        return " | ".join(dict.fromkeys(_annotation(member) for member in schema["anyOf"]))
    if "$ref" in schema:
        return "dict[str, Any]"
    if "enum" in schema:
        return _literal(schema["enum"])
    if schema.get("type") == "array":
        return f"list[{_annotation(schema.get('items') or {})}]"
    if schema.get("type") == "object":
        return "dict[str, Any]"
    annotation = _SCALARS.get(str(schema.get("type")), "Any")
    return f"{annotation} | None" if schema.get("nullable") and annotation != "Any" else annotation


def _submit_operations(document: dict[str, Any]) -> list[tuple[dict[str, Any], str]]:
    """(x-fal-endpoint, input schema name) of every submit operation, in document order."""
    found = []
    for item in document.get("paths", {}).values():
        operation = item.get("post") if isinstance(item, dict) else None
        if not isinstance(operation, dict) or "x-fal-endpoint" not in operation:
            continue
        ref = operation["requestBody"]["content"]["application/json"]["schema"]["$ref"]
        found.append((operation["x-fal-endpoint"], str(ref).rsplit("/", 1)[-1]))
    return found


def _docstring(text: str, indent: str = "    ") -> str:
    return indent + '"""' + re.sub(r"\s+", " ", text.replace("\\", "\\\\").replace('"""', "'''")).strip() + '"""'


def _verb(
    name: str, variants: tuple[tuple[str, str | None], ...], operations: list[tuple[dict[str, Any], str]]
) -> list[str]:
    """The Protocol of one verb: an overload of `__call__` per tier and way of taking images that has an endpoint."""
    overloads: list[str] = []
    for family, image in variants:
        by_tier: dict[str, str] = {}
        for endpoint, schema in operations:
            if endpoint.get("family") == family and endpoint.get("tier"):
                by_tier.setdefault(str(endpoint["tier"]), schema)
        for tier in sorted(by_tier, key=lambda tier: (tier != DEFAULT_TIER, tier)):
            default = f' = "{tier}"' if tier == DEFAULT_TIER else ""
            parameters = ["self", "prompt: str", "*", *([image] if image else []), f'model: Literal["{tier}"]{default}']
            parameters += [f"{keyword}: {annotation} = None" for keyword, annotation in VERB_KEYWORDS]
            parameters.append(f"**options: Unpack[{by_tier[tier]}Options]")
            overloads.append(f"    def __call__({', '.join(parameters)}) -> _Result: ...")
    families = " and ".join(f"`{family}`" for family, _ in variants)
    takes = "_Image, _OnUpdate, _Result" if any(image for _, image in variants) else "_OnUpdate, _Result"
    lines = ["", "", f"class {name}(Protocol[{takes}]):"]
    lines.append(_docstring(f"The verb of the {families} endpoints, typed per tier: `model=` chooses their options."))
    if not overloads:
        return [*lines, "", "    def __call__(self, prompt: str, *, model: NoReturn) -> _Result: ..."]
    for overload in overloads:
        lines += ["", "    @overload", overload] if len(overloads) > 1 else ["", overload]
    if len(overloads) > 1:
        # An implementation, so that typing.get_overloads (help() on the client's verbs) finds the overloads.
        lines += ["", "    def __call__(self, prompt: str, **arguments: Any) -> _Result: ..."]
    return lines


def render_options(document: dict[str, Any]) -> str:
    """The text of `options.py` for `document` (a normalised spec)."""
    schemas = document.get("components", {}).get("schemas", {})
    operations = _submit_operations(document)
    ids = [endpoint["id"] for endpoint, _ in operations]
    tiers = sorted({str(endpoint["tier"]) for endpoint, _ in operations if endpoint.get("tier")})
    families = sorted({str(endpoint["family"]) for endpoint, _ in operations})
    apps = sorted({str(endpoint.get("app")) for endpoint, _ in operations if endpoint.get("app")})
    inputs = list(dict.fromkeys(schema for _, schema in operations))

    lines = [
        '"""Typed options of the spec\'s endpoints, and the client\'s verbs typed per tier, from the spec.',
        "",
        "One TypedDict per input schema with its optional fields (enums as Literal); the endpoint ids, apps, tiers",
        "and families that the submit operations' `x-fal-endpoint` name; and a Protocol per verb whose overloads",
        "give each tier its endpoint's options. Written by scripts/typed_options.py.",
        '"""',
        "",
        "from collections.abc import Sequence",
        "from typing import Any, Literal, NoReturn, Protocol, TypedDict, TypeVar, Unpack, overload",
        "",
        f"EndpointId = {_literal(ids)}",
        f"App = {_literal(apps)}",
        f"Tier = {_literal(tiers)}",
        f"Family = {_literal(families)}",
        "",
        '_Image = TypeVar("_Image", contravariant=True)',
        '_OnUpdate = TypeVar("_OnUpdate", contravariant=True)',
        '_Result = TypeVar("_Result", covariant=True)',
    ]
    for name in inputs:
        schema = schemas[name]
        required = set(schema.get("required", []))
        endpoints = ", ".join(f"`{endpoint['id']}`" for endpoint, schema_name in operations if schema_name == name)
        lines += ["", "", f"class {name}Options(TypedDict, total=False):"]
        lines.append(_docstring(f"The optional fields of {name}, the input of {endpoints}."))
        lines.append("")
        optional = [(field, prop) for field, prop in schema.get("properties", {}).items() if field not in required]
        lines += [f"    {field}: {_annotation(prop)}" for field, prop in optional] or ["    pass"]
    for name, variants in VERBS.items():
        lines += _verb(name, variants, operations)
    lines += [
        "",
        "",
        "OPTIONS_BY_SCHEMA: dict[str, type[Any]] = {",
        *[f'    "{name}": {name}Options,' for name in inputs],
        "}",
    ]
    return "\n".join(lines) + "\n"
