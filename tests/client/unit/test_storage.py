"""fal storage uploads without I/O: the requests of fal's protocol, their answers, the key's reach, retries and
errors, local inputs inlined or left for upload, and what both clients refuse before sending (``upload()`` and
large local inputs of ``edit()`` against the emulator: integration/test_storage.py)."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any, TypeVar

import pytest

from fal_kontext import Kontext, files
from fal_kontext.errors import (
    APIConnectionError,
    AuthenticationError,
    InvalidInputError,
    NotFoundError,
    ServerError,
    UnexpectedResponseError,
)
from fal_kontext.files import ImageSource, read_local
from fal_kontext.protocol.commands import Answer, Flow, LocalSize, NoAnswer, ReadFile, Send
from fal_kontext.protocol.hosts import FAL_CDN_URL, FAL_REST_URL
from fal_kontext.protocol.images import LocalFile
from fal_kontext.protocol.settings import Settings
from fal_kontext.protocol.storage import (
    EXPIRATIONS,
    Expiration,
    StorageSettings,
    StorageToken,
    lifecycle_headers,
    parse_token,
    should_upload,
    storage_for,
    token_request,
    upload_flow,
)
from fal_kontext.protocol.verbs import Deadline, PendingUpload, image_value, with_uploads
from fal_kontext.retry import RetryPolicy
from fal_kontext.transport import CERTIFICATE_ADVICE
from tests.client.client_fakes import FakeClock, FakeQueue, MakeClient, Responder, drive_flow

T = TypeVar("T")
KEY = "Key secret-key-123"
NOW = 1_000_000.0
CDN_FILE = "https://v3b.fal.media/files/b/rabbit/photo.png"


def ok(body: object, status: int = 200, headers: dict[str, str] | None = None) -> Answer:
    return Answer(status, headers or {}, json.dumps(body).encode("utf-8"))


def token_body(base_url: str = FAL_CDN_URL, expires_in: float = 3600.0) -> dict[str, object]:
    return {"token": "upload-token", "token_type": "Bearer", "base_url": base_url, "expires_at": NOW + expires_in}


def settings(
    storage: StorageSettings | None = None,
    *,
    retry: RetryPolicy | None = None,
    token: StorageToken | None = None,
    **options: Any,
) -> Settings:
    """A client's settings with fal's storage (or ``storage``, or ``StorageSettings(**options)``), the key ``KEY`` and
    a fixed clock; ``token``: the cached token of an earlier upload."""
    chosen = Settings(
        "https://queue.fal.run",
        retry=retry or RetryPolicy(),
        random=lambda: 0.5,
        wall=lambda: NOW,
        storage=storage or StorageSettings(**options),
        authorization=lambda: KEY,
    )
    chosen.storage_tokens.token = token
    return chosen


def sent_by(flow: Flow[object], respond: Responder) -> list[Send]:
    """The requests ``flow`` sent before it raised."""
    sent: list[Send] = []

    def recording(request: Send) -> Answer | NoAnswer:
        sent.append(request)
        return respond(request)

    with pytest.raises(Exception):  # noqa: B017 - the callers check the error themselves
        drive_flow(flow, recording)
    return sent


def fal_storage(request: Send) -> Answer:
    """fal's storage as documented: a token, then single uploads."""
    if request.url.startswith(f"{FAL_REST_URL}/storage/auth/token"):
        return ok(token_body())
    if request.url == f"{FAL_CDN_URL}/files/upload":
        return ok({"access_url": CDN_FILE})
    raise AssertionError(f"unexpected request {request.method} {request.url}")


PNG_FILE = LocalFile(b"\x89PNG\r\n\x1a\n" + b"\0" * 64, "image/png", "photo.png", "photo.png")


# --- single upload ----------------------------------------------------------------------------------------------


def test_a_single_upload_asks_a_token_with_the_key_then_posts_the_bytes_with_the_token() -> None:
    uploaded, sent, _ = drive_flow(upload_flow(PNG_FILE, settings()), fal_storage)
    assert uploaded == CDN_FILE
    token, upload = sent
    assert (token.method, token.url) == ("POST", f"{FAL_REST_URL}/storage/auth/token?storage_type=fal-cdn-v3")
    assert token.headers["Authorization"] == KEY and json.loads(token.content) == {}
    assert (upload.method, upload.url, upload.content) == ("POST", f"{FAL_CDN_URL}/files/upload", PNG_FILE.data)
    assert upload.headers["Authorization"] == "Bearer upload-token"
    assert upload.headers["Content-Type"] == "image/png"
    assert upload.headers["X-Fal-File-Name"] == "photo.png"
    assert "X-Fal-Object-Lifecycle" not in upload.headers


