"""Cancel answers in every shape fal documents: its prose (202/400 with a status) and its per-endpoint queue
OpenAPI (200 {"success": bool}), on both clients."""

from __future__ import annotations

import httpx
import pytest

from fal_kontext import CancelStatus, UnexpectedResponseError, WaitTimeoutError
from tests.client.client_fakes import RID, FakeClock, FakeQueue, MakeClient, status_body

INPUT = {"prompt": "a donut", "image_url": "https://example.test/in.png"}
EP = "fal-ai/flux-pro/kontext"


def reply(status: int, body: object) -> httpx.Response:
    return httpx.Response(status, json=body)


def test_a_success_body_is_a_cancel_status(fake: FakeQueue, clock: FakeClock, make: MakeClient) -> None:
    handle = make(fake, clock).handle(RID)
    fake.cancel = [reply(200, {"success": True})]
    assert handle.cancel() is CancelStatus.OK
    fake.cancel = [reply(200, {"success": False})]
    assert handle.cancel() is CancelStatus.ALREADY_COMPLETED
    fake.cancel = [reply(200, {"cancelled": "yes"})]
    with pytest.raises(UnexpectedResponseError, match="without a status"):
        handle.cancel()


def test_a_deadline_cancel_answered_with_success_counts_as_cancelled(
    fake: FakeQueue, clock: FakeClock, make: MakeClient
) -> None:
    fake.status = [reply(202, status_body("IN_PROGRESS"))]
    fake.cancel = [reply(200, {"success": True})]
    with pytest.raises(WaitTimeoutError) as caught:
        make(fake, clock, stream_status=False).run(EP, INPUT, timeout=1.0)
    assert caught.value.cancelled and fake.ops()[-1] == "cancel"
