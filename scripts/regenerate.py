"""`make`: normalise the sources, report the API changes, regenerate the client, verify, and swap all in together.

Everything is built first in a staging folder (`.regenerate/` at the repository root, removed at the
end): the spec, the generated package (openapi-python-client), then verified (mypy --strict on the
package). Only when every step succeeded are the changed files moved into place, one rename each;
if a rename fails, the ones already done are undone. So a failing generator leaves
`specs/openapi.yaml` and `generated/` exactly as they were. Files get the usual mode (0666 minus
the umask), not a temporary file's 0600.

Every run compares the committed spec with the new one and prints each change, breaking or additive
(normaliser/changes.py); when the spec changes, the report becomes the newest entry of
specs/CHANGELOG.md, swapped in with the spec. A breaking change stops the run, with nothing written,
until it is acknowledged: raise the major of `info.version` in overrides/10-document.overlay.yaml, or
pass --ack-breaking (`make ACK_BREAKING=1`).

With --check nothing is moved: the run fails if the committed spec, changelog or client differ from a
fresh run's.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import generate_client
import yaml
from normaliser.changes import Change, compare, endpoints_changed, entry, latest_digest, major, with_entry
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
    def changelog(self) -> Path:
        return self.root / "specs" / "CHANGELOG.md"

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


@dataclass(frozen=True)
class Outcome:
    """What a run would write: the spec and changelog texts, whether each differs from the committed one, and
    whether its breaking changes (if any) are acknowledged."""

    spec: str
    changelog: str
    spec_changed: bool
    changelog_changed: bool
    acknowledged: bool


def report(
    tree: Tree, spec_text: str, document: dict[str, object], *, acknowledged: bool
) -> tuple[Outcome, list[Change]]:
    """Compare the committed spec with the new one; the changelog the run writes, and the changes."""
    old_text = tree.spec.read_text(encoding="utf-8") if tree.spec.exists() else None
    old = yaml.safe_load(old_text) if old_text else None
    changes = compare(old, document) if old_text != spec_text else []
    digest = hashlib.sha256(spec_text.encode("utf-8")).hexdigest()
    previous = tree.changelog.read_text(encoding="utf-8") if tree.changelog.exists() else None
    changelog = previous or ""
    breaking = any(c.kind == "breaking" for c in changes)
    raised = major(document) > major(old)
    if latest_digest(previous) != digest[:16]:
        note = ""
        if breaking and raised:
            note = "acknowledged by raising the major version"
        elif breaking and acknowledged:
            note = "acknowledged with ACK_BREAKING=1"
        changelog = with_entry(previous, entry(old, document, digest, changes, note))
    changed = (old_text != spec_text, changelog != (previous or ""))
    return Outcome(spec_text, changelog, *changed, acknowledged=not breaking or raised or acknowledged), changes


def regenerate(
    tree: Tree,
    *,
    check: bool = False,
    verify: bool = True,
    ack_breaking: bool = False,
    generator: Generator | None = None,
) -> int:
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

    outcome, changes = report(tree, result.text, result.document, acknowledged=ack_breaking)
    breaking = [c for c in changes if c.kind == "breaking"]
    _print_changes(changes, result.document)
    if not check and not outcome.acknowledged:
        print(
            f"{len(breaking)} breaking changes (above): nothing written. Acknowledge them by raising the major of "
            "info.version in overrides/10-document.overlay.yaml, or run `make ACK_BREAKING=1`.",
            file=sys.stderr,
        )
        return 2

    staging = tree.root / STAGING
    _remove(staging)
    staging.mkdir()
    try:
        staged_spec = staging / "specs" / tree.spec.name
        write_staged(staged_spec, result.text)
        staged_changelog = staging / "specs" / tree.changelog.name
        write_staged(staged_changelog, outcome.changelog)
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
        client_changes = (
            generate_client.differences(staged_package, tree.package) if tree.package.exists() else ["(all)"]
        )
        moves = [(staged_spec, tree.spec)] if outcome.spec_changed else []
        moves += [(staged_changelog, tree.changelog)] if outcome.changelog_changed else []
        moves += [(staged_package, tree.package)] if client_changes else []
        if check:
            return _stale(tree, [target for _, target in moves], client_changes)
        publish(moves)
        for target in (tree.spec, tree.changelog):
            changed = any(t == target for _, t in moves)
            print(f"{target.relative_to(tree.root)}: {'updated' if changed else 'unchanged'}")
        package = tree.package.relative_to(tree.root)
        done = f"regenerated, {len(client_changes)} files changed" if client_changes else "unchanged"
        print(f"{package}: {done}")
        return 0
    finally:
        _remove(staging)


def _print_changes(changes: list[Change], document: dict[str, Any]) -> None:
    """The change report: every change, then which endpoints it touched and which it left as they were."""
    breaking = sum(c.kind == "breaking" for c in changes)
    print(f"== API changes, committed spec -> new: {breaking} breaking, {len(changes) - breaking} additive")
    for change in changes:
        print(f"  {change}")
    touched, untouched = endpoints_changed(changes, document)
    print(f"endpoints changed: {', '.join(touched) or 'none'}")
    print(f"endpoints unchanged (operation, input and output): {', '.join(untouched) or 'none'}")


def _stale(tree: Tree, targets: list[Path], client_changes: list[str]) -> int:
    stale = [str(t.relative_to(tree.root)) for t in targets if t != tree.package]
    stale += [f"{tree.package.relative_to(tree.root)}/{name}" for name in client_changes]
    if stale:
        print("out of date (run `make` and commit the result):", file=sys.stderr)
        for name in stale:
            print(f"  {name}", file=sys.stderr)
        return 1
    print("spec, changelog and generated client are up to date")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", type=Path, default=ROOT, help="the repository tree to work on")
    parser.add_argument("--check", action="store_true", help="write nothing; exit 1 if anything is stale")
    parser.add_argument(
        "--ack-breaking",
        action="store_true",
        default=os.environ.get("ACK_BREAKING", "") not in ("", "0"),
        help="write the spec even if it has breaking changes (default: the ACK_BREAKING environment variable)",
    )
    args = parser.parse_args(argv)
    return regenerate(Tree(args.root.resolve()), check=args.check, ack_breaking=args.ack_breaking)


if __name__ == "__main__":
    sys.exit(main())
