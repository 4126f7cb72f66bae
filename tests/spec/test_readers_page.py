"""An aggregator's rendered page in both table renderings, POST on one line or two, and its strictness."""

from __future__ import annotations

from pathlib import Path

import pytest
from normaliser.model import NOT_STATED, Format, SourceError
from normaliser.rendered_page import is_fal_host, read_rendered_page

from .conftest import PAGE

FIXTURES = Path(__file__).parent / "fixtures"
PIPES = FIXTURES / "flux-pro-kontext-text-to-image__kkiai.page.txt"  # `|` columns, POST on its own line


def _line(text: str, needle: str) -> int:
    return text[: text.index(needle)].count("\n") + 1


def _write(tmp_path: Path, text: str, name: str = PIPES.name) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_pipe_table_and_post_on_its_own_line() -> None:
    source = read_rendered_page(PIPES)
    text = PIPES.read_text()
    assert (source.format, source.endpoint) == (Format.PAGE, "/fal-ai/flux-pro/kontext/text-to-image")
    assert source.servers == [{"url": "https://www.kkiai.com", "description": "Aggregator (rendered page)"}]
    assert (
        source.docs_url == "https://fal.ai/models/fal-ai/flux-pro/kontext/text-to-image"
    )  # "documentation" in lower case
    assert source.auth_scheme == "Bearer"
    assert source.output_fields is None  # the page shows only the submit
    fields = {f.name: f for f in source.input_fields}
    assert list(fields) == [
        "prompt", "guidance_scale", "num_images", "output_format", "safety_tolerance", "aspect_ratio", "image_urls"
    ]  # fmt: skip
    assert fields["guidance_scale"].line == _line(text, "guidance_scale |")
    assert (fields["guidance_scale"].default, fields["guidance_scale"].minimum, fields["guidance_scale"].maximum) == (
        3.5,
        1,
        20,
    )
    assert (fields["output_format"].default, fields["output_format"].enum) == ("jpeg", ["default", "png", "jpeg"])
    assert fields["aspect_ratio"].default == "1:1"  # quoted: the whole value, not `1`
    assert fields["aspect_ratio"].enum == ["21:9", "16:9", "4:3", "1:1", "3:4", "9:16"]
    assert fields["safety_tolerance"].default == "2"
    assert fields["prompt"].description is None and fields["prompt"].default is NOT_STATED
    assert fields["image_urls"].schema == {"type": "array", "items": {"type": "string"}}  # a row without its last cell
    assert fields["prompt"].required and not fields["image_urls"].required
    assert source.request_examples == [
        {"prompt": "A tiger's eye, close up", "guidance_scale": 3.5, "aspect_ratio": "1:1"}
    ]
    assert source.submit_examples[0]["status"] == "IN_QUEUE"


def test_glued_table_with_post_on_its_own_line_and_lower_case_documentation(tmp_path: Path) -> None:
    text = (
        PAGE.read_text()
        .replace("POST https://www.kkiai.com/", "POST\nhttps://www.kkiai.com/", 1)
        .replace("Official Documentation:", "Official documentation:", 1)
    )
    source = read_rendered_page(_write(tmp_path, text, PAGE.name))
    assert source.endpoint == "/fal-ai/flux-pro/kontext/max/multi"
    assert source.servers[0]["url"] == "https://www.kkiai.com"
    assert source.docs_url == "https://fal.ai/models/fal-ai/flux-pro/kontext/max/multi"
    assert [f.name for f in source.input_fields][:2] == ["prompt", "guidance_scale"]


def test_fal_queue_host_is_never_an_aggregator_server(tmp_path: Path) -> None:
    text = PIPES.read_text().replace("https://www.kkiai.com/fal-ai", "https://queue.fal.run/fal-ai", 1)
    source = read_rendered_page(_write(tmp_path, text))
    assert source.endpoint == "/fal-ai/flux-pro/kontext/text-to-image"
    assert source.servers == []
    assert [is_fal_host(h) for h in ("queue.fal.run", "fal.run", "fal.ai", "www.kkiai.com", "notfal.run")] == [
        True,
        True,
        True,
        False,
        False,
    ]


@pytest.mark.parametrize(
    ("old", "new", "message", "at"),
    [
        ("num_images | integer |", "num_images | int32 |", "type 'int32' is not one this reader knows", "num_images |"),
        ("num_images | integer | Optional |", "num_images | integer", "fewer than 3 columns", "num_images |"),
        ("num_images | integer | Optional", "num_images | integer | Maybe", "neither Required nor Optional", "num_images"),
        ("num_images | integer |", "Num images | integer |", "'Num images' is not a field name", "num_images |"),
        ("num_images | integer |", "prompt | integer |", "prompt: listed twice", "num_images |"),
        ("Default: 1 Range: 1-4", "Default: one Range: 1-4", "num_images: 'Default: one Range: 1-4' states a default", "num_images |"),
        ("Range: 1-4", "Range: 1-4-8", "states a range that cannot be read", "num_images |"),
        ('Default: "jpeg" Supported: default', 'Default: "webp" Supported: default', "'webp' is not among", "output_format |"),
        ("|---|---|---|---|\n", "", "not followed by its '\\|---\\|---\\|---\\|---\\|' rule", "| Parameter |"),
        ("Official documentation: https://fal.ai/", "Official documentation: https://kkiai.com/", "is not fal's", "Official"),
        ("/fal-ai/flux-pro/kontext/text-to-image\nPOST", "/fal-ai/flux-pro/kontext\nPOST", "titled /fal-ai/flux-pro/kontext but", "/fal-ai/flux-pro/kontext/text-to-image\n"),
        ("Request Parameters", "POST https://www.kkiai.com/fal-ai/flux-pro/kontext", "a second POST URL", "Request Parameters"),
    ],
)  # fmt: skip
def test_broken_page_names_file_line_and_problem(tmp_path: Path, old: str, new: str, message: str, at: str) -> None:
    text = PIPES.read_text()
    assert old in text
    broken = _write(tmp_path, text.replace(old, new, 1))
    with pytest.raises(SourceError, match=message) as caught:
        read_rendered_page(broken)
    assert (caught.value.path, caught.value.line) == (str(broken), _line(text, at))


def test_page_without_table_rows_or_post_is_refused(tmp_path: Path) -> None:
    text = PIPES.read_text()
    start, end = text.index("prompt | string"), text.index("Request Example")
    broken = _write(tmp_path, text[:start] + text[end:])
    with pytest.raises(SourceError, match="the parameter table has no rows") as caught:
        read_rendered_page(broken)
    assert caught.value.line == _line(text, "| Parameter |")
    broken = _write(tmp_path, text.replace("| Parameter | Type | Required | Description |\n|---|---|---|---|\n", ""))
    with pytest.raises(SourceError, match="no parameter table"):
        read_rendered_page(broken)
    broken = _write(tmp_path, text.replace("POST\n", "GET\n", 1))
    with pytest.raises(SourceError, match="no 'POST https://host/path' line"):
        read_rendered_page(broken)
