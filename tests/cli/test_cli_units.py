"""The command's pure parts: flags from the spec, endpoint choice, progress ticks, messages, exit codes, logging."""

from __future__ import annotations

import argparse
import io
import logging
import re
import threading
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from fal_kontext import cli
from fal_kontext.batch import choose_endpoint_spec, tier_order
from fal_kontext.cli import (
    EXIT_CODES,
    CommandError,
    Output,
    Progress,
    Ticker,
    build_parser,
    check_out_folder,
    cli_message,
    configure_logging,
    exit_code_for,
)
from fal_kontext.errors import (
    AuthenticationError,
    BadRequestError,
    FieldProblem,
    InvalidInputError,
    RequestCancelledError,
    ResultNotReadyError,
    StartTimeoutError,
)
from fal_kontext.files import image_source_to_url
from fal_kontext.spec import endpoint_specs, resolved_schema
from fal_kontext.status import InProgress, Queued
from fal_kontext_emulator import RunningEmulator
from tests.cli.conftest import run_cli

ROOT = Path(__file__).resolve().parents[2]


class FakeTerminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def subparser(parser: argparse.ArgumentParser, name: str) -> argparse.ArgumentParser:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            found: argparse.ArgumentParser = action.choices[name]
            return found
    raise AssertionError(name)


def actions_by_dest(parser: argparse.ArgumentParser) -> dict[str, argparse.Action]:
    return {action.dest: action for action in parser._actions}


# --- flags and endpoints from the spec ---------------------------------------------------------------------------


@pytest.mark.parametrize("command", ["edit", "submit"])
def test_every_optional_input_field_of_the_spec_has_a_flag_of_its_type(command: str) -> None:
    actions = actions_by_dest(subparser(build_parser(), command))
    image_specs = [spec for spec in endpoint_specs() if spec.family != "text-to-image"]
    checked = 0
    for spec in image_specs:
        schema = resolved_schema(spec.input_schema)
        for name, prop in schema["properties"].items():
            if name in schema.get("required", ()):
                continue
            action = actions[f"input_{name}"]
            if "enum" in prop:
                assert set(action.choices or ()) >= {str(v) for v in prop["enum"]}, name
            elif prop.get("type") == "integer":
                assert action.type is int, name
            elif prop.get("type") == "number":
                assert action.type is float, name
            elif prop.get("type") == "boolean":
                assert isinstance(action, argparse.BooleanOptionalAction), name
            checked += 1
    assert checked > 0


def test_model_and_endpoint_choices_are_the_spec_endpoints() -> None:
    actions = actions_by_dest(subparser(build_parser(), "edit"))
    image_specs = [spec for spec in endpoint_specs() if spec.family != "text-to-image"]
    assert set(actions["model"].choices or ()) == {spec.tier for spec in image_specs}
    assert set(actions["endpoint"].choices or ()) == {spec.id for spec in image_specs}


def test_a_text_to_image_endpoint_in_the_spec_gets_a_generate_command(monkeypatch: pytest.MonkeyPatch) -> None:
    specs = endpoint_specs()
    invented = replace(specs[0], id="example/text-to-image", family="text-to-image", image_field=None)
    monkeypatch.setattr(cli, "endpoint_specs", lambda: (*specs, invented))
    generate = subparser(build_parser(), "generate")
    text_to_image = [spec.id for spec in (*specs, invented) if spec.family == "text-to-image"]
    assert actions_by_dest(generate)["endpoint"].choices == text_to_image
    args = build_parser().parse_args(["generate", "a cat", "--endpoint", invented.id, "--seed", "3"])
    chosen, body = cli._build_input(args)
    assert chosen.id == "example/text-to-image" and body == {"prompt": "a cat", "seed": 3}


def test_the_endpoint_follows_the_number_of_images_and_the_tier() -> None:
    specs = endpoint_specs()
    for spec in specs:
        images = {"edit": 1, "multi-edit": 2, "text-to-image": 0}[spec.family]
        assert choose_endpoint_spec(specs, images=images, model=spec.tier, endpoint=None) == spec
        assert choose_endpoint_spec(specs, images=images, model=None, endpoint=spec.id) == spec
    single = next(spec for spec in specs if spec.family == "edit")
    with pytest.raises(InvalidInputError, match="image"):
        choose_endpoint_spec(specs, images=2, model=None, endpoint=single.id)


def test_flags_parse_into_the_input_and_images_are_inlined(tmp_path: Path) -> None:
    from PIL import Image

    path = tmp_path / "a.png"
    Image.new("RGB", (8, 8), "red").save(path)
    args = build_parser().parse_args(
        ["edit", "a prompt", str(path), str(path), "--num-images", "2", "--no-enhance-prompt", "--aspect-ratio", "1:1"]
    )
    chosen, body = cli._build_input(args)
    assert chosen.family == "multi-edit"
    assert body["num_images"] == 2 and body["enhance_prompt"] is False and body["aspect_ratio"] == "1:1"
    assert body[chosen.image_field or ""] == [image_source_to_url(path)] * 2


