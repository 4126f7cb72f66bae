"""``help()`` on the clients shows the constructor's arguments and each verb's own signature (the client's types in
place of ``BaseKontext``'s type parameters, an overloaded verb's typed overloads) and docstring."""

from __future__ import annotations

import pydoc
import re
import typing
from collections.abc import Awaitable
from typing import Any

import pytest

from fal_kontext import AsyncHandle, AsyncKontext, EditResult, Handle, Kontext
from fal_kontext import base as base_module
from fal_kontext.base import BaseHandle, BaseKontext
from fal_kontext.signatures import type_text


def _help(thing: object) -> str:
    return pydoc.render_doc(thing, renderer=pydoc.plaintext)  # type: ignore[attr-defined]


@pytest.mark.parametrize("client", [Kontext, AsyncKontext])
def test_help_of_a_client_shows_every_argument(client: type[Any]) -> None:
    text = _help(client)
    assert "BaseKontext``'s" not in text
    documented = re.findall(r"^ \|      (\w+): ", text, re.MULTILINE)
    arguments = [name for name in typing.get_type_hints(BaseKontext.__init__) if name != "return"]
    assert set(arguments) <= set(documented), set(arguments) - set(documented)


@pytest.mark.parametrize(("client", "finished"), [(Kontext, "EditResult"), (AsyncKontext, "Awaitable[EditResult]")])
def test_help_of_edit_shows_the_typed_verb(client: type[Any], finished: str) -> None:
    text = _help(client.edit)
    signature, rest = text.split("\n", 3)[2], text.split("\n", 3)[3]
    assert "model: Literal['pro'] = 'pro'" in signature and "image: ImageSource" in signature
    assert "**options: Unpack[KontextInputOptions]" in signature and signature.endswith(f"-> {finished}")
    assert "model: Literal['max']" in rest  # every tier's overload
    assert "images: Sequence[ImageSource]" in rest and "**options: Unpack[KontextMultiInputOptions]" in rest
    assert "Edit one image" in rest and "Args:" in rest
    assert "_Finished" not in text and "'str'" not in text and "Any" not in signature


def test_evaluated_hints_are_the_clients_types() -> None:
    assert typing.get_type_hints(Kontext.edit)["return"] is EditResult
    assert typing.get_type_hints(AsyncKontext.run)["return"] == Awaitable[EditResult]
    assert typing.get_type_hints(AsyncHandle.wait)["return"] == Awaitable[EditResult]
    assert typing.get_type_hints(Handle.result)["return"] is EditResult


def _table() -> dict[str, tuple[str, str]]:
    """``base``'s docstring table: each type parameter and what it is in ``Kontext`` and ``AsyncKontext``."""
    rows = re.findall(r"^(_\w+)\s+``(.+?)``\s+``(.+?)``$", base_module.__doc__ or "", re.MULTILINE)
    return {name: (sync, asynchronous) for name, sync, asynchronous in rows}


@pytest.mark.parametrize(
    ("generic", "sync_class", "async_class"), [(BaseKontext, Kontext, AsyncKontext), (BaseHandle, Handle, AsyncHandle)]
)
def test_the_docstring_table_is_what_the_clients_are(generic: type, sync_class: type, async_class: type) -> None:
    table = _table()
    parameters: tuple[typing.TypeVar, ...] = getattr(generic, "__parameters__")  # noqa: B009 - not in the stubs
    assert set(parameters) <= set(getattr(BaseKontext, "__parameters__"))  # noqa: B009
    assert len(table) == len(getattr(BaseKontext, "__parameters__"))  # noqa: B009
    for index, parameter in enumerate(parameters):
        for column, client in enumerate((sync_class, async_class)):
            base = next(b for b in client.__orig_bases__ if typing.get_origin(b) is generic)  # type: ignore[attr-defined]
            shown = type_text(typing.get_args(base)[index]).replace("Queued | InProgress | Completed", "Status")
            assert shown == table[parameter.__name__][column].removeprefix("httpx."), (client, parameter)
