"""Settings: credentials, timeouts, polling, HTTP options and everything else a client is built with (no I/O).

Every option is checked here, when the client is built, and a bad one raises ``InvalidInputError`` (a
``ValueError``) naming it and the fix, before anything is sent.
"""

from __future__ import annotations

import importlib.util
import inspect
import math
import os
import random
import ssl
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import urlsplit

import httpx

from ._version import __version__
from .errors import FieldProblem, InvalidInputError, MissingCredentialsError
from .recovery import DEFAULT_RECOVERY, RecoveryPolicy, requests_list_url
from .retry import RetryPolicy
from .urls import FAL_QUEUE_HOSTS, FAL_QUEUE_URL, normalise_base_url

__all__ = [
    "DEFAULT_POLL",
    "DEFAULT_RETRY",
    "DEFAULT_TIMEOUTS",
    "AuthScheme",
    "ClientConfig",
    "Credentials",
    "HttpOptions",
    "PollSchedule",
    "QueueSettings",
    "RequestTimeouts",
    "Secret",
    "missing_credentials",
    "redact",
]

AuthScheme = Literal["key", "bearer"]

ENV_BASE_URL = "FAL_KONTEXT_BASE_URL"
ENV_AUTH = "FAL_KONTEXT_AUTH"
ENV_TOKEN = "FAL_KONTEXT_TOKEN"


def refuse(field_name: str, value: object, problem: str) -> InvalidInputError:
    """The error for one bad option."""
    return InvalidInputError([FieldProblem(field_name, value, problem)])


def _as_number(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value)


def check_positive(field_name: str, value: object, *, allow_inf: bool = False) -> float:
    """``value`` as a float if it is a number > 0 (finite unless ``allow_inf``), else ``InvalidInputError``."""
    number = _as_number(value)
    if number is None or not number > 0 or (math.isinf(number) and not allow_inf):
        limit = "a number > 0" + (" (math.inf for none)" if allow_inf else ", finite")
        raise refuse(field_name, value, f"{value!r} is not {limit}")
    return number


def is_fal_host(url: str) -> bool:
    """Whether ``url`` is on one of fal's queue hosts."""
    return (urlsplit(url).hostname or "").lower() in FAL_QUEUE_HOSTS


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
        if (
            not isinstance(self.secret, str)
            or not self.secret
            or any(ord(c) < 32 or ord(c) == 127 for c in self.secret)
        ):
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
    if scheme == "bearer" and not (base_url and is_fal_host(base_url)):
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

    def to_httpx(self) -> httpx.Timeout:
        """The equivalent ``httpx.Timeout``."""
        return httpx.Timeout(self.read, connect=self.connect)


@dataclass(frozen=True, slots=True)
class PollSchedule:
    """Adaptive polling: quick at first, backing off to a cap.

    Attributes:
        initial: Seconds before the second status poll.
        factor: Each later interval is the previous one times this.
        maximum: Cap of the interval.

    Raises:
        InvalidInputError: not ``0 < initial <= maximum`` (finite) and ``factor >= 1``.
    """

    initial: float = 0.1
    factor: float = 1.5
    maximum: float = 2.0

    def __post_init__(self) -> None:
        check_positive("poll.initial", self.initial)
        check_positive("poll.maximum", self.maximum)
        if check_positive("poll.factor", self.factor) < 1:
            raise refuse("poll.factor", self.factor, "must be >= 1")
        if self.maximum < self.initial:
            raise refuse("poll.maximum", self.maximum, f"must be >= initial ({self.initial:g})")

    def next_interval(self, interval: float) -> float:
        """The interval after ``interval``."""
        return min(interval * self.factor, self.maximum)


@dataclass(frozen=True, slots=True)
class QueueSettings:
    """What the flows need from the client, all injectable.

    Attributes:
        base_url: The configured base URL (normalised, no trailing slash).
        retry: The retry policy.
        poll: The polling schedule.
        clock: Monotonic seconds (deadlines).
        random: Jitter source in [0, 1).
        stream_idle_timeout: A status stream silent for this long is treated as dropped (fal sends a keep-alive every
            15 s), and the waiter falls back to polling.
        recovery: How a submit whose answer was lost is recovered (``recovery``).
        requests_list: fal's request list for this client (``recovery.requests_list_url``), or None.
        wall: Wall-clock seconds (the request list's time window).
    """

    base_url: str
    retry: RetryPolicy
    poll: PollSchedule
    clock: Callable[[], float]
    random: Callable[[], float]
    stream_idle_timeout: float = 30.0
    recovery: RecoveryPolicy = DEFAULT_RECOVERY
    requests_list: str | None = None
    wall: Callable[[], float] = time.time


