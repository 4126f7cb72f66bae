"""What the source readers produce and what the merge reports: plain data, no I/O."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final


class Format(enum.Enum):
    """The formats we read, each chosen by the end of the file name (pipeline.READERS)."""

    OPENAPI = "OpenAPI document"
    APIFOX = "Apifox export"
    LLMS = "llms.txt page"
    FAL_DOC = "API reference page"
    PAGE = "rendered aggregator page"

    @property
    def structured(self) -> bool:
        """Whether the format states its schema as data (OpenAPI), not as prose and tables."""
        return self in (Format.OPENAPI, Format.APIFOX)


# The origin part of a file name that marks fal's own documents (`<endpoint>__fal.<format>`).
FAL_ORIGIN: Final = "fal"


class SourceError(Exception):
    """A source that cannot be read, even after repair. Names the file, the line and the problem."""

    def __init__(self, path: Path | str, line: int | None, problem: str) -> None:
        self.path = str(path)
        self.line = line
        self.problem = problem
        where = f"{self.path}:{line}" if line is not None else self.path
        super().__init__(f"{where}: {problem}")


class _NotStated:
    """The value of a fact no source states (None is a value: a default of null)."""

    _instance: _NotStated | None = None

    def __new__(cls) -> _NotStated:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "NOT_STATED"

    def __bool__(self) -> bool:
        return False


NOT_STATED: Final = _NotStated()

# JSON Schema keywords of a field's range, as FieldFacts attributes; `stated()` names them by keyword.
BOUNDS: Final = {
    "minimum": "minimum",
    "maximum": "maximum",
    "exclusive_minimum": "exclusiveMinimum",
    "exclusive_maximum": "exclusiveMaximum",
    "min_length": "minLength",
    "max_length": "maxLength",
    "min_items": "minItems",
    "max_items": "maxItems",
}


@dataclass
class FieldFacts:
    """What one source states about one field of an input, an output or a named type.

    Every attribute is optional: None (NOT_STATED for the default) means "this source does not say".
    `schema` holds the type part of a JSON schema (`type`, `items`, `format`, `additionalProperties`,
    `anyOf`); a reference to a named type is `{"$ref": "#/components/schemas/<the source's type name>"}`,
    renamed by the build (fal's `registry__image__fast_sdxl__models__Image` may be our `SizedImage`).
    An enum is kept apart from `schema` so that sources listing the same values in another order agree.
    """

    name: str
    line: int | None = None
    schema: dict[str, Any] | None = None
    required: bool | None = None
    nullable: bool | None = None
    description: str | None = None
    default: Any = NOT_STATED
    enum: list[Any] | None = None
    minimum: float | int | None = None
    maximum: float | int | None = None
    exclusive_minimum: bool | None = None
    exclusive_maximum: bool | None = None
    min_length: int | None = None
    max_length: int | None = None
    min_items: int | None = None
    max_items: int | None = None

    def stated(self) -> dict[str, Any]:
        """The facts this source states, by JSON Schema keyword (`schema` for the type part, `required`)."""
        out: dict[str, Any] = {}
        for name in ("schema", "required", "nullable", "description"):
            if getattr(self, name) is not None:
                out[name] = getattr(self, name)
        if self.default is not NOT_STATED:
            out["default"] = self.default
        if self.enum is not None:
            out["enum"] = self.enum
        for attribute, keyword in BOUNDS.items():
            if getattr(self, attribute) is not None:
                out[keyword] = getattr(self, attribute)
        return out


@dataclass
class TypeDefinition:
    """A named object type a source defines (fal's `fal__toolkit__image__image__Image`), with its fields."""

    name: str
    line: int | None
    fields: list[FieldFacts]
    description: str | None = None


@dataclass
class SourceDocument:
    """One API document, read: which endpoint it describes and what it says about it.

    `output_fields` is None when the document does not describe the endpoint's output at all (an
    aggregator page that shows only the submit), and a list (possibly empty) when it does.
    """

    path: Path
    format: Format
    endpoint: str
    servers: list[dict[str, str]] = field(default_factory=list)
    auth_scheme: str | None = None
    summary: str | None = None
    docs_url: str | None = None
    tier: str | None = None
    input_fields: list[FieldFacts] = field(default_factory=list)
    output_fields: list[FieldFacts] | None = None
    definitions: dict[str, TypeDefinition] = field(default_factory=dict)
    request_examples: list[Any] = field(default_factory=list)
    output_examples: list[Any] = field(default_factory=list)
    submit_examples: list[Any] = field(default_factory=list)
    repairs: list[str] = field(default_factory=list)

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def endpoint_id(self) -> str:
        """The endpoint id without the leading slash: `fal-ai/flux-pro/kontext`."""
        return self.endpoint.strip("/")

    @property
    def origin(self) -> str:
        """Whose document it is: the origin part of the file name (`<endpoint>__<origin>.<format>`)."""
        stem = self.path.name.split(".", 1)[0]
        return stem.split("__", 1)[1] if "__" in stem else stem

    @property
    def trust(self) -> int:
        """Lower is more trusted: fal's documents before aggregators', structured documents before prose.

        fal's queue OpenAPI is generated from the app's own input and output models; fal's pages are
        written from them; aggregators re-describe fal's API and disagree with it (specs/sources/README.md).
        """
        return (0 if self.origin == FAL_ORIGIN else 2) + (0 if self.format.structured else 1)

    @property
    def trust_label(self) -> str:
        """Who wrote it and in which format, for reports: `fal's OpenAPI document`."""
        owner = "fal's" if self.origin == FAL_ORIGIN else f"{self.origin}'s"
        return f"{owner} {self.format.value}"


@dataclass(frozen=True)
class Resolution:
    """One disagreement between sources, or one repair, and how the pipeline resolved it."""

    subject: str
    message: str

    def __str__(self) -> str:
        return f"{self.subject}: {self.message}"
