"""No credential in the command's output, its log or its errors, and none needed to refuse before sending: the
command against the emulator with a canary key."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from fal_kontext.cli import main
from tests.support.command_line import run_cli
from tests.support.emulator import EmulatorConfig, RunningEmulator, run_emulator

# CANARY is the key of this module's emulator, so it goes out with every request; REFUSED_CANARY is a key the
# shared emulator refuses, so the 401 path is logged at -vv.
CANARY = "canary-7c1d-QzXwv93-do-not-print"
REFUSED_CANARY = "canary-4f1d2c9e8b7a6f5e"
CREDENTIAL_VARIABLES = ("FAL_KEY", "FAL_KEY_ID", "FAL_KEY_SECRET", "FAL_KONTEXT_TOKEN", "FAL_KONTEXT_AUTH")


def assert_clean(text: str) -> None:
    assert CANARY not in text
    assert CANARY.split("-")[2] not in text  # not even a fragment of it


@pytest.fixture
def no_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in CREDENTIAL_VARIABLES:
        monkeypatch.delenv(name, raising=False)


@pytest.fixture(scope="module")
def canary_emulator() -> Iterator[RunningEmulator]:
    with run_emulator(EmulatorConfig(keys=(CANARY,), run_time=0.2, queue_wait=0.05)) as running:
        yield running


def test_cli_output_holds_no_key(
    canary_emulator: RunningEmulator,
    image: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    monkeypatch.setenv("FAL_KEY", CANARY)
    monkeypatch.setenv("FAL_KONTEXT_TOKEN", CANARY)  # fal's key is not sent as a bearer token to another host
    monkeypatch.setenv("FAL_KONTEXT_BASE_URL", canary_emulator.base_url)
    codes = [
        main(["-v", "edit", "a prompt", str(image), "--out", str(tmp_path)]),
        main(["-v", "status", "unknown-id"]),
        main(["-v", "--auth", "bearer", "edit", "[content-policy] p", str(image)]),
        main(["--retries", "0", "--base-url", "http://127.0.0.1:9", "status", "x"]),
    ]
    with run_emulator(EmulatorConfig(keys=("other-key",))) as refusing:
        codes.append(main(["-v", "--base-url", refusing.base_url, "edit", "a prompt", str(image)]))
    assert codes == [0, 4, 5, 7, 3]
    captured = capsys.readouterr()
    assert_clean(captured.out)
    assert_clean(captured.err)
    assert_clean(caplog.text)


@pytest.mark.usefixtures("no_credentials")
@pytest.mark.parametrize(
    ("argv", "variable"),
    [
        (["edit", "a prompt", "IMAGE"], "FAL_KEY"),
        (["status", "some-request"], "FAL_KEY"),
        (["--auth", "bearer", "submit", "a prompt", "IMAGE"], "FAL_KONTEXT_TOKEN"),
    ],
)
def test_the_command_refuses_before_anything_is_sent(
    argv: list[str],
    variable: str,
    fal_emulator: RunningEmulator,
    image: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    argv = ["--base-url", fal_emulator.base_url, *(str(image) if arg == "IMAGE" else arg for arg in argv)]
    assert main(argv) == 3  # the exit code of a missing or refused key
    out, err = capsys.readouterr()
    assert variable in err and "warning" not in err and "key=" not in err
    assert '"exit_code": 3' in out  # piped: the JSON error line
    assert fal_emulator.counters()["calls"] == {}


def test_verbose_commands_print_no_credential(emulator: RunningEmulator, env: dict[str, str], image: Path) -> None:
    canary_env = {**env, "FAL_KEY": REFUSED_CANARY}  # a key the emulator refuses: the 401 path, logged at -vv
    done = run_cli(["-vv", "edit", "a prompt", str(image)], canary_env)
    assert done.returncode != 0 and "401" in done.stderr + done.stdout
    assert "httpcore" in done.stderr  # the debug lines were written
    assert REFUSED_CANARY not in done.stdout + done.stderr
