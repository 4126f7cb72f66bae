"""Each extraction and repair step, on the real sources and on broken variants of them."""

from __future__ import annotations

from pathlib import Path

import pytest
from normaliser.apifox import extract_yaml, load_yaml, read_apifox
from normaliser.fal_doc import read_fal_doc, type_to_schema
from normaliser.model import NOT_STATED, SourceError
from normaliser.rendered_page import read_rendered_page
from normaliser.yaml_repair import repair_yaml
from ruamel.yaml import YAML

from .conftest import APIFOX_MAX, APIFOX_PRO, FAL_DOC, PAGE


def _fields(source_fields: list) -> dict:  # type: ignore[type-arg]
    return {f.name: f for f in source_fields}


# --- Apifox exports ---------------------------------------------------------------------------------


def test_delivered_apifox_yaml_does_not_parse_without_repair() -> None:
    block, first = extract_yaml(APIFOX_MAX.read_text(), APIFOX_MAX)
    with pytest.raises(SourceError) as caught:
        load_yaml(block, APIFOX_MAX, first)
    assert caught.value.line == 33  # `description: Range value: 1-20` in the file itself
    assert "mapping values" in caught.value.problem


def test_repair_quotes_values_and_keeps_every_character() -> None:
    block, first = extract_yaml(APIFOX_PRO.read_text(), APIFOX_PRO)
    repaired, repairs = repair_yaml(block, first)
    doc = YAML(typ="safe", pure=True).load(repaired)
    props = doc["paths"]["/fal-ai/flux-pro/kontext"]["post"]["requestBody"]["content"]["application/json"]["schema"][
        "properties"
    ]
    original = next(line for line in block.splitlines() if "Default: 3.5. Range: 1-20." in line)
    assert props["guidance_scale"]["description"] == original.split("description: ", 1)[1]
    assert (
        props["output_format"]["description"]
        == 'The format for generating the image. Default: "jpeg" Supported formats: default, png, jpeg'
    )
    assert repairs == [f"line {n}: quoted the value of `description` (it contains ': ')" for n in (31, 34, 37, 40)]


def test_repair_leaves_quoted_block_and_flow_values_alone() -> None:
    block = "a: 'x: y'\nb: >-\n  c: d\ne: {f: g}\nh: plain\ni: \"j: k\"\n"
    repaired, repairs = repair_yaml(block, 1)
    assert repaired.splitlines()[:6] == block.splitlines()
    assert repairs == []


def test_repair_quotes_a_value_with_a_comment_marker_and_an_apostrophe() -> None:
    repaired, repairs = repair_yaml("description: it's range: 1-4 #1\n", 10)
    assert YAML(typ="safe", pure=True).load(repaired) == {"description": "it's range: 1-4 #1"}
    assert repairs == ["line 10: quoted the value of `description` (it contains ': ')"]


def test_yaml_still_broken_after_repair_names_file_line_and_problem(tmp_path: Path) -> None:
    broken = tmp_path / "flux-pro-kontext__broken.apifox.md"
    text = APIFOX_PRO.read_text().replace("          - prompt\n", "          - prompt\n        - [unclosed\n", 1)
    broken.write_text(text)
    with pytest.raises(SourceError) as caught:
        read_apifox(broken)
    assert caught.value.path == str(broken)
    assert caught.value.line is not None and 40 < caught.value.line < 80
    assert "does not parse even after repair" in str(caught.value)


def test_apifox_without_yaml_block_or_unclosed_block(tmp_path: Path) -> None:
    missing = tmp_path / "x__y.apifox.md"
    missing.write_text("# nothing here\n")
    with pytest.raises(SourceError, match="no ```yaml block"):
        read_apifox(missing)
    missing.write_text("```yaml\nopenapi: 3.0.1\n")
    with pytest.raises(SourceError, match="never closed") as caught:
        read_apifox(missing)
    assert caught.value.line == 1


def test_apifox_reads_fields_examples_servers_and_auth() -> None:
    source = read_apifox(APIFOX_MAX)
    assert source.endpoint == "/fal-ai/flux-pro/kontext/max"
    fields = _fields(source.input_fields)
    assert list(fields)[:3] == ["prompt", "seed", "guidance_scale"]
    assert (fields["guidance_scale"].minimum, fields["guidance_scale"].maximum) == (1, 20)
    assert fields["output_format"].required is True  # what this export says; fal's doc overrides it
    assert fields["aspect_ratio"].enum == ["21:9", "16:9", "4:3", "3:2", "1:1", "2:3", "3:4", "9:16", "9:21"]
    assert source.request_examples[0]["safety_tolerance"] == 2
    assert source.servers == [{"url": "https://api.chainhub.tech", "description": "Production  Environment"}]
    assert source.auth_scheme == "Bearer"