def test_a_value_the_spec_does_not_allow_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    schema = resolved_schema(endpoint_specs()[0].input_schema)["properties"]["output_format"]
    not_allowed = "x" + "".join(schema["enum"])
    with pytest.raises(cli.UsageError, match="--output-format"):
        build_parser().parse_args(["edit", "a prompt", "in.png", "--output-format", not_allowed])
    assert cli.main(["edit", "a prompt", "in.png", "--output-format", not_allowed]) == cli.EXIT_USAGE
    assert "--output-format" in capsys.readouterr().err


# --- progress ------------------------------------------------------------------------------------------------------


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_the_progress_line_ticks_while_the_status_does_not_change() -> None:
    clock, screen = FakeClock(), FakeTerminal()
    progress = Progress(screen, clock)
    progress.update(Queued("req-1", position=0))
    waits: list[float] = []

    def wait(seconds: float) -> bool:  # the fake clock moves by the interval; stop after 8 ticks
        waits.append(seconds)
        clock.now += seconds
        return len(waits) > 8

    Ticker(progress.draw, cli.TICK_SECONDS, wait).run()
    assert all(seconds <= 0.5 for seconds in waits)
    elapsed = [float(x) for x in re.findall(r"\[\s*([\d.]+)s\] req-1: in queue, position 0", screen.getvalue())]
    assert elapsed == pytest.approx([0.0] + [cli.TICK_SECONDS * n for n in range(1, 9)], abs=0.06)


def test_the_ticker_thread_ticks_until_its_block_ends() -> None:
    ticks: list[int] = []
    with Ticker(lambda: ticks.append(1), 0.001):
        for _ in range(10_000):
            if len(ticks) >= 3:
                break
            threading.Event().wait(0.001)
    after = len(ticks)
    threading.Event().wait(0.01)
    assert after >= 3 and len(ticks) == after  # it ticked, and stopped with its block


def test_progress_goes_to_whichever_stream_is_a_terminal() -> None:
    file_out, tty_err = io.StringIO(), FakeTerminal()
    out = Output(json_lines=True, stdout=file_out, stderr=tty_err)
    assert out.progress is not None and out.progress.stream is tty_err
    tty_out, file_err = FakeTerminal(), io.StringIO()
    out = Output(json_lines=False, stdout=tty_out, stderr=file_err)
    assert out.progress is not None and out.progress.stream is tty_out
    out = Output(json_lines=True, stdout=io.StringIO(), stderr=io.StringIO())
    assert out.progress is None
    out.update(InProgress("r"))  # no terminal: JSON only, no crash


# --- messages and exit codes -------------------------------------------------------------------------------------

PYTHON_WORDS = re.compile(r"\w\(\)|\w=['.]|max_image_bytes|start_timeout|auth=")


@pytest.mark.parametrize(
    "err",
    [
        ResultNotReadyError("Request is still in progress", status_code=400, request_id="r1"),
        AuthenticationError("invalid key", status_code=401),
        StartTimeoutError("Request timed out", status_code=504, request_id="r1", error_type="request_timeout"),
        InvalidInputError(
            [FieldProblem("num_images", 9, "9 is out of range: allowed 1 to 4"), FieldProblem("image_url", None, "x")]
        ),
    ],
)
def test_messages_speak_the_command_lines_language(err: Exception) -> None:
    args = build_parser().parse_args(["edit", "a prompt", "in.png"])
    message = cli_message(err, args)
    assert not PYTHON_WORDS.search(message), message


def test_an_oversized_image_names_the_flag(tmp_path: Path) -> None:
    path = tmp_path / "big.png"
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + b"0" * 100)
    args = build_parser().parse_args(["edit", "a prompt", str(path), "--max-image-bytes", "10"])
    with pytest.raises(InvalidInputError) as raised:
        cli._build_input(args)
    message = cli_message(raised.value, args)
    assert "--max-image-bytes" in message and not PYTHON_WORDS.search(message)


def test_cancelled_is_one_code_whatever_reported_it() -> None:
    by_result = BadRequestError("Request was cancelled", status_code=400, error_type="request_cancelled")
    assert exit_code_for(by_result) == exit_code_for(RequestCancelledError("r")) == cli.EXIT_CANCELLED


def test_one_exit_code_table_in_the_help_and_the_docs() -> None:
    rows = [(row.code, row.meaning) for row in EXIT_CODES]
    assert len({code for code, _ in rows}) == len(rows)
    for code, meaning in rows:
        assert f"  {code:<4}{meaning}" in cli.EPILOG
    docs = (ROOT / "docs" / "client.md").read_text()
    table = re.findall(r"^\| (\d+) \| (.+?) \|$", docs, re.MULTILINE)
    assert [(int(code), meaning) for code, meaning in table] == rows


