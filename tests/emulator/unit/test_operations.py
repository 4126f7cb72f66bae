"""Routes and validation come from the spec itself: change the spec and the emulator follows."""

from __future__ import annotations

import copy

from fal_kontext_emulator.operations import build_routes
from fal_kontext_emulator.spec_document import load_spec, to_json_schema


def test_nullable_becomes_a_null_type_and_enum_member() -> None:
    schema = {"type": "object", "properties": {"n": {"type": "integer", "nullable": True, "enum": [1, 2]}}}
    assert to_json_schema(schema) == {
        "type": "object",
        "properties": {"n": {"type": ["integer", "null"], "enum": [1, 2, None]}},
    }


def test_every_spec_operation_is_routed_with_and_without_a_trailing_slash() -> None:
    routes = build_routes()
    spec = load_spec()
    assert {op.operation_id for op in routes.operations} == {
        op["operationId"] for item in spec["paths"].values() for op in item.values() if "operationId" in op
    }
    operation, params = routes.match("GET", "/fal-ai/flux-pro/requests/abc/status/")
    assert operation is not None
    assert (operation.operation_id, params) == (
        "get_request_status",
        {"owner": "fal-ai", "app": "flux-pro", "request_id": "abc"},
    )
    assert routes.match("POST", "/fal-ai/flux-pro/requests/abc/status") == (None, ["GET"])
    assert routes.match("GET", "/fal-ai/flux-pro/elsewhere") == (None, [])


def test_the_full_endpoint_path_form_fixes_the_endpoints_app() -> None:
    operation, params = build_routes().match("GET", "/fal-ai/flux-pro/kontext/max/requests/abc/status")
    assert operation is not None
    assert (operation.operation_id, params) == (
        "get_request_status",
        {"owner": "fal-ai", "app": "flux-pro", "request_id": "abc"},
    )


def test_validation_follows_the_spec_it_is_given() -> None:
    spec = load_spec()
    body = {"prompt": "a prompt", "image_url": "x", "num_images": 6}
    [operation] = [op for op in build_routes(spec).operations if op.operation_id == "submit_flux_pro_kontext"]
    assert [problem.loc for problem in operation.check_body(body)] == [("body", "num_images")]
    relaxed = copy.deepcopy(spec)
    relaxed["components"]["schemas"]["KontextInput"]["properties"]["num_images"]["maximum"] = 8
    [operation] = [op for op in build_routes(relaxed).operations if op.operation_id == "submit_flux_pro_kontext"]
    assert operation.check_body(body) == []


def test_header_parameters_are_coerced_from_strings_before_validation() -> None:
    [operation] = [op for op in build_routes().operations if op.operation_id == "submit_flux_pro_kontext"]
    values, problems = operation.check_parameters(
        {}, {}, {"x-fal-request-timeout": "2.5", "x-fal-queue-priority": "low"}
    )
    assert problems == []
    assert values == {"X-Fal-Request-Timeout": 2.5, "X-Fal-Queue-Priority": "low"}
    _, problems = operation.check_parameters({}, {}, {"x-fal-request-timeout": "0.1"})
    assert [(problem.loc, problem.type) for problem in problems] == [
        (("header", "X-Fal-Request-Timeout"), "greater_than")
    ]
