"""Checks of a client's options, each refusing a bad value with an ``InvalidInputError`` that names it and the fix."""

from __future__ import annotations

import math

from .errors import FieldProblem, InvalidInputError

__all__ = ["check_bool", "check_positive", "has_control_character", "refuse"]


def refuse(field_name: str, value: object, problem: str) -> InvalidInputError:
    """The error for one bad option."""
    return InvalidInputError([FieldProblem(field_name, value, problem)])


def check_positive(field_name: str, value: object, *, allow_inf: bool = False) -> float:
    """``value`` as a float if it is a number > 0 (finite unless ``allow_inf``), else ``InvalidInputError``."""
    number = None if isinstance(value, bool) or not isinstance(value, (int, float)) else float(value)
    if number is None or not number > 0 or (math.isinf(number) and not allow_inf):
        limit = "a number > 0" + (" (math.inf for none)" if allow_inf else ", finite")
        raise refuse(field_name, value, f"{value!r} is not {limit}")
    return number


def check_bool(field_name: str, value: object) -> bool:
    """``value`` if it is True or False, else ``InvalidInputError``."""
    if not isinstance(value, bool):
        raise refuse(field_name, value, "expected True or False")
    return value


def has_control_character(text: str) -> bool:
    """Whether ``text`` holds a control character (CR, LF, NUL, ...), which would break or smuggle a header."""
    return any(ord(c) < 32 or ord(c) == 127 for c in text)
