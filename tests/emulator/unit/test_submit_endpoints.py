"""Every submit endpoint the spec has, per family: output item shapes, text-to-image, and the full-endpoint-path
form of status/result/cancel."""

from __future__ import annotations

import copy
import io
from typing import Any

import httpx
import pytest
from PIL import Image

from fal_kontext.spec import endpoints_of
from fal_kontext_emulator import EmulatorConfig, create_app
from fal_kontext_emulator.spec_document import load_spec
from tests.emulator.conftest import AUTH, REQUESTS, SUBMIT, MakeClient, ManualClock, body, image_data_uri

pytestmark = pytest.mark.anyio


def spec_with_text_to_image() -> dict[str, Any]:
    """The shipped spec, with a text-to-image endpoint added (the edit input without its image field) when it
    has none yet."""
    spec = copy.deepcopy(load_spec())
    if any(endpoint.family == "text-to-image" for endpoint in endpoints_of(spec)):
        return spec
    schemas = spec["components"]["schemas"]
    edit = schemas["KontextInput"]
    schemas["TextToImageInput"] = {
        **edit,
        "properties": {k: v for k, v in edit["properties"].items() if k != "image_url"},
        "required": [name for name in edit["required"] if name != "image_url"],
    }
    operation = copy.deepcopy(spec["paths"]["/fal-ai/flux-pro/kontext"]["post"])
    operation.pop("x-fal-endpoint", None)
    operation["operationId"] = "submit_text_to_image"
    operation["requestBody"]["content"]["application/json"] = {
        "schema": {"$ref": "#/components/schemas/TextToImageInput"}
    }
    spec["paths"]["/fal-ai/flux-pro/kontext/text-to-image"] = {"post": operation}
    return spec


def without_extensions(spec: dict[str, Any]) -> dict[str, Any]:
    """A copy of `spec` without any `x-fal-endpoint`, so every fact about an endpoint comes from the fallback."""
    bare = copy.deepcopy(spec)
    for item in bare["paths"].values():
        for operation in item.values():
            if isinstance(operation, dict):
                operation.pop("x-fal-endpoint", None)
    return bare


TEXT_TO_IMAGE = next(e.id for e in endpoints_of(spec_with_text_to_image()) if e.family == "text-to-image")


@pytest.fixture
def t2i_client(clock: ManualClock) -> httpx.AsyncClient:
    app = create_app(EmulatorConfig(), clock=clock, spec=spec_with_text_to_image())
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://testserver", headers=AUTH)


async def completed(client: httpx.AsyncClient, clock: ManualClock, path: str, payload: Any) -> dict[str, Any]:
    submitted = await client.post(path, json=payload)
    assert submitted.status_code == 200, submitted.text
    clock.advance(60)
    result = await client.get(f"{REQUESTS}/{submitted.json()['request_id']}")
    assert result.status_code == 200, result.text
    data: dict[str, Any] = result.json()
    return data


def test_the_fallback_derives_what_the_extension_states() -> None:
    spec = spec_with_text_to_image()
    derived = {endpoint.id: endpoint for endpoint in endpoints_of(without_extensions(spec))}
    assert derived["fal-ai/flux-pro/kontext"].family == "edit"
    assert derived["fal-ai/flux-pro/kontext/max/multi"].family == "multi-edit"
    assert derived["fal-ai/flux-pro/kontext/multi"].image_field == "image_urls"
    assert (derived[TEXT_TO_IMAGE].family, derived[TEXT_TO_IMAGE].image_field) == ("text-to-image", None)
    for endpoint in endpoints_of(spec):
        same = derived[endpoint.id]
        assert (same.family, same.app, same.image_field) == (endpoint.family, endpoint.app, endpoint.image_field)
        assert same.tier is None  # only the extension (a source or an override) names a tier


def test_the_extension_wins() -> None:
    spec = without_extensions(spec_with_text_to_image())
    extension = {"id": TEXT_TO_IMAGE, "family": "text-to-image", "tier": "ultra", "price_usd_per_image": 0.1}
    spec["paths"]["/" + TEXT_TO_IMAGE]["post"]["x-fal-endpoint"] = extension
    declared = {endpoint.id: endpoint for endpoint in endpoints_of(spec)}[TEXT_TO_IMAGE]
    assert (declared.tier, declared.price_usd_per_image, declared.image_field) == ("ultra", 0.1, None)


async def test_an_output_schema_named_by_the_extension_shapes_the_items(clock: ManualClock) -> None:
    spec = spec_with_text_to_image()
    item = {
        "type": "object",
        "required": ["url"],
        "properties": {"url": {"type": "string"}, "width": {"type": "integer"}},
    }
    spec["components"]["schemas"]["TinyOutput"] = {
        "type": "object",
        "properties": {"images": {"type": "array", "items": item}},
    }
    operation = spec["paths"]["/" + TEXT_TO_IMAGE]["post"]
    operation["x-fal-endpoint"] = {"id": TEXT_TO_IMAGE, "family": "text-to-image", "output_schema": "TinyOutput"}
    declared = {endpoint.id: endpoint for endpoint in endpoints_of(spec)}[TEXT_TO_IMAGE]
    assert declared.output_schema == "TinyOutput"
    app = create_app(EmulatorConfig(), clock=clock, spec=spec)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://testserver", headers=AUTH
    ) as client:
        [image] = (await completed(client, clock, "/" + TEXT_TO_IMAGE, {"prompt": "x"}))["images"]
    assert set(image) == {"url", "width"}


