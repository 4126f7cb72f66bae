"""Where a queued request is: a closed union of three frozen types built from the generated ``QueueStatus``, typed
without the generated package's ``Unset`` (None for what the server did not send)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TypeVar, assert_never

from fal_kontext_api.models import LogEntry, Metrics, QueueStatus, QueueStatusValue
from fal_kontext_api.types import Unset

__all__ = ["Completed", "InProgress", "Queued", "RequestMetrics", "Status", "logs_of", "status_from_model"]


@dataclass(frozen=True, slots=True)
class Queued:
    """Waiting in fal's queue.

    Attributes:
        request_id: The request.
        position: Requests ahead of this one (0 = next), if the server said.
        logs: Log lines new since the previous status this handle reported.
    """

    request_id: str
    position: int | None = None
    logs: tuple[LogEntry, ...] = ()


@dataclass(frozen=True, slots=True)
class InProgress:
    """Running on a runner.

    Attributes:
        request_id: The request.
        logs: Log lines new since the previous status this handle reported.
    """

    request_id: str
    logs: tuple[LogEntry, ...] = ()


@dataclass(frozen=True, slots=True)
class RequestMetrics:
    """The server's metrics of a completed request; None for what it did not send.

    Attributes:
        inference_time: Seconds the runner spent on the request.
    """

    inference_time: float | None = None

    @classmethod
    def from_model(cls, model: Metrics) -> RequestMetrics:
        """The metrics of a generated ``Metrics`` (read through its ``to_dict()``, which leaves out what was not
        sent)."""
        seconds = model.to_dict().get("inference_time")
        if isinstance(seconds, bool) or not isinstance(seconds, (int, float)):
            return cls()
        return cls(inference_time=float(seconds))


@dataclass(frozen=True, slots=True)
class Completed:
    """Finished: with a result, or failed (``error`` set), or cancelled. fal has no separate FAILED status.

    Attributes:
        request_id: The request.
        logs: Log lines new since the previous status this handle reported.
        metrics: Server metrics (``inference_time``), if sent.
        error: Why it failed, or None.
        error_type: fal's kind of failure, e.g. ``runner_disconnected``, or None.
    """

    request_id: str
    logs: tuple[LogEntry, ...] = ()
    metrics: RequestMetrics | None = None
    error: str | None = None
    error_type: str | None = None


Status = Queued | InProgress | Completed


_T = TypeVar("_T")


def _present(value: _T | Unset | None) -> _T | None:
    return None if isinstance(value, Unset) else value


def status_from_model(model: QueueStatus, new_logs: tuple[LogEntry, ...] = ()) -> Status:
    """The typed status of a generated ``QueueStatus``, carrying ``new_logs`` (already de-duplicated by the caller)."""
    match model.status:
        case QueueStatusValue.IN_QUEUE:
            return Queued(model.request_id, _present(model.queue_position), new_logs)
        case QueueStatusValue.IN_PROGRESS:
            return InProgress(model.request_id, new_logs)
        case QueueStatusValue.COMPLETED:
            return Completed(
                model.request_id,
                new_logs,
                RequestMetrics.from_model(model.metrics) if isinstance(model.metrics, Metrics) else None,
                _present(model.error),
                _present(model.error_type),
            )
        case _:
            assert_never(model.status)


def logs_of(model: QueueStatus) -> list[LogEntry]:
    """The log entries of a status (empty when null, unset or malformed)."""
    logs = model.logs
    if isinstance(logs, list):
        return [entry for entry in logs if isinstance(entry, LogEntry)]
    return []
