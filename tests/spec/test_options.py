"""The typed options in the generated package: from the spec, and strict enough for mypy to refuse a bad value."""

from __future__ import annotations

import copy
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml
from typed_options import render_options

from .conftest import ROOT, SPEC

USER_SCRIPT = """
from typing import Unpack

from fal_kontext_api.options import KontextInputOptions, KontextTextToImageInputOptions, Tier


def edit(prompt: str, image: str, model: Tier = "pro", **options: Unpack[KontextInputOptions]) -> None:
    print(prompt, image, model, options)


def generate(prompt: str, model: Tier = "pro", **options: Unpack[KontextTextToImageInputOptions]) -> None:
    print(prompt, model, options)


"""


def _mypy(tmp_path: Path, calls: str) -> subprocess.CompletedProcess[str]:
    script = tmp_path / "user_script.py"
    script.write_text(USER_SCRIPT + calls)
    return subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--config-file", str(ROOT / "pyproject.toml"), str(script)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )


def test_mypy_strict_accepts_values_the_spec_allows(tmp_path: Path) -> None:
    calls = 'edit("p", "https://x/y.png", model="max", aspect_ratio="16:9", num_images=2, output_format="png")\n'
    calls += 'generate("p", aspect_ratio="1:1", safety_tolerance="2", seed=1)\n'
    done = _mypy(tmp_path, calls)
    assert done.returncode == 0, done.stdout + done.stderr


def test_mypy_strict_refuses_values_the_spec_does_not_allow(tmp_path: Path) -> None:
    calls = 'edit("p", "https://x/y.png", aspect_ratio="5:4")\n'
    calls += 'edit("p", "https://x/y.png", model="maxx")\n'
    calls += 'edit("p", "https://x/y.png", num_images="two")\n'
    calls += 'edit("p", "https://x/y.png", image_urls=["a"])\n'
    done = _mypy(tmp_path, calls)
    assert done.returncode == 1
    lines = [line for line in done.stdout.splitlines() if ": error:" in line]
    assert len(lines) == 4, done.stdout
    assert '"aspect_ratio"' in lines[0] and "'5:4'" in lines[0]
    assert '"model"' in lines[1] and "'maxx'" in lines[1]
    assert '"num_images"' in lines[2]
    assert '"image_urls"' in lines[3]


def test_options_follow_the_spec() -> None:
    document: dict[str, Any] = yaml.safe_load(SPEC.read_text(encoding="utf-8"))
    text = render_options(document)
    assert "class KontextTextToImageInputOptions(TypedDict, total=False):" in text
    assert "    prompt:" not in text and "    image_url:" not in text  # required fields are the verbs' own
    changed = copy.deepcopy(document)
    changed["components"]["schemas"]["AspectRatio"]["enum"].append("5:4")
    changed["paths"]["/fal-ai/flux-pro/kontext"]["post"]["x-fal-endpoint"]["tier"] = "ultra"
    text = render_options(changed)
    assert "'9:21', '5:4']" in text
    assert "Tier = Literal['max', 'pro', 'ultra']" in text
