"""The four FLUX.1 Kontext edit endpoints and how to pick one."""

from __future__ import annotations

import enum

from .errors import FieldProblem, InvalidInputError
from .spec import spec

__all__ = ["Endpoint", "choose_endpoint", "parse_endpoint"]


class Endpoint(enum.StrEnum):
    """A Kontext edit endpoint, named by its fal endpoint id (the submit path without the leading slash)."""

    PRO = "fal-ai/flux-pro/kontext"
    MAX = "fal-ai/flux-pro/kontext/max"
    PRO_MULTI = "fal-ai/flux-pro/kontext/multi"
    MAX_MULTI = "fal-ai/flux-pro/kontext/max/multi"

    @property
    def operation_id(self) -> str:
        """The spec's operationId of the submit (``submit_kontext``, ...)."""
        return str(spec()["paths"]["/" + self.value]["post"]["operationId"])

    @property
    def input_schema(self) -> str:
        """The spec's schema name of the input (``KontextInput`` or ``KontextMultiInput``)."""
        body = spec()["paths"]["/" + self.value]["post"]["requestBody"]["content"]["application/json"]["schema"]
        return str(body["$ref"]).rsplit("/", 1)[-1]

    @property
    def image_field(self) -> str:
        """``image_url`` or ``image_urls``: the required image field of this endpoint's input, from the spec."""
        required = spec()["components"]["schemas"][self.input_schema]["required"]
        return next(str(name) for name in required if str(name).startswith("image_url"))

    @property
    def is_multi(self) -> bool:
        """Whether the endpoint takes several input images."""
        return self.image_field == "image_urls"


MODELS = ("pro", "max")


def choose_endpoint(model: str, *, multi: bool) -> Endpoint:
    """The endpoint for a model (``"pro"`` or ``"max"``) and one image (``multi=False``) or several.

    Raises:
        InvalidInputError: ``model`` is neither ``"pro"`` nor ``"max"``.
    """
    if model not in MODELS:
        raise InvalidInputError([FieldProblem("model", model, f"{model!r} is not allowed; allowed: 'pro', 'max'")])
    for endpoint in Endpoint:
        if endpoint.is_multi == multi and ("/max" in endpoint.value) == (model == "max"):
            return endpoint
    raise AssertionError("unreachable: every model has a single and a multi endpoint")


def parse_endpoint(value: str | Endpoint) -> Endpoint:
    """An ``Endpoint`` from its id (a leading slash or ``https://host/`` prefix is tolerated).

    Raises:
        InvalidInputError: not one of the four endpoints.
    """
    if isinstance(value, Endpoint):
        return value
    text = value.strip()
    if "://" in text:
        text = text.split("://", 1)[1].partition("/")[2]
    text = text.strip("/")
    try:
        return Endpoint(text)
    except ValueError:
        allowed = ", ".join(e.value for e in Endpoint)
        raise InvalidInputError([FieldProblem("endpoint", value, f"unknown endpoint; allowed: {allowed}")]) from None
