"""Pure parts of the client: URL handling, the SSE decoder, endpoints from the spec, edit inputs, files and data URIs
(the input checks themselves: test_inputs.py)."""

from __future__ import annotations

import base64
import io
from pathlib import Path

import pytest
from fal_kontext_api.models import QueueStatusEvent
from PIL import Image as PILImage

from fal_kontext.endpoints import Endpoint, choose_endpoint, model_tiers, parse_endpoint
from fal_kontext.errors import InvalidInputError
from fal_kontext.files import image_source_to_url
from fal_kontext.protocol.hosts import normalise_base_url
from fal_kontext.protocol.images import decode_data_uri, extension_for, inline_image, sniff_image_type
from fal_kontext.protocol.inputs import edit_fields
from fal_kontext.protocol.urls import base_for_returned_url
from fal_kontext.spec import endpoint_spec, endpoint_specs, spec
from fal_kontext.sse import KeepAlive, SSEDecoder
from tests.client.client_fakes import PNG

RID = "abc-1"


def follow(url: str | None, configured: str, operation: str = "get_request_status") -> tuple[str, str | None]:
    return base_for_returned_url(
        url, operation_id=operation, app="fal-ai/flux-pro", request_id=RID, configured_base=configured
    )


# --- URLs -------------------------------------------------------------------------------------------------------


def test_returned_url_on_the_configured_origin_is_followed_with_its_prefix() -> None:
    base, reason = follow(f"https://proxy.test/v1/fal-ai/flux-pro/requests/{RID}/status", "https://proxy.test/v1")
    assert (base, reason) == ("https://proxy.test/v1", None)
    base, reason = follow(f"https://proxy.test/other/fal-ai/flux-pro/requests/{RID}/status", "https://proxy.test/v1")
    assert (base, reason) == ("https://proxy.test/other", None)


@pytest.mark.parametrize("tail", ["", "/", "?logs=1", "#x", "/?a=b"])
def test_a_url_under_the_configured_base_gives_that_base_however_it_ends(tail: str) -> None:
    url = f"https://proxy.test/v1/fal-ai/flux-pro/requests/{RID}/status{tail}"
    assert follow(url, "https://proxy.test/v1") == ("https://proxy.test/v1", None)
    # Not under the base by a string prefix alone: a longer host name is another host.
    assert follow(url.replace("proxy.test", "proxy.test.evil"), "https://proxy.test")[1] is not None


def test_fal_host_is_rewritten_to_the_aggregator_base() -> None:
    base, reason = follow(f"https://queue.fal.run/fal-ai/flux-pro/requests/{RID}/status", "https://agg.test/fal")
    assert base == "https://agg.test/fal"
    assert reason is not None and "rewrote" in reason


def test_fal_host_is_followed_when_fal_is_the_base() -> None:
    url = f"https://queue.fal.run/fal-ai/flux-pro/requests/{RID}"
    assert follow(url, "https://queue.fal.run", "get_request_result") == ("https://queue.fal.run", None)


def test_other_hosts_and_foreign_paths_are_not_followed() -> None:
    base, reason = follow(f"https://evil.test/fal-ai/flux-pro/requests/{RID}/status", "https://agg.test")
    assert base == "https://agg.test" and reason is not None and "another host" in reason
    base, reason = follow("https://agg.test/somewhere/else", "https://agg.test")
    assert base == "https://agg.test" and reason is not None and "spec's path" in reason
    assert follow(None, "https://agg.test")[0] == "https://agg.test"


def test_default_ports_count_as_the_same_origin() -> None:
    base, reason = follow(
        f"https://agg.test:443/fal-ai/flux-pro/requests/{RID}/cancel", "https://agg.test", "cancel_request"
    )
    assert reason is None and base == "https://agg.test:443"


@pytest.mark.parametrize("bad", ["queue.fal.run", "ftp://x.test", "https://x.test/?a=1", ""])
def test_base_url_must_be_absolute_http(bad: str) -> None:
    with pytest.raises(ValueError, match="base URL"):
        normalise_base_url(bad)