def test_apifox_reports_a_server_entry_that_is_not_a_server() -> None:
    source = read_apifox(APIFOX_PRO)
    assert "servers[1] is not a server object (no url): ignored" in source.repairs
    assert [s["url"] for s in source.servers] == ["https://api.chainhub.tech"]


# --- fal's documentation page -----------------------------------------------------------------------


def test_fal_doc_reads_types_required_defaults_ranges_and_enums() -> None:
    source = read_fal_doc(FAL_DOC)
    assert source.endpoint == "/fal-ai/flux-pro/kontext/multi"
    assert source.auth_scheme == "Key"
    fields = _fields(source.input_fields)
    assert [f.name for f in source.input_fields] == [
        "prompt", "seed", "guidance_scale", "sync_mode", "num_images", "output_format",
        "safety_tolerance", "enhance_prompt", "aspect_ratio", "image_urls",
    ]  # fmt: skip
    assert fields["prompt"].required and fields["image_urls"].required and not fields["seed"].required
    assert fields["guidance_scale"].schema == {"type": "number"}
    assert (fields["guidance_scale"].default, fields["guidance_scale"].minimum, fields["guidance_scale"].maximum) == (
        3.5,
        1,
        20,
    )
    assert (fields["num_images"].default, fields["num_images"].minimum, fields["num_images"].maximum) == (1, 1, 4)
    assert fields["safety_tolerance"].enum == ["1", "2", "3", "4", "5", "6"]
    assert fields["safety_tolerance"].default == "2"
    assert fields["safety_tolerance"].schema == {"type": "string"}  # SafetyToleranceEnum: a string enum
    assert fields["aspect_ratio"].schema == {"type": "string"} and fields["aspect_ratio"].default is NOT_STATED
    assert fields["sync_mode"].default is False
    assert fields["image_urls"].schema == {"type": "array", "items": {"type": "string"}}
    assert (
        fields["guidance_scale"].description is not None and "Default value" not in fields["guidance_scale"].description
    )


def test_fal_doc_reads_the_output_schema_and_examples() -> None:
    source = read_fal_doc(FAL_DOC)
    assert source.output_fields is not None
    outputs = _fields(source.output_fields)
    assert list(outputs) == ["images", "timings", "seed", "has_nsfw_concepts", "prompt"]
    assert all(f.required for f in outputs.values())
    assert outputs["images"].schema == {
        "type": "array",
        "items": {"$ref": "#/components/schemas/registry__image__fast_sdxl__models__Image"},
    }
    assert outputs["timings"].schema == {"$ref": "#/components/schemas/Timings"}
    assert source.request_examples[0]["safety_tolerance"] == "2"
    assert source.output_examples == [{"images": [{"url": "", "content_type": "image/jpeg"}], "prompt": ""}]


@pytest.mark.parametrize(
    ("fal_type", "values", "expected"),
    [
        ("float", None, {"type": "number"}),
        ("list<boolean>", None, {"type": "array", "items": {"type": "boolean"}}),
        ("OutputFormatEnum", ["jpeg"], {"type": "string"}),
        ("fal__toolkit__image__image__Image", None, {"$ref": "#/components/schemas/fal__toolkit__image__image__Image"}),
    ],
)
def test_fal_type_names(fal_type: str, values: list[str] | None, expected: dict[str, object]) -> None:
    assert type_to_schema(fal_type, values) == expected


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (("**Endpoint ID:**", "**Endpoint:**"), "no '\\*\\*Endpoint ID:\\*\\*' line"),
        (("### Input Schema", "### Inputs"), "no 'Input Schema' section"),
        (('<ParamField body="seed" type="integer">', '<ParamField body="seed">'), "without body= or type="),
        (('"num_images": 1,', '"num_images": 1,,'), "Input Example"),
        (("Default value: `3.5`", "Default value: `4.5`"), "default=3.5 but text says 4.5"),
    ],
)
def test_broken_fal_doc_names_the_problem(tmp_path: Path, change: tuple[str, str], message: str) -> None:
    broken = tmp_path / "x__fal.fal-doc.md"
    text = FAL_DOC.read_text()
    assert change[0] in text
    broken.write_text(text.replace(change[0], change[1], 1))
    with pytest.raises(SourceError, match=message) as caught:
        read_fal_doc(broken)
    assert caught.value.path == str(broken)


