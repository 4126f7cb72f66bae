"""Input checks before anything is sent, read from the spec: types, enums, ranges, required fields, unknown fields.

The ranges and enums come from ``fal_kontext_api/openapi.json`` (the generated package's copy of the spec); the
valid input is then built with the generated model's ``from_dict``.
"""

from __future__ import annotations

import base64
import binascii
import difflib
import enum
import math
import re
from collections.abc import Mapping, Sequence
from typing import Any, Protocol, cast
from urllib.parse import urlsplit

from fal_kontext_api import models
from fal_kontext_api.models import QueuePriority

from .endpoints import Endpoint, choose_endpoint
from .errors import FieldProblem, InvalidInputError
from .files import DEFAULT_MAX_IMAGE_BYTES, ImageSource, image_source_to_url
from .spec import parameter_schema, resolved_schema

__all__ = [
    "EditInput",
    "build_edit_input",
    "build_input",
    "build_text_to_image_input",
    "check_schema",
    "check_submit_options",
]


class EditInput(Protocol):
    """A generated input model (the one the spec names for an endpoint: ``KontextInput``, ``KontextMultiInput``,
    ...): what the generated submit operations take as ``body``."""

    def to_dict(self) -> dict[str, Any]:
        """The JSON object sent."""
        ...


_JSON_TYPES = {"string": "a string", "integer": "an integer", "number": "a number", "boolean": "true or false"}
_DATA_URI = re.compile(r"^data:(?P<type>[^;,]*)(?P<params>(?:;[^;,]*)*),(?P<data>.*)$", re.IGNORECASE | re.DOTALL)
_CONTROL = re.compile(r"[\x00-\x20\x7f]")


