"""What a completed request answers: its output (images rendered from its inputs) or the error it ended with."""

from __future__ import annotations

import base64
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from starlette.concurrency import run_in_threadpool

from fal_kontext.spec import EndpointSpec, resolve
from fal_kontext_emulator.fal_bodies import failed_result, model_error
from fal_kontext_emulator.images import InputImageError, ReadInput, RenderedImage, decode_data_uri, derived_picture
from fal_kontext_emulator.remote_images import remote_input
from fal_kontext_emulator.request_checks import input_urls
from fal_kontext_emulator.request_queue import Outcome, QueuedRequest
from fal_kontext_emulator.state import EmulatorState

JsonObject = dict[str, Any]

FILES_PREFIX = "/files"

# What the emulator can say about an output image, in the order it says it: an item carries those of these its
# endpoint's item schema declares. `file_data` (fal's single-image item, optional) is never emitted.
_ITEM_FIELDS = ("url", "content_type", "file_name", "file_size", "width", "height")
# Inputs may name files the emulator served, whose bytes come from rendering another request; this bounds
# how deep such references may nest.
_MAX_INPUT_DEPTH = 4


@dataclass(frozen=True)
class OutputShape:
    """What an endpoint's output holds, from its output schema: the fields of its image items, and the value of
    every other required field the emulator has no meaning for (its default, first allowed value, or least value)."""

    item_fields: tuple[str, ...]
    fields: tuple[str, ...]
    filler: Mapping[str, Any]


def output_shape(spec: JsonObject, endpoint: EndpointSpec) -> OutputShape:
    """The shape of `endpoint`'s output, as its output schema declares it."""
    named = endpoint.output_schema
    output = _plain_schema(spec, {"$ref": f"#/components/schemas/{named}"} if isinstance(named, str) else named)
    properties = output.get("properties", {})
    images = _plain_schema(spec, properties.get("images", {}))
    declared = _plain_schema(spec, images.get("items", {})).get("properties", {})
    required = set(output.get("required", []))
    filler = {
        name: _least_value(_plain_schema(spec, schema))
        for name, schema in properties.items()
        if name in required and name not in _KNOWN_FIELDS
    }
    return OutputShape(tuple(n for n in _ITEM_FIELDS if n in declared), tuple(properties), filler)


# Output fields the emulator fills from the request itself (fal's Kontext and FLUX outputs have them).
_KNOWN_FIELDS = ("images", "timings", "seed", "has_nsfw_concepts", "prompt")


def _plain_schema(spec: JsonObject, schema: Any) -> JsonObject:
    """`schema` with `$ref` and a one-member `allOf` followed; {} for anything but a schema object."""
    return resolve(schema, spec) if isinstance(schema, dict) else {}


def _least_value(schema: JsonObject) -> Any:
    """A value the schema allows, for a required output field the emulator knows nothing about."""
    if "default" in schema:
        return schema["default"]
    if schema.get("enum"):
        return schema["enum"][0]
    kind = schema.get("type")
    if kind in ("integer", "number"):
        return schema.get("minimum", 0)
    return {"string": "", "boolean": False, "array": [], "object": {}}.get(str(kind))


