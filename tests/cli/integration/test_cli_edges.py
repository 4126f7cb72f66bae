"""The command line's edges against the emulator: what a person sees when a batch line changed, when a submit's
answer is lost and the job is looked for (and Ctrl-C then), on bad usage, a busy port, a directory given as an image,
and a server whose certificate does not verify."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
import trustme

from fal_kontext.cli.exit_codes import EXIT_INTERRUPTED, EXIT_UNAVAILABLE, EXIT_USAGE
from tests.support.command_line import interrupt, json_lines, run_cli
from tests.support.emulator import EmulatorConfig, RunningEmulator, run_emulator

# --- batch: a line changed since the journal ----------------------------------------------------------------------


def test_a_changed_batch_line_is_one_problem_and_nothing_is_planned(
    env: dict[str, str], emulator: RunningEmulator, image: Path, tmp_path: Path
) -> None:
    manifest = tmp_path / "jobs.jsonl"
    lines = [{"id": f"job-{n}", "prompt": f"edit {n}", "image": str(image)} for n in range(2)]
    manifest.write_text("".join(json.dumps(line) + "\n" for line in lines))
    out = tmp_path / "out"
    assert run_cli(["batch", str(manifest), "--out", str(out)], env).returncode == 0
    lines[1]["prompt"] = "a changed edit"
    manifest.write_text("".join(json.dumps(line) + "\n" for line in lines))
    emulator.reset_counters()
    done = run_cli(["batch", str(manifest), "--out", str(out)], env)
    assert done.returncode == EXIT_USAGE
    [event] = json_lines(done.stdout)  # the error, and no plan before it
    assert event["event"] == "error" and "1 problem(s)" in str(event["message"])
    assert "line 2: id 'job-1' changed" in str(event["message"]) and "Use a new output folder" in done.stderr
    assert "estimated cost" not in done.stderr and emulator.counters()["calls"] == {}


# --- a submit's answer lost: the lookup, seen ----------------------------------------------------------------------


@pytest.fixture
def losing(emulator: RunningEmulator) -> Iterator[RunningEmulator]:
    """The emulator answering the next submit with a 503 before queuing it (docs/emulator.md's own example)."""
    emulator.clear_faults()
    emulator.add_fault("submit=503,ok")
    try:
        yield emulator
    finally:
        emulator.clear_faults()


def test_a_lookup_is_shown_and_logged(losing: RunningEmulator, env: dict[str, str], image: Path) -> None:
    done = run_cli(["-v", "--absent-after", "0.5", "edit", "a prompt", str(image)], env)
    assert done.returncode == 0, done.stderr
    events = json_lines(done.stdout)
    looking = next(e for e in events if e["event"] == "looking_up")
    message = "answer lost (server error); looking for the job in the request list, up to 150 s"
    assert looking["message"] == message and events[-1]["event"] == "result"
    assert f"INFO fal_kontext: submit to fal-ai/flux-pro/kontext: {message}" in done.stderr  # -v: the log record


@pytest.fixture(scope="module")
def pending_list() -> Iterator[RunningEmulator]:
    """An emulator whose request list shows nothing for a while: a lookup goes on until Ctrl-C."""
    config = EmulatorConfig(run_time=0.2, queue_wait=0.05, keepalive_interval=1.0, request_list_delay=600.0)
    with run_emulator(config) as running:
        yield running


@pytest.mark.parametrize(("fault", "names_the_id"), [("503-noid", False), ("lost:503", True)])
def test_ctrl_c_during_a_lookup_says_the_job_may_exist(
    pending_list: RunningEmulator, env: dict[str, str], image: Path, fault: str, names_the_id: bool
) -> None:
    pending_list.add_fault(f"submit={fault},ok")
    args = ["--base-url", pending_list.base_url, "edit", "a prompt", str(image)]
    code, screen = interrupt(args, env, b"looking for the job in the request list")
    pending_list.clear_faults()
    assert code == EXIT_INTERRUPTED, screen
    assert "up to 150 s" in screen and "may have queued a job" in screen and "not sent again" in screen
    flat = " ".join(screen.split())
    if names_the_id:
        assert "check it with `fal-kontext status " in flat and "Kontext.handle" not in flat
    else:
        assert "/v1/models/requests/by-endpoint?endpoint_id=fal-ai/flux-pro/kontext" in flat


# --- inputs and servers that cannot be used ------------------------------------------------------------------------


def test_a_directory_as_the_image_says_it_is_one(env: dict[str, str], tmp_path: Path) -> None:
    done = run_cli(["edit", "a prompt", str(tmp_path)], env)
    assert done.returncode == EXIT_USAGE
    assert f"IMAGE: '{tmp_path}' is a directory, not an image file" in done.stderr, done.stderr


@pytest.fixture(scope="module")
def self_signed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningEmulator]:
    """The emulator over HTTPS with a certificate no one trusts, as a self-signed server's."""
    certificate = trustme.CA().issue_cert("127.0.0.1")
    folder = tmp_path_factory.mktemp("tls")
    certfile, keyfile = folder / "cert.pem", folder / "key.pem"
    certificate.cert_chain_pems[0].write_to_path(str(certfile))
    certificate.private_key_pem.write_to_path(str(keyfile))
    with run_emulator(EmulatorConfig(), certfile=str(certfile), keyfile=str(keyfile)) as running:
        yield running


