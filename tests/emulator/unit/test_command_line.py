"""`fal-kontext mock`'s options: what each becomes in the config; bad ones are refused with exit code 2 and why."""

from __future__ import annotations

import argparse

import pytest

from fal_kontext_emulator import EmulatorConfig
from fal_kontext_emulator.command_line import add_mock_command, config_from_arguments, run_mock_command
from fal_kontext_emulator.fault_rules import FaultRule


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