def test_the_key_goes_to_the_token_request_only() -> None:
    data = bytes(range(256)) * 10
    flow = upload_flow(
        LocalFile(data, "image/png", "big.png", "big.png"),
        settings(multipart_threshold=1000, part_size=1000),
    )
    _, sent, _ = drive_flow(flow, multipart_storage())
    secret = KEY.split()[1]
    carrying = [request.url for request in sent if any(secret in value for value in request.headers.values())]
    assert carrying == [f"{FAL_REST_URL}/storage/auth/token?storage_type=fal-cdn-v3"]
    assert secret not in repr(sent)


def test_a_cached_token_is_reused_and_one_about_to_expire_is_renewed() -> None:
    fresh = StorageToken("cached", "Bearer", FAL_CDN_URL, NOW + 3600)
    reusing = settings(token=fresh)
    _, sent, _ = drive_flow(upload_flow(PNG_FILE, reusing), fal_storage)
    assert [request.url for request in sent] == [f"{FAL_CDN_URL}/files/upload"]
    assert sent[0].headers["Authorization"] == "Bearer cached"
    assert reusing.storage_tokens.token is fresh
    expiring = StorageToken("old", "Bearer", FAL_CDN_URL, NOW + 5)
    renewing = settings(token=expiring)
    _, sent, _ = drive_flow(upload_flow(PNG_FILE, renewing), fal_storage)
    assert len(sent) == 2 and renewing.storage_tokens.token is not None
    assert renewing.storage_tokens.token.token == "upload-token"


def test_the_lifecycle_preference_is_sent_in_both_of_fals_headers() -> None:
    _, sent, _ = drive_flow(upload_flow(PNG_FILE, settings(expires_in="1d")), fal_storage)
    headers = sent[1].headers
    assert json.loads(headers["X-Fal-Object-Lifecycle"]) == {"expiration_duration_seconds": 86400}
    assert headers["X-Fal-Object-Lifecycle-Preference"] == headers["X-Fal-Object-Lifecycle"]


@pytest.mark.parametrize(("expires_in", "seconds"), [*EXPIRATIONS.items(), (90, 90)])
def test_lifecycle_headers_for_every_named_expiration(expires_in: Expiration, seconds: int | None) -> None:
    headers = lifecycle_headers(expires_in)
    if seconds is None:
        assert headers == {}
    else:
        assert json.loads(headers["X-Fal-Object-Lifecycle-Preference"]) == {"expiration_duration_seconds": seconds}


@pytest.mark.parametrize("bad", [0, -5, True, "2d", 1.5])
def test_a_bad_expiration_is_refused_when_the_settings_are_made(bad: object) -> None:
    with pytest.raises(ValueError, match="expires_in"):
        StorageSettings(expires_in=bad)  # type: ignore[arg-type]


def test_a_file_name_outside_latin_1_is_sent_percent_encoded() -> None:
    upload = LocalFile(PNG_FILE.data, "image/png", "café ☕.png", "café ☕.png")
    _, sent, _ = drive_flow(upload_flow(upload, settings()), fal_storage)
    name = sent[1].headers["X-Fal-File-Name"]
    name.encode("latin-1")
    assert name == "caf%C3%A9 %E2%98%95.png"


# --- multipart --------------------------------------------------------------------------------------------------


def multipart_storage(base_url: str = FAL_CDN_URL, access_url: str = CDN_FILE) -> Responder:
    def respond(request: Send) -> Answer:
        if "/storage/auth/token" in request.url:
            return ok(token_body(base_url))
        if request.url == f"{base_url}/files/upload/multipart":
            return ok({"access_url": access_url, "uploadId": "up-1"})
        if request.method == "PUT":
            number = request.url.rsplit("/", 1)[1]
            return Answer(200, {"ETag": f'"etag-{number}"'}, b"")
        if request.url == f"{access_url}/multipart/up-1/complete":
            return ok({})
        raise AssertionError(f"unexpected request {request.method} {request.url}")

    return respond


