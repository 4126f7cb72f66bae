"""Webhook verification with a locally generated Ed25519 key pair in a JWKS, the way fal signs deliveries."""

from __future__ import annotations

import base64
import hashlib
import json
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from fal_kontext.errors import WebhookVerificationError
from fal_kontext.webhooks import fetch_jwks, parse_webhook, verify_webhook
from tests.client.client_fakes import OUTPUT

NOW = 1_760_000_000


def jwk(key: Ed25519PrivateKey) -> dict[str, str]:
    raw = key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    return {"kty": "OKP", "crv": "Ed25519", "x": base64.urlsafe_b64encode(raw).rstrip(b"=").decode(), "kid": "k1"}


def deliver(key: Ed25519PrivateKey, body: dict[str, Any], *, timestamp: int = NOW) -> tuple[bytes, dict[str, str]]:
    raw = json.dumps(body).encode()
    message = f"req-1\nuser-9\n{timestamp}\n{hashlib.sha256(raw).hexdigest()}".encode()
    headers = {
        "x-fal-webhook-request-id": "req-1",
        "x-fal-webhook-user-id": "user-9",
        "x-fal-webhook-timestamp": str(timestamp),
        "x-fal-webhook-signature": key.sign(message).hex(),
    }
    return raw, headers


KEY = Ed25519PrivateKey.generate()
JWKS = {"keys": [{"kty": "RSA", "n": "x", "e": "AQAB"}, jwk(Ed25519PrivateKey.generate()), jwk(KEY)]}
OK_BODY = {"request_id": "req-1", "gateway_request_id": "gw-2", "status": "OK", "payload": OUTPUT}


def test_a_signed_ok_delivery_gives_the_typed_result() -> None:
    body, headers = deliver(KEY, OK_BODY)
    event = verify_webhook(body, headers, JWKS, now=NOW + 10)
    assert event.ok and event.gateway_request_id == "gw-2"
    assert (
        event.result is not None and event.result.output.to_dict()["seed"] == 42 and event.result.request_id == "req-1"
    )


def test_an_error_delivery_carries_the_field_list() -> None:
    detail = [{"loc": ["body", "prompt"], "msg": "flagged", "type": "content_policy_violation"}]
    body, headers = deliver(
        KEY,
        {"request_id": "req-1", "status": "ERROR", "error": "Invalid status code: 422", "payload": {"detail": detail}},
    )
    event = verify_webhook(body, headers, JWKS, now=NOW)
    assert not event.ok and event.result is None and event.error == "Invalid status code: 422"
    assert event.errors[0].type == "content_policy_violation"


def test_payload_error_is_reported() -> None:
    event = parse_webhook(
        json.dumps({"request_id": "r", "status": "OK", "payload": None, "payload_error": "too big"}).encode()
    )
    assert event.result is None and event.payload_error == "too big"


@pytest.mark.parametrize(
    ("tamper", "words"),
    [
        (lambda body, headers: (body + b" ", headers), "no key"),
        (lambda body, headers: (body, {**headers, "x-fal-webhook-user-id": "someone-else"}), "no key"),
        (lambda body, headers: (body, {k: v for k, v in headers.items() if "signature" not in k}), "missing header"),
        (lambda body, headers: (body, {**headers, "x-fal-webhook-signature": "zz"}), "unreadable"),
    ],
)
def test_tampered_deliveries_are_refused(tamper: Any, words: str) -> None:
    body, headers = tamper(*deliver(KEY, OK_BODY))
    with pytest.raises(WebhookVerificationError, match=words):
        verify_webhook(body, headers, JWKS, now=NOW)


def test_signed_by_another_key_or_stale_is_refused() -> None:
    body, headers = deliver(Ed25519PrivateKey.generate(), OK_BODY)
    with pytest.raises(WebhookVerificationError, match="refetch the JWKS"):
        verify_webhook(body, headers, JWKS, now=NOW)
    body, headers = deliver(KEY, OK_BODY, timestamp=NOW - 301)
    with pytest.raises(WebhookVerificationError, match="replay"):
        verify_webhook(body, headers, JWKS, now=NOW)
    with pytest.raises(WebhookVerificationError, match="no Ed25519 key"):
        verify_webhook(*deliver(KEY, OK_BODY), {"keys": []}, now=NOW)


def test_fetch_jwks() -> None:
    transport = httpx.MockTransport(lambda request: httpx.Response(200, json=JWKS))
    assert fetch_jwks("https://keys.example.test/jwks.json", transport=transport) == JWKS
    broken = httpx.MockTransport(lambda request: httpx.Response(500, text="down"))
    with pytest.raises(WebhookVerificationError, match="could not fetch"):
        fetch_jwks("https://keys.example.test/jwks.json", transport=broken)
