"""The result of a request: the endpoint's generated output model with its request id, and writing its images to disk.

Every endpoint of the spec answers with an output of its own schema (``x-fal-endpoint.output_schema``), and every
one has ``images``, a list of files with a ``url`` (the spec pipeline refuses an endpoint whose output has not).
"""

from __future__ import annotations

import contextlib
import os
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from .files import decode_data_uri, extension_for
from .spec import EndpointSpec, generated_model, output_schemas

__all__ = [
    "EditResult",
    "EndpointOutput",
    "ImageFile",
    "image_file_name",
    "inline_image",
    "read_output",
    "write_atomically",
]


class ImageFile(Protocol):
    """An image of an output, as every endpoint's generated image item has it."""

    @property
    def url(self) -> str:
        """Where the image can be downloaded, or a data URI."""

    def to_dict(self) -> dict[str, Any]:
        """The item as JSON (``content_type``, ``width``, ... where the endpoint's schema has them)."""


class EndpointOutput(Protocol):
    """An endpoint's output, as every generated output model of the spec has it."""

    @property
    def images(self) -> Sequence[ImageFile]:
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

    fal's image URLs expire (result files are kept for a limited time, fal-protocol.md §2.6, §2.11): save the images
    you want to keep soon, with ``Kontext.save`` / ``AsyncKontext.save``.

    Attributes:
        request_id: The request that produced it.
        output: The typed output (``images``, ``seed``, ``has_nsfw_concepts``, ``prompt``, ``timings``).
    """

    request_id: str
    output: EndpointOutput

    @property
    def images(self) -> Sequence[ImageFile]:
        """The generated images (URLs, or data URIs with ``sync_mode``)."""
        return self.output.images

    def to_dict(self) -> dict[str, Any]:
        """``{"request_id": ..., **output}`` (the JSON the CLI prints)."""
        return {"request_id": self.request_id, **self.output.to_dict()}


def image_file_name(request_id: str, index: int, data: bytes, content_type: str | None) -> str:
    """``<request_id>-<index><ext>``, the extension sniffed from the bytes (else from the content type)."""
    safe_id = "".join(c if c.isalnum() or c in "-_." else "_" for c in request_id)
    return f"{safe_id}-{index}{extension_for(content_type, data)}"


def inline_image(image: ImageFile) -> tuple[str | None, bytes] | None:
    """The content type and bytes of an image given as a data URI, or None if it is a URL to download."""
    if image.url.startswith("data:"):
        return decode_data_uri(image.url)
    return None


def write_atomically(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file in the same folder and a rename: never half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temp = path.parent / f".{path.name}.{secrets.token_hex(8)}.part"
    # Not mkstemp: its files are 0600. Created like any new file (0666 less the umask), exclusively.
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temp)
        raise
