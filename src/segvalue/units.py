"""Time units: explicit lengths in days, never a hidden table.

A *time unit* is the unit in which recency, T, horizons and rates are expressed. Months
are the mean Gregorian month, 365.25 / 12 = 30.4375 days, so that durations in months
are continuous and comparable across months of different length.
"""

from __future__ import annotations

from enum import StrEnum

from segvalue.errors import ConfigError

__all__ = ["DAYS_PER_UNIT", "TimeUnit", "parse_time_unit"]


class TimeUnit(StrEnum):
    """A unit of time for durations, horizons and rates."""

    DAY = "day"
    WEEK = "week"
    MONTH = "month"

    @property
    def days(self) -> float:
        """Length of one unit in days.

        Examples
        --------
        >>> TimeUnit.WEEK.days
        7.0
        """
        return DAYS_PER_UNIT[self]


DAYS_PER_UNIT: dict[TimeUnit, float] = {
    TimeUnit.DAY: 1.0,
    TimeUnit.WEEK: 7.0,
    TimeUnit.MONTH: 365.25 / 12.0,
}


def parse_time_unit(value: str | TimeUnit) -> TimeUnit:
    """Turn a user's string into a :class:`TimeUnit`, with a clear error.

    Parameters
    ----------
    value
        ``"day"``, ``"week"`` or ``"month"`` (case-insensitive, plural accepted).

    Returns
    -------
    TimeUnit

    Examples
    --------
    >>> parse_time_unit("Weeks")
    <TimeUnit.WEEK: 'week'>
    """
    if isinstance(value, TimeUnit):
        return value
    key = str(value).strip().lower().removesuffix("s")
    try:
        return TimeUnit(key)
    except ValueError:
        choices = ", ".join(u.value for u in TimeUnit)
        raise ConfigError(f"unknown time unit {value!r}", fix=f"use one of: {choices}") from None
