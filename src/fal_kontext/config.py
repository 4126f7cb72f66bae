"""A client's configuration: credentials, timeouts and everything the protocol's ``Settings`` hold, from the
constructor's arguments and the environment (no I/O, no HTTP library: ``transport`` checks ``httpx_args``).

Every option is checked here, when the client is built, and a bad one raises ``InvalidInputError`` (a
``ValueError``) naming it and the fix, before anything is sent.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Literal, TypeVar

from ._version import __version__
from .errors import MissingCredentialsError
from .option_checks import check_positive, has_control_character, refuse
from .protocol.direct import direct_base_url
from .protocol.hosts import FAL_QUEUE_URL, is_fal_queue, normalise_base_url
from .protocol.inputs import check_submit_options
from .protocol.polling import LearnedPolling, Polling, PollSchedule
from .protocol.recovery import RecoveryPolicy, requests_list_url
from .protocol.settings import Settings
from .protocol.storage import (
    Expiration,
    StorageSettings,
    lifecycle_headers,
    storage_for,
)
from .spec import credentials_required

__all__ = [
    "DEFAULT_TIMEOUTS",
    "ENV_AUTH",
    "ENV_BASE_URL",
    "ENV_STORAGE_URL",
    "ENV_SYNC_URL",
    "ENV_TOKEN",
    "AuthScheme",
    "ClientConfig",
    "Credentials",
    "RequestTimeouts",
    "Secret",
    "authorization_of",
    "base_url_of",
    "checked",
    "checked_image_bytes",
    "credentials_of",
    "missing_credentials",
    "polling_of",
    "redact",
    "requests_list_of",
    "start_timeout_of",
    "storage_of",
    "sync_url_of",
    "user_agent",
    "wait_timeout_of",
]

AuthScheme = Literal["key", "bearer"]
_O = TypeVar("_O")

ENV_BASE_URL = "FAL_KONTEXT_BASE_URL"
ENV_AUTH = "FAL_KONTEXT_AUTH"
ENV_TOKEN = "FAL_KONTEXT_TOKEN"
ENV_STORAGE_URL = "FAL_KONTEXT_STORAGE_URL"
ENV_SYNC_URL = "FAL_KONTEXT_SYNC_URL"


def user_agent() -> str:
    """Our User-Agent, sent unless the caller gives one."""
    return f"fal-kontext/{__version__} (python)"


class Secret(str):
    """A string whose ``repr`` is ``'***'``: how the client holds a key, so that a traceback rendered with its
    frames' locals (Sentry, rich, ``pytest -l``) never shows it. Its value is the key (headers use it as a str)."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "'***'"

    @classmethod
    def of(cls, value: str | None) -> Secret | None:
        """``value`` as a ``Secret`` (None stays None; a non-string is left for the caller's check)."""
        return cls(value) if isinstance(value, str) and not isinstance(value, Secret) else value


@dataclass(frozen=True)
class Credentials:
    """A secret and how it is sent: ``Authorization: Key <secret>`` (fal) or ``Bearer <secret>`` (aggregators).

    The secret never appears in ``repr``/``str``; read it only through ``authorization``.
    """

    scheme: AuthScheme
    secret: str = field(repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "secret", Secret.of(self.secret))
        if self.scheme not in ("key", "bearer"):
            raise refuse("auth", self.scheme, f"auth must be 'key' or 'bearer', not {self.scheme!r}")
        if not isinstance(self.secret, str) or not self.secret or has_control_character(self.secret):
            raise refuse(
                "key",
                "***",
                "the key or token is empty, not a string, or contains a line break or another control character",
            )

    def __repr__(self) -> str:
        return f"Credentials(scheme={self.scheme!r}, secret='***')"

    __str__ = __repr__

    @property
    def prefix(self) -> str:
        """The word before the secret in the Authorization header."""
        return "Key" if self.scheme == "key" else "Bearer"

    @property
    def authorization(self) -> str:
        """The value of the Authorization header."""
        return f"{self.prefix} {self.secret}"

    @classmethod
    def from_env(
        cls, scheme: AuthScheme = "key", environ: Mapping[str, str] | None = None, *, base_url: str | None = None
    ) -> Credentials | None:
        """Credentials from the environment, or None if none apply.

        ``key``: ``FAL_KEY``, else ``FAL_KEY_ID`` and ``FAL_KEY_SECRET`` joined with ``:`` (fal's own order).
        ``bearer``: ``FAL_KONTEXT_TOKEN``; fal's key variables only when ``base_url`` is one of fal's hosts, so fal's
        key is never sent to an aggregator unless passed explicitly (``key=``).
        """
        secret = Secret.of(_secret_from_env(scheme, os.environ if environ is None else environ, base_url))
        return cls(scheme, secret) if secret else None


