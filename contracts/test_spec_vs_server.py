"""Spec against server: schemathesis generates requests from specs/openapi.yaml and checks every answer.

Every built-in check, positive and negative data, the coverage and fuzzing phases per operation, and the
stateful phase, which walks the lifecycle through the spec's links (submit -> status, stream, result,
cancel). The settings are the repository's `schemathesis.toml` (the same file the CLI run reads), where
each expectation changed from schemathesis' defaults carries the fal fact behind it.

Against a remote server, submits are paid jobs: only the free operations (status, stream, result and
cancel of invented request ids) are fuzzed there, and the stateful walk is skipped, unless the server is
declared free (`--contract-free-server`).
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import CHECKS, CheckFunction, load_all_checks
from schemathesis.config import SchemathesisConfig
from schemathesis.specs.openapi.checks import negative_data_rejection

from contracts.conformance import SPEC_PATH
from contracts.summary import STATS
from contracts.target import ContractTarget

ROOT = Path(__file__).resolve().parent.parent
SETTINGS = tomllib.loads((ROOT / "schemathesis.toml").read_text(encoding="utf-8"))
# The toml takes the key from ${FAL_KEY}; here each test passes the target's own credentials instead.
SETTINGS.pop("headers", None)
schema = schemathesis.openapi.from_path(SPEC_PATH, config=SchemathesisConfig.from_dict(SETTINGS))
# CONTRACT_EXAMPLES scales hypothesis' examples per operation (fuzzing) and the stateful walks (2N+1); the
# coverage phase, which derives its cases from the schema, is not affected.
EXAMPLES = int(os.environ.get("CONTRACT_EXAMPLES", "12"))
schema.config.generation.update(max_examples=EXAMPLES)

load_all_checks()
STATS.checks = {check.__name__ for check in CHECKS.get_all()}


def _is_paid(case: Any) -> bool:
    return bool(case.operation.method.upper() == "POST")


def _request_schema(operation: dict[str, Any]) -> str:
    return str(operation.get("requestBody", {}).get("content", {}).get("application/json", {}).get("schema"))


# The first operation of the spec with each request body schema; `--contract-distinct-schemas` fuzzes only these.
_FIRST_WITH_SCHEMA: dict[str, str] = {}
for _item in schema.raw_schema["paths"].values():
    for _operation in _item.values():
        if isinstance(_operation, dict) and "operationId" in _operation:
            _FIRST_WITH_SCHEMA.setdefault(_request_schema(_operation), _operation["operationId"])


# Emulator-only expectations: what the spec allows and the emulator enforces, but fal documents no refusal for, so
# a correct server may accept it. Checked against the local emulator; not held against a remote server.
# - `logs` outside 1/0/true/false on status and stream: fal documents only "null unless you send logs=1"
#   (https://fal.ai/docs/inference-api/queue/status); a server that reads any other value as "no logs" is right.
EMULATOR_ONLY_CHECKS: dict[str, list[CheckFunction]] = {
    "get_request_status": [negative_data_rejection],
    "stream_request_status": [negative_data_rejection],
}


def _excluded(case: Any, target: ContractTarget) -> list[CheckFunction]:
    return EMULATOR_ONLY_CHECKS.get(case.operation.definition.raw["operationId"], []) if target.remote else []


@schema.parametrize()
@settings(suppress_health_check=list(HealthCheck), deadline=None)
def test_every_operation_answers_as_the_spec_says(
    case: Any,
    contract_target: ContractTarget,
    free_server: bool,
    request: pytest.FixtureRequest,
    record_xml_attribute: Any,
) -> None:
    # JUnit names each case by the function only; its node name says which operation (`...[POST /fal-ai/...]`).
    record_xml_attribute("name", request.node.name)
    if not free_server and _is_paid(case):
        pytest.skip(
            "a submit to a remote server is a paid job: not fuzzed (see README, 'Contracts against a live API')"
        )
    raw = case.operation.definition.raw
    if (
        request.config.getoption("--contract-distinct-schemas")
        and _FIRST_WITH_SCHEMA[_request_schema(raw)] != raw["operationId"]
    ):
        pytest.skip("--contract-distinct-schemas: another operation with the same request schema is fuzzed")
    case.call_and_validate(
        base_url=contract_target.base_url,
        headers=contract_target.headers,
        verify=contract_target.verify,
        excluded_checks=_excluded(case, contract_target),
    )
    STATS.record_case(case.operation.definition.raw["operationId"])


def test_lifecycle_walks_follow_the_spec(lifecycle_target: ContractTarget) -> None:
    webhook = SETTINGS["parameters"]["query.fal_webhook"]

    class Lifecycle(schema.as_state_machine()):  # type: ignore[misc]
        def before_call(self, case: Any) -> None:
            # schemathesis.toml's [parameters] override is not applied to stateful steps under pytest.
            if case.query and "fal_webhook" in case.query:
                case.query["fal_webhook"] = webhook

        def get_call_kwargs(self, case: Any) -> dict[str, Any]:
            return {
                "base_url": lifecycle_target.base_url,
                "headers": lifecycle_target.headers,
                "verify": lifecycle_target.verify,
            }

        def after_call(self, response: Any, case: Any) -> None:
            super().after_call(response, case)
            STATS.record_case(case.operation.definition.raw["operationId"])

        def validate_response(self, response: Any, case: Any, additional_checks: Any = None, **kwargs: Any) -> None:
            case.validate_response(
                response,
                additional_checks=additional_checks,
                excluded_checks=_excluded(case, lifecycle_target),
                transport_kwargs=kwargs or None,
                recorder=self.recorder,
            )

    Lifecycle.run(
        settings=settings(
            max_examples=2 * EXAMPLES + 1, stateful_step_count=6, deadline=None, suppress_health_check=list(HealthCheck)
        )
    )
