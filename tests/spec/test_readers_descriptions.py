"""Facts stated in words (descriptions.py): every wording read, prose left alone, the unreadable refused."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from normaliser.descriptions import apply_description, facts_from_description, read_statements
from normaliser.model import NOT_STATED, FieldFacts, SourceError
from normaliser.openapi_doc import read_openapi

FIXTURES = Path(__file__).parent / "fixtures"
APIFOX_ZH = FIXTURES / "flux-pro-kontext-text-to-image__apifoxzh.openapi.yaml"


def _read(text: str, json_type: str | None) -> tuple[Any, Any, Any, Any]:
    worded = read_statements(text, json_type)
    return worded.default, worded.minimum, worded.maximum, worded.enum


@pytest.mark.parametrize(
    ("text", "json_type", "expected"),
    [
        # kkiai's and chainhub's English wordings
        ("The CFG scale. Default: 3.5. Range: 1-20.", "number", (3.5, 1, 20, None)),
        ("Number of images generated. Default: 1. Range: 1-4", "integer", (1, 1, 4, None)),
        ("Number of images to generate, range: 1-4", "integer", (NOT_STATED, 1, 4, None)),
        ("Range value: 1-20", "number", (NOT_STATED, 1, 20, None)),
        ("The strength, range: [0, 1].", "number", (NOT_STATED, 0, 1, None)),
        (
            'The format. Default: "jpeg" Supported formats: default, png, jpeg',
            "string",
            ("jpeg", None, None, ["default", "png", "jpeg"]),
        ),
        (
            'Aspect ratio. Default: "1:1" Supported: 21:9, 16:9, 1:1, 9:16',
            "string",
            ("1:1", None, None, ["21:9", "16:9", "1:1", "9:16"]),
        ),
        ('Safety. 1 is most strict, 5 is most lenient. Default: "2"', "string", ("2", None, None, None)),
        ('Image output format: "jpeg", "png"', "string", (NOT_STATED, None, None, ["jpeg", "png"])),
        ("Aspect ratios, enumerated values: 21:9, 4:3", "string", (NOT_STATED, None, None, ["21:9", "4:3"])),
        # fal's pages: JSON between backticks, or a bare word
        ('The format. Default value: `"jpeg"`', "string", ("jpeg", None, None, None)),
        ("The size. Default value: `landscape_4_3`", None, ("landscape_4_3", None, None, None)),
        ("Mask growth in pixels. Range: 0-50 Default value: `15`", "integer", (15, 0, 50, None)),
        ("Whether to check. Default value: `true`", "boolean", (True, None, None, None)),
        # Chinese, as Apifox exports of fal endpoints word them
        ("引导强度。默认值:3.5  范围值1-20", "number", (3.5, 1, 20, None)),
        ('图片格式。默认值:"jpeg"  支持default、png、jpeg', "string", ("jpeg", None, None, ["default", "png", "jpeg"])),
        ('宽高比。默认值:"1:1" 支持:21:9、16:9、1:1', "string", ("1:1", None, None, ["21:9", "16:9", "1:1"])),
        ('宽高比。默认值："1:1"', "string", ("1:1", None, None, None)),
        ("输出图片数量,范围值:1-4", "integer", (NOT_STATED, 1, 4, None)),
        ("图片尺寸,枚举值:21:9、16:9、4:3", "string", (NOT_STATED, None, None, ["21:9", "16:9", "4:3"])),
        ("角色。可选值：`user`（用户）、`system`（系统）", "string", (NOT_STATED, None, None, ["user", "system"])),
        ('图片输出格式:"jpeg","png"', "string", (NOT_STATED, None, None, ["jpeg", "png"])),
        ("引导强度,默认 3.5,可选,范围1-20。", "number", (3.5, 1, 20, None)),
        ("生成图片数量,取值1-4,默认1", "integer", (1, 1, 4, None)),
        ("生成图片数量，默认为1（可选）", "integer", (1, None, None, None)),
        ("图片输出格式，支持 jpeg 或 png，默认 jpeg（可选）", "string", ("jpeg", None, None, ["jpeg", "png"])),
        ("同步模式。默认 false", "boolean", (False, None, None, None)),
        ("指导强度。取值范围：`0 <= x <= 1`。默认值：`0.5`。", "number", (0.5, 0, 1, None)),
    ],
)
def test_statements_are_read(text: str, json_type: str | None, expected: tuple[Any, ...]) -> None:
    assert _read(text, json_type) == expected


@pytest.mark.parametrize(
    "text",
    [
        # fal's own safety_tolerance wording: two values and their meaning, not bounds (the enum goes to 6)
        "The safety tolerance level for the generated image. 1 being the most strict and 5 being the most permissive.",
        "Note: this will increase the price by 0.0025 credits per request.",
        "The default is fine. The strength, between 0 and 1.",  # no cue: `between` is as often a length
        "默认情况下使用 jpeg。支持多种类型的内容块。",  # ordinary words, no value after them
        "随机种子。可选",  # 可选: optional
        "图片格式,jpeg 或 png",  # a list without a cue is not recognisable
    ],
)
def test_prose_is_not_a_statement(text: str) -> None:
    assert _read(text, "number") == (NOT_STATED, None, None, None)
    assert read_statements(text, "number").notes == []


def test_accepted_file_types_are_reported_not_read() -> None:
    facts = FieldFacts(name="image_url", description="Drop a file. Accepted file types: jpg, jpeg, png")
    notes = facts_from_description(facts, "string")
    assert facts.enum is None
    assert notes == [
        "image_url: lists the file types it accepts (jpg, jpeg, png): they describe the file behind the URL, "
        "not values of the field, and are not read"
    ]
    zh = read_statements("在此处拖放文件,或提供 base64 编码的数据 URL接受的文件类型:jpg、png", "string")
    assert zh.enum is None and len(zh.notes) == 1


@pytest.mark.parametrize(
    ("text", "json_type", "message"),
    [
        (
            "Default: the width of the input image",
            "integer",
            "'Default: the width of the input image' states a default",
        ),
        ("Default: 1 image", "integer", "it goes on with 'image' after the value"),
        ("Range: 1 to many", "integer", "states a range that cannot be read"),
        ("Supported: see below", "string", "states a value list that cannot be read"),
        ("默认值:很多", "string", "states a default that cannot be read: no value after it"),
        ("Range: 1-4", "string", "a range of numbers on a field of type string"),
        ("Default: 2.5", "integer", "not an integer"),
        ('Default: "png" Supported: jpeg, webp', "string", "the default 'png' is not among the values it lists"),
        ("Supported: png, jpeg, png", "string", "names png twice"),
        ("Default: 1. Default: 2", "integer", "a second default 2"),
    ],
)
def test_unreadable_statement_stops_naming_file_line_and_field(text: str, json_type: str, message: str) -> None:
    facts = FieldFacts(name="num_images", line=7, description=text)
    with pytest.raises(SourceError, match=message) as caught:
        facts_from_description(facts, json_type, path=Path("x__y.page.txt"), line=12)
    assert (caught.value.path, caught.value.line) == ("x__y.page.txt", 12)
    assert caught.value.problem.startswith("num_images: ")


def test_description_and_document_must_agree() -> None:
    facts = FieldFacts(name="guidance_scale", line=40, default=2.5, description="Default: 3.5 Range: 1-20")
    with pytest.raises(SourceError, match=re.escape("states default 2.5 but its description 3.5")) as caught:
        apply_description(facts, "number", Path("a__fal.llms.md"), 40)
    assert (caught.value.path, caught.value.line) == ("a__fal.llms.md", 40)
    agreeing = FieldFacts(name="guidance_scale", default=3.5, minimum=1, description="Default: 3.5 Range: 1-20")
    apply_description(agreeing, "number", Path("a__fal.llms.md"), 40)
    assert (agreeing.default, agreeing.minimum, agreeing.maximum) == (3.5, 1, 20)  # the maximum added


def test_chinese_apifox_export_is_read_with_every_stated_fact() -> None:
    source = read_openapi(APIFOX_ZH)
    fields = {f.name: f for f in source.input_fields}
    assert (fields["guidance_scale"].default, fields["guidance_scale"].minimum, fields["guidance_scale"].maximum) == (
        3.5,
        1,
        20,
    )
    assert (fields["num_images"].default, fields["num_images"].minimum, fields["num_images"].maximum) == (1, 1, 4)
    assert (fields["output_format"].default, fields["output_format"].enum) == ("jpeg", ["default", "png", "jpeg"])
    assert fields["aspect_ratio"].default == "1:1"
    assert fields["aspect_ratio"].enum == ["21:9", "16:9", "4:3", "3:2", "1:1", "2:3", "3:4", "9:16", "9:21"]
    assert fields["safety_tolerance"].default == "2" and fields["safety_tolerance"].minimum is None


def test_chinese_statement_that_cannot_be_read_stops_the_openapi_reader(tmp_path: Path) -> None:
    broken = tmp_path / APIFOX_ZH.name
    broken.write_text(APIFOX_ZH.read_text().replace("默认值:1   范围值1-4", "默认值:很多   范围值1-4"))
    with pytest.raises(SourceError, match="num_images: '默认值:很多 范围值1-4' states a default that cannot be read"):
        read_openapi(broken)


def test_chinese_statement_that_cannot_be_read_names_the_openapi_file(tmp_path: Path) -> None:
    broken = tmp_path / APIFOX_ZH.name
    broken.write_text(APIFOX_ZH.read_text().replace("默认值:1   范围值1-4", "默认值:很多   范围值1-4"))
    with pytest.raises(SourceError) as caught:
        read_openapi(broken)
    assert (caught.value.path, caught.value.line) == (str(broken), _line_of(APIFOX_ZH, "num_images:"))


def _line_of(path: Path, needle: str) -> int:
    text = path.read_text()
    return text[: text.index(needle)].count("\n") + 1
