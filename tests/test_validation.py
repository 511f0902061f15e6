"""The named validation rules and the ingestion report, on a hand-made shop.

The fixture plants exactly known problems, each on a known line of a known file, so every
count, every reject row and every warning below is an exact value.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import duckdb
import ibis
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest

from segvalue.cli.main import cli
from segvalue.config import load_config
from segvalue.data.validation import RULES, ValidatedData
from segvalue.pipeline import load

CUSTOMERS = """\
customer_id,signup_date
c1,2023-01-01
c2,2023-02-01
c3,2023-03-01
c4,2023-04-01
c5,2023-05-01
c6,2023-06-01
"""

# Line numbers (header = line 1) are in the comments; the plan of every planted problem.
ORDERS = """\
order_id,customer_id,order_ts,amount
o1,c1,2024-01-10,100.00
o2,c1,2024-02-10,50.00
o3,c2,2024-03-01,80.00
o4,c2,2024-03-05,abc
o5,c3,2024-03-07,12..5
o6,c3,2024-13-01,20
o7,c3,not-a-date,20
o3,c4,2024-04-01,30
o8,,2024-04-02,30
o9,c4,2024-07-15,40
o10,c99,2024-04-03,25
o11,c1,2024-04-10,-20.00
o12,c5,2024-04-11,-15.50
o13,c2,2024-05-01,0
o14,c4,2023-01-15,60
o15,c4,2024-05-20,70
o16,c6,2024-06-01,35
"""
# line 2-4: good purchases       line 5-6: unparseable amounts   line 7-8: unparseable dates
# line 9: duplicate of line 4    line 10: no customer id         line 11: after as_of
# line 12: unknown customer      line 13: return (c1 bought)     line 14: return, c5 never bought
# line 15: zero amount           line 16: before the lookback    line 17-18: good purchases

ORDER_LINES = """\
order_id,product_id,quantity,line_amount
o1,p1,1,100
o2,p2,2,50
o3,p1,1,80
o404,p3,1,10
"""

TOUCHPOINTS = """\
customer_id,ts,channel,cost
c1,2024-01-05 10:00:00,email,0.1
c2,2024-02-01,paid_social,1.5
c3,2024-06-20,search,0.8
"""

SHOP_CONFIG = """\
as_of: 2024-06-30
time_unit: week
lookback: 52
sources:
  customers: {path: customers.csv}
  orders: {path: orders.csv}
  order_lines: {path: order_lines.csv}
  touchpoints: {path: touchpoints.csv}
validation:
  min_repeat_customers: 3
"""

AS_OF = dt.date(2024, 6, 30)
LOOKBACK_START = dt.date(2023, 7, 2)  # 52 weeks = 364 days before as_of

ORDER_RULES = {
    "unparseable_value": 4,
    "duplicate_key": 1,
    "null_id": 1,
    "after_as_of": 1,
    "unknown_customer": 1,
    "return_without_purchase": 1,
}


def _reject(row: int, rule: str, column: str, value: str | None, reason: str) -> dict[str, Any]:
    return {
        "table": "orders",
        "source": "orders.csv",
        "row": row,
        "rule": rule,
        "column": column,
        "value": value,
        "reason": reason,
    }


REJECTS = [
    {
        "table": "order_lines",
        "source": "order_lines.csv",
        "row": 5,
        "rule": "unknown_order",
        "column": "order_id",
        "value": "o404",
        "reason": "order_id 'o404' is not among the accepted orders",
    },
    _reject(5, "unparseable_value", "amount", "abc", "amount 'abc' cannot be parsed as a number"),
    _reject(
        6, "unparseable_value", "amount", "12..5", "amount '12..5' cannot be parsed as a number"
    ),
    _reject(
        7,
        "unparseable_value",
        "order_ts",
        "2024-13-01",
        "order_ts '2024-13-01' cannot be parsed as a timestamp",
    ),
    _reject(
        8,
        "unparseable_value",
        "order_ts",
        "not-a-date",
        "order_ts 'not-a-date' cannot be parsed as a timestamp",
    ),
    _reject(9, "duplicate_key", "order_id", "o3", "order_id 'o3' already appeared on line 4"),
    _reject(10, "null_id", "customer_id", None, "customer_id is empty"),
    _reject(
        11,
        "after_as_of",
        "order_ts",
        "2024-07-15",
        "order_ts 2024-07-15 00:00:00 is after the as-of date 2024-06-30",
    ),
    _reject(
        12,
        "unknown_customer",
        "customer_id",
        "c99",
        "customer_id 'c99' is not in the customers table",
    ),
    _reject(
        14,
        "return_without_purchase",
        "amount",
        "-15.50",
        "return for customer 'c5' who has no accepted purchase",
    ),
]

ACCEPTED_ORDERS = ["o1", "o2", "o3", "o11", "o13", "o15", "o16"]

REPEAT_WARNING = (
    "only 2 repeat customers (fewer than 3): too thin for reliable purchase-prediction "
    "(BTYD) models"
)
HISTORY_WARNING = (
    "24.6 weeks of order history is less than 3x the prediction horizon (52 weeks): "
    "predictions beyond the history are extrapolation"
)


def _write_shop(folder: Path, config: str = SHOP_CONFIG) -> Path:
    files = {
        "customers.csv": CUSTOMERS,
        "orders.csv": ORDERS,
        "order_lines.csv": ORDER_LINES,
        "touchpoints.csv": TOUCHPOINTS,
        "segvalue.yaml": config,
    }
    for name, text in files.items():
        (folder / name).write_text(text, encoding="utf-8")
    return folder / "segvalue.yaml"


@pytest.fixture
def shop(tmp_path: Path) -> Path:
    """The shop's segvalue.yaml, next to its four CSV files."""
    return _write_shop(tmp_path)


