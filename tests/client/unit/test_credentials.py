"""One rule for a missing credential, in both clients: a client is built without one, and the first request that
needs one is refused before it is sent, naming the variable to set (the command line's:
tests/cli/integration/test_credentials_in_output.py)."""

from __future__ import annotations

import io
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from fal_kontext_api.models import KontextOutput
from PIL import Image as PILImage

from fal_kontext import EditResult, InvalidInputError, MissingCredentialsError
from tests.client.client_fakes import OUTPUT, RID, FakeClock, FakeQueue, MakeClient

INPUT = {"prompt": "a donut", "image_url": "https://example.test/in.png"}
EP = "fal-ai/flux-pro/kontext"
CREDENTIAL_VARIABLES = ("FAL_KEY", "FAL_KEY_ID", "FAL_KEY_SECRET", "FAL_KONTEXT_TOKEN", "FAL_KONTEXT_AUTH")


def _png(size: int) -> bytes:
    """A PNG of at least ``size`` bytes (stored without compression)."""
    side = max(8, int((size / 3) ** 0.5) + 1)
    buffer = io.BytesIO()
    PILImage.new("RGB", (side, side), "orange").save(buffer, format="PNG", compress_level=0)
    return buffer.getvalue()


@pytest.fixture
def no_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in CREDENTIAL_VARIABLES:
        monkeypatch.delenv(name, raising=False)


VERBS: dict[str, Callable[[Any], object]] = {
    "submit": lambda k: k.submit(EP, INPUT),
    "run": lambda k: k.run(EP, INPUT),
    "edit, inlined": lambda k: k.edit("a prompt", image=_png(100)),
    "edit, uploaded": lambda k: k.edit("a prompt", image=_png(2 * 1024 * 1024)),
    "generate": lambda k: k.generate("a prompt"),
    "upload": lambda k: k.upload(_png(100)),
    "run_direct": lambda k: k.run_direct(EP, INPUT),
    "resubmit": lambda k: k.resubmit(EP, INPUT, sent_at=1.0),
    "status": lambda k: k.handle(RID).status(),
    "wait": lambda k: k.handle(RID).wait(),
    "result": lambda k: k.handle(RID).result(),
    "cancel": lambda k: k.handle(RID).cancel(),
    "stream": lambda k: list(k.handle(RID).stream()),
}


@pytest.mark.usefixtures("no_credentials")
@pytest.mark.parametrize("verb", list(VERBS))
def test_a_missing_key_is_refused_before_anything_is_sent(
    verb: str, fake: FakeQueue, clock: FakeClock, make: MakeClient
) -> None:
    kontext = make(fake, clock, key=None, storage_url="https://storage.example.test")  # built without a key
    with pytest.raises(MissingCredentialsError) as raised:
        VERBS[verb](kontext)
    assert fake.requests == []
    assert "FAL_KEY" in str(raised.value) and "nothing was sent" in str(raised.value)
    assert isinstance(raised.value, InvalidInputError) and raised.value.variables[0] == "FAL_KEY"


@pytest.mark.usefixtures("no_credentials")
def test_without_a_key_a_handle_and_save_work(
    fake: FakeQueue, clock: FakeClock, make: MakeClient, tmp_path: Path
) -> None:
    kontext = make(fake, clock, key=None)
    assert kontext.handle(RID).request_id == RID  # no request
    written = kontext.save(EditResult(RID, KontextOutput.from_dict(OUTPUT)), tmp_path)  # downloads carry no key
    assert [path.name for path in written] == [f"{RID}-0.png"] and fake.ops() == ["file"]
    with pytest.raises(MissingCredentialsError):
        kontext.check_credentials()


@pytest.mark.usefixtures("no_credentials")
def test_bearer_without_a_token_names_the_token(
    fake: FakeQueue, clock: FakeClock, make: MakeClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FAL_KEY", "fal-secret")  # never sent as a bearer token to another host
    kontext = make(fake, clock, key=None, auth="bearer")
    with pytest.raises(MissingCredentialsError) as raised:
        kontext.submit(EP, INPUT)
    # what Sentry, rich or ``pytest -l`` show: the frames' locals too
    rendered = "".join(traceback.TracebackException.from_exception(raised.value, capture_locals=True).format())
    assert fake.requests == [] and raised.value.variables == ("FAL_KONTEXT_TOKEN",)
    assert "FAL_KONTEXT_TOKEN" in rendered and "FAL_KEY" in rendered and "fal-secret" not in rendered
    monkeypatch.setenv("FAL_KONTEXT_TOKEN", "agg-token")
    make(fake, clock, key=None, auth="bearer").submit(EP, INPUT)
    assert fake.requests[0].headers["authorization"] == "Bearer agg-token"
