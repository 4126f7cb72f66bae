"""Uploads to fal storage without I/O: the requests of fal's upload protocol, their answers, and a flow of commands.

fal's storage protocol, as fal's own clients speak it (fal_client ``upload``, fal-js ``storage.ts``):

1. ``POST <rest>/storage/auth/token?storage_type=fal-cdn-v3`` with the API key and the body ``{}`` answers a
   short-lived upload token ``{token, token_type, base_url, expires_at}``.
2. A file up to the multipart threshold (100 MB) is one ``POST <cdn>/files/upload`` of the raw bytes with
   ``Authorization: <token_type> <token>``, ``Content-Type`` and ``X-Fal-File-Name``; it answers ``{access_url}``.
3. A larger file is uploaded in parts: ``POST <base_url>/files/upload/multipart`` answers
   ``{access_url, uploadId}``; each 10 MB part is ``PUT <access_url>/multipart/<uploadId>/<n>`` and answers an
   ``ETag``; ``POST <access_url>/multipart/<uploadId>/complete`` with ``{"parts": [{partNumber, etag}]}`` ends it.
4. The lifecycle preference ``{"expiration_duration_seconds": N}`` goes in the headers ``X-Fal-Object-Lifecycle``
   and ``X-Fal-Object-Lifecycle-Preference`` (https://docs.fal.ai/documentation/model-apis/media-expiration).

The hosts are fal's REST host (https://rest.fal.ai) for the token and fal's CDN (https://v3.fal.media) for the
upload, or one configured URL for both (the emulator serves the same paths under its base URL). The API key is only
ever sent to the token URL; the upload token only to the configured hosts, fal's own hosts, and the URLs of the
upload it answered for on those hosts.

Our choices where fal documents nothing (each configurable in ``StorageSettings``): parts are sent one after the
other (fal_client sends up to 10 at once); a token is renewed 30 s before it expires; no fallback to fal's older GCS
upload path; failed requests are retried like the queue's idempotent reads, since an upload creates no job and
costs nothing (a repeated upload at worst stores a second copy).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import quote, urlsplit

from fal_kontext.errors import (
    APIStatusError,
    FieldProblem,
    InvalidInputError,
    NotFoundError,
    UnexpectedResponseError,
)

from .answers import error_from_no_answer, error_from_status, json_or_none, lower_headers
from .commands import Answer, Flow, NoAnswer, Send
from .hosts import FAL_CDN_URL, FAL_REST_URL, is_fal_queue, is_loopback, normalise_base_url, origin, token_may_go_to
from .images import LocalFile
from .send import send

if TYPE_CHECKING:
    from .settings import Settings

__all__ = [
    "DEFAULT_UPLOAD_THRESHOLD",
    "EXPIRATIONS",
    "MULTIPART_PART_SIZE",
    "MULTIPART_THRESHOLD",
    "Expiration",
    "StorageSettings",
    "StorageToken",
    "TokenCache",
    "check_upload_threshold",
    "lifecycle_headers",
    "parse_token",
    "should_upload",
    "storage_for",
    "storage_of",
    "token_request",
    "upload_flow",
]

STORAGE_TYPE = "fal-cdn-v3"
# fal_client's MULTIPART_THRESHOLD and MULTIPART_CHUNK_SIZE
# (https://github.com/fal-ai/fal/blob/main/projects/fal_client/src/fal_client/client.py).
MULTIPART_THRESHOLD = 100 * 1024 * 1024
MULTIPART_PART_SIZE = 10 * 1024 * 1024
# Ours: local inputs larger than this are uploaded rather than inlined as data URIs (see ``should_upload``).
DEFAULT_UPLOAD_THRESHOLD = 1024 * 1024
# Ours: a token this close to its expiry is renewed first, so that it does not expire during the upload.
TOKEN_RENEWAL_MARGIN = 30.0

# fal's named expirations (fal_client ``StorageSettings.expires_in``); "immediate" is 60 s because fal's backend reads
# 0 as "no expiration", "never" sends no duration (fal's default retention).
Expiration = Literal["never", "immediate", "1h", "1d", "7d", "30d", "1y"] | int
EXPIRATIONS: Mapping[str, int | None] = {
    "never": None,
    "immediate": 60,
    "1h": 3600,
    "1d": 86400,
    "7d": 604800,
    "30d": 2592000,
    "1y": 31536000,
}


@dataclass(frozen=True, slots=True)
class StorageToken:
    """An upload token from fal's token endpoint.

    Attributes:
        token: The secret (never shown in ``repr``).
        token_type: The word before it in ``Authorization`` (fal: ``Bearer``).
        base_url: Where multipart uploads start.
        expires_at: When it expires (Unix seconds), or None if the answer did not say.
    """

    token: str = field(repr=False)
    token_type: str
    base_url: str
    expires_at: float | None

    @property
    def authorization(self) -> str:
        """The ``Authorization`` header value."""
        return f"{self.token_type} {self.token}"

    def usable(self, now: float, margin: float = TOKEN_RENEWAL_MARGIN) -> bool:
        """Whether the token is still valid ``margin`` seconds from ``now`` (Unix seconds)."""
        return self.expires_at is None or now + margin < self.expires_at


@dataclass(frozen=True, slots=True)
class StorageSettings:
    """Where and how to upload.

    Attributes:
        rest_url: Where the token is asked for (with the API key); fal: https://rest.fal.ai.
        cdn_url: Where single uploads go (with the token); fal: https://v3.fal.media.
        expires_in: The lifecycle preference: one of ``EXPIRATIONS``' names or seconds (> 0); None sends none
            (fal's default retention, which fal does not state).
        multipart_threshold: Files larger than this (bytes) are uploaded in parts; fal's clients: 100 MB.
        part_size: Bytes per part; fal's clients: 10 MB.
        read_timeout: Seconds to wait for each storage answer (and to write each body).

    Failed storage requests are retried by the client's ``RetryPolicy``, as idempotent calls.
    """

    rest_url: str = FAL_REST_URL
    cdn_url: str = FAL_CDN_URL
    expires_in: Expiration | None = None
    multipart_threshold: int = MULTIPART_THRESHOLD
    part_size: int = MULTIPART_PART_SIZE
    read_timeout: float = 120.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "rest_url", normalise_base_url(self.rest_url))
        object.__setattr__(self, "cdn_url", normalise_base_url(self.cdn_url))
        lifecycle_headers(self.expires_in)  # raises on a bad value, now rather than at the first upload
        if self.multipart_threshold < 1 or self.part_size < 1:
            raise ValueError("multipart_threshold and part_size must be at least 1 byte")
        if not self.read_timeout > 0:
            raise ValueError("read_timeout must be > 0")

    @classmethod
    def at(cls, url: str, **options: Any) -> StorageSettings:
        """Settings for a server that serves fal's storage paths under one base URL (the emulator)."""
        return cls(rest_url=url, cdn_url=url, **options)


class TokenCache:
    """The upload token of a client's last upload, reused by its next one until it nearly expires (fal's clients do
    the same: one token request per client, not per file)."""

    __slots__ = ("token",)

    def __init__(self) -> None:
        self.token: StorageToken | None = None


def storage_for(queue_base_url: str, storage_url: str | None = None, **options: Any) -> StorageSettings | None:
    """Where a client uploads: ``storage_url`` if given; fal's storage when the queue base URL is fal's; the base URL
    itself when it is on this machine (the emulator serves fal's storage paths there, as it serves the request list
    recovery reads); else nowhere.

    Our rule: an aggregator may not proxy fal storage (and fal's own storage would not accept its token), so a client
    pointed at another host uploads only where it is told to.

    Args:
        queue_base_url: The client's queue base URL.
        storage_url: A server with fal's storage paths under one base URL; fal's REST host means fal's own layout.
        **options: Other ``StorageSettings`` fields.

    Raises:
        ValueError: ``storage_url`` is not an absolute http(s) URL, or a bad option.
    """
    if storage_url is not None:
        if origin(storage_url).host == origin(FAL_REST_URL).host:
            return StorageSettings(**options)
        return StorageSettings.at(storage_url, **options)
    if is_fal_queue(queue_base_url):
        return StorageSettings(**options)
    if is_loopback(queue_base_url):
        return StorageSettings.at(queue_base_url, **options)
    return None


def check_upload_threshold(value: object) -> int | None:
    """``upload_threshold`` checked: a whole number of bytes >= 0, or None (never upload local inputs).

    Raises:
        InvalidInputError: anything else.
    """
    if value is None or (isinstance(value, int) and not isinstance(value, bool) and value >= 0):
        return value
    raise InvalidInputError(
        [FieldProblem("upload_threshold", value, "expected a whole number of bytes >= 0, or None to always inline")]
    )


def should_upload(size: int, *, threshold: int | None, storage_available: bool) -> bool:
    """Whether a local input of ``size`` bytes is uploaded (True) or inlined as a data URI (False).

    Our rule, not fal's: fal accepts both everywhere. Small files are inlined (no extra round trips, nothing stored);
    larger ones are uploaded, because the submit that carries them is never sent twice once it may have reached the
    server, so its body should stay small, while an upload can safely be repeated. Without storage (an aggregator,
    which may not proxy fal storage) everything is inlined, up to the inline limit.

    Args:
        size: The input's size in bytes.
        threshold: Upload above this many bytes; None never uploads.
        storage_available: Whether the client knows where fal storage is.
    """
    return storage_available and threshold is not None and size > threshold


def lifecycle_headers(expires_in: Expiration | None) -> dict[str, str]:
    """The lifecycle preference headers for ``expires_in`` (empty for None and ``"never"``).

    Raises:
        ValueError: not a name of ``EXPIRATIONS`` nor a positive number of seconds.
    """
    if expires_in is None:
        return {}
    if isinstance(expires_in, bool) or not isinstance(expires_in, (int, str)):
        raise ValueError(f"expires_in must be one of {', '.join(EXPIRATIONS)} or seconds > 0, not {expires_in!r}")
    if isinstance(expires_in, int):
        if expires_in <= 0:
            raise ValueError(f"expires_in must be > 0 seconds, not {expires_in}")
        seconds: int | None = expires_in
    elif expires_in in EXPIRATIONS:
        seconds = EXPIRATIONS[expires_in]
    else:
        raise ValueError(f"expires_in must be one of {', '.join(EXPIRATIONS)} or seconds > 0, not {expires_in!r}")
    if seconds is None:
        return {}
    # fal_client sends both: the CDN reads X-Fal-Object-Lifecycle, storage-backed uploads the -Preference form.
    value = json.dumps({"expiration_duration_seconds": seconds})
    return {"X-Fal-Object-Lifecycle": value, "X-Fal-Object-Lifecycle-Preference": value}


def token_request(settings: StorageSettings, authorization: str | None) -> Send:
    """The token request: the only storage request that carries the API key (``authorization``)."""
    headers = {"Accept": "application/json", "Content-Type": "application/json"}
    if authorization:
        headers["Authorization"] = authorization
    url = f"{settings.rest_url}/storage/auth/token?storage_type={STORAGE_TYPE}"
    return Send("POST", url, headers, b"{}", settings.read_timeout)


def _json_object(answer: Answer) -> dict[str, Any] | None:
    body = json_or_none(answer.content)
    return body if isinstance(body, dict) else None


def _unexpected(what: str, answer: Answer) -> UnexpectedResponseError:
    return UnexpectedResponseError(
        f"fal storage: {what} (HTTP {answer.status_code})", body=answer.content.decode("utf-8", "replace")[:500]
    )


def _expiry(value: object) -> float | None:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, str):
        try:
            return datetime.fromisoformat(value).timestamp()
        except ValueError:
            return None
    return None