def test_base_url_loses_its_trailing_slash() -> None:
    assert normalise_base_url("http://127.0.0.1:8000/") == "http://127.0.0.1:8000"


# --- SSE --------------------------------------------------------------------------------------------------------


def feed_all(lines: list[str]) -> list[QueueStatusEvent | KeepAlive]:
    decoder = SSEDecoder()
    out = [item for line in lines if (item := decoder.feed(line)) is not None]
    if (last := decoder.flush()) is not None:
        out.append(last)
    return out


def test_sse_events_comments_and_multiline_data() -> None:
    items = feed_all([": ping", "", "event: status", "id: 7", 'data: {"a":', "data: 1}", "", "data:x"])
    assert isinstance(items[0], KeepAlive) and items[0].comment == "ping"
    event = items[1]
    assert isinstance(event, QueueStatusEvent)
    assert (event.data, event.event, event.id) == ('{"a":\n1}', "status", "7")
    assert isinstance(items[2], QueueStatusEvent) and items[2].data == "x"  # flushed at the end of the stream
    assert len(items) == 3


def test_sse_blank_lines_without_data_dispatch_nothing() -> None:
    assert feed_all(["", "", "retry: 10", ""]) == []


# --- endpoints --------------------------------------------------------------------------------------------------


def test_endpoints_are_exactly_the_spec_submit_operations() -> None:
    edit_paths = {
        path.lstrip("/") for path, item in spec()["paths"].items() if "submit" in item.get("post", {}).get("tags", [])
    }
    assert edit_paths == {e.value for e in Endpoint}
    assert {e.is_multi for e in Endpoint} == {True, False}
    assert Endpoint.MAX_MULTI.image_field == "image_urls" and Endpoint.PRO.image_field == "image_url"


def test_endpoint_specs_describe_every_submit_operation() -> None:
    specs = {item.id: item for item in endpoint_specs()}
    assert set(specs) == {e.value for e in Endpoint}
    families = {None: "text-to-image", "image_url": "edit", "image_urls": "multi-edit"}
    for item in specs.values():
        operation = spec()["paths"]["/" + item.id]["post"]
        extension = operation.get("x-fal-endpoint", {})
        assert item.operation_id == operation["operationId"]
        schema = spec()["components"]["schemas"][item.input_schema]
        assert item.image_field is None or item.image_field in schema["required"]
        assert item.family == families[item.image_field]
        assert item.tier in model_tiers()
        assert item.output_schema in spec()["components"]["schemas"]
        assert item.output_schema == extension.get("output_schema", item.output_schema)
    assert set(model_tiers()) == {
        str(s["post"]["x-fal-endpoint"]["tier"]) for s in spec()["paths"].values() if "post" in s
    }


def test_the_x_fal_endpoint_extension_wins_over_the_fallback() -> None:
    operation = spec()["paths"]["/fal-ai/flux-pro/kontext"]["post"]
    extension = {
        "id": "fal-ai/flux-pro/kontext",
        "family": "multi-edit",
        "tier": "ultra",
        "image_field": "image_urls",
        "price_usd_per_image": 0.04,
    }
    item = endpoint_spec("/fal-ai/flux-pro/kontext", {**operation, "x-fal-endpoint": extension})
    assert (item.family, item.tier, item.image_field, item.price_usd_per_image) == (
        "multi-edit",
        "ultra",
        "image_urls",
        0.04,
    )
    fallback = endpoint_spec("/fal-ai/flux-pro/kontext", {k: v for k, v in operation.items() if k != "x-fal-endpoint"})
    assert (fallback.family, fallback.app, fallback.image_field) == ("edit", "fal-ai/flux-pro", "image_url")
    assert fallback.tier is None  # only x-fal-endpoint names a tier


