"""Fakes for the client's unit tests: a scripted fal queue behind ``httpx.MockTransport``, a fake clock and sleep."""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import json
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, TypeVar

import httpx

from fal_kontext import AsyncKontext, Endpoint, Kontext
from fal_kontext.protocol.commands import Answer, Flow, NoAnswer, Send, Sleep

RID = "req-123"
BASE = "https://queue.example.test"
OUTPUT: dict[str, Any] = {
    "images": [{"url": "https://cdn.example.test/files/out.png", "content_type": "image/png", "width": 8, "height": 8}],
    "timings": {"inference": 1.5},
    "seed": 42,
    "has_nsfw_concepts": [False],
    "prompt": "a donut",
}
PNG = b"\x89PNG\r\n\x1a\n" + b"\0" * 32


def status_body(
    status: str, *, position: int | None = None, logs: list[str] | None = None, **extra: Any
) -> dict[str, Any]:
    """A fal status body."""
    body: dict[str, Any] = {"status": status, "request_id": RID}
    if position is not None:
        body["queue_position"] = position
    if logs is not None:
        body["logs"] = [
            {"message": m, "level": "INFO", "source": "USER", "timestamp": "2026-01-01T00:00:00"} for m in logs
        ]
    body.update(extra)
    return body


def submit_body(host: str = BASE) -> dict[str, Any]:
    """A fal submit answer whose URLs are on ``host``."""
    root = f"{host}/fal-ai/flux-pro/requests/{RID}"
    return {
        "request_id": RID,
        "status": "IN_QUEUE",
        "queue_position": 0,
        "response_url": root,
        "status_url": f"{root}/status",
        "cancel_url": f"{root}/cancel",
    }


Reply = httpx.Response | Exception