class Outputs:
    """Renders requests' images and builds their result bodies.

    Args:
        state: the emulator's state.
        shapes: per endpoint id, what its output holds (see `output_shape`).
    """

    def __init__(self, state: EmulatorState, shapes: Mapping[str, OutputShape]) -> None:
        self.state = state
        self._shapes = shapes

    async def outcome_of(self, request: QueuedRequest) -> tuple[int, JsonObject, dict[str, str]]:
        """The status, body and headers of a completed request's result (renders its images if needed)."""
        failed = failed_result(request)
        if failed is not None:
            return failed
        try:
            images = await self.images(request)
        except InputImageError as err:
            urls = input_urls(request.arguments, self._image_field(request))
            loc: list[str | int] = list(urls[err.index or 0][0]) if urls else ["body"]
            return 422, model_error(loc, err.message, err.kind), {"X-Fal-Retryable": "false"}
        return 200, self._output(request, images), {}

    async def images(self, request: QueuedRequest) -> list[RenderedImage]:
        """The request's output images (rendered in a worker thread, cached by the renderer).

        Raises:
            InputImageError: an input could not be read; `index` says which.
        """
        return await run_in_threadpool(self._render, request, self._input_readers(request, 0))

    def file_index(self, request: QueuedRequest, file_name: str) -> int | None:
        """Which output image a served file name names, if the request still serves files."""
        if not _serves_files(request):
            return None
        count = int(request.arguments.get("num_images", 1))
        for index in range(count):
            if _file_name(request, index) == file_name:
                return index
        return None

    def _image_field(self, request: QueuedRequest) -> str | None:
        endpoint = self.state.endpoints.get(request.endpoint_id)
        return endpoint.image_field if endpoint is not None else None

    def _render(self, request: QueuedRequest, inputs: list[ReadInput]) -> list[RenderedImage]:
        arguments = request.arguments
        return self.state.renderer.render(
            inputs,
            seed=request.seed,
            count=int(arguments.get("num_images", 1)),
            aspect_ratio=arguments.get("aspect_ratio"),
            output_format=str(arguments.get("output_format", "jpeg")),
        )

    def _input_readers(self, request: QueuedRequest, depth: int) -> list[ReadInput]:
        """Callables that produce each input's bytes. Resolved here, on the event loop, because they may look
        at other requests; the callables themselves only render, so they can run in a worker thread."""
        endpoint = self.state.endpoints.get(request.endpoint_id)
        if endpoint is not None and endpoint.family == "text-to-image":
            # No input image: the picture is derived from the prompt (square, so no aspect_ratio means 1:1, the
            # default fal documents for text-to-image); the seed varies it as for edits.
            prompt = str(request.arguments.get("prompt", ""))
            return [lambda: derived_picture("prompt: " + prompt, square=True)]
        urls = input_urls(request.arguments, self._image_field(request))
        return [self._reader(request, url, depth) for _, url in urls]

    def _reader(self, request: QueuedRequest, url: str, depth: int) -> ReadInput:
        if url.startswith("data:"):
            limit = self.state.config.max_data_uri_bytes
            return lambda: decode_data_uri(url, limit)
        own_prefix = f"{request.base_url}{FILES_PREFIX}/"
        if not url.startswith(own_prefix):
            return remote_input(url, self.state.settings.remote_images)
        name = url.removeprefix(own_prefix)
        if name.startswith("uploads/"):
            return self._uploaded(url, name)
        source = self._own_file(name)
        if source is None or depth >= _MAX_INPUT_DEPTH:
            return _failing(f"Failed to download the file at {url!r}: this emulator holds no such file")
        other, index = source
        inputs = self._input_readers(other, depth + 1)

        def read() -> bytes:
            return self._render(other, inputs)[index].data

        return read

    def _uploaded(self, url: str, name: str) -> ReadInput:
        """The bytes of a file uploaded to this emulator's storage, read now (on the event loop)."""
        parts = name.split("/")
        stored = self.state.uploads.read(parts[1], self.state.now()) if len(parts) == 3 else None
        if stored is None or stored.data is None:
            return _failing(f"Failed to download the file at {url!r}: this emulator holds no such upload")
        data = stored.data
        return lambda: data

    def _own_file(self, name: str) -> tuple[QueuedRequest, int] | None:
        """The request and image index `<request id>/<file name>` under this emulator's /files names, if held."""
        parts = name.split("/")
        if len(parts) != 2:
            return None
        other = self.state.queue.find(urllib.parse.unquote(parts[0]), self.state.now())
        index = None if other is None else self.file_index(other, parts[1])
        return None if other is None or index is None else (other, index)

    def _output(self, request: QueuedRequest, images: list[RenderedImage]) -> JsonObject:
        shape = self._shapes[request.endpoint_id]
        sync = bool(request.arguments.get("sync_mode"))
        items = []
        for index, image in enumerate(images):
            name = _file_name(request, index)
            if sync:
                url = f"data:{image.content_type};base64,{base64.b64encode(image.data).decode()}"
            else:
                url = f"{request.base_url}{FILES_PREFIX}/{urllib.parse.quote(request.request_id, safe='')}/{name}"
            every = {
                "url": url,
                "content_type": image.content_type,
                "file_name": name,
                "file_size": len(image.data),
                "width": image.width,
                "height": image.height,
            }
            items.append({field: every[field] for field in shape.item_fields})
        inference = request.run_time if request.started_at is not None else 0.0
        known = {
            "images": items,
            "timings": {"inference": round(inference, 6)},
            "seed": request.seed,
            "has_nsfw_concepts": [False] * len(items),
            "prompt": request.arguments.get("prompt", ""),
        }
        return {
            name: known[name] if name in known else shape.filler[name]
            for name in shape.fields
            if name in known or name in shape.filler
        }


def _failing(message: str) -> ReadInput:
    def read() -> bytes:
        raise InputImageError(message)

    return read


def _serves_files(request: QueuedRequest) -> bool:
    # sync_mode outputs are data URIs that fal does not store; failed requests have no output.
    return (
        request.status == "COMPLETED"
        and request.ending is None
        and request.outcome is Outcome.OK
        and not request.arguments.get("sync_mode")
    )


def _file_name(request: QueuedRequest, index: int) -> str:
    extension = "png" if request.arguments.get("output_format") == "png" else "jpg"
    return f"{request.request_id}_{index}.{extension}"
