"""Times with UTC offsets convert to the configured zone; dates without a day; RE2 patterns.

The zone conversion is compared with Python's ``zoneinfo`` (the IANA database), on DuckDB
always and on PostgreSQL and Spark in the backend tests at the end.
"""

from __future__ import annotations

import bisect
import datetime as dt
import random
import uuid
import warnings
import zoneinfo
from typing import Any

import duckdb
import ibis
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from segvalue.config import re2_unsupported
from segvalue.data.parse import _transitions, check_date_format, parse_column
from segvalue.errors import ConfigError

ZONES = ["UTC", "Europe/Berlin", "America/New_York", "Asia/Kolkata", "Australia/Lord_Howe"]


def _parse(con: Any, values: list[str | None], kind: str = "timestamp", **options: Any) -> list:
    table = con.create_table(f"t_{uuid.uuid4().hex}", {"x": values})
    return con.to_pyarrow(parse_column(table.x, kind, **options)).to_pylist()  # type: ignore[arg-type]


def _expected(text_utc: dt.datetime, zone: str) -> dt.datetime:
    aware = text_utc.replace(tzinfo=dt.UTC).astimezone(zoneinfo.ZoneInfo(zone))
    return aware.replace(tzinfo=None)


# value, zone, expected naive time in that zone
OFFSET_CASES = [
    ("2024-01-05T23:30:00-05:00", "UTC", dt.datetime(2024, 1, 6, 4, 30)),
    ("2024-01-05T23:30:00Z", "UTC", dt.datetime(2024, 1, 5, 23, 30)),
    ("2024-01-05 23:30:00+0200", "UTC", dt.datetime(2024, 1, 5, 21, 30)),
    ("2024-01-05 23:30 +02", "UTC", dt.datetime(2024, 1, 5, 21, 30)),
    ("2024-01-05T23:30:00.250+05:30", "UTC", dt.datetime(2024, 1, 5, 18, 0, 0, 250000)),
    ("2024-01-05 23:30:00 UTC", "Asia/Kolkata", dt.datetime(2024, 1, 6, 5, 0)),
    ("2024-01-05T23:30:00-05:00", "America/New_York", dt.datetime(2024, 1, 5, 23, 30)),
    # Berlin switches to summer time at 01:00 UTC on 2024-03-31 and back on 2024-10-27
    ("2024-03-31T00:59:59Z", "Europe/Berlin", dt.datetime(2024, 3, 31, 1, 59, 59)),
    ("2024-03-31T01:00:00Z", "Europe/Berlin", dt.datetime(2024, 3, 31, 3, 0)),
    ("2024-10-27T00:30:00Z", "Europe/Berlin", dt.datetime(2024, 10, 27, 2, 30)),
    ("2024-10-27T01:30:00Z", "Europe/Berlin", dt.datetime(2024, 10, 27, 2, 30)),
    # without an offset: already in the zone, untouched
    ("2024-01-05T23:30:00", "America/New_York", dt.datetime(2024, 1, 5, 23, 30)),
    ("2024-01-05", "Europe/Berlin", dt.datetime(2024, 1, 5)),
    ("2024-13-05T23:30:00Z", "UTC", None),
    ("2024-01-05T23:30:00+25:00", "UTC", None),
]


@pytest.mark.parametrize(("value", "zone", "expected"), OFFSET_CASES)
def test_offsets_convert_on_duckdb(value: str, zone: str, expected: dt.datetime | None) -> None:
    assert _parse(ibis.duckdb.connect(), [value], timezone=zone) == [expected]


def test_offset_dates_take_the_date_in_the_zone() -> None:
    values = ["2024-01-05T23:30:00-05:00", "2024-01-05T23:30:00-05:00", "2024-01-05"]
    con = ibis.duckdb.connect()
    got = [
        _parse(con, [v], "date", timezone=z)[0]
        for v, z in zip(values, ["UTC", ZONES[2], "UTC"], strict=True)
    ]
    assert got == [dt.date(2024, 1, 6), dt.date(2024, 1, 5), dt.date(2024, 1, 5)]


