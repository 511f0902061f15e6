"""Frequency caps and quiet hours, in each customer's own time zone.

A cap allows at most ``max`` contacts per customer per calendar day, ISO week (Monday to
Sunday) or month, on one channel or on every channel together (``*``). Periods are
counted in the customer's time zone (their ``timezone`` column; a customer without one,
or with a name that is not an IANA zone, counts in the configured default zone, and the
plan reports how many did). Every contact counts: those already made (the
``contact_log``) and the plan's own sends, in the order the plan makes them (campaigns by
priority, then step by step): a send that would exceed any cap is not made, and keeps the
cap that stopped it as its reason.

Quiet hours: a channel sends nothing between ``start`` and ``end`` local time (a window
across midnight when ``end`` is earlier; at most 20 hours); a send due inside the window
waits for its end.
"""

from __future__ import annotations

import datetime as dt
import zoneinfo
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from segvalue.errors import DataValidationError

__all__ = [
    "PERIODS",
    "Cap",
    "CapLedger",
    "after_quiet_hours",
    "as_naive_utc",
    "local_period",
    "to_utc",
    "zone_of",
]

_EPOCH = dt.datetime(1970, 1, 1)
#: The periods caps count in.
PERIODS = ("day", "week", "month")


@dataclass(frozen=True)
class Cap:
    """At most ``max`` contacts per ``per`` on ``channel`` (``*``: every channel)."""

    channel: str
    per: str
    max: int

    def __post_init__(self) -> None:
        if self.per not in PERIODS or self.max < 0:
            raise DataValidationError(
                f"cap {self.channel} {self.max} per {self.per}: the period must be one of "
                f"{', '.join(PERIODS)} and the maximum >= 0",
                fix="e.g. Cap('email', 'week', 2)",
            )

    def applies(self, channel: str) -> bool:
        """Whether a contact on ``channel`` counts against this cap."""
        return self.channel in ("*", channel)

    def __str__(self) -> str:
        where = "all channels" if self.channel == "*" else self.channel
        return f"{where}: {self.max} per {self.per}"


def zone_of(name: Any, default: str) -> tuple[zoneinfo.ZoneInfo, bool]:
    """The customer's zone (``name``) if it is an IANA zone, else ``default``; and whether
    the default was taken.

    Examples
    --------
    >>> zone_of("Europe/Berlin", "UTC")
    (zoneinfo.ZoneInfo(key='Europe/Berlin'), False)
    >>> zone_of(None, "UTC")[1], zone_of("Mars/Olympus", "UTC")[1]
    (True, True)
    """
    if isinstance(name, str) and name:
        try:
            return zoneinfo.ZoneInfo(name), False
        except (zoneinfo.ZoneInfoNotFoundError, ValueError, OSError):
            pass
    return zoneinfo.ZoneInfo(default), True


def local_period(moment: dt.datetime, zone: zoneinfo.ZoneInfo, per: str) -> int:
    """The calendar ``per`` (day, ISO week, month) ``moment`` (naive UTC, or aware) falls in,
    in ``zone``, as a number.

    Examples
    --------
    >>> berlin = zoneinfo.ZoneInfo("Europe/Berlin")
    >>> late = dt.datetime(2026, 1, 4, 23, 30)  # Sunday 23:30 UTC: Monday 00:30 in Berlin
    >>> local_period(late, berlin, "week") - local_period(late, zoneinfo.ZoneInfo("UTC"), "week")
    1
    """
    aware = moment if moment.tzinfo is not None else moment.replace(tzinfo=dt.UTC)
    local = aware.astimezone(zone).replace(tzinfo=None)
    days = (local.date() - _EPOCH.date()).days
    if per == "day":
        return days
    if per == "week":
        return (days + 3) // 7  # 1970-01-01 was a Thursday: weeks start on Monday
    return local.year * 12 + local.month - 1


