"""A canary key must never appear in the logs of real HTTP: both clients edit against an emulator that takes the canary
as its key, with httpx and httpcore logging at DEBUG."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator

import pytest
from PIL import Image as PILImage

from fal_kontext import AsyncKontext, Kontext
from fal_kontext_emulator import EmulatorConfig, RunningEmulator, run_emulator
from tests.client.conftest import CANARY, assert_clean


@pytest.fixture(scope="module")
def canary_emulator() -> Iterator[RunningEmulator]:
    with run_emulator(EmulatorConfig(keys=(CANARY,), run_time=0.2, queue_wait=0.05)) as running:
        yield running


def test_real_http_logs_hold_no_key(canary_emulator: RunningEmulator, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)  # httpx and httpcore at their most talkative

    async def main_async() -> None:
        async with AsyncKontext(CANARY, base_url=canary_emulator.base_url) as kontext:
            await kontext.edit("a prompt", image=png_bytes())

    asyncio.run(main_async())
    with Kontext(CANARY, base_url=canary_emulator.base_url) as kontext:
        kontext.edit("a prompt", image=png_bytes())
    assert "HTTP Request" in caplog.text
    assert_clean(caplog.text)


def png_bytes() -> bytes:
    import io

    buffer = io.BytesIO()
    PILImage.new("RGB", (8, 8)).save(buffer, format="PNG")
    return buffer.getvalue()
