"""fal's hosts, and where a key or a token may be sent: the one place that knows them.

fal's queue is at https://queue.fal.run (its backup host queue.falrun.com), its synchronous endpoint at
https://fal.run (https://docs.fal.ai/model-endpoints/synchronous-requests), its Platform API, with the request list,
at https://api.fal.ai (https://fal.ai/docs/platform-apis/v1/models/requests/by-endpoint), its storage token at
https://rest.fal.ai and its CDN at https://v3.fal.media (fal_client's ``REST_URL``/``CDN_URL``,
https://github.com/fal-ai/fal/blob/main/projects/fal_client/src/fal_client/client.py).

The key goes to the configured base URL, and to fal's own other hosts only when the base URL is fal's queue. An
upload token goes to the configured storage hosts and to fal's own hosts over https. A loopback base URL (the
emulator) serves fal's storage, request list and synchronous endpoint under itself (docs/emulator.md).
"""

from __future__ import annotations

import functools
import ipaddress
from typing import NamedTuple
from urllib.parse import urlsplit

__all__ = [
    "FAL_API_URL",
    "FAL_CDN_URL",
    "FAL_QUEUE_HOSTS",
    "FAL_QUEUE_URL",
    "FAL_REST_URL",
    "FAL_SYNC_URL",
    "Origin",
    "is_fal_queue",
    "is_loopback",
    "may_send_key",
    "normalise_base_url",
    "origin",
    "requests_list_base",
    "token_may_go_to",
]

FAL_QUEUE_URL = "https://queue.fal.run"
FAL_QUEUE_HOSTS = frozenset({"queue.fal.run", "queue.falrun.com"})
FAL_SYNC_URL = "https://fal.run"
FAL_API_URL = "https://api.fal.ai"
FAL_REST_URL = "https://rest.fal.ai"
FAL_CDN_URL = "https://v3.fal.media"
# Hosts fal's storage answers may name (fal's CDN hosts are v3.fal.media, v3b.fal.media, ...).
_FAL_DOMAINS = ("fal.media", "fal.ai", "fal.run")


class Origin(NamedTuple):
    """Scheme, lower-case host and port (the default port written out): what "the same server" compares."""

    scheme: str
    host: str
    port: int


@functools.lru_cache(maxsize=64)
def origin(url: str) -> Origin:
    """The origin of ``url``. Cached: the configured bases are few and asked about on every request."""
    parts = urlsplit(url)
    return Origin(parts.scheme, (parts.hostname or "").lower(), parts.port or (443 if parts.scheme == "https" else 80))


def is_loopback(url: str) -> bool:
    """Whether ``url`` is on this machine (``localhost`` or a loopback address): the emulator."""
    host = origin(url).host
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def is_fal_queue(url: str) -> bool:
    """Whether ``url`` is on fal's queue host."""
    return origin(url).host in FAL_QUEUE_HOSTS


def normalise_base_url(url: str) -> str:
    """``url`` without a trailing slash; raises ValueError unless it is an absolute http(s) URL without query."""
    parts = urlsplit(url.strip())
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError(f"base URL {url!r} is not an absolute http(s) URL, e.g. https://queue.fal.run")
    if parts.query or parts.fragment:
        raise ValueError(f"base URL {url!r} must not have a query or fragment")
    return f"{parts.scheme}://{parts.netloc}{parts.path.rstrip('/')}"


def may_send_key(url: str, configured_base: str) -> bool:
    """Whether the client's key may go to ``url``: the configured base's own origin, or fal's API host when the base
    is fal's queue (its request list)."""
    target = origin(url)
    if target == origin(configured_base):
        return True
    return target == origin(FAL_API_URL) and is_fal_queue(configured_base)


def requests_list_base(configured_base: str) -> str | None:
    """Where the request list is for a queue base URL: fal's API host for fal's queue, the base itself for a loopback
    emulator, else nowhere known (no aggregator documents one)."""
    if is_fal_queue(configured_base):
        return FAL_API_URL
    if is_loopback(configured_base):
        return configured_base
    return None


def token_may_go_to(url: str, storage_hosts: tuple[str, ...]) -> bool:
    """Whether an upload token may go to ``url``: the configured storage hosts, and fal's own hosts over https."""
    target = origin(url)
    if target in {origin(host) for host in storage_hosts}:
        return True
    return target.scheme == "https" and any(
        target.host == domain or target.host.endswith("." + domain) for domain in _FAL_DOMAINS
    )
