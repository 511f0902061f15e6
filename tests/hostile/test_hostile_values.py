"""Hostile values: every value is a value, and errors name their first cause.

Non-finite and absurd amounts, a date in 2100, identifiers with blanks around them,
unknown touchpoint events, rejections that cascade from customers to orders, and dates
in a format nobody configured: each case drives the CLI in a guarded workspace.
"""

from __future__ import annotations

import json
import math
import random
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from conftest import Workspace

HEADER = "order_id,customer_id,order_ts,amount\n"
GOOD = HEADER + "1,c1,2024-01-05,10\n2,c1,2024-02-05,20\n3,c2,2024-03-01,30\n"
CONFIG = "sources:\n  orders: {path: orders.csv}\nvalidation: {min_repeat_customers: 0}\n"


def _validate_json(
    ws: Workspace, orders: str, config: str = CONFIG, **files: str
) -> dict[str, Any]:
    ws.write({"orders.csv": orders, "segvalue.yaml": config, **files})
    outcome = ws.run(["validate", "-c", "{ws}/segvalue.yaml", "--json"])
    assert outcome.code == 0, outcome.text
    return json.loads(outcome.out)


@pytest.mark.parametrize(
    ("amount", "rule"),
    [
        ("NaN", "non_finite"),
        ("nan", "non_finite"),
        ("inf", "non_finite"),
        ("-Infinity", "non_finite"),
        ("1e400", "non_finite"),  # beyond the float range: parses to infinity
        ("1e308", "implausible_value"),
        ("-2e9", "implausible_value"),
    ],
)
def test_non_finite_and_absurd_amounts_are_rejected_by_name(
    ws: Workspace, amount: str, rule: str
) -> None:
    report = _validate_json(ws, GOOD + f"4,c2,2024-03-02,{amount}\n")

    orders = report["tables"]["orders"]
    assert orders["rejected_by_rule"] == {rule: 1}
    assert orders["rows_accepted"] == 3
    (example,) = orders["examples_by_rule"][rule]
    assert example.startswith(f"line 5: amount '{amount}' ")


def test_max_amount_is_configurable(ws: Workspace) -> None:
    config = CONFIG.replace("min_repeat_customers: 0", "min_repeat_customers: 0, max_amount: 25")
    ws.write({"orders.csv": GOOD, "segvalue.yaml": config})

    outcome = ws.run(["validate", "-c", "{ws}/segvalue.yaml"])

    assert outcome.code == 0
    assert "rejected orders.csv: 1 rows (implausible_value)" in outcome.out
    assert "line 4: amount '30' is beyond +/-25 (validation.max_amount)" in outcome.out


def test_an_order_in_2100_is_rejected_before_the_as_of_date_is_inferred(ws: Workspace) -> None:
    orders = GOOD + "4,c2,2100-01-01,5\n"
    report = _validate_json(ws, orders)

    assert report["tables"]["orders"]["rejected_by_rule"] == {"future_timestamp": 1}
    assert report["as_of"] == "2024-03-01"
    assert report["as_of_inferred"] is True

    human = ws.run(["validate", "-c", "{ws}/segvalue.yaml"])
    assert "line 5: order_ts '2100-01-01' is after the load time" in human.out
    assert "as-of date 2024-03-01 inferred" in human.out
    assert "Input as of 2024-03-01" in human.out


def test_a_configured_as_of_is_reported_as_such(ws: Workspace) -> None:
    report = _validate_json(ws, GOOD, "as_of: 2024-06-30\n" + CONFIG)

    assert report["as_of"] == "2024-06-30"
    assert report["as_of_inferred"] is False


def test_identifiers_with_blanks_are_one_customer(ws: Workspace) -> None:
    orders = HEADER + "1,A,2024-01-05,10\n2, A ,2024-02-05,20\n3,A\t,2024-03-01,30\n"
    orders += "4,\u00a0A\u00a0,2024-03-02,40\n"
    ws.write({"orders.csv": orders})

    outcome = ws.run(
        [
            "rfm",
            "{ws}/orders.csv",
            "--customer-col",
            "customer_id",
            "--date-col",
            "order_ts",
            "--amount-col",
            "amount",
            "--json",
        ]
    )

    assert outcome.code == 0, outcome.text
    doc = json.loads(outcome.out)
    assert doc["customers"] == 1
    assert doc["report"]["ids_trimmed"] == 3
    assert doc["report"]["tables"]["orders"]["ids_trimmed"] == 3


def test_trimmed_identifiers_are_counted_in_the_human_report(ws: Workspace) -> None:
    ws.write({"orders.csv": GOOD.replace(",c2,", ", c2 ,"), "segvalue.yaml": CONFIG})

    outcome = ws.run(["validate", "-c", "{ws}/segvalue.yaml"])

    assert outcome.code == 0
    assert "orders.csv: 1 identifiers trimmed of surrounding blanks" in outcome.out


