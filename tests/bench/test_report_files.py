"""The committed benchmark figures come from one place: docs/benchmarks.json renders docs/benchmarks.md and the
README's summary block, so no figure in either can disagree with it."""

from __future__ import annotations

import copy
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from bench.report import (
    README_END,
    README_START,
    readme_summary,
    render_document,
    render_readme_summary,
    replace_readme_summary,
)

ROOT = Path(__file__).resolve().parents[2]


def committed_report() -> dict[str, Any]:
    document: dict[str, Any] = json.loads((ROOT / "docs" / "benchmarks.json").read_text(encoding="utf-8"))
    return document


def test_the_readme_summary_is_what_benchmarks_json_renders() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert readme.count(README_START) == 1 and readme.count(README_END) == 1, "run: python -m bench --render"
    assert readme_summary(readme) == render_readme_summary(committed_report()), "run: python -m bench --render"


def test_benchmarks_md_is_what_benchmarks_json_renders() -> None:
    markdown = (ROOT / "docs" / "benchmarks.md").read_text(encoding="utf-8")
    assert markdown == render_document(committed_report()), "run: python -m bench --render"


def test_the_summary_shows_every_target_with_its_figure_and_when_its_section_ran() -> None:
    document = committed_report()
    summary = render_readme_summary(document)
    for scenario in document["scenarios"]:
        for target in scenario["targets"]:
            row = next(line for line in summary.splitlines() if line.startswith(f"| {target['name']} |"))
            assert target["measured"] in row and scenario["ran_at"] in row
            assert row.split(" | ")[3] == ("yes" if target["met"] else "no")


def test_a_changed_figure_changes_the_summary() -> None:
    """What the README test compares can fail: one measured figure moved in the JSON shows in the summary."""
    document = committed_report()
    changed = copy.deepcopy(document)
    target = changed["scenarios"][0]["targets"][0]
    target.update(measured="99.9 ms", met=False, why_missed="slower than wanted")
    summary = render_readme_summary(changed)
    assert summary != render_readme_summary(document)
    assert "99.9 ms | no |" in summary and f"**Missed: {target['name']}.** slower than wanted" in summary


def test_benchmarks_md_says_when_each_section_ran_and_how_long_the_last_run_took() -> None:
    document = committed_report()
    markdown = render_document(document)
    for scenario in document["scenarios"]:
        assert f"| {scenario['title']} | {scenario['ran_at']} |" in markdown
    assert f"The last run,\nwhich wrote this file, took {document['seconds']:.0f} s." in markdown
    assert "Produced by `make bench` (`python -m bench`) in" not in markdown  # one duration for sections of many runs


def test_a_smoke_report_is_never_a_readme_summary() -> None:
    with pytest.raises(ValueError, match="smoke"):
        render_readme_summary({**committed_report(), "smoke": True})


def test_replacing_the_block_keeps_the_rest_and_needs_both_markers() -> None:
    readme = f"# title\n\nbefore\n{README_START}\nold figures\n{README_END}\nafter\n"
    replaced = replace_readme_summary(readme, "new figures\n")
    assert replaced == f"# title\n\nbefore\n{README_START}\nnew figures\n{README_END}\nafter\n"
    assert readme_summary(replaced) == "new figures\n"
    for broken in ("# no markers\n", f"{README_START}\n", f"{README_END}\n{README_START}\n"):
        with pytest.raises(ValueError, match="bench-summary"):
            replace_readme_summary(broken, "x\n")


def test_render_rewrites_both_files_from_the_json_without_running_anything(tmp_path: Path) -> None:
    (tmp_path / "benchmarks.json").write_text((ROOT / "docs" / "benchmarks.json").read_text(encoding="utf-8"))
    readme = tmp_path / "README.md"
    readme.write_text(f"# x\n{README_START}\nstale: 1.45x missed\n{README_END}\n", encoding="utf-8")
    done = subprocess.run(
        [sys.executable, "-m", "bench", "--render", "--out", str(tmp_path), "--readme", str(readme)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert readme_summary(readme.read_text(encoding="utf-8")) == render_readme_summary(committed_report())
    assert (tmp_path / "benchmarks.md").read_text(encoding="utf-8") == render_document(committed_report())
    assert not list(tmp_path.glob(".*.tmp"))


def test_a_readme_without_markers_is_refused_before_anything_runs(tmp_path: Path) -> None:
    readme = tmp_path / "README.md"
    readme.write_text("# no summary block\n", encoding="utf-8")
    done = subprocess.run(
        [sys.executable, "-m", "bench", "--only", "pipeline", "--out", str(tmp_path), "--readme", str(readme)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 2, done.stdout + done.stderr
    assert f"--readme {readme}" in done.stderr and "bench-summary" in done.stderr
    assert "== bench: pipeline" not in done.stdout and not (tmp_path / "benchmarks.json").exists()


def test_sections_from_different_machines_say_which_ran_where() -> None:
    """`--only` keeps sections measured elsewhere: the report names each machine with its sections, never one for all."""
    document = copy.deepcopy(committed_report())
    machine = document["machine"]
    for scenario in document["scenarios"]:
        scenario["machine"] = machine
    # One machine for every section: no machine column, no section lists, as for sections that record none.
    single = render_document(document), render_readme_summary(document)
    assert "| section | ran at |\n" in single[0] and "(sections " not in single[0] + single[1]
    unrecorded = copy.deepcopy(document)
    for scenario in unrecorded["scenarios"]:
        del scenario["machine"]
    assert (render_document(unrecorded), render_readme_summary(unrecorded)) == single
    other = {**machine, "cpu": "Another CPU", "os": "Linux 9.9"}
    first = document["scenarios"][0]
    first["machine"] = other
    markdown, summary = render_document(document), render_readme_summary(document)
    number = first["title"].split(".", 1)[0]
    cores = other["cores"]
    assert f"- CPU: Another CPU, {cores} cores; memory: {other['memory_gib']} GiB; Linux 9.9 (sections {number})" in (
        markdown
    )
    assert f"| {first['title']} | {first['ran_at']} | Another CPU, {cores} cores |" in markdown
    assert f"{machine['cpu']}, {machine['cores']} cores (sections " in summary
    assert f"Another CPU, {cores} cores (sections {number})" in summary
