"""The manifest (batch/manifest.py): each line's endpoint, every problem before anything is sent, the default tier."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest
from PIL import Image as PILImage

from fal_kontext.batch import ManifestError, choose_endpoint_spec, read_manifest, tier_order
from fal_kontext.errors import InvalidInputError
from fal_kontext.spec import endpoint_specs, resolved_schema


def test_a_manifest_line_picks_its_endpoint_and_is_checked_against_the_spec(tmp_path: Path) -> None:
    PILImage.new("RGB", (8, 8)).save(tmp_path / "a.png")
    specs = endpoint_specs()
    multi = next(spec for spec in specs if spec.family == "multi-edit")
    lines = [
        {"prompt": "one", "image": "a.png"},
        {"id": "two", "prompt": "two", "images": ["a.png", "https://example.com/b.png"], "model": multi.tier},
        {"prompt": "three", "image_url": "https://example.com/c.png", "num_images": 2},
    ]
    (tmp_path / "m.jsonl").write_text("\n".join(json.dumps(line) for line in lines) + "\n\n")
    jobs = read_manifest(tmp_path / "m.jsonl")
    assert [job.id for job in jobs] == ["line-1", "two", "line-3"]
    assert jobs[1].endpoint == multi and jobs[2].num_images == 2
    assert jobs[0].input()[jobs[0].endpoint.image_field or ""].startswith("data:image/png;base64,")


def test_every_bad_line_is_reported_before_anything_is_sent(tmp_path: Path) -> None:
    first = endpoint_specs()[0]
    maximum = resolved_schema(first.input_schema)["properties"]["num_images"]["maximum"]
    lines = [
        "{not json",
        json.dumps({"prompt": "a prompt", "image": "missing.png"}),
        json.dumps({"prompt": "a prompt", "image": "https://e.com/a.png", "num_images": maximum + 1}),
        json.dumps({"id": "same", "prompt": "a prompt", "image": "https://e.com/a.png"}),
        json.dumps({"id": "same", "prompt": "a prompt", "image": "https://e.com/b.png"}),
        json.dumps({"prompt": "a prompt", "image": "https://e.com/a.png", "endpoint": "no/such"}),
        json.dumps({"prompt": "a prompt", "image": "https://e.com/a.png", "colour": "red"}),
    ]
    (tmp_path / "m.jsonl").write_text("\n".join(lines))
    with pytest.raises(ManifestError) as raised:
        read_manifest(tmp_path / "m.jsonl")
    text = str(raised.value)
    for expected in ("line 1: not JSON", "missing.png", "num_images", "also the id of line 4", "no/such", "colour"):
        assert expected in text
    assert len(raised.value.problems) == 6


def test_the_endpoint_follows_the_number_of_images_and_the_tier() -> None:
    specs = endpoint_specs()
    for spec in specs:
        images = {"edit": 1, "multi-edit": 2, "text-to-image": 0}[spec.family]
        assert choose_endpoint_spec(specs, images=images, model=spec.tier, endpoint=None) == spec
        assert choose_endpoint_spec(specs, images=images, model=None, endpoint=spec.id) == spec
    single = next(spec for spec in specs if spec.family == "edit")
    with pytest.raises(InvalidInputError, match="image"):
        choose_endpoint_spec(specs, images=2, model=None, endpoint=single.id)


def test_the_default_model_is_the_spec_s_first_tier_whatever_the_path_order() -> None:
    specs = endpoint_specs()
    first, other = tier_order()[0], tier_order()[-1]
    base = specs[0]
    later = replace(base, id="example/b/text-to-image", family="text-to-image", tier=other, image_field=None)
    earlier = replace(base, id="example/a/text-to-image", family="text-to-image", tier=first, image_field=None)
    assert choose_endpoint_spec([later, earlier], images=0) == earlier
    assert choose_endpoint_spec([later, earlier], images=0, model=other) == later
    with pytest.raises(InvalidInputError, match="endpoint"):
        choose_endpoint_spec(specs, images=1, endpoint="no/such")