class CapLedger:
    """The contacts counted against each cap, per customer and period; ``admit`` a send
    when every cap that applies leaves room for it (and count it).

    Examples
    --------
    >>> ledger = CapLedger([Cap("email", "week", 1)], default_zone="UTC")
    >>> ledger.add("a", "email", dt.datetime(2026, 1, 5, 9))
    >>> ledger.admit("a", "email", dt.datetime(2026, 1, 7, 9)), ledger.admit(
    ...     "a", "email", dt.datetime(2026, 1, 12, 9))
    ('email: 1 per week', None)
    """

    def __init__(
        self,
        caps: Sequence[Cap],
        *,
        default_zone: str,
        zones: dict[Any, Any] | None = None,
    ) -> None:
        self.caps = list(caps)
        self.default_zone = default_zone
        self._zones = zones or {}
        self._resolved: dict[Any, zoneinfo.ZoneInfo] = {}
        self.defaulted: set[Any] = set()
        self._counts: Counter[tuple[int, Any, int]] = Counter()

    def zone(self, customer: Any) -> zoneinfo.ZoneInfo:
        """The customer's time zone (the default for one without a valid zone)."""
        found = self._resolved.get(customer)
        if found is None:
            found, defaulted = zone_of(self._zones.get(customer), self.default_zone)
            if defaulted:
                self.defaulted.add(customer)
            self._resolved[customer] = found
        return found

    def _keys(self, customer: Any, channel: str, moment: dt.datetime) -> list[tuple[int, ...]]:
        zone = self.zone(customer)
        return [
            (i, customer, local_period(moment, zone, cap.per))
            for i, cap in enumerate(self.caps)
            if cap.applies(channel)
        ]

    def add(self, customer: Any, channel: str, moment: dt.datetime) -> None:
        """Count a contact already made."""
        for key in self._keys(customer, channel, moment):
            self._counts[key] += 1  # type: ignore[index]

    def add_many(
        self,
        customers: Sequence[Any],
        channels: Sequence[Any],
        moments: Sequence[dt.datetime | None],
    ) -> None:
        """Count the contacts of a contact log (the same counts as :meth:`add` one by
        one, the periods computed zone by zone at once)."""
        import numpy as np
        import pyarrow as pa
        import pyarrow.compute as pc

        keep = [i for i, m in enumerate(moments) if m is not None]
        if not keep or not self.caps:
            return
        who = [customers[i] for i in keep]
        what = np.array([str(channels[i]) for i in keep], dtype=object)
        at = pa.array(as_naive_utc([moments[i] for i in keep]), pa.timestamp("us"))
        zones = np.array([self.zone(c).key for c in who], dtype=object)
        periods = {per: np.empty(len(keep), dtype=np.int64) for per in PERIODS}
        for name in set(zones.tolist()):
            rows = np.flatnonzero(zones == name)
            utc = at.take(pa.array(rows)).cast(pa.timestamp("us", tz="UTC"))
            local = pc.local_timestamp(utc.cast(pa.timestamp("us", tz=name)))
            stamps = np.asarray(local.to_numpy(zero_copy_only=False), dtype="datetime64[us]")
            days = stamps.astype("datetime64[D]").astype(np.int64)
            periods["day"][rows] = days
            periods["week"][rows] = (days + 3) // 7
            months = stamps.astype("datetime64[M]").astype(np.int64)
            periods["month"][rows] = months + 1970 * 12
        for index, cap in enumerate(self.caps):
            on = np.ones(len(keep), dtype=bool) if cap.channel == "*" else what == cap.channel
            picked = np.flatnonzero(on)
            self._counts.update(
                zip(
                    [index] * picked.size,
                    [who[i] for i in picked],
                    periods[cap.per][picked].tolist(),
                    strict=True,
                )
            )

    def admit(self, customer: Any, channel: str, moment: dt.datetime) -> str | None:
        """Count the send and return None if every cap leaves room; else the cap that
        does not (the send is not counted)."""
        keys = self._keys(customer, channel, moment)
        for key in keys:
            if self._counts[key] >= self.caps[key[0]].max:  # type: ignore[index]
                return str(self.caps[key[0]])
        for key in keys:
            self._counts[key] += 1  # type: ignore[index]
        return None

    def count(self, customer: Any, cap: int, moment: dt.datetime) -> int:
        """Contacts counted against cap number ``cap`` in ``moment``'s period."""
        zone = self.zone(customer)
        return self._counts[(cap, customer, local_period(moment, zone, self.caps[cap].per))]


def after_quiet_hours(local: dt.datetime, start: dt.time, end: dt.time) -> dt.datetime:
    """A local send time moved out of the quiet hours ``start``-``end`` (to ``end``).

    Examples
    --------
    >>> after_quiet_hours(dt.datetime(2026, 1, 5, 22, 15), dt.time(21), dt.time(8))
    datetime.datetime(2026, 1, 6, 8, 0)
    >>> after_quiet_hours(dt.datetime(2026, 1, 5, 7, 0), dt.time(21), dt.time(8))
    datetime.datetime(2026, 1, 5, 8, 0)
    >>> after_quiet_hours(dt.datetime(2026, 1, 5, 12, 0), dt.time(21), dt.time(8))
    datetime.datetime(2026, 1, 5, 12, 0)
    """
    t = local.time()
    if start < end:
        inside = start <= t < end
        ends = local.replace(hour=end.hour, minute=end.minute, second=0, microsecond=0)
    else:  # across midnight
        inside = t >= start or t < end
        ends = local.replace(hour=end.hour, minute=end.minute, second=0, microsecond=0)
        if t >= start:
            ends += dt.timedelta(days=1)
    return ends if inside else local


def to_utc(local: dt.datetime, zone: zoneinfo.ZoneInfo) -> dt.datetime:
    """A local wall time in ``zone`` as naive UTC (a time skipped by a clock change is
    read with the offset before the change).

    Examples
    --------
    >>> to_utc(dt.datetime(2026, 7, 1, 10), zoneinfo.ZoneInfo("Europe/Berlin"))
    datetime.datetime(2026, 7, 1, 8, 0)
    """
    return local.replace(tzinfo=zone).astimezone(dt.UTC).replace(tzinfo=None)


def as_naive_utc(values: Any) -> list[dt.datetime | None]:
    """Timestamps (an Arrow column or datetimes; aware ones converted) as naive UTC.

    Examples
    --------
    >>> as_naive_utc([dt.datetime(2026, 1, 1, 12, tzinfo=zoneinfo.ZoneInfo("Europe/Berlin"))])
    [datetime.datetime(2026, 1, 1, 11, 0)]
    """
    items = values.to_pylist() if hasattr(values, "to_pylist") else list(values)
    out: list[dt.datetime | None] = []
    for v in items:
        if v is None:
            out.append(None)
        elif v.tzinfo is not None:
            out.append(v.astimezone(dt.UTC).replace(tzinfo=None))
        else:
            out.append(v)
    return out