TOUCHPOINTS = (
    "customer_id,ts,channel,event\nc1,2024-01-06,email,open\nc1,2024-01-07,email,purchase\n"
)


def test_an_unknown_touchpoint_event_is_rejected_naming_the_accepted_ones(ws: Workspace) -> None:
    config = (
        "sources:\n  orders: {path: orders.csv}\n  touchpoints: {path: touchpoints.csv}\n"
        "validation: {min_repeat_customers: 0}\n"
    )
    ws.write({"orders.csv": GOOD, "touchpoints.csv": TOUCHPOINTS, "segvalue.yaml": config})

    outcome = ws.run(["validate", "-c", "{ws}/segvalue.yaml"])

    assert outcome.code == 0
    text = " ".join(outcome.out.split())  # the report wraps at the terminal width
    assert "rejected touchpoints.csv: 1 rows (unknown_event)" in text
    assert (
        "line 3: event 'purchase' is not one of impression, click, open, visit, conversion" in text
    )
    assert "sources.touchpoints.event_map" in text


def test_event_map_maps_an_event(ws: Workspace) -> None:
    config = (
        "sources:\n  orders: {path: orders.csv}\n"
        "  touchpoints: {path: touchpoints.csv, event_map: {purchase: conversion}}\n"
        "validation: {min_repeat_customers: 0}\n"
    )
    touchpoints = TOUCHPOINTS + "c1,2024-01-08,email, Click \n"
    report = _validate_json(ws, GOOD, config, **{"touchpoints.csv": touchpoints})

    assert report["tables"]["touchpoints"]["rows_accepted"] == 3
    assert report["tables"]["touchpoints"]["rejected_by_rule"] == {}


def test_event_map_to_an_unknown_event_is_a_config_error(ws: Workspace) -> None:
    config = (
        "sources:\n  orders: {path: orders.csv}\n"
        "  touchpoints: {path: touchpoints.csv, event_map: {purchase: buy}}\n"
    )
    ws.write({"orders.csv": GOOD, "touchpoints.csv": TOUCHPOINTS, "segvalue.yaml": config})

    outcome = ws.run(["validate", "-c", "{ws}/segvalue.yaml"])

    assert outcome.code == 2
    assert "event_map" in outcome.err
    assert "impression, click, open, visit, conversion" in outcome.err


def test_rejected_customers_are_named_as_the_first_cause_of_unknown_customers(
    ws: Workspace,
) -> None:
    customers = "customer_id,signup_date\nc1,15.01.2024\nc2,16.01.2024\n"
    config = (
        "sources:\n  customers: {path: customers.csv}\n  orders: {path: orders.csv}\n"
        "validation: {min_repeat_customers: 0}\n"
    )
    ws.write({"customers.csv": customers, "orders.csv": GOOD, "segvalue.yaml": config})

    outcome = ws.run(["validate", "-c", "{ws}/segvalue.yaml"])

    assert outcome.code == 2
    error, _, fix = outcome.err.partition("\nfix: ")
    assert "orders.csv: no valid orders remain (unknown_customer: 3)" in error
    assert (
        "first cause: customers.csv line 2: signup_date '15.01.2024' cannot be parsed as a date "
        "(unparseable_value, 2 rows)" in error
    )
    assert "sources.customers.date_format" in fix and "'%d.%m.%Y'" in fix
    assert "segvalue validate" not in outcome.err


def test_the_rejects_file_is_written_when_no_order_remains(ws: Workspace) -> None:
    customers = "customer_id,signup_date\nc1,2024-01\nc2,2024-02\n"
    config = (
        "sources:\n  customers: {path: customers.csv, date_format: '%d/%m/%Y'}\n"
        "  orders: {path: orders.csv}\n"
    )
    ws.write({"customers.csv": customers, "orders.csv": GOOD, "segvalue.yaml": config})

    outcome = ws.run(
        ["validate", "-c", "{ws}/segvalue.yaml", "--rejects", "{ws}/rejects.csv"],
        may_write=["rejects.csv"],
    )

    assert outcome.code == 2
    assert "first cause: customers.csv line 2: signup_date '2024-01'" in outcome.err
    assert "segvalue validate" not in outcome.err
    lines = (ws.root / "rejects.csv").read_text().splitlines()
    assert len(lines) == 1 + 2 + 3  # header, both customers, every order
    assert (
        lines[1]
        .replace('"', "")
        .startswith("customers,customers.csv,2,unparseable_value,signup_date,2024-01,")
    )


