"""What the client returns is typed without the generated package's ``Unset``: results, images and statuses, with
reprs a person can read (that ``mypy --strict`` takes the sizes as ``int | None``: integration/test_results.py)."""

from __future__ import annotations

import dataclasses
from typing import Any

from fal_kontext_api.models import KontextOutput
from fal_kontext_api.types import Unset

from fal_kontext import Completed, EditResult, RequestMetrics, ResultImage
from fal_kontext.spec import endpoint_specs, resolve, spec
from tests.client.client_fakes import OUTPUT, RID, FakeClock, FakeQueue, MakeClient, sse, status_body

INPUT = {"prompt": "a donut", "image_url": "https://example.test/in.png"}
EP = "fal-ai/flux-pro/kontext"


def _holds_unset(value: object) -> bool:
    """Whether ``value`` or anything inside it (dataclass fields, sequences, mappings) is an ``Unset``."""
    if isinstance(value, Unset):
        return True
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return any(
            _holds_unset(getattr(value, item.name)) for item in dataclasses.fields(value) if item.name != "output"
        )
    if isinstance(value, (list, tuple)):
        return any(_holds_unset(item) for item in value)
    if isinstance(value, dict):
        return any(_holds_unset(item) for item in value.values())
    return False


def test_a_result_holds_no_unset_and_reads_cleanly(fake: FakeQueue, clock: FakeClock, make: MakeClient) -> None:
    fake.stream = [sse(status_body("COMPLETED", metrics={}))]
    statuses: list[object] = []
    result = make(fake, clock).run(EP, INPUT, on_update=statuses.append)
    image = result.images[0]
    assert image == ResultImage(url=OUTPUT["images"][0]["url"], content_type="image/png", width=8, height=8)
    assert (image.file_name, image.file_size, image.file_data) == (None, None, None)  # fal did not send them
    text = repr(result)
    assert "Unset" not in text and " object at 0x" not in text, text
    assert text == f"EditResult(request_id={RID!r}, images=({image!r},))"
    assert repr(image) == f"ResultImage(url={image.url!r}, content_type='image/png', width=8, height=8)"
    assert isinstance(result.output, KontextOutput) and result.output.seed == 42  # the whole typed output
    completed = statuses[-1]
    assert isinstance(completed, Completed) and completed.metrics == RequestMetrics(inference_time=None)
    assert not _holds_unset(result) and not _holds_unset(completed) and "Unset" not in repr(completed)


def test_a_data_uri_is_shortened_in_the_repr() -> None:
    uri = "data:image/png;base64," + "A" * 5000
    output = KontextOutput.from_dict({**OUTPUT, "images": [{"url": uri, "file_size": 3750}]})
    text = repr(EditResult("r", output))
    assert len(text) < 200 and "(5022 characters)" in text and "file_size=3750" in text


def test_a_value_of_the_wrong_type_is_none() -> None:
    image = ResultImage.from_model({"url": "https://x.test/a.png", "width": "8", "height": True, "file_size": 1.5})
    assert (image.width, image.height, image.file_size) == (None, None, None)


def test_every_output_item_field_of_the_spec_is_a_result_image_field() -> None:
    """``ResultImage`` is built from any endpoint's output: a field the spec gains must be added to it (and none of
    its fields may be one no output schema has)."""
    document = spec()
    item_fields: set[str] = set()
    for endpoint in endpoint_specs():
        assert endpoint.output_schema is not None, endpoint.id
        output = resolve(document["components"]["schemas"][endpoint.output_schema])
        items = resolve(resolve(output["properties"]["images"])["items"])
        item_fields |= set(items["properties"])
    assert item_fields == {item.name for item in dataclasses.fields(ResultImage)}


def test_reprs_name_no_generated_type(fake: FakeQueue, clock: FakeClock, make: MakeClient) -> None:
    result: Any = make(fake, clock).run(EP, INPUT)
    assert "fal_kontext_api" not in repr(result) and "Image(" not in repr(result).replace("ResultImage(", "")
