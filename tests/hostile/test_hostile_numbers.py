"""Hostile inputs for the numbers a user reads: degenerate fits, constant amounts, CLV
budgets over unknown segments, signs of zero.

Each case runs ``segvalue`` in process in a guarded workspace (see ``conftest.py``): the
exit code, what the user reads (human output and ``--json``), no traceback, and nothing
written outside ``may_write``.
"""

from __future__ import annotations

import csv
import datetime as dt
import json
import re
from typing import Any as Workspace  # the `ws` fixture of conftest.py

import pytest

CLV = ["clv", "{ws}/orders.csv", "--customer-col", "customer_id", "--date-col", "order_date"]
CLV += ["--amount-col", "amount"]
START = dt.date(2024, 1, 1)


def _orders(rows: list[tuple[str, int, float]]) -> str:
    """CSV text from (customer, day offset, amount) rows."""
    lines = ["customer_id,order_date,amount"]
    lines += [f"{c},{START + dt.timedelta(days=d)},{a}" for c, d, a in rows]
    return "\n".join(lines) + "\n"


#: Twelve customers buying every week for ten weeks, all still buying: nothing to tell
#: the buyers apart, no interior optimum (the fit runs off to a boundary).
DEGENERATE = _orders([(f"c{c}", 7 * k, 10.0 + c) for c in range(12) for k in range(10)])

#: A realistic mix: regular, lapsed and one-time buyers (seeded, fixed by hand).
_MIXED = [
    (f"c{c}", d, 1.0)
    for c in range(60)
    for d in sorted({(c * 7 + k * (11 + c % 13)) % 360 for k in range(1 + c % 6)})
]
#: ... with every amount 1.0 (count-only data): Gamma-Gamma has no spread to learn.
CONSTANT_AMOUNT = _orders(_MIXED)


@pytest.mark.parametrize("json_output", [False, True], ids=["human", "json"])
def test_degenerate_fit_is_said_in_human_and_json_output(ws: Workspace, json_output: bool) -> None:
    ws.write({"orders.csv": DEGENERATE})
    result = ws.run([*CLV, *(["--json"] if json_output else [])])
    assert result.code == 0
    if json_output:
        doc = json.loads(result.out)
        assert any("degenerate" in w for w in doc["warnings"]), doc["warnings"]
        # intervals are finite or reported unavailable with a reason, never 1e250
        for name, bounds in doc["confidence_intervals"].items():
            if bounds is None:
                assert "not available" in doc["confidence_intervals_unavailable"][name]
            else:
                assert bounds[1] / bounds[0] < 1e6
    else:
        assert "warning:" in result.out and "degenerate" in result.out
        assert "unavailable" in result.out
        # no number of more than 15 digits anywhere (the old ~250-digit upper bound)
        assert not re.search(r"\d{16,}", result.out.replace(",", ""))


def test_constant_amounts_fall_back_to_no_spend_model_and_say_so(ws: Workspace) -> None:
    ws.write({"orders.csv": CONSTANT_AMOUNT})
    human = ws.run(CLV)
    assert human.code == 0, human.text
    assert "set a penalizer" not in human.text
    assert "clv.spend_model: none" in human.out
    doc = json.loads(ws.run([*CLV, "--json"]).out)
    assert doc["spend_model"] is None
    assert any("clv.spend_model: none" in w for w in doc["warnings"])
    assert doc["total_clv"] > 0


def test_no_negative_bound_or_negative_zero_in_human_output(ws: Workspace) -> None:
    # c0 returns more than it bought (net -5): its value is 0, never below
    rows = [*_MIXED, ("c0", 200, -9.0), ("zz", 3, 4.0)]
    ws.write({"orders.csv": _orders(rows)})
    result = ws.run([*CLV, "--spend-model", "none", "--out", "{ws}/clv.csv"], may_write=["clv.csv"])
    assert result.code == 0, result.text
    assert "-0.0" not in result.out
    # log-likelihoods are negative by nature; every other number shown is a value >= 0
    values = [line for line in result.out.splitlines() if "log-likelihood" not in line]
    values = [line for line in values if "LL -" not in line]
    assert not re.search(r"(?<![\w-])-\d", "\n".join(values)), result.out
    assert "total CLV" in result.out
    with (ws.root / "clv.csv").open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 61
    for row in rows:
        for column in ("clv", "clv_lower", "expected_spend", "probability_alive", "churn_risk"):
            if row[column]:
                assert float(row[column]) >= 0, (column, row)
                assert not row[column].startswith("-"), (column, row)


UNMATCHED_CURVES = """\
total: 200
segment_clv: {all customers: 100, loyal: 150}
items:
  - {name: loyal_email, form: michaelis_menten, beta: 1000, k: 100, segment: loyal}
  - {name: mystery, form: michaelis_menten, beta: 1000, k: 100, segment: lyal}
  - {name: plain, form: michaelis_menten, beta: 1000, k: 100}
"""


@pytest.mark.parametrize("json_output", [False, True], ids=["human", "json"])
def test_clv_budget_names_items_without_a_segment_clv(ws: Workspace, json_output: bool) -> None:
    ws.write({"curves.yaml": UNMATCHED_CURVES})
    argv = ["budget", "--curves", "{ws}/curves.yaml", "--objective", "clv"]
    result = ws.run([*argv, *(["--json"] if json_output else [])])
    assert result.code == 0, result.text
    if json_output:
        warnings = json.loads(result.out)["warnings"]
    else:
        # a long warning wraps at the terminal width: one paragraph per "warning:"
        text = " ".join(result.out.split())
        warnings = ["warning:" + w for w in text.split("warning:")[1:]]
    assert len(warnings) == 1, warnings
    assert "mystery (segment 'lyal')" in warnings[0]
    assert "plain (no segment)" in warnings[0]
    assert "Segments with a CLV: loyal" in warnings[0]