def test_the_help_example_reaches_its_second_command() -> None:
    for line in cli.EPILOG.splitlines():
        assert not re.search(r"mock\b.*&&", line), line  # `mock` serves until stopped: && never continues


def test_out_checks(tmp_path: Path) -> None:
    check_out_folder(tmp_path / "new" / "deeper")  # missing folders are created later
    (tmp_path / "file").write_text("x")
    with pytest.raises(CommandError, match="is a file"):
        check_out_folder(tmp_path / "file")
    with pytest.raises(CommandError, match="is a file"):
        check_out_folder(tmp_path / "file" / "below")


# --- logging -------------------------------------------------------------------------------------------------------


@pytest.fixture
def loggers() -> Iterator[None]:
    names = ("fal_kontext", "httpx", "httpcore")
    saved = {name: (logging.getLogger(name).level, list(logging.getLogger(name).handlers)) for name in names}
    yield
    for name, (level, handlers) in saved.items():
        logger = logging.getLogger(name)
        logger.setLevel(level)
        logger.handlers[:] = handlers
        logger.propagate = True


def test_v_logs_ours_and_vv_adds_httpcore(loggers: None) -> None:
    configure_logging(1, {}, io.StringIO())
    assert logging.getLogger("fal_kontext").isEnabledFor(logging.DEBUG)
    assert not logging.getLogger("httpcore").isEnabledFor(logging.DEBUG)
    assert logging.getLogger().level == logging.getLogger().level  # the root logger is untouched
    configure_logging(2, {}, io.StringIO())
    assert logging.getLogger("httpcore").isEnabledFor(logging.DEBUG)


def test_the_log_level_variable(loggers: None) -> None:
    stream = io.StringIO()
    configure_logging(0, {cli.ENV_LOG_LEVEL: "info"}, stream)
    logging.getLogger("fal_kontext").info("hello")
    logging.getLogger("fal_kontext").debug("hidden")
    assert stream.getvalue() == "INFO fal_kontext: hello\n"
    with pytest.raises(CommandError, match=cli.ENV_LOG_LEVEL):
        configure_logging(0, {cli.ENV_LOG_LEVEL: "loud"}, stream)


def test_an_input_field_named_like_a_command_flag_gets_a_prefix() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--timeout", type=float)
    cli._add_input_flags(parser, [cli.InputFlag("timeout", "--timeout", {"type": "integer"})])
    args = parser.parse_args(["--timeout", "2.5", "--input-timeout", "3"])
    assert args.timeout == 2.5 and cli._input_values(args) == {"timeout": 3}


def test_the_default_model_is_the_spec_s_first_tier_whatever_the_path_order() -> None:
    specs = endpoint_specs()
    first, other = tier_order()[0], tier_order()[-1]
    base = specs[0]
    later = replace(base, id="example/b/text-to-image", family="text-to-image", tier=other, image_field=None)
    earlier = replace(base, id="example/a/text-to-image", family="text-to-image", tier=first, image_field=None)
    assert choose_endpoint_spec([later, earlier], images=0) == earlier
    assert choose_endpoint_spec([later, earlier], images=0, model=other) == later
    with pytest.raises(InvalidInputError, match="endpoint"):
        choose_endpoint_spec(specs, images=1, endpoint="no/such")


CANARY = "canary-4f1d2c9e8b7a6f5e"


def test_log_lines_never_show_a_credential_from_the_environment() -> None:
    stream = io.StringIO()
    configure_logging(2, {"FAL_KEY_ID": "key-id-0001", "FAL_KEY_SECRET": CANARY, "FAL_KONTEXT_TOKEN": CANARY}, stream)
    # what httpcore's debug log prints: the response headers as sent, here echoing the key
    logging.getLogger("httpcore.http11").debug(
        "receive_response_headers.complete return_value=%r", (b"HTTP/1.1", 401, [(b"x-echo", f"Key {CANARY}")])
    )
    logging.getLogger("fal_kontext").warning("refused: Bearer %s", CANARY)
    text = stream.getvalue()
    assert "receive_response_headers" in text and "refused" in text
    assert CANARY not in text and "***" in text


def test_verbose_commands_print_no_credential(emulator: RunningEmulator, env: dict[str, str], image: Path) -> None:
    canary_env = {**env, "FAL_KEY": CANARY}  # a key the emulator refuses: the 401 path, logged at -vv
    done = run_cli(["-vv", "edit", "a prompt", str(image)], canary_env)
    assert done.returncode != 0 and "401" in done.stderr + done.stdout
    assert "httpcore" in done.stderr  # the debug lines were written
    assert CANARY not in done.stdout + done.stderr
