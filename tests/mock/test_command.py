"""`fal-kontext mock` / `python -m fal_kontext_emulator`, and the `fal_emulator` pytest fixture."""

from __future__ import annotations

import argparse
import signal
import subprocess
import sys

import httpx
import pytest

from fal_kontext_emulator import EmulatorConfig, RunningEmulator
from fal_kontext_emulator.command_line import READY_LINE, add_mock_command, config_from_arguments, run_mock_command
from fal_kontext_emulator.fault_rules import FaultRule

from .conftest import SUBMIT, body


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="fal-kontext")
    add_mock_command(parser.add_subparsers(dest="command"))
    return parser.parse_args(["mock", *argv])


def test_options_become_the_config() -> None:
    args = parse("--key", "a", "--key", "b", "--runners", "7", "--run-time", "1.5", "--fault", "submit=503,ok")
    assert args.handler is run_mock_command
    config = config_from_arguments(args)
    assert config.keys == ("a", "b")
    assert (config.runners, config.run_time) == (7, 1.5)
    assert config.faults == (FaultRule.parse("submit=503,ok"),)
    assert config_from_arguments(parse()) == EmulatorConfig()


def test_newer_options_become_the_config() -> None:
    args = parse(
        "--remote-images", "refuse", "--max-upload-bytes", "1000", "--request-list-pending",
        "--request-list-delay", "2", "--header-timeout", "3", "--max-idle-connections", "4",
    )  # fmt: skip
    config = config_from_arguments(args)
    assert (config.remote_images, config.max_upload_bytes) == ("refuse", 1000)
    assert (config.request_list_pending, config.request_list_delay) == (True, 2.0)
    assert (config.header_timeout, config.max_idle_connections) == (3.0, 4)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--fault", "submit=418"], "unknown fault '418'"),
        (["--runners", "0"], "runners: must be at least 1"),
        (["--certfile", "c.pem"], "--certfile and --keyfile go together"),
    ],
)
def test_bad_options_exit_2_with_the_reason(argv: list[str], message: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert run_mock_command(parse(*argv)) == 2
    assert message in capsys.readouterr().err


def test_the_module_prints_the_base_url_and_a_ready_line_then_serves() -> None:
    process = subprocess.Popen(
        [sys.executable, "-m", "fal_kontext_emulator", "--port", "0", "--key", "cli-key", "--run-time", "0.05"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        first = process.stdout.readline()
        assert first.startswith("fal-kontext mock: base URL http://127.0.0.1:")
        assert process.stdout.readline().strip() == READY_LINE
        base_url = first.rsplit(" ", 1)[1].strip()
        submitted = httpx.post(base_url + SUBMIT, json=body(), headers={"Authorization": "Key cli-key"})
        assert submitted.status_code == 200
        assert submitted.json()["status_url"].startswith(base_url)
    finally:
        process.send_signal(signal.SIGINT)  # what Ctrl+C sends: a clean stop
        process.wait(timeout=10)
    assert process.returncode == 0


@pytest.fixture
def fal_emulator_config() -> EmulatorConfig:
    return EmulatorConfig(keys=("fixture-key",), run_time=0.05)


def test_the_fal_emulator_fixture_serves_with_the_overridden_config(fal_emulator: RunningEmulator) -> None:
    assert fal_emulator.key == "fixture-key"
    response = httpx.post(fal_emulator.base_url + SUBMIT, json=body(), headers={"Authorization": "Key fixture-key"})
    assert response.status_code == 200
    assert fal_emulator.submit_count() == 1