def _random_offsets(seed: int, n: int) -> list[tuple[str, dt.datetime]]:
    """Texts with random offsets, and the UTC instant each one means."""
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        utc = dt.datetime(1950, 1, 1) + dt.timedelta(seconds=rng.randrange(150 * 365 * 86400))
        minutes = rng.choice([0, 60, -300, 330, 345, -570, 840, -720])
        local = utc + dt.timedelta(minutes=minutes)
        sign = "-" if minutes < 0 else "+"
        hh, mm = divmod(abs(minutes), 60)
        offset = rng.choice([f"{sign}{hh:02d}:{mm:02d}", f"{sign}{hh:02d}{mm:02d}"])
        if minutes == 0:
            offset = rng.choice(["Z", "+00:00", offset])
        rows.append((local.strftime("%Y-%m-%dT%H:%M:%S") + offset, utc))
    return rows


@pytest.mark.parametrize("zone", ZONES)
def test_random_offsets_agree_with_zoneinfo(zone: str) -> None:
    rows = _random_offsets(seed=7, n=300)
    got = _parse(ibis.duckdb.connect(), [text for text, _ in rows], timezone=zone)
    assert got == [_expected(utc, zone) for _, utc in rows]


@settings(max_examples=300, derandomize=True)
@given(
    zone=st.sampled_from(ZONES),
    instant=st.datetimes(min_value=dt.datetime(1901, 1, 1), max_value=dt.datetime(2099, 12, 31)),
)
def test_transition_table_agrees_with_zoneinfo(zone: str, instant: dt.datetime) -> None:
    starts, offsets = _transitions(zone)
    offset = offsets[bisect.bisect_right(starts, instant)]
    expected = _expected(instant, zone) - instant
    assert offset == expected.total_seconds()


@pytest.mark.parametrize(
    ("values", "kind", "options", "expected"),
    [
        # a date without a day is the first of its month
        (
            ["2024-01", "2023/12", "2024-1", "2024-13"],
            "date",
            {},
            [dt.date(2024, 1, 1), dt.date(2023, 12, 1), dt.date(2024, 1, 1), None],
        ),
        # an order time is not guessed to the month ...
        (["2024-01"], "timestamp", {}, [None]),
        # ... unless the format says so
        (
            ["2024-01", "2024-02-03"],
            "timestamp",
            {"date_format": "%Y-%m"},
            [dt.datetime(2024, 1, 1), None],
        ),
        (["202401"], "date", {"date_format": "%Y%m"}, [dt.date(2024, 1, 1)]),
        (["03/2024"], "date", {"date_format": "%m/%Y"}, [dt.date(2024, 3, 1)]),
        # %z reads an offset; the format then requires one
        (
            ["05/01/2024 23:30 -0500", "05/01/2024 23:30 Z", "05/01/2024 23:30"],
            "timestamp",
            {"date_format": "%d/%m/%Y %H:%M %z"},
            [dt.datetime(2024, 1, 6, 4, 30), dt.datetime(2024, 1, 5, 23, 30), None],
        ),
    ],
)
def test_months_and_formats(values: list[str], kind: str, options: dict, expected: list) -> None:
    assert _parse(ibis.duckdb.connect(), values, kind, **options) == expected