def parse_token(answer: Answer) -> StorageToken:
    """The token of a 2xx token answer.

    Raises:
        UnexpectedResponseError: the answer lacks ``token``, ``token_type`` or ``base_url``.
    """
    body = _json_object(answer)
    values = [body.get(name) if body else None for name in ("token", "token_type", "base_url")]
    token, token_type, base_url = values
    if not (isinstance(token, str) and token and isinstance(token_type, str) and isinstance(base_url, str)):
        raise _unexpected("the token answer lacks token, token_type or base_url", answer)
    try:
        base = normalise_base_url(base_url)
    except ValueError:
        raise _unexpected(f"the token answer's base_url {base_url!r} is not an http(s) URL", answer) from None
    return StorageToken(token, token_type or "Bearer", base, _expiry(body.get("expires_at") if body else None))


def _token_may_go_to(url: str, settings: StorageSettings) -> bool:
    return token_may_go_to(url, (settings.rest_url, settings.cdn_url))


def _checked_url(url: object, what: str, answer: Answer, settings: StorageSettings) -> str:
    if not isinstance(url, str) or urlsplit(url).scheme not in ("http", "https") or not urlsplit(url).netloc:
        raise _unexpected(f"the {what} answer has no http(s) access_url", answer)
    if not _token_may_go_to(url, settings):
        raise _unexpected(
            f"the {what} answer names {urlsplit(url).netloc}, neither the configured storage host nor fal's; "
            "the upload token is not sent there",
            answer,
        )
    return url.rstrip("/")


