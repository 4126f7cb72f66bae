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
from fal_kontext import AsyncKontext, Kontext

kontext = Kontext("key", base_url="http://127.0.0.1:9")
akontext = AsyncKontext("key", base_url="http://127.0.0.1:9")
"""


def _enum(field: str, schema: str = "KontextInput") -> list[str]:
    document: dict[str, Any] = yaml.safe_load(SPEC.read_text(encoding="utf-8"))
    return [str(value) for value in document["components"]["schemas"][schema]["properties"][field]["enum"]]


def _tiers() -> list[str]:
    document: dict[str, Any] = yaml.safe_load(SPEC.read_text(encoding="utf-8"))
    return sorted({op["post"]["x-fal-endpoint"]["tier"] for op in document["paths"].values() if "post" in op})


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
    ratio, tier, fmt = _enum("aspect_ratio")[0], _tiers()[-1], _enum("output_format")[-1]
    calls = f'kontext.edit("a prompt", image="x.png", model="{tier}", aspect_ratio="{ratio}", num_images=2, output_format="{fmt}")\n'
    calls += f'kontext.edit("a prompt", images=["a.png", "b.png"], model="{tier}", aspect_ratio="{ratio}")\n'
    calls += f'kontext.generate("a prompt", aspect_ratio="{ratio}", seed=1)\n'
    calls += f'akontext.generate("a prompt", model="{tier}", aspect_ratio="{ratio}")\n'
    done = _mypy(tmp_path, calls)
    assert done.returncode == 0, done.stdout + done.stderr


def test_mypy_strict_refuses_values_the_spec_does_not_allow(tmp_path: Path) -> None:
    bad_ratio = "+".join(_enum("aspect_ratio"))  # no value of the enum
    bad_tier = "-".join(_tiers()) + "x"
    calls = f'kontext.edit("a prompt", image="x.png", aspect_ratio="{bad_ratio}")\n'
    calls += f'kontext.edit("a prompt", image="x.png", model="{bad_tier}")\n'
    calls += 'kontext.edit("a prompt", image="x.png", num_images="two")\n'
    calls += 'kontext.edit("a prompt", image="x.png", image_urls=["a"])\n'
    calls += f'kontext.generate("a prompt", aspect_ratio="{bad_ratio}")\n'
    done = _mypy(tmp_path, calls)
    assert done.returncode == 1
    errors = [line for line in done.stdout.splitlines() if ": error:" in line]
    by_line = {int(line.split(":")[1]) for line in errors}
    first = USER_SCRIPT.count("\n") + 1
    assert by_line == set(range(first, first + 5)), done.stdout  # each bad call, and nothing else, is refused


def test_options_follow_the_spec() -> None:
    document: dict[str, Any] = yaml.safe_load(SPEC.read_text(encoding="utf-8"))
    text = render_options(document)
    assert "class KontextTextToImageInputOptions(TypedDict, total=False):" in text
    assert "    prompt:" not in text and "    image_url:" not in text  # required fields are the verbs' own
    changed = copy.deepcopy(document)
    changed["components"]["schemas"]["KontextInput"]["properties"]["aspect_ratio"]["enum"].append("5:4")
    changed["paths"]["/fal-ai/flux-pro/kontext"]["post"]["x-fal-endpoint"]["tier"] = "ultra"
    text = render_options(changed)
    assert "'9:21', '5:4']" in text
    assert "Tier = Literal['max', 'pro', 'ultra']" in text
    assert 'image: _Image, model: Literal["ultra"], timeout' in text  # the verbs gain the tier's overload


def test_the_verbs_keywords_are_the_implementations() -> None:
    """The generated overloads repeat the client's own keywords (scripts/typed_options.py, VERB_KEYWORDS): they must
    be exactly those the implementation takes apart from the endpoint's input fields, with its default tier."""
    from typed_options import DEFAULT_TIER as TYPED_DEFAULT
    from typed_options import VERB_KEYWORDS

    from fal_kontext.base import DEFAULT_TIER
    from fal_kontext.protocol import verbs

    assert DEFAULT_TIER == TYPED_DEFAULT
    assert tuple(name for name, _ in VERB_KEYWORDS) == verbs.PROMPTED_KEYWORDS
    call = verbs.prompted({**dict.fromkeys(verbs.PROMPTED_KEYWORDS, 1), "seed": 7})
    assert (call.model, call.timeout, dict(call.options)) == (DEFAULT_TIER, 1, {"seed": 7})
    assert set(call.submit_options) | {"timeout", "on_update"} == set(verbs.PROMPTED_KEYWORDS)