def _secret_from_env(scheme: AuthScheme, env: Mapping[str, str], base_url: str | None) -> str | None:
    # Apart from ``from_env`` so that no frame still running when a bad key is refused holds the environment.
    if scheme == "bearer" and env.get(ENV_TOKEN):
        return env[ENV_TOKEN]
    if scheme == "bearer" and not (base_url and is_fal_queue(base_url)):
        return None
    if env.get("FAL_KEY"):
        return env["FAL_KEY"]
    if env.get("FAL_KEY_ID") and env.get("FAL_KEY_SECRET"):
        return f"{env['FAL_KEY_ID']}:{env['FAL_KEY_SECRET']}"
    return None


def redact(text: str, secret: str | None) -> str:
    """``text`` with every occurrence of ``secret`` replaced by ``***``."""
    return text.replace(secret, "***") if secret else text


@dataclass(frozen=True, slots=True)
class RequestTimeouts:
    """Timeouts of one HTTP request, in seconds (the first of the three timeouts; see ``docs/client.md``).

    Attributes:
        connect: Opening the connection (TLS included).
        read: Waiting for each chunk of an answer (also used for writing the request).

    Raises:
        InvalidInputError: a timeout that is not a finite number > 0.
    """

    connect: float = 10.0
    read: float = 60.0

    def __post_init__(self) -> None:
        check_positive("timeouts.connect", self.connect)
        check_positive("timeouts.read", self.read)


DEFAULT_TIMEOUTS = RequestTimeouts()


@dataclass(frozen=True)
class ClientConfig:
    """Everything a client is configured with; built by ``Kontext``/``AsyncKontext`` from their arguments, each
    checked by this module's ``*_of`` functions.

    Attributes:
        credentials: The key or token, or None (a request that needs one raises ``MissingCredentialsError``).
        timeouts: Per-request connect/read timeouts.
        settings: What the protocol's flows read (``protocol.settings.Settings``).
    """

    credentials: Credentials | None
    timeouts: RequestTimeouts
    settings: Settings

    @property
    def base_url(self) -> str:
        """The configured queue base URL."""
        return self.settings.base_url


def checked(name: str, value: object, kind: type[_O]) -> _O:
    """``value`` if it is a ``kind``, else the error naming the option ``name``."""
    if not isinstance(value, kind):
        raise refuse(name, value, f"expected a {kind.__name__}")
    return value


def polling_of(poll: object) -> Polling:
    """The ``poll`` option: a new ``LearnedPolling`` for None (learning from this client's jobs), else the
    ``PollSchedule`` or ``LearnedPolling`` given."""
    if poll is None:
        return LearnedPolling()
    if not isinstance(poll, (PollSchedule, LearnedPolling)):
        raise refuse("poll", poll, "expected a PollSchedule (a fixed backoff) or a LearnedPolling")
    return poll


def checked_image_bytes(max_image_bytes: object) -> int:
    """``max_image_bytes`` checked: a whole number of bytes > 0."""
    if not isinstance(max_image_bytes, int) or isinstance(max_image_bytes, bool) or max_image_bytes <= 0:
        raise refuse("max_image_bytes", max_image_bytes, "expected a whole number of bytes > 0")
    return max_image_bytes


def wait_timeout_of(wait_timeout: float | None) -> float | None:
    """The ``wait_timeout`` option checked: seconds > 0, None or ``math.inf`` for none."""
    if wait_timeout is None:
        return None
    return _finite_or_none(check_positive("wait_timeout", wait_timeout, allow_inf=True))


def authorization_of(credentials: Credentials | None, scheme: AuthScheme, base_url: str) -> Callable[[], str | None]:
    """``Settings.authorization``: the header's value, None where the spec needs no credentials, else the error."""

    def authorization() -> str | None:
        if credentials is not None:
            return credentials.authorization
        if not credentials_required():
            return None
        raise missing_credentials(scheme, base_url)

    return authorization


