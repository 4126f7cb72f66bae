"""fal storage on loopback: the token, single and multipart uploads, the `initiate` + PUT form, file serving.

The same paths as fal's (as fal_client and fal-js call them; https://docs.fal.ai/documentation/model-apis/fal-cdn),
on the emulator's own base URL: fal's storage token is at
`https://rest.fal.ai/storage/auth/token`, uploads at `https://v3.fal.media/files/upload`; here both hosts are
the emulator. Uploaded files are served at `<base>/files/uploads/<id>/<name>` (no key needed, like fal's CDN),
may be used as inputs of requests, expire as their lifecycle preference says, and are listed at
`GET /_emulator/uploads`. They live in memory only (not in the state file): our choice.
"""

from __future__ import annotations

import urllib.parse
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from fal_kontext_emulator.http_replies import detail_reply, json_reply
from fal_kontext_emulator.outputs import FILES_PREFIX
from fal_kontext_emulator.request_checks import read_body
from fal_kontext_emulator.request_queue import iso_timestamp
from fal_kontext_emulator.state import EmulatorState
from fal_kontext_emulator.upload_store import StoredFile, UploadError

UPLOADS_PATH = FILES_PREFIX + "/uploads"
# Where fal's REST host paths (`https://rest.fal.ai/storage/...`) are served.
STORAGE_PREFIX = "/storage"
_DEFAULT_NAME = "upload.bin"


def _lifecycle_header(request: Request) -> str | None:
    # fal_client sends both; CDN uploads read X-Fal-Object-Lifecycle, `initiate` the -Preference one.
    return request.headers.get("x-fal-object-lifecycle") or request.headers.get("x-fal-object-lifecycle-preference")


def _file_name(raw: str | None) -> str:
    name = (raw or "").strip().replace("/", "_").replace("\\", "_")
    return name or _DEFAULT_NAME


