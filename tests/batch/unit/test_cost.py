"""The cost estimate (batch/cost.py): stated prices times images, "unknown" otherwise."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from fal_kontext.batch import estimate_cost, read_manifest
from tests.support.batches import write_manifest


def test_the_estimate_uses_stated_prices_and_says_unknown_otherwise(tmp_path: Path) -> None:
    jobs = read_manifest(write_manifest(tmp_path, 3, extra={"num_images": 2}))
    unpriced = [replace(job, endpoint=replace(job.endpoint, price_usd_per_image=None)) for job in jobs]
    assert "unknown" in str(estimate_cost(unpriced)) and not estimate_cost(unpriced).known
    priced = [replace(job, endpoint=replace(job.endpoint, price_usd_per_image=0.04)) for job in jobs]
    assert estimate_cost(priced).usd == pytest.approx(0.24) and str(estimate_cost(priced)) == "$0.24 for 6 image(s)"
