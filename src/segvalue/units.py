"""Time units: explicit lengths in days, never a hidden table.

A *time unit* is the unit in which recency, T, horizons and rates are expressed. Months
are the mean Gregorian month, 365.25 / 12 = 30.4375 days, so that durations in months
are continuous and comparable across months of different length.
"""

from __future__ import annotations

from enum import StrEnum

from segvalue.errors import ConfigError

__all__ = ["DAYS_PER_UNIT", "DAYS_PER_YEAR", "TimeUnit", "parse_time_unit", "per_period_rate"]


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


#: The mean Gregorian year.
DAYS_PER_YEAR = 365.25

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


def per_period_rate(annual_rate: float, unit: TimeUnit | str) -> float:
    """Convert an annual discount rate into the equivalent rate per time unit.

    Compounding is exact: ``(1 + annual_rate) ** (days_per_unit / 365.25) - 1``, so that
    discounting 52.18 weekly periods equals discounting one year.

    Parameters
    ----------
    annual_rate
        For example 0.10 for 10 % a year; must be > -1.
    unit
        The time unit of the periods.

    Returns
    -------
    float

    Examples
    --------
    >>> round(per_period_rate(0.10, "month"), 6)
    0.007974
    >>> per_period_rate(0.10, "year")
    Traceback (most recent call last):
    ...
    segvalue.errors.ConfigError: unknown time unit 'year'. Fix: use one of: day, week, month
    """
    if not annual_rate > -1:
        raise ConfigError(
            f"discount rate {annual_rate} must be greater than -1",
            fix="give an annual rate such as 0.1 for 10 %",
        )
    days = parse_time_unit(unit).days
    return float((1.0 + annual_rate) ** (days / DAYS_PER_YEAR) - 1.0)
