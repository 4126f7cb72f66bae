"""What a benchmark scenario reports: plain data the report renders and `benchmarks.json` stores."""

from __future__ import annotations

import statistics
from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass
class RunInfo:
    """About the run as a whole: smoke or full size, how long it took, and lines about it (e.g. a shared machine)."""

    smoke: bool
    seconds: float
    notes: list[str] = field(default_factory=list)


@dataclass
class Target:
    """A target from the issue, what was measured against it, and why it was missed if it was."""

    name: str
    wanted: str
    measured: str
    met: bool
    why_missed: str = ""


@dataclass
class Plot:
    """A bar chart: one bar per label."""

    file_name: str
    title: str
    y_label: str
    bars: dict[str, float]


@dataclass
class ScenarioResult:
    """One scenario's outcome: a method paragraph, a table, targets and plots."""

    key: str
    title: str
    method: str
    columns: list[str]
    rows: list[list[Any]]
    targets: list[Target] = field(default_factory=list)
    plots: list[Plot] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    data: dict[str, Any] = field(default_factory=dict)
    # When it ran (UTC), set by `python -m bench`; "" for a scenario kept from a report older than this field.
    ran_at: str = ""
    # Where it ran (bench/machine.py `describe_machine`), set by `python -m bench`; a section kept from a report
    # older than this field gets that report's machine. Sections kept by `--only` may have run on another machine
    # than the run that wrote the report.
    machine: dict[str, Any] = field(default_factory=dict)

    def as_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ScenarioResult:
        """The inverse of `as_json` (a scenario kept from an earlier report)."""
        fields = dict(data)
        fields["targets"] = [Target(**target) for target in data.get("targets", [])]
        fields["plots"] = [Plot(**plot) for plot in data.get("plots", [])]
        return cls(**fields)


def percentile(values: list[float], fraction: float) -> float:
    """The `fraction` quantile (0..1) by linear interpolation; NaN for no values."""
    if not values:
        return float("nan")
    if len(values) == 1:
        return values[0]
    ordered = sorted(values)
    position = fraction * (len(ordered) - 1)
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")
