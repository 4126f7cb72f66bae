"""The command's log: fal_kontext's messages (``-v``, ``FAL_KONTEXT_LOG_LEVEL``) and the HTTP stack's (``-vv``) on
stderr, every credential of the environment redacted from every line."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import TextIO

from fal_kontext import Credentials
from fal_kontext.config import redact
from fal_kontext.log_redaction import secret_forms

from .exit_codes import EXIT_USAGE, CommandError

__all__ = ["ENV_LOG_LEVEL", "RedactingFormatter", "configure_logging", "secrets_of"]

ENV_LOG_LEVEL = "FAL_KONTEXT_LOG_LEVEL"


def secrets_of(environ: Mapping[str, str]) -> tuple[str, ...]:
    """Every credential the environment gives the client (``Credentials.from_env``, either scheme), longest first:
    what the command's log and header output must never show."""
    found: set[str] = set()
    for scheme in ("key", "bearer"):
        try:
            credentials = Credentials.from_env(scheme, environ)
        except ValueError:  # a malformed variable: the client refuses it before any request, naming it
            continue
        if credentials is not None:
            found.update(secret_forms(str(credentials.secret)))
    return tuple(sorted(found, key=len, reverse=True))


class RedactingFormatter(logging.Formatter):
    """A log formatter that replaces every credential in the finished line with ``***``: httpx/httpcore's debug
    lines (``-vv``) quote response headers as sent, and a server or proxy may echo the key in one."""

    def __init__(self, fmt: str, secrets: Sequence[str]) -> None:
        super().__init__(fmt)
        self.secrets = tuple(secrets)

    def format(self, record: logging.LogRecord) -> str:
        """The formatted record, redacted."""
        text = super().format(record)
        for secret in self.secrets:
            text = redact(text, secret)
        return text


def configure_logging(verbosity: int, environ: Mapping[str, str], stream: TextIO) -> None:
    """Send fal_kontext's log to ``stream``: ``-v`` (or ``FAL_KONTEXT_LOG_LEVEL``) ours and one line per HTTP
    request (httpx), ``-vv`` also httpx/httpcore's debug. Nothing else is touched (the root logger stays as is).
    Every credential of ``environ`` is redacted from every line.

    Raises:
        CommandError: ``FAL_KONTEXT_LOG_LEVEL`` is not a level name.
    """
    named = environ.get(ENV_LOG_LEVEL, "").strip().upper()
    if named and not isinstance(logging.getLevelName(named), int):
        raise CommandError(f"{ENV_LOG_LEVEL}={named.lower()}: not a level (debug, info, warning, error)", EXIT_USAGE)
    ours = logging.DEBUG if verbosity >= 1 else logging.getLevelName(named) if named else logging.WARNING
    levels = {"fal_kontext": ours}
    if verbosity >= 1:
        levels["httpx"] = logging.INFO if verbosity == 1 else logging.DEBUG
    if verbosity >= 2:
        levels["httpcore"] = logging.DEBUG
    handler = logging.StreamHandler(stream)
    handler.setFormatter(RedactingFormatter("%(levelname)s %(name)s: %(message)s", secrets_of(environ)))
    for name, level in levels.items():
        logger = logging.getLogger(name)
        logger.setLevel(level)
        logger.addHandler(handler)
        logger.propagate = False
