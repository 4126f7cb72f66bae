"""A canary key must never appear in a repr, a log line, an exception or the command's output."""

from __future__ import annotations

import asyncio
import logging
import traceback
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from PIL import Image as PILImage

from fal_kontext import AsyncKontext, Credentials, Kontext, KontextError, RetryPolicy
from fal_kontext.cli import main
from fal_kontext.config import ClientConfig
from fal_kontext.mock import EmulatorConfig, RunningEmulator, run_emulator
from tests.client.client_fakes import BASE, RID, FakeClock, FakeQueue, no_jitter, status_body

CANARY = "canary-7c1d-QzXwv93-do-not-print"
INPUT = {"prompt": "p", "image_url": "https://example.test/in.png"}


def assert_clean(text: str) -> None:
    assert CANARY not in text
    assert CANARY.split("-")[2] not in text  # not even a fragment of it


def echo_the_key(request: httpx.Request) -> httpx.Response:
    """A badly behaved server that quotes the Authorization header back in errors."""
    header = request.headers.get("authorization", "")
    return httpx.Response(401, json={"detail": f"invalid key {header}"}, headers={"x-echo": header})


def test_reprs_hide_the_key() -> None:
    kontext = Kontext(CANARY, base_url=BASE)
    handle = kontext.handle(RID)
    async_kontext = AsyncKontext(CANARY, base_url=BASE)
    for thing in (kontext, handle, async_kontext, Credentials("key", CANARY), kontext._config, kontext._settings):
        assert_clean(repr(thing))
        assert_clean(str(thing))
    assert isinstance(kontext._config, ClientConfig)


def test_errors_from_an_echoing_server_are_redacted(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    kontext = Kontext(CANARY, base_url=BASE, transport=httpx.MockTransport(echo_the_key), retry=RetryPolicy.disabled())
    for call in (lambda: kontext.submit("fal-ai/flux-pro/kontext", INPUT), lambda: kontext.handle(RID).status()):
        with pytest.raises(KontextError) as caught:
            call()
        error = caught.value
        assert_clean(str(error))
        assert_clean(repr(error.args))
        assert_clean(repr(vars(error)))
        assert_clean("".join(traceback.format_exception(error)))
    assert_clean(caplog.text)


def test_logs_of_a_whole_run_hold_no_key(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    fake = FakeQueue(
        status=[httpx.Response(503, json={"detail": "busy"}), httpx.Response(200, json=status_body("COMPLETED"))]
    )
    clock = FakeClock()
    kontext = Kontext(
        CANARY, base_url=BASE, transport=fake.transport(), sleep=clock.sleep, clock=clock, random_source=no_jitter
    )
    kontext.run("fal-ai/flux-pro/kontext", INPUT)
    assert fake.requests[0].headers["authorization"] == f"Key {CANARY}"  # it was sent, so the check means something
    assert caplog.records
    assert_clean(caplog.text)


@pytest.fixture(scope="module")
def canary_emulator() -> Iterator[RunningEmulator]:
    with run_emulator(EmulatorConfig(keys=(CANARY,), run_time=0.2, queue_wait=0.05)) as running:
        yield running


def test_real_http_logs_hold_no_key(canary_emulator: RunningEmulator, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)  # httpx and httpcore at their most talkative

    async def main_async() -> None:
        async with AsyncKontext(CANARY, base_url=canary_emulator.base_url) as kontext:
            await kontext.edit("p", image=png_bytes())

    asyncio.run(main_async())
    with Kontext(CANARY, base_url=canary_emulator.base_url) as kontext:
        kontext.edit("p", image=png_bytes())
    assert "HTTP Request" in caplog.text
    assert_clean(caplog.text)


def png_bytes() -> bytes:
    import io

    buffer = io.BytesIO()
    PILImage.new("RGB", (8, 8)).save(buffer, format="PNG")
    return buffer.getvalue()


def test_cli_output_holds_no_key(
    canary_emulator: RunningEmulator,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    image = tmp_path / "in.png"
    image.write_bytes(png_bytes())
    monkeypatch.setenv("FAL_KEY", CANARY)
    monkeypatch.setenv("FAL_KONTEXT_TOKEN", CANARY)  # fal's key is not sent as a bearer token to another host
    monkeypatch.setenv("FAL_KONTEXT_BASE_URL", canary_emulator.base_url)
    codes = [
        main(["-v", "edit", "p", str(image), "--out", str(tmp_path)]),
        main(["-v", "status", "unknown-id"]),
        main(["-v", "--auth", "bearer", "edit", "[content-policy] p", str(image)]),
        main(["--retries", "0", "--base-url", "http://127.0.0.1:9", "status", "x"]),
    ]
    with run_emulator(EmulatorConfig(keys=("other-key",))) as refusing:
        codes.append(main(["-v", "--base-url", refusing.base_url, "edit", "p", str(image)]))
    assert codes == [0, 4, 5, 7, 3]
    captured = capsys.readouterr()
    assert_clean(captured.out)
    assert_clean(captured.err)
    assert_clean(caplog.text)
