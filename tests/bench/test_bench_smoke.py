"""The benchmark harness runs end to end at smoke size and writes a complete report. No timing is asserted."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_smoke_run_writes_report_json_and_plots(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "bench", "--smoke", "--out", str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
        timeout=480,  # ~30-40 s on an idle 2-core machine; far more when it is shared
    )
    assert done.returncode == 0, done.stdout + done.stderr
    report = json.loads((tmp_path / "benchmarks.json").read_text())
    assert report["smoke"] is True and report["machine"]["cores"]
    from bench.__main__ import SCENARIOS

    assert [scenario["key"] for scenario in report["scenarios"]] == list(SCENARIOS)
    markdown = (tmp_path / "benchmarks.md").read_text()
    from bench.batch_crash import batch_available

    for scenario in report["scenarios"]:
        assert scenario["title"] in markdown
        assert scenario["rows"], scenario["key"]
        # Only the batch bench may measure nothing: where this build has no `fal-kontext batch`.
        assert scenario["plots"] or (scenario["key"] == "batch_crash" and not batch_available()), scenario["key"]
        for plot in scenario["plots"]:
            assert (tmp_path / plot["file_name"]).read_bytes().startswith(b"\x89PNG"), plot["file_name"]
    assert not list(tmp_path.glob(".*.tmp")), "a temporary file was left behind"
    scenarios = {scenario["key"]: scenario for scenario in report["scenarios"]}
    for key in ("time_to_result", "concurrency"):
        assert any("bare httpx reader" in str(row[0]) for row in scenarios[key]["rows"]), key
    # The connection counter saw every client's connections: at least one TLS connection each.
    from bench.clients import LABELS

    measured = scenarios["time_to_result"]["data"]
    for name in LABELS:
        assert measured[name]["tls_connections"] >= 1, name
    # The CPU comparison with the bare reader ran in alternating rounds, each with both clients.
    assert measured["cpu_rounds"] and all(set(turn) == {"ours-stream", "bare"} for turn in measured["cpu_rounds"])
    # The bare reader's pooling was calibrated (several tried, the cheapest kept) and ours judged against it in
    # three runs, each with both.
    concurrency = scenarios["concurrency"]["data"]
    assert len(concurrency["calibration"]) >= 3
    cheapest = concurrency["cheapest_pools"]
    assert concurrency["calibration"][str(cheapest)]["cpu_ms_per_job"] == min(
        m["cpu_ms_per_job"] for m in concurrency["calibration"].values()
    )
    assert len(concurrency["runs"]) == 3 and all(
        set(turn) == {"ours-async", "bare-async"} for turn in concurrency["runs"]
    )
    assert all(turn["bare-async"]["pools"] == cheapest for turn in concurrency["runs"])
    # The polling section: both job lengths with the three clients side by side, then the concurrent run; every job
    # done, and the schedule ours polled with recorded.
    polling = scenarios["polling"]["data"]
    assert len(polling["sequential"]) == 2
    for measured in [*polling["sequential"].values(), polling["concurrent"]]:
        for name, m in measured.items():
            assert m["completed"] > 0 and not m["errors"], name
    assert set(polling["concurrent"]) == {"ours-poll-async", "fal-async"}
    for measured in polling["sequential"].values():
        assert measured["ours-poll"]["defaults"]["fal_kontext"], "which build (and so which schedule) was measured"
    assert polling["schedule"]["sequential"] in scenarios["polling"]["notes"][0]
