"""The remote mode's paid jobs ask for something checkable, and check that they got it (at no extra cost).

Each paid job (the client's lifecycle in `test_client_vs_spec.py`, the rules probe's in `semantics.py`) sends the
same input, read from the endpoint's request schema in the spec: an explicit `seed`, a non-square `aspect_ratio`
the spec allows, `output_format` `png`, `enhance_prompt` off and a non-ASCII prompt, one image (two with the opt-in
priced check). A relay that drops a parameter or alters what fal echoes then shows: the output's `seed` and
`prompt` must be the ones sent (fal: "It will be the same value of the one passed in the input"; the prompt used
is the prompt sent when it is not enhanced), `has_nsfw_concepts` has one flag per image, as many images as asked
for, each decoded image has the asked ratio (within 2%: the model rounds sizes to its latent grid) and is a PNG.
Every submit of the run must get its own request id (`RequestIds`).
"""

from __future__ import annotations

import base64
import io
import math
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import httpx
from PIL import Image as PILImage

from contracts.target import ContractTarget
from fal_kontext import Kontext, KontextError
from fal_kontext.spec import EndpointSpec, resolve, spec
from fal_kontext_emulator.queue_rules import Violation

__all__ = [
    "PROMPT",
    "SEED",
    "PaidJob",
    "RequestIds",
    "check_output",
    "check_ratio",
    "client_lifecycle",
    "input_properties",
    "paid_job",
]

# Non-ASCII on purpose: accents, guillemets, CJK and a character outside the BMP (a surrogate pair in JSON escapes).
PROMPT = "Put a donut next to the flour — «crème brûlée» 🍩 甜甜圈"
SEED = 424242
RATIO_TOLERANCE = 0.02  # the model's sizes are multiples of its latent patch, so the ratio is not exact


def input_properties(endpoint_id: str) -> dict[str, dict[str, Any]]:
    """The properties of an endpoint's input, read from its submit operation's request schema, each with its
    ``$ref``/``allOf`` resolved (enums may be components or inline)."""
    operation = spec()["paths"]["/" + endpoint_id]["post"]
    schema = resolve(operation["requestBody"]["content"]["application/json"]["schema"])
    return {str(name): resolve(node) for name, node in schema.get("properties", {}).items()}


def _ratio(value: str) -> float | None:
    across, _, down = value.partition(":")
    try:
        return float(across) / float(down)
    except (ValueError, ZeroDivisionError):
        return None


def _portrait_ratio(values: list[Any]) -> str | None:
    """The least extreme portrait ratio the spec allows: input images (fal's example, ours) are landscape or
    square, so an output that kept the input's ratio (the parameter dropped) cannot pass for it."""
    portrait = [(abs(math.log(r)), str(v)) for v in values if (r := _ratio(str(v))) is not None and r < 1]
    return min(portrait)[1] if portrait else None


@dataclass(frozen=True)
class PaidJob:
    """One paid job's input and what it asks for.

    Attributes:
        endpoint: The endpoint it is sent to.
        body: The input.
        images: Images asked for.
        output_format: The format asked for, if the spec has the field.
        aspect_ratio: The ratio asked for, if the spec has the field.
    """

    endpoint: EndpointSpec
    body: dict[str, Any]
    images: int
    output_format: str | None
    aspect_ratio: str | None


def paid_job(endpoint: EndpointSpec, *, remote: bool, images: int = 1) -> PaidJob:
    """The checkable input of a paid job on ``endpoint``, from the spec (its example, then the fields above)."""
    operation = spec()["paths"]["/" + endpoint.id]["post"]
    examples = operation["requestBody"]["content"]["application/json"].get("examples", {})
    body: dict[str, Any] = dict(next(iter(examples.values()))["value"]) if examples else {}
    properties = input_properties(endpoint.id)
    body["prompt"] = PROMPT
    if "seed" in properties:
        body["seed"] = SEED
    if "enhance_prompt" in properties:
        body["enhance_prompt"] = False
    if "num_images" in properties:
        lowest = int(properties["num_images"].get("minimum", 1))
        body["num_images"] = min(max(images, lowest), int(properties["num_images"].get("maximum", images)))
    fmt = properties.get("output_format", {})
    output_format = None
    if fmt.get("enum"):
        output_format = "png" if "png" in fmt["enum"] else next(v for v in fmt["enum"] if v != fmt.get("default"))
        body["output_format"] = output_format
    aspect_ratio = _portrait_ratio(list(properties.get("aspect_ratio", {}).get("enum", [])))
    if aspect_ratio is not None:
        body["aspect_ratio"] = aspect_ratio
    else:
        body.pop("aspect_ratio", None)
    if endpoint.image_field and not remote:
        # The local emulator is offline: it reads data URIs, not the example's URL. Landscape, like fal's example.
        image = landscape_data_uri()
        body[endpoint.image_field] = [image] if endpoint.image_field.endswith("s") else image
    return PaidJob(endpoint, body, int(body.get("num_images", 1)), output_format, aspect_ratio)


