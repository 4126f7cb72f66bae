"""The forms of a key that log redaction hides: the whole key, and each part of an ``id:secret`` key (the log records
themselves: integration/test_log_redaction.py)."""

from __future__ import annotations

from fal_kontext.log_redaction import secret_forms
from tests.client.conftest import ID_SECRET_CANARY


def test_the_parts_of_a_key_id_and_secret_are_secret_too() -> None:
    assert secret_forms(ID_SECRET_CANARY) == (ID_SECRET_CANARY, "canary-secret-7c1dQzXwv93", "canary-id-0042")
    assert secret_forms("short:k") == ("short:k",)