@dataclass
class FakeQueue:
    """A scripted fal queue. Each operation pops scripted replies first, then answers from its steady state. (The
    script is left out of the repr: a secrets test renders tracebacks with locals, and a script may quote a key.)"""

    submit: list[Reply] = field(default_factory=list, repr=False)
    status: list[Reply] = field(default_factory=list, repr=False)
    stream: list[Reply] = field(default_factory=list, repr=False)
    result: list[Reply] = field(default_factory=list, repr=False)
    cancel: list[Reply] = field(default_factory=list, repr=False)
    files: dict[str, bytes] = field(default_factory=lambda: {"/files/out.png": PNG}, repr=False)
    host: str = BASE
    requests: list[httpx.Request] = field(default_factory=list)

    def op_of(self, request: httpx.Request) -> str:
        path = request.url.path
        if request.url.host == "cdn.example.test":
            return "file"
        if request.method == "POST":
            return "submit"
        if request.method == "PUT":
            return "cancel"
        if path.endswith("/status/stream"):
            return "stream"
        if path.endswith("/status"):
            return "status"
        return "result"

    def handler(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        op = self.op_of(request)
        if op == "file":
            data = self.files.get(request.url.path)
            return (
                httpx.Response(200, content=data, headers={"content-type": "image/png"})
                if data
                else httpx.Response(404)
            )
        queue: list[Reply] = getattr(self, op)
        if queue:
            reply = queue.pop(0) if len(queue) > 1 else queue[0]
            if isinstance(reply, Exception):
                raise reply
            if isinstance(reply.stream, _Chunks):
                return reply
            # A copy: one scripted response may serve both clients' runs of a parametrised test.
            return httpx.Response(reply.status_code, headers=reply.headers, content=reply.read())
        if op == "submit":
            return httpx.Response(200, json=submit_body(self.host))
        if op == "status":
            return httpx.Response(200, json=status_body("COMPLETED"))
        if op == "stream":
            return httpx.Response(404, json={"detail": "Not Found"})
        if op == "result":
            return httpx.Response(200, json=OUTPUT)
        return httpx.Response(202, json={"status": "CANCELLATION_REQUESTED"})

    def ops(self) -> list[str]:
        return [self.op_of(r) for r in self.requests]

    def transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(self.handler)


def sse(*statuses: dict[str, Any], keepalive: bool = True) -> httpx.Response:
    """A status stream answer carrying ``statuses``."""
    text = ": keep-alive\n\n" if keepalive else ""
    text += "".join(f"data: {json.dumps(s)}\n\n" for s in statuses)
    return httpx.Response(200, content=text.encode(), headers={"content-type": "text/event-stream"})


class _Chunks(httpx.SyncByteStream, httpx.AsyncByteStream):
    """A response body for both clients: ``first``, then ``error`` raised (a connection cut mid-answer)."""

    def __init__(self, first: bytes, error: Exception) -> None:
        self.first, self.error = first, error

    def __iter__(self) -> Iterator[bytes]:
        yield self.first
        raise self.error

    async def __aiter__(self) -> AsyncIterator[bytes]:
        yield self.first
        raise self.error


def cut_stream(first: bytes, error: Exception) -> httpx.Response:
    """A status stream answer that sends ``first`` and then fails with ``error``."""
    return httpx.Response(200, stream=_Chunks(first, error), headers={"content-type": "text/event-stream"})


class FakeClock:
    """A monotonic clock that only moves when the fake sleep is called (or ``advance``)."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds

    async def asleep(self, seconds: float) -> None:
        self.sleep(seconds)
        await asyncio.sleep(0)  # a suspension point, as a real sleep has (task cancellation lands here)


def no_jitter() -> float:
    """A random source giving exactly the nominal backoff (jitter centred)."""
    return 0.5


MakeClient = Callable[..., Any]
# A Kontext, or an AsyncKontext behind Blocking: what a test written for both clients drives.
AnyClient = Any


class Blocking:
    """An ``AsyncKontext`` (or what its verbs return) driven to completion on one event loop, so that one test body
    drives both clients: awaitables are awaited, async handles wrapped, async iterators collected."""

    def __init__(self, target: object, loop: asyncio.AbstractEventLoop) -> None:
        self._target = target
        self._loop = loop

    def __getattr__(self, name: str) -> Any:
        value = getattr(self._target, name)
        if not callable(value):
            return value

        def call(*args: Any, **kwargs: Any) -> Any:
            return self._settle(value(*args, **kwargs))

        return call

    def _settle(self, result: object) -> Any:
        if inspect.isawaitable(result):
            result = self._loop.run_until_complete(_awaited(result))
        if isinstance(result, AsyncIterator):
            return iter(self._loop.run_until_complete(_collected(result)))
        if type(result).__name__ == "AsyncHandle":
            return Blocking(result, self._loop)
        return result

    def __enter__(self) -> Blocking:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return repr(self._target)


async def _awaited(awaitable: Awaitable[Any]) -> Any:
    return await awaitable


async def _collected(iterator: AsyncIterator[Any]) -> list[Any]:
    return [item async for item in iterator]


@contextlib.contextmanager
def client_factory(kind: str) -> Iterator[MakeClient]:
    """``make(fake, clock, **kwargs)``: a ``Kontext`` (``kind == "sync"``) or a ``Blocking(AsyncKontext)`` on a
    scripted queue with the fake clock."""
    loop = asyncio.new_event_loop()

    def make(fake: FakeQueue, clock: FakeClock, **kwargs: Any) -> Any:
        kwargs.setdefault("base_url", BASE)
        kwargs.setdefault("key", "test-key")
        kwargs.setdefault("random_source", no_jitter)
        if kind == "sync":
            return Kontext(transport=fake.transport(), sleep=clock.sleep, clock=clock, **kwargs)
        return Blocking(AsyncKontext(transport=fake.transport(), sleep=clock.asleep, clock=clock, **kwargs), loop)

    try:
        yield make
    finally:
        loop.close()


@contextlib.contextmanager
def real_client(kind: str, *args: Any, **kwargs: Any) -> Iterator[Any]:
    """A ``Kontext`` or a ``Blocking(AsyncKontext)`` with these arguments (real connections), closed at the end."""
    if kind == "sync":
        with Kontext(*args, **kwargs) as kontext:
            yield kontext
        return
    loop = asyncio.new_event_loop()
    try:
        with Blocking(AsyncKontext(*args, **kwargs), loop) as kontext:
            yield kontext
    finally:
        loop.close()


def input_for(endpoint: Endpoint, image: str, **fields: object) -> dict[str, object]:
    """An input for ``endpoint`` as its family needs: ``image`` (a URL or data URI) in its image field, if it has one
    (a list for several-image endpoints)."""
    body: dict[str, object] = {"prompt": "a prompt", **fields}
    if endpoint.image_field:
        body[endpoint.image_field] = [image] if endpoint.is_multi else image
    return body


def call_verb(kontext: AnyClient, endpoint: Endpoint, prompt: str, image: bytes, **options: Any) -> Any:
    """The verb a user calls for ``endpoint``: ``edit(image=)``, ``edit(images=)`` or ``generate()``, by family."""
    tier = endpoint.spec.tier
    if endpoint.spec.family == "text-to-image":
        return kontext.generate(prompt, model=tier, **options)
    if endpoint.is_multi:
        return kontext.edit(prompt, images=[image, image], model=tier, **options)
    return kontext.edit(prompt, image=image, model=tier, **options)


T = TypeVar("T")
Responder = Callable[[Send], Answer | NoAnswer]


def drive_flow(flow: Flow[T], respond: Responder) -> tuple[T, list[Send], int]:
    """Run a flow that only sends and sleeps, answering each ``Send`` with ``respond``; returns its value, the
    requests and how many times it slept."""
    sent: list[Send] = []
    sleeps = 0
    try:
        command = next(flow)
        while True:
            if isinstance(command, Sleep):
                sleeps += 1
                command = flow.send(None)
            else:
                assert isinstance(command, Send), command
                sent.append(command)
                command = flow.send(respond(command))
    except StopIteration as stop:
        return stop.value, sent, sleeps
