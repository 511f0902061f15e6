"""Apache Spark in local mode: the same feature code, the same numbers as DuckDB."""

from __future__ import annotations

import datetime as dt
from typing import Any

import ibis
import pyarrow as pa
import pytest

from backend_compare import assert_same_rows, sorted_rows
from segvalue.data.readers import connect
from segvalue.features.customer import customer_features

pytestmark = pytest.mark.slow

ORDERS = pa.table(
    {
        "order_id": [str(i) for i in range(8)],
        "customer_id": ["a", "a", "a", "b", "b", "c", "a", "b"],
        "order_ts": pa.array(
            [
                dt.datetime(2024, 1, 1, 9),
                dt.datetime(2024, 1, 1, 18),  # same day: merged
                dt.datetime(2024, 2, 14),
                dt.datetime(2024, 3, 1),
                dt.datetime(2024, 5, 20),
                dt.datetime(2024, 6, 1),
                dt.datetime(2024, 2, 20),  # a return
                dt.datetime(2024, 6, 10),
            ],
            pa.timestamp("us"),
        ),
        "amount": [10.0, 5.0, 40.0, 22.5, 30.0, 8.0, -20.0, 0.0],
    }
)
LINES = pa.table(
    {
        "order_id": ["0", "1", "2", "3", "4", "5"],
        "product_id": ["p1", "p2", "p1", "p3", "p3", "p2"],
        "quantity": [1.0, 1.0, 2.0, 1.0, 1.0, 1.0],
        "line_amount": [10.0, 5.0, 40.0, 22.5, 30.0, 8.0],
        "category": ["books", "toys", "books", "garden", "garden", "toys"],
    }
)


def _rows(con: Any, tables: dict[str, Any], unit: str) -> list[dict[str, Any]]:
    expr = customer_features(tables, as_of=dt.date(2024, 6, 30), time_unit=unit)
    return sorted_rows(con.to_pyarrow(expr))


@pytest.mark.parametrize("unit", ["day", "week", "month"])
def test_features_identical_on_spark_and_duckdb(spark: Any, unit: str) -> None:
    con = connect(spark)
    assert con.name == "pyspark"
    on_spark = _rows(
        con,
        {
            "orders": con.create_table("orders", ORDERS, overwrite=True),
            "order_lines": con.create_table("order_lines", LINES, overwrite=True),
        },
        unit,
    )
    duck = ibis.duckdb.connect()
    on_duck = _rows(
        duck,
        {
            "orders": duck.create_table("orders", ORDERS),
            "order_lines": duck.create_table("order_lines", LINES),
        },
        unit,
    )
    assert [r["customer_id"] for r in on_spark] == ["a", "b", "c"]
    a = on_spark[0]
    assert (a["frequency"], a["orders"], a["revenue"]) == (1, 3, 35.0)
    assert_same_rows(on_spark, on_duck)


def test_pipeline_on_a_spark_session(spark: Any, tmp_path: Any) -> None:
    from segvalue.config import parse_config
    from segvalue.pipeline import run

    spark.createDataFrame(ORDERS.to_pandas()).createOrReplaceTempView("shop_orders")
    config = parse_config(
        {
            "as_of": "2024-06-05",
            "sources": {"orders": {"table": "shop_orders"}},
            "validation": {"min_repeat_customers": 0},
            "output": {"dir": str(tmp_path / "out")},
        },
        base_dir=tmp_path,  # the results store goes beside the config: here
    )
    result = run(config, engine=spark)
    orders = result.report.tables["orders"]
    assert orders.source == "engine pyspark#shop_orders"
    assert (orders.rows_read, orders.rows_accepted) == (8, 7)
    assert orders.rejected == {"after_as_of": 1}  # the 2024-06-10 order
    assert result.rejects.column("row").to_pylist() == [8]
    customers = dict(
        zip(
            result.features.column("customer_id").to_pylist(),
            result.features.column("frequency").to_pylist(),
            strict=True,
        )
    )
    assert customers == {"a": 1, "b": 1, "c": 0}
    assert (tmp_path / "out" / "customer_features.parquet").exists()


def test_arrow_tables_keep_nullable_integers_on_spark(spark: Any, postgres_url: str) -> None:
    """Ibis 12's memtable on Spark 4 nulls a whole nullable int64 column; ours must not.

    A PostgreSQL table read into a Spark engine (brought over as Arrow) keeps the values
    of its nullable integer columns.
    """
    from segvalue.config import parse_config
    from segvalue.data.readers import engine_table, read_source

    con = connect(spark)
    data = pa.table({"a": pa.array([1, None, 3], pa.int64()), "s": ["x", "y", "z"]})
    got = con.to_pyarrow(engine_table(con, data).order_by("s"))
    assert got.column("a").to_pylist() == [1, None, 3]
    customers = pa.table(
        {
            "customer_id": ["a", "b", "c"],
            "age": pa.array([31, None, 58], pa.int64()),
            "household_size": pa.array([None, 2, 4], pa.int64()),
        }
    )
    pg = connect(postgres_url)
    pg.create_table("spark_customers", customers, overwrite=True)
    pg.disconnect()
    config = parse_config(
        {
            "sources": {
                "orders": {"url": postgres_url, "table": "spark_orders"},
                "customers": {"url": postgres_url, "table": "spark_customers"},
            }
        }
    )
    raw = read_source(con, "customers", config)
    rows = sorted_rows(con.to_pyarrow(raw.table))
    assert [r["age"] for r in rows] == [31, None, 58]
    assert [r["household_size"] for r in rows] == [None, 2, 4]