def _line(text: str, needle: str) -> int:
    return text[: text.index(needle)].count("\n") + 1


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        (
            '<ParamField body="seed"',
            '<ParamFeild body="seed"',
            "unknown tag <ParamFeild> \\(did you mean 'ParamField'\\?\\)",
        ),
        (
            '<ParamField body="seed" type="integer">',
            '<ParamField body="seed" type="integer" requried>',
            "unknown attribute 'requried'",
        ),
        (
            '<ParamField body="seed" type="integer">',
            '<ParamField body="seed type="integer">',
            "a quote is missing or misplaced",
        ),
        (
            '<ParamField body="prompt" type="string" required>',
            '<ParamField body="prompt" type="string required>',
            "quote is never closed",
        ),
        (
            "Possible values: `jpeg`, `png`",
            "Possible values: `jpeg`, `png`, `jpeg`",
            "possible value 'jpeg' is listed twice",
        ),
        (
            "Possible values: `jpeg`, `png`",
            "Possible values: `webp`, `png`",
            "default 'jpeg' is not among the possible values",
        ),
    ],
)
def test_strict_fal_doc_names_file_line_and_problem(tmp_path: Path, old: str, new: str, message: str) -> None:
    text = FAL_DOC.read_text()
    assert old in text
    broken = tmp_path / FAL_DOC.name
    broken.write_text(text.replace(old, new, 1))
    with pytest.raises(SourceError, match=message) as caught:
        read_fal_doc(broken)
    assert caught.value.path == str(broken)
    assert caught.value.line == _line(text, old)


def test_fal_doc_missing_close_tag_names_the_open_one(tmp_path: Path) -> None:
    text = FAL_DOC.read_text()
    field = '<ParamField body="seed" type="integer">'
    close = text.index("</ParamField>", text.index(field))
    broken = tmp_path / FAL_DOC.name
    broken.write_text(text[:close] + text[close + len("</ParamField>") :])
    with pytest.raises(SourceError, match="<ParamField> is never closed: line") as caught:
        read_fal_doc(broken)
    assert caught.value.line == _line(text, field)
    last = text.rindex("</ParamField>")
    broken.write_text(text[:last] + text[last + len("</ParamField>") :])
    with pytest.raises(SourceError, match="never closed \\(no </ParamField>\\)") as caught:
        read_fal_doc(broken)
    assert caught.value.line == _line(text, '<ParamField body="prompt" type="string" required>\n  The prompt used')


def test_fal_doc_unclosed_code_block_and_stray_close_tag(tmp_path: Path) -> None:
    text = FAL_DOC.read_text()
    broken = tmp_path / FAL_DOC.name
    broken.write_text(text + "\n```python\nprint(1)\n")
    with pytest.raises(SourceError, match="code block is never closed") as caught:
        read_fal_doc(broken)
    assert caught.value.line == text.count("\n") + 2  # the page ends with a newline, then a blank line
    broken.write_text(text.replace("## Input Example", "</ParamField>\n## Input Example", 1))
    with pytest.raises(SourceError, match="closes no <ParamField>: nothing is open") as caught:
        read_fal_doc(broken)
    assert caught.value.line == _line(text, "## Input Example")


# --- the rendered aggregator page -------------------------------------------------------------------


def test_rendered_page_splits_its_table_rows() -> None:
    source = read_rendered_page(PAGE)
    assert source.endpoint == "/fal-ai/flux-pro/kontext/max/multi"
    assert source.servers[0]["url"] == "https://www.kkiai.com"
    assert source.auth_scheme == "Bearer"
    fields = _fields(source.input_fields)
    assert list(fields) == ["prompt", "guidance_scale", "num_images", "output_format", "safety_tolerance", "image_urls"]
    assert fields["image_urls"].schema == {"type": "array", "items": {"type": "string"}}
    assert fields["image_urls"].required and not fields["num_images"].required
    assert (fields["num_images"].minimum, fields["num_images"].maximum) == (1, 4)
    assert fields["output_format"].enum == ["jpeg", "png"]
    assert source.request_examples[0]["image_urls"][0].endswith("_image.webp")
    assert source.submit_examples[0]["status"] == "IN_QUEUE"


def test_rendered_page_row_that_cannot_be_split_names_its_line(tmp_path: Path) -> None:
    broken = tmp_path / "x__y.page.txt"
    lines = PAGE.read_text().splitlines()
    row = next(i for i, line in enumerate(lines) if line.startswith("num_images"))
    lines[row] = "num_imagesint32Optional"
    broken.write_text("\n".join(lines) + "\n")
    with pytest.raises(SourceError, match="cannot split table row") as caught:
        read_rendered_page(broken)
    assert caught.value.line == row + 1