def test_a_certificate_that_does_not_verify_is_not_retried_and_names_the_fix(
    self_signed: RunningEmulator, env: dict[str, str]
) -> None:
    done = run_cli(["-v", "--base-url", self_signed.base_url, "status", "request-1"], env)
    assert done.returncode == EXIT_UNAVAILABLE
    [event] = json_lines(done.stdout)
    assert "SSL_CERT_FILE" in str(event["message"]) and "verify=" in str(event["message"])
    assert "retrying" not in done.stderr  # -v logs every retry: there is none


# --- usage errors: one style -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("argv", "words"),
    [
        (["edit"], "edit: the following arguments are required: PROMPT, IMAGE (see: fal-kontext edit --help)"),
        (
            ["edit", "a prompt", "in.png", "--num-images", "two"],
            "edit: argument --num-images: invalid int value: 'two'",
        ),
        (["edit", "a prompt", "in.png", "--no-such-flag"], "unrecognized arguments: --no-such-flag"),
        (["bogus"], "argument COMMAND: invalid choice: 'bogus'"),
        (["mock", "--runners", "x"], "mock: argument --runners: invalid int value: 'x'"),
        (
            ["edit", "a prompt", "in.png", "--num-images", "9"],
            "--num-images: 9 is out of range",
        ),  # a range error, as before
    ],
)
def test_every_usage_error_is_one_line_and_a_json_line(
    argv: list[str], words: str, env: dict[str, str], image: Path
) -> None:
    done = run_cli([str(image) if arg == "in.png" else arg for arg in argv], env)
    assert done.returncode == EXIT_USAGE
    [line] = done.stderr.splitlines()  # no usage block
    assert line.startswith("fal-kontext: error: ") and words in line, line
    [event] = json_lines(done.stdout)  # piped: the JSON line
    assert event["event"] == "error" and event["exit_code"] == EXIT_USAGE and words in str(event["message"])


def test_a_busy_port_is_a_usage_error_in_the_command_s_words(env: dict[str, str]) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = run_cli(["mock", "--port", str(port)], env)
    assert done.returncode == EXIT_USAGE
    message = f"mock: cannot listen on 127.0.0.1:{port}: the port is in use"
    assert done.stderr.startswith(f"fal-kontext: error: {message}") and "Errno" not in done.stderr, done.stderr
    assert message in str(json_lines(done.stdout)[-1]["message"])
