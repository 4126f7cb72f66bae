"""What the source readers produce and what the merge reports: plain data, no I/O."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import IntEnum
from pathlib import Path
from typing import Any


class SourceKind(IntEnum):
    """The formats we read, ordered by trust: when sources disagree, the lower value wins.

    fal's own documentation comes first (the issue's rule, and fal-protocol.md §5: the aggregator
    documents disagree with fal's API); the Apifox exports are structured but written by hand; the
    rendered page is the least precise (its table has lost its column separators).
    """

    FAL_DOC = 0
    APIFOX = 1
    RENDERED_PAGE = 2

    @property
    def label(self) -> str:
        return {0: "fal documentation page", 1: "Apifox export", 2: "rendered aggregator page"}[self.value]


class SourceError(Exception):
    """A source that cannot be read, even after repair. Names the file, the line and the problem."""

    def __init__(self, path: Path | str, line: int | None, problem: str) -> None:
        self.path = str(path)
        self.line = line
        self.problem = problem
        where = f"{self.path}:{line}" if line is not None else self.path
        super().__init__(f"{where}: {problem}")


@dataclass
class FieldFacts:
    """What one source states about one request or response field.

    Every attribute is optional: None means "this source does not say". `schema` holds the type
    part of a JSON schema (`type`, `items`, `$ref`); enums are kept apart so that they can become
    named components.
    """

    name: str
    schema: dict[str, Any] | None = None
    required: bool | None = None
    description: str | None = None
    default: Any = None
    minimum: float | int | None = None
    maximum: float | int | None = None
    enum: list[str] | None = None
    enum_name: str | None = None

    def stated(self) -> dict[str, Any]:
        """The attributes this source states, by name (for merging and conflict reports)."""
        names = ("schema", "required", "description", "default", "minimum", "maximum", "enum", "enum_name")
        return {n: getattr(self, n) for n in names if getattr(self, n) is not None}


@dataclass
class SourceDocument:
    """One API document, read: which endpoint it describes and what it says about it."""

    path: Path
    kind: SourceKind
    endpoint: str
    servers: list[dict[str, str]] = field(default_factory=list)
    auth_scheme: str | None = None
    summary: str | None = None
    docs_url: str | None = None
    tier: str | None = None
    input_fields: list[FieldFacts] = field(default_factory=list)
    output_fields: list[FieldFacts] = field(default_factory=list)
    request_examples: list[Any] = field(default_factory=list)
    output_examples: list[Any] = field(default_factory=list)
    submit_examples: list[Any] = field(default_factory=list)
    repairs: list[str] = field(default_factory=list)

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def origin(self) -> str:
        """The origin part of the file name (`<endpoint>__<origin>.<format>`), used to key examples."""
        stem = self.path.name.split(".", 1)[0]
        return stem.split("__", 1)[1] if "__" in stem else stem


@dataclass(frozen=True)
class Resolution:
    """One disagreement between sources, or one repair, and how the pipeline resolved it."""

    subject: str
    message: str

    def __str__(self) -> str:
        return f"{self.subject}: {self.message}"
