"""Images in and out: local files, bytes and PIL images become data URIs; data URIs and bytes get their type.

fal accepts a public URL or a base64 data URI wherever an image URL is expected (fal-protocol.md §2.11). Inlining a
file grows the request body by a third; fal does not document a body limit (a too large body answers 413), so the
client checks a size limit of its own, ``DEFAULT_MAX_IMAGE_BYTES``, which callers can change.
"""

from __future__ import annotations

import base64
import binascii
import io
import os
import re
from pathlib import Path
from typing import Protocol, runtime_checkable
from urllib.parse import unquote_to_bytes

from .errors import FieldProblem, InvalidInputError

__all__ = [
    "DEFAULT_MAX_IMAGE_BYTES",
    "ImageSource",
    "SupportsSave",
    "decode_data_uri",
    "encode_data_uri",
    "extension_for",
    "image_source_to_url",
    "sniff_image_type",
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


def _too_large(field: str, origin: str, size: int, max_bytes: int) -> InvalidInputError:
    return InvalidInputError(
        [
            FieldProblem(
                field,
                origin,
                f"{origin} has {size} bytes, more than the {max_bytes}-byte limit for inlined images; "
                "pass a public URL, or shrink the image (or raise max_image_bytes)",
            )
        ]
    )


def _checked(data: bytes, field: str, origin: str, max_bytes: int) -> str:
    if len(data) > max_bytes:
        raise _too_large(field, origin, len(data), max_bytes)
    mime = sniff_image_type(data)
    if mime is None:
        raise InvalidInputError(
            [
                FieldProblem(
                    field,
                    origin,
                    f"{origin} is not a PNG, JPEG, WebP, GIF, BMP, TIFF or AVIF image (by its first bytes)",
                )
            ]
        )
    return encode_data_uri(data, mime)


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
    if isinstance(source, str) and re.match(r"^(https?://|data:)", source, re.IGNORECASE):
        return source
    if isinstance(source, (str, os.PathLike)):
        path = Path(source).expanduser()
        if not path.is_file():
            raise InvalidInputError(
                [
                    FieldProblem(
                        field, str(source), f"{str(source)!r} is not an http(s) URL, a data: URI or an existing file"
                    )
                ]
            )
        size = path.stat().st_size
        if size > max_bytes:
            raise _too_large(field, str(source), size, max_bytes)
        return _checked(path.read_bytes(), field, str(source), max_bytes)
    if isinstance(source, bytes):
        return _checked(source, field, f"<{len(source)} bytes>", max_bytes)
    if isinstance(source, SupportsSave):
        buffer = io.BytesIO()
        fmt = (source.format or "PNG").upper()
        if fmt not in ("PNG", "JPEG", "WEBP"):
            fmt = "PNG"
        source.save(buffer, format=fmt)
        return _checked(buffer.getvalue(), field, f"<PIL image, {fmt}>", max_bytes)
    raise InvalidInputError(
        [FieldProblem(field, type(source).__name__, "expected a URL, a data URI, a path, bytes or a PIL image")]
    )