def test_above_the_threshold_the_file_goes_in_parts_then_a_completion_listing_their_etags() -> None:
    data = bytes(range(256)) * 10  # 2560 bytes: parts of 1000, 1000, 560
    flow = upload_flow(
        LocalFile(data, "image/png", "big.png", "big.png"),
        settings(multipart_threshold=2000, part_size=1000),
    )
    uploaded, sent, _ = drive_flow(flow, multipart_storage())
    assert uploaded == CDN_FILE
    start, *parts, complete = sent[1:]
    assert (start.method, start.url) == ("POST", f"{FAL_CDN_URL}/files/upload/multipart")
    assert start.headers["X-Fal-File-Name"] == "big.png" and start.headers["Content-Type"] == "image/png"
    assert [(p.method, p.url) for p in parts] == [("PUT", f"{CDN_FILE}/multipart/up-1/{n}") for n in (1, 2, 3)]
    assert b"".join(p.content for p in parts) == data
    assert [len(p.content) for p in parts] == [1000, 1000, 560]
    assert all(p.headers["Authorization"] == "Bearer upload-token" for p in parts)
    assert (complete.method, complete.url) == ("POST", f"{CDN_FILE}/multipart/up-1/complete")
    assert json.loads(complete.content) == {"parts": [{"partNumber": n, "etag": f'"etag-{n}"'} for n in (1, 2, 3)]}


def test_at_the_threshold_the_file_is_one_upload() -> None:
    flow = upload_flow(PNG_FILE, settings(multipart_threshold=len(PNG_FILE.data)))
    _, sent, _ = drive_flow(flow, fal_storage)
    assert [request.url for request in sent][1:] == [f"{FAL_CDN_URL}/files/upload"]


def test_a_part_answered_without_an_etag_is_an_unexpected_answer() -> None:
    storage = multipart_storage()

    def respond(request: Send) -> Answer | NoAnswer:
        return Answer(200, {}, b"") if request.method == "PUT" else storage(request)

    flow = upload_flow(PNG_FILE, settings(multipart_threshold=10, part_size=50))
    with pytest.raises(UnexpectedResponseError, match="ETag"):
        drive_flow(flow, respond)


def test_the_token_is_not_sent_to_a_host_that_is_neither_configured_nor_fals() -> None:
    flow = upload_flow(PNG_FILE, settings(multipart_threshold=10))
    sent = sent_by(flow, multipart_storage(base_url="https://evil.test"))
    assert [urlhost(r.url) for r in sent] == ["rest.fal.ai"]
    flow = upload_flow(PNG_FILE, settings(multipart_threshold=10))
    sent = sent_by(flow, multipart_storage(access_url="https://evil.test/files/x"))
    assert "evil.test" not in {urlhost(r.url) for r in sent}
    flow = upload_flow(PNG_FILE, settings())
    with pytest.raises(UnexpectedResponseError, match=r"evil\.test"):
        drive_flow(flow, lambda r: ok({"access_url": "http://evil.test/f"}) if "/files/" in r.url else fal_storage(r))


def urlhost(url: str) -> str:
    return url.split("/")[2]


# --- one base URL (the emulator) --------------------------------------------------------------------------------


def test_a_configured_storage_url_serves_every_path_and_may_be_plain_http() -> None:
    base = "http://127.0.0.1:8765"

    def emulator(request: Send) -> Answer:
        if request.url.startswith(f"{base}/storage/auth/token?"):
            return ok(token_body(base))
        if request.url == f"{base}/files/upload/multipart":
            return ok({"access_url": f"{base}/files/abc/big.png", "uploadId": "u"})
        if request.method == "PUT":
            return Answer(200, {"etag": "e"}, b"")
        if request.url.endswith("/complete"):
            return ok({})
        raise AssertionError(request.url)

    flow = upload_flow(PNG_FILE, settings(StorageSettings.at(base + "/", multipart_threshold=10)))
    uploaded, sent, _ = drive_flow(flow, emulator)
    assert uploaded == f"{base}/files/abc/big.png"
    assert {urlhost(request.url) for request in sent} == {"127.0.0.1:8765"}