@pytest.fixture
def shop_data(shop: Path) -> ValidatedData:
    return load(load_config(shop))


def _rejects(data: ValidatedData) -> list[dict[str, Any]]:
    return list(data.rejects.order_by(["table", "row"]).to_pyarrow().to_pylist())


def _load_single(folder: Path, config: str, files: dict[str, str]) -> ValidatedData:
    for name, text in files.items():
        (folder / name).write_text(text, encoding="utf-8")
    (folder / "segvalue.yaml").write_text(config, encoding="utf-8")
    return load(load_config(folder / "segvalue.yaml"))


def _column(data: ValidatedData, table: str, column: str) -> list[Any]:
    return list(data.tables[table].order_by("_row")[column].to_pyarrow().to_pylist())


# --- counts and reject rows --------------------------------------------------------------


def test_exact_counts_per_rule(shop_data: ValidatedData) -> None:
    tables = shop_data.report.tables
    assert tables["orders"].rejected == ORDER_RULES
    assert tables["order_lines"].rejected == {"unknown_order": 1}
    assert tables["customers"].rejected == {}
    assert tables["touchpoints"].rejected == {}
    assert shop_data.report.rows_rejected == 10
    assert set(ORDER_RULES) | {"unknown_order"} <= set(RULES)


def test_every_reject_row_says_where_and_why(shop_data: ValidatedData) -> None:
    assert _rejects(shop_data) == REJECTS


def test_nothing_is_dropped_silently(shop_data: ValidatedData) -> None:
    expected = {  # rows_read, accepted, rejected, dropped by lookback
        "customers": (6, 6, 0, 0),
        "orders": (17, 7, 9, 1),
        "order_lines": (4, 3, 1, 0),
        "touchpoints": (3, 3, 0, 0),
    }
    for name, table in shop_data.report.tables.items():
        counts = (
            table.rows_read,
            table.rows_accepted,
            table.rows_rejected,
            table.dropped_by_lookback,
        )
        assert counts == expected[name], name
        assert table.rows_read == (
            table.rows_accepted + table.rows_rejected + table.dropped_by_lookback
        )
        assert shop_data.tables[name].count().to_pyarrow().as_py() == table.rows_accepted
    assert _column(shop_data, "orders", "order_id") == ACCEPTED_ORDERS


def test_clean_orders_are_typed(shop_data: ValidatedData) -> None:
    orders = shop_data.tables["orders"].order_by("_row").to_pyarrow()
    assert orders.schema.field("order_ts").type == pa.timestamp("us")
    assert orders.column("amount").to_pylist() == [100.0, 50.0, 80.0, -20.0, 0.0, 70.0, 35.0]
    assert orders.column("_row").to_pylist() == [2, 3, 4, 13, 15, 17, 18]


def test_returns_are_kept_and_counted(shop_data: ValidatedData) -> None:
    orders = shop_data.report.tables["orders"]
    assert orders.returns == 1
    assert orders.returns_amount == 20.0
    assert orders.to_dict()["returns_amount"] == 20.0


def test_zero_amounts_are_kept_and_counted_by_default(shop_data: ValidatedData) -> None:
    assert shop_data.report.tables["orders"].zero_amounts == 1
    assert "o13" in _column(shop_data, "orders", "order_id")


