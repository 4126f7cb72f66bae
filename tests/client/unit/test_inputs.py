"""Input checks (``fal_kontext.protocol.inputs``): the spec's JSON Schema through jsonschema, worded by us at the field, and
our own checks (image values, numbers JSON cannot carry, unknown fields with a hint).

Every invalid value here is one the spec does not allow, read from the spec (a ``maximum`` and past it, an ``enum``
and a value outside it): a valid change of the spec does not break these tests.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from typing import Any

import pytest

# jsonschema ships no type information (types-jsonschema is not among our dependencies).
from jsonschema import Draft4Validator  # type: ignore[import-untyped]

from fal_kontext.endpoints import Endpoint, model_tiers
from fal_kontext.errors import FieldProblem, InvalidInputError
from fal_kontext.protocol import inputs
from fal_kontext.protocol.inputs import check_input, check_submit_options, input_model, text_to_image_fields
from fal_kontext.spec import endpoint_specs, generated_model, parameter_schema, resolved_schema, spec, to_json_schema

URL = "https://example.test/in.png"
MISSING: Any = object()  # a required field left out

# One endpoint per input schema of the spec.
ENDPOINTS = list({item.input_schema: Endpoint(item.id) for item in endpoint_specs()}.values())
EDIT = next(endpoint for endpoint in ENDPOINTS if endpoint.image_field == "image_url")
MULTI = next(endpoint for endpoint in ENDPOINTS if endpoint.image_field == "image_urls")

# The JSON Schema keywords whose errors inputs words itself (every other one gets jsonschema's message).
WORDED = {"type", "enum", "minimum", "maximum", "minLength", "maxLength", "minItems", "maxItems", "required"}
# Keywords that are no rule of their own for draft 4: annotations, structure (their rules are the sub-schemas'),
# qualifiers of another rule (exclusiveMinimum of minimum), what to_json_schema translates (nullable: a type), and
# format (Draft4Validator checks none without a format checker).
NOT_RULES = {
    "description",
    "default",
    "example",
    "examples",
    "title",
    "format",
    "nullable",
    "properties",
    "items",
    "exclusiveMinimum",
    "exclusiveMaximum",
}
# A value of another type for each type, and how our message names the type expected.
WRONG_TYPE = {"string": 7, "integer": "7", "number": "7", "boolean": "yes", "array": "x"}
TYPE_WORDS = {
    "string": "a string",
    "integer": "an integer",
    "number": "a number",
    "boolean": "true or false",
    "array": "a list",
}


def properties(endpoint: Endpoint) -> dict[str, Any]:
    return dict(resolved_schema(endpoint.input_schema)["properties"])


def valid_value(name: str, schema: Mapping[str, Any]) -> Any:
    """A value ``schema`` allows (an image URL in the image fields)."""
    if schema.get("type") == "array":
        return [valid_value(name, schema["items"])] * max(schema.get("minItems", 1), 1)
    if name.startswith("image_url"):
        return URL
    if "enum" in schema:
        return schema["enum"][0]
    match schema.get("type"):
        case "string":
            return "a prompt"[: schema.get("maxLength", 8)].ljust(schema.get("minLength", 0), "x")
        case "integer" | "number":
            return schema.get("maximum", schema.get("minimum", 0) + 1)
        case "boolean":
            return True
    raise AssertionError(f"no valid value known for {name}: {schema}")


def valid_input(endpoint: Endpoint) -> dict[str, Any]:
    """``endpoint``'s required fields, each with a value the spec allows."""
    schema = resolved_schema(endpoint.input_schema)
    return {name: valid_value(name, schema["properties"][name]) for name in schema.get("required", ())}


