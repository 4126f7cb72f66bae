"""`make` is all or nothing: spec and client are swapped in together, or nothing changes."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import regenerate
from regenerate import Tree, publish

from .conftest import add_aspect_ratio


def _snapshot(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file() and "__pycache__" not in p.parts
    }


def _add_aspect_ratio(root: Path) -> None:
    add_aspect_ratio(root / "specs" / "sources", "5:4")


def test_a_failing_generator_changes_nothing(tree: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _add_aspect_ratio(tree)
    before = _snapshot(tree)

    def failing(spec: Path, destination: Path) -> None:
        destination.mkdir(parents=True)
        (destination / "half.py").write_text("")
        raise RuntimeError("openapi-python-client failed (1)")

    assert regenerate.regenerate(Tree(tree), verify=False, generator=failing) == 1
    assert _snapshot(tree) == before
    assert not (tree / regenerate.STAGING).exists()
    assert "nothing written" in capsys.readouterr().err


def test_a_change_swaps_in_spec_and_client_with_the_usual_mode(tree: Path) -> None:
    _add_aspect_ratio(tree)
    spec = (tree / "specs" / "openapi.yaml").read_text()
    assert regenerate.regenerate(Tree(tree), verify=False) == 0
    assert (tree / "specs" / "openapi.yaml").read_text() != spec
    assert '"5:4"' in (tree / "specs" / "openapi.yaml").read_text()
    assert (
        'RATIO_5_4 = "5:4"'
        in (tree / "generated" / "fal_kontext_api" / "models" / "kontext_multi_input_aspect_ratio.py").read_text()
    )
    mask = os.umask(0)
    os.umask(mask)
    for path in (tree / "specs" / "openapi.yaml", tree / "generated" / "fal_kontext_api" / "openapi.json"):
        assert path.stat().st_mode & 0o777 == 0o666 & ~mask, path
    assert sorted(p.name for p in (tree / "generated").iterdir()) == ["fal_kontext_api"]
    after = _snapshot(tree)
    assert regenerate.regenerate(Tree(tree), verify=False) == 0
    assert _snapshot(tree) == after
    assert regenerate.regenerate(Tree(tree), verify=False, check=True) == 0


def test_check_reports_a_stale_spec_and_writes_nothing(tree: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _add_aspect_ratio(tree)
    before = _snapshot(tree)
    assert regenerate.regenerate(Tree(tree), verify=False, check=True) == 1
    assert _snapshot(tree) == before
    err = capsys.readouterr().err
    assert "specs/openapi.yaml" in err and "generated/fal_kontext_api/models/kontext_multi_input_aspect_ratio.py" in err


def test_publish_puts_everything_back_when_a_move_fails(tmp_path: Path) -> None:
    first, second = tmp_path / "spec.yaml", tmp_path / "package"
    first.write_text("old spec")
    second.mkdir()
    (second / "a.py").write_text("old")
    staged = tmp_path / "staged"
    staged.mkdir()
    (staged / "spec.yaml").write_text("new spec")
    with pytest.raises(FileNotFoundError):
        publish([(staged / "spec.yaml", first), (staged / "missing", second)])
    assert first.read_text() == "old spec"
    assert (second / "a.py").read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["package", "spec.yaml", "staged"]


def test_a_new_endpoint_source_alone_becomes_a_typed_operation(tree: Path, capsys: pytest.CaptureFixture[str]) -> None:
    sources = tree / "specs" / "sources"
    page = (sources / "flux-pro-kontext-max-text-to-image__fal.fal-doc.md").read_text()
    invented = "fal-ai/flux-pro/kontext/ultra/text-to-image"  # an invented id: no override names it
    page = page.replace("fal-ai/flux-pro/kontext/max/text-to-image`", f"{invented}`").replace("[max]", "[ultra]")
    (sources / "flux-pro-kontext-ultra-text-to-image__fal.fal-doc.md").write_text(page)

    assert regenerate.regenerate(Tree(tree), verify=False) == 0
    out = capsys.readouterr().out
    assert f"additive: POST /{invented}: operation 'submit_flux_pro_kontext_ultra_text_to_image' added" in out
    package = tree / "generated" / "fal_kontext_api"
    assert (package / "api" / "submit" / "submit_flux_pro_kontext_ultra_text_to_image.py").exists()
    options = (package / "options.py").read_text()
    assert 'Tier = Literal["max", "pro", "ultra"]' in options
    assert f'"{invented}"' in options
    spec = (tree / "specs" / "openapi.yaml").read_text()
    assert (
        f'id: "{invented}"\n        app: "fal-ai/flux-pro"\n        family: "text-to-image"\n        tier: "ultra"'
        in spec
    )

    # With no code change, the client and the emulator of this repository serve and call it (the regenerated
    # package first on the path: both read their endpoints from its spec).
    script = f"""
from fal_kontext import Kontext
from fal_kontext_emulator import EmulatorConfig, run_emulator

with run_emulator(EmulatorConfig(run_time=0.05, queue_wait=0.01)) as emulator:
    with Kontext(emulator.key, base_url=emulator.base_url) as kontext:
        made = kontext.generate("a lighthouse at dusk", model="ultra", num_images=2)
        run = kontext.run({invented!r}, {{"prompt": "a lighthouse at dusk"}})
    calls = emulator.counters()["calls"]
print(len(made.images), len(run.images), calls.get("submit_flux_pro_kontext_ultra_text_to_image"))
"""
    env = {**os.environ, "PYTHONPATH": str(tree / "generated")}
    done = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["2", "1", "2"]
