"""fal's llms.txt page (`.llms.md`): fields, facts, types, several pages in one file, an appended OpenAPI, strictness."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from normaliser.llms import read_llms
from normaliser.model import NOT_STATED, Format, SourceError

FIXTURES = Path(__file__).parent / "fixtures"
KONTEXT_DEV = FIXTURES / "flux-kontext-dev__fal.llms.md"
FLUX_DEV = FIXTURES / "flux-1-dev__fal.llms.md"  # not a Kontext model; a queue OpenAPI appended after the page


def _line(text: str, needle: str) -> int:
    return text[: text.index(needle)].count("\n") + 1


def test_kontext_dev_page_is_read_with_every_stated_fact() -> None:
    source = read_llms(KONTEXT_DEV)
    text = KONTEXT_DEV.read_text()
    assert (source.format, source.endpoint, source.tier) == (Format.LLMS, "/fal-ai/flux-kontext/dev", "dev")
    assert (source.docs_url, source.auth_scheme, source.servers) == (
        "https://fal.ai/models/fal-ai/flux-kontext/dev",
        "Key",
        [],
    )
    assert source.summary == "Edits an image from a text instruction (a fixture written for the reader tests)."
    fields = {f.name: f for f in source.input_fields}
    assert list(fields) == [
        "prompt", "image_url", "num_inference_steps", "seed", "guidance_scale", "sync_mode", "num_images",
        "enable_safety_checker", "output_format", "acceleration", "resolution_mode",
    ]  # fmt: skip
    assert fields["prompt"].required and not fields["seed"].required
    assert fields["num_inference_steps"].line == _line(text, "- **`num_inference_steps`**")
    steps = fields["num_inference_steps"]
    assert (steps.schema, steps.default, steps.minimum, steps.maximum) == ({"type": "integer"}, 28, 10, 50)
    guidance = fields["guidance_scale"]
    assert (guidance.schema, guidance.default, guidance.minimum, guidance.maximum) == ({"type": "number"}, 2.5, 1, 20)
    assert guidance.description == "How closely the image follows the prompt."  # `Default value: …` kept apart
    assert (fields["sync_mode"].default, fields["enable_safety_checker"].default) == (False, True)
    assert fields["seed"].default is NOT_STATED
    assert (fields["output_format"].schema, fields["output_format"].enum) == ({"type": "string"}, ["jpeg", "png"])
    mode = fields["resolution_mode"]
    assert (mode.default, mode.enum) == ("match_input", ["auto", "match_input", "1:1", "16:9", "9:16"])
    assert mode.description == (
        "How the output size is chosen. - `auto`: a size the model prefers for the input's aspect ratio. "
        "- `match_input`: the input's own size, rounded to what the model accepts. "
        "A few fixed aspect ratios are accepted too."
    )
    assert source.output_fields is not None
    outputs = {f.name: f for f in source.output_fields}
    assert list(outputs) == ["images", "timings", "seed", "has_nsfw_concepts", "prompt"]
    assert all(f.required for f in outputs.values())
    assert outputs["images"].schema == {
        "type": "array",
        "items": {"$ref": "#/components/schemas/fal__toolkit__image__image__Image"},
    }
    assert outputs["timings"].schema == {"$ref": "#/components/schemas/Timings"}
    assert outputs["has_nsfw_concepts"].schema == {"type": "array", "items": {"type": "boolean"}}
    assert [len(e) for e in source.request_examples] == [9, 2]  # the full example first
    assert source.output_examples[0]["images"][0]["width"] == 1024
    assert source.repairs == []


def test_a_model_that_is_not_kontext_has_no_tier_and_an_appended_openapi_is_reported() -> None:
    source = read_llms(FLUX_DEV)
    text = FLUX_DEV.read_text()
    assert (source.endpoint, source.tier) == ("/fal-ai/flux-1/dev", None)  # its summary's "Kontext [dev]" is a mention
    fields = {f.name: f for f in source.input_fields}
    # `ImageSize | Enum` without the enum's values: a union, the unlisted values reported.
    assert fields["image_size"].schema == {"anyOf": [{"$ref": "#/components/schemas/ImageSize"}, {"type": "string"}]}
    assert (fields["image_size"].default, fields["image_size"].enum) == ("landscape_4_3", None)
    assert (fields["guidance_scale"].minimum, fields["guidance_scale"].maximum) == (1, 20)  # bullet and prose agree
    assert fields["acceleration"].description is None
    assert source.output_fields is not None and [f.name for f in source.output_fields] == ["images", "seed"]
    appended = _line(text, '{\n  "openapi"')
    assert source.repairs == [
        f"line {_line(text, '- **`image_size`**')}: image_size: the page lists no values for the Enum in "
        "'ImageSize | Enum'",
        f"line {appended}: the queue OpenAPI document appended to the page (for fal-ai/flux-1/dev) is not "
        "read with it: save it as its own <endpoint>__fal.openapi.json source to use its facts",
    ]


def test_several_pages_in_one_file_the_one_the_file_is_named_after(tmp_path: Path) -> None:
    both = KONTEXT_DEV.read_text() + "\n" + FLUX_DEV.read_text()
    for name, endpoint in (("flux-kontext-dev", "/fal-ai/flux-kontext/dev"), ("flux-1-dev", "/fal-ai/flux-1/dev")):
        path = tmp_path / f"{name}__fal.llms.md"
        path.write_text(both)
        source = read_llms(path)
        assert source.endpoint == endpoint
        prompt = "- **`prompt`** (`string`, _required_):\n  " + (
            "What to change" if name == "flux-kontext-dev" else "What to draw"
        )
        assert source.input_fields[0].line == _line(both, prompt)
    path = tmp_path / "flux-kontext-pro__fal.llms.md"
    path.write_text(both)
    with pytest.raises(SourceError, match="no page of this document is; name the file after the page to read") as err:
        read_llms(path)
    assert "'FLUX.1 [dev]' (line" in err.value.problem and "read as flux-kontext-dev__fal.llms.md" in err.value.problem


@pytest.mark.parametrize(
    ("old", "new", "message", "at"),
    [
        ("- **`seed`** (`integer`, _optional_):", "- **`seed`** (`integer`, _optionl_):", "a bullet that is not a field: '\\*\\*`seed`", "- **`seed`**"),
        ("- **`seed`** (`integer`, _optional_):", "- **`seed`** (`int`, _optional_):", "seed: type 'int': 'int' is not a type this reader knows", "- **`seed`**"),
        ("  - Options: `\"jpeg\"`, `\"png\"`\n", "", "OutputFormatEnum is an enum but the page lists no values", "- **`output_format`**"),
        ("  - Default: `28`", "  - Defualt: `28`", "'Defualt' is not a fact this reader knows \\(did you mean 'Default'\\?\\)", "  - Default: `28`"),
        ("`\"none\"`, `\"regular\"`, `\"high\"`", "`\"none\"`, `\"regular\"`, `\"none\"`", "option 'none' is listed twice", "  - Options: `\"none\"`"),
        ("  - Default: `\"none\"`", "  - Default: `\"fast\"`", "Default: 'fast' but the description says 'none'", "- **`acceleration`**"),
        ("Trade quality for speed. Default value: `\"none\"`\n  - Default: `\"none\"`", "Trade quality for speed. Default value: `\"fast\"`\n  - Default: `\"fast\"`", "default 'fast' is not a value of AccelerationEnum", "- **`acceleration`**"),
        ("  - Default: `28`", "  - Default: 28", "cannot read the default '28' \\(expected `value`\\)", "  - Default: `28`"),
        ("  - Default: `2.5`", "  - Default: `high`", "the default `high` is not a value of type number", "  - Default: `2.5`"),
        ("  - Range: `10` to `50`", "  - Range: `10` - `50`", "cannot read the range", "  - Range: `10` to `50`"),
        ("  - Array of boolean", "  - Array of string", "'Array of string' but the type is list<boolean>", "  - Array of boolean"),
        ("  - Array of boolean", "  - Array of boolean\n  Flagged by the checker.", "text after the Array of bullet", "  - Array of boolean"),
        ("  - Range: `1` to `4`", "  - Range: `1` to `4`\n  - Note the limit.", "num_images: a sub-bullet after the facts that is none", "  - Note the limit."),
        ("How many images to make.", "How many images to make. Range: 1-8", "states maximum 4 but its description 8", "- **`num_images`**"),
        ("How many images to make.", "How many images to make. Default: lots", "'Default: lots' states a default that cannot be read", "- **`num_images`**"),
        ("- **`sync_mode`**", "- **`seed`**", "seed: listed twice in one schema", "- **`sync_mode`**"),
        ("- **`prompt`** (`string`, _required_):\n  The prompt used.", "**`prompt`** (`string`, _required_):\n  The prompt used.", "a field written outside a bullet list", "- **`prompt`** (`string`, _required_):\n  The prompt used."),
        ("- **Endpoint**: `https://fal.run/fal-ai/flux-kontext/dev`", "- **Endpoint**: `https://fal.run/fal-ai/flux-kontext/max`", "the Endpoint .* is not the Model ID fal-ai/flux-kontext/dev", "- **Endpoint**"),
        ("- **Model ID**: `fal-ai/flux-kontext/dev`", "- **Model ID**: `flux kontext`", "Model ID '`flux kontext`' is not an endpoint id", "- **Model ID**"),
        ("  \"num_inference_steps\": 28,", "  \"num_inference_steps\": 28,,", "example: Expecting property name", "  \"num_inference_steps\": 28,"),
        ("### Output Schema\n\nThe API returns:\n\n", "### Output Schema\n\nThe API returns:\n\n#### Fields\n\n", "a heading in the Output Schema section", "#### Fields"),
    ],
)  # fmt: skip
def test_broken_llms_page_names_file_line_and_problem(
    tmp_path: Path, old: str, new: str, message: str, at: str
) -> None:
    text = KONTEXT_DEV.read_text()
    assert old in text
    broken = tmp_path / KONTEXT_DEV.name
    broken.write_text(text.replace(old, new, 1))
    with pytest.raises(SourceError, match=message) as caught:
        read_llms(broken)
    # `at` is found in the original, or (for an inserted line) in the broken text
    expected = _line(text, at) if at in text else _line(text.replace(old, new, 1), at)
    assert (caught.value.path, caught.value.line) == (str(broken), expected)


def test_empty_schema_section_and_missing_model_id_are_refused(tmp_path: Path) -> None:
    text = KONTEXT_DEV.read_text()
    start, end = text.index("- **`prompt`** (`string`, _required_):\n  What"), text.index("**Required Parameters")
    broken = tmp_path / KONTEXT_DEV.name
    broken.write_text(text[:start] + text[end:])
    with pytest.raises(SourceError, match="the Input Schema section lists no fields") as caught:
        read_llms(broken)
    assert caught.value.line == _line(text, "### Input Schema")
    broken.write_text(text.replace("- **Model ID**: `fal-ai/flux-kontext/dev`\n", ""))
    with pytest.raises(
        SourceError, match=re.escape("page 'FLUX.1 Kontext [dev]' has schemas but no **Model ID**")
    ) as caught:
        read_llms(broken)
    assert caught.value.line == 1


def test_appended_json_that_does_not_parse_is_refused(tmp_path: Path) -> None:
    text = FLUX_DEV.read_text()
    broken = tmp_path / FLUX_DEV.name
    broken.write_text(text.replace('"paths": {}', '"paths": {', 1))
    with pytest.raises(SourceError, match="JSON after the page") as caught:
        read_llms(broken)
    assert caught.value.line is not None and caught.value.line > _line(text, "{")
