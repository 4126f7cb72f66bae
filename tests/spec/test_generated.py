"""The generated client: headers, readable enums, and a source change flowing all the way through.

The golden record (regenerate and compare) and mypy --strict are drift checks: contracts/test_drift.py.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import generate_client
from normaliser.pipeline import normalise, write_if_changed

from tests.support.emulator import RunningEmulator

from .conftest import APIFOX_PRO, ROOT, add_aspect_ratio

GENERATED = ROOT / "generated" / "fal_kontext_api"


def test_generated_files_carry_the_do_not_edit_header_and_readable_enums() -> None:
    for path in GENERATED.rglob("*.py"):
        assert path.read_text().startswith(generate_client.HEADER), path
    enums = "".join(p.read_text() for p in (GENERATED / "models").glob("*.py"))
    assert "VALUE_" not in enums
    assert 'RATIO_16_9 = "16:9"' in enums and 'LEVEL_2 = "2"' in enums


def test_a_source_change_flows_into_the_spec_and_the_models(workspace: Path) -> None:
    sources = workspace / "sources"
    add_aspect_ratio(sources, "5:4")
    apifox = sources / APIFOX_PRO.name
    text = apifox.read_text()
    anchor = "                image_url:\n"
    new_field = "                output_quality:\n                  type: integer\n                  description: JPEG quality, range: 1-100\n"
    apifox.write_text(text.replace(anchor, new_field + anchor, 1))

    result = normalise(sources, workspace / "overrides")
    schemas = result.document["components"]["schemas"]
    ratio = schemas["KontextMultiInput"]["properties"]["aspect_ratio"]  # fal's pages describe the multi-image input
    assert (ratio["enum"][-1], ratio["x-enum-varnames"][-1]) == ("5:4", "RATIO_5_4")
    assert "5:4" not in schemas["KontextInput"]["properties"]["aspect_ratio"]["enum"]  # another endpoint's input
    quality = {"type": "integer", "description": "JPEG quality, range: 1-100", "minimum": 1, "maximum": 100}
    assert schemas["KontextInput"]["properties"]["output_quality"] == quality
    # Stated for the single-image endpoint only: it does not leak onto the other families.
    assert "output_quality" not in schemas["KontextMultiInput"]["properties"]
    assert "output_quality" not in schemas["KontextTextToImageInput"]["properties"]

    spec = workspace / "openapi.yaml"
    write_if_changed(spec, result.text)
    package = workspace / "client"
    generate_client.generate(spec, package)
    assert 'RATIO_5_4 = "5:4"' in (package / "models" / "kontext_multi_input_aspect_ratio.py").read_text()
    assert "output_quality: int | Unset = UNSET" in (package / "models" / "kontext_input.py").read_text()
    assert "output_quality" not in (package / "models" / "kontext_multi_input.py").read_text()


def test_generated_md_runs_as_written(fal_emulator: RunningEmulator) -> None:
    docs = (ROOT / "docs" / "generated.md").read_text()
    block = re.search(r"```python\n(.*?)```", docs, re.DOTALL)
    assert block is not None
    env = {**os.environ, "FAL_KEY": fal_emulator.key, "FAL_KONTEXT_BASE_URL": fal_emulator.base_url}
    done = subprocess.run(
        [sys.executable, "-c", block[1]], env=env, capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    assert fal_emulator.submit_count() == 1
    assert re.search(r"IN_QUEUE|IN_PROGRESS|COMPLETED", done.stdout)
