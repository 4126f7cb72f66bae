"""The HTTP plumbing both executors share: the httpx side of the protocol's commands.

The checked ``httpx_args`` (``HttpOptions``); the httpx clients of one Kontext and how a command becomes an
``httpx.Request`` and a response an ``Answer`` with the secret redacted (``Connections``); what an answer cut off in
its body still gave (``Recording``); an httpx error as ``NoAnswer``. The protocol (``fal_kontext.protocol``) speaks in
commands and outcomes only; this module and the two executors are where httpx is.
"""

from __future__ import annotations

import functools
import importlib.util
import inspect
import itertools
import ssl
import zlib
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Generic, TypeVar

import httpx
from fal_kontext_api.client import AuthenticatedClient, Client

from .config import ClientConfig, RequestTimeouts, redact, user_agent
from .option_checks import check_bool, check_positive, has_control_character, refuse
from .protocol.commands import Answer, Call, Download, HttpGet, NoAnswer, OpenStream, Send
from .protocol.hosts import may_send_key

__all__ = [
    "CERTIFICATE_ADVICE",
    "JOBS_PER_POOL",
    "Connections",
    "HttpOptions",
    "Recording",
    "no_answer",
    "record",
]

_HttpT = TypeVar("_HttpT", httpx.Client, httpx.AsyncClient)
# What a generated ``parse_response`` becomes once bound to its generated client.
Parser = Callable[[httpx.Response], object]
# Ours: with pools sized to the load, a pool holds at most this many flows under way before another is opened.
# httpx's pool bookkeeping per request grows with the connections of one pool (docs/benchmarks.md): small pools
# keep it flat. Measured at 1,000 jobs at once: 5 a pool cost 1.23 times the cheapest bare reader's CPU, 1 a pool
# 1.10 times (and 1.14 times its memory); a pool left idle is reused by the next job.
JOBS_PER_POOL = 1
# Response headers that describe the body as sent; dropped when a redacted copy of the body is parsed.
_BODY_HEADERS = ("content-encoding", "content-length", "transfer-encoding")


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
            follow_redirects=check_bool("httpx_args['follow_redirects']", httpx_args.get("follow_redirects", False)),
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
            check_bool(f"httpx_args[{name!r}]", extra[name])
    if extra.get("http2") and importlib.util.find_spec("h2") is None:
        raise refuse("httpx_args['http2']", True, "HTTP/2 needs the h2 package: pip install 'httpx[http2]'")


class Recording(httpx.SyncByteStream, httpx.AsyncByteStream):
    """A response body stream that keeps what arrives, so that an answer cut off in its body still gives what came
    (a submit's request id may be in it). Wrap ``response.stream`` before reading the body."""

    def __init__(self, inner: httpx.SyncByteStream | httpx.AsyncByteStream) -> None:
        self._inner = inner
        self._chunks: list[bytes] = []

    def __iter__(self) -> Iterator[bytes]:
        assert isinstance(self._inner, httpx.SyncByteStream)
        for chunk in self._inner:
            self._chunks.append(chunk)
            yield chunk

    async def __aiter__(self) -> AsyncIterator[bytes]:
        assert isinstance(self._inner, httpx.AsyncByteStream)
        async for chunk in self._inner:
            self._chunks.append(chunk)
            yield chunk

    def close(self) -> None:
        if isinstance(self._inner, httpx.SyncByteStream):
            self._inner.close()

    async def aclose(self) -> None:
        if isinstance(self._inner, httpx.AsyncByteStream):
            await self._inner.aclose()

    def received(self, content_encoding: str | None) -> bytes:
        """The body bytes that arrived, decoded when the encoding is identity, gzip or deflate (else empty)."""
        raw = b"".join(self._chunks)
        encoding = (content_encoding or "identity").strip().lower()
        if encoding == "identity":
            return raw
        if encoding not in ("gzip", "deflate"):
            return b""
        try:  # a cut-off stream decodes as far as it goes
            return zlib.decompressobj(wbits=31 if encoding == "gzip" else 15).decompress(raw)
        except zlib.error:
            return b""


def record(response: httpx.Response) -> Recording:
    """Keep what arrives of ``response``'s body (see ``Recording``); call before reading it."""
    recording = Recording(response.stream)
    response.stream = recording
    return recording


