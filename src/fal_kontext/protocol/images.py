"""Image bytes without I/O: their type by their first bytes, data URIs, and a local file read into memory.

fal accepts a public URL or a base64 data URI wherever an image URL is expected ("Files" on
https://fal.ai/models/fal-ai/flux-pro/kontext/max/api). Inlining a file grows the request body by a
third; fal does not document a body limit (a too large body answers 413), so the client checks a size limit of its
own, ``DEFAULT_MAX_IMAGE_BYTES``, which callers can change.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import re
from dataclasses import dataclass
from urllib.parse import unquote_to_bytes

from fal_kontext.errors import FieldProblem, InvalidInputError

__all__ = [
    "DEFAULT_MAX_IMAGE_BYTES",
    "LocalFile",
    "decode_data_uri",
    "encode_data_uri",
    "extension_for",
    "image_file_name",
    "inline",
    "inline_image",
    "is_data_uri",
    "is_url",
    "sniff_image_type",
    "split_data_uri",
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
# A data URI (RFC 2397): data:[<media type>][;<parameter>]*,<data>. Its scheme name, as every URI scheme's, is
# case-insensitive (RFC 3986, section 3.1): DATA: is one too.
_DATA_URI = re.compile(r"^data:(?P<type>[^;,]*)(?P<params>(?:;[^;,]*)*),(?P<data>.*)$", re.IGNORECASE | re.DOTALL)


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


def is_data_uri(value: str) -> bool:
    """Whether ``value`` is meant as a data URI: its scheme is ``data:`` (in any case), well-formed or not."""
    return value[:5].lower() == "data:"


def split_data_uri(uri: str) -> tuple[str, str, str] | None:
    """The media type (or ""), the parameters (``;base64``, ...) and the payload of a data URI, or None when it is
    not one (no ``data:`` scheme, or no comma before its payload)."""
    match = _DATA_URI.match(uri)
    return (match["type"], match["params"], match["data"]) if match else None


def decode_data_uri(uri: str) -> tuple[str | None, bytes]:
    """The content type (None when it names none) and bytes of a data URI (base64 or percent-encoded).

    Raises:
        ValueError: not a well-formed data URI.
    """
    parts = split_data_uri(uri)
    if parts is None:
        raise ValueError("not a data: URI")
    media_type, parameters, payload = parts
    if ";base64" in parameters.lower():
        try:
            return media_type or None, base64.b64decode(payload, validate=False)
        except (binascii.Error, ValueError) as err:
            raise ValueError(f"bad base64 in data URI: {err}") from err
    return media_type or None, unquote_to_bytes(payload)


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


def is_url(source: object) -> bool:
    """Whether ``source`` is an ``http(s)://`` URL or a ``data:`` URI (sent as is)."""
    return isinstance(source, str) and re.match(r"^(https?://|data:)", source, re.IGNORECASE) is not None


def inline(file: LocalFile, *, field: str = "image_url", max_bytes: int = DEFAULT_MAX_IMAGE_BYTES) -> str:
    """``file`` as a data URI.

    Raises:
        InvalidInputError: it is larger than ``max_bytes``.
    """
    if len(file.data) > max_bytes:
        raise too_large(field, file.origin, len(file.data), max_bytes)
    return encode_data_uri(file.data, file.content_type)


def image_file_name(request_id: str, index: int, data: bytes, content_type: str | None) -> str:
    """``<request_id>-<index><ext>``, the extension sniffed from the bytes (else from the content type)."""
    safe_id = "".join(c if c.isalnum() or c in "-_." else "_" for c in request_id)
    return f"{safe_id}-{index}{extension_for(content_type, data)}"


def inline_image(url: str) -> tuple[str | None, bytes] | None:
    """The content type and bytes of a result image given as a data URI, or None if it is a URL to download."""
    if is_data_uri(url):
        return decode_data_uri(url)
    return None