def start_timeout_of(start_timeout: float | None) -> float | None:
    """The default ``X-Fal-Request-Timeout``, checked against the spec as a submit's own is."""
    if start_timeout is None:
        return None
    check_submit_options(start_timeout=check_positive("start_timeout", start_timeout), priority=None)
    return float(start_timeout)


def storage_of(
    base_url: str, storage_url: str | None, expires_in: Expiration | None, timeouts: RequestTimeouts
) -> StorageSettings | None:
    """The client's fal storage (``storage_for``), ``storage_url`` defaulting to ``FAL_KONTEXT_STORAGE_URL``."""
    chosen = storage_url if storage_url is not None else (os.environ.get(ENV_STORAGE_URL) or None)
    try:
        lifecycle_headers(expires_in)
    except ValueError as err:
        raise refuse("upload_expires_in", expires_in, str(err)) from None
    try:
        return storage_for(base_url, chosen, expires_in=expires_in, read_timeout=timeouts.read)
    except ValueError as err:
        raise refuse("storage_url", chosen, str(err)) from None


def sync_url_of(base_url: str, sync_url: str | None) -> str:
    """Where ``run_direct`` goes (``direct_base_url``), ``sync_url`` defaulting to ``FAL_KONTEXT_SYNC_URL``."""
    chosen = sync_url if sync_url is not None else (os.environ.get(ENV_SYNC_URL) or None)
    try:
        return direct_base_url(base_url, chosen)
    except ValueError as err:
        raise refuse("sync_url", chosen, str(err)) from None


def requests_list_of(base_url: str, credentials: Credentials | None, recovery: RecoveryPolicy) -> str | None:
    """fal's request list for recovery, or None (no key, or no list known for this base URL)."""
    if credentials is None:
        return None
    try:
        url, _ = requests_list_url(base_url, credentials.scheme, recovery.requests_base_url)
    except ValueError as err:
        raise refuse("recovery.requests_base_url", recovery.requests_base_url, str(err)) from None
    return url


def _finite_or_none(seconds: float) -> float | None:
    return None if math.isinf(seconds) else seconds


def base_url_of(base_url: str | None) -> str:
    if base_url is not None and not isinstance(base_url, str):
        raise refuse("base_url", base_url, "expected a string, e.g. https://queue.fal.run")
    chosen = (os.environ.get(ENV_BASE_URL) or FAL_QUEUE_URL) if base_url is None else base_url
    try:
        return normalise_base_url(chosen)
    except ValueError as err:
        raise refuse("base_url", chosen, str(err)) from None


def credentials_of(
    key: str | None, auth: AuthScheme | Credentials | None, base_url: str
) -> tuple[AuthScheme, Credentials | None]:
    """The auth scheme and the credentials (None when neither ``key`` nor the environment gives one: refused later,
    by the first request that needs them, ``missing_credentials``)."""
    if isinstance(auth, Credentials):
        return auth.scheme, auth
    chosen = auth or os.environ.get(ENV_AUTH, "key")
    if chosen not in ("key", "bearer"):
        raise refuse("auth", chosen, f"auth must be 'key' or 'bearer', not {chosen!r} (also from {ENV_AUTH})")
    scheme: AuthScheme = "key" if chosen == "key" else "bearer"
    if key is not None:
        return scheme, Credentials(scheme, key)
    return scheme, Credentials.from_env(scheme, base_url=base_url)


def missing_credentials(
    scheme: AuthScheme, base_url: str, environ: Mapping[str, str] | None = None
) -> MissingCredentialsError:
    """The error of a request that needs a credential the client does not have, naming what to set."""
    env = os.environ if environ is None else environ
    if scheme == "key":
        problem = "set FAL_KEY (or FAL_KEY_ID and FAL_KEY_SECRET) to your fal key, or pass key=..."
        return MissingCredentialsError(problem, ("FAL_KEY", "FAL_KEY_ID", "FAL_KEY_SECRET"))
    problem = f"auth='bearer' for {base_url}: set {ENV_TOKEN} to the token, or pass key=..."
    if _secret_from_env("key", env, None):
        problem += " (fal's key, FAL_KEY, is not sent as a bearer token to a host that is not fal's)"
    return MissingCredentialsError(problem, (ENV_TOKEN,))
