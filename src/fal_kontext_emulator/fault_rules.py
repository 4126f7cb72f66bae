"""Fault injection: make chosen operations answer 429/5xx, drop the connection, or answer late.

A rule targets an operation group (`submit`, `status`, `stream`, `result`, `cancel`, or `*`) or one
operationId, and holds either an exact sequence of faults for the next calls or a rate. The same rules are
written as text on the command line (`--fault submit=503,429:2,ok`) and as JSON in the admin API.

Text grammar, one rule: `OPERATION=TOKEN[,TOKEN...]` (a sequence) or `OPERATION@RATE=TOKEN[|TOKEN...]` (each
call fails with probability RATE, with one of the tokens picked at random) or `OPERATION~SECONDS` (added
latency on every call). TOKEN is `ok`, `drop` (close the connection before the request is handled),
`slow:SECONDS` (answer normally, that much later), or a status code with an optional suffix: `429:5`
(Retry-After 5), `503-noid` (no x-fal-request-id header), `502-nginx` (an ingress HTML page without
x-fal-request-id, which fal_client retries).

Forwarded-then-lost (the request IS handled, e.g. a job queued, and its answer is lost on the way back):
`drop-after` (close before answering), `lost:STATUS` (the answer replaced by that status fault, e.g.
`lost:503`, `lost:503-noid`, `lost:502-nginx`), `cut` (the real status and headers, including
x-fal-request-id, then half the body, then the connection closes).
"""

from __future__ import annotations

import dataclasses
import random
import re
from dataclasses import dataclass, field
from typing import Any, Literal

from fal_kontext_emulator.spec_document import shipped_operation_paths

FaultKind = Literal["status", "drop", "drop-after", "slow", "lost", "cut"]

# The groups a rule may name instead of an operationId: "submit" covers every submit endpoint of the spec,
# "sync" every call of the synchronous endpoint (operationIds `sync_<submit operationId>`).
OPERATION_GROUPS = ("submit", "status", "stream", "result", "cancel", "sync", "platform")
# Operations the emulator serves outside the spec (fal's Platform API request list, group "platform").
EXTRA_OPERATIONS = ("list_requests_by_endpoint",)
_STATUSES = {429, 500, 502, 503, 504}
_TOKEN = re.compile(r"(?P<code>\d{3})(?::(?P<retry>\d+(?:\.\d+)?))?(?:-(?P<flavour>noid|nginx))?")
_SLOW = re.compile(r"slow:(?P<seconds>\d+(?:\.\d+)?)")


class FaultSyntaxError(ValueError):
    """A fault rule that does not parse; the message says what is wrong and shows the grammar."""


@dataclass(frozen=True)
class Fault:
    """One injected misbehaviour."""

    kind: FaultKind
    status: int = 503
    retry_after: float | None = None
    with_request_id: bool = True
    ingress: bool = False
    delay: float = 0.0

    @classmethod
    def parse(cls, token: str) -> Fault | None:
        """Parse one TOKEN (see the module docstring); `ok` gives None (no fault)."""
        token = token.strip().lower()
        if token == "ok":
            return None
        if token in {"drop", "drop-after", "cut"}:
            return cls(kind=token)  # type: ignore[arg-type]
        if token.startswith("lost:"):
            replacement = cls.parse(token.removeprefix("lost:"))
            if replacement is None or replacement.kind != "status":
                raise FaultSyntaxError(f"unknown fault {token!r}: lost: takes a status token, e.g. lost:503")
            return dataclasses.replace(replacement, kind="lost")
        slow = _SLOW.fullmatch(token)
        if slow is not None:
            return cls(kind="slow", delay=float(slow["seconds"]))
        found = _TOKEN.fullmatch(token)
        if found is None or int(found["code"]) not in _STATUSES:
            raise FaultSyntaxError(
                f"unknown fault {token!r}: use ok, drop, drop-after, cut, slow:SECONDS, or one of {sorted(_STATUSES)} "
                "with an optional :RETRY_AFTER (429) and -noid or -nginx suffix, e.g. 429:2 or 503-noid, "
                "or lost:<status token> (handled, then answered with that), e.g. lost:502-nginx"
            )
        code = int(found["code"])
        retry = found["retry"]
        return cls(
            kind="status",
            status=code,
            retry_after=float(retry) if retry else (1.0 if code == 429 else None),
            with_request_id=found["flavour"] is None,
            ingress=found["flavour"] == "nginx",
        )


