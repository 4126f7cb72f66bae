"""`python -m bench`: run the benchmarks and write docs/benchmarks.md, docs/benchmarks.json and the plots.

`--smoke` runs every scenario at a tiny size, only to prove the harness works (`make test` does this
into a temporary folder; no timing is asserted anywhere); its scenarios run side by side, since their numbers
mean nothing and each has its own servers and ports. `--only NAME` runs some scenarios; the others are kept
from the report already in `--out` (each section says when it ran). `--note TEXT` adds a line about the run to
the report. A full-size run into `docs` also rewrites the README's summary block from the new benchmarks.json.
`--render` runs nothing: it renders benchmarks.md and the README's summary again from `--out`'s benchmarks.json
(after a change to how they are written).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path

from . import batch_crash, concurrency, pipeline, polling, server, soak, throughput, time_to_result
from .machine import describe_machine
from .model import RunInfo, ScenarioResult
from .report import replace_readme_summary, write_rendered, write_report

ROOT = Path(__file__).resolve().parents[1]

SCENARIOS: dict[str, Callable[..., ScenarioResult]] = {
    "time_to_result": time_to_result.run,
    "concurrency": concurrency.run,
    "throughput": throughput.run,
    "pipeline": pipeline.run,
    "soak": soak.run,
    "batch_crash": batch_crash.run,
    "polling": polling.run,
}


def _run(name: str, *, smoke: bool) -> ScenarioResult:
    started = datetime.now(UTC)
    result = SCENARIOS[name](smoke=smoke)
    result.ran_at = started.strftime("%Y-%m-%d %H:%M UTC")
    result.machine = describe_machine()
    return result


def _print_targets(result: ScenarioResult) -> None:
    for target in result.targets:
        print(f"   {target.name}: {target.measured} ({'met' if target.met else 'MISSED'}; wanted {target.wanted})")


def _with_earlier(results: list[ScenarioResult], earlier_report: Path) -> list[ScenarioResult]:
    """The scenarios just run, and the other ones from an earlier full-size report (in SCENARIOS order)."""
    fresh = {result.key: result for result in results}
    earlier: dict[str, ScenarioResult] = {}
    if earlier_report.exists():
        document = json.loads(earlier_report.read_text())
        if not document.get("smoke"):
            for data in document["scenarios"]:
                kept = ScenarioResult.from_json(data)
                kept.machine = kept.machine or document["machine"]  # a report from before sections had their own
                earlier[kept.key] = kept
    return [fresh.get(key) or earlier[key] for key in SCENARIOS if key in fresh or key in earlier]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--smoke", action="store_true", help="tiny sizes: prove the harness works")
    parser.add_argument("--out", type=Path, default=Path("docs"), help="where the report goes (default: docs)")
    parser.add_argument("--only", action="append", choices=sorted(SCENARIOS), help="run only these scenarios")
    parser.add_argument("--note", action="append", default=[], help="a line about this run for the report")
    parser.add_argument(
        "--readme",
        type=Path,
        help="the README whose summary block is rewritten from the report (default: README.md when --out is docs)",
    )
    parser.add_argument("--render", action="store_true", help="run nothing: render the report from its JSON again")
    args = parser.parse_args(argv)
    readme = args.readme
    if readme is None and args.out.resolve() == ROOT / "docs":
        readme = ROOT / "README.md"
    if readme is not None:  # a README without its summary markers fails here, not after a 20-minute run
        try:
            replace_readme_summary(readme.read_text(encoding="utf-8"), "")
        except (OSError, ValueError) as err:
            parser.error(f"--readme {readme}: {err}")
    if args.render:
        if not (args.out / "benchmarks.json").is_file():
            parser.error(f"--render: {args.out / 'benchmarks.json'} does not exist (run the benchmarks first)")
        write_rendered(args.out, readme)
        print(f"== bench: rendered {args.out / 'benchmarks.md'}" + (f" and {readme}'s summary" if readme else ""))
        return 0
    started = time.perf_counter()
    names = args.only or list(SCENARIOS)
    if args.smoke:
        server.pinning = False
        with ThreadPoolExecutor(max_workers=len(names)) as pool:
            results = list(pool.map(lambda name: _run(name, smoke=True), names))
    else:
        results = []
        for name in names:
            print(f"== bench: {name}", flush=True)
            results.append(_run(name, smoke=False))
            _print_targets(results[-1])
    if args.smoke:
        for name, result in zip(names, results, strict=True):
            print(f"== bench: {name}", flush=True)
            _print_targets(result)
    seconds = time.perf_counter() - started
    if args.only and not args.smoke:
        results = _with_earlier(results, args.out / "benchmarks.json")
    write_report(results, describe_machine(), args.out, RunInfo(args.smoke, seconds, args.note), readme)
    print(f"== bench: wrote {args.out / 'benchmarks.md'} and {args.out / 'benchmarks.json'} in {seconds:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
