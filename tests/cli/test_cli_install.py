"""How the command meets a fresh install: start-up imports, the mock extra, --version, completion, docs."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from fal_kontext import __version__
from fal_kontext.cli import EXIT_USAGE, main
from fal_kontext_emulator import RunningEmulator
from tests.cli.conftest import run_cli

ROOT = Path(__file__).resolve().parents[2]
EMULATOR_ONLY = ("starlette", "uvicorn", "PIL", "jsonschema", "fal_kontext_emulator")


def test_help_does_not_import_the_emulator() -> None:
    code = textwrap.dedent(
        """
        import sys
        from fal_kontext.cli import main
        try:
            main(["--help"])
        except SystemExit:
            pass
        print(sorted(m for m in sys.modules if m.startswith(EMULATOR_ONLY)))
        """
    ).replace("EMULATOR_ONLY", repr(EMULATOR_ONLY))
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert done.stdout.splitlines()[-1] == "[]", done.stdout.splitlines()[-1]


def test_version() -> None:
    done = run_cli(["--version"], dict(os.environ))
    assert done.returncode == 0 and done.stdout.strip() == f"fal-kontext {__version__}"


def test_mock_without_the_extra_names_the_install_command(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setitem(sys.modules, "fal_kontext_emulator.command_line", None)  # what a missing starlette looks like
    # An earlier test may have imported it: ``from fal_kontext_emulator import command_line`` would find the
    # attribute first.
    monkeypatch.delattr("fal_kontext_emulator.command_line", raising=False)
    assert main(["mock", "--port", "0"]) == EXIT_USAGE
    assert "pip install 'fal-kontext[mock]'" in capsys.readouterr().err


def test_the_fal_emulator_fixture_without_the_extra_names_the_install_command(tmp_path: Path) -> None:
    (tmp_path / "conftest.py").write_text("import sys\nsys.modules['starlette'] = None  # as if not installed\n")
    (tmp_path / "test_it.py").write_text("def test_it(fal_emulator):\n    pass\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST")}
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        cwd=tmp_path,
        env=env,
    )
    assert done.returncode == 1, done.stdout
    assert "pip install 'fal-kontext[mock]'" in done.stdout


def test_mock_help_points_at_a_guide_the_wheel_ships() -> None:
    import tomllib

    project = tomllib.loads((Path(__file__).parents[2] / "pyproject.toml").read_text(encoding="utf-8"))
    shipped = project["tool"]["hatch"]["build"]["targets"]["wheel"]["force-include"]
    assert shipped["docs/emulator.md"] == "fal_kontext/docs/emulator.md"  # where _emulator_guide() looks
    done = run_cli(["mock", "--help"], dict(os.environ))
    assert done.returncode == 0
    text = " ".join(done.stdout.split())
    assert "emulator.md" in text and "--run-time" in text


def test_completion_script_and_candidates(tmp_path: Path) -> None:
    script = run_cli(["completion", "bash"], dict(os.environ))
    assert script.returncode == 0 and "fal-kontext" in script.stdout and "complete " in script.stdout
    answer = tmp_path / "answer"
    env = {
        **os.environ,
        "_ARGCOMPLETE": "1",
        "_ARGCOMPLETE_SHELL": "bash",
        "COMP_LINE": "fal-kontext edit p in.png --aspect",
        "COMP_POINT": str(len("fal-kontext edit p in.png --aspect")),
        "_ARGCOMPLETE_STDOUT_FILENAME": str(answer),
    }
    done = run_cli([], env)
    assert done.returncode == 0, done.stderr
    assert [word.strip() for word in answer.read_text().split("\x0b")] == ["--aspect-ratio"]


def test_generated_md_runs_as_written(fal_emulator: RunningEmulator) -> None:
    docs = (ROOT / "docs" / "generated.md").read_text()
    block = re.search(r"```python\n(.*?)```", docs, re.DOTALL)
    assert block is not None
    env = {**os.environ, "FAL_KEY": fal_emulator.key, "FAL_KONTEXT_BASE_URL": fal_emulator.base_url}
    done = subprocess.run(
        [sys.executable, "-c", block[1]], env=env, capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    assert fal_emulator.submit_count() == 1
    assert re.search(r"IN_QUEUE|IN_PROGRESS|COMPLETED", done.stdout)


def test_help_lists_commands_and_exit_codes(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["--help"])
    text = capsys.readouterr().out
    for word in ("edit", "submit", "wait", "completion", "mock", "exit codes:", "FAL_KONTEXT_LOG_LEVEL"):
        assert word in text
