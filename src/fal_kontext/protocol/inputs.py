"""Input checks before anything is sent: the spec's JSON Schema of each endpoint's input, validated with jsonschema,
and what JSON Schema cannot say (image values, text and numbers JSON cannot carry, unknown fields with a hint).

``check_input`` checks once and returns the JSON object to send; ``input_model`` makes the generated model of it
(``from_dict``) without checking again. The schemas are those of ``fal_kontext_api/openapi.json`` (the generated
package's copy of the spec), read through ``fal_kontext.spec``.
"""

from __future__ import annotations

import base64
import binascii
import difflib
import enum
import functools
import math
import re
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any, Protocol, cast
from urllib.parse import urlsplit

from fal_kontext_api.models import QueuePriority

from fal_kontext.endpoints import Endpoint, choose_endpoint
from fal_kontext.errors import FieldProblem, InvalidInputError
from fal_kontext.spec import generated_model, parameter_schema, resolved_schema, spec, to_json_schema

from .images import is_data_uri, split_data_uri

__all__ = [
    "EditInput",
    "check_input",
    "check_submit_options",
    "edit_fields",
    "input_model",
    "text_to_image_fields",
]


class EditInput(Protocol):
    """A generated input model (the one the spec names for an endpoint: ``KontextInput``, ``KontextMultiInput``,
    ...): what the generated submit operations take as ``body``."""

    def to_dict(self) -> dict[str, Any]:
        """The JSON object sent."""
        ...


_JSON_TYPES = {
    "string": "a string",
    "integer": "an integer",
    "number": "a number",
    "boolean": "true or false",
    "array": "a list",
    "object": "an object",
    "null": "null",
}
_CONTROL = re.compile(r"[\x00-\x20\x7f]")


def _shown(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def url_problem(value: str) -> str | None:
    """Why ``value`` is not an absolute http(s) URL we may send (scheme, host, no whitespace), or None."""
    if _CONTROL.search(value):
        return f"{_shown(value)} contains whitespace or a control character (a stray newline?)"
    parts = urlsplit(value)
    if parts.scheme.lower() not in ("http", "https") or not parts.netloc:
        return f"{_shown(value)} is not an http(s) URL with a host"
    return None


def image_value_problem(value: str) -> str | None:
    """Why ``value`` cannot stand for an input image (an http(s) URL, or a base64 data URI of an image), or None."""
    if not is_data_uri(value):
        problem = url_problem(value)
        return f"{problem}; give an http(s) URL or a data URI (edit() encodes files)" if problem else None
    parts = split_data_uri(value)
    if parts is None:
        return "a data URI needs a comma before its payload: data:image/png;base64,..."
    media_type, parameters, payload = parts
    if not media_type.lower().startswith("image/"):
        return f"a data URI for an image needs an image media type (data:image/png;base64,...), not {media_type!r}"
    if ";base64" not in parameters.lower() or not payload:
        return "a data URI for an image needs a base64 payload (data:image/png;base64,...)"
    try:
        base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError):
        return "the data URI's payload is not valid base64"
    return None


def text_problem(value: str) -> str | None:
    """Why ``value`` cannot be sent as JSON text (a lone surrogate, e.g. from a bad decode), or None."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as err:
        return f"has a character that is not valid Unicode at position {err.start} (a lone surrogate)"
    return None


# --- the spec's JSON Schema, through jsonschema -------------------------------------------------------------------


@functools.cache
def _validator(name: str, *, parameter: bool = False) -> Any:
    """The compiled jsonschema validator of the spec's component schema ``name`` (with ``parameter``, of the
    component parameter ``name``'s schema), made once per name.

    The spec is OpenAPI 3.0 (tests/client/unit/test_inputs.py fails if that changes), whose schemas are JSON Schema
    draft 4 plus ``nullable``, which ``to_json_schema`` translates: hence ``Draft4Validator`` (a boolean
    ``exclusiveMinimum``; ``True`` and ``1.0`` are not integers). jsonschema is imported here, on the first check,
    not with the module: ``import fal_kontext`` (and so ``fal-kontext --help``) stays as quick as it was.
    """
    # jsonschema ships no type information (types-jsonschema is not among our dependencies).
    from jsonschema import Draft4Validator  # type: ignore[import-untyped]

    return Draft4Validator(_json_schema(name, parameter=parameter))


@functools.cache
def _json_schema(name: str, *, parameter: bool = False) -> dict[str, Any]:
    """The spec's component schema (or parameter's schema) ``name`` as JSON Schema draft 4, with the components beside
    it: a reference deeper than ``resolved_schema``'s one level resolves in the same document."""
    schema = parameter_schema(name) if parameter else resolved_schema(name)
    return cast(dict[str, Any], to_json_schema({**schema, "components": spec()["components"]}))


