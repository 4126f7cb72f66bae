"""The emulator's knobs: every one fixed at start (`EmulatorConfig`), and the few that may change while it runs
(`RuntimeSettings`, through `/_emulator/settings`)."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from fal_kontext_emulator.fault_rules import FaultRule
from fal_kontext_emulator.remote_images import REMOTE_IMAGE_MODES, RemoteImages
from fal_kontext_emulator.request_queue import QueueSettings


@dataclass(frozen=True)
class EmulatorConfig:
    """How the emulator behaves. The defaults suit tests: one key `test-key`, short queue and run times.

    Attributes:
        keys: API keys accepted as `Authorization: Key <key>` or `Bearer <key>`.
        runners: requests run at the same time (fal's per-account concurrency); the rest wait in the queue.
        queue_wait: seconds a request waits in the queue at least, even with a runner free.
        run_time: seconds a runner spends on a request.
        run_time_jitter: up to this many seconds are added to `run_time`, fixed per request id.
        retention: seconds a completed request (status, result and files) is kept; then 404 (fal: 1 hour).
        content_policy_trigger: a prompt containing this text completes, then its result is a 422
            content_policy_violation. None disables it.
        failure_trigger: a prompt containing this text fails half way (runner disconnected): COMPLETED with
            `error`, then a 503 on the result. None disables it.
        public_base_url: the base of the URLs the emulator hands out (status_url, file URLs...), for use
            behind a proxy; by default the URL each request came in on.
        state_file: SQLite file that keeps every request across restarts; None keeps state in memory.
        faults: fault rules active from the start (more can be added through the admin API).
        fault_seed: seed of the random draws of rate-based faults.
        max_body_bytes: largest request body accepted; larger gets 413.
        max_data_uri_bytes: largest decoded input image given as a data URI; larger gets 422.
        keepalive_interval: seconds between keep-alive comments on the status stream (fal: 15).
        stream_poll_interval: longest real-time pause of the status stream between looks at the queue.
        webhook_attempts: delivery attempts per webhook (fal: 10 over 2 hours).
        webhook_retry_delay: seconds before the second attempt; it doubles each time after.
        webhook_timeout: seconds to wait for the receiver to answer one attempt (fal: 15).
        image_cache_bytes: memory for rendered images; evicted images are rendered again when read.
        max_upload_bytes: largest file accepted by the storage endpoints (single or multipart); larger gets 413.
            Uploads are kept in memory.
        remote_images: what a remote http(s) input URL reads as, never fetched: "placeholder" (a picture
            derived from the URL; hosts under `.invalid` fail) or "refuse" (every one fails as fal's
            `file_download_error` on the result). Changeable at run time through `/_emulator/settings`.
        request_list_pending: the Platform request list (`/v1/models/requests/by-endpoint`) also shows requests
            still queued or running (fal does not say whether it does); by default only ended ones.
        request_list_delay: seconds after a request ends before the request list shows it (fal does not say
            how soon it does). Both are changeable at run time through `/_emulator/settings`.
        header_timeout: seconds a connection may take to send a request's headers before it is closed.
        max_idle_connections: connections held open with no request in progress; above it, the oldest idle
            ones are closed.
    """

    keys: tuple[str, ...] = ("test-key",)
    runners: int = 4
    queue_wait: float = 0.05
    run_time: float = 0.2
    run_time_jitter: float = 0.0
    retention: float = 3600.0
    content_policy_trigger: str | None = "[content-policy]"
    failure_trigger: str | None = "[runner-failure]"
    public_base_url: str | None = None
    state_file: str | None = None
    faults: tuple[FaultRule, ...] = field(default_factory=tuple)
    fault_seed: int = 0
    max_body_bytes: int = 20 * 1024 * 1024
    max_data_uri_bytes: int = 10 * 1024 * 1024
    keepalive_interval: float = 15.0
    stream_poll_interval: float = 0.25
    webhook_attempts: int = 10
    webhook_retry_delay: float = 1.0
    webhook_timeout: float = 15.0
    image_cache_bytes: int = 64 * 1024 * 1024
    max_upload_bytes: int = 256 * 1024 * 1024
    remote_images: RemoteImages = "placeholder"
    request_list_pending: bool = False
    request_list_delay: float = 0.0
    header_timeout: float = 10.0
    max_idle_connections: int = 512

    def __post_init__(self) -> None:
        problems = []
        if not self.keys:
            problems.append("keys: give at least one accepted key")
        if self.runners < 1:
            problems.append("runners: must be at least 1")
        for name in (
            "queue_wait",
            "run_time",
            "run_time_jitter",
            "retention",
            "webhook_retry_delay",
            "request_list_delay",
        ):
            if getattr(self, name) < 0:
                problems.append(f"{name}: must be >= 0 seconds")
        for name in ("keepalive_interval", "stream_poll_interval", "webhook_timeout", "header_timeout"):
            if getattr(self, name) <= 0:
                problems.append(f"{name}: must be > 0 seconds")
        if self.max_idle_connections < 1:
            problems.append("max_idle_connections: must be at least 1")
        if self.webhook_attempts < 1:
            problems.append("webhook_attempts: must be at least 1")
        if self.public_base_url is not None and not self.public_base_url.startswith(("http://", "https://")):
            problems.append("public_base_url: must start with http:// or https://")
        if self.remote_images not in REMOTE_IMAGE_MODES:
            problems.append(f"remote_images: must be one of {list(REMOTE_IMAGE_MODES)}, not {self.remote_images!r}")
        if problems:
            raise ValueError("invalid EmulatorConfig: " + "; ".join(problems))

    @property
    def queue_settings(self) -> QueueSettings:
        """The part of the config the queue itself uses."""
        return QueueSettings(**{f.name: getattr(self, f.name) for f in fields(QueueSettings)})


@dataclass
class RuntimeSettings:
    """The settings that may change while the emulator runs, with their checks. Attributes as in EmulatorConfig
    (`remote_images`, `request_list_pending`, `request_list_delay`)."""

    remote_images: RemoteImages = "placeholder"
    request_list_pending: bool = False
    request_list_delay: float = 0.0

    def as_json(self) -> dict[str, Any]:
        """The settings as the admin API shows them."""
        return asdict(self)

    def update(self, data: Any) -> list[str]:
        """Apply a partial update (a JSON object of some of the settings); nothing changes when any value is
        wrong. Returns the problems, each naming its setting."""
        if not isinstance(data, dict):
            return ["send a JSON object with some of " + ", ".join(self.as_json())]
        problems = [f"{name}: unknown setting" for name in data if name not in self.as_json()]
        mode = data.get("remote_images", self.remote_images)
        if mode not in REMOTE_IMAGE_MODES:
            problems.append(f"remote_images: must be one of {list(REMOTE_IMAGE_MODES)}")
        pending = data.get("request_list_pending", self.request_list_pending)
        if not isinstance(pending, bool):
            problems.append("request_list_pending: must be true or false")
        delay = data.get("request_list_delay", self.request_list_delay)
        if isinstance(delay, bool) or not isinstance(delay, int | float) or not math.isfinite(delay) or delay < 0:
            problems.append("request_list_delay: must be a number of seconds >= 0")
        if not problems:
            self.remote_images, self.request_list_pending, self.request_list_delay = mode, pending, float(delay)
        return problems