async def test_single_image_items_carry_file_name_and_size(client: httpx.AsyncClient, clock: ManualClock) -> None:
    [item] = (await completed(client, clock, SUBMIT, body()))["images"]
    assert set(item) == {"url", "content_type", "file_name", "file_size", "width", "height"}


async def test_multi_image_items_have_only_fal_registry_image_fields(
    client: httpx.AsyncClient, clock: ManualClock
) -> None:
    payload = {"prompt": "x", "image_urls": [image_data_uri(), image_data_uri((0, 0, 200))], "num_images": 2}
    for path in (SUBMIT + "/multi", SUBMIT + "/max/multi"):
        items = (await completed(client, clock, path, payload))["images"]
        assert [set(item) for item in items] == [{"url", "content_type", "width", "height"}] * 2
        assert items[0]["content_type"] == "image/jpeg"


async def test_text_to_image_renders_a_square_picture_from_prompt_and_seed(
    t2i_client: httpx.AsyncClient, clock: ManualClock
) -> None:
    path = "/" + TEXT_TO_IMAGE
    first = (await completed(t2i_client, clock, path, {"prompt": "a red fox", "seed": 3}))["images"][0]
    again = (await completed(t2i_client, clock, path, {"prompt": "a red fox", "seed": 3}))["images"][0]
    other = (await completed(t2i_client, clock, path, {"prompt": "a blue whale", "seed": 3}))["images"][0]
    wide = (await completed(t2i_client, clock, path, {"prompt": "a red fox", "aspect_ratio": "16:9"}))["images"][0]
    assert set(first) == {"url", "content_type", "width", "height"}
    assert first["width"] == first["height"]
    assert wide["width"] > wide["height"]
    pictures = [(await t2i_client.get(item["url"])).content for item in (first, again, other)]
    assert pictures[0] == pictures[1] != pictures[2]
    assert Image.open(io.BytesIO(pictures[0])).size == (first["width"], first["height"])


async def test_text_to_image_refuses_a_missing_prompt(t2i_client: httpx.AsyncClient) -> None:
    response = await t2i_client.post("/" + TEXT_TO_IMAGE, json={})
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["body", "prompt"]


async def test_submit_faults_cover_every_submit_endpoint(t2i_client: httpx.AsyncClient) -> None:
    await t2i_client.post("/_emulator/faults", json={"operation": "submit", "sequence": ["503"]})
    assert (await t2i_client.post("/" + TEXT_TO_IMAGE, json={"prompt": "x"})).status_code == 503


async def test_full_endpoint_path_form_answers_status_result_and_cancel(
    make_client: MakeClient, clock: ManualClock
) -> None:
    client = make_client(EmulatorConfig(run_time=5))
    for endpoint in ("fal-ai/flux-pro/kontext/max/multi", "fal-ai/flux-pro/kontext"):
        payload = {"prompt": "x", "image_urls": [image_data_uri()]} if "multi" in endpoint else body()
        request_id = (await client.post("/" + endpoint, json=payload)).json()["request_id"]
        full = f"/{endpoint}/requests/{request_id}"
        assert (await client.get(full + "/status")).json()["status"] == "IN_QUEUE"
        assert (await client.get(full)).status_code == 400
        clock.advance(60)
        status = await client.get(full + "/status/")
        assert (status.status_code, status.json()["status"]) == (200, "COMPLETED")
        assert status.json()["status_url"].endswith(f"{REQUESTS}/{request_id}/status")
        assert (await client.get(full)).json()["images"]
        assert (await client.put(full + "/cancel")).json() == {"status": "ALREADY_COMPLETED"}
    cancelled = (await client.post(SUBMIT, json=body())).json()["request_id"]
    response = await client.put(f"{SUBMIT}/max/requests/{cancelled}/cancel")
    assert (response.status_code, response.json()) == (202, {"status": "CANCELLATION_REQUESTED"})


async def test_log_entries_carry_level_source_and_timestamp(client: httpx.AsyncClient, clock: ManualClock) -> None:
    request_id = (await client.post(SUBMIT, json=body())).json()["request_id"]
    clock.advance(0.15)
    logs = (await client.get(f"{REQUESTS}/{request_id}/status", params={"logs": "1"})).json()["logs"]
    assert logs
    for entry in logs:
        assert set(entry) == {"message", "level", "source", "timestamp"}
        assert entry["source"] == "USER"
        assert entry["timestamp"].endswith("Z") or "+" in entry["timestamp"]


async def test_an_extension_id_other_than_the_path_names_the_endpoint(clock: ManualClock) -> None:
    spec = spec_with_text_to_image()
    operation = spec["paths"]["/" + TEXT_TO_IMAGE]["post"]
    renamed = {**operation["x-fal-endpoint"], "id": "fal-ai/flux-pro/renamed"}  # the path stays as it was
    operation["x-fal-endpoint"] = renamed
    app = create_app(EmulatorConfig(), clock=clock, spec=spec)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://testserver", headers=AUTH
    ) as client:
        assert (await completed(client, clock, "/" + TEXT_TO_IMAGE, {"prompt": "x"}))["images"]
