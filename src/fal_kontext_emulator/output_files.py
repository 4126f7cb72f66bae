"""The output images of completed requests, served at the URLs their results give: `/files/<request id>/<name>`."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from fal_kontext_emulator.http_replies import detail_reply
from fal_kontext_emulator.images import InputImageError
from fal_kontext_emulator.outputs import Outputs
from fal_kontext_emulator.state import EmulatorState


class OutputFiles:
    """The output image route (no key needed, like fal's CDN)."""

    def __init__(self, state: EmulatorState, outputs: Outputs) -> None:
        self.state = state
        self.outputs = outputs

    def routes(self) -> list[BaseRoute]:
        """The output image route, relative to FILES_PREFIX."""
        return [Route("/{request_id}/{file_name}", self.output_image, methods=["GET"])]

    async def output_image(self, request: Request) -> Response:
        """An output image the emulator rendered, at the URL its result gave."""
        found = self.state.queue.find(request.path_params["request_id"], self.state.now())
        index = None if found is None else self.outputs.file_index(found, request.path_params["file_name"])
        if found is None or index is None:
            return detail_reply(404, "File not found")
        try:
            images = await self.outputs.images(found)
        except InputImageError:
            return detail_reply(404, "File not found")
        image = images[index]
        return Response(image.data, media_type=image.content_type, headers={"Cache-Control": "max-age=3600"})
