"""Real documents in, each endpoint's own truth out: `make` on copies of the tree with documents of new endpoints,
in every format the pipeline reads, and what the client, the CLI and the emulator then do with them."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
import regenerate
import yaml
from regenerate import Tree

from .conftest import ROOT, SOURCES

FIXTURES = Path(__file__).parent / "fixtures"
KONTEXT_DEV = "fal-ai/flux-kontext/dev"
FLUX_DEV = "fal-ai/flux-1/dev"


def _make(root: Path, **options: Any) -> int:
    return regenerate.regenerate(Tree(root), verify=False, **options)


def _spec(root: Path) -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((root / "specs" / "openapi.yaml").read_text(encoding="utf-8"))
    return loaded


def _schemas_of_endpoints(document: dict[str, Any]) -> dict[str, str]:
    """Each endpoint's input and output schema, with every schema they refer to, as YAML text."""
    schemas = document["components"]["schemas"]

    def closure(name: str, seen: set[str]) -> None:
        if name in seen:
            return
        seen.add(name)
        for ref in re.findall(r"#/components/schemas/(\w+)", yaml.safe_dump(schemas[name])):
            closure(ref, seen)

    out = {}
    for path, item in document["paths"].items():
        if "post" not in item:
            continue
        metadata = item["post"]["x-fal-endpoint"]
        names: set[str] = set()
        closure(item["post"]["requestBody"]["content"]["application/json"]["schema"]["$ref"].rsplit("/", 1)[1], names)
        closure(metadata["output_schema"], names)
        out[path] = yaml.safe_dump({n: schemas[n] for n in sorted(names)}) + yaml.safe_dump(metadata)
    return out


def _run_script(root: Path, script: str) -> str:
    """Run `script` with the tree's regenerated package first on the path (the client and the emulator read their
    endpoints from its spec); return what it printed."""
    env = {**os.environ, "PYTHONPATH": str(root / "generated")}
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(script)],
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def _change_report(out: str) -> str:
    return out.split("== API changes", 1)[1].split("== generate", 1)[0]


# --- a new endpoint changes no other endpoint ---------------------------------------------------------------------


def test_kontext_dev_from_fals_llms_page_is_added_alone_and_runs_under_its_app(
    tree: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    before = _schemas_of_endpoints(_spec(tree))
    shutil.copy(FIXTURES / "flux-kontext-dev__fal.llms.md", tree / "specs" / "sources")

    assert _make(tree) == 0
    report = _change_report(capsys.readouterr().out)
    assert "breaking:" not in report and " 0 breaking," in report
    assert f"additive: POST /{KONTEXT_DEV}: operation 'submit_flux_kontext_dev' added" in report
    assert f"endpoints changed: {KONTEXT_DEV}\n" in report
    after = _schemas_of_endpoints(_spec(tree))
    assert {path: after[path] for path in before} == before  # byte-identical: inputs, outputs, their types
    dev = _spec(tree)["components"]["schemas"]["FluxKontextDevInput"]["properties"]
    assert dev["guidance_scale"]["default"] == 2.5 and "safety_tolerance" not in dev
    assert _spec(tree)["paths"][f"/{KONTEXT_DEV}"]["post"]["x-fal-endpoint"]["tier"] == "dev"

    printed = _run_script(
        tree,
        f"""
        import httpx
        from fal_kontext import Kontext
        from fal_kontext_emulator import EmulatorConfig, run_emulator

        seen = []
        hooks = {{"request": [lambda request: seen.append(request.url.path)]}}
        with run_emulator(EmulatorConfig(run_time=0.05, queue_wait=0.01)) as emulator:
            with Kontext(emulator.key, base_url=emulator.base_url, httpx_args={{"event_hooks": hooks}}) as kontext:
                result = kontext.run({KONTEXT_DEV!r}, {{"prompt": "make it night", "image_url": "{PNG_URI}",
                                                       "num_inference_steps": 20}})
                handle = kontext.handle(result.request_id, endpoint={KONTEXT_DEV!r})
                print(handle.status().__class__.__name__, len(result.images))
        print("\\n".join(seen))
        """,
    )
    lines = printed.splitlines()
    assert lines[0] == "Completed 1"
    followed = [path for path in lines[1:] if "/requests/" in path]
    assert followed and all(path.startswith("/fal-ai/flux-kontext/requests/") for path in followed), followed


def test_the_verbs_refuse_a_field_the_chosen_tiers_endpoint_lacks(tree: Path, tmp_path: Path) -> None:
    shutil.copy(FIXTURES / "flux-kontext-dev__fal.llms.md", tree / "specs" / "sources")
    assert _make(tree) == 0
    config = tmp_path / "mypy.ini"
    config.write_text(f"[mypy]\nstrict = True\nmypy_path = {tree / 'generated'}:{ROOT / 'src'}\n")
    script = tmp_path / "user.py"
    script.write_text(
        textwrap.dedent(
            """\
            from fal_kontext import Kontext

            kontext = Kontext("key", base_url="http://127.0.0.1:9")
            kontext.edit("a prompt", image="x.png", model="dev", num_inference_steps=20, acceleration="high")
            kontext.edit("a prompt", image="x.png", model="pro", safety_tolerance="6")
            kontext.edit("a prompt", image="x.png", model="dev", safety_tolerance="6")
            kontext.edit("a prompt", image="x.png", model="pro", num_inference_steps=20)
            """
        )
    )
    done = subprocess.run(
        [sys.executable, "-m", "mypy", "--config-file", str(config), str(script)],
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, "MYPYPATH": ""},
    )
    refused = {int(line.split(":")[1]) for line in done.stdout.splitlines() if ": error:" in line}
    assert refused == {6, 7}, done.stdout  # dev has no safety_tolerance; pro has no num_inference_steps


