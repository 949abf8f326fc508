"""Field metadata for the config schemas: allowed choices and value limits.

``nlpkit.config.validate`` reads them after converting a section to its schema's types, so a bad value
(``data.batch_size=0``, ``data.delimiter=ab``) is one error line naming the key before anything runs.
A ``check`` is a function of the typed value returning what is wrong with it, or ``None``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

#: a value check: ``None`` when the value is fine, else what it must be ("must be >= 1")
Check = Callable[[Any], "str | None"]


def choices(*values: str) -> dict:
    """Field metadata listing the allowed string values."""
    return {"choices": values}


def at_least(minimum: float) -> dict:
    """Field metadata: a number (or ``None`` where the field allows it) that is at least ``minimum``."""

    def check(value: Any) -> str | None:
        return None if value is None or value >= minimum else f"must be >= {minimum}"

    return {"check": check}


def above(minimum: float) -> dict:
    """Field metadata: a number strictly greater than ``minimum`` (a learning rate above 0)."""

    def check(value: Any) -> str | None:
        return None if value is None or value > minimum else f"must be > {minimum}"

    return {"check": check}


def between(low: float, high: float, *, low_open: bool = False, high_open: bool = False) -> dict:
    """Field metadata: a number in the interval from ``low`` to ``high`` (each end closed unless open)."""
    shown = f"{'(' if low_open else '['}{low}, {high}{')' if high_open else ']'}"

    def check(value: Any) -> str | None:
        if value is None:
            return None
        above = value > low if low_open else value >= low
        below = value < high if high_open else value <= high
        return None if above and below else f"must be in {shown}"

    return {"check": check}


def one_character() -> dict:
    """Field metadata: ``None`` or a string of exactly one character (a CSV/TSV delimiter)."""

    def check(value: Any) -> str | None:
        if value is None or (isinstance(value, str) and len(value) == 1):
            return None
        return "must be a single character (or null for the format's own delimiter)"

    return {"check": check}


def non_empty() -> dict:
    """Field metadata: ``None`` or a non-empty string."""

    def check(value: Any) -> str | None:
        return None if value is None or value != "" else "must not be empty (or null for the default)"

    return {"check": check}
