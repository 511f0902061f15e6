"""Acceptance: the default `segvalue clv` says that long-idle one-time buyers have churned.

On Fader and Hardie's full CDNOW master file (23,570 customers who first bought in the
first quarter of 1997, observed to 1998-06-30, in weeks), 12,054 customers never bought
again and had been idle for 462-545 days. Under BG/NBD a customer can drop out only right
after a repeat purchase, so P(alive | x = 0) = 1 for all of them (Fader, Hardie & Lee
2005, "Counting Your Customers the Easy Way", eq. 18 with x = 0): churn risk 0 %. The
default model (``auto``: MBG/NBD or Pareto/NBD, which let a one-time buyer drop out; Batislam
et al. 2007, Schmittlein, Morrison & Colombo 1987) must put their churn risk well above
that of repeat buyers seen in the last 8 weeks.

Seen on this data (default, no holdout: MBG/NBD by log-likelihood, -173,294.4 against
Pareto/NBD's -173,328.0): mean churn risk 0.71 for the 12,054 one-time buyers idle over a
year, 0.11 for the 2,401 repeat buyers seen in the last 8 weeks (BG/NBD: 0.00 and 0.10).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow.csv as pacsv
import pytest

from segvalue.cli.main import cli

MASTER = Path(__file__).parent / "data" / "CDNOW_master.txt"
ARGS = [
    "clv",
    str(MASTER),
    "--customer-col",
    "customer_id",
    "--date-col",
    "date",
    "--amount-col",
    "dollar_value",
    "--delimiter",
    "whitespace",
    "--date-format",
    "%Y%m%d",
    "--time-unit",
    "week",
    "--observation-end",
    "1998-06-30",
]


@pytest.mark.slow
def test_default_clv_gives_idle_one_time_buyers_a_high_churn_risk(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "clv.csv"
    assert cli([*ARGS, "--json", "--out", str(out)]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["n_customers"] == 23570
    assert result["model"] in ("mbgnbd", "pnbd")
    assert result["one_time_buyer_churn_identified"] is True
    table = pacsv.read_csv(out)
    x = table.column("frequency").to_numpy()
    recency = table.column("recency").to_numpy()
    big_t = table.column("T").to_numpy()
    churn = table.column("churn_risk").to_numpy()
    idle_one_time = (x == 0) & (big_t > 52)
    recent_repeat = (x > 0) & (big_t - recency <= 8)
    assert idle_one_time.sum() == 12054
    assert recent_repeat.sum() > 1000
    one_time_mean = float(churn[idle_one_time].mean())
    recent_mean = float(churn[recent_repeat].mean())
    assert one_time_mean >= 0.5, one_time_mean
    assert recent_mean <= 0.3, recent_mean
    assert one_time_mean >= 3 * recent_mean
    assert np.all((churn >= 0) & (churn <= 1))
    # no customer's CLV interval goes below 0 or is absurd
    lower, clv = table.column("clv_lower").to_numpy(), table.column("clv").to_numpy()
    assert np.all(lower >= 0) and np.all(lower <= clv + 1e-9)
