"""No credential in the log records the client causes, whoever configured logging.

At DEBUG, httpcore logs each response's headers as they arrived (``receive_response_headers.complete
return_value=(..., [(b'x-echo', b'Key ...')])``) and hpack each header it codes: a server or relay that echoes the
``Authorization`` value would put the key in an application's log (``logging.basicConfig(level=logging.DEBUG)`` is
common in services). One filter, attached to the loggers of the HTTP stack (``httpx``, ``httpcore.*``,
``hpack.*``, ``h2.*``) and to ``fal_kontext``, replaces the credentials of every live client with ``***`` in each
record they log, before any handler (the application's, the root's, pytest's) sees it.

Cost: a logger runs its filters only for a record it is enabled for (``Logger.isEnabledFor`` is checked before a
record exists, and httpcore builds its trace text only at DEBUG), so with logging off the filter is never called.
"""

from __future__ import annotations

import logging
import threading
import weakref

__all__ = ["SECRETS_FILTER", "SecretsFilter", "redact_records_of", "secret_forms"]

# The loggers of the HTTP stack the client drives, named before their modules are imported (a logger made by name
# now is the one the module gets later: h2 and hpack are imported with the first HTTP/2 connection).
_LOGGER_NAMES = (
    "fal_kontext",
    "httpx",
    "httpcore",
    "httpcore.connection",
    "httpcore.http11",
    "httpcore.http2",
    "httpcore.proxy",
    "httpcore.socks",
    "hpack",
    "hpack.hpack",
    "hpack.table",
    "h2",
    "h2.connection",
)
_PREFIXES = tuple(sorted({name.split(".")[0] for name in _LOGGER_NAMES}))
# The parts of a "key_id:key_secret" key that are long enough to be secret on their own.
_SHORTEST_PART = 8


def secret_forms(secret: str) -> tuple[str, ...]:
    """What of ``secret`` must never be shown: the whole, and each long part of a ``key_id:key_secret`` key."""
    parts = [part for part in secret.split(":") if len(part) >= _SHORTEST_PART] if ":" in secret else []
    return tuple(sorted({secret, *parts}, key=len, reverse=True))


class SecretsFilter(logging.Filter):
    """Replaces the secrets of live clients in every record it sees with ``***`` (never drops a record)."""

    def __init__(self) -> None:
        super().__init__()
        self._lock = threading.Lock()
        # A client's secrets live as long as the client: forgotten when it is garbage-collected.
        self._owners: weakref.WeakKeyDictionary[object, tuple[str, ...]] = weakref.WeakKeyDictionary()

    def add(self, owner: object, secret: str) -> None:
        """Redact ``secret`` from records for as long as ``owner`` (a client) lives."""
        with self._lock:
            self._owners[owner] = secret_forms(secret)

    def secrets(self) -> tuple[str, ...]:
        """Every secret now redacted, longest first."""
        with self._lock:
            found = {secret for forms in self._owners.values() for secret in forms}
        return tuple(sorted(found, key=len, reverse=True))

    def filter(self, record: logging.LogRecord) -> bool:
        """Redact the record's message (formatted with its arguments) in place; keep the record."""
        secrets = self.secrets()
        if not secrets:
            return True
        try:
            message = record.getMessage()
        except (TypeError, ValueError):  # a record whose arguments do not fit its format: shown as logging shows it
            return True
        if any(secret in message for secret in secrets):
            for secret in secrets:
                message = message.replace(secret, "***")
            record.msg, record.args = message, None
        return True


SECRETS_FILTER = SecretsFilter()
_installed = threading.Lock()


def _attach() -> None:
    """Attach the filter to the HTTP stack's loggers, those named above and any other already made under them."""
    manager = logging.Logger.manager
    names = set(_LOGGER_NAMES) | {
        name
        for name, logger in list(manager.loggerDict.items())
        if isinstance(logger, logging.Logger) and name.split(".")[0] in _PREFIXES
    }
    for name in names:
        logger = logging.getLogger(name)
        if SECRETS_FILTER not in logger.filters:
            logger.addFilter(SECRETS_FILTER)


def redact_records_of(owner: object, secret: str | None) -> None:
    """Keep ``secret`` out of every log record of the HTTP stack and of ``fal_kontext`` while ``owner`` lives."""
    if not secret:
        return
    with _installed:
        _attach()
    SECRETS_FILTER.add(owner, secret)
