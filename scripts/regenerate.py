"""`make`: normalise the sources, regenerate the client, verify, and swap the results in together or not at all.

Everything is built first in a staging folder (`.regenerate/` at the repository root, removed at the
end): the spec, the generated package (openapi-python-client), then verified (mypy --strict on the
package). Only when every step succeeded are the changed files moved into place, one rename each;
if a rename fails, the ones already done are undone. So a failing generator leaves
`specs/openapi.yaml` and `generated/` exactly as they were. Files get the usual mode (0666 minus
the umask), not a temporary file's 0600.

With --check nothing is moved: the run fails if the committed spec or client differ from a fresh one.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import generate_client
from normaliser.model import SourceError
from normaliser.pipeline import SpecError, normalise, summary

ROOT = Path(__file__).resolve().parent.parent
STAGING = ".regenerate"

Generator = Callable[[Path, Path], None]


@dataclass(frozen=True)
class Tree:
    """Where one repository tree keeps the pipeline's inputs and outputs."""

    root: Path

    @property
    def sources(self) -> Path:
        return self.root / "specs" / "sources"

    @property
    def overrides(self) -> Path:
        return self.root / "overrides"

    @property
    def spec(self) -> Path:
        return self.root / "specs" / "openapi.yaml"

    @property
    def package(self) -> Path:
        return self.root / "generated" / generate_client.PACKAGE


def usual_mode() -> int:
    """0666 minus the process umask: the mode `open()` gives a new file."""
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


def write_staged(path: Path, text: str) -> None:
    """Write a staged file with the usual mode."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    path.chmod(usual_mode())


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif path.exists() or path.is_symlink():
        path.unlink()


def publish(moves: list[tuple[Path, Path]]) -> None:
    """Move each staged path onto its target (a file or a folder), all or none.

    Each existing target is first renamed aside (`.<name>.previous` beside it). If any move fails,
    the targets already replaced are put back and the error is raised; otherwise the previous
    copies are deleted.
    """
    replaced: list[tuple[Path, Path | None]] = []
    try:
        for staged, target in moves:
            aside: Path | None = None
            if target.exists():
                aside = target.with_name(f".{target.name}.previous")
                _remove(aside)
                target.rename(aside)
            replaced.append((target, aside))
            staged.rename(target)
    except BaseException:
        for target, aside in reversed(replaced):
            if aside is None or aside.exists():
                _remove(target)
            if aside is not None and aside.exists():
                aside.rename(target)
        raise
    for _, aside in replaced:
        if aside is not None:
            _remove(aside)


def verify_package(package: Path, staging: Path) -> str | None:
    """mypy --strict on a staged package; the problems as text, or None when it is clean."""
    config = staging / "mypy.ini"
    config.write_text("[mypy]\n", encoding="utf-8")
    done = subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--config-file", str(config), "--no-error-summary", package.name],
        cwd=package.parent,
        capture_output=True,
        text=True,
        check=False,
    )
    return None if done.returncode == 0 else done.stdout + done.stderr


def regenerate(tree: Tree, *, check: bool = False, verify: bool = True, generator: Generator | None = None) -> int:
    """One run of `make` (or `make check`) on `tree`. Returns the exit status; prints what it did."""
    generate = generator or generate_client.generate
    try:
        result = normalise(tree.sources, tree.overrides)
    except (SourceError, SpecError) as err:
        print(f"normaliser: {err}\nnothing written.", file=sys.stderr)
        return 1
    print("== normalise: specs/sources + overrides/")
    for line in summary(result):
        print(line)
    print(f"resolved: {len(result.resolutions)} conflicts and repairs")
    for resolution in result.resolutions:
        print(f"  {resolution}")

    staging = tree.root / STAGING
    _remove(staging)
    staging.mkdir()
    try:
        staged_spec = staging / "specs" / tree.spec.name
        write_staged(staged_spec, result.text)
        staged_package = staging / "generated" / tree.package.name
        print("== generate: openapi-python-client -> generated/")
        try:
            generate(staged_spec, staged_package)
        except RuntimeError as err:
            print(f"generate_client: {err}\nnothing written.", file=sys.stderr)
            return 1
        if verify:
            print("== verify: mypy --strict on the generated package")
            problems = verify_package(staged_package, staging)
            if problems:
                print(f"the generated package fails mypy --strict:\n{problems}nothing written.", file=sys.stderr)
                return 1
        return _conclude(tree, result.text, staged_spec, staged_package, check=check)
    finally:
        _remove(staging)


def _conclude(tree: Tree, spec_text: str, staged_spec: Path, staged_package: Path, *, check: bool) -> int:
    spec_changed = not tree.spec.exists() or tree.spec.read_text(encoding="utf-8") != spec_text
    client_changes = generate_client.differences(staged_package, tree.package) if tree.package.exists() else ["(all)"]
    stale = [f"{tree.spec.relative_to(tree.root)}"] if spec_changed else []
    stale += [f"{tree.package.relative_to(tree.root)}/{name}" for name in client_changes]
    if check:
        if stale:
            print("out of date (run `make` and commit the result):", file=sys.stderr)
            for name in stale:
                print(f"  {name}", file=sys.stderr)
            return 1
        print("spec and generated client are up to date")
        return 0
    moves = [(staged_spec, tree.spec)] if spec_changed else []
    if client_changes:
        moves.append((staged_package, tree.package))
    publish(moves)
    print(f"{tree.spec.relative_to(tree.root)}: {'updated' if spec_changed else 'unchanged'}")
    package = tree.package.relative_to(tree.root)
    print(f"{package}: {f'regenerated, {len(client_changes)} files changed' if client_changes else 'unchanged'}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", type=Path, default=ROOT, help="the repository tree to work on")
    parser.add_argument("--check", action="store_true", help="write nothing; exit 1 if anything is stale")
    args = parser.parse_args(argv)
    return regenerate(Tree(args.root.resolve()), check=args.check)


if __name__ == "__main__":
    sys.exit(main())
