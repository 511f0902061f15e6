"""PostgreSQL, a real server: as a source next to DuckDB, and as the engine itself."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import ibis
import pyarrow as pa
import pytest

from backend_compare import assert_same_rows, sorted_rows
from segvalue.config import parse_config
from segvalue.features.customer import customer_features
from segvalue.pipeline import load

ORDERS = pa.table(
    {
        "order_id": ["o1", "o2", "o3", "o4", "o5", "o5", "o6"],
        "customer_id": ["a", "a", "b", "a", "c", None, "b"],
        "order_ts": pa.array(
            [
                dt.datetime(2024, 1, 2, 10),
                dt.datetime(2024, 1, 20, 9),
                dt.datetime(2024, 2, 1, 12),
                dt.datetime(2024, 3, 5, 8),
                dt.datetime(2024, 3, 9, 8),
                dt.datetime(2024, 3, 10, 8),
                dt.datetime(2024, 7, 1, 8),  # after as_of
            ],
            pa.timestamp("us"),
        ),
        "amount": [50.0, 20.0, 35.5, -10.0, 12.0, 3.0, 9.0],
    }
)
AS_OF = dt.date(2024, 6, 30)


@pytest.fixture()
def pg(postgres_url: str) -> Iterator[Any]:
    con = ibis.connect(postgres_url)
    con.create_table("shop_orders", ORDERS, overwrite=True)
    yield con
    con.drop_table("shop_orders", force=True)
    con.disconnect()


def _config(postgres_url: str, engine: str) -> Any:
    return parse_config(
        {
            "as_of": AS_OF.isoformat(),
            "engine": {"url": engine},
            "sources": {"orders": {"url": postgres_url, "table": "shop_orders"}},
            "validation": {"min_repeat_customers": 0},
        },
        base_dir=Path("."),
    )


def _features(data: Any) -> list[dict[str, Any]]:
    expr = customer_features(data.tables, as_of=AS_OF)
    rows = expr.to_pyarrow().to_pylist()
    return sorted(rows, key=lambda r: r["customer_id"])


@pytest.mark.parametrize("engine", ["duckdb", "postgres"])
def test_postgres_source_validated_and_featured(pg: Any, postgres_url: str, engine: str) -> None:
    engine_url = "duckdb://" if engine == "duckdb" else postgres_url
    data = load(_config(postgres_url, engine_url))
    assert data.con.name == engine
    report = data.report.tables["orders"]
    assert report.rows_read == 7
    assert report.rejected == {"null_id": 1, "after_as_of": 1}
    assert report.rows_accepted == 5
    assert report.returns == 1
    rejects = sorted(data.rejects.to_pyarrow().to_pylist(), key=lambda r: r["row"])
    assert [(r["row"], r["rule"]) for r in rejects] == [(6, "null_id"), (7, "after_as_of")]
    rows = _features(data)
    assert [r["customer_id"] for r in rows] == ["a", "b", "c"]
    a = rows[0]
    assert (a["frequency"], a["orders"], a["revenue"]) == (1, 2, 60.0)
    assert a["recency"] == pytest.approx(18 / 7)
    assert a["T"] == pytest.approx((AS_OF - dt.date(2024, 1, 2)).days / 7)
    if engine == "postgres":
        data.con.disconnect()


def test_features_identical_on_postgres_and_duckdb(pg: Any) -> None:
    clean = ORDERS.filter(pa.compute.is_valid(ORDERS.column("customer_id"))).slice(0, 5)
    pg.create_table("clean_orders", clean, overwrite=True)
    on_pg = customer_features({"orders": pg.table("clean_orders")}, as_of=AS_OF, time_unit="month")
    duck = ibis.duckdb.connect()
    on_duck = customer_features(
        {"orders": duck.create_table("clean_orders", clean)}, as_of=AS_OF, time_unit="month"
    )
    left, right = sorted_rows(on_pg.to_pyarrow()), sorted_rows(on_duck.to_pyarrow())
    assert len(left) == 3
    assert_same_rows(left, right)
    pg.drop_table("clean_orders", force=True)


def test_file_source_needs_the_duckdb_engine(postgres_url: str, tmp_path: Path) -> None:
    from segvalue.errors import ConfigError

    (tmp_path / "o.csv").write_text("order_id,customer_id,order_ts,amount\n1,a,2024-01-02,5\n")
    config = parse_config(
        {"engine": {"url": postgres_url}, "sources": {"orders": {"path": "o.csv"}}},
        base_dir=tmp_path,
    )
    with pytest.raises(ConfigError, match="files are read by DuckDB, but the engine is postgres"):
        load(config)
