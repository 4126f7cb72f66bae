"""Local files, the executors' side of file I/O: input images read from paths, bytes or PIL images, and result
images written atomically. What the bytes are and how they are sent is ``protocol.images``'."""

from __future__ import annotations

import contextlib
import io
import mimetypes
import os
import secrets
from pathlib import Path
from typing import Protocol, runtime_checkable

from .errors import FieldProblem, InvalidInputError
from .protocol.commands import LocalSize, ReadFile, WriteFile
from .protocol.images import (
    DEFAULT_MAX_IMAGE_BYTES,
    LocalFile,
    extension_for,
    inline,
    is_url,
    sniff_image_type,
    too_large,
)

__all__ = [
    "DEFAULT_MAX_IMAGE_BYTES",
    "ImageSource",
    "SupportsSave",
    "image_source_to_url",
    "local_size",
    "perform",
    "read_local",
    "write_atomically",
    "write_file",
]


@runtime_checkable
class SupportsSave(Protocol):
    """What we need of a PIL image: ``save(fp, format=...)`` and a ``format`` (None for images made in memory)."""

    format: str | None

    def save(self, fp: io.BytesIO, format: str | None = None) -> None:
        """Write the image to ``fp`` in ``format``."""


ImageSource = str | os.PathLike[str] | bytes | SupportsSave


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
    return LocalFile(data, mime, name or f"{stem}{extension_for(mime)}", origin)


def _pil_bytes(image: SupportsSave) -> tuple[bytes, str]:
    buffer = io.BytesIO()
    fmt = (image.format or "PNG").upper()
    if fmt not in ("PNG", "JPEG", "WEBP"):
        fmt = "PNG"
    image.save(buffer, format=fmt)
    return buffer.getvalue(), fmt


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


def write_file(directory: str | os.PathLike[str], name: str, data: bytes) -> Path:
    """Write ``data`` as ``name`` in ``directory`` (made if missing), atomically (``write_atomically``); returns the
    path written."""
    path = Path(directory) / name
    write_atomically(path, data)
    return path


def image_source_to_url(
    source: ImageSource, *, field: str = "image_url", max_bytes: int = DEFAULT_MAX_IMAGE_BYTES
) -> str:
    """A value for ``image_url``/``image_urls`` outside the verbs (the CLI, the batch runner): URLs and data URIs
    pass through, files, bytes and PIL images become data URIs (``edit`` also uploads large ones).

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


def perform(command: LocalSize | ReadFile | WriteFile) -> object:
    """The outcome of a file command of the protocol, for both executors (the file system has no async API worth
    the thread hop for files this size)."""
    if isinstance(command, LocalSize):
        return local_size(command.source)  # type: ignore[arg-type]
    if isinstance(command, ReadFile):
        return read_local(command.source, field=command.field_name, images_only=command.images_only)  # type: ignore[arg-type]
    return write_file(command.directory, command.name, command.data)  # type: ignore[arg-type]