def violations(field: str, schema: Mapping[str, Any]) -> Iterator[tuple[str, str, Any, str]]:
    """``(keyword, field, value, words)`` for each rule of a field's schema: a value breaking that rule (and no other
    of the field's), and words our message of it must hold. An item's rules give ``field[0]`` and a list value."""
    kind = schema.get("type")
    for keyword, rule in schema.items():
        match keyword:
            case "type":
                yield keyword, field, WRONG_TYPE[rule], f"{WRONG_TYPE[rule]!r} is not {TYPE_WORDS[rule]}"
            case "enum":
                outside = f"not-{rule[0]}" if kind == "string" else max(rule) + 1
                yield keyword, field, outside, f"{outside!r} is not allowed; allowed: {rule[0]!r}"
            case "minimum":
                below = rule if schema.get("exclusiveMinimum") else rule - 1
                yield keyword, field, below, f"{rule:g}"
            case "maximum":
                above = rule if schema.get("exclusiveMaximum") else rule + 1
                yield keyword, field, above, f"{rule:g}"
            case "minLength":
                yield keyword, field, "x" * (rule - 1), f"needs at least {rule} characters"
            case "maxLength":
                yield keyword, field, "x" * (rule + 1), f"allows at most {rule} characters"
            case "minItems":
                yield keyword, field, [valid_value(field, schema["items"])] * (rule - 1), f"at least {rule} item(s)"
            case "maxItems":
                yield keyword, field, [valid_value(field, schema["items"])] * (rule + 1), f"at most {rule} item(s)"
            case "items":
                rest = [valid_value(field, rule)] * (schema.get("minItems", 1) - 1)
                for inner, item_field, item, words in violations(f"{field}[0]", rule):
                    yield inner, item_field, [item, *rest], words


def spec_errors() -> Iterator[tuple[Endpoint, str, str, Any, str]]:
    """Every kind of error the spec's input schemas can give: each rule of each field of each input schema."""
    for endpoint in ENDPOINTS:
        schema = resolved_schema(endpoint.input_schema)
        for name in schema.get("required", ()):
            yield endpoint, "required", name, MISSING, "missing; "
        for name, field_schema in schema["properties"].items():
            for keyword, field, value, words in violations(name, field_schema):
                yield endpoint, keyword, field, value, words


def keywords(schema: Mapping[str, Any]) -> set[str]:
    found = {keyword for keyword in schema if not keyword.startswith("x-")}
    for inner in [*schema.get("properties", {}).values(), *([schema["items"]] if "items" in schema else [])]:
        found |= keywords(inner)
    return found


def problems_of(endpoint: Endpoint, data: Mapping[str, object]) -> dict[str, str]:
    with pytest.raises(InvalidInputError) as caught:
        check_input(endpoint, data)
    return {p.field: p.problem for p in caught.value.problems}


# --- the spec's JSON Schema, in our words -------------------------------------------------------------------------


def test_the_spec_is_openapi_3_0_which_draft_4_validates() -> None:
    """inputs validates with Draft4Validator: OpenAPI 3.0's schemas are JSON Schema draft 4 plus ``nullable``. An
    OpenAPI 3.1 spec would need Draft202012Validator (and no to_json_schema)."""
    assert str(spec()["openapi"]).startswith("3.0."), spec()["openapi"]


def test_the_spec_s_input_schemas_use_no_rule_without_our_words() -> None:
    used = set().union(*(keywords(resolved_schema(endpoint.input_schema)) for endpoint in ENDPOINTS))
    assert {"type", "enum", "maximum", "required"} <= used  # the walk reads the schemas
    unworded = used - NOT_RULES - WORDED
    assert not unworded, f"give {sorted(unworded)} words in inputs._schema_message, and a violation in this file"


@pytest.mark.parametrize(
    ("endpoint", "keyword", "field", "value", "words"),
    list(spec_errors()),
    ids=[f"{endpoint.input_schema}-{field}-{keyword}" for endpoint, keyword, field, _, _ in spec_errors()],
)
def test_every_error_the_spec_can_give_is_worded_by_us_at_its_field(
    endpoint: Endpoint, keyword: str, field: str, value: Any, words: str
) -> None:
    data = valid_input(endpoint)
    top = field.split("[", 1)[0]
    if value is MISSING:
        del data[top]
    else:
        data[top] = value
    raw = Draft4Validator(to_json_schema(resolved_schema(endpoint.input_schema))).iter_errors(data)
    raw_messages = {error.message for error in raw}
    assert raw_messages, f"{data} breaks no rule of the spec"  # jsonschema itself refuses the value
    with pytest.raises(InvalidInputError) as caught:
        check_input(endpoint, data)
    [problem] = caught.value.problems
    assert problem.field == field
    assert problem.value == (None if value is MISSING else data[top] if field == top else data[top][0])
    assert words in problem.problem
    assert problem.problem not in raw_messages and "breaks the spec's" not in problem.problem