DEFAULT_TIMEOUTS = RequestTimeouts()
DEFAULT_RETRY = RetryPolicy()
DEFAULT_POLL = PollSchedule()

# httpx_args keys the client sets itself: each is refused with where it goes instead.
_OWN_ARGUMENTS = {
    "base_url": "pass base_url= to the client",
    "auth": "pass key= and auth= to the client (the Authorization header is the client's)",
}


@dataclass(frozen=True)
class HttpOptions:
    """The checked ``httpx_args``: what the client merges with its own settings, and the rest for httpx as is.

    Attributes:
        headers: Extra headers on every queue request (never ``Authorization``; ours win on a clash).
        cookies: Cookies for every queue request.
        follow_redirects: Whether queue requests follow redirects (httpx drops credentials on another origin).
        verify: TLS verification: True, a CA bundle path or an ``ssl.SSLContext``, shared by every connection.
        timeout: ``timeout`` given in ``httpx_args`` (then ``timeouts=`` must not be given).
        event_hooks: httpx event hooks (``request``/``response`` lists), for queue requests and downloads.
        extra: Every other ``httpx.Client``/``AsyncClient`` argument (``transport``, ``proxy``, ``limits``, ...).
    """

    headers: Mapping[str, str] = field(default_factory=dict, repr=False)
    cookies: Mapping[str, str] = field(default_factory=dict, repr=False)
    follow_redirects: bool = False
    verify: ssl.SSLContext | str | bool = True
    timeout: RequestTimeouts | None = None
    event_hooks: Mapping[str, list[Callable[..., Any]]] = field(default_factory=dict)
    # Not in the repr: a proxy URL may carry a password.
    extra: Mapping[str, Any] = field(default_factory=dict, repr=False)

    @classmethod
    def check(cls, httpx_args: Mapping[str, Any] | None, *, asynchronous: bool) -> HttpOptions:
        """Check ``httpx_args`` (for ``httpx.AsyncClient`` when ``asynchronous``, else ``httpx.Client``).

        Raises:
            InvalidInputError: an argument httpx does not take, one the client sets itself, or a bad value.
        """
        if httpx_args is None:
            return cls()
        if not isinstance(httpx_args, Mapping):
            raise refuse("httpx_args", type(httpx_args).__name__, "expected a dict of httpx.Client arguments")
        target = httpx.AsyncClient if asynchronous else httpx.Client
        accepted = _CLIENT_ARGUMENTS[target]
        for name in httpx_args:
            if name in _OWN_ARGUMENTS:
                raise refuse(f"httpx_args[{name!r}]", httpx_args[name], _OWN_ARGUMENTS[name])
            if name not in accepted:
                raise refuse(
                    f"httpx_args[{name!r}]", httpx_args[name], f"not an argument of {target.__name__}: see httpx's docs"
                )
        extra = {k: v for k, v in httpx_args.items() if k not in _MERGED}
        _check_extra(extra, asynchronous=asynchronous)
        timeout = httpx_args.get("timeout")
        return cls(
            headers=_checked_headers(httpx_args.get("headers", {})),
            cookies=_checked_cookies(httpx_args.get("cookies", {})),
            follow_redirects=_checked_bool("follow_redirects", httpx_args.get("follow_redirects", False)),
            verify=_checked_verify(httpx_args.get("verify", True)),
            timeout=None if "timeout" not in httpx_args else _checked_timeout(timeout),
            event_hooks=_checked_hooks(httpx_args.get("event_hooks", {}), asynchronous=asynchronous),
            extra=extra,
        )


# What httpx.Client and httpx.AsyncClient take (read once, from the installed httpx).
_CLIENT_ARGUMENTS = {
    target: frozenset(inspect.signature(target.__init__).parameters) - {"self"}
    for target in (httpx.Client, httpx.AsyncClient)
}
_MERGED = frozenset({"headers", "cookies", "follow_redirects", "verify", "timeout", "event_hooks"})


