"""Webhook signing: fal's message layout, ED25519 signatures verifiable with the published JWKS, a key that can be
saved and restored."""

from __future__ import annotations

import hashlib

from fal_kontext_emulator.webhook_delivery import WebhookSigner, signing_message
from tests.emulator.conftest import jwks_public_key


def test_signature_covers_ids_timestamp_and_body_hash() -> None:
    signer = WebhookSigner()
    headers = signer.headers("rid", "uid", b"{}", timestamp=1700000000)
    assert headers["X-Fal-Webhook-Timestamp"] == "1700000000"
    message = signing_message("rid", "uid", "1700000000", b"{}")
    assert message == f"rid\nuid\n1700000000\n{hashlib.sha256(b'{}').hexdigest()}".encode()
    jwks_public_key(signer.jwks()).verify(bytes.fromhex(headers["X-Fal-Webhook-Signature"]), message)
    again = WebhookSigner.from_bytes(signer.private_bytes())
    assert again.jwks() == signer.jwks()