def test_zero_amounts_rejected_on_request(tmp_path: Path) -> None:
    config = SHOP_CONFIG + "  zero_amounts: reject\n"
    data = load(load_config(_write_shop(tmp_path, config)))

    orders = data.report.tables["orders"]
    assert orders.rejected == {**ORDER_RULES, "zero_amount": 1}
    assert orders.zero_amounts == 0
    assert orders.rows_accepted == 6
    zero = [r for r in _rejects(data) if r["rule"] == "zero_amount"]
    assert zero == [_reject(15, "zero_amount", "amount", "0", "amount is 0")]


def test_return_needs_an_accepted_purchase(tmp_path: Path) -> None:
    """A purchase that is itself rejected (here: after as_of) cannot absorb a return."""
    orders = (
        "order_id,customer_id,order_ts,amount\n"
        "a1,c1,2024-01-10,10\n"
        "a2,c7,2024-06-29,-5\n"
        "a3,c7,2024-07-02,40\n"
    )
    config = "as_of: 2024-06-30\nsources:\n  orders: {path: orders.csv}\n"
    data = _load_single(tmp_path, config, {"orders.csv": orders})

    assert data.report.tables["orders"].rejected == {"after_as_of": 1, "return_without_purchase": 1}
    assert [(r["row"], r["rule"]) for r in _rejects(data)] == [
        (3, "return_without_purchase"),
        (4, "after_as_of"),
    ]
    assert _column(data, "orders", "order_id") == ["a1"]


# --- lookback, freshness, sufficiency ----------------------------------------------------


def test_lookback_drops_old_rows_and_reports_them(shop_data: ValidatedData) -> None:
    report = shop_data.report
    assert report.lookback_start == LOOKBACK_START
    assert report.to_dict()["lookback_start"] == "2023-07-02"
    assert report.tables["orders"].dropped_by_lookback == 1
    assert "o14" not in _column(shop_data, "orders", "order_id")
    assert 16 not in [r["row"] for r in _rejects(shop_data)]


def test_without_lookback_nothing_is_dropped(tmp_path: Path) -> None:
    config = SHOP_CONFIG.replace("lookback: 52\n", "")
    data = load(load_config(_write_shop(tmp_path, config)))

    assert data.report.lookback_start is None
    assert all(t.dropped_by_lookback == 0 for t in data.report.tables.values())
    assert data.report.tables["orders"].rows_accepted == 8
    assert data.report.tables["orders"].earliest == "2023-01-15T00:00:00"


def test_freshness_per_table(shop: Path) -> None:
    before = dt.datetime.now(dt.UTC).replace(tzinfo=None, microsecond=0)
    report = load(load_config(shop)).report
    after = dt.datetime.now(dt.UTC).replace(tzinfo=None)

    latest = {name: t.latest for name, t in report.tables.items()}
    assert latest == {
        "customers": "2023-06-01",
        "orders": "2024-06-01T00:00:00",
        "order_lines": None,
        "touchpoints": "2024-06-20T00:00:00",
    }
    assert report.tables["orders"].earliest == "2024-01-10T00:00:00"
    assert report.tables["touchpoints"].earliest == "2024-01-05T10:00:00"
    assert before <= report.loaded_at <= after
    assert report.as_of == AS_OF


def test_sufficiency_warnings_when_data_are_thin(shop_data: ValidatedData) -> None:
    assert shop_data.report.warnings == [REPEAT_WARNING, HISTORY_WARNING]


def test_no_sufficiency_warnings_when_data_suffice(tmp_path: Path) -> None:
    # 2 repeat customers (c1, c2) and 24.6 weeks of history >= 3 x 8 weeks.
    config = SHOP_CONFIG.replace("min_repeat_customers: 3", "min_repeat_customers: 2")
    config += "  prediction_horizon: 8\n"
    data = load(load_config(_write_shop(tmp_path, config)))

    assert data.report.warnings == []


def test_history_warning_follows_the_horizon(tmp_path: Path) -> None:
    config = SHOP_CONFIG.replace("min_repeat_customers: 3", "min_repeat_customers: 2")
    config += "  prediction_horizon: 9\n"  # 3 x 9 = 27 weeks > 24.6 weeks of history
    data = load(load_config(_write_shop(tmp_path, config)))

    assert data.report.warnings == [
        "24.6 weeks of order history is less than 3x the prediction horizon (9 weeks): "
        "predictions beyond the history are extrapolation"
    ]