def landscape_data_uri() -> str:
    """A small landscape PNG as a data URI (the input image of jobs on an offline server)."""
    buffer = io.BytesIO()
    PILImage.new("RGB", (32, 24), (90, 90, 90)).save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


def check_ratio(width: int, height: int, aspect_ratio: str, where: str) -> list[Violation]:
    """A decoded image's ratio against the ``aspect_ratio`` asked for (within ``RATIO_TOLERANCE``)."""
    asked = _ratio(aspect_ratio)
    if asked is None or height <= 0:
        return []
    if abs((width / height) / asked - 1) > RATIO_TOLERANCE:
        return [
            Violation("aspect-ratio", f"{where}: {width}x{height} is not {aspect_ratio} (aspect_ratio asked for; ±2%)")
        ]
    return []


def check_output(output: Any, job: PaidJob, where: str) -> list[Violation]:
    """A result's output against what the job asked for: the echoes (seed, prompt), one NSFW flag per image, the
    image count. (The images themselves are checked once downloaded: ``semantics.check_image``.)"""
    if not isinstance(output, Mapping):
        return [Violation("result", f"{where}: the output is not a JSON object: {output!r:.160}")]
    found = []
    if "seed" in job.body and output.get("seed") != job.body["seed"]:
        found.append(Violation("echo-seed", f"{where}: seed {output.get('seed')!r}, {job.body['seed']} was sent"))
    if job.body.get("enhance_prompt") is False and output.get("prompt") != job.body["prompt"]:
        found.append(
            Violation("echo-prompt", f"{where}: prompt {output.get('prompt')!r}, {job.body['prompt']!r} was sent")
        )
    images, flags = output.get("images"), output.get("has_nsfw_concepts")
    if isinstance(images, list):
        if len(images) != job.images:
            found.append(
                Violation("image-count", f"{where}: num_images {job.images} was asked for, {len(images)} came back")
            )
        if not isinstance(flags, list) or len(flags) != len(images):
            count = len(flags) if isinstance(flags, list) else flags
            found.append(
                Violation("nsfw-flags", f"{where}: has_nsfw_concepts has {count!r} entries for {len(images)} images")
            )
    return found


@dataclass
class RequestIds:
    """The request ids the run's submits got, each of which must be new (two jobs sharing one id would be one job
    billed twice, or the second's result lost). Thread-safe: probes run side by side."""

    seen: dict[str, str] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add(self, request_id: str, what: str) -> list[Violation]:
        """Record the id one submit got; a violation if an earlier submit of the run got it too."""
        with self._lock:
            earlier = self.seen.get(request_id)
            if earlier is None:
                self.seen[request_id] = what
                return []
        return [Violation("request-id-distinct", f"{what}: request id {request_id} was already given to {earlier}")]


def client_lifecycle(
    target: ContractTarget, transport: httpx.BaseTransport, job: PaidJob, ids: RequestIds
) -> list[Violation]:
    """The paid job through our client (``fal_kontext.Kontext`` over ``transport``, e.g. a ``ConformanceRecorder``):
    submit, one status with logs, wait (the status stream); the result's echoes checked, its request id new to the
    run. What the client raises is reported, not raised."""
    what = f"the client's job on {job.endpoint.id}"
    found: list[Violation] = []
    try:
        with Kontext(
            target.secret,
            auth=target.auth,
            base_url=target.base_url,
            transport=transport,
            wait_timeout=60,
        ) as kontext:
            handle = kontext.submit(job.endpoint.id, job.body)
            found += ids.add(handle.request_id, what)
            handle.status(logs=True)
            result = handle.wait()
    except KontextError as err:
        return [*found, Violation("client", f"{what}: {type(err).__name__}: {err}")]
    if result.request_id != handle.request_id:
        found.append(Violation("client", f"{what}: result of {result.request_id}, submitted {handle.request_id}"))
    return found + check_output(result.output.to_dict(), job, f"{what}: result")