def has_control_character(text: str) -> bool:
    """Whether ``text`` holds a control character (CR, LF, NUL, ...), which would break or smuggle a header."""
    return any(ord(c) < 32 or ord(c) == 127 for c in text)


def _checked_headers(value: object) -> dict[str, str]:
    if not isinstance(value, (Mapping, httpx.Headers)):
        raise refuse("httpx_args['headers']", type(value).__name__, "expected a dict of header names to values")
    headers: dict[str, str] = {}
    for name, text in value.items():
        where = f"httpx_args['headers'][{name!r}]"
        if not isinstance(name, str) or not isinstance(text, str):
            raise refuse(where, text, "header names and values must be strings")
        if has_control_character(name) or has_control_character(text) or not name.strip():
            raise refuse(where, text, "a header name must not be empty; neither may contain a line break")
        if name.lower() in ("authorization", "proxy-authorization"):
            raise refuse(where, "***", "the Authorization header is the client's: pass key= and auth=")
        headers[name] = text
    return headers


def _checked_cookies(value: object) -> dict[str, str]:
    if isinstance(value, httpx.Cookies):
        value = dict(value.items())
    if not isinstance(value, Mapping) or not all(isinstance(k, str) and isinstance(v, str) for k, v in value.items()):
        raise refuse("httpx_args['cookies']", type(value).__name__, "expected a dict of cookie names to values")
    return dict(value)


def _checked_bool(name: str, value: object) -> bool:
    if not isinstance(value, bool):
        raise refuse(f"httpx_args[{name!r}]", value, "expected True or False")
    return value


def _checked_verify(value: object) -> ssl.SSLContext | str | bool:
    if not isinstance(value, (ssl.SSLContext, str, bool)):
        raise refuse(
            "httpx_args['verify']", type(value).__name__, "expected True, False, a CA bundle path or an SSLContext"
        )
    return value


def _checked_timeout(value: object) -> RequestTimeouts:
    if isinstance(value, httpx.Timeout):
        if value.connect is None or value.read is None:
            raise refuse("httpx_args['timeout']", value, "give both connect and read timeouts (or use timeouts=)")
        return RequestTimeouts(connect=value.connect, read=value.read)
    seconds = check_positive("httpx_args['timeout']", value)
    return RequestTimeouts(connect=seconds, read=seconds)


def _checked_hooks(value: object, *, asynchronous: bool) -> dict[str, list[Callable[..., Any]]]:
    where = "httpx_args['event_hooks']"
    if not isinstance(value, Mapping) or not set(value) <= {"request", "response"}:
        raise refuse(where, value, "expected {'request': [...], 'response': [...]}")
    hooks: dict[str, list[Callable[..., Any]]] = {}
    for kind, items in value.items():
        if not isinstance(items, (list, tuple)) or not all(callable(hook) for hook in items):
            raise refuse(f"{where}[{kind!r}]", items, "expected a list of functions")
        if asynchronous and not all(inspect.iscoroutinefunction(hook) for hook in items):
            raise refuse(f"{where}[{kind!r}]", items, "AsyncKontext needs coroutine functions (async def)")
        hooks[kind] = list(items)
    return hooks


