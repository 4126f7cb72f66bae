"""The input flags read from the spec (cli/input_flags.py), and the input they build."""

from __future__ import annotations

import argparse
from dataclasses import replace
from pathlib import Path

import pytest

from fal_kontext import cli
from fal_kontext.cli import build_parser
from fal_kontext.cli import input_flags as flags
from fal_kontext.cli import parser as cli_parser
from fal_kontext.cli.exit_codes import EXIT_USAGE
from fal_kontext.cli.queue_commands import input_from_args
from fal_kontext.files import image_source_to_url
from fal_kontext.spec import endpoint_specs, resolved_schema


def subparser(parser: argparse.ArgumentParser, name: str) -> argparse.ArgumentParser:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            found: argparse.ArgumentParser = action.choices[name]
            return found
    raise AssertionError(name)


def actions_by_dest(parser: argparse.ArgumentParser) -> dict[str, argparse.Action]:
    return {action.dest: action for action in parser._actions}


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
    monkeypatch.setattr(cli_parser, "endpoint_specs", lambda: (*specs, invented))
    generate = subparser(build_parser(), "generate")
    text_to_image = [spec.id for spec in (*specs, invented) if spec.family == "text-to-image"]
    assert actions_by_dest(generate)["endpoint"].choices == text_to_image
    args = build_parser().parse_args(["generate", "a cat", "--endpoint", invented.id, "--seed", "3"])
    chosen, body = input_from_args(args)
    assert chosen.id == "example/text-to-image" and body == {"prompt": "a cat", "seed": 3}


def test_flags_parse_into_the_input_and_images_are_inlined(tmp_path: Path) -> None:
    from PIL import Image

    path = tmp_path / "a.png"
    Image.new("RGB", (8, 8), "red").save(path)
    args = build_parser().parse_args(
        ["edit", "a prompt", str(path), str(path), "--num-images", "2", "--no-enhance-prompt", "--aspect-ratio", "1:1"]
    )
    chosen, body = input_from_args(args)
    assert chosen.family == "multi-edit"
    assert body["num_images"] == 2 and body["enhance_prompt"] is False and body["aspect_ratio"] == "1:1"
    assert body[chosen.image_field or ""] == [image_source_to_url(path)] * 2


def test_a_value_the_spec_does_not_allow_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    schema = resolved_schema(endpoint_specs()[0].input_schema)["properties"]["output_format"]
    not_allowed = "x" + "".join(schema["enum"])
    with pytest.raises(cli_parser.UsageError, match="--output-format"):
        build_parser().parse_args(["edit", "a prompt", "in.png", "--output-format", not_allowed])
    assert cli.main(["edit", "a prompt", "in.png", "--output-format", not_allowed]) == EXIT_USAGE
    assert "--output-format" in capsys.readouterr().err


def test_an_input_field_named_like_a_command_flag_gets_a_prefix() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--timeout", type=float)
    flags.add_input_flags(parser, [flags.InputFlag("timeout", "--timeout", {"type": "integer"})])
    args = parser.parse_args(["--timeout", "2.5", "--input-timeout", "3"])
    assert args.timeout == 2.5 and flags.input_values(args) == {"timeout": 3}
