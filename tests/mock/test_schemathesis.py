"""schemathesis against the emulator over a socket, with the repo's schemathesis.toml: no check may fail.

A small run (few examples) to keep the suite fast; the full CLI run (`schemathesis run specs/openapi.yaml
--checks all`) is documented in docs/emulator.md.
"""

from __future__ import annotations

import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.config import SchemathesisConfig

from fal_kontext.mock import EmulatorConfig, RunningEmulator, run_emulator

ROOT = Path(__file__).resolve().parents[2]
AUTH = {"Authorization": "Key test-key"}

# The repo's settings, with the emulator's test key instead of ${FAL_KEY} (which must not be set in tests: it
# would switch on the live tests).
_settings = tomllib.loads((ROOT / "schemathesis.toml").read_text(encoding="utf-8"))
_settings["headers"] = AUTH
schema = schemathesis.openapi.from_path(ROOT / "specs" / "openapi.yaml", config=SchemathesisConfig.from_dict(_settings))
schema.config.generation.update(max_examples=8)


@pytest.fixture(scope="module")
def emulator() -> Iterator[RunningEmulator]:
    with run_emulator(EmulatorConfig(runners=32, queue_wait=0.02, run_time=0.05)) as running:
        yield running


@schema.parametrize()
@settings(suppress_health_check=list(HealthCheck), deadline=None)
def test_every_operation_follows_the_spec(case: Any, emulator: RunningEmulator) -> None:
    case.call_and_validate(base_url=emulator.base_url, headers=AUTH)


def test_stateful_walks_follow_the_spec() -> None:
    # Hypothesis replays prefixes of earlier walks and requires the same steps to be possible each time; which
    # links are open depends on whether a request has completed, so the walk gets an emulator where every
    # request completes the instant it is submitted. (The other phases above see the queue move with time.)
    with run_emulator(EmulatorConfig(runners=32, queue_wait=0.0, run_time=0.0)) as emulator:
        _walk(emulator)


def _walk(emulator: RunningEmulator) -> None:
    class Workflow(schema.as_state_machine()):  # type: ignore[misc]
        def before_call(self, case: Any) -> None:
            # The [parameters] override of schemathesis.toml is not applied to stateful steps under pytest.
            if case.query and "fal_webhook" in case.query:
                case.query["fal_webhook"] = _settings["parameters"]["query.fal_webhook"]

        def get_call_kwargs(self, case: Any) -> dict[str, Any]:
            return {"base_url": emulator.base_url, "headers": AUTH}

    Workflow.run(settings=settings(max_examples=15, stateful_step_count=6, deadline=None))