def _error(answer: Answer, step: str, settings: StorageSettings) -> APIStatusError:
    """The typed error of a storage error answer; 404/405 on the token mean the server has no fal storage."""
    if step == "token" and answer.status_code in (404, 405):
        return NotFoundError(
            f"{settings.rest_url} does not offer fal storage (the token request answered {answer.status_code})",
            status_code=answer.status_code,
            body=answer.content.decode("utf-8", "replace")[:500],
            hint=(
                "pass storage_url= the server that does (fal: https://rest.fal.ai), or send the image as a public "
                "URL or a data URI (upload_threshold=None inlines local files)"
            ),
        )
    return error_from_status(answer.status_code, answer.headers, answer.content, None)


def _sent(request: Send, step: str, settings: Settings, deadline: float | None) -> Flow[Answer]:
    """Send ``request`` (an upload creates no job: retried as an idempotent call) within ``deadline``; returns a 2xx
    answer or raises the typed error."""
    storage = storage_of(settings)
    if deadline is not None:
        left = max(0.0, deadline - settings.clock())
        request = replace(
            request, read_timeout=left if request.read_timeout is None else min(request.read_timeout, left)
        )
    sent = yield from send(request, settings.pacing, idempotent=True, deadline=deadline)
    outcome = sent.outcome
    if isinstance(outcome, NoAnswer):
        raise error_from_no_answer(
            outcome,
            request_id=None,
            operation=f"fal storage: the {step} request to {urlsplit(request.url).netloc}",
            submit=False,
            failed="got no answer",
            advice="Check the network, retry",
        )
    if outcome.status_code >= 400:
        raise _error(outcome, step, storage)
    return outcome


