"""The manifest: a JSON lines file of jobs, read and checked against the spec before anything is sent.

A line is a JSON object: the input fields of the endpoint (``prompt``, ``aspect_ratio``, ...) plus, all optional,
``id`` (default ``line-N``), ``endpoint`` (an endpoint id of the spec) or ``model`` (a tier), and ``image`` /
``images`` (paths, relative to the manifest, or URLs; read and inlined when the job is submitted).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fal_kontext import (
    DEFAULT_MAX_IMAGE_BYTES,
    Endpoint,
    EndpointSpec,
    FieldProblem,
    InvalidInputError,
    KontextError,
    check_input,
    image_source_to_url,
    resolved_schema,
)

__all__ = ["BatchJob", "ManifestError", "choose_endpoint_spec", "read_manifest", "tier_order"]

_RESERVED = frozenset({"id", "endpoint", "model", "image", "images"})


def _spec_endpoints() -> tuple[EndpointSpec, ...]:
    """Every endpoint of the spec, in the spec's order."""
    return tuple(endpoint.spec for endpoint in Endpoint)


def tier_order(specs: Sequence[EndpointSpec] = ()) -> list[str]:
    """Every tier, in the order the spec first names them (then any other tier of ``specs``): the first is the
    default model."""
    return list(dict.fromkeys(c.tier for c in (*_spec_endpoints(), *specs) if c.tier is not None))


def choose_endpoint_spec(
    specs: Sequence[EndpointSpec], *, images: int, model: str | None = None, endpoint: str | None = None
) -> EndpointSpec:
    """The endpoint for ``images`` input images: ``endpoint`` if given, else the family's endpoint of tier ``model``
    (default: the first tier, in the spec's order, that has one).

    No image picks text-to-image, one picks edit (or multi-edit if the tier has no single-image one), several pick
    multi-edit.

    Raises:
        InvalidInputError: an unknown endpoint, or no endpoint of that tier takes that many images.
    """
    if endpoint is not None:
        chosen = next((candidate for candidate in specs if candidate.id == endpoint), None)
        if chosen is None:
            allowed = ", ".join(candidate.id for candidate in specs)
            problem = f"{endpoint!r} is not an endpoint of the spec; allowed: {allowed}"
            raise InvalidInputError([FieldProblem("endpoint", endpoint, problem)])
        takes = {"text-to-image": images == 0, "edit": images == 1, "multi-edit": images >= 1}[chosen.family]
        if not takes:
            raise InvalidInputError(
                [FieldProblem("image", images, f"{images} image(s) given; {endpoint} is of family {chosen.family}")]
            )
        return chosen
    families = ["text-to-image"] if images == 0 else ["edit", "multi-edit"] if images == 1 else ["multi-edit"]
    for family in families:
        for tier in [model] if model else tier_order(specs):
            for candidate in specs:
                if candidate.family == family and candidate.tier == tier:
                    return candidate
    offered = ", ".join(f"{c.id} ({c.family})" for c in specs if model is None or c.tier == model)
    problem = f"{images} image(s) given; {f'model {model!r} has' if model else 'the endpoints are'} {offered}"
    raise InvalidInputError([FieldProblem("model" if model else "image", model or images, problem)])


class ManifestError(KontextError, ValueError):
    """The manifest cannot be run as written (nothing was sent): every problem, by line, and what to do."""

    def __init__(self, path: Path | str, problems: Sequence[str], hint: str | None = None) -> None:
        self.path = str(path)
        self.problems = tuple(problems)
        self.hint = hint
        shown = "; ".join(self.problems[:20]) + ("; ..." if len(self.problems) > 20 else "")
        advice = f". {hint[:1].upper()}{hint[1:]}" if hint else ""
        super().__init__(f"{path}: {len(self.problems)} problem(s), nothing was sent: {shown}{advice}")


@dataclass(frozen=True)
class BatchJob:
    """One line of a manifest.

    Attributes:
        id: The line's id (its ``id`` field, else ``line-N``): names its output folder and its journal row.
        line: The line number (1-based).
        endpoint: The endpoint it goes to.
        fields: The input fields, with images as given (paths are read when the job is submitted).
        digest: A fingerprint of the line, so a journal is never applied to a line that changed.
        num_images: Images it asks for (its ``num_images``, else the spec's default).
    """

    id: str
    line: int
    endpoint: EndpointSpec
    fields: Mapping[str, Any]
    digest: str
    num_images: int

    def input(self, max_image_bytes: int = DEFAULT_MAX_IMAGE_BYTES) -> dict[str, Any]:
        """The input to submit: local images read and inlined as data URIs.

        Raises:
            InvalidInputError: an image is missing, not an image or too large.
        """
        body = dict(self.fields)
        name = self.endpoint.image_field
        if name is not None:
            value = body[name]
            if isinstance(value, list):
                body[name] = [
                    image_source_to_url(item, field=f"{name}[{index}]", max_bytes=max_image_bytes)
                    for index, item in enumerate(value)
                ]
            else:
                body[name] = image_source_to_url(value, field=name, max_bytes=max_image_bytes)
        return body


