"""More than one fal app: every endpoint's requests live under its own app, and the contract holds for each.

The committed spec has one app (`fal-ai/flux-pro`). Here the spec is built, as `make` builds it, from the committed
sources plus fal's documents of two endpoints of other apps (FLUX.1 Kontext [dev] under `fal-ai/flux-kontext`,
FLUX.1 [dev] under `fal-ai/flux-1`; the pipeline tests' fixtures), and the emulator serves that spec: schemathesis
walks its links (each submit linked to its own app's status, stream, result and cancel) and every answer is checked
against the spec; a direct probe asks each request under its own app and under another one.
"""

from __future__ import annotations

import shutil
import tomllib
from pathlib import Path
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from jsonschema import Draft4Validator  # type: ignore[import-untyped]
from normaliser.pipeline import normalise
from schemathesis.config import SchemathesisConfig

from fal_kontext_emulator import EmulatorConfig, create_app
from fal_kontext_emulator.spec_document import to_json_schema

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "tests" / "spec" / "fixtures"
KEY = "test-key"
PNG_URI = "data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg=="
pytestmark = pytest.mark.anyio
SETTINGS = tomllib.loads((ROOT / "schemathesis.toml").read_text(encoding="utf-8"))
SETTINGS.pop("headers", None)


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="module")
def spec_of_three_apps(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    sources = tmp_path_factory.mktemp("sources")
    for path in (ROOT / "specs" / "sources").iterdir():
        shutil.copy(path, sources)
    for name in ("flux-kontext-dev__fal.llms.md", "flux-1-dev__fal.openapi.json"):
        shutil.copy(FIXTURES / name, sources)
    document: dict[str, Any] = normalise(sources, ROOT / "overrides").document
    return document


def _endpoints(document: dict[str, Any]) -> list[dict[str, Any]]:
    return [item["post"]["x-fal-endpoint"] for item in document["paths"].values() if "post" in item]


def _body(document: dict[str, Any], endpoint: dict[str, Any]) -> dict[str, Any]:
    body: dict[str, Any] = {"prompt": "a lighthouse at dusk"}
    if endpoint.get("image_field") == "image_urls":
        body["image_urls"] = [PNG_URI]
    elif endpoint.get("image_field"):
        body[endpoint["image_field"]] = PNG_URI
    return body


async def test_each_request_lives_under_its_own_app_only(spec_of_three_apps: dict[str, Any]) -> None:
    document = spec_of_three_apps
    endpoints = _endpoints(document)
    apps = sorted({endpoint["app"] for endpoint in endpoints})
    assert apps == ["fal-ai/flux-1", "fal-ai/flux-kontext", "fal-ai/flux-pro"]
    app = create_app(EmulatorConfig(run_time=0.0, queue_wait=0.0), spec=document)
    schemas = to_json_schema(document)["components"]["schemas"]
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://testserver", headers={"Authorization": f"Key {KEY}"}
    ) as client:
        for endpoint in endpoints:
            submitted = await client.post(f"/{endpoint['id']}", json=_body(document, endpoint))
            assert submitted.status_code == 200, (endpoint["id"], submitted.text)
            request_id = submitted.json()["request_id"]
            assert submitted.json()["status_url"].endswith(f"/{endpoint['app']}/requests/{request_id}/status")
            for other in apps:
                status = await client.get(f"/{other}/requests/{request_id}/status")
                expected = (200, 202) if other == endpoint["app"] else (404,)
                assert status.status_code in expected, (endpoint["id"], other, status.status_code)
            for _ in range(50):  # the emulator's clock is real here: the job ends within its zero run time
                if (await client.get(f"/{endpoint['app']}/requests/{request_id}/status")).status_code == 200:
                    break
            result = await client.get(f"/{endpoint['app']}/requests/{request_id}")
            assert result.status_code == 200, result.text
            output = {**schemas[endpoint["output_schema"]], "components": {"schemas": schemas}}
            assert list(Draft4Validator(output).iter_errors(result.json())) == [], endpoint["id"]


@pytest.mark.parametrize("app", ["fal-ai/flux-pro", "fal-ai/flux-kontext", "fal-ai/flux-1"])
def test_the_stateful_walk_follows_each_submit_to_its_own_app(spec_of_three_apps: dict[str, Any], app: str) -> None:
    submit = next(e for e in _endpoints(spec_of_three_apps) if e["app"] == app)
    # The walk starts at one endpoint of the app (the only submit left in the document) and goes where its links
    # lead: the queue's operations, whose paths hold no app of their own.
    paths = {
        path: item
        for path, item in spec_of_three_apps["paths"].items()
        if path == f"/{submit['id']}" or "post" not in item
    }
    document = {**spec_of_three_apps, "paths": paths}
    schema = schemathesis.openapi.from_dict(document, config=SchemathesisConfig.from_dict(SETTINGS))
    schema.app = create_app(EmulatorConfig(run_time=0.0, queue_wait=0.0), spec=document)
    webhook = SETTINGS["parameters"]["query.fal_webhook"]
    followed: set[str] = set()

    class Lifecycle(schema.as_state_machine()):  # type: ignore[misc]
        def before_call(self, case: Any) -> None:
            if case.query and "fal_webhook" in case.query:
                case.query["fal_webhook"] = webhook
            if isinstance(case.body, dict) and isinstance(case.body.get("image_url"), str):
                case.body["image_url"] = PNG_URI  # an image the emulator can read, so that the walk goes on

        def get_call_kwargs(self, case: Any) -> dict[str, Any]:
            # Credentials as a call argument: set in the config, the stateful phase judges them generated
            # (schemathesis' ignored_auth check then fails a server that rightly accepts them).
            return {"headers": {"Authorization": f"Key {KEY}"}}

        def after_call(self, response: Any, case: Any) -> None:
            super().after_call(response, case)
            path = case.path_parameters or {}
            if "owner" in path and "app" in path and response.status_code < 400:
                followed.add(f"{path['owner']}/{path['app']}")

    Lifecycle.run(
        settings=settings(
            max_examples=30,
            stateful_step_count=3,
            deadline=None,
            suppress_health_check=list(HealthCheck),
            derandomize=True,
        )
    )
    assert app in followed, followed
