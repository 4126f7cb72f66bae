"""Remote image URLs, offline: the emulator never downloads them; a URL stands for a picture derived from it.

fal's runner downloads every `http(s)` input ("any URL field accepts public URLs or base64 data URIs",
https://fal.ai/models/fal-ai/flux-pro/kontext/max/api).
The emulator cannot and must not (it stays offline), so by default a remote URL is read as a placeholder
picture made from the URL alone: the same URL always gives the same pixels, two URLs give visibly different
ones, so outputs stay deterministic per seed and input and still depend on it. All of this is our choice.

- `remote_images="refuse"` restores the strict behaviour: every remote URL fails as fal's
  `file_download_error` on the result.
- A host in the reserved `.invalid` top-level domain (RFC 2606: it never resolves anywhere) always fails that
  way, e.g. `https://download-error.invalid/cat.png`: the error path stays testable with the default mode.
"""

from __future__ import annotations

import urllib.parse
from typing import Literal

from fal_kontext_emulator.images import InputImageError, ReadInput, derived_picture

RemoteImages = Literal["placeholder", "refuse"]
REMOTE_IMAGE_MODES: tuple[RemoteImages, ...] = ("placeholder", "refuse")
# RFC 2606 reserves this top-level domain for names that must never resolve.
DOWNLOAD_ERROR_DOMAIN = "invalid"


def remote_input(url: str, mode: RemoteImages) -> ReadInput:
    """How to read a remote input URL without any network access.

    Returns a callable giving the placeholder's PNG bytes, or one raising InputImageError (fal's
    `file_download_error`) when the URL is not http(s), when `mode` is "refuse", or when its host is under
    `.invalid`.
    """
    parsed = urllib.parse.urlsplit(url)
    host = (parsed.hostname or "").rstrip(".")
    if parsed.scheme not in {"http", "https"} or not host:
        return _failing(f"Failed to download the file at {url!r}: only http(s) URLs and data URIs can be read")
    if mode == "refuse":
        return _failing(
            f"Failed to download the file at {url!r}: this emulator is set to refuse remote URLs "
            "(remote_images=refuse); send a data URI or a URL of its own /files"
        )
    if host == DOWNLOAD_ERROR_DOMAIN or host.endswith("." + DOWNLOAD_ERROR_DOMAIN):
        return _failing(f"Failed to download the file at {url!r}: the host does not resolve (.invalid)")
    return lambda: derived_picture(url)


def _failing(message: str) -> ReadInput:
    def read() -> bytes:
        raise InputImageError(message)

    return read
