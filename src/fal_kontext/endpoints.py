"""The endpoints of the spec and how to pick one: ``Endpoint`` is an endpoint id the spec knows, never a hand list.

``Endpoint`` behaves like the string enum it used to be: ``Endpoint("fal-ai/flux-pro/kontext")``, ``Endpoint.MAX``
(member names are the tier, plus ``_MULTI`` for several input images or ``_TEXT_TO_IMAGE``; an endpoint outside the
tiers is named by its id without the owner, ``Endpoint.FLUX_1_DEV``), ``list(Endpoint)``,
``.value``, ``.name``, ``"fal-ai/flux-pro/kontext" in Endpoint``, and one object per id (``is`` works).
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterator

from .errors import FieldProblem, InvalidInputError
from .spec import EndpointSpec, endpoint_specs

__all__ = ["Endpoint", "choose_endpoint", "model_tiers", "parse_endpoint"]

_NAME_SUFFIX = {"edit": "", "multi-edit": "_MULTI", "text-to-image": "_TEXT_TO_IMAGE"}


@functools.cache
def _by_id() -> dict[str, Endpoint]:
    return {item.id: str.__new__(Endpoint, item.id) for item in endpoint_specs()}


@functools.cache
def _by_name() -> dict[str, Endpoint]:
    return {endpoint.name: endpoint for endpoint in _by_id().values()}


class _EndpointType(type):
    """Class-level behaviour of ``Endpoint``: iteration, ``Endpoint.NAME``, ``Endpoint["NAME"]`` and interning."""

    def __iter__(cls) -> Iterator[Endpoint]:
        return iter(_by_id().values())

    def __len__(cls) -> int:
        return len(_by_id())

    def __contains__(cls, value: object) -> bool:
        return isinstance(value, str) and value in _by_id()

    def __getattr__(cls, name: str) -> Endpoint:
        if name.startswith("_") or name not in _by_name():
            raise AttributeError(f"Endpoint has no member {name!r}; members: {', '.join(_by_name())}")
        return _by_name()[name]

    def __getitem__(cls, name: str) -> Endpoint:
        try:
            return _by_name()[name]
        except KeyError:
            raise KeyError(name) from None

    def __call__(cls, value: str) -> Endpoint:
        if isinstance(value, Endpoint):
            return value
        try:
            return _by_id()[value]
        except KeyError:
            raise ValueError(f"{value!r} is not an endpoint of the spec") from None


class Endpoint(str, metaclass=_EndpointType):
    """An endpoint of the spec, named by its fal endpoint id (the submit path without the leading slash)."""

    __slots__ = ()

    @property
    def spec(self) -> EndpointSpec:
        """What the spec says about this endpoint."""
        return next(item for item in endpoint_specs() if item.id == str(self))

    @property
    def value(self) -> str:
        """The endpoint id."""
        return str(self)

    @property
    def name(self) -> str:
        """The member name: the tier in capitals, plus ``_MULTI`` or ``_TEXT_TO_IMAGE`` by family; for an endpoint
        without a tier, its id without the owner (``FLUX_1_DEV``)."""
        if self.spec.tier is None:
            return re.sub(r"\W+", "_", str(self).split("/", 1)[1]).strip("_").upper()
        return self.spec.tier.upper().replace("-", "_") + _NAME_SUFFIX[self.spec.family]

    @property
    def app(self) -> str:
        """``owner/app``: where the endpoint's status, result and cancel live (``fal-ai/flux-pro``)."""
        return self.spec.app

    @property
    def operation_id(self) -> str:
        """The spec's operationId of the submit (``submit_flux_pro_kontext``, ...)."""
        return self.spec.operation_id

    @property
    def input_schema(self) -> str:
        """The spec's schema name of the input (``KontextInput`` or ``KontextMultiInput``)."""
        return self.spec.input_schema

    @property
    def image_field(self) -> str | None:
        """``image_url`` or ``image_urls``: the image field of this endpoint's input (None for text-to-image)."""
        return self.spec.image_field

    @property
    def is_multi(self) -> bool:
        """Whether the endpoint takes several input images."""
        return self.spec.family == "multi-edit"

    def __repr__(self) -> str:
        return f"<Endpoint.{self.name}: {str(self)!r}>"


def model_tiers() -> tuple[str, ...]:
    """The tiers ``model=`` accepts, as the spec has them (``"pro"``, ``"max"``, ...)."""
    return tuple(dict.fromkeys(item.tier for item in endpoint_specs() if item.tier is not None))


def choose_endpoint(model: str, *, family: str) -> Endpoint:
    """The endpoint of a model tier in a family: ``"edit"`` (one input image), ``"multi-edit"`` (several) or
    ``"text-to-image"`` (none), as the spec's ``x-fal-endpoint`` names them.

    Raises:
        InvalidInputError: ``model`` is not a tier of the spec, or the tier has no endpoint in that family.
    """
    tiers = model_tiers()
    if model not in tiers:
        allowed = ", ".join(repr(tier) for tier in tiers)
        raise InvalidInputError([FieldProblem("model", model, f"{model!r} is not allowed; allowed: {allowed}")])
    for item in endpoint_specs():
        if item.tier == model and item.family == family:
            return Endpoint(item.id)
    offered = ", ".join(repr(i.tier) for i in endpoint_specs() if i.family == family and i.tier is not None) or "none"
    raise InvalidInputError(
        [FieldProblem("model", model, f"the {model!r} tier has no {family} endpoint; tiers that have one: {offered}")]
    )


def parse_endpoint(value: str | Endpoint) -> Endpoint:
    """An ``Endpoint`` from its id (a leading slash or ``https://host/`` prefix is tolerated).

    Raises:
        InvalidInputError: not an endpoint of the spec.
    """
    if isinstance(value, Endpoint):
        return value
    if not isinstance(value, str):
        raise InvalidInputError([FieldProblem("endpoint", value, "expected an Endpoint or an endpoint id string")])
    text = value.strip()
    if "://" in text:
        text = text.split("://", 1)[1].partition("/")[2]
    text = text.strip("/")
    try:
        return Endpoint(text)
    except ValueError:
        allowed = ", ".join(e.value for e in Endpoint)
        raise InvalidInputError([FieldProblem("endpoint", value, f"unknown endpoint; allowed: {allowed}")]) from None
