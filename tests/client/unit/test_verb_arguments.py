"""Every verb's bad argument is refused where its result is: at the call with ``Kontext``, at the ``await`` with
``AsyncKontext`` (the call itself returns an awaitable and raises nothing), and nothing is sent either way."""

from __future__ import annotations

import asyncio
import inspect
import math
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from fal_kontext import AsyncKontext, EditResult, Endpoint, InvalidInputError, Kontext, KontextOutput
from tests.client.client_fakes import BASE, OUTPUT, RID

URL = "https://example.test/in.png"
INPUT = {"prompt": "a prompt", "image_url": URL}
RESULT = EditResult(RID, KontextOutput.from_dict(OUTPUT))

# Each verb called with one argument the client refuses (the field the error names), on a client ``k``.
Verb = Callable[[Any], object]
BAD_CALLS: dict[str, tuple[Verb, str]] = {
    "submit": (lambda k: k.submit(Endpoint.PRO, INPUT, timeout=-1), "timeout"),
    "submit input": (lambda k: k.submit(Endpoint.PRO, {**INPUT, "seed": "x"}), "seed"),
    "resubmit": (lambda k: k.resubmit(Endpoint.PRO, INPUT, sent_at=math.nan), "sent_at"),
    "run": (lambda k: k.run(Endpoint.PRO, INPUT, timeout=-1), "timeout"),
    "edit": (lambda k: k.edit("a prompt", image=URL, timeout=-1), "timeout"),
    "edit option": (lambda k: k.edit("a prompt", image=URL, num_images=99), "num_images"),
    "generate": (lambda k: k.generate("a prompt", timeout=0), "timeout"),
    "upload": (lambda k: k.upload(b"data", timeout=-1), "timeout"),
    "run_direct": (lambda k: k.run_direct(Endpoint.PRO, INPUT, timeout=-1), "timeout"),
    "save": (lambda k: k.save(RESULT, "out", timeout=-1), "timeout"),
    "status": (lambda k: k.handle(RID, endpoint=Endpoint.PRO).status(timeout=-1), "timeout"),
    "wait": (lambda k: k.handle(RID, endpoint=Endpoint.PRO).wait(timeout=-1), "timeout"),
    "result": (lambda k: k.handle(RID, endpoint=Endpoint.PRO).result(timeout=math.nan), "timeout"),
    "cancel": (lambda k: k.handle(RID, endpoint=Endpoint.PRO).cancel(timeout="soon"), "timeout"),
}


def _refused(request: httpx.Request) -> httpx.Response:
    raise AssertionError(f"nothing may be sent for a bad argument, yet {request.method} {request.url} was")


@pytest.mark.parametrize("verb", BAD_CALLS)
def test_sync_verbs_raise_at_the_call(verb: str) -> None:
    call, field = BAD_CALLS[verb]
    with (
        Kontext("k", base_url=BASE, transport=httpx.MockTransport(_refused)) as kontext,
        pytest.raises(InvalidInputError) as caught,
    ):
        call(kontext)
    assert field in {problem.field for problem in caught.value.problems}


@pytest.mark.parametrize("verb", BAD_CALLS)
def test_async_verbs_return_an_awaitable_that_raises(verb: str) -> None:
    call, field = BAD_CALLS[verb]

    async def scenario() -> InvalidInputError:
        async with AsyncKontext("k", base_url=BASE, transport=httpx.MockTransport(_refused)) as kontext:
            pending = call(kontext)  # the call itself raises nothing
            assert inspect.isawaitable(pending)
            with pytest.raises(InvalidInputError) as caught:
                await pending
            return caught.value

    error = asyncio.run(scenario())
    assert field in {problem.field for problem in error.problems}
