"""Options and fixtures of the contract suite: which server, which credentials, what it may cost.

    pytest contracts                                    # the local emulator (what `make test` runs)
    pytest contracts --contract-base-url https://queue.fal.run          # live fal, FAL_KEY from the env
    pytest contracts --contract-base-url https://proxy.example --contract-auth bearer   # FAL_KONTEXT_TOKEN
    pytest contracts --contract-base-url http://127.0.0.1:8770 --contract-free-server   # a server that costs nothing

Each option can also come from the environment: CONTRACT_BASE_URL, CONTRACT_AUTH, CONTRACT_MAX_PAID_CALLS,
CONTRACT_ENDPOINT, CONTRACT_FREE_SERVER=1.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import pytest
import yaml

from contracts.conformance import SPEC_PATH
from contracts.paid_job import RequestIds
from contracts.summary import STATS
from contracts.target import (
    DEFAULT_ENDPOINT,
    DEFAULT_MAX_PAID_CALLS,
    ContractTarget,
    PaidCallBudget,
    remote_secret,
)

if TYPE_CHECKING:
    from fal_kontext_emulator import EmulatorConfig, RunningEmulator


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("fal-kontext contracts")
    group.addoption(
        "--contract-base-url",
        default=os.environ.get("CONTRACT_BASE_URL") or None,
        help="check this fal-compatible server instead of the local emulator (env CONTRACT_BASE_URL)",
    )
    group.addoption(
        "--contract-auth",
        choices=["key", "bearer"],
        default=os.environ.get("CONTRACT_AUTH", "key"),
        help="key: Authorization: Key $FAL_KEY (fal); bearer: Authorization: Bearer $FAL_KONTEXT_TOKEN (aggregators)",
    )
    group.addoption(
        "--max-paid-calls",
        type=int,
        default=int(os.environ.get("CONTRACT_MAX_PAID_CALLS", DEFAULT_MAX_PAID_CALLS)),
        help=f"most submits to a remote server in one run (default {DEFAULT_MAX_PAID_CALLS}); each may be billed",
    )
    group.addoption(
        "--contract-emulator-defect",
        action="append",
        default=[],
        help="TEST ONLY: start the emulator with this seeded defect (see contracts/test_seeded_defects.py)",
    )
    group.addoption(
        "--require-live",
        action="store_true",
        default=os.environ.get("REQUIRE_LIVE", "") not in ("", "0"),
        help="fail, not skip, when the remote server's credentials are missing (env REQUIRE_LIVE=1; scheduled CI)",
    )
    group.addoption(
        "--contract-free-server",
        action="store_true",
        default=os.environ.get("CONTRACT_FREE_SERVER", "") not in ("", "0"),
        help="the remote server costs nothing (a sandbox, a local reference server): submits are fuzzed and the "
        "stateful walk and the client scenarios run there too, with no paid-call budget (env CONTRACT_FREE_SERVER=1)",
    )
    group.addoption(
        "--contract-second-key",
        default=os.environ.get("CONTRACT_SECOND_KEY") or None,
        help="another key (same auth scheme) of the remote server: checks that it cannot see the first key's "
        "requests (env CONTRACT_SECOND_KEY); without it that check is skipped",
    )
    group.addoption(
        "--contract-distinct-schemas",
        action="store_true",
        default=False,
        help="fuzz only the first operation of each request schema (the others are the same input on another path)",
    )
    group.addoption(
        "--contract-boundaries",
        action="store_true",
        default=os.environ.get("CONTRACT_BOUNDARIES", "") not in ("", "0"),
        help="also send every boundary value the spec allows (enum values, range ends), one job each, and report "
        "those the server refuses; on a paid server needs --confirm-cost (env CONTRACT_BOUNDARIES=1)",
    )
    group.addoption(
        "--contract-two-images",
        action="store_true",
        default=os.environ.get("CONTRACT_TWO_IMAGES", "") not in ("", "0"),
        help="the rules probe's paid job asks for 2 images (the server must return 2, with 2 NSFW flags); it costs "
        "one image more and needs --confirm-cost covering the job (env CONTRACT_TWO_IMAGES=1); free servers always",
    )
    group.addoption(
        "--contract-cancel",
        action="store_true",
        default=os.environ.get("CONTRACT_CANCEL", "") not in ("", "0"),
        help="the rules probe also cancels one pending job and follows it to its end (one more paid job: needs "
        "--max-paid-calls 3 and --confirm-cost covering one image; env CONTRACT_CANCEL=1); free servers always",
    )
    group.addoption(
        "--confirm-cost",
        type=float,
        default=float(os.environ.get("CONTRACT_CONFIRM_COST", "0") or 0),
        help="USD you accept to spend on each opt-in priced check (the boundary run, the two-image job); one whose "
        "computed cost is higher is not sent (env CONTRACT_CONFIRM_COST)",
    )
    group.addoption(
        "--contract-endpoint",
        default=os.environ.get("CONTRACT_ENDPOINT", DEFAULT_ENDPOINT),
        help=f"endpoint the paid lifecycle check uses (default {DEFAULT_ENDPOINT}, the cheapest)",
    )


def pytest_configure(config: pytest.Config) -> None:
    spec = yaml.safe_load(SPEC_PATH.read_text(encoding="utf-8"))
    STATS.all_operations = {
        op["operationId"]
        for item in spec["paths"].values()
        for op in item.values()
        if isinstance(op, dict) and "operationId" in op
    }


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
    if not (STATS.cases or STATS.exchanges or STATS.paid or STATS.mutations):
        return
    failures = len(terminalreporter.stats.get("failed", [])) + len(terminalreporter.stats.get("error", []))
    terminalreporter.section("contract summary")
    target = config.getoption("--contract-base-url") or "the local emulator"
    terminalreporter.write_line(f"server: {target}")
    for line in STATS.lines(failures):
        terminalreporter.write_line(line)


@contextlib.contextmanager
def local_emulator(request: pytest.FixtureRequest, config: EmulatorConfig) -> Iterator[RunningEmulator]:
    """The emulator with `config` on a free loopback port, with the seeded defects that `--contract-emulator-defect`
    names applied around it (contracts/seeded_defects.py)."""
    from contracts.seeded_defects import seeded_app
    from fal_kontext_emulator import run_emulator

    defects = request.config.getoption("--contract-emulator-defect")
    with run_emulator(config, app=seeded_app(config, defects) if defects else None) as emulator:
        yield emulator


@pytest.fixture(scope="session")
def contract_target(request: pytest.FixtureRequest) -> Iterator[ContractTarget]:
    """The server under test: a remote one when a base URL is given, else a local emulator started here."""
    base_url = request.config.getoption("--contract-base-url")
    endpoint = request.config.getoption("--contract-endpoint")
    if request.config.getoption("--require-live") and not base_url:
        pytest.fail("--require-live needs --contract-base-url (BASE_URL=...): a live server to check", pytrace=False)
    if base_url:
        auth = request.config.getoption("--contract-auth")
        secret, variable = remote_secret(auth)
        if secret is None:
            missing = f"{base_url} needs credentials: set {variable} (auth {auth}); no live call was made"
            if request.config.getoption("--require-live"):
                pytest.fail(f"{missing} (--require-live: a missing secret is a failure)", pytrace=False)
            pytest.skip(missing)
        yield ContractTarget(base_url.rstrip("/"), auth, secret, remote=True, endpoint=endpoint)
        return
    from fal_kontext_emulator import EmulatorConfig

    with local_emulator(request, EmulatorConfig(runners=32, queue_wait=0.02, run_time=0.05)) as emulator:
        yield ContractTarget(
            emulator.base_url, "key", emulator.key, remote=False, endpoint=endpoint, verify=emulator.verify
        )


def is_free(config: pytest.Config) -> bool:
    """Whether submits cost nothing: the local emulator, or a remote server declared free."""
    return not config.getoption("--contract-base-url") or bool(config.getoption("--contract-free-server"))


@pytest.fixture(scope="session")
def free_server(request: pytest.FixtureRequest) -> bool:
    """Whether the server under test costs nothing (see `is_free`)."""
    return is_free(request.config)


@pytest.fixture(scope="session")
def lifecycle_target(request: pytest.FixtureRequest, contract_target: ContractTarget) -> Iterator[ContractTarget]:
    """The server for schemathesis' stateful walks: a local emulator whose requests complete at once, or a free
    remote server as it is.

    Hypothesis replays a walk expecting the same links to be open; with real queue and run times a request may
    have completed in one replay and not in the other (FlakyStrategyDefinition), hence the zero-time emulator.
    Paid remote servers are not walked.
    """
    if contract_target.remote:
        if not is_free(request.config):
            pytest.skip("the stateful walk submits many paid jobs: run it against the emulator or a free server")
        yield contract_target
        return
    from fal_kontext_emulator import EmulatorConfig

    with local_emulator(request, EmulatorConfig(queue_wait=0, run_time=0)) as emulator:
        yield ContractTarget(emulator.base_url, "key", emulator.key, remote=False, verify=emulator.verify)


@pytest.fixture(scope="session")
def slow_target(request: pytest.FixtureRequest, contract_target: ContractTarget) -> Iterator[ContractTarget]:
    """A server where a request just submitted is still pending when a scenario cancels it: a local emulator whose
    jobs run 30 s, or a free remote server as it is (a paid one is not asked: the scenario submits a job)."""
    if contract_target.remote:
        if not is_free(request.config):
            pytest.skip("submits a job only to cancel it; run it against the emulator or a free server")
        yield contract_target
        return
    from fal_kontext_emulator import EmulatorConfig

    with local_emulator(request, EmulatorConfig(queue_wait=0, run_time=30.0)) as emulator:
        yield ContractTarget(emulator.base_url, "key", emulator.key, remote=False, verify=emulator.verify)


@pytest.fixture(scope="session")
def paid_calls(request: pytest.FixtureRequest) -> PaidCallBudget:
    """The run's budget of submits to a remote server (the emulator is free: no limit)."""
    paid = not is_free(request.config)
    return PaidCallBudget(limit=request.config.getoption("--max-paid-calls") if paid else 1_000_000)


@pytest.fixture(scope="session")
def request_ids() -> RequestIds:
    """The request ids the run's submits got: the paid jobs (the client's and the probe's) check each is new."""
    return RequestIds()


def pytest_collection_finish(session: pytest.Session) -> None:
    """Start the suite's run against the reference server now, so it overlaps the rest of the session."""
    from contracts.test_reference_server import REFERENCE_RUN, ReferenceRun

    selected = any(item.path.name == "test_reference_server.py" for item in session.items)
    if selected and not session.config.getoption("--contract-base-url") and not session.config.option.collectonly:
        session.config.stash[REFERENCE_RUN] = ReferenceRun()


def pytest_unconfigure(config: pytest.Config) -> None:
    from contracts.test_reference_server import REFERENCE_RUN

    run = config.stash.get(REFERENCE_RUN, None)
    if run is not None:
        run.close()
