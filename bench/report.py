"""Render benchmark results: `benchmarks.md` (method, machine, tables, targets), `benchmarks.json`, PNG plots, and
the README's summary block.

`benchmarks.json` is the record: `benchmarks.md` and the README's block are rendered from what it holds
(`render_document`, `render_readme_summary`), so they can be rendered again without running anything
(`python -m bench --render`) and a test can check that neither disagrees with it. Every file is written to a
temporary name and renamed into place, so an interrupted run leaves the previous report whole.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from pathlib import Path
from typing import Any

from .model import Plot, RunInfo, ScenarioResult

# The README's summary lies between these two lines; everything between them is rewritten from benchmarks.json.
README_START = "<!-- bench-summary:start: written by `make bench` from docs/benchmarks.json; do not edit -->"
README_END = "<!-- bench-summary:end -->"


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


def _cpu(machine: dict[str, Any]) -> str:
    return f"{machine['cpu']}, {machine['cores']} cores"


def _machines(results: list[ScenarioResult], machine: dict[str, Any]) -> list[tuple[dict[str, Any], list[str]]]:
    """Each machine the sections ran on (`machine` for those that do not say), with the numbers of its sections,
    in the order they first appear."""
    grouped: dict[str, tuple[dict[str, Any], list[str]]] = {}
    for result in results:
        where = result.machine or machine
        key = json.dumps(where, sort_keys=True)
        grouped.setdefault(key, (where, []))[1].append(result.title.split(".", 1)[0])
    return list(grouped.values())


def _when(results: list[ScenarioResult], machine: dict[str, Any], run: RunInfo) -> list[str]:
    """When the report's sections ran: a `--only` run keeps the other sections from the report before it (and
    where, when they did not all run on one machine)."""
    if run.smoke:
        return [f"Produced by `python -m bench --smoke` in {run.seconds:.0f} s.", ""]
    lines = [
        "Produced by `make bench` (`python -m bench`). A run with `--only NAME` reruns some sections and keeps the",
        "others from the report before it, so the sections may have run at different times (below). The last run,",
        f"which wrote this file, took {run.seconds:.0f} s.",
        "",
    ]
    if len(_machines(results, machine)) == 1:
        lines += ["| section | ran at |", "|---|---|"]
        lines += [f"| {result.title} | {result.ran_at or 'not recorded'} |" for result in results]
    else:
        lines += ["| section | ran at | on |", "|---|---|---|"]
        lines += [
            f"| {result.title} | {result.ran_at or 'not recorded'} | {_cpu(result.machine or machine)} |"
            for result in results
        ]
    return [*lines, ""]


def _machine_lines(results: list[ScenarioResult], machine: dict[str, Any]) -> list[str]:
    """The Machine section: one machine as it always was; several, each with its sections (figures measured on
    different machines compare only as ratios within a section)."""
    groups = _machines(results, machine)
    lines = []
    for where, sections in groups:
        about = f" (sections {', '.join(sections)})" if len(groups) > 1 else ""
        lines += [
            f"- CPU: {_cpu(where)}; memory: {where['memory_gib']} GiB; {where['os']}{about}",
            f"{'  ' if about else '- '}Python {where['python']}; "
            + ", ".join(f"{k} {v}" for k, v in where["packages"].items()),
        ]
    if len(groups) > 1:
        lines.append(
            "- The sections ran on different machines: compare figures within a section (the ratios), not across."
        )
    return lines


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
    lines += _when(results, machine, run)
    lines += [
        "Everything runs on this machine over loopback: the local emulator of fal's queue API",
        "(`fal-kontext mock`) is the server for every client.",
        "",
        "## Method",
        "",
        "- The emulator and every client run in separate processes: the emulator pinned to CPU 0, the client (or",
        "  load generator) to CPU 1 (`os.sched_setaffinity`), so CPU time (`getrusage` of the client process, after",
        "  its imports) and peak memory (`ru_maxrss`) are the client's own.",
        "- The emulator's connections have Nagle's algorithm off (TCP_NODELAY, as a server answering small requests",
        "  on kept-alive connections sets it).",
        "- Clients speak HTTPS to the emulator (certificate from `trustme`); `fal_client` is pointed at it with",
        "  `FAL_QUEUE_RUN_HOST`, `FAL_RUN_HOST`, `FAL_KEY` and `SSL_CERT_FILE` set before import",
        '  (docs/emulator.md, "Point a client at it").',
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
        *_machine_lines(results, machine),
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


def render_document(document: dict[str, Any]) -> str:
    """`benchmarks.md` as the report `document` (the parsed `benchmarks.json`) renders it."""
    results = [ScenarioResult.from_json(scenario) for scenario in document["scenarios"]]
    run = RunInfo(smoke=bool(document["smoke"]), seconds=float(document["seconds"]), notes=list(document["notes"]))
    return render_markdown(results, document["machine"], run)


def _table_cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def render_readme_summary(document: dict[str, Any]) -> str:
    """The README's benchmark summary (between `README_START` and `README_END`) from the report `document`.

    Raises:
        ValueError: `document` is a smoke run's report, whose numbers mean nothing.
    """
    if document["smoke"]:
        raise ValueError("a smoke run's report (benchmarks.json with smoke: true) is not a summary for the README")
    scenarios = document["scenarios"]
    times = sorted(scenario["ran_at"] for scenario in scenarios if scenario.get("ran_at"))
    when = f"from {times[0]} to {times[-1]}" if len(set(times)) > 1 else f"at {times[0]}" if times else "(not recorded)"
    results = [ScenarioResult.from_json(scenario) for scenario in scenarios]
    groups = _machines(results, document["machine"])
    where = " and ".join(
        f"{_cpu(machine)}" + (f" (sections {', '.join(sections)})" if len(groups) > 1 else "")
        for machine, sections in groups
    )
    pythons = sorted({machine["python"] for machine, _ in groups})
    lines = [
        "The targets of the last `make bench` results, from [docs/benchmarks.json](docs/benchmarks.json); its sections",
        f"ran {when} on {where} (Python {', '.join(pythons)}). Absolute numbers on a",
        "shared machine are noisy; the ratios between clients run back to back on the same server are what matter.",
        "Method, machine, every table and plot: [docs/benchmarks.md](docs/benchmarks.md).",
        "",
        "| target | wanted | measured | met | ran at |",
        "|---|---|---|---|---|",
    ]
    for scenario in scenarios:
        ran_at = scenario.get("ran_at") or "not recorded"
        for target in scenario["targets"]:
            cells = [target["name"], target["wanted"], target["measured"], "yes" if target["met"] else "no", ran_at]
            lines.append("| " + " | ".join(_table_cell(str(cell)) for cell in cells) + " |")
    missed = [target for scenario in scenarios for target in scenario["targets"] if not target["met"]]
    lines += [""] * bool(missed) + [f"- **Missed: {target['name']}.** {target['why_missed']}" for target in missed]
    return "\n".join(lines) + "\n"


def replace_readme_summary(readme: str, summary: str) -> str:
    """`readme` with the text between its summary markers replaced by `summary`.

    Raises:
        ValueError: the markers are missing, repeated or out of order (the message names them).
    """
    if readme.count(README_START) != 1 or readme.count(README_END) != 1:
        raise ValueError(f"the README needs the lines {README_START!r} and {README_END!r}, once each")
    head, rest = readme.split(README_START, 1)
    if README_END not in rest:
        raise ValueError(f"the README's {README_END!r} comes before {README_START!r}")
    _, tail = rest.split(README_END, 1)
    return f"{head}{README_START}\n{summary}{README_END}{tail}"


def readme_summary(readme: str) -> str:
    """The text between the README's summary markers (what `replace_readme_summary` writes there)."""
    _, rest = readme.split(README_START + "\n", 1)
    return rest.split(README_END, 1)[0]


def write_rendered(out: Path, readme: Path | None) -> None:
    """Render `benchmarks.md` and (unless None or a smoke run) the README's summary from `out/benchmarks.json`."""
    document = json.loads((out / "benchmarks.json").read_text(encoding="utf-8"))
    _atomic_write(out / "benchmarks.md", render_document(document).encode())
    if readme is not None and not document["smoke"]:
        text = readme.read_text(encoding="utf-8")
        _atomic_write(readme, replace_readme_summary(text, render_readme_summary(document)).encode())


def write_report(
    results: list[ScenarioResult], machine: dict[str, Any], out: Path, run: RunInfo, readme: Path | None = None
) -> None:
    """Write every plot and benchmarks.json into `out`, then render benchmarks.md and the README's summary from it."""
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
    write_rendered(out, readme)