def test_settings_refuse_a_url_that_is_not_http() -> None:
    with pytest.raises(ValueError, match="not an absolute http"):
        StorageSettings.at("ftp://storage.test")
    with pytest.raises(ValueError, match="part_size"):
        StorageSettings(part_size=0)


# --- failures ---------------------------------------------------------------------------------------------------


def test_a_refused_key_is_an_authentication_error_without_retry() -> None:
    flow = upload_flow(PNG_FILE, settings())
    sent = sent_by(flow, lambda r: ok({"detail": "invalid key"}, 401))
    assert len(sent) == 1
    with pytest.raises(AuthenticationError, match="invalid key"):
        drive_flow(upload_flow(PNG_FILE, settings()), lambda r: ok({"detail": "invalid key"}, 401))


@pytest.mark.parametrize("status", [404, 405])
def test_a_server_without_fal_storage_says_what_to_do(status: int) -> None:
    flow = upload_flow(PNG_FILE, settings(StorageSettings.at("https://proxy.test")))
    with pytest.raises(NotFoundError) as caught:
        drive_flow(flow, lambda r: ok({"detail": "Not Found"}, status))
    message = str(caught.value)
    assert "https://proxy.test does not offer fal storage" in message and "storage_url=" in message


def test_transient_failures_are_retried_then_the_upload_succeeds() -> None:
    failures: list[Answer | NoAnswer] = [NoAnswer("ReadError: reset", reached_server=True), ok({"detail": "busy"}, 503)]

    def flaky(request: Send) -> Answer | NoAnswer:
        if request.url.endswith("/files/upload") and failures:
            return failures.pop(0)
        return fal_storage(request)

    uploaded, sent, sleeps = drive_flow(upload_flow(PNG_FILE, settings()), flaky)
    assert uploaded == CDN_FILE and sleeps == 2 and len(sent) == 4


def test_retries_end_with_the_typed_error() -> None:
    flow = upload_flow(PNG_FILE, settings(retry=RetryPolicy(max_retries=2)))

    def down(request: Send) -> Answer | NoAnswer:
        return ok({"detail": "down"}, 502) if "/files/" in request.url else fal_storage(request)

    with pytest.raises(ServerError, match="down"):
        drive_flow(flow, down)
    flow = upload_flow(PNG_FILE, settings(retry=RetryPolicy.disabled()))
    with pytest.raises(APIConnectionError, match=r"the token request to rest\.fal\.ai got no answer"):
        drive_flow(flow, lambda r: NoAnswer("ConnectError: refused", reached_server=False))


def test_a_rejected_certificate_says_only_that_asking_again_cannot_help() -> None:
    rejected = NoAnswer(
        f"ConnectError: CERTIFICATE_VERIFY_FAILED; {CERTIFICATE_ADVICE}", False, certificate_rejected=True
    )
    with pytest.raises(APIConnectionError) as caught:
        drive_flow(upload_flow(PNG_FILE, settings()), lambda r: rejected)
    message = str(caught.value)
    assert "the token request to rest.fal.ai got no answer" in message and message.endswith(CERTIFICATE_ADVICE)


@pytest.mark.parametrize(
    "body", [{}, {"token": "t", "token_type": "Bearer"}, {"token": "t", "token_type": "Bearer", "base_url": "nope"}]
)
def test_a_token_answer_without_its_fields_is_unexpected(body: dict[str, object]) -> None:
    with pytest.raises(UnexpectedResponseError, match="fal storage"):
        parse_token(ok(body))


def test_a_token_expiry_is_read_as_iso_time_or_seconds_or_left_open() -> None:
    iso = parse_token(ok({**token_body(), "expires_at": "2026-12-02T01:00:00+00:00"}))
    assert iso.expires_at == 1796173200.0
    assert parse_token(ok({**token_body(), "expires_at": None})).expires_at is None
    assert parse_token(ok({**token_body(), "expires_at": None})).usable(NOW)
    assert "upload-token" not in repr(parse_token(ok(token_body())))


def test_an_upload_answer_without_access_url_is_unexpected() -> None:
    flow = upload_flow(PNG_FILE, settings())
    with pytest.raises(UnexpectedResponseError, match="access_url"):
        drive_flow(flow, lambda r: ok({"url": "x"}) if r.url.endswith("/files/upload") else fal_storage(r))