def _shown(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _type_ok(kind: str | None, value: object) -> bool:
    match kind:
        case "string":
            return isinstance(value, str)
        case "integer":
            return isinstance(value, int) and not isinstance(value, bool)
        case "number":
            return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
        case "boolean":
            return isinstance(value, bool)
        case "array":
            return isinstance(value, (list, tuple))
        case _:
            return True


def _range_problem(schema: Mapping[str, Any], value: float) -> str | None:
    low, high = schema.get("minimum"), schema.get("maximum")
    too_low = low is not None and (value <= low if schema.get("exclusiveMinimum") else value < low)
    too_high = high is not None and (value >= high if schema.get("exclusiveMaximum") else value > high)
    if not (too_low or too_high):
        return None
    if low is not None and high is not None:
        return f"{value!r} is out of range: allowed {low:g} to {high:g}"
    if low is not None:
        return (
            f"{value!r} is too small: must be {'more than' if schema.get('exclusiveMinimum') else 'at least'} {low:g}"
        )
    return f"{value!r} is too large: must be at most {high:g}"


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
    if not value.lower().startswith("data:"):
        problem = url_problem(value)
        return f"{problem}; give an http(s) URL or a data URI (edit() encodes files)" if problem else None
    match = _DATA_URI.match(value)
    if match is None:
        return "a data URI needs a comma before its payload: data:image/png;base64,..."
    if not match["type"].lower().startswith("image/"):
        return f"a data URI for an image needs an image media type (data:image/png;base64,...), not {match['type']!r}"
    if ";base64" not in match["params"].lower() or not match["data"]:
        return "a data URI for an image needs a base64 payload (data:image/png;base64,...)"
    try:
        base64.b64decode(match["data"], validate=True)
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


def _check_value(field: str, schema: Mapping[str, Any], value: object, problems: list[FieldProblem]) -> None:
    kind = schema.get("type")
    if not _type_ok(kind, value):
        hint = ""
        if "enum" in schema and not isinstance(value, bool):
            hint = f" (use the string {str(value)!r})" if str(value) in schema["enum"] else ""
        problems.append(FieldProblem(field, value, f"{_shown(value)} is not {_JSON_TYPES.get(kind or '', kind)}{hint}"))
        return
    if isinstance(value, str) and (problem := text_problem(value)):
        problems.append(FieldProblem(field, value, problem))
        return
    if isinstance(value, str) and len(value) < schema.get("minLength", 0):
        problem = f"needs at least {schema['minLength']} characters, got {len(value)}"
        problems.append(FieldProblem(field, value, problem))
        return
    if isinstance(value, str) and "maxLength" in schema and len(value) > schema["maxLength"]:
        problem = f"allows at most {schema['maxLength']} characters, got {len(value)}"
        problems.append(FieldProblem(field, value, problem))
        return
    if "enum" in schema and value not in schema["enum"]:
        allowed = ", ".join(repr(v) for v in schema["enum"])
        problems.append(FieldProblem(field, value, f"{_shown(value)} is not allowed; allowed: {allowed}"))
        return
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        problem = _range_problem(schema, value)
        if problem:
            problems.append(FieldProblem(field, value, problem))
    if isinstance(value, (list, tuple)):
        if len(value) < schema.get("minItems", 0):
            problems.append(
                FieldProblem(field, value, f"needs at least {schema['minItems']} item(s), got {len(value)}")
            )
        if "maxItems" in schema and len(value) > schema["maxItems"]:
            problems.append(
                FieldProblem(field, value, f"allows at most {schema['maxItems']} item(s), got {len(value)}")
            )
        for index, item in enumerate(value):
            _check_value(f"{field}[{index}]", schema.get("items", {}), item, problems)


def check_schema(schema_name: str, data: Mapping[str, object], *, endpoint: str | None = None) -> list[FieldProblem]:
    """Every way ``data`` breaks the spec's schema ``schema_name``: missing, unknown, mistyped, out-of-range fields."""
    schema = resolved_schema(schema_name)
    properties: Mapping[str, Any] = schema.get("properties", {})
    problems: list[FieldProblem] = []
    for name in schema.get("required", ()):
        if name not in data or data[name] is None:
            what = "the input image: an http(s) URL or a data URI" if name.startswith("image_url") else "required"
            problems.append(FieldProblem(name, None, f"missing; {what}"))
    for name, value in data.items():
        if name not in properties:
            allowed = ", ".join(properties)
            close = difflib.get_close_matches(name, list(properties), n=1)
            guess = f"did you mean {close[0]!r}? " if close else ""
            where = f"of {endpoint}" if endpoint else f"of {schema_name}"
            problems.append(FieldProblem(name, value, f"not a field {where}; {guess}allowed: {allowed}"))
            continue
        if value is None and name not in schema.get("required", ()):
            continue
        _check_value(name, properties[name], value, problems)
    for name in ("image_url", "image_urls"):
        value = data.get(name)
        images = [value] if isinstance(value, str) else value if isinstance(value, (list, tuple)) else []
        for index, item in enumerate(images):
            if isinstance(item, str) and (problem := image_value_problem(item)):
                field = name if isinstance(value, str) else f"{name}[{index}]"
                problems.append(FieldProblem(field, _shown(item), problem))
    return problems


def build_input(endpoint: Endpoint, data: Mapping[str, object] | EditInput) -> EditInput:
    """The generated input model for ``endpoint``, after checking ``data`` against the spec.

    Args:
        endpoint: Where the input goes (decides ``image_url`` vs ``image_urls``).
        data: A dict of fields, or a generated input model.

    Raises:
        InvalidInputError: with every problem found; nothing is sent.
    """
    if not isinstance(data, Mapping) and callable(getattr(data, "to_dict", None)):
        data = data.to_dict()  # a generated input model
    if not isinstance(data, Mapping):
        raise InvalidInputError(
            [FieldProblem("input", type(data).__name__, "expected a dict of fields")], endpoint=endpoint.value
        )
    fields = {key: (value.value if isinstance(value, enum.Enum) else value) for key, value in data.items()}
    problems = check_schema(endpoint.input_schema, fields, endpoint=endpoint.value)
    if problems:
        raise InvalidInputError(problems, endpoint=endpoint.value)
    cleaned = {
        key: (list(value) if isinstance(value, tuple) else value) for key, value in fields.items() if value is not None
    }
    # The generated model named by the spec's input schema.
    return cast(EditInput, getattr(models, endpoint.input_schema).from_dict(cleaned))


def build_edit_input(
    prompt: str,
    *,
    image: ImageSource | None = None,
    images: Sequence[ImageSource] | None = None,
    model: str = "pro",
    max_image_bytes: int = DEFAULT_MAX_IMAGE_BYTES,
    **options: object,
) -> tuple[Endpoint, EditInput]:
    """The endpoint and checked input for an edit: one ``image`` picks the single endpoint, ``images`` the multi one.

    Args:
        prompt: What to change.
        image: One input image: URL, data URI, local path, bytes or PIL image.
        images: Several input images (the multi endpoint), same kinds.
        model: ``"pro"`` or ``"max"``.
        max_image_bytes: Largest local image inlined as a data URI.
        **options: Other input fields (``aspect_ratio``, ``seed``, ``num_images``, ``output_format``, ...).

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
        fields["image_urls"] = [
            image_source_to_url(source, field=f"image_urls[{index}]", max_bytes=max_image_bytes)
            for index, source in enumerate(images)
        ]
    elif image is not None:
        fields["image_url"] = image_source_to_url(image, field="image_url", max_bytes=max_image_bytes)
    return endpoint, build_input(endpoint, fields)


def build_text_to_image_input(prompt: str, *, model: str = "pro", **options: object) -> tuple[Endpoint, EditInput]:
    """The text-to-image endpoint of ``model`` and its checked input: a prompt and options, no input image.

    Raises:
        InvalidInputError: the tier has no text-to-image endpoint, an image was given, or a field breaks the spec.
    """
    for name in ("image", "images", "image_url", "image_urls"):
        if name in options:
            raise InvalidInputError(
                [FieldProblem(name, options[name], "text-to-image takes no input image; use edit() to edit one")]
            )
    endpoint = choose_endpoint(model, family="text-to-image")
    return endpoint, build_input(endpoint, {"prompt": prompt, **options})


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
        _check_value("start_timeout", parameter_schema("RequestTimeout"), start_timeout, problems)
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
