"""Credentials, timeouts and everything else both clients are configured with (no I/O here)."""

from __future__ import annotations

import math
import os
import random
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import httpx

from .inputs import check_submit_options
from .queue import PollSchedule, QueueSettings, SubmitOptions
from .retry import RetryPolicy
from .urls import FAL_QUEUE_URL, normalise_base_url

__all__ = [
    "DEFAULT_POLL",
    "DEFAULT_RETRY",
    "DEFAULT_TIMEOUTS",
    "AuthScheme",
    "ClientConfig",
    "Credentials",
    "RequestTimeouts",
    "redact",
]

AuthScheme = Literal["key", "bearer"]

ENV_BASE_URL = "FAL_KONTEXT_BASE_URL"
ENV_AUTH = "FAL_KONTEXT_AUTH"
ENV_TOKEN = "FAL_KONTEXT_TOKEN"


@dataclass(frozen=True)
class Credentials:
    """A secret and how it is sent: ``Authorization: Key <secret>`` (fal) or ``Bearer <secret>`` (aggregators).

    The secret never appears in ``repr``/``str``; read it only through ``authorization``.
    """

    scheme: AuthScheme
    secret: str = field(repr=False)

    def __post_init__(self) -> None:
        if self.scheme not in ("key", "bearer"):
            raise ValueError(f"auth must be 'key' or 'bearer', not {self.scheme!r}")
        if not self.secret or any(c in self.secret for c in "\r\n"):
            raise ValueError("the key or token is empty or contains a line break")

    def __repr__(self) -> str:
        return f"Credentials(scheme={self.scheme!r}, secret='***')"

    __str__ = __repr__

    @property
    def prefix(self) -> str:
        """The word before the secret in the Authorization header."""
        return "Key" if self.scheme == "key" else "Bearer"

    @classmethod
    def from_env(cls, scheme: AuthScheme = "key", environ: Mapping[str, str] | None = None) -> Credentials | None:
        """Credentials from the environment, or None if none are set.

        ``key``: ``FAL_KEY``, else ``FAL_KEY_ID`` and ``FAL_KEY_SECRET`` joined with ``:`` (fal's own order).
        ``bearer``: ``FAL_KONTEXT_TOKEN``, else the same variables as ``key``.
        """
        env = os.environ if environ is None else environ
        secret = env.get(ENV_TOKEN) if scheme == "bearer" else None
        secret = secret or env.get("FAL_KEY")
        if not secret and env.get("FAL_KEY_ID") and env.get("FAL_KEY_SECRET"):
            secret = f"{env['FAL_KEY_ID']}:{env['FAL_KEY_SECRET']}"
        return cls(scheme, secret) if secret else None


def redact(text: str, secret: str | None) -> str:
    """``text`` with every occurrence of ``secret`` replaced by ``***``."""
    return text.replace(secret, "***") if secret else text


@dataclass(frozen=True, slots=True)
class RequestTimeouts:
    """Timeouts of one HTTP request, in seconds (the first of the three timeouts; see ``docs/client.md``).

    Attributes:
        connect: Opening the connection (TLS included).
        read: Waiting for each chunk of an answer (also used for writing the request).
    """

    connect: float = 10.0
    read: float = 60.0

    def to_httpx(self) -> httpx.Timeout:
        """The equivalent ``httpx.Timeout``."""
        return httpx.Timeout(self.read, connect=self.connect)


DEFAULT_TIMEOUTS = RequestTimeouts()
DEFAULT_RETRY = RetryPolicy()
DEFAULT_POLL = PollSchedule()


@dataclass(frozen=True)
class ClientConfig:
    """Everything a client is configured with; built by ``Kontext``/``AsyncKontext`` from their arguments."""

    base_url: str
    credentials: Credentials | None
    timeouts: RequestTimeouts
    retry: RetryPolicy
    poll: PollSchedule
    wait_timeout: float | None
    start_timeout: float | None
    stream_status: bool
    max_image_bytes: int
    clock: Callable[[], float]
    random: Callable[[], float]
    stream_idle_timeout: float

    @classmethod
    def build(
        cls,
        *,
        key: str | None,
        auth: AuthScheme | Credentials | None,
        base_url: str | None,
        timeouts: RequestTimeouts,
        retry: RetryPolicy,
        poll: PollSchedule,
        wait_timeout: float | None,
        start_timeout: float | None,
        stream_status: bool,
        max_image_bytes: int,
        clock: Callable[[], float] | None,
        random_source: Callable[[], float] | None,
        stream_idle_timeout: float,
    ) -> ClientConfig:
        """Resolve arguments and environment variables into a config.

        Raises:
            ValueError: a bad base URL, auth scheme or timeout.
        """
        if isinstance(auth, Credentials):
            credentials: Credentials | None = auth
        else:
            chosen = auth or os.environ.get(ENV_AUTH, "key")
            if chosen not in ("key", "bearer"):
                raise ValueError(f"auth must be 'key' or 'bearer', not {chosen!r} (from {ENV_AUTH})")
            scheme: AuthScheme = "key" if chosen == "key" else "bearer"
            credentials = Credentials(scheme, key) if key else Credentials.from_env(scheme)
        url = normalise_base_url(base_url or os.environ.get(ENV_BASE_URL) or FAL_QUEUE_URL)
        if wait_timeout is not None and not wait_timeout > 0:
            raise ValueError("wait_timeout must be > 0 (math.inf or None to wait without a deadline)")
        check_submit_options(start_timeout=start_timeout, priority=None)
        return cls(
            url,
            credentials,
            timeouts,
            retry,
            poll,
            None if wait_timeout is None or math.isinf(wait_timeout) else wait_timeout,
            start_timeout,
            stream_status,
            max_image_bytes,
            clock or time.monotonic,
            random_source or random.random,
            stream_idle_timeout,
        )

    def settings(self) -> QueueSettings:
        """The settings the queue flows run with."""
        return QueueSettings(self.base_url, self.retry, self.poll, self.clock, self.random, self.stream_idle_timeout)

    def wait_deadline(self, timeout: float | None) -> float | None:
        """The wait timeout to use: ``timeout`` if given (``math.inf`` = none), else the client's."""
        if timeout is None:
            return self.wait_timeout
        if math.isinf(timeout):
            return None
        if not timeout > 0:
            raise ValueError("timeout must be > 0 (math.inf to wait without a deadline)")
        return timeout

    def submit_options(
        self,
        *,
        webhook_url: str | None,
        start_timeout: float | None,
        priority: str | None,
        runner_hint: str | None,
        no_retry: bool,
    ) -> SubmitOptions:
        """Checked submit options (``start_timeout`` defaults to the client's).

        Raises:
            InvalidInputError: ``start_timeout`` or ``priority`` out of the spec.
        """
        start = start_timeout if start_timeout is not None else self.start_timeout
        checked_priority = check_submit_options(start_timeout=start, priority=priority)
        return SubmitOptions(webhook_url, start, checked_priority, runner_hint, no_retry)

    def client_args(self) -> dict[str, Any]:
        """Keyword arguments for the generated ``AuthenticatedClient``/``Client`` (without ``httpx_args``)."""
        from . import __version__

        args: dict[str, Any] = {
            "timeout": self.timeouts.to_httpx(),
            "headers": {"User-Agent": f"fal-kontext/{__version__} (python)"},
        }
        if self.credentials is not None:
            args["token"] = self.credentials.secret
            args["prefix"] = self.credentials.prefix
        return args
