"""What one emulator instance holds: config, clock, queue, routes, renderer, faults, counters and keys."""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
import urllib.parse
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from fal_kontext.spec import EndpointSpec
from fal_kontext_emulator.emulator_config import EmulatorConfig, RuntimeSettings
from fal_kontext_emulator.fal_bodies import log_entries, status_body
from fal_kontext_emulator.fault_rules import FaultPlan
from fal_kontext_emulator.images import ImageRenderer
from fal_kontext_emulator.operations import RouteTable
from fal_kontext_emulator.request_queue import QueuedRequest, RequestQueue
from fal_kontext_emulator.state_file import StateFile
from fal_kontext_emulator.upload_store import UploadStore
from fal_kontext_emulator.webhook_delivery import WebhookSender, WebhookSigner

Clock = Callable[[], float]
JsonObject = dict[str, Any]


def key_fingerprint(key: str) -> str:
    """A short, non-secret name for an API key, used in counters and webhook user ids."""
    return hashlib.sha256(key.encode()).hexdigest()[:12]


def body_fingerprint(body: Any) -> str:
    """The hash the submit counters use: SHA-256 of the JSON body with sorted keys, so key order does not matter."""
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()


@dataclass
class Counters:
    """What the emulator saw: calls per operation, faults injected, and submits per key and per body."""

    calls: Counter[str] = field(default_factory=Counter)
    faults: Counter[str] = field(default_factory=Counter)
    submits: dict[str, Counter[str]] = field(default_factory=dict)
    # Calls per request id and operation (status, stream, result, cancel): benchmarks count requests per job.
    by_request: defaultdict[str, Counter[str]] = field(default_factory=lambda: defaultdict(Counter))

    def as_json(self) -> JsonObject:
        """The counters as the admin API shows them."""
        return {
            "calls": dict(self.calls),
            "faults": dict(self.faults),
            "submits": {
                owner: {"total": sum(bodies.values()), "by_body": dict(bodies)}
                for owner, bodies in self.submits.items()
            },
        }


