"""`cryptography` and `argcomplete` are extras (`webhooks`, `completion`): the client imports without them, and what
needs one says which extra to install. A missing module is simulated with a None entry in sys.modules, which is
how Python reports a module it cannot import (ModuleNotFoundError)."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import tomllib
from pathlib import Path

import pytest

from fal_kontext.cli import main
from fal_kontext.cli.exit_codes import EXIT_USAGE
from fal_kontext.webhooks import parse_webhook, verify_webhook

ROOT = Path(__file__).resolve().parents[2]


def hide(monkeypatch: pytest.MonkeyPatch, package: str) -> None:
    """Make `package` and its submodules unimportable for the rest of the test, as if it were not installed."""
    for name in [name for name in sys.modules if name == package or name.startswith(package + ".")] + [package]:
        monkeypatch.setitem(sys.modules, name, None)


def test_the_core_dependencies_leave_out_webhooks_and_completion() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    core = " ".join(project["dependencies"])
    assert "cryptography" not in core and "argcomplete" not in core
    extras = project["optional-dependencies"]
    assert any(spec.startswith("cryptography") for spec in extras["webhooks"])
    assert any(spec.startswith("argcomplete") for spec in extras["completion"])
    # The emulator signs its webhook deliveries, and `make test` covers both extras.
    assert any(spec.startswith("cryptography") for spec in extras["mock"])
    assert {"cryptography", "argcomplete"} <= {spec.split(">")[0].split("=")[0] for spec in extras["dev"]}


def test_the_client_and_the_webhooks_module_import_without_either() -> None:
    code = textwrap.dedent(
        """
        import sys
        sys.modules["cryptography"] = sys.modules["argcomplete"] = None   # as if not installed
        import fal_kontext, fal_kontext.cli, fal_kontext.webhooks
        print("imported")
        """
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0 and done.stdout.strip() == "imported", done.stderr


def test_verify_webhook_without_cryptography_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    hide(monkeypatch, "cryptography")
    with pytest.raises(ModuleNotFoundError, match=r"pip install 'fal-kontext\[webhooks\]'") as caught:
        verify_webhook(b"{}", {}, {"keys": []})
    assert caught.value.name is not None and caught.value.name.startswith("cryptography")


def test_reading_a_webhook_body_needs_no_cryptography(monkeypatch: pytest.MonkeyPatch) -> None:
    hide(monkeypatch, "cryptography")
    event = parse_webhook(json.dumps({"request_id": "r", "status": "OK", "payload": None}).encode())
    assert event.request_id == "r" and event.result is None


def test_completion_without_argcomplete_names_the_extra(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    hide(monkeypatch, "argcomplete")
    assert main(["completion", "bash"]) == EXIT_USAGE
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "pip install 'fal-kontext[completion]'" in captured.err and "argcomplete" in captured.err


def test_a_completion_request_without_argcomplete_runs_nothing(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The shell asks for completions (`_ARGCOMPLETE`), but argcomplete went away: exit, never run a command."""
    hide(monkeypatch, "argcomplete")
    monkeypatch.setenv("_ARGCOMPLETE", "1")
    with pytest.raises(SystemExit) as stopped:
        main(["edit", "a prompt", "in.png"])
    assert stopped.value.code == EXIT_USAGE
    assert "pip install 'fal-kontext[completion]'" in capsys.readouterr().err


def test_the_help_says_which_extra_completion_needs(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["--help"])
    assert "fal-kontext[completion]" in " ".join(capsys.readouterr().out.split())


def test_importing_the_client_loads_neither_the_emulator_nor_its_dependencies() -> None:
    """The emulator is its own package behind the `mock` extra: `import fal_kontext` loads none of it, nor Starlette,
    uvicorn or Pillow (whether or not they are installed)."""
    emulator_only = ("starlette", "uvicorn", "PIL", "fal_kontext_emulator")
    code = f"import sys, fal_kontext\nprint(sorted(m for m in sys.modules if m.split('.')[0] in {emulator_only!r}))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]", done.stdout
