"""The result of a request: the endpoint's generated output model with its request id, and writing its images to disk.

Every endpoint of the spec answers with an output of its own schema (``x-fal-endpoint.output_schema``), and every
one has ``images``, a list of files with a ``url`` (the spec pipeline refuses an endpoint whose output has not).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from typing import Any, Protocol

from .spec import EndpointSpec, generated_model, output_schemas

__all__ = [
    "EditResult",
    "EndpointOutput",
    "ResultImage",
    "read_output",
]

# A data URI (``sync_mode``) or inline file data is shown in a repr up to this many characters.
_SHOWN_CHARACTERS = 60


class _Model(Protocol):
    """What every generated model has: its fields as JSON, without the ones the server did not send."""

    def to_dict(self) -> dict[str, Any]: ...


def _text(value: object) -> str | None:
    return value if isinstance(value, str) else None


def _whole(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _shortened(text: str) -> str:
    if len(text) <= _SHOWN_CHARACTERS:
        return repr(text)
    return f"{text[:_SHOWN_CHARACTERS]!r}... ({len(text)} characters)"


@dataclass(frozen=True, slots=True)
class ResultImage:
    """One image of a result, as the server sent it; ``None`` for what it did not send (fal's multi-image and
    text-to-image endpoints send no ``file_name`` or ``file_size``, for instance).

    Built from an output item of any endpoint (``from_model``): every output schema of the spec has ``images``
    whose items carry these fields or some of them. A value of another type than the spec's is None here (the raw
    item stays in ``EditResult.output``).

    Attributes:
        url: Where the image can be downloaded (fal's URLs expire), or a data URI (``sync_mode``).
        content_type: Its MIME type, e.g. ``image/jpeg``.
        file_name: Its file name, chosen by the server.
        file_size: Its size in bytes.
        width: Its width in pixels.
        height: Its height in pixels.
        file_data: Its content, where the server sends it inline.
    """

    url: str
    content_type: str | None = None
    file_name: str | None = None
    file_size: int | None = None
    width: int | None = None
    height: int | None = None
    file_data: str | None = None

    @classmethod
    def from_model(cls, item: _Model | Mapping[str, Any]) -> ResultImage:
        """The image of one output item: a generated model (read through its ``to_dict()``, which leaves out what
        was not sent) or the item's JSON object."""
        data = item if isinstance(item, Mapping) else item.to_dict()
        url = data.get("url")
        return cls(
            url=url if isinstance(url, str) else "",
            content_type=_text(data.get("content_type")),
            file_name=_text(data.get("file_name")),
            file_size=_whole(data.get("file_size")),
            width=_whole(data.get("width")),
            height=_whole(data.get("height")),
            file_data=_text(data.get("file_data")),
        )

    def __repr__(self) -> str:
        shown = []
        for item in fields(self):
            value = getattr(self, item.name)
            if value is None:
                continue
            shown.append(f"{item.name}={_shortened(value) if isinstance(value, str) else repr(value)}")
        return f"ResultImage({', '.join(shown)})"


class EndpointOutput(Protocol):
    """An endpoint's output, as every generated output model of the spec has it."""

    @property
    def images(self) -> Sequence[_Model]:
        """The generated images."""

    def to_dict(self) -> dict[str, Any]:
        """The output as JSON."""


def read_output(data: object, endpoint: EndpointSpec | None) -> EndpointOutput | None:
    """The output model of ``endpoint`` read from JSON ``data``; without an endpoint, the first output schema of the
    spec that reads it. None when ``data`` is not such an output."""
    names = [endpoint.output_schema] if endpoint is not None and endpoint.output_schema else list(output_schemas())
    for name in names:
        try:
            output: EndpointOutput = generated_model(name).from_dict(data)
        except (KeyError, TypeError, ValueError, AttributeError):
            continue
        return output
    return None


@dataclass(frozen=True)
class EditResult:
    """What an edit produced.

    fal's image URLs expire (https://docs.fal.ai/documentation/model-apis/media-expiration): save the images you
    want to keep soon, with ``Kontext.save`` / ``AsyncKontext.save``.

    Attributes:
        request_id: The request that produced it.
        images: The images, typed (``ResultImage``: ``None`` for what fal did not send).
        output: The whole typed output as the generated package parsed it (``images``, ``seed``,
            ``has_nsfw_concepts``, ``prompt``, ``timings``); not in the repr.
    """

    request_id: str
    output: EndpointOutput = field(repr=False)
    images: tuple[ResultImage, ...] = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "images", tuple(ResultImage.from_model(item) for item in self.output.images))

    def to_dict(self) -> dict[str, Any]:
        """``{"request_id": ..., **output}`` (the JSON the CLI prints)."""
        return {"request_id": self.request_id, **self.output.to_dict()}
