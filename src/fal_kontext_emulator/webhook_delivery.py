"""Webhook signing and delivery, as fal does it (https://docs.fal.ai/model-apis/model-endpoints/webhooks).

Each delivery is a POST of fal's payload with four headers: `X-Fal-Webhook-Request-Id`, `-User-Id`,
`-Timestamp` (Unix seconds) and `-Signature`, the hex ED25519 signature of
`request_id \\n user_id \\n timestamp \\n sha256_hex(body)`. The public key is published as a JWKS (fal's is at
https://rest.alpha.fal.ai/.well-known/jwks.json; the emulator's at `<base>/.well-known/jwks.json`).
"""

from __future__ import annotations

import base64
import hashlib
import json
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass
from typing import Any

import httpx
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat, PublicFormat

JWKS_PATH = "/.well-known/jwks.json"
_KEY_ID = "fal-kontext-emulator"
_KEPT_DELIVERIES = 1000


def signing_message(request_id: str, user_id: str, timestamp: str, body: bytes) -> bytes:
    """The bytes fal signs for a webhook delivery."""
    return "\n".join([request_id, user_id, timestamp, hashlib.sha256(body).hexdigest()]).encode()


class WebhookSigner:
    """Holds the emulator's ED25519 key: signs deliveries and publishes the public half as a JWKS."""

    def __init__(self, private_key: Ed25519PrivateKey | None = None) -> None:
        self._key = private_key or Ed25519PrivateKey.generate()

    @classmethod
    def from_bytes(cls, raw: bytes) -> WebhookSigner:
        """Rebuild a signer from `private_bytes()` (the state file keeps the key across restarts)."""
        return cls(Ed25519PrivateKey.from_private_bytes(raw))

    def private_bytes(self) -> bytes:
        """The raw 32-byte private key."""
        return self._key.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption())

    @property
    def public_key(self) -> Ed25519PublicKey:
        """The key receivers verify with."""
        return self._key.public_key()

    def jwks(self) -> dict[str, Any]:
        """The public key as a JSON Web Key Set (RFC 8037 OKP key)."""
        raw = self.public_key.public_bytes(Encoding.Raw, PublicFormat.Raw)
        x = base64.urlsafe_b64encode(raw).rstrip(b"=").decode()
        return {"keys": [{"kty": "OKP", "crv": "Ed25519", "x": x, "kid": _KEY_ID, "alg": "EdDSA", "use": "sig"}]}

    def headers(self, request_id: str, user_id: str, body: bytes, timestamp: float | None = None) -> dict[str, str]:
        """The four signature headers of a delivery of `body`."""
        stamp = str(int(time.time() if timestamp is None else timestamp))
        signature = self._key.sign(signing_message(request_id, user_id, stamp, body)).hex()
        return {
            "X-Fal-Webhook-Request-Id": request_id,
            "X-Fal-Webhook-User-Id": user_id,
            "X-Fal-Webhook-Timestamp": stamp,
            "X-Fal-Webhook-Signature": signature,
        }


@dataclass(frozen=True)
class DeliveryAttempt:
    """One POST to a webhook receiver and how it went."""

    request_id: str
    url: str
    attempt: int
    status_code: int | None
    error: str | None
    at: float

    def as_json(self) -> dict[str, Any]:
        """The attempt as the admin API shows it."""
        return asdict(self)


class WebhookSender:
    """Delivers payloads with retries: attempt n+1 waits `retry_delay * 2**(n-1)` seconds; any 2xx ends it."""

    def __init__(
        self,
        signer: WebhookSigner,
        *,
        attempts: int,
        retry_delay: float,
        timeout: float,
        sleep: Callable[[float], Awaitable[None]],
    ) -> None:
        self.signer = signer
        self._attempts = attempts
        self._retry_delay = retry_delay
        self._timeout = timeout
        self._sleep = sleep
        self.deliveries: deque[DeliveryAttempt] = deque(maxlen=_KEPT_DELIVERIES)

    async def deliver(self, url: str, request_id: str, user_id: str, payload: dict[str, Any]) -> bool:
        """POST `payload` to `url` until a 2xx or the attempts run out; True when it was delivered."""
        body = json.dumps(payload, separators=(",", ":")).encode()
        # trust_env=False: a proxy from the environment must never carry a loopback delivery off the machine.
        async with httpx.AsyncClient(timeout=self._timeout, trust_env=False) as client:
            for attempt in range(1, self._attempts + 1):
                headers = {"Content-Type": "application/json", **self.signer.headers(request_id, user_id, body)}
                status_code: int | None = None
                error: str | None = None
                try:
                    response = await client.post(url, content=body, headers=headers)
                    status_code = response.status_code
                except httpx.HTTPError as err:
                    error = f"{type(err).__name__}: {err}"
                self.deliveries.append(DeliveryAttempt(request_id, url, attempt, status_code, error, time.time()))
                if status_code is not None and 200 <= status_code < 300:
                    return True
                if attempt < self._attempts:
                    await self._sleep(self._retry_delay * 2 ** (attempt - 1))
        return False
