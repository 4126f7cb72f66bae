"""`python -m normaliser`: write specs/openapi.yaml from specs/sources and overrides/.

Prints what the spec holds, every conflict or repair it resolved, and whether the file changed.
Exit status 1, with nothing written, when a source cannot be read or the result is not a valid spec.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .model import SourceError
from .pipeline import SpecError, normalise, summary, write_if_changed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m normaliser", description=__doc__)
    parser.add_argument("--sources", type=Path, default=Path("specs/sources"))
    parser.add_argument("--overrides", type=Path, default=Path("overrides"))
    parser.add_argument("--out", type=Path, default=Path("specs/openapi.yaml"))
    parser.add_argument("--check", action="store_true", help="write nothing; exit 1 if the spec is out of date")
    args = parser.parse_args(argv)
    try:
        result = normalise(args.sources, args.overrides)
    except (SourceError, SpecError) as err:
        print(f"normaliser: {err}", file=sys.stderr)
        return 1
    for line in summary(result):
        print(line)
    print(f"resolved: {len(result.resolutions)} conflicts and repairs")
    for resolution in result.resolutions:
        print(f"  {resolution}")
    if args.check:
        current = args.out.read_text(encoding="utf-8") if args.out.exists() else None
        if current != result.text:
            print(f"{args.out}: out of date; run `make`", file=sys.stderr)
            return 1
        print(f"{args.out}: up to date")
        return 0
    print(f"{args.out}: {'updated' if write_if_changed(args.out, result.text) else 'unchanged'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