@functools.cache
def _compiled(name: str) -> Callable[[object], object]:
    """The spec's component schema ``name`` compiled to Python by fastjsonschema, made once per name: it tells
    whether an input is valid in a few microseconds, where jsonschema's validator takes tens; jsonschema is asked
    only for an input found invalid, to word each of its problems (fastjsonschema stops at the first)."""
    import fastjsonschema

    draft4 = {**_json_schema(name), "$schema": "http://json-schema.org/draft-04/schema#"}
    return cast(Callable[[object], object], fastjsonschema.compile(draft4))


def _is_valid(name: str, instance: object) -> bool:
    """Whether ``instance`` fits the spec's component schema ``name`` (``_compiled``)."""
    import fastjsonschema

    try:
        _compiled(name)(instance)
    except fastjsonschema.JsonSchemaException:
        return False
    return True


def _field_name(path: Iterable[str | int]) -> str:
    """``("image_urls", 0)`` -> ``image_urls[0]``; ``("a", "b")`` -> ``a.b``."""
    name = ""
    for part in path:
        name += f"[{part}]" if isinstance(part, int) else f".{part}" if name else part
    return name or "input"


def _missing(name: str) -> str:
    what = "the input image: an http(s) URL or a data URI" if name.startswith("image_url") else "required"
    return f"missing; {what}"


def _range_problem(schema: Mapping[str, Any], value: float) -> str:
    low, high = schema.get("minimum"), schema.get("maximum")
    if low is not None and high is not None:
        return f"{value!r} is out of range: allowed {low:g} to {high:g}"
    if low is not None:
        bound = "more than" if schema.get("exclusiveMinimum") else "at least"
        return f"{value!r} is too small: must be {bound} {low:g}"
    bound = "less than" if schema.get("exclusiveMaximum") else "at most"
    return f"{value!r} is too large: must be {bound} {high:g}"


def _schema_message(error: Any) -> str:
    """Our words for one jsonschema error (a ``jsonschema.ValidationError``) about the value it concerns."""
    rule, value, schema = error.validator_value, error.instance, error.schema
    match error.validator:
        case "type":
            kinds: list[str] = rule if isinstance(rule, list) else [rule]
            expected = " or ".join(_JSON_TYPES.get(kind, kind) for kind in kinds)
            # A number for a string enum of numerals (safety_tolerance: "1".."6").
            numeral = not isinstance(value, bool) and str(value) in schema.get("enum", ())
            hint = f" (use the string {str(value)!r})" if numeral else ""
            return f"{_shown(value)} is not {expected}{hint}"
        case "enum":
            return f"{_shown(value)} is not allowed; allowed: {', '.join(repr(item) for item in rule)}"
        case "minimum" | "maximum":
            return _range_problem(schema, value)
        case "minLength":
            return f"needs at least {rule} characters, got {len(value)}"
        case "maxLength":
            return f"allows at most {rule} characters, got {len(value)}"
        case "minItems":
            return f"needs at least {rule} item(s), got {len(value)}"
        case "maxItems":
            return f"allows at most {rule} item(s), got {len(value)}"
        case _:
            # A keyword no input schema of the spec uses today (tests/client/unit/test_inputs.py fails when one
            # appears).
            return f"breaks the spec's {error.validator!r} rule: {error.message}"


def _schema_problems(validator: Any, instance: object, at: tuple[str, ...] = ()) -> Iterator[FieldProblem]:
    """Every way ``instance`` breaks ``validator``'s schema, in our words, each at its field (under ``at``)."""
    # A type error first: of one value, it says more than its enum or range error.
    for error in sorted(validator.iter_errors(instance), key=lambda error: error.validator != "type"):
        path = (*at, *error.absolute_path)
        if error.validator == "required":
            for name in error.validator_value:
                if name not in error.instance:
                    yield FieldProblem(_field_name((*path, name)), None, _missing(name))
        else:
            yield FieldProblem(_field_name(path), error.instance, _schema_message(error))


# --- ours: what JSON Schema cannot say ----------------------------------------------------------------------------


def _unsendable(field: str, value: object) -> Iterator[FieldProblem]:
    """Values JSON cannot carry, which JSON Schema never sees: NaN and infinities, text with a lone surrogate."""
    if isinstance(value, float) and not math.isfinite(value):
        yield FieldProblem(field, value, f"{value!r} is not a finite number (JSON has no NaN or infinity)")
    elif isinstance(value, str) and (problem := text_problem(value)):
        yield FieldProblem(field, value, problem)
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _unsendable(f"{field}[{index}]", item)
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from _unsendable(f"{field}.{key}", item)


