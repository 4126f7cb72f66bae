"""Receiving fal's webhooks: verify the ED25519 signature against fal's JWKS, then read the payload as a typed result.

The format (https://docs.fal.ai/model-apis/model-endpoints/webhooks documents the procedure; the exact layout is as
third-party verifiers agree):
headers ``X-Fal-Webhook-Request-Id``, ``X-Fal-Webhook-User-Id``, ``X-Fal-Webhook-Timestamp`` (unix seconds) and
``X-Fal-Webhook-Signature`` (hex); the signed message is ``request_id \\n user_id \\n timestamp \\n sha256_hex(body)``;
the public keys are the Ed25519 (``OKP``) keys of ``https://rest.alpha.fal.ai/.well-known/jwks.json``; a delivery
older or newer than 5 minutes is refused. If fal changes any of this, ``verify_webhook`` fails closed.

Verifying needs the ``webhooks`` extra (``pip install 'fal-kontext[webhooks]'``, the ``cryptography`` package);
``parse_webhook`` and ``fetch_jwks`` do not.

Example (any web framework)::

    jwks = fetch_jwks()                                   # cache it; refetch when verification fails
    event = verify_webhook(raw_body, request.headers, jwks)
    if event.result is not None:
        save(event.result)
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import httpx
from fal_kontext_api.models import ValidationErrorResponse, WebhookPayload, WebhookStatus
from fal_kontext_api.types import Unset

from .errors import FieldError, WebhookVerificationError
from .results import EditResult, read_output

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

__all__ = ["FAL_JWKS_URL", "WebhookEvent", "WebhookVerificationError", "fetch_jwks", "verify_webhook"]

FAL_JWKS_URL = "https://rest.alpha.fal.ai/.well-known/jwks.json"
DEFAULT_TOLERANCE = 300.0


@dataclass(frozen=True)
class WebhookEvent:
    """A verified webhook delivery.

    Attributes:
        request_id: The request it reports on.
        gateway_request_id: The id of the attempt that produced it, if sent.
        ok: True for ``status: "OK"``.
        result: The typed result when ``ok`` and the payload is a Kontext output, else None.
        error: fal's error text for ``status: "ERROR"`` (e.g. ``Invalid status code: 422``).
        errors: The field list of an ERROR payload (``{"detail": [...]}``), if any.
        payload_error: Why fal could not include the payload (it was not JSON-serialisable), if so.
        body: The parsed JSON body, as sent.
    """

    request_id: str
    gateway_request_id: str | None
    ok: bool
    result: EditResult | None
    error: str | None
    errors: tuple[FieldError, ...]
    payload_error: str | None
    body: dict[str, Any]


def _header(headers: Mapping[str, str], name: str) -> str:
    wanted = name.lower()
    for key, value in headers.items():
        if key.lower() == wanted:
            return value
    raise WebhookVerificationError(f"missing header {name}: this request was not sent by fal's webhook service")


def _ed25519() -> tuple[type[Ed25519PublicKey], type[Exception]]:
    """The ED25519 key class and its bad-signature error, from ``cryptography`` (the ``webhooks`` extra).

    Imported when a signature is checked, not with this module: only webhook receivers need cryptography.
    """
    try:
        from cryptography.exceptions import InvalidSignature
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
    except ModuleNotFoundError as err:
        raise ModuleNotFoundError(
            f"verify_webhook needs the webhooks extra (missing module {err.name!r}): "
            "pip install 'fal-kontext[webhooks]'",
            name=err.name,
        ) from err
    return Ed25519PublicKey, InvalidSignature


def _public_keys(jwks: Mapping[str, Any], key_class: type[Ed25519PublicKey]) -> list[Ed25519PublicKey]:
    keys: list[Ed25519PublicKey] = []
    for entry in jwks.get("keys", ()):
        if not isinstance(entry, Mapping) or entry.get("kty") != "OKP" or entry.get("crv") != "Ed25519":
            continue
        x = str(entry.get("x", ""))
        try:
            raw = base64.urlsafe_b64decode(x + "=" * (-len(x) % 4))
            keys.append(key_class.from_public_bytes(raw))
        except (ValueError, binascii.Error):
            continue
    if not keys:
        raise WebhookVerificationError("the JWKS holds no Ed25519 key; fetch it again from " + FAL_JWKS_URL)
    return keys


def signed_message(request_id: str, user_id: str, timestamp: str, body: bytes) -> bytes:
    """The bytes fal signs for a delivery."""
    return "\n".join([request_id, user_id, timestamp, hashlib.sha256(body).hexdigest()]).encode("utf-8")


def verify_webhook(
    body: bytes,
    headers: Mapping[str, str],
    jwks: Mapping[str, Any],
    *,
    now: float | None = None,
    tolerance: float = DEFAULT_TOLERANCE,
) -> WebhookEvent:
    """Check that a webhook delivery comes from fal and read it.

    Args:
        body: The raw request body, exactly as received (before any JSON parsing).
        headers: The request headers (any case).
        jwks: fal's JSON Web Key Set (``fetch_jwks()``).
        now: Current unix time (default: the system clock).
        tolerance: Largest accepted distance, in seconds, between the delivery's timestamp and ``now``.

    Returns:
        The verified event, with the typed result when the request succeeded.

    Raises:
        WebhookVerificationError: missing headers, stale timestamp, no key matches the signature, or a body that is
            not a webhook payload.
        ModuleNotFoundError: the ``webhooks`` extra is not installed (the message names the pip command).
    """
    # Before reading anything: a receiver deployed without the extra learns it on its first delivery, whatever
    # that delivery holds.
    key_class, invalid_signature = _ed25519()
    request_id = _header(headers, "X-Fal-Webhook-Request-Id")
    user_id = _header(headers, "X-Fal-Webhook-User-Id")
    timestamp = _header(headers, "X-Fal-Webhook-Timestamp")
    signature_hex = _header(headers, "X-Fal-Webhook-Signature")
    try:
        sent_at = int(timestamp)
        signature = bytes.fromhex(signature_hex)
    except ValueError as err:
        raise WebhookVerificationError(f"unreadable timestamp or signature header: {err}") from err
    current = time.time() if now is None else now
    if abs(current - sent_at) > tolerance:
        raise WebhookVerificationError(
            f"the delivery for request {request_id} is {abs(current - sent_at):.0f} s from now "
            f"(limit {tolerance:g} s): a replay, or this machine's clock is wrong"
        )
    message = signed_message(request_id, user_id, timestamp, body)
    for key in _public_keys(jwks, key_class):
        try:
            key.verify(signature, message)
            break
        except invalid_signature:
            continue
    else:
        raise WebhookVerificationError(
            f"no key of the JWKS verifies the signature of the delivery for request {request_id}; "
            "refetch the JWKS (fal may have rotated keys) or reject the request"
        )
    return parse_webhook(body, request_id)


def parse_webhook(body: bytes, request_id: str | None = None) -> WebhookEvent:
    """Read a webhook body (already verified) into a ``WebhookEvent``, through the spec's ``WebhookPayload``.

    Args:
        body: The raw body.
        request_id: The id from the signature headers, used when the body lacks one.

    Raises:
        WebhookVerificationError: the body is not a webhook payload, or an OK payload is not a Kontext output.
    """
    try:
        data = json.loads(body)
        if isinstance(data, dict) and request_id and "request_id" not in data:
            data = {**data, "request_id": request_id}
        message = WebhookPayload.from_dict(data)
    except (ValueError, UnicodeDecodeError, TypeError, KeyError, AttributeError) as err:
        raise WebhookVerificationError(f"the webhook body is not a fal webhook payload: {err!r}") from err
    rid = str(message.request_id)
    payload = message.payload
    ok = message.status == WebhookStatus.OK
    result: EditResult | None = None
    output = read_output(data.get("payload"), None) if ok and isinstance(data, dict) else None
    if output is not None:
        result = EditResult(rid, output)
    elif ok and payload is not None and not isinstance(payload, Unset):
        raise WebhookVerificationError(f"the payload of request {rid} is not the output of an endpoint of the spec")
    errors: tuple[FieldError, ...] = ()
    if isinstance(payload, ValidationErrorResponse):
        errors = tuple(FieldError(tuple(item.loc), item.msg, item.type_) for item in payload.detail)
    return WebhookEvent(
        request_id=rid,
        gateway_request_id=_given(message.gateway_request_id),
        ok=ok,
        result=result,
        error=_given(message.error),
        errors=errors,
        payload_error=_given(message.payload_error),
        body=data,
    )


def _given(value: str | Unset) -> str | None:
    return None if isinstance(value, Unset) or not value else str(value)


def fetch_jwks(
    url: str = FAL_JWKS_URL, *, transport: httpx.BaseTransport | None = None, timeout: float = 10.0
) -> dict[str, Any]:
    """Download fal's JWKS (cache it; fetch again when a signature fails to verify).

    Raises:
        WebhookVerificationError: the JWKS could not be fetched or read.
    """
    try:
        with httpx.Client(transport=transport, timeout=timeout) as client:
            response = client.get(url)
            response.raise_for_status()
            data = response.json()
    except (httpx.HTTPError, ValueError) as err:
        raise WebhookVerificationError(f"could not fetch the JWKS from {url}: {err}") from err
    if not isinstance(data, dict) or not isinstance(data.get("keys"), list):
        raise WebhookVerificationError(f"{url} did not return a JWKS ({{'keys': [...]}})")
    return data