def test_choose_and_parse_endpoint() -> None:
    assert choose_endpoint("max", family="multi-edit") is Endpoint.MAX_MULTI
    assert choose_endpoint("pro", family="edit") is Endpoint.PRO
    assert parse_endpoint("/fal-ai/flux-pro/kontext/max") is Endpoint.MAX
    assert parse_endpoint("https://queue.fal.run/fal-ai/flux-pro/kontext/multi") is Endpoint.PRO_MULTI
    with pytest.raises(InvalidInputError, match="allowed: fal-ai/flux-pro/kontext"):
        parse_endpoint("fal-ai/flux-pro/kontext/ultra")
    with pytest.raises(InvalidInputError, match="'pro', 'max'"):
        choose_endpoint("mega", family="edit")


# --- edit input and files -----------------------------------------------------------------------------------------

URL = "https://example.test/in.png"


def test_edit_picks_the_endpoint(tmp_path: Path) -> None:
    path = tmp_path / "in.png"
    path.write_bytes(PNG)
    inlined = image_source_to_url(path)
    endpoint, fields = edit_fields("a prompt", image=inlined, model="max", seed=3)
    assert endpoint is Endpoint.MAX
    assert fields == {"prompt": "a prompt", "seed": 3, "image_url": inlined}
    endpoint, fields = edit_fields("a prompt", images=(inlined, URL))
    assert endpoint is Endpoint.PRO_MULTI
    assert fields == {"prompt": "a prompt", "image_urls": [inlined, URL]}


def test_edit_input_mistakes() -> None:
    with pytest.raises(InvalidInputError, match="missing; give image"):
        edit_fields("a prompt")
    with pytest.raises(InvalidInputError, match="not both"):
        edit_fields("a prompt", image=URL, images=[URL])
    with pytest.raises(InvalidInputError, match=r"image=\.\.\. or images"):
        edit_fields("a prompt", image=URL, image_urls=[URL])
    with pytest.raises(InvalidInputError, match=r"no-such-file\.png"):
        edit_fields("a prompt", image="no-such-file.png")  # neither a URL nor a data URI (files: the verbs read them)


def test_files_are_sniffed_and_size_checked(tmp_path: Path) -> None:
    jpeg = b"\xff\xd8\xff\xe0" + b"\0" * 20
    webp = b"RIFF\0\0\0\0WEBPVP8 " + b"\0" * 8
    assert sniff_image_type(jpeg) == "image/jpeg" and sniff_image_type(webp) == "image/webp"
    assert sniff_image_type(b"hello") is None
    assert image_source_to_url(jpeg).startswith("data:image/jpeg;base64,")
    with pytest.raises(InvalidInputError, match="not a PNG"):
        image_source_to_url(b"hello world")
    big = tmp_path / "big.png"
    big.write_bytes(PNG + b"\0" * 100)
    with pytest.raises(InvalidInputError, match="limit"):
        image_source_to_url(big, max_bytes=50)
    with pytest.raises(InvalidInputError, match="limit"):
        image_source_to_url(PNG * 10, max_bytes=50)


def test_pil_images_become_png_data_uris() -> None:
    picture = PILImage.new("RGB", (4, 4), "red")
    uri = image_source_to_url(picture)
    content_type, data = decode_data_uri(uri)
    assert content_type == "image/png"
    assert PILImage.open(io.BytesIO(data)).size == (4, 4)


def test_data_uri_round_trip_and_extensions() -> None:
    uri = "data:image/png;base64," + base64.b64encode(PNG).decode()
    assert decode_data_uri(uri) == ("image/png", PNG)
    assert decode_data_uri("data:text/plain,a%20b") == ("text/plain", b"a b")
    with pytest.raises(ValueError, match="data"):
        decode_data_uri("https://x")
    # a URI's scheme name is case-insensitive (RFC 3986): a result image sent as DATA: is decoded, not downloaded
    assert inline_image("DATA:image/png;BASE64," + base64.b64encode(PNG).decode()) == ("image/png", PNG)
    assert extension_for("image/jpeg", PNG) == ".png"  # the bytes win over the declared type
    assert extension_for("image/jpeg") == ".jpg"
    assert extension_for(None, b"??") == ".bin"