# What a certificate that does not verify (self-signed, another name, an unknown CA) needs: the CA to be trusted.
# httpx reads SSL_CERT_FILE (and SSL_CERT_DIR) when it builds its TLS context (https://www.python-httpx.org/environment_variables/).
CERTIFICATE_ADVICE = (
    "the server's TLS certificate did not verify; asking again cannot help, so it was not retried. If you trust "
    "the server, point SSL_CERT_FILE at its CA bundle (the command line, and Python), or in Python pass "
    "httpx_args={'verify': '/path/to/ca.pem'} (verify=) to the client"
)


def _certificate_rejected(error: BaseException) -> bool:
    """Whether ``error`` was caused by a certificate that did not verify (``ssl.SSLCertVerificationError``)."""
    seen: set[int] = set()
    cause: BaseException | None = error
    while cause is not None and id(cause) not in seen:
        if isinstance(cause, ssl.SSLCertVerificationError):
            return True
        seen.add(id(cause))
        cause = cause.__cause__ or cause.__context__
    return False


def no_answer(error: httpx.HTTPError) -> NoAnswer:
    """An httpx exception as ``NoAnswer``; ``reached_server`` is False only when nothing can have been sent."""
    never_sent = isinstance(
        error, (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout, httpx.UnsupportedProtocol)
    )
    timed_out = isinstance(error, httpx.TimeoutException)
    text = f"{type(error).__name__}: {str(error) or 'no detail'}"
    if _certificate_rejected(error):
        return NoAnswer(f"{text}; {CERTIFICATE_ADVICE}", reached_server=False, certificate_rejected=True)
    return NoAnswer(text, reached_server=not never_sent, timed_out=timed_out)


def _timeout(timeouts: RequestTimeouts, read: float | None, at_most: float | None) -> httpx.Timeout:
    """The httpx timeout of one request: ``read`` (the client's by default), both it and connect no longer than
    ``at_most`` (what is left of the verb's deadline)."""
    connect, chosen = timeouts.connect, timeouts.read if read is None else read
    if at_most is not None:
        at_most = max(at_most, 0.001)  # a deadline already past still gets its one quick try
        connect, chosen = min(connect, at_most), min(chosen, at_most)
    return httpx.Timeout(chosen, connect=connect)


def _shorter(timeouts: RequestTimeouts, at_most: float | None) -> bool:
    """Whether what is left of a verb's deadline cuts the client's own timeouts short (else the client's stand,
    and the request is built without a timeout of its own: the common case costs nothing)."""
    return at_most is not None and at_most < max(timeouts.connect, timeouts.read)


