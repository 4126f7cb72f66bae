"""Saving a result: each image decoded (a data URI) or downloaded (a URL, without credentials), then written."""

from __future__ import annotations

from typing import TYPE_CHECKING

from fal_kontext.errors import NotFoundError, UnexpectedResponseError
from fal_kontext.results import EditResult

from .answers import error_from_no_answer, lower_headers
from .commands import Answer, Download, Flow, NoAnswer, WriteFile, perform
from .images import image_file_name, inline_image
from .send import send
from .settings import Settings

if TYPE_CHECKING:
    from os import PathLike

__all__ = ["save_flow"]


def _downloaded(outcome: Answer | NoAnswer, url: str, request_id: str) -> tuple[str | None, bytes]:
    if isinstance(outcome, NoAnswer):
        raise error_from_no_answer(outcome, request_id=request_id, operation=f"downloading {url}", submit=False)
    if outcome.status_code in (403, 404, 410):
        raise NotFoundError(
            f"image {url} is gone",
            status_code=outcome.status_code,
            request_id=request_id,
            hint="fal's result URLs expire; save results as soon as they complete",
        )
    if outcome.status_code >= 400:
        raise UnexpectedResponseError(f"downloading {url} answered {outcome.status_code}", request_id=request_id)
    return lower_headers(outcome.headers).get("content-type"), outcome.content


def save_flow(
    result: EditResult, directory: object, settings: Settings, deadline: float | None = None
) -> Flow[list[PathLike[str]]]:
    """Write every image of ``result`` into ``directory`` as ``<request_id>-<n>.<ext>``, atomically, one by one.

    Data URIs are decoded here; URLs are downloaded (``Download``, without credentials; retried as idempotent
    calls), each within what is left until ``deadline``. Returns the paths written.
    """
    written: list[PathLike[str]] = []
    for index, image in enumerate(result.images):
        inline = inline_image(image.url)
        if inline is None:
            timeout = None if deadline is None else max(0.0, deadline - settings.clock())
            download = Download(image.url, result.request_id, timeout)
            sent = yield from send(download, settings.pacing, idempotent=True, deadline=deadline)
            inline = _downloaded(sent.outcome, image.url, result.request_id)
        content_type, data = inline
        name = image_file_name(result.request_id, index, data, content_type or image.content_type)
        written.append((yield from perform(WriteFile(directory, name, data))))
    return written