def _unknown_fields(fields: Mapping[str, object], properties: Mapping[str, Any], where: str) -> Iterator[FieldProblem]:
    """Fields the schema does not define, with the closest one it does.

    Refused whether or not the schema sets ``additionalProperties: false``. The spec's input schemas do not, so a
    server that follows them takes a misspelt option (``aspect``) without a word (pydantic, behind fal's apps, ignores
    unknown fields by default) and runs a paid job with the default instead. (The field is left out of what
    jsonschema sees, so a schema that does forbid it does not report it twice.)
    """
    for name, value in fields.items():
        if name not in properties:
            close = difflib.get_close_matches(name, list(properties), n=1)
            guess = f"did you mean {close[0]!r}? " if close else ""
            yield FieldProblem(name, value, f"not a field of {where}; {guess}allowed: {', '.join(properties)}")


def _image_problems(fields: Mapping[str, object]) -> Iterator[FieldProblem]:
    """Image values that are neither an http(s) URL nor a base64 data URI of an image."""
    for name in ("image_url", "image_urls"):
        value = fields.get(name)
        images = [value] if isinstance(value, str) else value if isinstance(value, list) else []
        for index, item in enumerate(images):
            if isinstance(item, str) and (problem := image_value_problem(item)):
                field = name if isinstance(value, str) else f"{name}[{index}]"
                yield FieldProblem(field, _shown(item), problem)


def _one_per_field(problems: Iterable[FieldProblem]) -> list[FieldProblem]:
    """The first problem of each field (the most basic one, given in that order)."""
    first: dict[str, FieldProblem] = {}
    for problem in problems:
        first.setdefault(problem.field, problem)
    return list(first.values())


def _place(field: str, given: list[str]) -> tuple[int, list[int]]:
    """Where a problem of ``field`` is listed: missing fields first, then in the order given, items by index."""
    name = re.split(r"[.\[]", field, maxsplit=1)[0]
    return given.index(name) if name in given else -1, [int(index) for index in re.findall(r"\[(\d+)\]", field)]


def _plain(value: object) -> object:
    """``value`` as JSON has it: an enum member as its value, a tuple as a list, at any depth."""
    if isinstance(value, enum.Enum):
        return _plain(value.value)
    if isinstance(value, (list, tuple)):
        return [_plain(item) for item in value]
    if isinstance(value, Mapping):
        return {key: _plain(item) for key, item in value.items()}
    return value


# --- the API ------------------------------------------------------------------------------------------------------


def check_input(endpoint: Endpoint, data: Mapping[str, object] | EditInput) -> dict[str, Any]:
    """``data`` checked against ``endpoint``'s input schema in the spec, as the JSON object to send.

    Args:
        endpoint: Where the input goes (its schema decides, e.g. ``image_url`` or ``image_urls``).
        data: A dict of fields, or a generated input model.

    Returns:
        The fields as JSON: enum members as their values, tuples as lists, fields set to None left out.

    Raises:
        InvalidInputError: with every problem found, one per field; nothing is sent.
    """
    if not isinstance(data, Mapping) and callable(getattr(data, "to_dict", None)):
        data = data.to_dict()  # a generated input model
    if not isinstance(data, Mapping):
        raise InvalidInputError(
            [FieldProblem("input", type(data).__name__, "expected a dict of fields")], endpoint=endpoint.value
        )
    fields = {key: _plain(value) for key, value in data.items() if value is not None}
    properties: Mapping[str, Any] = _json_schema(endpoint.input_schema).get("properties", {})
    known = {key: value for key, value in fields.items() if key in properties}
    problems = _one_per_field(
        [
            *_unknown_fields(fields, properties, endpoint.value),
            *(problem for key, value in known.items() for problem in _unsendable(key, value)),
            *(
                ()
                if _is_valid(endpoint.input_schema, known)
                else _schema_problems(_validator(endpoint.input_schema), known)
            ),
            *_image_problems(known),
        ]
    )
    if problems:
        given = list(fields)
        raise InvalidInputError(sorted(problems, key=lambda p: _place(p.field, given)), endpoint=endpoint.value)
    return fields


def input_model(endpoint: Endpoint, fields: Mapping[str, Any]) -> EditInput:
    """The generated input model of ``endpoint`` (``KontextInput``, ...) holding ``fields``, which ``check_input``
    returned (with uploaded files' URLs in place of their stand-ins): not checked again."""
    return cast(EditInput, generated_model(endpoint.input_schema).from_dict(fields))