class Connections(Generic[_HttpT]):
    """The httpx clients of one Kontext, and how its commands become requests and its responses answers.

    Requests are spread over small connection pools (one per base URL and pool index, made when first used, sharing
    one TLS context): ``pools`` of them, taken in turn, or, with ``pools=None``, as many as the load needs: each new
    job goes to the pool with the fewest flows under way, or to a new pool once every pool has ``JOBS_PER_POOL``;
    downloads, storage, the synchronous endpoint and the request list go through one
    client without credentials, the command carrying what it sends.

    Args:
        config: The client's configuration.
        http: Its checked ``httpx_args``.
        pools: How many connection pools, or None to size them to the load.
        open_generated: The generated client's httpx client (sync or async).
        new_client: A plain httpx client of these arguments.
        default_limits: The connection limits of each pool unless ``httpx_args`` sets them.
    """

    def __init__(  # noqa: PLR0913 - the client's settings and its two factories, each a keyword
        self,
        config: ClientConfig,
        http: HttpOptions,
        *,
        pools: int | None,
        open_generated: Callable[[AuthenticatedClient | Client], _HttpT],
        new_client: Callable[..., _HttpT],
        default_limits: httpx.Limits | None = None,
    ) -> None:
        self._config = config
        self._http = http
        self._pools = pools
        self._pool_counter = itertools.count()
        self._under_way: list[int] = [0]  # flows running on each pool (pools=None)
        self._open_generated: Callable[[AuthenticatedClient | Client], _HttpT] = open_generated
        self._new_client: Callable[..., _HttpT] = new_client
        self._default_limits = default_limits
        self._secret = config.credentials.secret if config.credentials else None
        # A key is sent in a header, so it is ASCII: its bytes are what an echo of it would hold.
        self._secret_bytes = self._secret.encode() if self._secret else b""
        self._clients: dict[tuple[str, int], tuple[AuthenticatedClient | Client, _HttpT]] = {}
        self._downloader: _HttpT | None = None
        self.headers = dict(http.headers)
        if not any(name.lower() == "user-agent" for name in self.headers):
            self.headers["User-Agent"] = user_agent()

    def next_pool(self) -> int:
        """The pool of a new job: in turn among ``pools``, or the least busy one (a new one when all are full)."""
        if self._pools is not None:
            return next(self._pool_counter) % self._pools
        under_way = self._under_way
        pool = min(range(len(under_way)), key=under_way.__getitem__)
        if under_way[pool] >= JOBS_PER_POOL:
            under_way.append(0)
            pool = len(under_way) - 1
        return pool

    def started(self, pool: int) -> None:
        """A flow started on ``pool``."""
        if self._pools is None:
            self._under_way[pool] += 1

    def ended(self, pool: int) -> None:
        """A flow on ``pool`` ended."""
        if self._pools is None:
            self._under_way[pool] -= 1

    @functools.cached_property
    def _verify(self) -> ssl.SSLContext | bool:
        """One TLS context for every connection and download: building one per httpx client costs milliseconds."""
        verify = self._http.verify
        if isinstance(verify, ssl.SSLContext) or verify is False:
            return verify
        trust_env = bool(self._http.extra.get("trust_env", True))
        return httpx.create_ssl_context(verify=verify, trust_env=trust_env)

    def _httpx_args(self) -> dict[str, Any]:
        args = dict(self._http.extra)
        if self._http.event_hooks:
            args["event_hooks"] = {kind: list(hooks) for kind, hooks in self._http.event_hooks.items()}
        if self._default_limits is not None:
            args.setdefault("limits", self._default_limits)
        return args

    def _generated_client(self, base_url: str) -> AuthenticatedClient | Client:
        """The generated client for ``base_url``: it builds the httpx client (credentials, headers, timeouts, TLS)
        and is what the generated ``parse_response`` takes."""
        config = self._config
        common: dict[str, Any] = {
            "base_url": base_url,
            "headers": self.headers,
            "cookies": dict(self._http.cookies),
            "timeout": _timeout(config.timeouts, None, None),
            "verify_ssl": self._verify,
            "follow_redirects": self._http.follow_redirects,
            "httpx_args": self._httpx_args(),
        }
        if config.credentials is None:
            return Client(**common)
        return AuthenticatedClient(token=config.credentials.secret, prefix=config.credentials.prefix, **common)

    def _connection(self, base_url: str, pool: int) -> tuple[AuthenticatedClient | Client, _HttpT]:
        key = (base_url, pool)
        found = self._clients.get(key)
        if found is None:
            generated = self._generated_client(base_url)
            found = self._clients[key] = (generated, self._open_generated(generated))
        return found

    def _download_client(self) -> _HttpT:
        if self._downloader is None:
            args = self._httpx_args()
            args.update(timeout=_timeout(self._config.timeouts, None, None), follow_redirects=True, verify=self._verify)
            self._downloader = self._new_client(**args)
        return self._downloader

    def _user_agent(self) -> dict[str, str]:
        return {name: value for name, value in self.headers.items() if name.lower() == "user-agent"}

    def prepare(
        self, command: Call | Download | HttpGet | Send | OpenStream, pool: int
    ) -> tuple[_HttpT, httpx.Request, Parser | None]:
        """The client to send ``command`` with, its request, and how to parse the answer."""
        timeouts = self._config.timeouts
        if isinstance(command, Send):
            # The download client: no credentials or headers of its own; the command carries what it sends.
            http = self._download_client()
            request = http.build_request(
                command.method,
                command.url,
                headers={**self._user_agent(), **command.headers},
                content=command.content,
                timeout=httpx.Timeout(command.read_timeout, connect=timeouts.connect),  # None: the run's whole length
            )
            return http, request, None
        if isinstance(command, Download):
            http = self._download_client()
            if _shorter(timeouts, command.timeout):
                return (
                    http,
                    http.build_request("GET", command.url, timeout=_timeout(timeouts, None, command.timeout)),
                    None,
                )
            return http, http.build_request("GET", command.url), None
        if isinstance(command, HttpGet):
            return self._lookup_request(command)
        generated, http = self._connection(command.base_url, pool)
        # The generated path joined to the (normalised, slash-free) base here: httpx then parses one absolute URL
        # instead of parsing the path and merging it into its base_url (two more URL parses per request).
        request_args = {**command.request, "url": command.base_url + command.request["url"]}
        if isinstance(command, Call):
            parse = command.parse
            if _shorter(timeouts, command.timeout):
                request_args["timeout"] = _timeout(timeouts, None, command.timeout)
            return (
                http,
                http.build_request(**request_args),
                lambda response: parse(client=generated, response=response),
            )
        request_args["headers"] = {**command.request.get("headers", {}), "Accept": "text/event-stream"}
        return http, http.build_request(**request_args, timeout=_timeout(timeouts, command.read_timeout, None)), None

    def _lookup_request(self, command: HttpGet) -> tuple[_HttpT, httpx.Request, None]:
        """The request-list GET of recovery: the key only where ``may_send_key`` allows (fal's API host for fal's
        queue, or the configured base's own origin). It goes through the download client, whose redirects httpx
        follows without the Authorization header when they leave the origin."""
        config = self._config
        http = self._download_client()
        request = http.build_request(
            "GET",
            command.url,
            params=command.params,
            headers=self._user_agent(),
            timeout=_timeout(config.timeouts, None, command.timeout),
        )
        if config.credentials is not None and may_send_key(command.url, config.base_url):
            # set on the request, whose repr shows no headers: no local of this frame holds the key
            request.headers["Authorization"] = config.credentials.authorization
        return http, request, None

    def answer(self, response: httpx.Response, parse: Parser | None) -> Answer:
        """The answer to a request (its body read): the secret redacted (should a server echo it), then parsed by
        the generated ``parse_response``; a body it cannot read (an HTML 502 from a gateway) is judged by its status."""
        if self._secret and (
            self._secret_bytes in response.content or any(self._secret_bytes in v for _, v in response.headers.raw)
        ):
            headers = [
                (name, redact(value, self._secret))
                for name, value in response.headers.multi_items()
                if name.lower() not in _BODY_HEADERS
            ]
            content = response.content.replace(self._secret_bytes, b"***")
            response = httpx.Response(response.status_code, headers=headers, content=content, request=response.request)
        parsed: object | None = None
        if parse is not None:
            try:
                parsed = parse(response)
            except (ValueError, KeyError, TypeError):
                parsed = None
        return Answer(response.status_code, response.headers, response.content, parsed)

    def no_answer(self, error: httpx.HTTPError) -> NoAnswer:
        """An httpx exception as ``NoAnswer``, the secret redacted from its text (should a proxy have quoted it)."""
        outcome = no_answer(error)
        if self._secret and self._secret in outcome.error:
            return replace(outcome, error=redact(outcome.error, self._secret))
        return outcome

    def cut_off(self, error: httpx.HTTPError, response: httpx.Response, recording: Recording) -> NoAnswer:
        """``NoAnswer`` for an answer whose body was cut off: ``no_answer``'s, with its status, headers and what of
        its body arrived, the secret redacted from all of them should the server (or a proxy) echo it."""
        lost = self.no_answer(error)
        body = recording.received(response.headers.get("content-encoding"))
        if self._secret:
            body = body.replace(self._secret_bytes, b"***")
        headers = {name: redact(value, self._secret) for name, value in response.headers.items()}
        return NoAnswer(lost.error, True, lost.timed_out, response.status_code, headers, body)

    def opened(self) -> list[_HttpT]:
        """Every httpx client built so far (none is built just to be closed), forgotten here."""
        opened = [http for _, http in self._clients.values()]
        if self._downloader is not None:
            opened.append(self._downloader)
        self._clients.clear()
        self._downloader = None
        return opened