# --- pure helpers -----------------------------------------------------------------------------------------------


def test_the_token_request_carries_the_key_and_an_empty_json_body() -> None:
    request = token_request(StorageSettings.at("http://127.0.0.1:9"), KEY)
    assert request.url == "http://127.0.0.1:9/storage/auth/token?storage_type=fal-cdn-v3"
    assert KEY not in repr(request)
    assert "Authorization" not in token_request(StorageSettings(), None).headers


def test_uploads_happen_above_the_threshold_only_where_storage_is_known() -> None:
    assert should_upload(2_000_000, threshold=1_000_000, storage_available=True)
    assert not should_upload(1_000_000, threshold=1_000_000, storage_available=True)
    assert not should_upload(2_000_000, threshold=1_000_000, storage_available=False)
    assert not should_upload(2_000_000, threshold=None, storage_available=True)


def test_local_files_are_read_with_their_name_and_type(tmp_path: Path) -> None:
    photo = tmp_path / "photo.jpg"
    photo.write_bytes(b"\xff\xd8\xff\xe0" + b"\0" * 20)
    assert read_local(photo) == LocalFile(photo.read_bytes(), "image/jpeg", "photo.jpg", str(photo))
    notes = tmp_path / "notes.txt"
    notes.write_bytes(b"hello")
    assert read_local(notes, images_only=False).content_type == "text/plain"
    with pytest.raises(InvalidInputError, match="not a PNG"):
        read_local(notes)
    assert read_local(b"hello", images_only=False).file_name == "upload.bin"
    assert read_local(PNG_FILE.data).file_name == "image.png"
    with pytest.raises(InvalidInputError, match="empty"):
        read_local(b"", images_only=False)
    with pytest.raises(InvalidInputError, match="is a URL already"):
        read_local("https://example.test/a.png")
    with pytest.raises(InvalidInputError, match="local path, bytes or a PIL image"):
        read_local(3)  # type: ignore[arg-type]


def test_a_client_uploads_to_fal_against_fal_and_elsewhere_only_where_told() -> None:
    fal = storage_for("https://queue.fal.run")
    assert fal is not None and (fal.rest_url, fal.cdn_url) == (FAL_REST_URL, FAL_CDN_URL)
    assert storage_for("https://proxy.test/api") is None
    assert storage_for("http://192.168.1.5:8000") is None  # another machine on the network is not the emulator
    for local in ("http://127.0.0.1:8765", "http://localhost:8765", "https://[::1]:8443"):
        found = storage_for(local)  # the emulator, as request-list lookups see it
        assert found is not None and (found.rest_url, found.cdn_url) == (local, local)
    emulator = storage_for("http://127.0.0.1:8000", "http://127.0.0.1:8000/", expires_in="1h")
    assert emulator is not None and (emulator.rest_url, emulator.cdn_url) == ("http://127.0.0.1:8000",) * 2
    assert emulator.expires_in == "1h"
    told = storage_for("https://proxy.test/api", "https://rest.fal.ai")
    assert told is not None and (told.rest_url, told.cdn_url) == (FAL_REST_URL, FAL_CDN_URL)


# --- local inputs: inline or upload -----------------------------------------------------------------------------


def big_png(size: int) -> bytes:
    return PNG_FILE.data + b"\0" * (size - len(PNG_FILE.data))


def read_locally(flow: Flow[T]) -> T:
    """Run ``flow`` performing its local file commands as the executors do (``files``); no other command."""
    try:
        command = next(flow)
        while True:
            if isinstance(command, LocalSize):
                command = flow.send(files.local_size(command.source))  # type: ignore[arg-type]
            else:
                assert isinstance(command, ReadFile), command
                command = flow.send(files.read_local(command.source, field=command.field_name))  # type: ignore[arg-type]
    except StopIteration as stop:
        return stop.value  # type: ignore[no-any-return]


def image_settings(*, storage: bool, threshold: int | None) -> Settings:
    return replace(
        settings(), storage=StorageSettings() if storage else None, upload_threshold=threshold, max_image_bytes=2000
    )