def edit_fields(
    prompt: str,
    *,
    image: str | None = None,
    images: Sequence[str] | None = None,
    model: str = "pro",
    **options: object,
) -> tuple[Endpoint, dict[str, Any]]:
    """The endpoint and checked input of an edit: one ``image`` picks the single endpoint, ``images`` the multi one.

    Args:
        prompt: What to change.
        image: One input image: a URL or a data URI (local files are read first, ``verbs``).
        images: Several input images (the multi endpoint), same kinds.
        model: A tier of the spec, e.g. ``"pro"`` or ``"max"``.
        **options: Other input fields (``aspect_ratio``, ``seed``, ``num_images``, ``output_format``, ...).

    Returns:
        The endpoint, and the input as ``check_input`` returns it.

    Raises:
        InvalidInputError: no image or both kinds given, or any field breaks the spec.
    """
    if image is not None and images is not None:
        raise InvalidInputError(
            [FieldProblem("image", "image and images", "give either image=... or images=[...], not both")]
        )
    if image is None and not images:
        raise InvalidInputError(
            [FieldProblem("image", None, "missing; give image=... (one input image) or images=[...] (several)")]
        )
    for name in ("image_url", "image_urls"):
        if name in options:
            raise InvalidInputError(
                [FieldProblem(name, options[name], "edit() takes image=... or images=[...] instead")]
            )
    endpoint = choose_endpoint(model, family="multi-edit" if images is not None else "edit")
    fields: dict[str, object] = {"prompt": prompt, **options}
    if images is not None:
        fields["image_urls"] = images
    elif image is not None:
        fields["image_url"] = image
    return endpoint, check_input(endpoint, fields)


def text_to_image_fields(prompt: str, *, model: str = "pro", **options: object) -> tuple[Endpoint, dict[str, Any]]:
    """The text-to-image endpoint of ``model`` and its checked input (as ``check_input`` returns it): a prompt and
    options, no input image.

    Raises:
        InvalidInputError: the tier has no text-to-image endpoint, an image was given, or a field breaks the spec.
    """
    for name in ("image", "images", "image_url", "image_urls"):
        if name in options:
            raise InvalidInputError(
                [FieldProblem(name, options[name], "text-to-image takes no input image; use edit() to edit one")]
            )
    endpoint = choose_endpoint(model, family="text-to-image")
    return endpoint, check_input(endpoint, {"prompt": prompt, **options})


def check_submit_options(
    *,
    start_timeout: float | None,
    priority: str | None,
    webhook_url: str | None = None,
    runner_hint: str | None = None,
    no_retry: bool = False,
) -> QueuePriority | None:
    """Check the submit options (sent as headers and query) against the spec; returns the priority as the
    generated enum.

    Raises:
        InvalidInputError: every option out of the spec, named: ``start_timeout`` out of range, ``priority`` not one
            of its values, ``webhook_url`` not an http(s) URL, ``runner_hint`` not a header-safe string,
            ``no_retry`` not a bool.
    """
    problems: list[FieldProblem] = []
    if start_timeout is not None:
        timeout = _validator("RequestTimeout", parameter=True)
        found = [
            *_unsendable("start_timeout", start_timeout),
            *_schema_problems(timeout, start_timeout, ("start_timeout",)),
        ]
        problems += _one_per_field(found)
    if webhook_url is not None:
        problem = url_problem(webhook_url) if isinstance(webhook_url, str) else "is not a string"
        if problem:
            problems.append(
                FieldProblem("webhook_url", webhook_url, f"{problem}; fal POSTs the result to an http(s) URL")
            )
    if runner_hint is not None and (not isinstance(runner_hint, str) or _CONTROL.search(runner_hint.replace(" ", "_"))):
        problems.append(
            FieldProblem("runner_hint", runner_hint, "must be a string without line breaks or control characters")
        )
    if not isinstance(no_retry, bool):
        problems.append(FieldProblem("no_retry", no_retry, "expected True or False"))
    result: QueuePriority | None = None
    if priority is not None and not isinstance(priority, str):
        problems.append(FieldProblem("priority", priority, "expected a string"))
    elif priority is not None:
        try:
            result = QueuePriority(priority)
        except ValueError:
            allowed = ", ".join(repr(p.value) for p in QueuePriority)
            problems.append(
                FieldProblem("priority", priority, f"{_shown(priority)} is not allowed; allowed: {allowed}")
            )
    if problems:
        raise InvalidInputError(problems)
    return result
