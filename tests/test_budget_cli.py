"""segvalue budget end to end: curves files, fitted curves from segvalue.yaml, errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from cli_inputs import CURVES
from segvalue.cli.main import cli
from segvalue.pipeline import run_demo


def test_curves_file_gives_the_closed_form_optimum(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Equal marginal ROI: s_i = sqrt(beta_i k_i / lambda) - k_i with sum s_i = 500."""
    path = tmp_path / "curves.yaml"
    path.write_text(CURVES)
    assert cli(["budget", "--curves", str(path), "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    spend = doc["allocation"]
    assert spend["email"] == pytest.approx(266.627, abs=1e-3)
    assert spend["search"] == pytest.approx(155.582, abs=1e-3)
    assert spend["social"] == pytest.approx(77.791, abs=1e-3)
    assert doc["expected_response"] == pytest.approx(1119.255, abs=1e-3)
    assert doc["current_response"] == 0.0
    assert list(doc["marginal_roi"].values()) == pytest.approx([0.9185] * 3, abs=1e-4)
    assert doc["binding_constraints"] == ["total"]
    # The same file as JSON, with a smaller total from the command line.
    as_json = tmp_path / "curves.json"
    as_json.write_text(json.dumps(yaml.safe_load(CURVES)))
    assert cli(["budget", "--curves", str(as_json), "--total", "100", "--json"]) == 0
    assert sum(json.loads(capsys.readouterr().out)["allocation"].values()) == pytest.approx(100)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("total: 500\nitems:\n  - {name: a, form: hill, beta: 1, k: 1}\n", "slope"),
        ("total: 500\nitems:\n  - {name: a, beta: 1, k: 1, slop: 2}\n", "slop"),
        ("total: 5\nitems:\n  - {name: a, form: michaelis_menten, beta: 1, k: 1, min: 9}\n", "a"),
        ("items: [\n", "not valid YAML"),
    ],
)
def test_bad_curves_files_are_named_errors(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str, expected: str
) -> None:
    path = tmp_path / "curves.yaml"
    path.write_text(text)
    assert cli(["budget", "--curves", str(path)]) == 2
    err = capsys.readouterr().err
    assert "curves.yaml" in err or "min" in err
    assert expected in err and "fix:" in err


