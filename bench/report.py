"""Render benchmark results: `benchmarks.md` (method, machine, tables, targets), `benchmarks.json`, PNG plots.

Every file is written to a temporary name and renamed into place, so an interrupted run leaves the
previous report whole.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from pathlib import Path
from typing import Any

from .model import Plot, RunInfo, ScenarioResult


def _usual_mode() -> int:
    """0666 less the umask: mkstemp's 0600 would make the committed report private."""
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


def _atomic_write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.chmod(temporary, _usual_mode())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def _cell(value: Any) -> str:
    if isinstance(value, float):
        if math.isnan(value):
            return "n/a"
        return f"{value:,.1f}" if abs(value) >= 10 else f"{value:.2f}"
    return str(value)


def render_plot(plot: Plot, path: Path) -> None:
    """Draw one bar chart as PNG."""
    import matplotlib

    matplotlib.use("Agg")  # no display on CI or on this machine
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(7, 3.2), dpi=100)
    labels = list(plot.bars)
    values = [0.0 if math.isnan(v) else v for v in plot.bars.values()]
    bars = axes.barh(labels, values, color="#4c72b0")
    axes.bar_label(bars, labels=[_cell(v) for v in plot.bars.values()], padding=3, fontsize=8)
    axes.set_xlabel(plot.y_label)
    axes.set_title(plot.title, fontsize=10)
    axes.invert_yaxis()
    axes.margins(x=0.2)
    figure.tight_layout()
    fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".png")
    os.close(fd)
    try:
        figure.savefig(temporary, format="png")
        os.chmod(temporary, _usual_mode())
        os.replace(temporary, path)
    finally:
        plt.close(figure)
        Path(temporary).unlink(missing_ok=True)


def render_markdown(results: list[ScenarioResult], machine: dict[str, Any], run: RunInfo) -> str:
    """The report as Markdown; the run's notes come first (e.g. what else the machine was doing)."""
    lines = ["# Benchmarks", ""]
    if run.smoke:
        lines += [
            "**Smoke run**: tiny sizes, scenarios side by side, nothing pinned: it proves the harness works. The "
            "numbers mean nothing.",
            "",
        ]
    lines += [f"**{note}**" for note in run.notes] + ([""] if run.notes else [])
    lines += [
        f"Produced by `make bench` (`python -m bench`) in {run.seconds:.0f} s.",
        "Everything runs on this machine over loopback: the local emulator of fal's queue API",
        "(`fal-kontext mock`) is the server for every client.",
        "",
        "## Method",
        "",
        "- The emulator and every client run in separate processes: the emulator pinned to CPU 0, the client (or",
        "  load generator) to CPU 1 (`os.sched_setaffinity`), so CPU time (`getrusage` of the client process, after",
        "  its imports) and peak memory (`ru_maxrss`) are the client's own.",
        "- Clients speak HTTPS to the emulator (certificate from `trustme`); `fal_client` is pointed at it with",
        "  `FAL_QUEUE_RUN_HOST`, `FAL_RUN_HOST`, `FAL_KEY` and `SSL_CERT_FILE` set before import",
        "  (fal-protocol.md §3.2).",
        "- Times are compared on `time.monotonic()` (CLOCK_MONOTONIC, system-wide on Linux): the emulator records",
        "  when each job completed (`GET /_emulator/requests`), each client when it held the result.",
        "- HTTP requests per job are counted at the server, per request id, plus submits. TLS connections are",
        "  counted at the server side too, by a TCP relay in front of the emulator that counts the connections",
        "  opening with a TLS handshake (bench/connection_counter.py), in runs of their own.",
        "- The peer: a bare httpx SSE reader (bench/bare_reader.py: submit, status stream read to its end, result;",
        "  no retries, no validation) runs in the same harness, in the same run, as the least a correct client",
        '  does; "this / bare reader" ratios say what everything our client adds costs.',
        "- Absolute numbers on a shared 2-core machine are noisy; the ratios between clients run back to back on the",
        "  same server are what matter.",
        "",
        "## Machine",
        "",
        f"- CPU: {machine['cpu']}, {machine['cores']} cores; memory: {machine['memory_gib']} GiB; {machine['os']}",
        f"- Python {machine['python']}; " + ", ".join(f"{k} {v}" for k, v in machine["packages"].items()),
        "",
    ]
    all_targets = [t for r in results for t in r.targets]
    if all_targets:
        lines += ["## Targets", "", "| target | wanted | measured | met |", "|---|---|---|---|"]
        lines += [f"| {t.name} | {t.wanted} | {t.measured} | {'yes' if t.met else 'no'} |" for t in all_targets]
        missed = [t for t in all_targets if not t.met]
        lines += [""] + [f"- **Missed: {t.name}.** {t.why_missed}" for t in missed] + ([""] if missed else [])
    for result in results:
        ran = f"Run at {result.ran_at}." if result.ran_at else "From an earlier run (its time was not recorded)."
        lines += [f"## {result.title}", "", ran, "", result.method, ""]
        lines += ["| " + " | ".join(result.columns) + " |", "|" + "---|" * len(result.columns)]
        lines += ["| " + " | ".join(_cell(v) for v in row) + " |" for row in result.rows]
        lines += [""] + [f"- {note}" for note in result.notes] + ([""] if result.notes else [])
        lines += [f"![{p.title}]({p.file_name})" for p in result.plots] + ([""] if result.plots else [])
    return "\n".join(lines).rstrip() + "\n"


def write_report(results: list[ScenarioResult], machine: dict[str, Any], out: Path, run: RunInfo) -> None:
    """Write benchmarks.md, benchmarks.json and every plot into `out`."""
    out.mkdir(parents=True, exist_ok=True)
    for result in results:
        for plot in result.plots:
            render_plot(plot, out / plot.file_name)
    document = {
        "smoke": run.smoke,
        "seconds": run.seconds,
        "notes": run.notes,
        "machine": machine,
        "scenarios": [r.as_json() for r in results],
    }
    _atomic_write(out / "benchmarks.json", (json.dumps(document, indent=1, default=str) + "\n").encode())
    _atomic_write(out / "benchmarks.md", render_markdown(results, machine, run).encode())
