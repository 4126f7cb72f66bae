"""Shared paths and copies of the real sources for the spec pipeline tests."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SOURCES = ROOT / "specs" / "sources"
OVERRIDES = ROOT / "overrides"
SPEC = ROOT / "specs" / "openapi.yaml"

APIFOX_MAX = SOURCES / "flux-pro-kontext-max__chainhub.apifox.md"
APIFOX_PRO = SOURCES / "flux-pro-kontext__chainhub.apifox.md"
FAL_DOC = SOURCES / "flux-pro-kontext-multi__fal.fal-doc.md"
PAGE = SOURCES / "flux-pro-kontext-max-multi__kkiai.page.txt"


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    """A scratch copy of specs/sources and overrides/, to break or extend without touching the repo."""
    shutil.copytree(SOURCES, tmp_path / "sources")
    shutil.copytree(OVERRIDES, tmp_path / "overrides")
    return tmp_path


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    """A scratch copy of what `make` reads and writes (specs/, overrides/, generated/), to run it on."""
    root = tmp_path / "repo"
    ignore = shutil.ignore_patterns("__pycache__")
    for part in ("specs", "overrides", "generated"):
        shutil.copytree(ROOT / part, root / part, ignore=ignore)
    return root


def add_aspect_ratio(sources: Path, value: str) -> None:
    """Add an aspect ratio to every fal page in `sources` (fal lists the same values on each)."""
    pages = sorted(sources.glob("*.fal-doc.md"))
    assert pages
    for page in pages:
        text = page.read_text()
        assert "`9:16`, `9:21`" in text, page
        page.write_text(text.replace("`9:16`, `9:21`", f"`9:16`, `9:21`, `{value}`", 1))