def storage_of(settings: Settings) -> StorageSettings:
    """The client's storage. Raises ``InvalidInputError`` naming ``storage_url`` when it knows none."""
    if settings.storage is None:
        raise InvalidInputError(
            [
                FieldProblem(
                    "storage_url",
                    None,
                    f"no fal storage is known for {settings.base_url} (an aggregator may not proxy it); pass "
                    "storage_url= (or set FAL_KONTEXT_STORAGE_URL), or send the file as a public URL or data URI",
                )
            ]
        )
    return settings.storage


def _token(settings: Settings, deadline: float | None) -> Flow[StorageToken]:
    cached = settings.storage_tokens.token
    if cached is not None and cached.usable(settings.wall()):
        return cached
    authorization = settings.authorization()
    answer = yield from _sent(token_request(storage_of(settings), authorization), "token", settings, deadline)
    token = settings.storage_tokens.token = parse_token(answer)
    return token


def _file_headers(file: LocalFile, token: StorageToken, settings: StorageSettings) -> dict[str, str]:
    return {
        "Authorization": token.authorization,
        "Accept": "application/json",
        "Content-Type": file.content_type,
        # HTTP headers are Latin-1: a name outside it is sent percent-encoded rather than failing the upload.
        "X-Fal-File-Name": quote(file.file_name, safe=" !#$&'()+,-.;=@[]^_`{}~"),
        **lifecycle_headers(settings.expires_in),
    }


