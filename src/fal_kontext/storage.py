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
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from random import random as uniform_random
from typing import Any, Literal
from urllib.parse import quote, urlsplit

from .commands import Answer, Flow, NoAnswer, Send, Sleep, exchange
from .errors import (
    APIConnectionError,
    APIStatusError,
    APITimeoutError,
    FieldProblem,
    InvalidInputError,
    NotFoundError,
    UnexpectedResponseError,
    error_from_status,
)
from .files import DEFAULT_MAX_IMAGE_BYTES, ImageSource, LocalFile, inline, is_url, local_size, read_local, too_large
from .retry import Failure, Operation, RetryPolicy
from .urls import FAL_QUEUE_HOSTS, is_loopback, normalise_base_url

__all__ = [
    "DEFAULT_UPLOAD_THRESHOLD",
    "EXPIRATIONS",
    "FAL_CDN_URL",
    "FAL_REST_URL",
    "MULTIPART_PART_SIZE",
    "MULTIPART_THRESHOLD",
    "Expiration",
    "PendingUpload",
    "StorageSettings",
    "StorageToken",
    "Uploaded",
    "check_upload_threshold",
    "client_storage",
    "lifecycle_headers",
    "parse_token",
    "prepare_image",
    "should_upload",
    "storage_for",
    "token_request",
    "upload_flow",
    "upload_pending_flow",
]

FAL_REST_URL = "https://rest.fal.ai"
FAL_CDN_URL = "https://v3.fal.media"
STORAGE_TYPE = "fal-cdn-v3"
# fal_client's MULTIPART_THRESHOLD and MULTIPART_CHUNK_SIZE (fal-protocol.md §3.6).
MULTIPART_THRESHOLD = 100 * 1024 * 1024
MULTIPART_PART_SIZE = 10 * 1024 * 1024
ENV_STORAGE_URL = "FAL_KONTEXT_STORAGE_URL"
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

# Hosts fal's token answer and upload answers may name (fal's CDN hosts are v3.fal.media, v3b.fal.media, ...).
_FAL_DOMAINS = ("fal.media", "fal.ai", "fal.run")


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
        retry: How failed storage requests are retried.
        random: Jitter source in [0, 1).
        wall_clock: Unix seconds (token expiry is a wall-clock time).
    """

    rest_url: str = FAL_REST_URL
    cdn_url: str = FAL_CDN_URL
    expires_in: Expiration | None = None
    multipart_threshold: int = MULTIPART_THRESHOLD
    part_size: int = MULTIPART_PART_SIZE
    read_timeout: float = 120.0
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    random: Callable[[], float] = field(default=uniform_random, repr=False)
    wall_clock: Callable[[], float] = field(default=time.time, repr=False)

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


@dataclass(frozen=True, slots=True)
class Uploaded:
    """The outcome of an upload: the file's URL, and the token to reuse for the next upload."""

    url: str
    token: StorageToken


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
        if (urlsplit(storage_url).hostname or "").lower() == urlsplit(FAL_REST_URL).hostname:
            return StorageSettings(**options)
        return StorageSettings.at(storage_url, **options)
    if (urlsplit(queue_base_url).hostname or "").lower() in FAL_QUEUE_HOSTS:
        return StorageSettings(**options)
    if is_loopback(queue_base_url):
        return StorageSettings.at(queue_base_url, **options)
    return None


def client_storage(
    queue_base_url: str, storage_url: str | None, environ: Mapping[str, str] | None = None, **options: Any
) -> StorageSettings | None:
    """A client's storage (``storage_for``), ``storage_url`` defaulting to ``FAL_KONTEXT_STORAGE_URL``.

    Args:
        queue_base_url: The client's queue base URL.
        storage_url: The ``storage_url`` option, or None.
        environ: The environment (default ``os.environ``).
        **options: Other ``StorageSettings`` fields (``expires_in``, ``read_timeout``, ``retry``, ``random``).

    Raises:
        InvalidInputError: a bad ``storage_url`` or ``upload_expires_in``, named.
    """
    env = os.environ if environ is None else environ
    chosen = storage_url if storage_url is not None else (env.get(ENV_STORAGE_URL) or None)
    expires_in = options.get("expires_in")
    try:
        lifecycle_headers(expires_in)
    except ValueError as err:
        raise InvalidInputError([FieldProblem("upload_expires_in", expires_in, str(err))]) from None
    try:
        return storage_for(queue_base_url, chosen, **options)
    except ValueError as err:
        raise InvalidInputError([FieldProblem("storage_url", chosen, str(err))]) from None


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
    try:
        body = json.loads(answer.content)
    except (ValueError, UnicodeDecodeError):
        return None
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