def _is_url(value: object) -> bool:
    return isinstance(value, str) and value.lower().startswith(("http://", "https://", "data:"))


def _images_of(data: Mapping[str, Any], fields: dict[str, Any], specs: Sequence[EndpointSpec]) -> list[Any]:
    """The line's images: ``image``, ``images``, or an endpoint's own image field (taken out of ``fields``)."""
    if "image" in data:
        return [data["image"]]
    own_fields = [name for name in dict.fromkeys(c.image_field for c in specs if c.image_field) if name in fields]
    value = data["images"] if "images" in data else fields.pop(own_fields[0]) if own_fields else None
    if value is None:
        return []
    return list(value) if isinstance(value, list) else [value]


def _local_images(images: Sequence[Any], base: Path, where: str) -> tuple[list[Any], list[str]]:
    """URLs as they are, paths made absolute (relative to the manifest); a problem for each missing file."""
    resolved: list[Any] = []
    problems: list[str] = []
    for item in images:
        if _is_url(item):
            resolved.append(item)
            continue
        path = (base / str(item)).expanduser() if isinstance(item, str) else None
        if path is None or not path.is_file():
            problems.append(f"{where}: image {item!r} is not a URL or an existing file")
        resolved.append(str(path))
    return resolved, problems


def _job_from_line(
    number: int, data: Any, base: Path, specs: Sequence[EndpointSpec]
) -> tuple[BatchJob | None, list[str]]:
    if not isinstance(data, dict):
        return None, [f"line {number}: not a JSON object"]
    job_id = data.get("id", f"line-{number}")
    if not isinstance(job_id, str) or not job_id.strip() or "/" in job_id or job_id in (".", ".."):
        return None, [f"line {number}: id {job_id!r} must be a non-empty string without '/'"]
    where = f"line {number} ({job_id})"
    fields = {key: value for key, value in data.items() if key not in _RESERVED}
    images = _images_of(data, fields, specs)
    try:
        chosen = choose_endpoint_spec(specs, images=len(images), model=data.get("model"), endpoint=data.get("endpoint"))
    except InvalidInputError as err:
        return None, [f"{where}: {'; '.join(str(problem) for problem in err.problems)}"]
    resolved, problems = _local_images(images, base, where)
    # Checked against the spec now, with a placeholder for local files (they are read at submit).
    checked = dict(fields)
    placeholders = [item if _is_url(item) else "data:image/png;base64,AA==" for item in resolved]
    if chosen.image_field is not None:
        multi = chosen.family == "multi-edit"
        fields[chosen.image_field] = resolved if multi else resolved[0]
        checked[chosen.image_field] = placeholders if multi else placeholders[0]
    try:
        check_input(Endpoint(chosen.id), checked)
    except InvalidInputError as err:
        problems += [f"{where}: {problem}" for problem in err.problems]
    schema = resolved_schema(chosen.input_schema).get("properties", {})
    count = fields.get("num_images", schema.get("num_images", {}).get("default", 1))
    digest = hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:16]
    job = BatchJob(job_id, number, chosen, fields, digest, count if isinstance(count, int) else 1)
    return job, problems


def read_manifest(path: str | Path) -> list[BatchJob]:
    """Read and check a JSON lines manifest against the spec's endpoints; relative image paths are relative to its
    folder.

    Raises:
        ManifestError: with every problem (bad JSON, unknown endpoint, fields the spec does not allow, missing
            images, duplicate ids), before anything is sent.
    """
    source = Path(path)
    specs = _spec_endpoints()
    jobs: list[BatchJob] = []
    problems: list[str] = []
    seen: dict[str, int] = {}
    with source.open(encoding="utf-8") as lines:
        for number, text in enumerate(lines, start=1):
            if not text.strip():
                continue
            try:
                data = json.loads(text)
            except json.JSONDecodeError as err:
                problems.append(f"line {number}: not JSON ({err.msg} at column {err.colno})")
                continue
            job, found = _job_from_line(number, data, source.parent, specs)
            problems += found
            if job is None:
                continue
            if job.id in seen:
                problems.append(f"line {number}: id {job.id!r} is also the id of line {seen[job.id]}")
            seen[job.id] = number
            jobs.append(job)
    if problems:
        raise ManifestError(source, problems)
    return jobs
