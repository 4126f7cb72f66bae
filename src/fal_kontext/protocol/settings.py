"""What the protocol's flows need from a client: one frozen object, every part injectable (tests pass a fake clock).

A flow that needs another variant (one look without retries) makes it with ``dataclasses.replace``, so no field is
ever dropped on the way.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from fal_kontext.retry import DEFAULT_RETRY, RetryPolicy

from .images import DEFAULT_MAX_IMAGE_BYTES
from .polling import LearnedPolling, Polling
from .recovery import DEFAULT_RECOVERY, RecoveryPolicy
from .send import Pacing
from .storage import DEFAULT_UPLOAD_THRESHOLD, StorageSettings, TokenCache

__all__ = ["Settings"]


def _no_credentials_needed() -> str | None:
    return None


@dataclass(frozen=True, slots=True)
class Settings:
    """A client's settings, as its flows read them.

    Attributes:
        base_url: The configured queue base URL (normalised, no trailing slash).
        retry: The retry policy of every call (``send``).
        poll: The polling schedule, used when the status stream is not followed (``LearnedPolling``, learning from
            this client's jobs, unless the client was given a ``PollSchedule``).
        clock: Monotonic seconds (deadlines).
        random: Jitter source in [0, 1).
        wall: Wall-clock seconds (the request list's time window, storage token expiry).
        stream_idle_timeout: A status stream silent for this long counts as dropped (fal sends a keep-alive every
            15 s), and the wait falls back to polling.
        recovery: How a submit whose answer was lost is recovered (``recovery``).
        requests_list: fal's request list for this client (``recovery.requests_list_url``), or None.
        wait_timeout: The deadline of a verb called without ``timeout=`` (None: none).
        start_timeout: The default ``X-Fal-Request-Timeout`` of a submit.
        stream_status: Follow the status stream while waiting (else poll only).
        max_image_bytes: Largest local image inlined as a data URI.
        upload_threshold: Local images larger than this are uploaded (where ``storage`` is known); None inlines all.
        storage: Where fal storage is, or None (an aggregator may not proxy it).
        storage_tokens: The upload token of this client's last upload, reused until it nearly expires.
        sync_url: Base URL of fal's synchronous endpoint (``run_direct``).
        authorization: The ``Authorization`` value for fal storage and the synchronous endpoint, which need the key;
            raises ``MissingCredentialsError`` when the client has none. Returns None where the spec needs none.
    """

    base_url: str
    retry: RetryPolicy = DEFAULT_RETRY
    poll: Polling = field(default_factory=LearnedPolling)
    clock: Callable[[], float] = field(default=time.monotonic, repr=False)
    random: Callable[[], float] = field(default=random.random, repr=False)
    wall: Callable[[], float] = field(default=time.time, repr=False)
    stream_idle_timeout: float = 30.0
    recovery: RecoveryPolicy = DEFAULT_RECOVERY
    requests_list: str | None = None
    wait_timeout: float | None = 900.0
    start_timeout: float | None = None
    stream_status: bool = True
    max_image_bytes: int = DEFAULT_MAX_IMAGE_BYTES
    upload_threshold: int | None = DEFAULT_UPLOAD_THRESHOLD
    storage: StorageSettings | None = None
    storage_tokens: TokenCache = field(default_factory=TokenCache, repr=False, compare=False)
    sync_url: str | None = None
    authorization: Callable[[], str | None] = field(default=_no_credentials_needed, repr=False, compare=False)

    @property
    def pacing(self) -> Pacing:
        """How the send loop paces this client's retries."""
        return Pacing(self.retry, self.random, self.clock)

    def check_credentials(self) -> None:
        """Raise ``MissingCredentialsError`` now if a request will need a key the client does not have: every verb
        checks this before its first request, so none is refused halfway."""
        self.authorization()