class EmulatorState:
    """Everything one emulator instance holds: config, clock, queue, routes, images, faults and counters."""

    def __init__(
        self, config: EmulatorConfig, clock: Clock, routes: RouteTable, endpoints: tuple[EndpointSpec, ...]
    ) -> None:
        self.config = config
        self._clock = clock
        self._clock_origin = clock()
        self._epoch_origin = time.time()
        self.routes = routes
        self.endpoints = {endpoint.id: endpoint for endpoint in endpoints}
        self.queue = RequestQueue(config.queue_settings)
        self.store = StateFile(config.state_file) if config.state_file else None
        signer = WebhookSigner()
        self.offset = 0.0
        if self.store is not None:
            requests, self.offset = self.store.load()
            self.queue.restore(requests, self.offset)
            signer = WebhookSigner.from_bytes(self.store.signing_key(signer.private_bytes()))
        self._queue_origin = self.offset
        self._saved_at = self.offset
        self._unsaved_submits: list[tuple[str, str]] = []
        self.renderer = ImageRenderer(config.image_cache_bytes)
        # fal does not state its storage tokens' lifetime; an hour is our choice.
        self.uploads = UploadStore(config.max_upload_bytes, token_ttl=3600.0)
        # Changeable at run time through the admin API (`/_emulator/settings`).
        self.settings = RuntimeSettings(
            remote_images=config.remote_images,
            request_list_pending=config.request_list_pending,
            request_list_delay=config.request_list_delay,
        )
        self.faults = FaultPlan(list(config.faults), seed=config.fault_seed)
        self.counters = Counters()
        if self.store is not None:
            # Submit counts survive restarts: a client that resubmits after one must still show up twice.
            for owner, bodies in self.store.submits().items():
                self.counters.submits[owner] = Counter(bodies)
        self.owners: dict[str, str] = {key: key_fingerprint(key) for key in config.keys}
        self._url_templates = {op.operation_id: op.path for op in self.routes.operations}
        self.changed = asyncio.Event()
        # Status streams wait on their own event: a submit must not wake every open stream (1,000 streams and
        # 1,000 submits would be a million wake-ups).
        self.streams_changed = asyncio.Event()
        self.webhooks = WebhookSender(
            signer,
            attempts=config.webhook_attempts,
            retry_delay=config.webhook_retry_delay,
            timeout=config.webhook_timeout,
            sleep=asyncio.sleep,
        )

    def now(self) -> float:
        """Queue time: seconds on the injected clock since start, plus any admin-requested advance."""
        return self._clock() - self._clock_origin + self.offset

    def clock_offset(self) -> float:
        """What to add to a queue time to get the injected clock's reading (valid until the next advance)."""
        return self._clock_origin - self.offset

    def epoch_of(self, queue_time: float) -> float:
        """Unix time of a queue time (for log timestamps)."""
        return self._epoch_origin + queue_time - self._queue_origin

    def persist(self, *, always: bool = False) -> None:
        """Save what changed to the state file, if there is one.

        The queue time is saved with every change, with `always`, and at least once a second of queue time
        otherwise: after a restart requests resume from the last saved time.
        """
        if self.store is None:
            return
        changed, removed = self.queue.take_changes()
        if changed or removed or always or self.queue.now - self._saved_at >= 1.0:
            submits, self._unsaved_submits = self._unsaved_submits, []
            self.store.save(changed, removed, self.queue.now, submits)
            self._saved_at = self.queue.now

    def notify(self, *, streams: bool = True) -> None:
        """Wake the timers and, with `streams`, the status streams: the queue changed in a way time alone does
        not predict."""
        self.changed.set()
        self.changed = asyncio.Event()
        if streams:
            self.streams_changed.set()
            self.streams_changed = asyncio.Event()

    def count_submit(self, owner: str, body_hash: str) -> None:
        """Count one accepted submit of `owner` with that body; with a state file it is saved by the next
        `persist`, in the same transaction as its job."""
        self.counters.submits.setdefault(owner, Counter())[body_hash] += 1
        if self.store is not None:
            self._unsaved_submits.append((owner, body_hash))

    def reset_counters(self) -> None:
        """Set every counter back to zero (saved submit counts too)."""
        self.counters = Counters()
        self._unsaved_submits = []
        if self.store is not None:
            self.store.reset_submits()

    def owner_of(self, authorization: str | None) -> str | None:
        """The fingerprint of the key in an `Authorization: Key <k>` or `Bearer <k>` header, or None."""
        if not authorization:
            return None
        scheme, _, token = authorization.strip().partition(" ")
        if scheme.lower() not in {"key", "bearer"}:
            return None
        return self.owners.get(token.strip())

    def urls(self, request: QueuedRequest) -> dict[str, str]:
        """Absolute status, result and cancel URLs of a request, on the emulator's own base URL."""
        base = request.base_url
        rid = urllib.parse.quote(request.request_id, safe="")
        owner, _, app = self.endpoints[request.endpoint_id].app.partition("/")

        def url(operation_id: str) -> str:
            template = self._url_templates[operation_id]
            return base + template.replace("{owner}", owner).replace("{app}", app).replace("{request_id}", rid)

        return {
            "response_url": url("get_request_result"),
            "status_url": url("get_request_status"),
            "cancel_url": url("cancel_request"),
        }

    def status_of(self, request: QueuedRequest, *, with_logs: bool, logs_after: int = 0) -> JsonObject:
        """The QueueStatus body of a request now; with logs from index `logs_after` on when asked for."""
        logs = None
        if with_logs:
            logs = log_entries(self.queue.logs(request, self.queue.now)[logs_after:], self.epoch_of)
        return status_body(request, self.urls(request), queue_position=self.queue.queue_position(request), logs=logs)