def _origin(url: str) -> tuple[str, str, int]:
    parts = urlsplit(url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    return parts.scheme, (parts.hostname or "").lower(), port


def _token_may_go_to(url: str, settings: StorageSettings) -> bool:
    """The upload token goes to the configured storage hosts and to fal's own hosts (over https) only."""
    origin = _origin(url)
    if origin in (_origin(settings.rest_url), _origin(settings.cdn_url)):
        return True
    scheme, host, _ = origin
    return scheme == "https" and any(host == domain or host.endswith("." + domain) for domain in _FAL_DOMAINS)


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


def _no_answer(outcome: NoAnswer, step: str, url: str) -> APIConnectionError:
    host = urlsplit(url).netloc
    message = f"fal storage: the {step} request to {host} got no answer: {outcome.error}. Check the network, retry"
    if outcome.timed_out:
        return APITimeoutError(message, reached_server=outcome.reached_server)
    return APIConnectionError(message, reached_server=outcome.reached_server)


def _send(request: Send, step: str, settings: StorageSettings) -> Flow[Answer]:
    """Send ``request``, retrying failures the policy allows; returns a 2xx answer or raises the typed error."""
    retry = 0
    while True:
        outcome = yield from exchange(request)
        if isinstance(outcome, Answer) and outcome.status_code < 400:
            return outcome
        if isinstance(outcome, NoAnswer):
            failure = Failure(None, {}, outcome.reached_server, outcome.certificate_rejected)
        else:
            failure = Failure(outcome.status_code, {k.lower(): v for k, v in outcome.headers.items()})
        retry += 1
        # An upload creates no job: its requests are retried by the rules of the queue's idempotent reads.
        delay = settings.retry.delay_before_retry(Operation.STATUS, retry, failure, settings.random)
        if delay is None:
            if isinstance(outcome, NoAnswer):
                raise _no_answer(outcome, step, request.url)
            raise _error(outcome, step, settings)
        yield Sleep(delay)


def _token(settings: StorageSettings, authorization: str | None, cached: StorageToken | None) -> Flow[StorageToken]:
    if cached is not None and cached.usable(settings.wall_clock()):
        return cached
    answer = yield from _send(token_request(settings, authorization), "token", settings)
    return parse_token(answer)


def _file_headers(file: LocalFile, token: StorageToken, settings: StorageSettings) -> dict[str, str]:
    return {
        "Authorization": token.authorization,
        "Accept": "application/json",
        "Content-Type": file.content_type,
        # HTTP headers are Latin-1: a name outside it is sent percent-encoded rather than failing the upload.
        "X-Fal-File-Name": quote(file.file_name, safe=" !#$&'()+,-.;=@[]^_`{}~"),
        **lifecycle_headers(settings.expires_in),
    }


def upload_flow(
    file: LocalFile, settings: StorageSettings, *, authorization: str | None, token: StorageToken | None = None
) -> Flow[Uploaded]:
    """Upload ``file`` to fal storage; returns ``Uploaded`` (the file's URL and the token, to reuse).

    Args:
        file: What to upload.
        settings: Where and how.
        authorization: The ``Authorization`` value with the API key (``Key <key>``), for the token request only.
        token: A token from an earlier upload; a new one is asked for if it is None or about to expire.

    Raises:
        AuthenticationError: the key was refused. NotFoundError: the storage URL offers no fal storage.
        APIError: a storage request failed after the retries the policy allows.
        UnexpectedResponseError: an answer is not what fal's protocol says.
    """
    token = yield from _token(settings, authorization, token)
    if len(file.data) <= settings.multipart_threshold:
        request = Send(
            "POST",
            f"{settings.cdn_url}/files/upload",
            _file_headers(file, token, settings),
            file.data,
            settings.read_timeout,
        )
        answer = yield from _send(request, "upload", settings)
        body = _json_object(answer)
        return Uploaded(_checked_url(body.get("access_url") if body else None, "upload", answer, settings), token)
    return (yield from _multipart(file, settings, authorization, token))


def _multipart(
    file: LocalFile, settings: StorageSettings, authorization: str | None, token: StorageToken
) -> Flow[Uploaded]:
    if not _token_may_go_to(token.base_url, settings):
        raise UnexpectedResponseError(
            f"fal storage: the token's base_url {token.base_url!r} is neither the configured storage host nor fal's; "
            "the upload token is not sent there"
        )
    start = Send(
        "POST",
        f"{token.base_url}/files/upload/multipart",
        _file_headers(file, token, settings),
        b"",
        settings.read_timeout,
    )
    answer = yield from _send(start, "multipart start", settings)
    body = _json_object(answer)
    upload_id = body.get("uploadId") if body else None
    if not isinstance(upload_id, str) or not upload_id:
        raise _unexpected("the multipart start answer has no uploadId", answer)
    access_url = _checked_url(body.get("access_url") if body else None, "multipart start", answer, settings)
    parts: list[dict[str, object]] = []
    view = memoryview(file.data)
    for number, offset in enumerate(range(0, len(file.data), settings.part_size), start=1):
        token = yield from _token(settings, authorization, token)
        headers = {
            "Authorization": token.authorization,
            "Content-Type": file.content_type,
            "Accept-Encoding": "identity",  # as fal_client: keeps the ETag header intact
        }
        chunk = bytes(view[offset : offset + settings.part_size])
        part = Send("PUT", f"{access_url}/multipart/{upload_id}/{number}", headers, chunk, settings.read_timeout)
        answer = yield from _send(part, f"part {number}", settings)
        etag = {k.lower(): v for k, v in answer.headers.items()}.get("etag")
        if not etag:
            raise _unexpected(f"part {number} was answered without an ETag", answer)
        parts.append({"partNumber": number, "etag": etag})
    token = yield from _token(settings, authorization, token)
    complete = Send(
        "POST",
        f"{access_url}/multipart/{upload_id}/complete",
        {"Authorization": token.authorization, "Content-Type": "application/json", "Accept": "application/json"},
        json.dumps({"parts": parts}).encode("utf-8"),
        settings.read_timeout,
    )
    yield from _send(complete, "multipart completion", settings)
    return Uploaded(access_url, token)


# --- local inputs: inline or upload -------------------------------------------------------------------------------

# Stands for an image to upload while the input is checked; RFC 2606 reserves ``.invalid``, and the stand-in is
# replaced by the uploaded file's URL before anything is submitted.
_STAND_IN = "https://upload.invalid/"


@dataclass(frozen=True, slots=True)
class PendingUpload:
    """A local input image to upload before the input is sent.

    Attributes:
        stand_in: The placeholder URL standing for it in the input until it is uploaded.
        file: The image.
    """

    stand_in: str
    file: LocalFile


def prepare_image(
    source: ImageSource,
    *,
    field: str,
    storage_available: bool,
    upload_threshold: int | None,
    max_image_bytes: int = DEFAULT_MAX_IMAGE_BYTES,
) -> str | PendingUpload:
    """The value of one image field: a URL or data URI as is, a small local image inlined, a large one to upload.

    Args:
        source: A URL, a data URI, a local path, bytes or a PIL image.
        field: The field (``image_url``, ``image_urls[1]``), for messages and the stand-in.
        storage_available: Whether the client knows where fal storage is (``storage_for``).
        upload_threshold: Upload local images larger than this; None inlines them all.
        max_image_bytes: Largest image inlined when it is not uploaded.

    Raises:
        InvalidInputError: a missing file, bytes that are not an image, or an image too large to inline.
    """
    if is_url(source):
        assert isinstance(source, str)
        return source
    size = local_size(source)
    uploads = should_upload(size or 0, threshold=upload_threshold, storage_available=storage_available)
    if size is not None and size > max_image_bytes and not uploads:  # refused before reading the file
        raise too_large(field, f"<{size} bytes>" if isinstance(source, bytes) else str(source), size, max_image_bytes)
    file = read_local(source, field=field)
    if should_upload(len(file.data), threshold=upload_threshold, storage_available=storage_available):
        return PendingUpload(f"{_STAND_IN}{quote(field)}/{quote(file.file_name)}", file)
    return inline(file, field=field, max_bytes=max_image_bytes)


def _replaced(value: object, urls: Mapping[str, str]) -> object:
    if isinstance(value, str):
        return urls.get(value, value)
    if isinstance(value, (list, tuple)):
        return [_replaced(item, urls) for item in value]
    return value


def upload_pending_flow(
    fields: Mapping[str, object],
    pending: list[PendingUpload],
    settings: StorageSettings,
    *,
    authorization: str | None,
    token: StorageToken | None = None,
) -> Flow[tuple[dict[str, object], StorageToken | None]]:
    """Upload each pending image, one after another, and put its URL where its stand-in is in ``fields``.

    Returns the fields with every stand-in replaced, and the last token (to reuse). Raises what ``upload_flow``
    raises; nothing is submitted then.
    """
    urls: dict[str, str] = {}
    for upload in pending:
        uploaded = yield from upload_flow(upload.file, settings, authorization=authorization, token=token)
        token = uploaded.token
        urls[upload.stand_in] = uploaded.url
    return {name: _replaced(value, urls) for name, value in fields.items()}, token