def test_a_keyword_without_our_words_still_names_the_field() -> None:
    validator = Draft4Validator({"type": "object", "properties": {"size": {"type": "integer", "multipleOf": 8}}})
    [problem] = inputs._schema_problems(validator, {"size": 12})
    assert problem == FieldProblem("size", 12, "breaks the spec's 'multipleOf' rule: 12 is not a multiple of 8")


def test_a_value_past_the_spec_s_maximum_names_the_range() -> None:
    schema = properties(EDIT)["num_images"]
    low, high = schema["minimum"], schema["maximum"]
    problems = problems_of(EDIT, {**valid_input(EDIT), "num_images": high + 1})
    assert problems == {"num_images": f"{high + 1} is out of range: allowed {low:g} to {high:g}"}


def test_a_value_outside_the_spec_s_enum_lists_the_allowed_values() -> None:
    allowed = properties(EDIT)["aspect_ratio"]["enum"]
    problems = problems_of(EDIT, {**valid_input(EDIT), "aspect_ratio": "5:4"})
    assert problems["aspect_ratio"] == f"'5:4' is not allowed; allowed: {', '.join(map(repr, allowed))}"


def test_a_number_for_a_string_enum_of_numerals_says_which_string() -> None:
    fields = [
        (endpoint, name, numeral)
        for endpoint in ENDPOINTS
        for name, schema in properties(endpoint).items()
        for numeral in schema.get("enum", ())[:1]
        if schema.get("type") == "string" and str(numeral).isdigit()
    ]
    assert fields  # safety_tolerance: "1".."6"
    for endpoint, name, numeral in fields:
        problems = problems_of(endpoint, {**valid_input(endpoint), name: int(numeral)})
        assert problems == {name: f"{int(numeral)} is not a string (use the string {numeral!r})"}


@pytest.mark.parametrize("endpoint", ENDPOINTS, ids=lambda endpoint: endpoint.input_schema)
def test_true_and_false_are_not_numbers(endpoint: Endpoint) -> None:
    kinds = {name: schema["type"] for name, schema in properties(endpoint).items()}
    numbers = [name for name, kind in kinds.items() if kind in ("integer", "number")]
    assert numbers
    problems = problems_of(endpoint, {**valid_input(endpoint), **dict.fromkeys(numbers, True)})
    words = {"integer": "an integer", "number": "a number"}
    assert problems == {name: f"True is not {words[kinds[name]]}" for name in numbers}


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf])
def test_numbers_json_cannot_carry_are_refused_once(value: float) -> None:
    numbers = [name for name, schema in properties(EDIT).items() if schema["type"] in ("integer", "number")]
    problems = problems_of(EDIT, {**valid_input(EDIT), **dict.fromkeys(numbers, value)})
    # One problem each, ours (an infinity is past a maximum too, and an integer field's type refuses any float).
    assert problems == dict.fromkeys(numbers, f"{value!r} is not a finite number (JSON has no NaN or infinity)")


def test_every_problem_is_reported_at_once_missing_fields_first() -> None:
    data = {"prompt": 1, "num_images": properties(EDIT)["num_images"]["maximum"] + 1, "seed": "x"}
    with pytest.raises(InvalidInputError) as caught:
        check_input(EDIT, data)
    assert [p.field for p in caught.value.problems] == ["image_url", "prompt", "num_images", "seed"]


# --- ours: image values and unknown fields ------------------------------------------------------------------------