def _check_extra(extra: Mapping[str, Any], *, asynchronous: bool) -> None:
    transport_type = httpx.AsyncBaseTransport if asynchronous else httpx.BaseTransport
    if "transport" in extra and not isinstance(extra["transport"], transport_type):
        raise refuse(
            "httpx_args['transport']", type(extra["transport"]).__name__, f"expected an {transport_type.__name__}"
        )
    if "limits" in extra and not isinstance(extra["limits"], httpx.Limits):
        raise refuse("httpx_args['limits']", extra["limits"], "expected an httpx.Limits")
    for name in ("http1", "http2", "trust_env"):
        if name in extra:
            _checked_bool(name, extra[name])
    if extra.get("http2") and importlib.util.find_spec("h2") is None:
        raise refuse("httpx_args['http2']", True, "HTTP/2 needs the h2 package: pip install 'httpx[http2]'")


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
    http: HttpOptions
    recovery: RecoveryPolicy = DEFAULT_RECOVERY
    requests_list: str | None = None
    auth_scheme: AuthScheme = "key"

    @classmethod
    def build(  # noqa: PLR0913 - one keyword per client option, as the clients take them
        cls,
        *,
        key: str | None,
        auth: AuthScheme | Credentials | None,
        base_url: str | None,
        timeouts: RequestTimeouts | None,
        retry: RetryPolicy,
        poll: PollSchedule,
        wait_timeout: float | None,
        start_timeout: float | None,
        stream_status: bool,
        max_image_bytes: int,
        clock: Callable[[], float] | None,
        random_source: Callable[[], float] | None,
        stream_idle_timeout: float,
        http: HttpOptions,
        recovery: RecoveryPolicy = DEFAULT_RECOVERY,
    ) -> ClientConfig:
        """Resolve arguments and environment variables into a checked config.

        Raises:
            InvalidInputError: a bad option (named), e.g. a base URL, auth scheme, timeout or size.
        """
        url = _base_url(base_url)
        for name, value, kind in (
            ("timeouts", timeouts, RequestTimeouts),
            ("retry", retry, RetryPolicy),
            ("poll", poll, PollSchedule),
            ("recovery", recovery, RecoveryPolicy),
        ):
            if value is not None and not isinstance(value, kind):
                raise refuse(name, value, f"expected a {kind.__name__}")
        if timeouts is not None and http.timeout is not None:
            raise refuse("httpx_args['timeout']", http.timeout, "give either timeouts= or httpx_args['timeout']")
        if not isinstance(max_image_bytes, int) or isinstance(max_image_bytes, bool) or max_image_bytes <= 0:
            raise refuse("max_image_bytes", max_image_bytes, "expected a whole number of bytes > 0")
        scheme, credentials = _credentials(key, auth, url)
        return cls(
            url,
            credentials,
            timeouts or http.timeout or DEFAULT_TIMEOUTS,
            retry,
            poll,
            None
            if wait_timeout is None
            else _finite_or_none(check_positive("wait_timeout", wait_timeout, allow_inf=True)),
            None if start_timeout is None else check_positive("start_timeout", start_timeout),
            _checked_bool("stream_status", stream_status),
            max_image_bytes,
            clock or time.monotonic,
            random_source or random.random,
            check_positive("stream_idle_timeout", stream_idle_timeout),
            http,
            recovery,
            _requests_list(url, credentials, recovery),
            scheme,
        )

    def require_credentials(self) -> Credentials:
        """The credentials, for a request that needs them.

        Raises:
            MissingCredentialsError: there are none; the message names the variable to set.
        """
        if self.credentials is not None:
            return self.credentials
        raise missing_credentials(self.auth_scheme, self.base_url)

    def settings(self) -> QueueSettings:
        """The settings the queue flows run with."""
        return QueueSettings(
            self.base_url,
            self.retry,
            self.poll,
            self.clock,
            self.random,
            self.stream_idle_timeout,
            self.recovery,
            self.requests_list,
        )

    def wait_deadline(self, timeout: float | None) -> float | None:
        """The wait timeout to use: ``timeout`` if given (``math.inf`` = none), else the client's.

        Raises:
            InvalidInputError: ``timeout`` is not a number > 0.
        """
        if timeout is None:
            return self.wait_timeout
        return _finite_or_none(check_positive("timeout", timeout, allow_inf=True))

    def headers(self) -> dict[str, str]:
        """Headers of every queue request besides Authorization: the caller's, then our User-Agent unless given."""
        headers = dict(self.http.headers)
        if not any(name.lower() == "user-agent" for name in headers):
            headers["User-Agent"] = f"fal-kontext/{__version__} (python)"
        return headers


def _requests_list(base_url: str, credentials: Credentials | None, recovery: RecoveryPolicy) -> str | None:
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


def _base_url(base_url: str | None) -> str:
    if base_url is not None and not isinstance(base_url, str):
        raise refuse("base_url", base_url, "expected a string, e.g. https://queue.fal.run")
    chosen = (os.environ.get(ENV_BASE_URL) or FAL_QUEUE_URL) if base_url is None else base_url
    try:
        return normalise_base_url(chosen)
    except ValueError as err:
        raise refuse("base_url", chosen, str(err)) from None


def _credentials(
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
