"""Hostile configurations and values: the loader, regexes, time zones, secrets, control codes.

Each case writes a workspace, runs ``segvalue`` through the guarded harness and checks the
exit code, what the message names (the key or input and the fix), and that nothing else
changed. The harness also checks that no traceback reached the user.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from tests.hostile.conftest import Workspace

ORDERS = (
    "order_id,customer_id,order_ts,amount\n"
    "1,a,2024-01-05,10\n"
    "2,a,2024-02-01,20\n"
    "3,b,2024-01-10,5\n"
    "4,b,2024-03-01,7\n"
)
SOURCES = "sources:\n  orders:\n    path: orders.csv\n"
VALIDATE = ["validate", "-c", "{ws}/segvalue.yaml"]


def _rule(when: str) -> str:
    """A config with one behavioural rule scheme whose only rule has ``when``."""
    return (
        SOURCES + "segments:\n  schemes:\n    - name: usage\n      type: behavioural\n"
        "      rules:\n        - segment: x\n          when: " + when + "\n"
    )


def _laughs() -> str:
    lines = ['l0: &l0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    lines += [f"l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * 9)}]" for i in range(1, 9)]
    return "\n".join(lines) + "\n" + SOURCES


@dataclass(frozen=True)
class Refused:
    """A config refused with exit 2: pieces the message must contain, and must not."""

    id: str
    yaml: str
    says: tuple[str, ...]
    fix: str
    never: tuple[str, ...] = field(default=())


REFUSED = [
    Refused(
        "duplicate_top_level_key",
        "time_unit: week\n" + SOURCES + "time_unit: month\n",
        ("segvalue.yaml: key 'time_unit' is given twice, at lines 1 and 5",),
        "keep one 'time_unit'",
    ),
    Refused(
        "duplicate_nested_key",
        "sources:\n  orders:\n    path: orders.csv\n    columns:\n      amount: total\n"
        "      amount: net\n",
        ("key 'sources.orders.columns.amount' is given twice, at lines 5 and 6",),
        "keep one 'amount'",
    ),
    Refused(
        "duplicate_key_in_flow_mapping",
        "sources: {orders: {path: orders.csv, path: other.csv}}\n",
        ("key 'sources.orders.path' is given twice, at line 1",),
        "keep one 'path'",
    ),
    Refused(
        "billion_laughs",
        _laughs(),
        ("aliases (*name) expand to more than 10,000 nodes", "segvalue.yaml"),
        "write the repeated blocks out",
    ),
    Refused(
        "self_referencing_alias",
        "loop: &a [1, *a]\n" + SOURCES,
        ("aliases (*name) expand to more than 10,000 nodes",),
        "fewer nested aliases",
    ),
    Refused(
        "nested_too_deep",
        "x: " + "[" * 5000 + "]" * 5000 + "\n" + SOURCES,
        ("segvalue.yaml: blocks nested too deeply to read",),
        "check the brackets",
    ),
    Refused(
        "regex_lookahead",
        _rule("{field: city, op: regex, value: '^Ber(?!lin)'}"),
        (
            "key 'segments.schemes[0].rules[0].when.value'",
            "a negative lookahead '(?!' at position 4",
            "RE2",
        ),
        "rewrite without lookaround",
    ),
    Refused(
        "regex_lookbehind",
        _rule("{field: city, op: regex, value: '(?<=Ber)lin'}"),
        ("when.value'", "a lookbehind '(?<='"),
        "rewrite without lookaround",
    ),
    Refused(
        "regex_backreference",
        _rule("{field: city, op: regex, value: '(a)\\1'}"),
        ("when.value'", "a backreference '\\1'"),
        "rewrite without backreferences",
    ),
    Refused(
        "regex_possessive",
        _rule("{field: city, op: regex, value: 'a++b'}"),
        ("when.value'", "a possessive quantifier '++'"),
        "drop the second '+'",
    ),
    Refused(
        "regex_invalid_in_python",
        _rule("{field: city, op: regex, value: '(Berlin'}"),
        ("when.value'", "invalid regular expression '(Berlin'", "missing )"),
        "escape special characters",
    ),
    Refused(
        "regex_nested_in_all",
        _rule(
            "{all: [{field: city, op: regex, value: 'x'}, {field: zip, op: regex, value: 'a{,3}'}]}"
        ),
        ("when.all[1].value'", "a count '{,3}' with no lower bound"),
        "write {0,3}",
    ),
    Refused(
        "unknown_timezone",
        "timezone: Europe/Berln\n" + SOURCES,
        ("key 'timezone': unknown time zone (did you mean 'Europe/Berlin'?)",),
        "IANA name",
    ),
    Refused(
        "timezone_path_traversal",
        "timezone: ../../../etc/passwd\n" + SOURCES,
        ("key 'timezone': unknown time zone",),
        "IANA name",
    ),
    Refused(
        "password_in_query_not_printed",
        "engine:\n  url: 'duckdb:///{ws}/nowhere/db.duckdb?Password=hunter2&x=1'\n" + SOURCES,
        ("cannot connect to duckdb://", "Password=***"),
        "check the URL",
        never=("hunter2",),
    ),
    Refused(
        "password_in_userinfo_not_printed",
        "engine:\n  url: 'nosuchdb://ann:hunter2@db.example:5432/sales'\n" + SOURCES,
        ("nosuchdb://ann:***@db.example:5432/sales",),
        "check the URL",
        never=("hunter2",),
    ),
    Refused(
        "password_in_dsn_not_printed",
        "engine:\n  url: 'host=db password=hunter2 user=ann'\n" + SOURCES,
        ("has no scheme", "password=***"),
        "duckdb://",
        never=("hunter2",),
    ),
    Refused(
        "escape_sequence_in_file_name",
        'sources:\n  orders:\n    path: "ord\\e[2J\\e]0;pwned\\aers.csv"\n',
        ("ord\\x1b[2J\\x1b]0;pwned\\x07ers.csv: file not found",),
        "check the path",
        never=("\x1b", "\x07"),
    ),
    Refused(
        "bidi_override_and_tab_in_value",
        'timezone: "Europe/\\u202eniLreB\\tX"\n' + SOURCES,
        ("Europe/\\u202eniLreB\\tX", "unknown time zone"),
        "IANA name",
        never=("\u202e", "\t"),
    ),
]


@pytest.mark.parametrize("case", REFUSED, ids=lambda c: c.id)
def test_refused_config(ws: Workspace, case: Refused) -> None:
    ws.write({"orders.csv": ORDERS, "segvalue.yaml": case.yaml.replace("{ws}", str(ws.root))})
    result = ws.run(VALIDATE)
    assert result.code == 2, result.text
    for piece in case.says:
        assert piece in result.text, result.text
    assert "fix:" in result.text
    assert case.fix in result.text.split("fix:", 1)[1]
    for secret in case.never:
        assert secret not in result.text


def test_oversized_config_is_refused(ws: Workspace) -> None:
    ws.write({"orders.csv": ORDERS, "segvalue.yaml": SOURCES + "# padding\n" * 120_000})
    result = ws.run(VALIDATE)
    assert result.code == 2
    assert "more than a configuration needs (limit 1,000,000)" in result.text
    assert "keep data in the files under 'sources'" in result.text


def _report(ws: Workspace, yaml: str, files: dict[str, str]) -> dict[str, Any]:
    ws.write({**files, "segvalue.yaml": yaml})
    result = ws.run([*VALIDATE, "--json"])
    assert result.code == 0, result.text
    return json.loads(result.out)


def test_month_only_signup_date_is_accepted(ws: Workspace) -> None:
    customers = "customer_id,signup_date\na,2024-01\nb,2023/12\n"
    yaml = SOURCES + "  customers:\n    path: customers.csv\n"
    report = _report(ws, yaml, {"orders.csv": ORDERS, "customers.csv": customers})
    table = report["tables"]["customers"]
    assert (table["rows_accepted"], table["rows_rejected"]) == (2, 0)
    # the first of the month
    assert (table["earliest_event"], table["latest_event"]) == ("2023-12-01", "2024-01-01")
    assert report["tables"]["orders"]["rows_accepted"] == 4


def test_month_only_order_times_need_an_explicit_format(ws: Workspace) -> None:
    orders = "order_id,customer_id,order_ts,amount\n1,a,2024-01,10\n2,a,2024-03,20\n"
    guessed = _report(ws, SOURCES, {"orders.csv": orders + "3,b,2024-02-02,5\n"})
    assert guessed["tables"]["orders"]["rejected_by_rule"] == {"unparseable_value": 2}
    explicit = _report(ws, SOURCES + '    date_format: "%Y-%m"\n', {"orders.csv": orders})
    table = explicit["tables"]["orders"]
    assert table["rows_accepted"] == 2
    assert (table["earliest_event"], table["latest_event"]) == (
        "2024-01-01T00:00:00",
        "2024-03-01T00:00:00",
    )


@pytest.mark.parametrize(
    ("timezone", "earliest", "latest"),
    [
        # 23:30 at UTC-5 is 04:30 the next day in UTC; +02:00 at 01:00 is 23:00 the day before
        (None, "2024-01-06T04:30:00", "2024-03-01T22:00:00"),
        ("America/New_York", "2024-01-05T23:30:00", "2024-03-01T17:00:00"),
        # Berlin in winter is UTC+1
        ("Europe/Berlin", "2024-01-06T05:30:00", "2024-03-01T23:00:00"),
    ],
)
def test_offsets_convert_to_the_configured_zone(
    ws: Workspace, timezone: str | None, earliest: str, latest: str
) -> None:
    orders = (
        "order_id,customer_id,order_ts,amount\n"
        "1,a,2024-01-05T23:30:00-05:00,10\n"
        "2,a,2024-02-01T10:00:00Z,20\n"
        "3,b,2024-03-01T23:00:00+0100,5\n"
    )
    yaml = (f"timezone: {timezone}\n" if timezone else "") + SOURCES
    table = _report(ws, yaml, {"orders.csv": orders})["tables"]["orders"]
    assert table["rows_accepted"] == 3
    assert (table["earliest_event"], table["latest_event"]) == (earliest, latest)


@pytest.mark.parametrize("strict", [False, True], ids=["report", "strict_error"])
def test_control_codes_in_values_are_escaped(ws: Workspace, strict: bool) -> None:
    orders = (
        "order_id,customer_id,order_ts,amount\n"
        "1,a,2024-01-05,10\n"
        "2,b,2024-01-0\x1b[31m5,1\n"
        "3,c,2024-01-07,x\x07\u202ey\n"
    )
    ws.write({"orders.csv": orders, "segvalue.yaml": SOURCES})
    result = ws.run([*VALIDATE, "--strict"] if strict else VALIDATE)
    assert result.code == (2 if strict else 0), result.text
    assert "order_ts '2024-01-0\\x1b[31m5' cannot be parsed as a timestamp" in result.text
    assert "amount 'x\\x07\\u202ey' cannot be parsed as a number" in result.text
    for raw in ("\x1b", "\x07", "\u202e"):
        assert raw not in result.text
