"""Scenario 4: seconds for the pipeline to normalise and regenerate after a source change."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from .model import Plot, ScenarioResult, median

ROOT = Path(__file__).resolve().parent.parent
METHOD = (
    "In a scratch copy of specs/sources, one enum value is added to fal's documentation page (so that both the spec "
    "and the generated models really change); then the normaliser and the generator run as `make` runs them "
    "(`python -m normaliser`, then `scripts/generate_client.py`), each timed as a whole process, interpreter "
    "start-up included. Medians of {runs} runs."
)


def _timed(command: list[str], env: dict[str, str]) -> float:
    started = time.perf_counter()
    subprocess.run(command, cwd=ROOT, env=env, check=True, capture_output=True)
    return time.perf_counter() - started


def run(*, smoke: bool) -> ScenarioResult:
    """Time normalise and regenerate after a source change."""
    repeats = 1 if smoke else 5
    env = {**os.environ, "PYTHONPATH": str(ROOT / "scripts")}
    normalise: list[float] = []
    generate: list[float] = []
    for attempt in range(repeats):
        with tempfile.TemporaryDirectory(prefix="bench-pipeline-") as scratch:
            work = Path(scratch)
            shutil.copytree(ROOT / "specs" / "sources", work / "sources")
            # fal lists the same aspect ratios on each of its pages: the value is added to all of them.
            for doc in (work / "sources").glob("*.fal-doc.md"):
                doc.write_text(doc.read_text().replace("`9:16`, `9:21`", f"`9:16`, `9:21`, `{attempt + 5}:4`", 1))
            spec = work / "openapi.yaml"
            normalise.append(
                _timed(
                    [sys.executable, "-m", "normaliser", "--sources", str(work / "sources"),
                     "--overrides", str(ROOT / "overrides"), "--out", str(spec)],
                    env,
                )
            )  # fmt: skip
            generate.append(
                _timed(
                    [
                        sys.executable,
                        str(ROOT / "scripts" / "generate_client.py"),
                        "--spec",
                        str(spec),
                        "--out",
                        str(work / "generated"),
                    ],
                    env,
                )
            )
    total = [n + g for n, g in zip(normalise, generate, strict=True)]
    return ScenarioResult(
        key="pipeline",
        title="4. The pipeline: a source change to a regenerated client",
        method=METHOD.format(runs=repeats),
        columns=["step", "median s", "min s", "max s"],
        rows=[
            ["normalise (python -m normaliser)", median(normalise), min(normalise), max(normalise)],
            ["regenerate (openapi-python-client + ruff)", median(generate), min(generate), max(generate)],
            ["both", median(total), min(total), max(total)],
        ],
        plots=[
            Plot(
                "bench-pipeline.png",
                "Source change to regenerated client (median seconds)",
                "seconds",
                {"normalise": median(normalise), "regenerate": median(generate)},
            )
        ],
        targets=[],
        data={"normalise_s": normalise, "generate_s": generate},
    )