def test_an_endpoint_outside_the_tiers_is_callable_by_id_under_its_app(
    tree: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    before = _schemas_of_endpoints(_spec(tree))
    shutil.copy(FIXTURES / "flux-1-dev__fal.openapi.json", tree / "specs" / "sources")
    shutil.copy(FIXTURES / "flux-1-dev__fal.llms.md", tree / "specs" / "sources")
    assert _make(tree) == 0
    report = _change_report(capsys.readouterr().out)
    assert "breaking:" not in report and f"endpoints changed: {FLUX_DEV}\n" in report
    after = _schemas_of_endpoints(_spec(tree))
    assert {path: after[path] for path in before} == before
    metadata = _spec(tree)["paths"][f"/{FLUX_DEV}"]["post"]["x-fal-endpoint"]
    assert "tier" not in metadata and metadata["app"] == "fal-ai/flux-1"

    printed = _run_script(
        tree,
        f"""
        import contextlib, io, os
        from fal_kontext import Kontext
        from fal_kontext.cli import main
        from fal_kontext_emulator import EmulatorConfig, run_emulator

        seen = []
        hooks = {{"request": [lambda request: seen.append(request.url.path)]}}
        with run_emulator(EmulatorConfig(run_time=0.05, queue_wait=0.01)) as emulator:
            with Kontext(emulator.key, base_url=emulator.base_url, httpx_args={{"event_hooks": hooks}}) as kontext:
                handle = kontext.submit({FLUX_DEV!r}, {{"prompt": "a lighthouse", "image_size": "square_hd"}})
                result = handle.wait()
            print(len(result.images), sorted(result.output.to_dict()))
            os.environ["FAL_KEY"] = emulator.key
            out = io.StringIO()
            with contextlib.redirect_stdout(out):
                code = main(["--base-url", emulator.base_url, "--json", "run", {FLUX_DEV!r}, "a lighthouse",
                             "--image-size", "square_hd", "--acceleration", "high"])
            print(code, "image_size" in out.getvalue() or "result" in out.getvalue())
            calls = emulator.counters()["calls"]
        print(calls.get("submit_flux_1_dev"))
        print("\\n".join(seen))
        """,
    )
    lines = printed.splitlines()
    assert lines[0] == "1 ['images', 'seed']"  # the output the endpoint's own schema states
    assert lines[1] == "0 True"
    assert lines[2] == "2"
    followed = [path for path in lines[3:] if "/requests/" in path]
    assert followed and all(path.startswith("/fal-ai/flux-1/requests/") for path in followed), followed


def test_an_aggregator_page_that_states_no_output_is_refused(tree: Path, capsys: pytest.CaptureFixture[str]) -> None:
    page = (FIXTURES / "flux-pro-kontext-text-to-image__kkiai.page.txt").read_text()
    page = page.replace("fal-ai/flux-pro/kontext/text-to-image", FLUX_DEV).replace(
        "image_urls | array[string] | Optional |\n", ""
    )
    (tree / "specs" / "sources" / "flux-1-dev__kkiai.page.txt").write_text(page)
    before = {str(p): p.read_bytes() for p in tree.rglob("*") if p.is_file()}

    assert _make(tree) == 1
    err = capsys.readouterr().err
    assert f"{FLUX_DEV}: no source states its output (flux-1-dev__kkiai.page.txt describe only its input)" in err
    assert "nothing written" in err
    assert {str(p): p.read_bytes() for p in tree.rglob("*") if p.is_file()} == before


# --- every format, every stated fact, and a narrowed range reported -----------------------------------------------

PNG_URI = "data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg=="

# (document, how to make it the only source of an endpoint of its own, the endpoint, a field, its stated range,
# the range narrowed). Aggregator pages describe no output: their endpoint declares the output it shares.
FORMATS = [
    pytest.param(
        SOURCES / "flux-pro-kontext__fal.openapi.json",
        None,
        "fal-ai/flux-pro/kontext",
        "num_images",
        ('"maximum": 4', '"maximum": 2'),
        id="fal-queue-openapi",
    ),
    pytest.param(
        FIXTURES / "flux-kontext-dev__fal.llms.md",
        None,
        KONTEXT_DEV,
        "num_inference_steps",
        ("Range: `10` to `50`", "Range: `10` to `40`"),
        id="llms-txt",
    ),
    pytest.param(
        FIXTURES / "flux-kontext-dev__fal.fal-doc.md",
        None,
        KONTEXT_DEV,
        "guidance_scale",
        ("Range: `1` to `20`", "Range: `1` to `19`"),
        id="fal-doc-tabs",  # its image_size is fal's ImageSize, which fal's OpenAPI of FLUX.1 [dev] defines
    ),
    pytest.param(
        FIXTURES / "flux-pro-kontext-text-to-image__kkiai.page.txt",
        "fal-ai/flux-pro/kontext/lite",
        "fal-ai/flux-pro/kontext/lite",
        "num_images",
        ("Range: 1-4", "Range: 1-2"),
        id="kkiai-table-with-bars",
    ),
    pytest.param(
        SOURCES / "flux-pro-kontext-max-multi__kkiai.page.txt",
        "fal-ai/flux-pro/kontext/lite",
        "fal-ai/flux-pro/kontext/lite",
        "num_images",
        ("range: 1-4", "range: 1-2"),
        id="kkiai-glued-table",
    ),
    pytest.param(
        FIXTURES / "flux-pro-kontext-text-to-image__apifoxzh.openapi.yaml",
        "fal-ai/flux-pro/kontext/lite",
        "fal-ai/flux-pro/kontext/lite",
        "num_images",
        ("范围值1-4", "范围值1-2"),
        id="apifox-yaml-chinese",
    ),
]


def _place(tree: Path, document: Path, endpoint: str, retarget: str | None) -> Path:
    """Put `document` in the tree's sources as a source of `endpoint` (retargeted from its own id if asked)."""
    text = document.read_text(encoding="utf-8")
    origin_format = document.name.split("__", 1)[1]
    if retarget is not None:
        own = re.search(r"fal-ai/flux-pro/kontext[\w/-]*", text)
        assert own is not None
        text = text.replace(own.group(0), retarget).replace("image_urls | array[string] | Optional |\n", "")
        shares = tree / "overrides" / "12-shared-schemas.overlay.yaml"
        declaration = shares.read_text()
        marker = '      - "fal-ai/flux-pro/kontext/max/text-to-image"\n'
        shares.write_text(declaration.replace(marker, marker + f'      - "{retarget}"\n', 1))
    target = tree / "specs" / "sources" / f"{'-'.join(endpoint.split('/')[1:])}__{origin_format}"
    target.write_text(text, encoding="utf-8")
    return target


@pytest.mark.parametrize(("document", "retarget", "endpoint", "field", "narrowing"), FORMATS)
def test_every_format_is_read_and_a_narrowed_range_is_breaking(
    tree: Path,
    capsys: pytest.CaptureFixture[str],
    document: Path,
    retarget: str | None,
    endpoint: str,
    field: str,
    narrowing: tuple[str, str],
) -> None:
    placed = _place(tree, document, endpoint, retarget)
    shutil.copy(FIXTURES / "flux-1-dev__fal.openapi.json", tree / "specs" / "sources")  # defines ImageSize
    assert _make(tree) == 0, capsys.readouterr().err
    capsys.readouterr()
    spec = _spec(tree)
    input_schema = spec["paths"][f"/{endpoint}"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    properties = spec["components"]["schemas"][input_schema["$ref"].rsplit("/", 1)[1]]["properties"]
    assert {"minimum", "maximum"} <= set(properties[field]), properties[field]

    old, new = narrowing
    text = placed.read_text(encoding="utf-8")
    assert old in text
    placed.write_text(text.replace(old, new, 1), encoding="utf-8")
    assert _make(tree) == 2
    said = capsys.readouterr().out
    assert f"breaking: POST /{endpoint} request `{field}`: maximum" in said and "(range narrowed)" in said


# --- a document the reader cannot fully understand ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("document", "old", "new", "problem"),
    [
        (FIXTURES / "flux-kontext-dev__fal.llms.md", "  - Range: `10` to `50`", "  - Ranges: `10` to `50`", "Ranges"),
        (SOURCES / "flux-pro-kontext__fal.openapi.json", '"maxLength": 5000', '"maxLenght": 5000', "maxLenght"),
        (
            FIXTURES / "flux-pro-kontext-text-to-image__kkiai.page.txt",
            "num_images | integer | Optional |",
            "num_images | integr | Optional |",
            "integr",
        ),
    ],
)
def test_a_document_not_fully_understood_stops_make_with_file_and_line(
    tree: Path, capsys: pytest.CaptureFixture[str], document: Path, old: str, new: str, problem: str
) -> None:
    text = document.read_text(encoding="utf-8")
    assert old in text
    target = tree / "specs" / "sources" / document.name
    target.write_text(text.replace(old, new, 1), encoding="utf-8")
    before = {str(p): p.read_bytes() for p in tree.rglob("*") if p.is_file()}
    assert _make(tree) == 1
    err = capsys.readouterr().err
    line = text[: text.index(old)].count("\n") + 1
    assert f"{target}:{line}: " in err and problem in err and "nothing written" in err, err
    assert {str(p): p.read_bytes() for p in tree.rglob("*") if p.is_file()} == before
