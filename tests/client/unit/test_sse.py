"""The one SSE parser (fal_kontext.sse), per the WHATWG event-stream rules the client, recorder and probe share."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from fal_kontext_api.types import UNSET

from fal_kontext.sse import LineSplitter, aiter_lines, decode_stream, iter_lines


def _split(chunks: list[bytes]) -> list[str]:
    splitter = LineSplitter()
    return [line for chunk in chunks for line in splitter.feed(chunk)] + splitter.flush()


@pytest.mark.parametrize(
    "chunks",
    [
        [b"data: a\r\ndata: b\r\n\r\n"],
        [b"data: a\r", b"\ndata: b\r", b"\n\r", b"\n"],  # a CRLF split between chunks is one line ending
        [b"data: a\rdata: b\r\r"],  # a lone CR ends a line
        [b"data: a\ndata: b\n\n"],
        [b"\xef\xbb\xbfdata: a\n", b"data: b\n\n"],  # a leading BOM is dropped
    ],
)
def test_lines_end_with_crlf_lf_or_cr_only(chunks: list[bytes]) -> None:
    assert _split(chunks) == ["data: a", "data: b", ""]


def test_other_unicode_line_breaks_stay_inside_a_line() -> None:
    # JSON may carry U+2028 raw; str.splitlines (and httpx's iter_lines) would cut the event there.
    text = 'data: {"message": "a\u2028b\x0cc"}\n\n'.encode()
    assert _split([text[:12], text[12:]]) == ['data: {"message": "a\u2028b\x0cc"}', ""]


def test_a_character_split_between_chunks_is_kept_whole() -> None:
    encoded = "data: café\n".encode()
    cut = encoded.index(b"\xa9")  # between the two bytes of é
    assert _split([encoded[:cut], encoded[cut:]]) == ["data: café"]


def test_events_data_id_retry_comments_and_ignored_fields() -> None:
    raw = (
        b": keep-alive\r\n"
        b'id: 1\r\nretry: 3000\r\ndata: {"status":\r\ndata:  "IN_QUEUE"}\r\n\r\n'
        b"retry: soon\nevent: status\ndata\n\n"
        b'{"status": "COMPLETED"}\n'
        b"id: 2\0\n"
        b'data: {"status": "COMPLETED"}'
    )
    decoded = decode_stream(raw)
    first, second, third = decoded.events
    assert (first.data, first.id, first.retry) == ('{"status":\n "IN_QUEUE"}', "1", 3000)
    # An empty data field is an event with empty data; the id is kept across events; a retry that is not digits,
    # and an id with NUL, are ignored.
    assert (second.data, second.event, second.id) == ("", "status", "1") and second.retry is UNSET
    assert (third.data, third.id) == ('{"status": "COMPLETED"}', "1")
    assert decoded.comments == ["keep-alive"]
    assert decoded.ignored_lines == ['{"status": "COMPLETED"}']
    assert decoded.unterminated  # the last event had no blank line after it (the client still reads it)


def test_blank_lines_and_lone_ids_dispatch_nothing() -> None:
    assert decode_stream(b"\n\nid: 4\n\nretry: 10\n\n").events == []


def test_sync_and_async_line_readers_agree() -> None:
    chunks = [b"data: a\r", b"\n\r\ndata: \xc3", b"\xa9\n\n"]

    async def source() -> AsyncIterator[bytes]:
        for chunk in chunks:
            yield chunk

    async def collect() -> list[str]:
        return [line async for line in aiter_lines(source())]

    assert list(iter_lines(chunks)) == asyncio.run(collect()) == ["data: a", "", "data: é", ""]