def test_small_local_images_are_inlined_and_large_ones_wait_for_their_upload(tmp_path: Path) -> None:
    path = tmp_path / "large.png"
    path.write_bytes(big_png(5000))

    def options(source: ImageSource, field: str = "image_url") -> str | PendingUpload:
        return read_locally(image_value(image_settings(storage=True, threshold=1000), source, field))

    small = options(big_png(1000))
    assert isinstance(small, str) and small.startswith("data:image/png;base64,")
    large = options(path, "image_urls[1]")
    assert isinstance(large, PendingUpload)
    assert large.file == LocalFile(path.read_bytes(), "image/png", "large.png", str(path))
    assert large.stand_in.startswith("https://upload.invalid/") and "large.png" in large.stand_in
    url = "https://example.test/in.png"
    assert options(url) == url


def test_without_storage_a_large_image_is_refused_before_it_is_read(tmp_path: Path) -> None:
    path = tmp_path / "large.png"
    path.write_bytes(b"not even an image" * 300)
    for available, threshold in ((False, 1000), (True, None)):
        with pytest.raises(InvalidInputError, match="limit for inlined images") as caught:
            read_locally(image_value(image_settings(storage=available, threshold=threshold), path, "image_url"))
        assert "storage_url=" in str(caught.value)
    with pytest.raises(InvalidInputError, match="not a PNG"):
        read_locally(image_value(image_settings(storage=True, threshold=1000), path, "image_url"))


def test_pending_uploads_replace_their_stand_ins_and_share_one_token() -> None:
    first = PendingUpload(
        "https://upload.invalid/image_urls%5B0%5D/a.png", LocalFile(PNG_FILE.data, "image/png", "a.png", "a")
    )
    second = PendingUpload(
        "https://upload.invalid/image_urls%5B2%5D/b.png", LocalFile(PNG_FILE.data, "image/png", "b.png", "b")
    )
    fields = {"prompt": "a prompt", "image_urls": [first.stand_in, "https://example.test/x.png", second.stand_in]}
    names = iter(["one", "two"])

    def storage(request: Send) -> Answer:
        if request.url.endswith("/files/upload"):
            return ok({"access_url": f"https://v3.fal.media/files/{next(names)}.png"})
        return fal_storage(request)

    client = settings()
    replaced, sent, _ = drive_flow(with_uploads(client, fields, [first, second], Deadline(None, None)), storage)
    token = client.storage_tokens.token
    assert replaced == {
        "prompt": "a prompt",
        "image_urls": [
            "https://v3.fal.media/files/one.png",
            "https://example.test/x.png",
            "https://v3.fal.media/files/two.png",
        ],
    }
    assert [request.url.split("?")[0] for request in sent] == [
        f"{FAL_REST_URL}/storage/auth/token",
        f"{FAL_CDN_URL}/files/upload",
        f"{FAL_CDN_URL}/files/upload",
    ]
    assert token is not None and token.token == "upload-token"


# --- what the clients refuse before sending ---------------------------------------------------------------------------


def test_a_directory_as_the_image_says_it_is_one(
    fake: FakeQueue, clock: FakeClock, make: MakeClient, tmp_path: Path
) -> None:
    with pytest.raises(InvalidInputError, match="is a directory, not an image file"):
        make(fake, clock).edit("a prompt", image=tmp_path)
    with pytest.raises(InvalidInputError, match=r"image_urls\[1\]: .* is a directory"):
        make(fake, clock).edit("a prompt", images=[b"\x89PNG\r\n\x1a\n" + b"\0" * 32, tmp_path])
    assert fake.requests == []


def test_on_another_host_without_storage_upload_is_refused_before_sending(
    fake: FakeQueue, clock: FakeClock, make: MakeClient
) -> None:
    kontext = make(fake, clock)  # https://queue.example.test: not fal, not this machine
    with pytest.raises(InvalidInputError, match="storage_url="):
        kontext.upload(b"abc")
    assert fake.requests == []


@pytest.mark.parametrize(
    ("option", "value"),
    [("upload_threshold", -1), ("upload_threshold", True), ("upload_expires_in", "2d"), ("storage_url", "ftp://x")],
)
def test_bad_upload_options_are_refused_by_name(option: str, value: object) -> None:
    options: dict[str, Any] = {option: value}
    with pytest.raises(InvalidInputError, match=option):
        Kontext("k", **options)
