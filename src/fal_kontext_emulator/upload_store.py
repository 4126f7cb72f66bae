"""Files uploaded to the emulator's stand-in of fal storage: pure logic, no I/O; time comes from the caller.

fal's protocol, as fal_client 1.0.3 and fal-js implement it (https://docs.fal.ai/documentation/model-apis/fal-cdn):
a storage token per key, then a single upload, or a multipart upload (create, parts with ETags, complete) for
large files, and an optional lifecycle preference `{"expiration_duration_seconds": N}` after which the file is
gone.
"""

from __future__ import annotations

import hashlib
import json
import math
import secrets
from dataclasses import dataclass, field
from typing import Any


class UploadError(Exception):
    """An upload call that cannot be done; `status` is the HTTP status to answer."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass
class StoredFile:
    """One uploaded file (complete, or a multipart upload still receiving parts). Times are queue seconds."""

    file_id: str
    owner: str
    file_name: str
    content_type: str
    uploaded_at: float
    expires_at: float | None
    lifecycle: dict[str, Any] | None
    data: bytes | None = None
    upload_id: str | None = None
    parts: dict[int, bytes] = field(default_factory=dict)

    def as_json(self) -> dict[str, Any]:
        """What the admin API lists (no bytes)."""
        return {
            "file_id": self.file_id,
            "owner": self.owner,
            "file_name": self.file_name,
            "content_type": self.content_type,
            "size": None if self.data is None else len(self.data),
            "complete": self.data is not None,
            "uploaded_at": self.uploaded_at,
            "expires_at": self.expires_at,
            "lifecycle": self.lifecycle,
        }


def part_etag(data: bytes) -> str:
    """The ETag answered for an uploaded part (quoted MD5 hex, as object stores answer)."""
    return '"' + hashlib.md5(data, usedforsecurity=False).hexdigest() + '"'


def parse_lifecycle(header: str | None) -> tuple[dict[str, Any] | None, float | None]:
    """The lifecycle preference of `X-Fal-Object-Lifecycle[-Preference]` and its expiry in seconds (None: never).

    Raises:
        UploadError: 400 when the header is not a JSON object or its duration is not a positive number or null.
    """
    if header is None:
        return None, None
    try:
        value = json.loads(header)
    except ValueError as err:
        raise UploadError(400, f"X-Fal-Object-Lifecycle must be JSON: {err}") from err
    if not isinstance(value, dict):
        raise UploadError(
            400, 'X-Fal-Object-Lifecycle must be a JSON object, e.g. {"expiration_duration_seconds": 3600}'
        )
    seconds = value.get("expiration_duration_seconds")
    if seconds is None:
        return value, None
    if isinstance(seconds, bool) or not isinstance(seconds, int | float) or not math.isfinite(seconds) or seconds <= 0:
        raise UploadError(400, "expiration_duration_seconds must be a number of seconds > 0, or null")
    return value, float(seconds)


class UploadStore:
    """Uploaded files by id, with storage tokens per key owner and a byte budget."""

    def __init__(self, max_file_bytes: int, token_ttl: float) -> None:
        self.max_file_bytes = max_file_bytes
        self.token_ttl = token_ttl
        self.files: dict[str, StoredFile] = {}
        self._tokens: dict[str, tuple[str, float]] = {}

    def issue_token(self, owner: str, now: float) -> tuple[str, float]:
        """A new storage token for `owner` and when it expires (queue seconds)."""
        token = secrets.token_urlsafe(24)
        self._tokens[token] = (owner, now + self.token_ttl)
        return token, now + self.token_ttl

    def owner_of_token(self, authorization: str | None, now: float) -> str | None:
        """The owner of a valid `Bearer <token>` (or `Token <token>`) storage token, or None."""
        scheme, _, token = (authorization or "").strip().partition(" ")
        held = self._tokens.get(token.strip()) if scheme.lower() in {"bearer", "token"} else None
        if held is None or held[1] <= now:
            return None
        return held[0]

    def create(  # noqa: PLR0913 - one keyword per attribute of a stored file
        self, owner: str, file_name: str, content_type: str, lifecycle: str | None, now: float, *, multipart: bool
    ) -> StoredFile:
        """Register a new file (empty until `complete` or `put`).

        Raises:
            UploadError: 400 on a bad lifecycle header.
        """
        preference, seconds = parse_lifecycle(lifecycle)
        stored = StoredFile(
            file_id=secrets.token_hex(8),
            owner=owner,
            file_name=file_name,
            content_type=content_type,
            uploaded_at=now,
            expires_at=None if seconds is None else now + seconds,
            lifecycle=preference,
            upload_id=secrets.token_hex(8) if multipart else None,
        )
        self.files[stored.file_id] = stored
        return stored

    def put(self, file_id: str, data: bytes, now: float) -> StoredFile:
        """Store the whole content of a created file.

        Raises:
            UploadError: 404 unknown or expired, 413 too large.
        """
        stored = self._held(file_id, now)
        self._check_size(len(data))
        stored.data = data
        return stored

    def add_part(self, file_id: str, upload_id: str, number: int, data: bytes, now: float) -> str:
        """Keep part `number` (from 1) of a multipart upload; return its ETag.

        Raises:
            UploadError: 404 unknown upload, 400 bad part number or already completed, 413 too large.
        """
        stored = self._multipart(file_id, upload_id, now)
        if number < 1:
            raise UploadError(400, "part numbers start at 1")
        stored.parts[number] = data
        self._check_size(sum(len(part) for part in stored.parts.values()))
        return part_etag(data)

    def complete(self, file_id: str, upload_id: str, parts: Any, now: float) -> StoredFile:
        """Join the parts listed in `parts` (`[{"partNumber": n, "etag": "..."}]`, in order) into the file.

        Raises:
            UploadError: 400 when the list is malformed, names a part not uploaded or a wrong ETag.
        """
        stored = self._multipart(file_id, upload_id, now)
        if not isinstance(parts, list) or not parts:
            raise UploadError(400, 'send {"parts": [{"partNumber": 1, "etag": "..."}, ...]}')
        chunks = []
        if not all(isinstance(part, dict) for part in parts):
            raise UploadError(400, 'each part is {"partNumber": n, "etag": "..."}')
        for position, part in enumerate(sorted(parts, key=lambda item: str(item.get("partNumber", "")).zfill(9))):
            number = part.get("partNumber")
            if number != position + 1 or number not in stored.parts:
                raise UploadError(400, f"parts must be numbered 1..n and all uploaded; part {position + 1} is missing")
            if part.get("etag") != part_etag(stored.parts[number]):
                raise UploadError(400, f"part {number}: the etag does not match the uploaded part")
            chunks.append(stored.parts[number])
        stored.data = b"".join(chunks)
        stored.parts.clear()
        return stored

    def read(self, file_id: str, now: float) -> StoredFile | None:
        """A complete, unexpired file, or None."""
        stored = self.files.get(file_id)
        if stored is None or stored.data is None or self._expired(stored, now):
            return None
        return stored

    def listing(self, now: float) -> list[dict[str, Any]]:
        """Every unexpired file, oldest first."""
        return [stored.as_json() for stored in list(self.files.values()) if not self._expired(stored, now)]

    def _held(self, file_id: str, now: float) -> StoredFile:
        stored = self.files.get(file_id)
        if stored is None or self._expired(stored, now):
            raise UploadError(404, "Upload not found")
        return stored

    def _multipart(self, file_id: str, upload_id: str, now: float) -> StoredFile:
        stored = self._held(file_id, now)
        if stored.upload_id != upload_id:
            raise UploadError(404, "Multipart upload not found")
        if stored.data is not None:
            raise UploadError(400, "This multipart upload is already complete")
        return stored

    def _check_size(self, size: int) -> None:
        if size > self.max_file_bytes:
            raise UploadError(413, f"File is larger than {self.max_file_bytes} bytes")

    def _expired(self, stored: StoredFile, now: float) -> bool:
        if stored.expires_at is not None and stored.expires_at <= now:
            self.files.pop(stored.file_id, None)
            return True
        return False
