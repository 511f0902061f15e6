"""`segvalue rfm` against Hardie's published CDNOW summary.

Reference: B. Hardie's CDNOW sample summary (x, t_x, T) for the 39-week calibration
period ending 1997-09-30, as distributed in lifetimes 0.11.3 (cdnow_customers_summary.csv).
The summary prints two decimals, so recency and T must agree within 0.01 weeks.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pyarrow.csv as pacsv
import pytest

from cli_inputs import CDNOW_COLUMNS
from segvalue.cli.main import cli

DATA = Path(__file__).parent / "data"
ARGS = [
    "rfm",
    str(DATA / "CDNOW_sample.txt"),
    *CDNOW_COLUMNS,
    "--as-of",
    "1997-09-30",
    "--time-unit",
    "week",
]


def _reference() -> dict[int, tuple[int, float, float]]:
    with (DATA / "cdnow_customers_summary.csv").open() as handle:
        return {
            int(r["ID"]): (int(r["frequency"]), float(r["recency"]), float(r["T"]))
            for r in csv.DictReader(handle)
        }


def test_rfm_reproduces_published_cdnow_summary(tmp_path: Path) -> None:
    out = tmp_path / "rfm.csv"
    assert cli([*ARGS, "--out", str(out)]) == 0
    table = pacsv.read_csv(out, convert_options=pacsv.ConvertOptions(strings_can_be_null=False))
    ours = {
        int(cid): (f, r, t)
        for cid, f, r, t in zip(
            table.column("customer_id").to_pylist(),
            table.column("frequency").to_pylist(),
            table.column("recency").to_pylist(),
            table.column("T").to_pylist(),
            strict=True,
        )
    }
    reference = _reference()
    assert len(reference) == 2357
    assert ours.keys() == reference.keys()
    for cid, (x, t_x, big_t) in reference.items():
        f, r, t = ours[cid]
        assert f == x, cid
        assert r == pytest.approx(t_x, abs=0.01), cid
        assert t == pytest.approx(big_t, abs=0.01), cid
    assert sum(v[0] for v in ours.values()) == 2457


def test_rfm_json_summary(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli([*ARGS, "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["customers"] == 2357
    assert result["total_repeat_purchases"] == 2457
    assert result["repeat_customers"] == 946  # the Gamma-Gamma sample size in FHL (2005)
    orders = result["report"]["tables"]["orders"]
    # Every line is accounted for: kept, or set aside as after the as-of date.
    assert orders["rows_read"] == 6919
    assert orders["rows_accepted"] + orders["rows_rejected"] == 6919
    assert set(orders["rejected_by_rule"]) == {"after_as_of"}
    first = result["customers_table"][0]
    assert first["customer_id"] == "0001"
    assert first["frequency"] == 2
    assert first["recency"] == pytest.approx(213 / 7)
    assert first["monetary_value"] == pytest.approx((29.73 + 14.96) / 2)


def test_rfm_whole_periods_match_lifetimes_convention(tmp_path: Path) -> None:
    # Customer 1 of CDNOW bought on 1997-01-01 (Wed), 01-18 (Sat), 08-02 (Sat) before
    # the end; with Monday weeks these are ISO weeks 1, 3 and 31 of 1997 and 1997-09-30
    # is in week 40: recency 30 weeks, T 39 weeks.
    out = tmp_path / "rfm.parquet"
    assert cli([*ARGS, "--granularity", "unit", "--out", str(out)]) == 0
    import pyarrow.parquet as pq

    row = pq.read_table(out).slice(0, 1).to_pylist()[0]
    assert row["customer_id"] == "0001"
    assert (row["frequency"], row["recency"], row["T"]) == (2, 30.0, 39.0)
