"""Which server the contract suite checks, with what credentials, and how many paid calls it may make.

By default the suite starts the local emulator. Given a base URL (`--contract-base-url` or
`CONTRACT_BASE_URL`) it checks that server instead: the live fal API, an aggregator, a user's proxy.
A remote server costs money per job, so every submit to it spends one unit of a budget
(`--max-paid-calls`, default 2) and a test that would go over it is skipped, not run.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit

from fal_kontext.config import ENV_TOKEN, AuthScheme, Credentials
from fal_kontext.spec import app_of, operation_path

DEFAULT_ENDPOINT = (
    "fal-ai/flux-pro/kontext"  # the cheapest: $0.04 per image (https://fal.ai/models/fal-ai/flux-pro/kontext)
)
DEFAULT_MAX_PAID_CALLS = 2


class BudgetExhausted(Exception):
    """A paid call would go over the run's budget."""


@dataclass
class PaidCallBudget:
    """Counts submits to a server that may bill them; refuses the one that would go over the limit."""

    limit: int
    spent: int = 0
    spent_on: list[str] = field(default_factory=list)

    def spend(self, what: str) -> None:
        """Record one paid call. Raises BudgetExhausted instead when the budget is used up."""
        if self.spent >= self.limit:
            raise BudgetExhausted(
                f"the paid-call budget of {self.limit} is used up (spent on: {', '.join(self.spent_on)})"
            )
        self.spent += 1
        self.spent_on.append(what)


@dataclass(frozen=True)
class ContractTarget:
    """The server under test."""

    base_url: str
    auth: AuthScheme
    secret: str
    remote: bool
    endpoint: str = DEFAULT_ENDPOINT
    verify: Any = True

    @property
    def authorization(self) -> str:
        return f"{'Key' if self.auth == 'key' else 'Bearer'} {self.secret}"

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": self.authorization}

    def url(self, path: str) -> str:
        """``path`` under the base URL, one slash between them however either is written (never ``//``)."""
        return join_url(self.base_url, path)

    def queue_url(self, operation_id: str, request_id: str) -> str:
        """The URL of a queue operation for a request of this target's endpoint (see ``queue_path``)."""
        return self.url(queue_path(operation_id, self.endpoint, request_id))

    def __repr__(self) -> str:  # never show the secret
        return f"ContractTarget(base_url={self.base_url!r}, auth={self.auth!r}, remote={self.remote})"


def remote_secret(
    auth: AuthScheme, environ: Mapping[str, str] | None = None, *, base_url: str | None = None
) -> tuple[str | None, str]:
    """The credential for a remote target, read as the client reads it (``Credentials.from_env``), and the
    variable(s) to set when there is none."""
    credentials = Credentials.from_env(auth, environ, base_url=base_url)
    if auth == "bearer":
        return (credentials.secret if credentials else None), ENV_TOKEN
    return (credentials.secret if credentials else None), "FAL_KEY (or FAL_KEY_ID + FAL_KEY_SECRET)"


def join_url(base: str, path: str) -> str:
    """``base`` and ``path`` joined by exactly one slash."""
    return base.rstrip("/") + "/" + path.lstrip("/")


def with_trailing_slash(url: str) -> str:
    """``url`` with its path ending in one slash (the form fal's own SDK calls), its query kept."""
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path=parts.path.rstrip("/") + "/"))


def queue_path(operation_id: str, endpoint_id: str, request_id: str) -> str:
    """The spec's path of a queue operation for a request submitted to ``endpoint_id``: ``{request_id}`` filled in,
    and the app's segments where the path template names them (``{owner}/{app}``, the first two segments of the
    endpoint id: status, result and cancel live under the app, https://fal.ai/docs/api-reference/inference-api)."""
    owner, _, app = app_of(endpoint_id).partition("/")
    values = {"request_id": quote(request_id, safe=""), "owner": owner, "app": app}
    return operation_path(operation_id).format_map(values)
