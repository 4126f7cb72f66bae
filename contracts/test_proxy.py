"""`fal-kontext proxy` reports what breaks fal's rules in real traffic: the official fal_client runs through it.

fal_client -> validating proxy (HTTPS, fal_client speaks nothing else) -> mutating proxy (one seeded deviation:
200 while a request is pending) -> the emulator. fal_client does not notice (it never reads the status code of a
status answer); the validating proxy must. Without the deviation it must report nothing.
"""

from __future__ import annotations

import argparse
import io
import os
import subprocess
import sys
from pathlib import Path
from xml.etree import ElementTree

import pytest
import trustme

from contracts.mutations import CONTROLS, MUTATIONS, Mutation, create_proxy
from contracts.serving import serve
from fal_kontext.cli import build_parser
from fal_kontext_emulator import EmulatorConfig, run_emulator
from fal_kontext_emulator.validating_proxy import ValidatingProxy, add_arguments, create_proxy_app

_CLIENT = """
import sys, fal_client
updates = []
output = fal_client.subscribe(
    "fal-ai/flux-pro/kontext", arguments={"prompt": "a prompt", "image_url": sys.argv[1]}, with_logs=True,
    on_queue_update=lambda update: updates.append(type(update).__name__),
)
assert output["images"] and updates[-1] == "Completed", (output, updates)
"""


def _image() -> str:
    import base64

    from PIL import Image as PILImage

    buffer = io.BytesIO()
    PILImage.new("RGB", (16, 16), "teal").save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    folder = tmp_path_factory.mktemp("tls")
    authority = trustme.CA()
    certificate = authority.issue_cert("127.0.0.1")
    certificate.cert_chain_pems[0].write_to_path(str(folder / "cert.pem"))
    certificate.private_key_pem.write_to_path(str(folder / "key.pem"))
    authority.cert_pem.write_to_path(str(folder / "ca.pem"))
    return {name: str(folder / f"{name}.pem") for name in ("cert", "key", "ca")}


def _fal_client_through(mutation: Mutation, tls: dict[str, str], out: io.StringIO) -> ValidatingProxy:
    # Queue and run times long enough that fal_client's polls (every 0.1 s) see the request pending.
    with (
        run_emulator(EmulatorConfig(queue_wait=0.3, run_time=0.5)) as emulator,
        serve(create_proxy(emulator.base_url, mutation)) as relay,
    ):
        proxy = ValidatingProxy(relay, out=out)
        with serve(create_proxy_app(proxy), certfile=tls["cert"], keyfile=tls["key"]) as url:
            env = {
                **os.environ,
                "FAL_QUEUE_RUN_HOST": url.removeprefix("https://"),
                "FAL_KEY": emulator.key,
                "SSL_CERT_FILE": tls["ca"],
            }
            done = subprocess.run(
                [sys.executable, "-c", _CLIENT, _image()],
                check=False, env=env, capture_output=True, text=True, timeout=120,
            )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    return proxy


def test_a_seeded_deviation_is_reported_while_fal_client_runs_through(tls: dict[str, str], tmp_path: Path) -> None:
    out = io.StringIO()
    proxy = _fal_client_through(MUTATIONS["ok_while_pending"], tls, out)
    printed = out.getvalue()
    assert "VIOLATION GET /fal-ai/flux-pro/requests/" in printed and "[status-code]" in printed, printed
    assert "HTTP 200 with status IN_" in printed
    report = tmp_path / "reports" / "proxy.xml"
    proxy.write_junit(report)
    suite = ElementTree.parse(report).getroot()
    assert int(suite.get("failures", "0")) >= 1 and suite.find("testcase/failure") is not None
    assert {e.operation_id for e in proxy.exchanges} >= {
        "submit_flux_pro_kontext",
        "get_request_status",
        "get_request_result",
    }


def test_correct_traffic_is_not_reported(tls: dict[str, str]) -> None:
    out = io.StringIO()
    proxy = _fal_client_through(CONTROLS["identity"], tls, out)
    assert out.getvalue() == "" and all(not e.violations for e in proxy.exchanges)
    assert len(proxy.exchanges) >= 3


def test_the_cli_has_the_proxy_command() -> None:
    args = build_parser().parse_args(["proxy"])
    assert args.command == "proxy"  # its options are parsed by fal_kontext_emulator.validating_proxy when it runs
    parser = argparse.ArgumentParser(prog="fal-kontext proxy")
    add_arguments(parser)
    options = parser.parse_args(["--upstream", "https://queue.fal.run", "--port", "0"])
    assert options.upstream == "https://queue.fal.run" and options.port == 0
