"""The API change report: the classifier on edited copies of the spec, and `make` on edited copies of the tree."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import regenerate
import yaml
from normaliser.changes import compare, entry, latest_digest, with_entry
from regenerate import Tree

from .conftest import APIFOX_PRO, FAL_DOC, SPEC, add_aspect_ratio

SUBMIT = "POST /fal-ai/flux-pro/kontext"
# The endpoint of fal's page in specs/sources (FAL_DOC), whose facts the tree tests edit.
MULTI = "POST /fal-ai/flux-pro/kontext/multi"


@pytest.fixture(scope="module")
def spec() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(SPEC.read_text(encoding="utf-8"))
    return loaded


def _said(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    return [str(c) for c in compare(old, new)]


def test_the_same_spec_has_no_changes(spec: dict[str, Any]) -> None:
    assert compare(spec, copy.deepcopy(spec)) == []


def test_request_changes_are_classified(spec: dict[str, Any]) -> None:
    new = copy.deepcopy(spec)
    schemas = new["components"]["schemas"]
    single = schemas["KontextInput"]
    single["properties"]["aspect_ratio"]["enum"].append("5:4")
    single["properties"]["output_format"]["enum"][0] = "jpg"
    single["properties"]["output_format"]["default"] = "jpg"
    single["properties"]["num_images"]["maximum"] = 2
    single["properties"]["guidance_scale"]["minimum"] = 0
    del single["properties"]["enhance_prompt"]
    single["properties"]["output_quality"] = {"type": "integer"}
    single["properties"]["mask_url"] = {"type": "string"}
    single["required"].append("mask_url")
    single["required"].remove("prompt")
    single["properties"]["seed"]["type"] = "string"
    single["properties"]["sync_mode"]["default"] = True
    said = [s for s in _said(spec, new) if s.split(": ", 1)[1].startswith(f"{SUBMIT} request")]
    where = f"{SUBMIT} request"
    assert said == [
        f"additive: {where} `prompt`: now optional",
        f"additive: {where} `aspect_ratio`: enum value '5:4' added",
        f"breaking: {where} `num_images`: maximum 4 -> 2 (range narrowed)",
        f"breaking: {where} `output_format`: enum value 'jpeg' removed (renamed?)",
        f"additive: {where} `output_format`: enum value 'jpg' added",
        f"breaking: {where} `output_format`: default 'jpeg' -> 'jpg'",
        f"breaking: {where} `sync_mode`: default False -> True",
        f"additive: {where} `guidance_scale`: minimum 1 -> 0 (range widened)",
        f"breaking: {where} `seed`: type 'integer' -> 'string'",
        f"breaking: {where} `enhance_prompt`: field removed",
        f"additive: {where} `output_quality`: field added (optional)",
        f"breaking: {where} `mask_url`: field added (required)",
    ]


def test_response_changes_are_classified_from_the_readers_side(spec: dict[str, Any]) -> None:
    new = copy.deepcopy(spec)
    schemas = new["components"]["schemas"]
    schemas["QueueStatusValue"]["enum"].append("FAILED")
    output = schemas["KontextOutput"]
    output["required"].remove("seed")
    output["properties"]["nsfw_scores"] = {"type": "array", "items": {"type": "number"}}
    del schemas["Image"]["properties"]["file_name"]
    said = _said(spec, new)
    status = "GET /{owner}/{app}/requests/{request_id}/status response 200"
    result = f"{SUBMIT} output"
    assert f"breaking: {status} `status`: enum value 'FAILED' added" in said
    assert f"breaking: {result} `seed`: now optional" in said
    assert f"additive: {result} `nsfw_scores`: field added (optional)" in said
    assert f"breaking: {result} `images[].file_name`: field removed" in said
    assert not any(c.startswith(f"breaking: {MULTI} output") for c in said)  # its output is another schema
    single = schemas["KontextInput"]["properties"]
    single["prompt"]["enum"] = ["a cat"]
    assert f"breaking: {SUBMIT} request `prompt`: now limited to the values ['a cat']" in _said(spec, new)
    del single["prompt"]["enum"]
    schemas["QueueStatusValue"].pop("enum")
    assert (
        f"breaking: {status} `status`: no longer limited to the values ['IN_QUEUE', 'IN_PROGRESS', 'COMPLETED']"
        in _said(spec, new)
    )


def test_operations_and_endpoint_metadata(spec: dict[str, Any]) -> None:
    new = copy.deepcopy(spec)
    paths = new["paths"]
    paths["/fal-ai/flux-pro/kontext/new"] = copy.deepcopy(paths["/fal-ai/flux-pro/kontext"])
    paths["/fal-ai/flux-pro/kontext/new"]["post"]["operationId"] = "submit_flux_pro_kontext_new"
    del paths["/fal-ai/flux-pro/kontext/max/multi"]
    paths["/fal-ai/flux-pro/kontext"]["post"]["x-fal-endpoint"]["tier"] = "ultra"
    said = _said(spec, new)
    assert (
        "breaking: POST /fal-ai/flux-pro/kontext/max/multi: operation 'submit_flux_pro_kontext_max_multi' removed"
        in said
    )
    assert "additive: POST /fal-ai/flux-pro/kontext/new: operation 'submit_flux_pro_kontext_new' added" in said
    assert f"breaking: {SUBMIT}: x-fal-endpoint.tier 'pro' -> 'ultra'" in said
    new["x-fal-sync"]["server"] = "https://run.example"
    assert "breaking: (document): x-fal-sync changed" in _said(spec, new)
    del new["x-fal-sync"]
    assert "breaking: (document): x-fal-sync removed" in _said(spec, new)


def test_changelog_entries_stack_newest_first(spec: dict[str, Any]) -> None:
    first = with_entry(None, entry(None, spec, "a" * 64, compare(None, spec), ""))
    assert first.startswith("# Changes to the API") and latest_digest(first) == "a" * 16
    assert f"- **additive** {SUBMIT}: operation 'submit_flux_pro_kontext' added" in first
    second = with_entry(first, entry(spec, spec, "b" * 64, [], ""))
    assert latest_digest(second) == "b" * 16
    assert second.index("b" * 16) < second.index("a" * 16)
    assert "wording or examples only" in second
    assert second.count("# Changes to the API") == 1


# --- `make` on a copy of the tree --------------------------------------------------------------------


def _make(root: Path, **options: Any) -> int:
    return regenerate.regenerate(Tree(root), verify=False, **options)


def _edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text, (path, old)
    path.write_text(text.replace(old, new, 1))


def _pages(root: Path) -> list[Path]:
    return sorted((root / "specs" / "sources").glob("*.fal-doc.md"))


def test_additive_changes_pass_and_are_logged(tree: Path, capsys: pytest.CaptureFixture[str]) -> None:
    add_aspect_ratio(tree / "specs" / "sources", "5:4")  # fal's pages: the multi-image and text-to-image endpoints
    apifox = tree / "specs" / "sources" / APIFOX_PRO.name
    _edit(
        apifox,
        "                image_url:\n",
        "                output_quality:\n                  type: integer\n                image_url:\n",
    )
    assert _make(tree) == 0
    out = capsys.readouterr().out
    assert f"additive: {MULTI} request `aspect_ratio`: enum value '5:4' added" in out
    assert f"{SUBMIT} request `aspect_ratio`" not in out  # its input is its own, from its own sources
    assert f"additive: {SUBMIT} request `output_quality`: field added (optional)" in out
    assert "breaking" not in out.split("== API changes", 1)[1].split("\n", 1)[1].split("==", 1)[0]
    changelog = (tree / "specs" / "CHANGELOG.md").read_text()
    assert f"- **additive** {SUBMIT} request `output_quality`: field added (optional)" in changelog
    before = changelog
    assert _make(tree) == 0  # a second run changes nothing
    assert (tree / "specs" / "CHANGELOG.md").read_text() == before
    assert _make(tree, check=True) == 0


@pytest.mark.parametrize(
    ("change", "named"),
    [
        ("field removed", "`enhance_prompt`: field removed"),
        ("range narrowed", "`num_images`: maximum 4 -> 2 (range narrowed)"),
        ("enum value renamed", "`output_format`: enum value 'jpeg' removed (renamed?)"),
    ],
)
def test_breaking_changes_stop_make_until_acknowledged(
    tree: Path, capsys: pytest.CaptureFixture[str], change: str, named: str
) -> None:
    for page in _pages(tree):
        if change == "field removed":
            text = page.read_text()
            start = text.index('<ParamField body="enhance_prompt"')
            end = text.index("</ParamField>", start) + len("</ParamField>")
            page.write_text(text[:start] + text[end:])
        elif change == "range narrowed":
            _edit(page, "Range: `1` to `4`", "Range: `1` to `2`")
        else:
            _edit(page, 'type="OutputFormatEnum" default="jpeg"', 'type="OutputFormatEnum" default="jpg"')
            _edit(page, 'Default value: `"jpeg"`', 'Default value: `"jpg"`')
            _edit(page, "Possible values: `jpeg`, `png`", "Possible values: `jpg`, `png`")
    if change == "enum value renamed":
        for source in (tree / "specs" / "sources").glob("*.apifox.md"):
            source.write_text(source.read_text().replace("jpeg", "jpg"))
        for source in (tree / "specs" / "sources").glob("*.page.txt"):
            source.write_text(source.read_text().replace("jpeg", "jpg"))
    before = {p: p.read_bytes() for p in (tree / "specs").glob("*") if p.is_file()}

    assert _make(tree) == 2
    captured = capsys.readouterr()
    assert f"breaking: {MULTI} request {named}" in captured.out
    assert "nothing written" in captured.err and "ACK_BREAKING=1" in captured.err
    assert {p: p.read_bytes() for p in (tree / "specs").glob("*") if p.is_file()} == before

    assert _make(tree, ack_breaking=True) == 0
    changelog = (tree / "specs" / "CHANGELOG.md").read_text()
    assert f"- **breaking** {MULTI} request {named}" in changelog
    assert "acknowledged with ACK_BREAKING=1" in changelog


def test_raising_the_major_version_acknowledges(tree: Path) -> None:
    for page in _pages(tree):
        _edit(page, "Range: `1` to `4`", "Range: `1` to `2`")
    assert _make(tree) == 2
    _edit(
        tree / "overrides" / "10-document.overlay.yaml",
        'version: "2.0.0"\n      description:',
        'version: "3.0.0"\n      description:',
    )
    assert _make(tree) == 0
    changelog = (tree / "specs" / "CHANGELOG.md").read_text()
    assert "## 2.0.0 -> 3.0.0" in changelog and "acknowledged by raising the major version" in changelog


@pytest.mark.parametrize(
    ("old", "new", "problem"),
    [
        ('<ParamField body="seed"', '<ParamFeild body="seed"', "unknown tag <ParamFeild>"),
        ('<ParamField body="seed" type="integer">', '<ParamField body="seed type="integer">', "a quote is missing"),
        ("Possible values: `jpeg`, `png`", "Possible values: `jpeg`, `png`, `png`", "listed twice"),
    ],
)
def test_a_broken_source_is_an_error_with_file_and_line(
    tree: Path, capsys: pytest.CaptureFixture[str], old: str, new: str, problem: str
) -> None:
    page = tree / "specs" / "sources" / FAL_DOC.name
    text = page.read_text()
    _edit(page, old, new)
    before = {str(p): p.read_bytes() for p in tree.rglob("*") if p.is_file() and p != page}
    assert _make(tree) == 1
    err = capsys.readouterr().err
    line = text[: text.index(old)].count("\n") + 1
    assert f"{page}:{line}: " in err and problem in err and "nothing written" in err
    assert {str(p): p.read_bytes() for p in tree.rglob("*") if p.is_file() and p != page} == before
