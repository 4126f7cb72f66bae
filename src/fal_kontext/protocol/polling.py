"""How often a wait asks for the status when the status stream is not followed."""

from __future__ import annotations

from dataclasses import dataclass

from fal_kontext.option_checks import check_positive, refuse

__all__ = ["DEFAULT_POLL", "PollSchedule"]


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


DEFAULT_POLL = PollSchedule()
