"""Images in and out: local files, bytes and PIL images are read (and typed) to be inlined as data URIs or uploaded.

fal accepts a public URL or a base64 data URI wherever an image URL is expected (fal-protocol.md §2.11). Inlining a
file grows the request body by a third; fal does not document a body limit (a too large body answers 413), so the
client checks a size limit of its own, ``DEFAULT_MAX_IMAGE_BYTES``, which callers can change.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import io
import mimetypes
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, runtime_checkable
from urllib.parse import unquote_to_bytes

from .errors import FieldProblem, InvalidInputError

__all__ = [
    "DEFAULT_MAX_IMAGE_BYTES",
    "ImageSource",
    "LocalFile",
    "SupportsSave",
    "decode_data_uri",
    "encode_data_uri",
    "extension_for",
    "image_source_to_url",
    "inline",
    "is_url",
    "local_size",
    "read_local",
    "sniff_image_type",
    "too_large",
]

# Our own guard, not a fal limit: 10 MiB of image becomes a ~13.4 MiB JSON body.
DEFAULT_MAX_IMAGE_BYTES = 10 * 1024 * 1024

_SIGNATURES: tuple[tuple[bytes, int, str], ...] = (
    (b"\x89PNG\r\n\x1a\n", 0, "image/png"),
    (b"\xff\xd8\xff", 0, "image/jpeg"),
    (b"GIF87a", 0, "image/gif"),
    (b"GIF89a", 0, "image/gif"),
    (b"BM", 0, "image/bmp"),
    (b"II*\x00", 0, "image/tiff"),
    (b"MM\x00*", 0, "image/tiff"),
)
_EXTENSIONS = {
    "image/png": ".png",
    "image/jpeg": ".jpg",
    "image/webp": ".webp",
    "image/gif": ".gif",
    "image/bmp": ".bmp",
    "image/tiff": ".tiff",
    "image/avif": ".avif",
}
_DATA_URI = re.compile(r"^data:(?P<type>[\w.+-]+/[\w.+-]+)?(?P<params>(?:;[^,;]*)*?),(?P<data>.*)$", re.DOTALL)


@runtime_checkable
class SupportsSave(Protocol):
    """What we need of a PIL image: ``save(fp, format=...)`` and a ``format`` (None for images made in memory)."""

    format: str | None

    def save(self, fp: io.BytesIO, format: str | None = None) -> None:
        """Write the image to ``fp`` in ``format``."""


ImageSource = str | os.PathLike[str] | bytes | SupportsSave


def sniff_image_type(data: bytes) -> str | None:
    """The MIME type of image bytes from their magic number, or None if not a format we recognise."""
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    if data[4:8] == b"ftyp" and data[8:12] in (b"avif", b"avis"):
        return "image/avif"
    for magic, offset, mime in _SIGNATURES:
        if data[offset : offset + len(magic)] == magic:
            return mime
    return None


def extension_for(content_type: str | None, data: bytes = b"") -> str:
    """A file extension (with dot) for image bytes: sniffed from ``data`` first, then from ``content_type``."""
    sniffed = sniff_image_type(data) if data else None
    mime = sniffed or (content_type or "").split(";")[0].strip().lower()
    return _EXTENSIONS.get(mime, ".bin")


def encode_data_uri(data: bytes, content_type: str) -> str:
    """``data:<type>;base64,<data>``."""
    return f"data:{content_type};base64,{base64.b64encode(data).decode('ascii')}"


def decode_data_uri(uri: str) -> tuple[str | None, bytes]:
    """The content type and bytes of a ``data:`` URI (base64 or percent-encoded).

    Raises:
        ValueError: not a well-formed data URI.
    """
    match = _DATA_URI.match(uri)
    if not match:
        raise ValueError("not a data: URI")
    payload = match["data"]
    if ";base64" in match["params"]:
        try:
            return match["type"], base64.b64decode(payload, validate=False)
        except (binascii.Error, ValueError) as err:
            raise ValueError(f"bad base64 in data URI: {err}") from err
    return match["type"], unquote_to_bytes(payload)


def too_large(field: str, origin: str, size: int, max_bytes: int) -> InvalidInputError:
    """The error for an image of ``size`` bytes, more than ``max_bytes`` may be inlined."""
    return InvalidInputError(
        [
            FieldProblem(
                field,
                origin,
                f"{origin} has {size} bytes, more than the {max_bytes}-byte limit for inlined images; "
                "pass a public URL, let the client upload it to fal storage (storage_url=, upload_threshold=), "
                "or shrink the image (or raise max_image_bytes)",
            )
        ]
    )


@dataclass(frozen=True, slots=True)
class LocalFile:
    """A local input read into memory, to inline as a data URI or to upload.

    Attributes:
        data: The bytes.
        content_type: Their MIME type (sniffed for images).
        file_name: The name to store it under (the file's own name, else ``image.<ext>`` / ``upload.<ext>``).
        origin: Where it came from, for messages (the path, ``<123 bytes>``, ``<PIL image, PNG>``).
    """

    data: bytes = dataclasses.field(repr=False)
    content_type: str
    file_name: str
    origin: str


def _not_an_image(field: str, origin: str) -> InvalidInputError:
    return InvalidInputError(
        [
            FieldProblem(
                field, origin, f"{origin} is not a PNG, JPEG, WebP, GIF, BMP, TIFF or AVIF image (by its first bytes)"
            )
        ]
    )


def _typed(data: bytes, field: str, origin: str, name: str | None, images_only: bool) -> LocalFile:
    if not data:
        raise InvalidInputError([FieldProblem(field, origin, f"{origin} is empty")])
    mime = sniff_image_type(data)
    if mime is None:
        if images_only:
            raise _not_an_image(field, origin)
        mime = (mimetypes.guess_type(name)[0] if name else None) or "application/octet-stream"
    stem = "image" if mime.startswith("image/") else "upload"
    return LocalFile(data, mime, name or f"{stem}{_EXTENSIONS.get(mime, '.bin')}", origin)


def _pil_bytes(image: SupportsSave) -> tuple[bytes, str]:
    buffer = io.BytesIO()
    fmt = (image.format or "PNG").upper()
    if fmt not in ("PNG", "JPEG", "WEBP"):
        fmt = "PNG"
    image.save(buffer, format=fmt)
    return buffer.getvalue(), fmt


def is_url(source: object) -> bool:
    """Whether ``source`` is an ``http(s)://`` URL or a ``data:`` URI (sent as is)."""
    return isinstance(source, str) and re.match(r"^(https?://|data:)", source, re.IGNORECASE) is not None


def local_size(source: ImageSource) -> int | None:
    """The size of a local path or bytes without reading the file; None for URLs, PIL images and missing files."""
    if isinstance(source, bytes):
        return len(source)
    if isinstance(source, (str, os.PathLike)) and not is_url(source):
        path = Path(source).expanduser()
        return path.stat().st_size if path.is_file() else None
    return None


def read_local(source: ImageSource, *, field: str = "image_url", images_only: bool = True) -> LocalFile:
    """Read a local path, bytes or a PIL image into a ``LocalFile``.

    Args:
        source: A local path (str or Path), bytes, or a PIL image (saved as PNG unless it is a JPEG or WebP).
        field: Field name for error messages.
        images_only: Refuse bytes that are not an image we recognise (else their type is guessed from the name).

    Raises:
        InvalidInputError: a URL, a missing path, empty or non-image bytes, or another kind of value.
    """
    if isinstance(source, (str, os.PathLike)) and not is_url(source):
        path = Path(source).expanduser()
        if path.is_dir():
            raise InvalidInputError(
                [FieldProblem(field, str(source), f"{str(source)!r} is a directory, not an image file")]
            )
        if not path.is_file():
            raise InvalidInputError(
                [
                    FieldProblem(
                        field, str(source), f"{str(source)!r} is not an http(s) URL, a data: URI or an existing file"
                    )
                ]
            )
        return _typed(path.read_bytes(), field, str(source), path.name, images_only)
    if isinstance(source, bytes):
        return _typed(source, field, f"<{len(source)} bytes>", None, images_only)
    if isinstance(source, SupportsSave):
        data, fmt = _pil_bytes(source)
        return _typed(data, field, f"<PIL image, {fmt}>", None, images_only)
    if is_url(source):
        raise InvalidInputError(
            [FieldProblem(field, source, "is a URL already; send it as it is, there is nothing to read")]
        )
    raise InvalidInputError([FieldProblem(field, type(source).__name__, "expected a local path, bytes or a PIL image")])


def inline(file: LocalFile, *, field: str = "image_url", max_bytes: int = DEFAULT_MAX_IMAGE_BYTES) -> str:
    """``file`` as a data URI.

    Raises:
        InvalidInputError: it is larger than ``max_bytes``.
    """
    if len(file.data) > max_bytes:
        raise too_large(field, file.origin, len(file.data), max_bytes)
    return encode_data_uri(file.data, file.content_type)


def image_source_to_url(
    source: ImageSource, *, field: str = "image_url", max_bytes: int = DEFAULT_MAX_IMAGE_BYTES
) -> str:
    """A value for ``image_url``/``image_urls``: URLs and data URIs pass through, files/bytes/PIL become data URIs.

    Args:
        source: An ``http(s)://`` URL, a ``data:`` URI, a local path (str or Path), image bytes, or a PIL image.
        field: Field name for error messages.
        max_bytes: Largest image inlined as a data URI.

    Raises:
        InvalidInputError: the path does not exist, the bytes are not an image, or the image is too large.
    """
    if is_url(source):
        assert isinstance(source, str)
        return source
    size = local_size(source)
    if size is not None and size > max_bytes:  # refused before reading a large file
        raise too_large(field, str(source) if not isinstance(source, bytes) else f"<{size} bytes>", size, max_bytes)
    return inline(read_local(source, field=field), field=field, max_bytes=max_bytes)
