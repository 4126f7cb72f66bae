"""What ``help()`` and ``inspect.signature`` show for each client: the verbs ``BaseKontext`` and ``BaseHandle`` define
once, with their type parameters replaced by the client's own types, and the constructor's arguments in the class
docstring.

The verbs are written once, generic over what they return (``base``'s docstring has the table: ``_Finished`` is
``EditResult`` for ``Kontext`` and ``Awaitable[EditResult]`` for ``AsyncKontext``). Inherited as they are, ``help``
would show ``-> '_Finished'``, and for an overloaded verb (``edit``) the implementation's loose ``model: str`` and
``**options: Any``. ``concrete_verbs`` gives the client class its own copy of each verb: the same code object (no
extra call, no CPU), with ``__signature__`` and ``__annotations__`` whose type parameters are the client's types
(read from the class's generic base, nothing copied by hand), the signature of its first overload, and the others
listed at the top of its docstring.
"""

from __future__ import annotations

import inspect
import re
import types
import typing
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

__all__ = ["concrete_verbs", "type_text"]

_C = TypeVar("_C", bound=type)


class _Shown(str):
    """An annotation as source text (as postponed annotations are), shown without quotes by ``help``."""

    __slots__ = ()

    def __repr__(self) -> str:
        return str(self)


def type_text(hint: object) -> str:
    """A type as one writes it in code: ``Awaitable[EditResult]``, ``Iterator[Queued | InProgress | Completed]``."""
    if hint is None or hint is type(None):
        return "None"
    if isinstance(hint, TypeVar):
        return hint.__name__
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is typing.Union or origin is types.UnionType:
        return " | ".join(type_text(arg) for arg in args)
    if origin is not None and args:
        name = getattr(origin, "__qualname__", None) or repr(origin).removeprefix("typing.")
        return f"{name}[{', '.join(type_text(arg) for arg in args)}]"
    if isinstance(hint, type):
        return hint.__qualname__
    return repr(hint).removeprefix("typing.")


def _generic_base(cls: type) -> tuple[type, dict[TypeVar, object]]:
    """The generic class ``cls`` specialises and what each of its type parameters is for ``cls``."""
    for base in getattr(cls, "__orig_bases__", ()):
        origin = typing.get_origin(base)
        parameters = getattr(origin, "__parameters__", ())
        if isinstance(origin, type) and parameters:
            return origin, dict(zip(parameters, typing.get_args(base), strict=True))
    raise TypeError(f"{cls.__name__} does not specialise a generic class")


def _substituted(hint: object, types_of: Mapping[TypeVar, object]) -> object:
    if isinstance(hint, TypeVar):
        return types_of.get(hint, hint)
    parameters = getattr(hint, "__parameters__", ())
    if parameters and hasattr(hint, "__getitem__"):
        return hint[tuple(_substituted(parameter, types_of) for parameter in parameters)]
    return hint


def _shown(annotation: object, texts: Mapping[str, str]) -> object:
    """An annotation as source text with each type parameter's name replaced by the client's type."""
    if annotation is inspect.Parameter.empty:
        return annotation
    if not isinstance(annotation, str):
        annotation = type_text(annotation)
    pattern = r"\b(" + "|".join(re.escape(name) for name in texts) + r")\b"
    return _Shown(re.sub(pattern, lambda found: texts[found.group(1)], annotation))


def _signature(function: Callable[..., Any], texts: Mapping[str, str]) -> inspect.Signature:
    signature = inspect.signature(function)
    parameters = [item.replace(annotation=_shown(item.annotation, texts)) for item in signature.parameters.values()]
    return signature.replace(parameters=parameters, return_annotation=_shown(signature.return_annotation, texts))


def _annotations(function: Callable[..., Any], types_of: Mapping[TypeVar, object]) -> dict[str, object]:
    """The evaluated annotations with the client's types (for ``typing.get_type_hints``); the source text where one
    cannot be evaluated here."""
    try:
        hints = typing.get_type_hints(function, include_extras=True)
    except (NameError, TypeError):  # pragma: no cover - every annotation of the base classes evaluates
        return dict(function.__annotations__)
    return {name: _substituted(hint, types_of) for name, hint in hints.items()}


def _copy(function: types.FunctionType, owner: type, name: str, doc: str | None) -> types.FunctionType:
    copy = types.FunctionType(
        function.__code__, function.__globals__, name, function.__defaults__, function.__closure__
    )
    copy.__kwdefaults__ = function.__kwdefaults__
    copy.__dict__.update(function.__dict__)
    copy.__module__ = owner.__module__
    copy.__qualname__ = f"{owner.__qualname__}.{name}"
    copy.__doc__ = doc
    return copy


def _arguments_section(doc: str | None) -> str:
    """The ``Args:`` section (and what follows) of a class docstring."""
    text = inspect.cleandoc(doc or "")
    found = text.find("\nArgs:")
    return text[found + 1 :] if found >= 0 else ""


def concrete_verbs(cls: _C) -> _C:
    """Class decorator: give ``cls`` its own copy of each public verb (and ``__init__``) of the generic class it
    specialises, typed with its own types, and the generic class's ``Args:`` section in its docstring."""
    generic, types_of = _generic_base(cls)
    texts = {parameter.__name__: type_text(value) for parameter, value in types_of.items()}
    arguments = _arguments_section(generic.__doc__)
    for name, member in vars(generic).items():
        if not isinstance(member, types.FunctionType) or name in vars(cls):
            continue
        if name.startswith("_") and not (name == "__init__" and arguments):  # a handle is not built by hand
            continue
        # A verb typed by a generated Protocol (per tier: fal_kontext_api.options) shows its overloads.
        typed_by: tuple[type, Mapping[str, str]] | None = getattr(member, "__typed_by__", None)
        overloads = typing.get_overloads(typed_by[0].__call__) if typed_by else typing.get_overloads(member)
        shown_texts = {**texts, **{k: str(_shown(v, texts)) for k, v in typed_by[1].items()}} if typed_by else texts
        shown_by = overloads[0] if overloads else typed_by[0].__call__ if typed_by else member
        doc = member.__doc__
        if len(overloads) > 1:
            others = "\n".join(f"{name}{_signature(other, shown_texts)}" for other in overloads[1:])
            doc = f"Also: {others}\n\n{inspect.cleandoc(doc or '')}"
        if name == "__init__":
            doc = f"Build a {cls.__name__}: every argument is described in the class docstring."
        copy = _copy(member, cls, name, doc)
        copy.__signature__ = _signature(shown_by, shown_texts)  # type: ignore[attr-defined]
        copy.__annotations__ = _annotations(member if typed_by else shown_by, types_of)
        setattr(cls, name, copy)
    if arguments:
        cls.__doc__ = f"{inspect.cleandoc(cls.__doc__ or '')}\n\n{arguments}"
    return cls