def test_config_or_curves_but_not_both(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli(["budget"]) == 2
    assert "either a config (-c) or a curves file" in capsys.readouterr().err
    assert cli(["budget", "--curves", str(tmp_path / "missing.yaml")]) == 2
    assert "file not found" in capsys.readouterr().err


def test_budget_from_the_demo_config_fits_curves_and_beats_the_current_plan(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _, config_path = run_demo(n_customers=800, seed=2, out_dir=tmp_path / "shop")
    capsys.readouterr()
    assert cli(["budget", "-c", str(config_path), "--objective", "revenue", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert set(doc["allocation"]) == {"app_push", "email", "onsite", "paid_social", "search_ads"}
    assert sum(doc["allocation"].values()) == pytest.approx(doc["current_spend"], rel=1e-9)
    assert doc["expected_response"] >= doc["current_response"]
    # The demo's curves are per channel, reaching no one segment: objective clv says so
    # (naming the segments that have a CLV, from a run of the config) and is revenue.
    assert cli(["budget", "-c", str(config_path), "--objective", "clv", "--json"]) == 0
    clv = json.loads(capsys.readouterr().out)
    assert len(clv["warnings"]) == 1 and "email (no segment)" in clv["warnings"][0]
    assert "Segments with a CLV: " in clv["warnings"][0]
    assert "Segments with a CLV: none" not in clv["warnings"][0]
    assert clv["allocation"] == pytest.approx(doc["allocation"], rel=1e-6)


MOVABLE = """\
items:
  - {name: a, form: michaelis_menten, beta: 1000, k: 200, current: 300}
  - {name: b, form: michaelis_menten, beta: 600, k: 100, current: 50}
"""


def test_what_if_move_by_hand(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Moving 20% of a's 300 to b: a 300 -> 240, b 50 -> 110 on MM curves."""
    path = tmp_path / "curves.yaml"
    path.write_text(MOVABLE)
    assert cli(["budget", "--curves", str(path), "--move", "a:b:0.2", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)

    def mm(beta: float, k: float, s: float) -> float:
        return beta * s / (k + s)

    change_a = mm(1000, 200, 240) - mm(1000, 200, 300)
    change_b = mm(600, 100, 110) - mm(600, 100, 50)
    assert doc["change_by_item"]["a"] == pytest.approx(change_a)
    assert doc["change_by_item"]["b"] == pytest.approx(change_b)
    assert doc["change_value"] == pytest.approx(change_a + change_b)  # +114.29
    assert doc["interval"] is None  # given curves carry no parameter uncertainty
    assert cli(["budget", "--curves", str(path), "--move", "a-b-0.2"]) == 2
    assert "FROM:TO:SHARE" in capsys.readouterr().err


def test_target_finds_the_smallest_budget(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "curves.yaml"
    path.write_text(CURVES)
    assert cli(["budget", "--curves", str(path), "--target", "1119.254665", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert sum(doc["allocation"].values()) == pytest.approx(500.0, rel=1e-6)
    assert cli(["budget", "--curves", str(path), "--target", "5000"]) == 2
    assert "1,900" in capsys.readouterr().err  # the curves saturate at 1000 + 600 + 300
    assert cli(["budget", "--curves", str(path), "--target", "900", "--objective", "profit"]) == 2
    assert "--objective revenue" in capsys.readouterr().err


SEGMENT_CURVES = """\
total: 200
segment_clv: {all customers: 100, loyal: 150, new: 50}
items:
  - {name: loyal_email, form: michaelis_menten, beta: 1000, k: 100, segment: loyal}
  - {name: new_email, form: michaelis_menten, beta: 1000, k: 100, segment: new}
"""


def test_clv_objective_values_items_by_their_segment_clv(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Two identical curves: revenue splits 100 / 100; clv weights loyal (150 / 100) and
    new (50 / 100), and equal marginal ROI 1.5 bk / (k + s_a)^2 = 0.5 bk / (k + s_b)^2 with
    s_a + s_b = 200 gives k + s_a = 400 / (1 + 1 / sqrt 3) in closed form."""
    path = tmp_path / "curves.yaml"
    path.write_text(SEGMENT_CURVES)
    assert cli(["budget", "--curves", str(path), "--objective", "revenue", "--json"]) == 0
    revenue = json.loads(capsys.readouterr().out)["allocation"]
    assert revenue == pytest.approx({"loyal_email": 100.0, "new_email": 100.0}, abs=1e-6)
    assert cli(["budget", "--curves", str(path), "--objective", "clv", "--json"]) == 0
    clv = json.loads(capsys.readouterr().out)
    loyal = 400 / (1 + 3**-0.5) - 100
    assert clv["allocation"]["loyal_email"] == pytest.approx(loyal, abs=1e-6)
    assert clv["allocation"]["new_email"] == pytest.approx(200 - loyal, abs=1e-6)
    assert clv["objective"] == "clv"


def test_documented_default_objectives_match_behaviour(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """docs/budget.md: a curves file defaults to revenue, a config to budget.objective
    (profit by default)."""
    from segvalue.config import BudgetConfig

    docs = (Path(__file__).parents[1] / "docs" / "budget.md").read_text()
    assert "a curves file defaults to `revenue`" in docs
    assert "`budget.objective` (default `profit`)" in docs
    assert BudgetConfig().objective == "profit"
    path = tmp_path / "curves.yaml"
    path.write_text(SEGMENT_CURVES)
    assert cli(["budget", "--curves", str(path), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["objective"] == "revenue"
