"""What a batch would cost: each job's price from the spec's stated per-image price times its ``num_images``."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from .manifest import BatchJob

__all__ = ["CostEstimate", "estimate_cost", "job_cost"]


@dataclass(frozen=True)
class CostEstimate:
    """What a set of jobs would cost, from the per-image prices the spec states (``price_usd_per_image`` of its
    ``x-fal-endpoint``, only where a fal page states one: docs/maintaining.md, "Endpoints, schemas and who states
    what").

    Attributes:
        usd: The total of the jobs whose price is known.
        images: Images asked for.
        unpriced: Endpoints without a stated price (their jobs are not in ``usd``).
    """

    usd: float
    images: int
    unpriced: tuple[str, ...]

    @property
    def known(self) -> bool:
        """Whether every job's price is stated."""
        return not self.unpriced

    def __str__(self) -> str:
        if not self.images:
            return "$0.00 (nothing to submit)"
        if not self.unpriced:
            return f"${self.usd:.2f} for {self.images} image(s)"
        known = f"${self.usd:.2f} for the priced jobs, " if self.usd else ""
        return f"{known}unknown for {', '.join(self.unpriced)} (no price stated in the spec)"


def job_cost(job: BatchJob) -> float | None:
    """A job's price in USD (``price_usd_per_image`` x ``num_images``), or None when the spec states no price."""
    price = job.endpoint.price_usd_per_image
    return None if price is None else price * job.num_images


def estimate_cost(jobs: Sequence[BatchJob]) -> CostEstimate:
    """The estimated cost of submitting ``jobs``."""
    usd, images, unpriced = 0.0, 0, dict[str, None]()
    for job in jobs:
        images += job.num_images
        cost = job_cost(job)
        if cost is None:
            unpriced[job.endpoint.id] = None
        else:
            usd += cost
    return CostEstimate(round(usd, 6), images, tuple(unpriced))
