"""fal's API reference page with `<Tabs>` (several endpoints on one page), fal's type names, and its strictness."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest
from normaliser.fal_doc import read_fal_doc
from normaliser.model import NOT_STATED, Format, SourceError

FIXTURES = Path(__file__).parent / "fixtures"
TABS = FIXTURES / "flux-kontext-dev__fal.fal-doc.md"  # tabs "Kontext Dev" and "LoRA"


def _line(text: str, needle: str) -> int:
    return text[: text.index(needle)].count("\n") + 1


def _copy(tmp_path: Path, name: str, text: str | None = None) -> Path:
    target = tmp_path / name
    if text is None:
        shutil.copy(TABS, target)
    else:
        target.write_text(text)
    return target


def test_the_tab_of_the_files_endpoint_is_read() -> None:
    source = read_fal_doc(TABS)
    text = TABS.read_text()
    assert (source.format, source.endpoint, source.tier) == (Format.FAL_DOC, "/fal-ai/flux-kontext/dev", "dev")
    assert (source.docs_url, source.auth_scheme, source.servers) == (
        "https://fal.ai/models/fal-ai/flux-kontext/dev",
        "Key",
        [],
    )
    fields = {f.name: f for f in source.input_fields}
    assert list(fields) == ["prompt", "image_url", "guidance_scale", "output_format", "image_size"]
    assert fields["guidance_scale"].line == _line(text, '<ParamField body="guidance_scale"')
    assert (fields["guidance_scale"].default, fields["guidance_scale"].minimum, fields["guidance_scale"].maximum) == (
        2.5,
        1,
        20,
    )
    assert fields["guidance_scale"].description == "How closely the image follows the prompt."
    assert (fields["output_format"].enum, fields["output_format"].default) == (["jpeg", "png"], "jpeg")
    # A union reads as fal's queue OpenAPI states it: anyOf, the enum's values with their member.
    assert fields["image_size"].schema == {
        "anyOf": [
            {"$ref": "#/components/schemas/ImageSize"},
            {"type": "string", "enum": ["square_hd", "landscape_4_3", "portrait_4_3"]},
        ]
    }
    assert (fields["image_size"].enum, fields["image_size"].default) == (None, "landscape_4_3")
    assert source.output_fields is not None
    outputs = {f.name: f for f in source.output_fields}
    assert outputs["images"].schema == {
        "type": "array",
        "items": {"$ref": "#/components/schemas/fal__toolkit__image__image__Image"},  # fal's full name
    }
    assert outputs["timings"].schema == {"$ref": "#/components/schemas/Timings"}
    assert source.request_examples == [
        {"prompt": "Make the sky purple", "image_url": "https://example.com/in.png", "guidance_scale": 2.5}
    ]
    assert source.output_examples == [{"images": [{"url": ""}]}]


def test_another_tab_is_read_when_the_file_is_named_after_it(tmp_path: Path) -> None:
    source = read_fal_doc(_copy(tmp_path, "flux-kontext-lora__fal.fal-doc.md"))
    assert source.endpoint == "/fal-ai/flux-kontext-lora"
    assert [(f.name, f.default) for f in source.input_fields] == [("prompt", NOT_STATED), ("num_inference_steps", 30)]
    assert source.request_examples == [{"prompt": "Make the sky purple", "num_inference_steps": 30}]
    assert source.output_examples == []  # the LoRA tab has none; the first tab's is not taken
    assert source.auth_scheme == "Key"  # fal's scheme, from the page's cURL example


def test_no_tab_for_the_files_endpoint_names_every_tab(tmp_path: Path) -> None:
    with pytest.raises(SourceError) as caught:
        read_fal_doc(_copy(tmp_path, "flux-kontext-max__fal.fal-doc.md"))
    text = TABS.read_text()
    dev, lora = _line(text, '<Tab title="Kontext Dev">'), _line(text, '<Tab title="LoRA">')
    assert caught.value.line == _line(text, "<Tabs>")
    assert caught.value.problem == (
        "the file name is for endpoint 'flux-kontext-max' but no tab of this document is; name the file after the "
        f"tab to read. Its tabs: 'Kontext Dev' (line {dev}): fal-ai/flux-kontext/dev, read as "
        f"flux-kontext-dev__fal.fal-doc.md; 'LoRA' (line {lora}): fal-ai/flux-kontext-lora, read as "
        "flux-kontext-lora__fal.fal-doc.md"
    )


@pytest.mark.parametrize(
    ("old", "new", "message", "at"),
    [
        ('<Tab title="LoRA">', "<Tab>", '<Tab> without title="…"', '<Tab title="LoRA">'),
        ('<Tab title="LoRA">', '<Tab name="LoRA">', "<Tab> has an unknown attribute 'name'", '<Tab title="LoRA">'),
        ("<Tabs>", "<Tabs s>", "<Tabs> has an unknown attribute 's'", "<Tabs>"),
        (
            "**Endpoint ID:** `fal-ai/flux-kontext-lora`",
            "",
            "tab 'LoRA' has no '\\*\\*Endpoint ID:\\*\\*' lines",
            '<Tab title="LoRA">',
        ),
        (
            'type="ImageSize | Enum"',
            'type="ImageSize | int"',
            "'int' is not a type this reader knows",
            '<ParamField body="image_size"',
        ),
        (
            'type="OutputFormatEnum"',
            'type="OutputFormat"',
            "values are listed for type 'OutputFormat'",
            '<ParamField body="output_format"',
        ),
        (
            "Possible values: `jpeg`, `png`",
            "",
            "OutputFormatEnum is an enum but the page lists no values",
            '<ParamField body="output_format"',
        ),
        (
            "`square_hd`, `landscape_4_3`, `portrait_4_3`",
            "`square_hd`, `portrait_4_3`",
            "default 'landscape_4_3' is not among the possible values",
            "`square_hd`, `landscape_4_3`",
        ),
        (
            'type="float" default="2.5"',
            'type="float" default="high"',
            "could not convert string to float",
            '<ParamField body="guidance_scale"',
        ),
        (
            "How closely the image follows the prompt. Default value: `2.5`",
            "How closely the image follows the prompt. Default value: `2.5` Range: 0-20",
            "the document states minimum 1.0 but its description 0.0",
            '<ParamField body="guidance_scale"',
        ),
        (
            "The image to edit.",
            "The image to edit. Default: the first frame",
            "image_url: 'Default: the first frame' states a default that cannot be read",
            '<ParamField body="image_url"',
        ),
        (
            "### Output Schema",
            "### Outputs",
            "a <ParamField> outside the Input Schema and Output Schema",
            '<ParamField body="images" type="list<fal',
        ),
        ("### Input Schema", "### Inputs", "no 'Input Schema' section", '<Tab title="Kontext Dev">'),
    ],
)
def test_broken_tab_page_names_file_line_and_problem(tmp_path: Path, old: str, new: str, message: str, at: str) -> None:
    text = TABS.read_text()
    assert old in text
    broken = _copy(tmp_path, TABS.name, text.replace(old, new, 1))
    with pytest.raises(SourceError, match=message) as caught:
        read_fal_doc(broken)
    assert caught.value.path == str(broken)
    assert caught.value.line == _line(text, at)


def test_a_tab_left_open_and_a_tab_outside_tabs(tmp_path: Path) -> None:
    text = TABS.read_text()
    broken = _copy(tmp_path, TABS.name, text.replace("  </Tab>\n</Tabs>", "</Tabs>", 1))
    with pytest.raises(SourceError, match="</Tabs> closes no <Tabs>: <Tab> from line") as caught:
        read_fal_doc(broken)
    assert caught.value.line == _line(text, "</Tabs>") - 1
    outside = text.replace("</Tabs>\n", "", 1).replace("<Tabs>\n", "", 1)
    broken.write_text(outside)
    with pytest.raises(SourceError, match="a <Tab> outside <Tabs>") as caught:
        read_fal_doc(broken)
    assert caught.value.line == _line(outside, '<Tab title="Kontext Dev">')


def test_page_without_tabs_naming_two_endpoints_is_refused(tmp_path: Path) -> None:
    text = re.sub(r"</?Tabs>\n|  <Tab title=\"[^\"]+\">\n|  </Tab>\n", "", TABS.read_text())
    broken = _copy(tmp_path, TABS.name, text)
    with pytest.raises(SourceError, match="several '\\*\\*Endpoint ID:\\*\\*' lines outside tabs") as caught:
        read_fal_doc(broken)
    assert caught.value.line == _line(text, "**Endpoint ID:** `fal-ai/flux-kontext-lora`")


def test_a_page_without_an_output_schema_does_not_describe_the_output(tmp_path: Path) -> None:
    text = TABS.read_text()
    start, end = text.index("    ### Output Schema"), text.index("    ### Input Example")
    source = read_fal_doc(_copy(tmp_path, TABS.name, text[:start] + text[end:]))
    assert source.output_fields is None