def upload_flow(file: LocalFile, settings: Settings, deadline: float | None = None) -> Flow[str]:
    """Upload ``file`` to the client's fal storage (``settings.storage``); returns the file's URL.

    The token of the client's last upload is reused while it is valid (``settings.storage_tokens``); the API key
    (``settings.authorization``) goes to the token request only. Every request ends by ``deadline`` (a time on
    ``settings.clock``), if one is given.

    Raises:
        InvalidInputError: the client knows no storage (``storage_url=``). MissingCredentialsError: no key.
        AuthenticationError: the key was refused. NotFoundError: the storage URL offers no fal storage.
        APIError: a storage request failed after the retries the policy allows.
        UnexpectedResponseError: an answer is not what fal's protocol says.
    """
    storage = storage_of(settings)
    token = yield from _token(settings, deadline)
    if len(file.data) > storage.multipart_threshold:
        return (yield from _multipart(file, settings, token, deadline))
    request = Send(
        "POST", f"{storage.cdn_url}/files/upload", _file_headers(file, token, storage), file.data, storage.read_timeout
    )
    answer = yield from _sent(request, "upload", settings, deadline)
    body = _json_object(answer)
    return _checked_url(body.get("access_url") if body else None, "upload", answer, storage)


def _multipart(file: LocalFile, settings: Settings, token: StorageToken, deadline: float | None) -> Flow[str]:
    storage = storage_of(settings)
    if not _token_may_go_to(token.base_url, storage):
        raise UnexpectedResponseError(
            f"fal storage: the token's base_url {token.base_url!r} is neither the configured storage host nor fal's; "
            "the upload token is not sent there"
        )
    start = Send(
        "POST",
        f"{token.base_url}/files/upload/multipart",
        _file_headers(file, token, storage),
        b"",
        storage.read_timeout,
    )
    answer = yield from _sent(start, "multipart start", settings, deadline)
    body = _json_object(answer)
    upload_id = body.get("uploadId") if body else None
    if not isinstance(upload_id, str) or not upload_id:
        raise _unexpected("the multipart start answer has no uploadId", answer)
    access_url = _checked_url(body.get("access_url") if body else None, "multipart start", answer, storage)
    parts: list[dict[str, object]] = []
    view = memoryview(file.data)
    for number, offset in enumerate(range(0, len(file.data), storage.part_size), start=1):
        token = yield from _token(settings, deadline)
        headers = {
            "Authorization": token.authorization,
            "Content-Type": file.content_type,
            "Accept-Encoding": "identity",  # as fal_client: keeps the ETag header intact
        }
        chunk = bytes(view[offset : offset + storage.part_size])
        part = Send("PUT", f"{access_url}/multipart/{upload_id}/{number}", headers, chunk, storage.read_timeout)
        answer = yield from _sent(part, f"part {number}", settings, deadline)
        etag = lower_headers(answer.headers).get("etag")
        if not etag:
            raise _unexpected(f"part {number} was answered without an ETag", answer)
        parts.append({"partNumber": number, "etag": etag})
    token = yield from _token(settings, deadline)
    complete = Send(
        "POST",
        f"{access_url}/multipart/{upload_id}/complete",
        {"Authorization": token.authorization, "Content-Type": "application/json", "Accept": "application/json"},
        json.dumps({"parts": parts}).encode("utf-8"),
        storage.read_timeout,
    )
    yield from _sent(complete, "multipart completion", settings, deadline)
    return access_url
