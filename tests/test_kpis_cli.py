"""segvalue kpis end to end on the demo: intervals, target status, priorities, guidance."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from segvalue.cli.main import cli
from segvalue.pipeline import run_demo


@pytest.fixture(scope="module")
def config_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return run_demo(n_customers=1200, seed=4, out_dir=tmp_path_factory.mktemp("kpis") / "shop")[1]


def test_kpis_json_has_intervals_status_and_priorities(
    config_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    capsys.readouterr()
    assert cli(["kpis", "-c", str(config_path), "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["scheme"] == "clusters"  # the demo config's kpis.scheme
    rows = doc["kpis"]
    assert rows[0]["segment"] == "all customers"
    assert sum(r["customers"] for r in rows[1:]) == rows[0]["customers"] == 1200
    for row in rows:
        for kpi in ("share", "repeat_rate", "average_order_value", "clv_mean"):
            low, high = row[f"{kpi}_lower"], row[f"{kpi}_upper"]
            assert low <= row[kpi] <= high, (row["segment"], kpi)
    statuses = doc["status"]
    assert {r["kpi"] for r in statuses} == {"repeat_rate", "churn_risk", "clv_cac"}
    for row in statuses:
        assert row["status"] in {"on_track", "at_risk", "off_track", "no_data"}
        if row["status"] == "on_track" and row["direction"] == "at_least":
            assert row["lower"] >= row["target"]
    ranks = [r["rank"] for r in doc["priorities"]]
    assert sorted(ranks) == list(range(1, len(rows)))
    assert all(r["reasons"] for r in doc["priorities"])
    guidance = {r["segment"]: r for r in doc["guidance"]["segments"]}
    assert set(guidance) == {r["segment"] for r in rows}
    for row in rows:  # margin is already in the CLV: max CAC = CLV over the full horizon
        assert guidance[row["segment"]]["max_cac"] == pytest.approx(row["clv_mean"])
    assert doc["guidance"]["assumptions"]


def test_kpis_are_written_with_the_run(config_path: Path) -> None:
    output = config_path.parent / "output"
    kpis = pq.read_table(output / "segment_kpis.parquet")
    assert kpis.num_rows >= 3
    assert (output / "budget_guidance.json").exists()
    assert pq.read_table(output / "segment_priorities.parquet").num_rows == kpis.num_rows - 1


def test_kpis_human_output(config_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    capsys.readouterr()
    assert cli(["kpis", "-c", str(config_path)]) == 0
    text = capsys.readouterr().out
    assert "Segment KPIs (clusters), 95% intervals" in text
    assert "1. cluster_" in text