@pytest.mark.parametrize(
    ("fmt", "message"),
    [
        ("%d/%Y", "date_format '%d/%Y' must contain %Y and %m"),
        ("%Y-%m %H:%M", "date_format '%Y-%m %H:%M' has a time of day but no day (%d)"),
        ("%d %b %Y", "directive %b is not supported"),
    ],
)
def test_bad_date_formats(fmt: str, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        check_date_format(fmt)
    assert message in info.value.message


# Patterns Python's re accepts: does RE2 (DuckDB) accept them too?
RE2_PATTERNS = [
    "^(DE|AT)$", "(?i)berlin", "(?P<x>a)", "[[:alpha:]]+", "\\d{2,4}", "a{1000}", "a*?", "\\bde\\b",
    "(?s:.)", "[]a]", "[^]a]", "(?:x|y)+", "\\x41", "\\\\1", "[(?=]", "a\\{3\\}",
    "a(?=b)", "a(?!b)", "(?<=a)b", "(?<!a)b", "(a)\\1", "(?P<n>a)(?P=n)", "a++", "a*+", "a?+",
    "a{2}+", "a{1001}", "a{2,1001}", "(?>a)", "(a)?(?(1)b|c)", "(?#c)a", "(?x)a b", "(?a)\\w",
    "a\\Z", "[\\1]", "\\u0041",
]  # fmt: skip


@pytest.mark.parametrize("pattern", RE2_PATTERNS)
def test_re2_check_agrees_with_duckdb(pattern: str) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # FutureWarning: possible nested set
        __import__("re").compile(pattern)
    try:
        duckdb.connect().execute("select regexp_matches('abc', ?)", [pattern]).fetchall()
        accepted = True
    except duckdb.Error:
        accepted = False
    assert (re2_unsupported(pattern) is None) == accepted, re2_unsupported(pattern)


def test_re2_check_refuses_a_count_re2_reads_as_text() -> None:
    # RE2 accepts 'a{,3}' but matches the text "a{,3}" literally; Python reads {0,3}.
    assert duckdb.connect().execute("select regexp_matches('a{,3}', '^a{,3}$')").fetchone() == (
        True,
    )
    found = re2_unsupported("a{,3}")
    assert found is not None and found[1] == "write {0,3}"


# Valid values only: PostgreSQL's try_cast raises on an impossible date (an Ibis gap).
BACKEND_CASES = [
    c for c in OFFSET_CASES if c[1] in ("UTC", "Europe/Berlin", "America/New_York") and c[2]
]


def _backend_mismatches(con: Any) -> list[str]:
    """Every case the backend parses differently from zoneinfo (empty: all agree)."""
    wrong = []
    for zone in ("UTC", "Europe/Berlin", "America/New_York"):
        cases = [c for c in BACKEND_CASES if c[1] == zone]
        table = con.create_table(
            f"tz_{zone.replace('/', '_').lower()}", {"x": [c[0] for c in cases]}, overwrite=True
        )
        got = con.to_pyarrow(parse_column(table.x, "timestamp", timezone=zone)).to_pylist()
        wrong += [f"{c[0]} in {zone}: {g}" for c, g in zip(cases, got, strict=True) if g != c[2]]
    months = con.create_table("months", {"x": ["2024-01", "2024-02-03"]}, overwrite=True)
    days = con.to_pyarrow(parse_column(months.x, "date")).to_pylist()
    if days != [dt.date(2024, 1, 1), dt.date(2024, 2, 3)]:
        wrong.append(f"month-only dates: {days}")
    # Numbers are not trimmed before the engine's cast, which skips these blanks itself.
    padded = con.create_table(
        "padded", {"x": [" 12.5 ", "\t7\n", "\r-3.25\x0b\x0c"]}, overwrite=True
    )
    numbers = con.to_pyarrow(parse_column(padded.x, "float")).to_pylist()
    if numbers != [12.5, 7.0, -3.25]:
        wrong.append(f"numbers with blanks: {numbers}")
    # Plain ISO text takes the engine's cast at once, the rest the general path.
    plain = ["2024-1-5", "2024-01-05T07:08", "2024-01-05 07:08:09.5", " 2024-01-05 ", "20240105"]
    texts = con.create_table("plain", {"x": plain}, overwrite=True)
    times = con.to_pyarrow(parse_column(texts.x, "timestamp")).to_pylist()
    day = dt.datetime(2024, 1, 5)
    expected = [day, day.replace(hour=7, minute=8), dt.datetime(2024, 1, 5, 7, 8, 9, 500000)]
    if times != [*expected, day, day]:
        wrong.append(f"plain times: {times}")
    return wrong


def test_backend_cases_on_duckdb() -> None:
    assert _backend_mismatches(ibis.duckdb.connect()) == []


@pytest.mark.slow
def test_offsets_convert_on_postgres(postgres_url: str) -> None:
    con = ibis.connect(postgres_url)
    try:
        assert _backend_mismatches(con) == []
    finally:
        con.disconnect()


@pytest.mark.slow
def test_offsets_convert_on_spark(spark: Any) -> None:
    from segvalue.data.readers import connect

    assert _backend_mismatches(connect(spark)) == []
