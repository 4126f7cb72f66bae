"""How the command meets a fresh install: start-up imports, the mock extra, --version, completion."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

from fal_kontext import __version__
from tests.support.command_line import run_cli

EMULATOR_ONLY = ("starlette", "uvicorn", "PIL", "fal_kontext_emulator")
# A core dependency, imported by the first input check only: start-up (and --help) stays quick.
NOT_AT_START = (*EMULATOR_ONLY, "jsonschema", "fastjsonschema")


def test_help_imports_neither_the_emulator_nor_jsonschema() -> None:
    code = textwrap.dedent(
        """
        import sys
        from fal_kontext.cli import main
        try:
            main(["--help"])
        except SystemExit:
            pass
        print(sorted(m for m in sys.modules if m.startswith(NOT_AT_START)))
        """
    ).replace("NOT_AT_START", repr(NOT_AT_START))
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert done.stdout.splitlines()[-1] == "[]", done.stdout.splitlines()[-1]


def test_version() -> None:
    done = run_cli(["--version"], dict(os.environ))
    assert done.returncode == 0 and done.stdout.strip() == f"fal-kontext {__version__}"


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

    project = tomllib.loads((Path(__file__).parents[3] / "pyproject.toml").read_text(encoding="utf-8"))
    shipped = project["tool"]["hatch"]["build"]["targets"]["wheel"]["force-include"]
    assert shipped["docs/emulator.md"] == "fal_kontext/docs/emulator.md"  # where server_launch._emulator_guide() looks
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