def test_a_cascade_that_leaves_some_orders_warns_with_the_first_cause(ws: Workspace) -> None:
    customers = "customer_id,signup_date\nc1,2024-01-01\nc2,2024/13/45\nc3,2024-01-02\n"
    orders = GOOD + "4,c2,2024-03-02,5\n5,c2,2024-03-03,6\n6,c2,2024-03-04,7\n"
    config = (
        "sources:\n  customers: {path: customers.csv}\n  orders: {path: orders.csv}\n"
        "validation: {min_repeat_customers: 0}\n"
    )
    ws.write({"customers.csv": customers, "orders.csv": orders, "segvalue.yaml": config})

    outcome = ws.run(["validate", "-c", "{ws}/segvalue.yaml", "--json"])

    assert outcome.code == 0
    warnings = json.loads(outcome.out)["warnings"]
    (cascade,) = [w for w in warnings if "first cause" in w]
    assert cascade.startswith("orders.csv: 4 of 6 rows rejected; first cause: customers.csv line 3")
    assert "signup_date '2024/13/45'" in cascade


@pytest.mark.parametrize(
    ("dates", "expected"),
    [
        (("15/03/2024", "16/03/2024"), "'%d/%m/%Y'"),
        (("03.15.2024", "03.16.2024"), None),
        (("2024-03", "2024-04"), "'%Y-%m'"),
    ],
)
def test_unparseable_order_dates_suggest_a_date_format(
    ws: Workspace, dates: tuple[str, str], expected: str | None
) -> None:
    orders = HEADER + f"1,c1,{dates[0]},10\n2,c2,{dates[1]},20\n"
    ws.write({"orders.csv": orders, "segvalue.yaml": CONFIG})

    outcome = ws.run(["validate", "-c", "{ws}/segvalue.yaml"])

    assert outcome.code == 2
    error, _, fix = outcome.err.partition("\nfix: ")
    assert f"orders.csv line 2: order_ts '{dates[0]}' cannot be parsed as a timestamp" in error
    assert "sources.orders.date_format" in fix
    if expected is None:
        assert "correct the order_ts values" in fix
    else:
        assert f"to {expected} (it parses '{dates[0]}')" in fix


def test_the_clv_command_suggests_its_own_option(ws: Workspace) -> None:
    ws.write({"orders.csv": HEADER + "1,c1,15/03/2024,10\n2,c2,16/03/2024,20\n"})

    outcome = ws.run(
        [
            "clv",
            "{ws}/orders.csv",
            "--customer-col",
            "customer_id",
            "--date-col",
            "order_ts",
            "--amount-col",
            "amount",
        ]
    )

    assert outcome.code == 2
    assert "order_ts '15/03/2024' cannot be parsed as a timestamp" in outcome.err
    assert "fix: set --date-format to '%d/%m/%Y'" in outcome.err


def _shop(n_customers: int = 60, seed: int = 3) -> str:
    """Enough repeat buyers for the CLV models; seeded."""
    rng = random.Random(seed)
    lines, order = [HEADER.strip()], 0
    for c in range(n_customers):
        for _ in range(rng.randint(1, 6)):
            order += 1
            day = rng.randint(1, 360)
            date = f"2024-{1 + (day - 1) // 30:02d}-{1 + (day - 1) % 28:02d}"
            lines.append(f"{order},c{c},{date},{rng.uniform(5, 80):.2f}")
    return "\n".join(lines) + "\n"


def test_run_with_a_nan_amount_rejects_the_row_and_finishes(ws: Workspace) -> None:
    orders = _shop() + "9999,c1,2024-06-01,NaN\n"
    config = (
        "sources:\n  orders: {path: orders.csv}\n"
        "validation: {min_repeat_customers: 0}\n"
        "clv: {enabled: false}\n"  # the point is the NaN, not a fit on a tiny shop
        "output: {dir: out}\n"
    )
    ws.write({"orders.csv": orders, "segvalue.yaml": config})

    outcome = ws.run(
        ["run", "-c", "{ws}/segvalue.yaml", "--json"],
        may_write=["out", "segvalue-store.duckdb", ".out.lock", ".segvalue-store.duckdb.lock"],
    )

    assert outcome.code == 0, outcome.text
    assert "STDDEV" not in outcome.text
    summary = json.loads(outcome.out)
    assert summary["validation"]["tables"]["orders"]["rejected_by_rule"] == {"non_finite": 1}
    assert summary["customers"] == 60
    assert not _non_finite_numbers(summary)


def _non_finite_numbers(doc: Any) -> list[Any]:
    """Every NaN or infinite number anywhere in a JSON document."""
    if isinstance(doc, dict):
        return [x for v in doc.values() for x in _non_finite_numbers(v)]
    if isinstance(doc, list):
        return [x for v in doc for x in _non_finite_numbers(v)]
    return [doc] if isinstance(doc, float) and not math.isfinite(doc) else []