@dataclass(frozen=True)
class FaultRule:
    """Faults for one operation: an exact sequence for the next calls, or a rate (with the faults to pick from
    at random), and/or latency added to every call."""

    operation: str
    sequence: tuple[Fault | None, ...] = ()
    rate: float = 0.0
    faults: tuple[Fault, ...] = ()
    latency: float = 0.0

    def applies_to(self, operation_id: str, group: str) -> bool:
        """Whether this rule covers the operation (of that group)."""
        return self.operation in {"*", operation_id, group}

    @classmethod
    def parse(cls, text: str) -> FaultRule:
        """Parse the command-line form (see the module docstring)."""
        if "~" in text:
            operation, _, seconds = text.partition("~")
            return cls(operation=_operation(operation), latency=_number(seconds, "latency", text))
        operation, sep, tokens = text.partition("=")
        if not sep or not tokens:
            raise FaultSyntaxError(
                f"fault {text!r}: expected OPERATION=TOKEN[,...], OPERATION@RATE=TOKEN or OPERATION~SECONDS"
            )
        if "@" in operation:
            operation, _, rate = operation.partition("@")
            return cls(
                operation=_operation(operation), rate=_number(rate, "rate", text), faults=_choices(tokens.split("|"))
            )
        return cls(operation=_operation(operation), sequence=tuple(Fault.parse(token) for token in tokens.split(",")))

    @classmethod
    def from_json(cls, data: Any) -> FaultRule:
        """Parse the admin API form: `{"operation", "sequence": [TOKEN...]}`, `{"operation", "rate", "fault":
        TOKEN or [TOKEN...]}`, and/or `{"operation", "latency"}`."""
        if not isinstance(data, dict) or not isinstance(data.get("operation"), str):
            raise FaultSyntaxError(
                'a fault rule is an object with "operation" and "sequence", "rate"+"fault" or "latency"'
            )
        sequence = data.get("sequence", [])
        if not isinstance(sequence, list) or not all(isinstance(token, str | int) for token in sequence):
            raise FaultSyntaxError('"sequence" must be a list of tokens such as ["503", "429:2", "ok"]')
        rate = data.get("rate", 0.0)
        latency = data.get("latency", 0.0)
        if not isinstance(rate, int | float) or not 0 <= rate <= 1:
            raise FaultSyntaxError('"rate" must be a number from 0 to 1')
        if not isinstance(latency, int | float) or latency < 0:
            raise FaultSyntaxError('"latency" must be a number of seconds >= 0')
        fault = data.get("fault")
        tokens = fault if isinstance(fault, list) else [] if fault is None else [fault]
        if not all(isinstance(token, str | int) for token in tokens) or (rate and not tokens):
            raise FaultSyntaxError('"rate" needs a "fault": a token such as "502", or a list of them to pick from')
        return cls(
            operation=_operation(data["operation"]),
            sequence=tuple(Fault.parse(str(token)) for token in sequence),
            rate=float(rate),
            faults=_choices([str(token) for token in tokens]) if tokens else (),
            latency=float(latency),
        )

    def as_json(self) -> dict[str, Any]:
        """The rule as the admin API shows it."""
        return {
            "operation": self.operation,
            "sequence": [_token(fault) for fault in self.sequence],
            "rate": self.rate,
            "fault": [_token(fault) for fault in self.faults],
            "latency": self.latency,
        }


@dataclass
class FaultPlan:
    """The active rules and what they have consumed; `next()` decides the fate of each call."""

    rules: list[FaultRule] = field(default_factory=list)
    seed: int = 0
    _positions: dict[int, int] = field(default_factory=dict)
    _rng: random.Random = field(default_factory=random.Random)

    def __post_init__(self) -> None:
        self._rng.seed(self.seed)

    def add(self, rule: FaultRule) -> None:
        """Activate one more rule (after the existing ones)."""
        self.rules.append(rule)

    def clear(self) -> None:
        """Remove every rule."""
        self.rules.clear()
        self._positions.clear()

    def next(self, operation_id: str, group: str) -> tuple[float, Fault | None]:
        """The latency to add and the fault (or None) for the next call of `operation_id` (of `group`).

        The first matching rule with a sequence still running decides; then rate rules; latency adds up.
        """
        latency = 0.0
        chosen: Fault | None = None
        decided = False
        for index, rule in enumerate(self.rules):
            if not rule.applies_to(operation_id, group):
                continue
            latency += rule.latency
            if decided:
                continue
            position = self._positions.get(index, 0)
            if position < len(rule.sequence):
                self._positions[index] = position + 1
                chosen, decided = rule.sequence[position], True
            elif rule.rate and rule.faults and self._rng.random() < rule.rate:
                chosen, decided = self._rng.choice(rule.faults), True
        return latency, chosen


def _choices(tokens: list[str]) -> tuple[Fault, ...]:
    faults = [Fault.parse(token) for token in tokens]
    if any(fault is None for fault in faults):
        raise FaultSyntaxError("a rate rule picks among faults: `ok` is not one")
    return tuple(fault for fault in faults if fault is not None)


def _operation(name: str) -> str:
    name = name.strip()
    known = {"*", *OPERATION_GROUPS, *EXTRA_OPERATIONS, *shipped_operation_paths()}
    if name not in known:
        raise FaultSyntaxError(f"unknown operation {name!r}: use one of {sorted(known)}")
    return name


def _number(text: str, what: str, rule: str) -> float:
    try:
        value = float(text)
    except ValueError as err:
        raise FaultSyntaxError(f"fault {rule!r}: {what} {text!r} is not a number") from err
    if value < 0 or (what == "rate" and value > 1):
        raise FaultSyntaxError(f"fault {rule!r}: {what} must be {'from 0 to 1' if what == 'rate' else '>= 0'}")
    return value


def _token(fault: Fault | None) -> str:
    if fault is None:
        return "ok"
    if fault.kind == "slow":
        return f"slow:{fault.delay:g}"
    if fault.kind not in {"status", "lost"}:
        return fault.kind
    text = ("lost:" if fault.kind == "lost" else "") + str(fault.status)
    if fault.status == 429 and fault.retry_after is not None:
        text += f":{fault.retry_after:g}"
    if fault.ingress:
        text += "-nginx"
    elif not fault.with_request_id:
        text += "-noid"
    return text
