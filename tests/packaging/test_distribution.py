"""The package as a user gets it: `python -m build` makes the sdist and (from it) the wheel; each installs into a fresh
venv with its dependencies resolved from PyPI; the installed command runs an edit against the installed emulator; a
user's own pytest file uses the `fal_emulator` fixture.

The wheel's venv gets the newest release of every dependency (httpx 0.29 or later), the sdist's the lowest versions
the core ranges allow (pyproject's `>=` bounds as constraints), so the ranges are as wide as what is tested. A third
venv has the wheel without extras: the client works there, and what needs an extra names it.

It needs the package index (CI has it) and takes about 25 s on a 2-core machine, most of it pip.
"""

from __future__ import annotations

import json
import os
import queue
import re
import signal
import subprocess
import sys
import tarfile
import textwrap
import threading
import time
import tomllib
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from email import message_from_string
from email.message import Message
from pathlib import Path
from typing import IO

import pytest
from packaging.requirements import Requirement
from packaging.version import Version
from PIL import Image

from fal_kontext import __version__

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1200)]

ROOT = Path(__file__).resolve().parents[2]
PIP_TIMEOUT = 900  # a cold pip cache on a slow link: building the sdist's wheel fetches hatchling too
# Variables of this test run that must not reach a venv: they would point it at the repository or at our emulators.
FOREIGN = ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV", "PYTEST_", "FAL_", "_ARGCOMPLETE", "COV_")


@dataclass(frozen=True)
class Dist:
    wheel: Path
    sdist: Path


@dataclass(frozen=True)
class Venv:
    root: Path

    def bin(self, name: str) -> str:
        return str(self.root / "bin" / name)

    def run(
        self, args: list[str], cwd: Path, env: dict[str, str] | None = None, timeout: float = 120
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            args, cwd=cwd, env=clean_env(env), capture_output=True, text=True, timeout=timeout, check=False
        )


def clean_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(FOREIGN)}
    return env | (extra or {})


def checked(done: subprocess.CompletedProcess[str], what: str) -> subprocess.CompletedProcess[str]:
    assert done.returncode == 0, f"{what} failed ({done.returncode}):\n{done.stdout[-4000:]}\n{done.stderr[-4000:]}"
    return done


def make_venv(root: Path, requirements: list[str], constraints: list[str] | None = None) -> Venv:
    """A fresh venv (no system site-packages) with `requirements` installed from PyPI by this interpreter's pip."""
    checked(
        subprocess.run(
            [sys.executable, "-m", "venv", "--without-pip", str(root)], capture_output=True, text=True, check=False
        ),
        "python -m venv",
    )
    command = [sys.executable, "-m", "pip", "--python", str(root / "bin" / "python"), "install", "--quiet"]
    if constraints:
        (root / "constraints.txt").write_text("\n".join(constraints) + "\n", encoding="utf-8")
        command += ["--constraint", str(root / "constraints.txt")]
    done = subprocess.run(
        [*command, *requirements],
        cwd=root,
        env=clean_env(),
        capture_output=True,
        text=True,
        timeout=PIP_TIMEOUT,
        check=False,
    )
    checked(done, f"pip install {' '.join(requirements)} (needs the package index)")
    return Venv(root)


