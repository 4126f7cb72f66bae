"""Where each queue call goes: the configured base URL, and the URLs the server returns after a submit.

fal says "use status_url, response_url, cancel_url; do not build these URLs yourself". The generated operations
build paths from the spec, relative to a base URL, so following a returned URL means choosing the base URL that
makes the spec's path land exactly on it. The rules:

- a returned URL on the configured origin is followed as is (with whatever path prefix it carries);
- a returned URL on fal's queue host while the configured base is elsewhere (an aggregator that passes fal's body
  through) is rewritten to the configured base: scheme, host and path prefix;
- a returned URL on any other host is not followed, so the key is never sent to a host the user did not configure;
  the configured base is used instead;
- a returned URL whose path is not the spec's path for that operation is not followed either.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from fal_kontext.spec import operation_module

from .hosts import is_fal_queue, origin

__all__ = ["base_for_returned_url"]


def base_for_returned_url(
    returned_url: str | None, *, operation_id: str, app: str, request_id: str, configured_base: str
) -> tuple[str, str | None]:
    """The base URL to call ``operation_id`` with, given the URL the server returned for it.

    Args:
        returned_url: ``status_url``, ``response_url`` or ``cancel_url`` from the server, or None.
        operation_id: The spec operation the URL is for (``get_request_status``, ...).
        app: The app of the request's endpoint (``owner/app``), under which the URL's path must lie.
        request_id: The request id.
        configured_base: The client's base URL (normalised).

    Returns:
        ``(base_url, reason)``: ``reason`` is None when the returned URL is followed as is, else a sentence saying
        why the configured base is used instead (worth a debug log line).
    """
    if not returned_url:
        return configured_base, "the server returned no URL"
    owner, _, name = app.partition("/")
    # The operation's path as its generated request builds it (each parameter quoted, "/" included).
    expected: str = operation_module(operation_id).request_kwargs(owner, name, request_id)["url"]
    # The usual answer, a URL under the configured base, is decided without parsing (a prefix of the base and "/"
    # fixes scheme and host; the rules below give the same base for it).
    stripped = returned_url.rstrip("/")
    if (
        returned_url.startswith(configured_base + "/")
        and stripped.endswith(expected)
        and not any(mark in returned_url for mark in "?#")
    ):
        return stripped[: -len(expected)], None
    parts = urlsplit(returned_url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        return configured_base, f"{returned_url!r} is not an absolute http(s) URL"
    path = parts.path.rstrip("/")
    if not path.endswith(expected):
        return configured_base, f"{returned_url!r} does not end with the spec's path {expected}"
    if origin(configured_base) != origin(returned_url):
        if is_fal_queue(returned_url):
            return configured_base, f"rewrote fal's host in {returned_url!r} to the configured base"
        return configured_base, f"{returned_url!r} is on another host; the key is only sent to the configured base"
    return f"{parts.scheme}://{parts.netloc}{path[: -len(expected)]}", None