@pytest.fixture(params=[False, True], ids=["spec-as-it-is", "additionalProperties-false"])
def closed_schemas(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[bool]:
    """The spec's input schemas as they are, or as if each set ``additionalProperties: false``."""
    if request.param:
        monkeypatch.setattr(
            inputs, "resolved_schema", lambda name: {**resolved_schema(name), "additionalProperties": False}
        )
    inputs._validator.cache_clear()
    yield request.param
    inputs._validator.cache_clear()


def test_unknown_fields_are_refused_once_with_the_closest_field(closed_schemas: bool) -> None:
    name = max(properties(EDIT), key=len)  # the longest, so its misspelling is clearly closest to it
    typo = name[:-1]
    problems = problems_of(EDIT, {**valid_input(EDIT), typo: "x"})
    assert list(problems) == [typo]
    assert problems[typo].startswith(f"not a field of {EDIT.value}; did you mean {name!r}? allowed: ")
    problems = problems_of(MULTI, {**valid_input(MULTI), "image_url": URL})
    assert list(problems) == ["image_url"] and "did you mean 'image_urls'" in problems["image_url"]


def test_image_values_must_be_http_urls_or_image_data_uris() -> None:
    problems = problems_of(MULTI, {**valid_input(MULTI), "image_urls": [URL, 3, "in.png", "data:text/plain,hi"]})
    assert problems == {
        "image_urls[1]": "3 is not a string",
        "image_urls[2]": "'in.png' is not an http(s) URL with a host; give an http(s) URL or a data URI (edit() "
        "encodes files)",
        "image_urls[3]": "a data URI for an image needs an image media type (data:image/png;base64,...), not "
        "'text/plain'",
    }


# --- the checked input and its model ------------------------------------------------------------------------------


def test_the_checked_input_is_the_json_object_to_send() -> None:
    name, schema = next((name, schema) for name, schema in properties(MULTI).items() if "enum" in schema)
    model_class = generated_model(MULTI.input_schema)
    member = getattr(model_class.from_dict({**valid_input(MULTI), name: schema["enum"][-1]}), name)
    assert member is not schema["enum"][-1]  # a generated enum member
    fields = check_input(MULTI, {**valid_input(MULTI), "image_urls": (URL, URL), "seed": None, name: member})
    assert fields == {**valid_input(MULTI), "image_urls": [URL, URL], name: schema["enum"][-1]}
    model = input_model(MULTI, fields)
    assert type(model) is model_class and model.to_dict() == fields
    assert check_input(MULTI, model) == fields  # a generated model is checked as its JSON


def test_a_generated_model_is_checked_too() -> None:
    high = properties(EDIT)["num_images"]["maximum"]
    model = generated_model(EDIT.input_schema).from_dict({**valid_input(EDIT), "num_images": high + 1})
    assert list(problems_of(EDIT, model)) == ["num_images"]
    assert list(problems_of(EDIT, ["not", "a", "dict"])) == ["input"]  # type: ignore[arg-type]


def test_text_to_image_fields_take_a_prompt_and_options_no_image() -> None:
    tier = next(item.tier for item in endpoint_specs() if item.family == "text-to-image" and item.tier)
    endpoint, fields = text_to_image_fields("A lighthouse at dusk", model=tier, seed=7)
    assert endpoint.spec.family == "text-to-image" and tier in model_tiers()
    assert fields == {"prompt": "A lighthouse at dusk", "seed": 7}
    with pytest.raises(InvalidInputError, match="takes no input image"):
        text_to_image_fields("A lighthouse at dusk", model=tier, image=URL)


# --- submit options -----------------------------------------------------------------------------------------------


def test_submit_options_come_from_the_spec() -> None:
    timeout = parameter_schema("RequestTimeout")
    low = timeout["minimum"]
    below = low if timeout.get("exclusiveMinimum") else low / 2
    bound = "more than" if timeout.get("exclusiveMinimum") else "at least"
    with pytest.raises(InvalidInputError) as caught:
        check_submit_options(start_timeout=below, priority=None)
    assert caught.value.problems == (
        FieldProblem("start_timeout", below, f"{below!r} is too small: must be {bound} {low:g}"),
    )
    for value, words in ((math.inf, "not a finite number"), ("10", "'10' is not a number")):
        with pytest.raises(InvalidInputError, match=f"start_timeout: .*{words}"):
            check_submit_options(start_timeout=value, priority=None)  # type: ignore[arg-type]
    with pytest.raises(InvalidInputError, match="'low'"):
        check_submit_options(start_timeout=None, priority="urgent")
    assert check_submit_options(start_timeout=low + 5, priority="low") is not None