def lowest_allowed() -> dict[str, Version]:
    """Every core dependency's lower bound in pyproject.toml."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    bounds = {}
    for line in project["dependencies"]:
        requirement = Requirement(line)
        lower = [spec.version for spec in requirement.specifier if spec.operator == ">="]
        assert lower, f"{line}: every core dependency needs a lower bound the packaging test can install"
        bounds[requirement.name] = Version(lower[0])
    return bounds


@pytest.fixture(scope="module")
def dist(tmp_path_factory: pytest.TempPathFactory) -> Dist:
    """`python -m build`: the sdist, then the wheel built from that sdist (so the sdist must hold what it needs)."""
    out = tmp_path_factory.mktemp("dist")
    done = subprocess.run(
        [sys.executable, "-m", "build", "--outdir", str(out), str(ROOT)],
        env=clean_env(),
        capture_output=True,
        text=True,
        timeout=PIP_TIMEOUT,
        check=False,
    )
    checked(done, "python -m build")
    (wheel,) = out.glob("*.whl")
    (sdist,) = out.glob("*.tar.gz")
    return Dist(wheel, sdist)


@pytest.fixture(scope="module")
def newest(dist: Dist, tmp_path_factory: pytest.TempPathFactory) -> Venv:
    """The wheel with the mock extra, as the README installs it, and the newest release of every dependency."""
    return make_venv(tmp_path_factory.mktemp("venv-wheel"), [f"{dist.wheel}[mock]", "pytest"])


@pytest.fixture(scope="module")
def lowest(dist: Dist, tmp_path_factory: pytest.TempPathFactory) -> Venv:
    """The sdist with the mock extra, and the lowest versions the core ranges allow."""
    pins = [f"{name}=={version}" for name, version in lowest_allowed().items()]
    return make_venv(tmp_path_factory.mktemp("venv-sdist"), [f"{dist.sdist}[mock]", "pytest"], pins)


@pytest.fixture(scope="module")
def bare(dist: Dist, tmp_path_factory: pytest.TempPathFactory) -> Venv:
    """The wheel without extras: httpx, attrs, sniffio, jsonschema and what they need; and pytest, which loads our
    plugin."""
    return make_venv(tmp_path_factory.mktemp("venv-bare"), [str(dist.wheel), "pytest"])


@dataclass(frozen=True)
class Installed:
    name: str
    venv: Venv


@pytest.fixture(scope="module", params=["newest", "lowest"])
def installed(request: pytest.FixtureRequest) -> Installed:
    """Each of the two full installs in turn: the wheel with the newest dependencies, the sdist with the lowest."""
    return Installed(request.param, request.getfixturevalue(request.param))


def pump(stream: IO[str], lines: queue.Queue[str]) -> None:
    for line in stream:
        lines.put(line.strip())


@contextmanager
def running_emulator(venv: Venv, cwd: Path) -> Iterator[str]:
    """The venv's `fal-kontext mock --port 0`; yields its base URL, read from the line it prints first."""
    process = subprocess.Popen(
        [venv.bin("fal-kontext"), "mock", "--port", "0"],
        cwd=cwd,
        env=clean_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert process.stdout is not None
        lines: queue.Queue[str] = queue.Queue()
        # A thread reads: a selector on the pipe misses lines already in the text wrapper's buffer.
        threading.Thread(target=pump, args=(process.stdout, lines), daemon=True).start()
        seen: list[str] = []
        deadline = time.monotonic() + 60
        while "fal-kontext mock: ready" not in seen and time.monotonic() < deadline and process.poll() is None:
            with suppress(queue.Empty):
                seen.append(lines.get(timeout=0.5))
        assert "fal-kontext mock: ready" in seen, f"the installed emulator did not start: {seen}"
        found = re.fullmatch(r"fal-kontext mock: base URL (http://127\.0\.0\.1:\d+)", seen[0])
        assert found, seen
        yield found[1]
    finally:
        process.send_signal(signal.SIGINT)  # Ctrl+C, as a user stops it
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.fixture(scope="module")
def emulator(installed: Installed, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with running_emulator(installed.venv, tmp_path_factory.mktemp("emulator")) as base_url:
        yield base_url


def kitchen(folder: Path) -> Path:
    path = folder / "kitchen.png"
    Image.new("RGB", (64, 48), "orange").save(path)
    return path


def cli_edit(venv: Venv, base_url: str, folder: Path) -> None:
    """`fal-kontext edit` as the README's quick start runs it, and the image it writes."""
    kitchen(folder)
    done = venv.run(
        [venv.bin("fal-kontext"), "edit", "Put a donut next to the flour", "kitchen.png", "--out", "out/"],
        cwd=folder,
        env={"FAL_KEY": "test-key", "FAL_KONTEXT_BASE_URL": base_url},
    )
    checked(done, "fal-kontext edit")
    result = json.loads(done.stdout.splitlines()[-1])  # piped: JSON lines, the result last
    assert result["event"] == "result" and result["images"][0]["url"].startswith(base_url)
    (saved,) = result["files"]
    assert (folder / saved).read_bytes().startswith(b"\xff\xd8"), "not a JPEG"


def metadata(wheel: Path) -> Message:
    with zipfile.ZipFile(wheel) as archive:
        (name,) = [n for n in archive.namelist() if n.endswith(".dist-info/METADATA")]
        return message_from_string(archive.read(name).decode("utf-8"))


def test_build_makes_an_sdist_and_a_wheel_with_what_users_need(dist: Dist) -> None:
    with zipfile.ZipFile(dist.wheel) as archive:
        files = set(archive.namelist())
    for guide in ("client", "emulator", "generated"):
        assert f"fal_kontext/docs/{guide}.md" in files  # `fal-kontext mock --help` names the installed guide
    assert {"fal_kontext_api/openapi.json", "fal_kontext_api/py.typed", "fal_kontext/py.typed"} <= files
    assert {
        "fal_kontext_emulator/__init__.py",
        "fal_kontext_emulator/pytest_plugin.py",
        "fal_kontext_emulator/py.typed",
    } <= files
    assert not any(name.startswith("fal_kontext/mock/") for name in files)
    assert not any("defect" in name for name in files), "the seeded defects are test-only: they stay in contracts/"
    assert any(name.endswith(".dist-info/licenses/LICENSE") for name in files)
    assert not any(name.startswith(("tests/", "contracts/", "bench/")) for name in files)
    with tarfile.open(dist.sdist) as archive:
        members = {name.split("/", 1)[1] for name in archive.getnames() if "/" in name}
    assert {
        "docs/client.md",
        "docs/emulator.md",
        "docs/generated.md",
        "LICENSE",
        "README.md",
        "pyproject.toml",
    } <= members
    # The README's install lines name the file the build makes.
    assert f"dist/{dist.wheel.name}" in (ROOT / "README.md").read_text(encoding="utf-8")


def test_the_metadata_is_complete_and_its_description_has_no_relative_links(dist: Dist) -> None:
    meta = metadata(dist.wheel)
    assert meta["Name"] == "fal-kontext" and meta["Version"] == __version__
    assert meta["License-Expression"] == "MIT" and meta["License-File"] == "LICENSE"
    classifiers = meta.get_all("Classifier") or []
    assert "Typing :: Typed" in classifiers and "Programming Language :: Python :: 3.11" in classifiers
    assert not meta.get_all("Project-URL"), "no project URL exists yet: none may be invented"
    requires = meta.get_all("Requires-Dist") or []
    assert any(re.fullmatch(r"httpx<1,>=0\.28\.1|httpx>=0\.28\.1,<1", r) for r in requires), requires
    assert {"webhooks", "completion", "mock"} <= set(meta.get_all("Provides-Extra") or [])
    description = meta.get_payload()
    assert isinstance(description, str)
    assert meta["Description-Content-Type"] == "text/markdown"
    assert description.startswith("# fal-kontext") and "pip install" in description
    links = re.findall(r"\]\(([^)]*)\)", description)
    assert all(link.startswith(("https://", "http://")) for link in links), links
    assert "docs/client.md" in description  # the guides are named as files instead
    assert "bench-summary" not in description and "make test" not in description  # the maintainers' part is left out


def test_both_packages_import_from_the_venv_with_the_expected_dependencies(
    installed: Installed, tmp_path: Path
) -> None:
    code = textwrap.dedent(
        """
        import json, sys
        from importlib.metadata import version
        import fal_kontext, fal_kontext_api
        print(json.dumps({
            "files": [fal_kontext.__file__, fal_kontext_api.__file__],
            "versions": {name: version(name) for name in sys.argv[1:]},
        }))
        """
    )
    names = ["fal-kontext", *lowest_allowed()]  # every core dependency pyproject.toml names, httpx among them
    command = [installed.venv.bin("python"), "-c", code, *names]
    done = checked(installed.venv.run(command, cwd=tmp_path), "import")
    found = json.loads(done.stdout)
    for file in found["files"]:
        assert Path(file).is_relative_to(installed.venv.root), file  # the installed copy, not the repository's
    versions = found["versions"]
    assert versions["fal-kontext"] == __version__
    if installed.name == "lowest":
        assert {name: Version(versions[name]) for name in lowest_allowed()} == lowest_allowed(), versions
    else:  # the newest httpx, outside openapi-python-client's own httpx<0.29
        assert Version(versions["httpx"]) >= Version("0.29"), versions


def test_the_installed_command_prints_its_version(installed: Installed, tmp_path: Path) -> None:
    done = checked(installed.venv.run([installed.venv.bin("fal-kontext"), "--version"], cwd=tmp_path), "--version")
    assert done.stdout.strip() == f"fal-kontext {__version__}"


def test_the_installed_command_edits_against_the_installed_emulator(
    installed: Installed, emulator: str, tmp_path: Path
) -> None:
    cli_edit(installed.venv, emulator, tmp_path)


USER_TESTS = """\
\"\"\"A user's own tests against the fal_emulator fixture, which the installed package provides (no import).\"\"\"

import asyncio

import pytest
from PIL import Image

from fal_kontext import AsyncKontext
from fal_kontext_api.api.submit import submit_flux_pro_kontext
from fal_kontext_api.api.queue import get_request_status
from fal_kontext_api.client import AuthenticatedClient
from fal_kontext_api.models import KontextInput, QueueStatus, QueueSubmitResponse


@pytest.fixture(autouse=True)
def kitchen(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    Image.new("RGB", (64, 48), "orange").save("kitchen.png")


# The README's example:
{readme_example}

def test_an_async_edit(fal_emulator):
    async def edit():
        async with AsyncKontext(fal_emulator.key, base_url=fal_emulator.base_url) as kontext:
            return await kontext.edit("Put a donut next to the flour", image="kitchen.png", model="max")

    result = asyncio.run(edit())
    assert result.images and result.images[0].url.startswith(fal_emulator.base_url)


def test_the_generated_client_on_its_own(fal_emulator):
    body = KontextInput(prompt="Put a donut next to the flour", image_url="https://example.com/kitchen.jpg")
    with AuthenticatedClient(base_url=fal_emulator.base_url, token=fal_emulator.key, prefix="Key") as client:
        submitted = submit_flux_pro_kontext.sync_detailed(client=client, body=body)
        assert isinstance(submitted.parsed, QueueSubmitResponse), submitted.content
        status = get_request_status.sync("fal-ai", "flux-pro", submitted.parsed.request_id, client=client)
        assert isinstance(status, QueueStatus)


def test_the_generated_async_client_on_its_own(fal_emulator):
    body = KontextInput(prompt="Put a donut next to the flour", image_url="https://example.com/kitchen.jpg")

    async def submit():
        async with AuthenticatedClient(base_url=fal_emulator.base_url, token=fal_emulator.key, prefix="Key") as client:
            return await submit_flux_pro_kontext.asyncio(client=client, body=body)

    assert isinstance(asyncio.run(submit()), QueueSubmitResponse)
    assert fal_emulator.submit_count() == 1
"""


def readme_example() -> str:
    """The README's example of a user's test with the `fal_emulator` fixture."""
    blocks = re.findall(r"```python\n(.*?)```", (ROOT / "README.md").read_text(encoding="utf-8"), re.DOTALL)
    (example,) = [block for block in blocks if "(fal_emulator)" in block]
    return str(example)


def test_a_users_pytest_file_gets_the_fal_emulator_fixture(installed: Installed, tmp_path: Path) -> None:
    (tmp_path / "pytest.ini").write_text("[pytest]\n", encoding="utf-8")  # its own rootdir: nothing of ours applies
    (tmp_path / "test_mine.py").write_text(USER_TESTS.replace("{readme_example}", readme_example()), encoding="utf-8")
    done = installed.venv.run(
        [installed.venv.bin("python"), "-m", "pytest", "-q", "-p", "no:cacheprovider", "test_mine.py"],
        cwd=tmp_path,
        timeout=300,
    )
    checked(done, "the user's pytest run")
    assert re.search(r"\b4 passed\b", done.stdout), done.stdout


def test_without_extras_the_client_works_and_each_extra_is_named_when_missing(
    bare: Venv, newest: Venv, tmp_path: Path
) -> None:
    code = textwrap.dedent(
        """
        import importlib.util
        import fal_kontext, fal_kontext.webhooks, fal_kontext_api
        missing = [m for m in ("cryptography", "argcomplete", "starlette", "PIL") if importlib.util.find_spec(m)]
        assert not missing, missing
        try:
            fal_kontext.webhooks.verify_webhook(b"{}", {}, {"keys": []})
        except ModuleNotFoundError as err:
            print(err)
        """
    )
    done = checked(bare.run([bare.bin("python"), "-c", code], cwd=tmp_path), "import without extras")
    assert "pip install 'fal-kontext[webhooks]'" in done.stdout
    for command, extra in ((["completion", "bash"], "completion"), (["mock", "--port", "0"], "mock")):
        done = bare.run([bare.bin("fal-kontext"), *command], cwd=tmp_path)
        assert done.returncode == 2, done.stdout + done.stderr
        assert f"pip install 'fal-kontext[{extra}]'" in done.stderr
    with running_emulator(newest, tmp_path) as base_url:  # the client alone edits against a real server
        cli_edit(bare, base_url, tmp_path)


def test_without_the_mock_extra_pytest_loads_our_plugin_and_the_fixture_names_the_extra(
    bare: Venv, tmp_path: Path
) -> None:
    (tmp_path / "pytest.ini").write_text("[pytest]\n", encoding="utf-8")
    (tmp_path / "test_mine.py").write_text(
        "def test_plain():\n    pass\n\n\ndef test_emulated(fal_emulator):\n    pass\n", encoding="utf-8"
    )
    done = bare.run(
        [bare.bin("python"), "-m", "pytest", "-q", "-p", "no:cacheprovider", "test_mine.py"], cwd=tmp_path, timeout=300
    )
    assert done.returncode == 1, done.stdout + done.stderr
    assert re.search(r"\b1 passed, 1 error\b", done.stdout), done.stdout
    assert "pip install 'fal-kontext[mock]'" in done.stdout
