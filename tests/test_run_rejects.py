"""A run collects the rejects the report counts; with none, it skips the query."""

from __future__ import annotations

from pathlib import Path

from segvalue.config import load_config
from segvalue.pipeline import run
from test_validation import REJECTS, _write_shop


def test_a_run_returns_every_reject_the_report_counts(tmp_path: Path) -> None:
    result = run(load_config(_write_shop(tmp_path)), write=False)
    assert result.report.rows_rejected == len(REJECTS) == result.rejects.num_rows
    assert result.rejects.to_pylist() == REJECTS


def test_a_run_without_rejects_returns_the_empty_rejects_table(tmp_path: Path) -> None:
    folder = tmp_path / "clean"
    folder.mkdir()
    (folder / "orders.csv").write_text(
        "order_id,customer_id,order_ts,amount\n1,a,2024-01-02,5\n2,a,2024-02-03,7\n"
    )
    (folder / "segvalue.yaml").write_text("sources:\n  orders: {path: orders.csv}\n")
    config = load_config(folder / "segvalue.yaml")
    rejects = run(config, write=False).rejects
    assert rejects.num_rows == 0
    assert rejects.column_names == ["table", "source", "row", "rule", "column", "value", "reason"]