# --- the command line --------------------------------------------------------------------


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def test_validate_json_reports_the_same(shop: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = cli(["validate", "-c", str(shop), "--json"])
    captured = capsys.readouterr()

    assert code == 0, captured.err
    report = json.loads(captured.out)
    assert report["as_of"] == "2024-06-30"
    assert report["time_unit"] == "week"
    assert report["lookback_start"] == "2023-07-02"
    assert report["rows_rejected"] == 10
    assert report["warnings"] == [REPEAT_WARNING, HISTORY_WARNING]
    orders = report["tables"]["orders"]
    assert orders["rejected_by_rule"] == ORDER_RULES
    assert {k: orders[k] for k in ("rows_read", "rows_accepted", "rows_rejected")} == {
        "rows_read": 17,
        "rows_accepted": 7,
        "rows_rejected": 9,
    }
    assert orders["dropped_by_lookback"] == 1
    assert (orders["returns"], orders["returns_amount"], orders["zero_amounts"]) == (1, 20.0, 1)
    assert orders["latest_event"] == "2024-06-01T00:00:00"
    assert report["tables"]["order_lines"]["rejected_by_rule"] == {"unknown_order": 1}
    examples = orders["examples_by_rule"]
    assert examples.keys() == ORDER_RULES.keys()
    for rule, n in ORDER_RULES.items():
        assert len(examples[rule]) == min(n, 3)
        assert all(e.startswith("line ") for e in examples[rule])
    lines = [int(e.split(":")[0].removeprefix("line ")) for e in examples["unparseable_value"]]
    assert lines == sorted(lines)  # the first rejects of the rule, in file order
    for table in report["tables"].values():
        assert table["rows_read"] == (
            table["rows_accepted"] + table["rows_rejected"] + table["dropped_by_lookback"]
        )
    assert dt.datetime.fromisoformat(report["loaded_at"]).year >= 2024


def test_strict_fails_and_writes_only_the_rejects(
    shop: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    before = _snapshot(shop.parent)
    rejects = shop.parent / "rejects.csv"

    code = cli(["validate", "-c", str(shop), "--strict", "--rejects", str(rejects)])
    captured = capsys.readouterr()

    assert code == 2
    assert "strict validation failed, nothing was written" in captured.err
    assert "orders.csv: 4 rows break unparseable_value" in captured.err
    assert "order_lines.csv: 1 row break unknown_order" in captured.err
    assert "Traceback" not in captured.err
    # The rejects explain the failure, so they are written (docs/safety.md); nothing else.
    assert pacsv.read_csv(rejects).num_rows == len(REJECTS)
    assert {k: v for k, v in _snapshot(shop.parent).items() if k != rejects.name} == before


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_rejects_file_holds_the_rejects(
    suffix: str, shop: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rejects = shop.parent / f"rejects{suffix}"

    code = cli(["validate", "-c", str(shop), "--rejects", str(rejects)])
    capsys.readouterr()

    assert code == 0
    if suffix == ".csv":
        table = pacsv.read_csv(
            rejects,
            convert_options=pacsv.ConvertOptions(
                column_types={"value": pa.string()}, strings_can_be_null=True
            ),
        )
    else:
        table = pq.read_table(rejects)
    assert table.column_names == ["table", "source", "row", "rule", "column", "value", "reason"]
    assert table.to_pylist() == REJECTS
    assert sorted(p.name for p in shop.parent.iterdir() if p.name.startswith(".")) == []


# --- formats, sources and mapping --------------------------------------------------------


def test_decimal_comma_and_semicolon(tmp_path: Path) -> None:
    orders = (
        "order_id;customer_id;order_ts;amount\n"
        "1;c1;2024-01-05;1.234,56\n"
        "2;c1;2024-02-05;7,5\n"
        "3;c1;2024-02-06;-2,25\n"
        "4;c2;2024-02-07;12,3,4\n"
    )
    config = "sources:\n  orders:\n    path: orders.csv\n    csv: {delimiter: ';', decimal: ','}\n"
    data = _load_single(tmp_path, config, {"orders.csv": orders})

    assert _column(data, "orders", "amount") == [1234.56, 7.5, -2.25]
    assert [(r["row"], r["value"]) for r in _rejects(data)] == [(5, "12,3,4")]
    assert data.report.tables["orders"].returns_amount == 2.25


def test_date_formats_are_detected(tmp_path: Path) -> None:
    orders = (
        "order_id,customer_id,order_ts,amount\n"
        "1,c1,20240106,1\n"
        "2,c1,2024-01-07,1\n"
        "3,c1,2024/01/08,1\n"
        "4,c1,2024-01-09 13:45:00,1\n"
        "5,c1,2024-01-10T08:00:00,1\n"
        "6,c1,01/02/2024,1\n"
    )
    config = "as_of: 2024-06-30\nsources:\n  orders: {path: orders.csv}\n"
    data = _load_single(tmp_path, config, {"orders.csv": orders})

    assert _column(data, "orders", "order_ts") == [
        dt.datetime(2024, 1, 6),
        dt.datetime(2024, 1, 7),
        dt.datetime(2024, 1, 8),
        dt.datetime(2024, 1, 9, 13, 45),
        dt.datetime(2024, 1, 10, 8),
    ]
    # Day-first or month-first is ambiguous, so it is never guessed: it must be configured.
    assert [(r["row"], r["rule"], r["value"]) for r in _rejects(data)] == [
        (7, "unparseable_value", "01/02/2024")
    ]


def test_configured_date_format(tmp_path: Path) -> None:
    orders = (
        "order_id,customer_id,order_ts,amount\n"
        "1,c1,05/01/2024,1\n"
        "2,c1,31/12/2023,1\n"
        "3,c1,1/2/2024,1\n"
        "4,c1,2024-01-05,1\n"
    )
    config = (
        "as_of: 2024-06-30\nsources:\n  orders:\n    path: orders.csv\n"
        "    date_format: '%d/%m/%Y'\n"
    )
    data = _load_single(tmp_path, config, {"orders.csv": orders})

    assert _column(data, "orders", "order_ts") == [
        dt.datetime(2024, 1, 5),
        dt.datetime(2023, 12, 31),
        dt.datetime(2024, 2, 1),
    ]
    assert [(r["row"], r["value"]) for r in _rejects(data)] == [(5, "2024-01-05")]


def test_column_mapping_with_the_users_names(tmp_path: Path) -> None:
    orders = (
        "Bestellnr,Kunde,Datum,Betrag,amount\n"
        "B1,K1,2024-01-05,10.5,999\n"
        "B2,K2,2024-01-06,oops,999\n"
        "B3,K1,2024-01-07,4,999\n"
    )
    config = (
        "sources:\n  orders:\n    path: orders.csv\n    columns:\n"
        "      order_id: Bestellnr\n      customer_id: Kunde\n"
        "      order_ts: Datum\n      amount: Betrag\n"
    )
    data = _load_single(tmp_path, config, {"orders.csv": orders})

    clean = data.tables["orders"].order_by("_row").to_pyarrow()
    assert clean.column_names == ["order_id", "customer_id", "order_ts", "amount", "_row"]
    assert clean.select(["order_id", "customer_id", "amount"]).to_pylist() == [
        {"order_id": "B1", "customer_id": "K1", "amount": 10.5},
        {"order_id": "B3", "customer_id": "K1", "amount": 4.0},
    ]
    assert [(r["row"], r["column"], r["value"]) for r in _rejects(data)] == [(3, "amount", "oops")]


def _typed_orders() -> pa.Table:
    return pa.table(
        {
            "order_id": ["o1", "o2", "o3", "o1", "o5"],
            "customer_id": ["c1", "c2", None, "c3", "c1"],
            "order_ts": pa.array(
                [dt.datetime(2024, 1, d) for d in (5, 6, 7, 8, 9)], pa.timestamp("us")
            ),
            "amount": [10.0, 20.0, 30.0, 40.0, 50.0],
        }
    )


def _typed_rejects(source: str) -> list[dict[str, Any]]:
    return [
        {
            "table": "orders",
            "source": source,
            "row": 3,
            "rule": "null_id",
            "column": "customer_id",
            "value": None,
            "reason": "customer_id is empty",
        },
        {
            "table": "orders",
            "source": source,
            "row": 4,
            "rule": "duplicate_key",
            "column": "order_id",
            "value": "o1",
            "reason": "order_id 'o1' already appeared on row 1",
        },
    ]


def test_parquet_source_has_one_based_rows(tmp_path: Path) -> None:
    pq.write_table(_typed_orders(), tmp_path / "orders.parquet")
    config = "sources:\n  orders: {path: orders.parquet}\n"
    data = _load_single(tmp_path, config, {})

    assert _rejects(data) == _typed_rejects("orders.parquet")
    assert _column(data, "orders", "_row") == [1, 2, 5]
    assert _column(data, "orders", "amount") == [10.0, 20.0, 50.0]


def test_duckdb_file_source_has_one_based_rows(tmp_path: Path) -> None:
    con = duckdb.connect(str(tmp_path / "shop.duckdb"))
    arrow_orders = _typed_orders()  # read by name in the SQL below
    con.execute("CREATE TABLE sales AS SELECT * FROM arrow_orders")
    con.close()
    config = "sources:\n  orders: {path: shop.duckdb, table: sales}\n"
    data = _load_single(tmp_path, config, {})

    assert data.report.tables["orders"].source == "shop.duckdb"
    assert _rejects(data) == _typed_rejects("shop.duckdb")
    assert _column(data, "orders", "_row") == [1, 2, 5]
    assert _column(data, "orders", "order_id") == ["o1", "o2", "o5"]
    assert arrow_orders.num_rows == 5


# --- value rules, trimming, as-of inference, root causes ---------------------------------


def test_new_rules_are_checked_in_their_documented_order() -> None:
    names = list(RULES)
    assert names.index("unparseable_value") < names.index("non_finite")
    assert names.index("non_finite") < names.index("implausible_value")
    assert names.index("duplicate_key") < names.index("future_timestamp")
    assert names.index("future_timestamp") < names.index("after_as_of")
    assert names[-1] == "return_without_purchase"
    contract = (Path(__file__).parents[1] / "docs" / "data-contract.md").read_text()
    assert all(f"| `{rule}` |" in contract for rule in RULES)


def test_one_row_breaking_several_rules_gets_the_first(tmp_path: Path) -> None:
    orders = (
        "order_id,customer_id,order_ts,amount\n"
        "1,c1,2024-01-05,10\n"
        "1,c1,2100-01-01,NaN\n"  # duplicate, future and non-finite: non_finite comes first
        "2,c1,2100-01-01,5\n"  # duplicate of nothing, future
    )
    data = _load_single(
        tmp_path, "sources:\n  orders: {path: orders.csv}\n", {"orders.csv": orders}
    )

    assert [(r["row"], r["rule"], r["value"]) for r in _rejects(data)] == [
        (3, "non_finite", "NaN"),
        (4, "future_timestamp", "2100-01-01"),
    ]
    assert data.report.as_of == dt.date(2024, 1, 5)  # 2100 on a rejected row does not count


def test_a_repeated_key_is_its_rule_unless_an_earlier_rule_is_broken(tmp_path: Path) -> None:
    # duplicate_key compares rows, so it is checked on the stored rows after the pass; the
    # first rule broken must still win, and the first row of a key counts also when it is
    # rejected itself.
    orders = (
        "order_id,customer_id,order_ts,amount\n"
        "1,c1,2024-01-05,10\n"
        "1,c1,2100-01-01,5\n"  # repeated and future: duplicate_key comes first
        "2,c1,2024-01-06,abc\n"
        "2,c1,2024-01-07,5\n"  # repeats a rejected row
        "3,c1,2024-01-08,nan\n"
        "3,c1,2024-01-09,nan\n"  # repeated and non-finite: non_finite comes first
    )
    data = _load_single(
        tmp_path, "sources:\n  orders: {path: orders.csv}\n", {"orders.csv": orders}
    )

    assert [(r["row"], r["rule"], r["value"], r["reason"]) for r in _rejects(data)] == [
        (3, "duplicate_key", "1", "order_id '1' already appeared on line 2"),
        (4, "unparseable_value", "abc", "amount 'abc' cannot be parsed as a number"),
        (5, "duplicate_key", "2", "order_id '2' already appeared on line 4"),
        (6, "non_finite", "nan", "amount 'nan' is not a finite number"),
        (7, "non_finite", "nan", "amount 'nan' is not a finite number"),
    ]
    assert _column(data, "orders", "order_id") == ["1"]


def test_line_numbers_of_a_file_read_in_parallel(tmp_path: Path) -> None:
    # More rows than DuckDB reads in one piece, so that several threads parse the file:
    # the stored copy keeps the file's order, and _row is the line number.
    n = 300_000
    bad = {2, 61_441, 150_000, 250_001, n + 1}  # lines (the header is line 1)
    lines = ["order_id,customer_id,order_ts,amount"]
    lines += [
        f"o{line},c{line % 97},2024-01-{1 + line % 28:02d},{'x' if line in bad else line % 50}"
        for line in range(2, n + 2)
    ]
    config = "sources:\n  orders: {path: orders.csv}\n"
    data = _load_single(tmp_path, config, {"orders.csv": "\n".join(lines) + "\n"})

    assert [(r["row"], r["value"]) for r in _rejects(data)] == [(line, "x") for line in sorted(bad)]
    clean = data.tables["orders"]
    assert clean.count().to_pyarrow().as_py() == n - len(bad)
    # every accepted row holds the values of its line
    line = clean._row.cast("string")
    misplaced = clean.filter(
        (clean.order_id != ibis.literal("o").concat(line))
        | (clean.amount != (clean._row % 50).cast("float64"))
    )
    assert misplaced.count().to_pyarrow().as_py() == 0


def test_a_file_is_numbered_by_a_window_where_rows_may_be_reordered(tmp_path: Path) -> None:
    from segvalue.data.readers import read_source

    orders = "order_id,customer_id,order_ts,amount\n1,c1,2024-01-05,10\n2,c1,2024-01-06,x\n"
    (tmp_path / "orders.csv").write_text(orders)
    (tmp_path / "segvalue.yaml").write_text("sources:\n  orders: {path: orders.csv}\n")
    config = load_config(tmp_path / "segvalue.yaml")

    assert read_source(ibis.duckdb.connect(), "orders", config).file is not None
    unordered = ibis.duckdb.connect(preserve_insertion_order=False)
    assert read_source(unordered, "orders", config).file is None
    data = load(config, engine=unordered)
    assert [(r["row"], r["value"]) for r in _rejects(data)] == [(3, "x")]


def test_repeat_customers_counted_on_a_sample_first(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from segvalue.data import validation

    # Repeat customers among the first rows are a lower bound: enough there settles it;
    # too few there, and every order is counted (the warning gives the exact number).
    monkeypatch.setattr(validation, "_SUFFICIENCY_SAMPLE", 2)
    days = [(1, 1), (1, 2), (2, 3), (2, 4), (3, 5)]  # (customer, day): c1 and c2 repeat
    orders = "order_id,customer_id,order_ts,amount\n"
    orders += "".join(f"{i},c{c},2024-01-{d:02d},10\n" for i, (c, d) in enumerate(days))

    def repeat_warnings(minimum: int) -> list[str]:
        config = "sources:\n  orders: {path: orders.csv}\n"
        config += f"validation:\n  min_repeat_customers: {minimum}\n"
        data = _load_single(tmp_path, config, {"orders.csv": orders})
        return [w for w in data.report.warnings if "repeat customers" in w]

    assert repeat_warnings(1) == []
    assert repeat_warnings(2) == []
    assert repeat_warnings(3) == [
        "only 2 repeat customers (fewer than 3): too thin for reliable purchase-prediction "
        "(BTYD) models"
    ]


def test_future_is_measured_from_the_load_time(tmp_path: Path) -> None:
    from segvalue.data.readers import connect, read_source
    from segvalue.data.validation import validate_sources

    orders = "order_id,customer_id,order_ts,amount\n1,c1,2024-01-05,10\n2,c1,2024-01-09,5\n"
    (tmp_path / "orders.csv").write_text(orders)
    (tmp_path / "segvalue.yaml").write_text("sources:\n  orders: {path: orders.csv}\n")
    config = load_config(tmp_path / "segvalue.yaml")
    con = connect()
    raws = {"orders": read_source(con, "orders", config)}

    # Up to a day ahead is a time zone, not the future.
    data = validate_sources(con, raws, config, now=dt.datetime(2024, 1, 8, 12))
    assert data.report.tables["orders"].rejected == {}
    data = validate_sources(con, raws, config, now=dt.datetime(2024, 1, 7, 12))
    assert data.report.tables["orders"].rejected == {"future_timestamp": 1}
    assert data.report.as_of == dt.date(2024, 1, 5)
    assert data.report.to_dict()["as_of_inferred"] is True


def test_identifiers_are_trimmed_of_every_blank(tmp_path: Path) -> None:
    orders = (
        "order_id,customer_id,order_ts,amount\n"
        "1,A,2024-01-05,10\n"
        "2, A ,2024-01-06,10\n"
        "3,A\t,2024-01-07,10\n"
        "4,\u00a0A\u2003,2024-01-08,10\n"
        "5,\u00a0,2024-01-09,10\n"  # nothing but a blank: empty
        "6,\u00e9A,2024-01-10,10\n"  # a letter beyond ASCII stays
    )
    data = _load_single(
        tmp_path, "sources:\n  orders: {path: orders.csv}\n", {"orders.csv": orders}
    )

    assert _column(data, "orders", "customer_id") == ["A", "A", "A", "A", "\u00e9A"]
    assert [(r["row"], r["rule"]) for r in _rejects(data)] == [(6, "null_id")]
    # Counted: identifiers that changed and still hold a value (the blank one is rejected).
    assert data.report.tables["orders"].ids_trimmed == 3
    assert data.report.to_dict()["ids_trimmed"] == 3


def test_whole_numbers_out_of_range_are_rejected_not_a_crash(tmp_path: Path) -> None:
    customers = "customer_id,household_size,income\nc1,inf,10\nc2,1e300,10\nc3,3,nan\nc4,2,5\n"
    config = "sources:\n  customers: {path: customers.csv}\n  orders: {path: orders.csv}\n"
    orders = "order_id,customer_id,order_ts,amount\n1,c4,2024-01-05,10\n"
    data = _load_single(tmp_path, config, {"customers.csv": customers, "orders.csv": orders})

    assert [(r["row"], r["rule"], r["column"]) for r in _rejects(data)] == [
        (2, "unparseable_value", "household_size"),
        (3, "unparseable_value", "household_size"),
        (4, "non_finite", "income"),
    ]


def test_touchpoint_events_are_compared_in_lower_case_after_the_map(tmp_path: Path) -> None:
    touchpoints = (
        "customer_id,ts,channel,event\n"
        "c1,2024-01-05,email,Click\n"
        "c1,2024-01-05,email,purchase\n"
        "c1,2024-01-05,email,bounce\n"
        "c1,2024-01-05,email,\n"  # the event is optional
    )
    config = (
        "sources:\n  orders: {path: orders.csv}\n"
        "  touchpoints: {path: touchpoints.csv, event_map: {purchase: conversion}}\n"
    )
    orders = "order_id,customer_id,order_ts,amount\n1,c1,2024-01-05,10\n"
    data = _load_single(tmp_path, config, {"touchpoints.csv": touchpoints, "orders.csv": orders})

    assert _column(data, "touchpoints", "event") == ["click", "conversion", None]
    (reject,) = _rejects(data)
    assert (reject["row"], reject["rule"], reject["value"]) == (4, "unknown_event", "bounce")


@pytest.mark.parametrize(
    ("values", "formats"),
    [
        (["15/03/2024", "01/04/2024"], ["%d/%m/%Y"]),
        (["03/15/2024"], ["%m/%d/%Y"]),
        (["01/02/2024"], ["%d/%m/%Y", "%m/%d/%Y"]),
        (["15.03.2024"], ["%d.%m.%Y"]),
        (["15-03-2024"], ["%d-%m-%Y"]),
        (["2024-03"], ["%Y-%m"]),
        (["15/03/2024 14:05"], ["%d/%m/%Y %H:%M"]),
        (["2024-01-15x"], []),
        ([], []),
    ],
)
def test_guess_date_format(values: list[str], formats: list[str]) -> None:
    from segvalue.data.validation import guess_date_format

    assert guess_date_format(values) == formats


def test_unknown_order_lines_name_the_rejected_orders_as_first_cause(tmp_path: Path) -> None:
    orders = "order_id,customer_id,order_ts,amount\no1,c1,2024-01-05,10\no2,c1,2024-01-06,1e12\n"
    lines = "order_id,product_id,quantity,line_amount\no2,p1,1,5\no2,p2,1,5\no1,p1,1,10\n"
    config = "sources:\n  orders: {path: orders.csv}\n  order_lines: {path: order_lines.csv}\n"
    data = _load_single(tmp_path, config, {"orders.csv": orders, "order_lines.csv": lines})

    (warning,) = [w for w in data.report.warnings if "first cause" in w]
    assert warning.startswith(
        "order_lines.csv: 2 of 3 rows rejected; first cause: orders.csv line 3: "
        "amount '1e12' is beyond +/-1e+09 (validation.max_amount) (implausible_value, 1 row)"
    )
    assert "raise validation.max_amount" in warning


def test_a_surrogate_order_id_needs_no_duplicate_check(tmp_path: Path) -> None:
    orders = "customer_id,order_ts,amount\nc1,2024-01-05,10\nc1,2024-01-05,10\n"
    config = "sources:\n  orders:\n    path: orders.csv\n    columns: {order_id: _row}\n"
    data = _load_single(tmp_path, config, {"orders.csv": orders})

    assert _column(data, "orders", "order_id") == ["2", "3"]
    assert data.report.tables["orders"].rejected == {}
