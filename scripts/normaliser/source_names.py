"""Which endpoint a source file is for, by its name (`<endpoint>__<origin>.<format>`), and choosing among several.

A document may describe several endpoints: fal's API reference page puts each in a `<Tab>`, and a
saved llms.txt file may hold several pages one after another. The file's name says which one it is
the source for: the endpoint id without its owner, `/` as `-` (`fal-ai/flux-kontext/dev` ->
`flux-kontext-dev__fal.fal-doc.md`), the same rule the pipeline checks every source's name with.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .model import SourceError


def endpoint_stem(endpoint_id: str) -> str:
    """The endpoint part of a source's file name: `fal-ai/flux-pro/kontext/max` -> `flux-pro-kontext-max`."""
    return "-".join(endpoint_id.strip("/").split("/")[1:])


def named_endpoint(path: Path) -> str:
    """The endpoint part of a file's name: `flux-kontext-dev__fal.llms.md` -> `flux-kontext-dev`."""
    return path.name.split(".", 1)[0].split("__", 1)[0]


@dataclass(frozen=True)
class Candidate:
    """One endpoint a document describes: its label in the document (a tab title, a page title), id and line."""

    label: str
    endpoint_id: str
    line: int


def choose_for_file(path: Path, candidates: list[Candidate], what: str, line: int | None) -> Candidate:
    """The candidate the file's name is for. Raises SourceError listing every candidate when none or two match."""
    wanted = named_endpoint(path)
    matching = [c for c in candidates if endpoint_stem(c.endpoint_id) == wanted]
    if len(matching) == 1:
        return matching[0]
    rest = path.name[len(wanted) :]  # `__fal.fal-doc.md`
    listed = "; ".join(
        f"{c.label!r} (line {c.line}): {c.endpoint_id}, read as {endpoint_stem(c.endpoint_id)}{rest}"
        for c in candidates
    )
    if not matching:
        raise SourceError(
            path,
            line,
            f"the file name is for endpoint {wanted!r} but no {what} of this document is; name the file after "
            f"the {what} to read. Its {what}s: {listed}",
        )
    raise SourceError(path, line, f"two {what}s of this document are for endpoint {wanted!r}: {listed}")
