"""`python -m bench`: run the benchmarks and write docs/benchmarks.md, docs/benchmarks.json and the plots.

`--smoke` runs every scenario at a tiny size, only to prove the harness works (`make test` does this
into a temporary folder; no timing is asserted anywhere). `--only NAME` runs some scenarios.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path

from . import concurrency, pipeline, soak, throughput, time_to_result
from .machine import describe_machine
from .model import ScenarioResult
from .report import write_report

SCENARIOS: dict[str, Callable[..., ScenarioResult]] = {
    "time_to_result": time_to_result.run,
    "concurrency": concurrency.run,
    "throughput": throughput.run,
    "pipeline": pipeline.run,
    "soak": soak.run,
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--smoke", action="store_true", help="tiny sizes: prove the harness works")
    parser.add_argument("--out", type=Path, default=Path("docs"), help="where the report goes (default: docs)")
    parser.add_argument("--only", action="append", choices=sorted(SCENARIOS), help="run only these scenarios")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    results = []
    for name in args.only or list(SCENARIOS):
        print(f"== bench: {name}", flush=True)
        result = SCENARIOS[name](smoke=args.smoke)
        for target in result.targets:
            print(f"   {target.name}: {target.measured} ({'met' if target.met else 'MISSED'}; wanted {target.wanted})")
        results.append(result)
    seconds = time.perf_counter() - started
    write_report(results, describe_machine(), args.out, smoke=args.smoke, seconds=seconds)
    print(f"== bench: wrote {args.out / 'benchmarks.md'} and {args.out / 'benchmarks.json'} in {seconds:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
