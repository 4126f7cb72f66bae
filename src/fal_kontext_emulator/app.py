"""The emulator as an ASGI app: the wiring of its parts (state, queue API, outputs, files, storage, admin, timers)."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Match, Mount, Route, Router
from starlette.types import Receive, Scope, Send

from fal_kontext.spec import endpoints_of
from fal_kontext_emulator.admin_api import ADMIN_PREFIX, AdminEndpoints
from fal_kontext_emulator.emulator_config import EmulatorConfig
from fal_kontext_emulator.http_replies import detail_reply, json_reply
from fal_kontext_emulator.operations import build_routes
from fal_kontext_emulator.output_files import OutputFiles
from fal_kontext_emulator.outputs import FILES_PREFIX, Outputs, output_shape
from fal_kontext_emulator.queue_api import SpecEndpoints
from fal_kontext_emulator.request_list import PATH as REQUEST_LIST_PATH
from fal_kontext_emulator.request_list import RequestListEndpoint
from fal_kontext_emulator.spec_document import load_spec
from fal_kontext_emulator.state import Clock, EmulatorState
from fal_kontext_emulator.storage_api import STORAGE_PREFIX, StorageEndpoints
from fal_kontext_emulator.timers import Timers
from fal_kontext_emulator.webhook_delivery import JWKS_PATH


class OwnRoutes(BaseRoute):
    """The emulator's own routes (admin, files, storage, JWKS, request list), matched by one prefix test: every
    status poll passes here on its way to the spec's operations, and a prefix test costs far less than trying
    each route's pattern."""

    def __init__(self, routes: list[BaseRoute]) -> None:
        self._router = Router(routes=routes, redirect_slashes=False)
        self._prefixes = (ADMIN_PREFIX + "/", FILES_PREFIX + "/", STORAGE_PREFIX + "/", JWKS_PATH, REQUEST_LIST_PATH)

    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        """A full match for a path under one of the prefixes (the inner routes answer 404/405 themselves)."""
        path, root = scope["path"], scope.get("root_path", "")
        if scope["type"] == "http" and path.removeprefix(root).startswith(self._prefixes):
            return Match.FULL, {}
        return Match.NONE, {}

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Route among the emulator's own routes."""
        await self._router(scope, receive, send)


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    return detail_reply(exc.status_code, str(exc.detail), exc.headers)


def create_app(
    config: EmulatorConfig | None = None, *, clock: Clock | None = None, spec: dict[str, Any] | None = None
) -> Starlette:
    """Build the emulator as an ASGI app.

    Args:
        config: the knobs; `EmulatorConfig()` (test defaults) when None.
        clock: monotonic seconds; `time.monotonic` when None. Tests pass a manual clock and move it.
        spec: the OpenAPI document to serve; the shipped `fal_kontext_api/openapi.json` when None.

    Returns:
        A Starlette app; `app.state.emulator` is its EmulatorState.
    """
    config = config or EmulatorConfig()
    document = spec if spec is not None else load_spec()
    routes = build_routes(document)
    endpoints = endpoints_of(document)
    state = EmulatorState(config, clock or time.monotonic, routes, endpoints)
    outputs = Outputs(state, {endpoint.id: output_shape(document, endpoint) for endpoint in endpoints})
    handlers = SpecEndpoints(state, outputs)
    files = OutputFiles(state, outputs)
    storage = StorageEndpoints(state)
    timers = Timers(state, outputs)

    async def jwks(request: Request) -> Response:
        # The public key webhook signatures verify with, as fal publishes its own.
        return json_reply(200, state.webhooks.signer.jwks())

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        loop = asyncio.create_task(timers.run())
        try:
            yield
        finally:
            loop.cancel()
            await asyncio.gather(loop, return_exceptions=True)
            await timers.stop()
            state.persist(always=True)
            if state.store is not None:
                state.store.close()

    own = OwnRoutes(
        [
            Mount(ADMIN_PREFIX, routes=AdminEndpoints(state).routes()),
            Route(JWKS_PATH, jwks, methods=["GET"]),
            Mount(FILES_PREFIX, routes=[*storage.cdn_routes(), *files.routes()]),
            Mount(STORAGE_PREFIX, routes=storage.rest_routes()),
            RequestListEndpoint(state, outputs).route(),
        ]
    )
    app = Starlette(routes=[own], lifespan=lifespan, exception_handlers={HTTPException: _http_error})
    # The spec's operations accept trailing slashes themselves; Starlette's redirect would match every route twice.
    app.router.redirect_slashes = False
    # Whatever the emulator's own routes do not match goes to the spec's operations, which answer 404 and 405
    # themselves (a Mount would not see paths holding a newline).
    app.router.default = handlers
    app.state.emulator = state
    return app