class StorageEndpoints:
    """The storage handlers; `routes()` lists them at the top level."""

    def __init__(self, state: EmulatorState) -> None:
        self.state = state

    def rest_routes(self) -> list[BaseRoute]:
        """The routes of fal's REST host, relative to STORAGE_PREFIX."""
        return [
            Route("/auth/token", self.token, methods=["POST"]),
            Route("/upload/initiate", self.initiate, methods=["POST"]),
            Route("/upload/put/{file_id}", self.put, methods=["PUT"]),
        ]

    def cdn_routes(self) -> list[BaseRoute]:
        """The routes of fal's CDN host, relative to `/files`."""
        part = "/uploads/{file_id}/{file_name}/multipart/{upload_id}"
        return [
            Route("/upload", self.upload, methods=["POST"]),
            Route("/upload/multipart", self.create_multipart, methods=["POST"]),
            Route(part + "/complete", self.complete_multipart, methods=["POST"]),
            Route(part + "/{part_number:int}", self.upload_part, methods=["PUT"]),
            Route("/uploads/{file_id}/{file_name}", self.download, methods=["GET"]),
        ]

    def _base(self, request: Request) -> str:
        return (self.state.config.public_base_url or str(request.base_url)).rstrip("/")

    def _access_url(self, request: Request, stored: StoredFile) -> str:
        name = urllib.parse.quote(stored.file_name, safe="")
        return f"{self._base(request)}{UPLOADS_PATH}/{stored.file_id}/{name}"

    def _key_owner(self, request: Request) -> str | Response:
        owner = self.state.owner_of(request.headers.get("authorization"))
        if owner is not None:
            return owner
        if request.headers.get("authorization"):
            return detail_reply(401, "Invalid key: the Authorization header carries a key this server does not accept")
        return detail_reply(401, "Authorization header is required")

    def _token_owner(self, request: Request) -> str | Response:
        owner = self.state.uploads.owner_of_token(request.headers.get("authorization"), self.state.now())
        if owner is None:
            return detail_reply(401, "A valid storage token is required: POST /storage/auth/token first")
        return owner

    async def _tokened_content(self, request: Request) -> tuple[str, bytes] | Response:
        """The storage token's owner and the body, or the answer that refuses them."""
        owner = self._token_owner(request)
        if isinstance(owner, Response):
            return owner
        data = await self._content(request)
        return data if isinstance(data, Response) else (owner, data)

    async def _content(self, request: Request) -> bytes | Response:
        data = await read_body(request, self.state.uploads.max_file_bytes)
        if data is None:
            return detail_reply(413, f"File is larger than {self.state.uploads.max_file_bytes} bytes")
        return data

    async def token(self, request: Request) -> Response:
        """`POST /storage/auth/token?storage_type=fal-cdn-v3` with `Authorization: Key`: a CDN upload token."""
        owner = self._key_owner(request)
        if isinstance(owner, Response):
            return owner
        token, expires_at = self.state.uploads.issue_token(owner, self.state.now())
        body = {
            "token": token,
            "token_type": "Bearer",
            "base_url": self._base(request),
            "expires_at": iso_timestamp(self.state.epoch_of(expires_at)),
        }
        return json_reply(200, body)

    async def upload(self, request: Request) -> Response:
        """`POST /files/upload` (raw bytes, storage token): a single upload; answers `{"access_url"}`."""
        tokened = await self._tokened_content(request)
        if isinstance(tokened, Response):
            return tokened
        owner, data = tokened
        try:
            stored = self._create(request, owner, multipart=False)
            self.state.uploads.put(stored.file_id, data, self.state.now())
        except UploadError as err:
            return detail_reply(err.status, err.message)
        return json_reply(200, {"access_url": self._access_url(request, stored)})

    async def create_multipart(self, request: Request) -> Response:
        """`POST /files/upload/multipart`: start a multipart upload; answers `{"access_url", "uploadId"}`."""
        owner = self._token_owner(request)
        if isinstance(owner, Response):
            return owner
        try:
            stored = self._create(request, owner, multipart=True)
        except UploadError as err:
            return detail_reply(err.status, err.message)
        return json_reply(200, {"access_url": self._access_url(request, stored), "uploadId": stored.upload_id})

    async def upload_part(self, request: Request) -> Response:
        """`PUT <access_url>/multipart/<uploadId>/<n>`: one part; answers its `ETag`."""
        tokened = await self._tokened_content(request)
        if isinstance(tokened, Response):
            return tokened
        _, data = tokened
        params = request.path_params
        try:
            etag = self.state.uploads.add_part(
                params["file_id"], params["upload_id"], params["part_number"], data, self.state.now()
            )
        except UploadError as err:
            return detail_reply(err.status, err.message)
        return Response(status_code=200, headers={"ETag": etag})

    async def complete_multipart(self, request: Request) -> Response:
        """`POST <access_url>/multipart/<uploadId>/complete` with `{"parts": [{"partNumber", "etag"}]}`."""
        owner = self._token_owner(request)
        if isinstance(owner, Response):
            return owner
        data = await _json_or_none(request)
        params = request.path_params
        try:
            parts = data.get("parts") if isinstance(data, dict) else None
            stored = self.state.uploads.complete(params["file_id"], params["upload_id"], parts, self.state.now())
        except UploadError as err:
            return detail_reply(err.status, err.message)
        return json_reply(200, {"access_url": self._access_url(request, stored)})

    async def initiate(self, request: Request) -> Response:
        """`POST /storage/upload/initiate?storage_type=...` with `{"file_name", "content_type"}` and a key:
        answers `{"upload_url", "file_url"}`; the bytes then go by `PUT upload_url` (fal_client's fallback and
        fal-js's path)."""
        owner = self._key_owner(request)
        if isinstance(owner, Response):
            return owner
        data = await _json_or_none(request)
        if not isinstance(data, dict) or not isinstance(data.get("content_type", ""), str):
            return detail_reply(422, 'send {"file_name": "...", "content_type": "image/png"}')
        try:
            stored = self.state.uploads.create(
                owner,
                _file_name(data.get("file_name") if isinstance(data.get("file_name"), str) else None),
                data.get("content_type") or "application/octet-stream",
                _lifecycle_header(request),
                self.state.now(),
                multipart=False,
            )
        except UploadError as err:
            return detail_reply(err.status, err.message)
        upload_url = f"{self._base(request)}/storage/upload/put/{stored.file_id}"
        return json_reply(200, {"upload_url": upload_url, "file_url": self._access_url(request, stored)})

    async def put(self, request: Request) -> Response:
        """`PUT <upload_url>`: the bytes of an initiated upload (the URL itself is the credential, as a signed
        URL is)."""
        data = await self._content(request)
        if isinstance(data, Response):
            return data
        try:
            self.state.uploads.put(request.path_params["file_id"], data, self.state.now())
        except UploadError as err:
            return detail_reply(err.status, err.message)
        return Response(status_code=200)

    async def download(self, request: Request) -> Response:
        """An uploaded file, with the content type it was uploaded with (no key needed, like fal's CDN)."""
        stored = self.state.uploads.read(request.path_params["file_id"], self.state.now())
        if stored is None or stored.data is None or stored.file_name != request.path_params["file_name"]:
            return detail_reply(404, "File not found")
        return Response(stored.data, media_type=stored.content_type)

    def _create(self, request: Request, owner: str, *, multipart: bool) -> StoredFile:
        return self.state.uploads.create(
            owner,
            _file_name(request.headers.get("x-fal-file-name")),
            request.headers.get("content-type") or "application/octet-stream",
            _lifecycle_header(request),
            self.state.now(),
            multipart=multipart,
        )


async def _json_or_none(request: Request) -> Any:
    """The request's JSON body, or None when it is not JSON (the caller words what it wanted)."""
    try:
        return await request.json()
    except ValueError:
        return None
