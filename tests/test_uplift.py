"""Uplift evaluation with scikit-uplift 0.5.1's definitions (``sklift.metrics``:
``qini_curve``, ``perfect_qini_curve`` with ``negative_effect=True``,
``qini_auc_score``, ``uplift_curve``, ``perfect_uplift_curve``, ``uplift_auc_score``,
``uplift_at_k`` with ``strategy='overall'``): ties in the score form one step, the areas
are normalised by the perfect curve over the straight baseline.

The hand-checked example: outcomes (1, 0, 1, 0), treatment (1, 1, 0, 0), scores (0.9,
0.5, 0.4, 0.1). Qini points (0, 0), (1, 1), (2, 1), (3, -1), (4, 0): area 1. The perfect
order (scores y t - y (1 - t) = 1, 0, -1, 0) gives (0, 0), (1, 1), (3, 1), (4, 0): area 3;
the baseline ends at (4, 0): area 0; Qini AUC 1/3. Uplift points (0, 0), (1, 1), (2, 1),
(3, -1.5), (4, 0): area 0.5; the perfect order (2 [y = t] + t, as control responders do
not outnumber treated non-responders: 3, 1, 0, 2) gives (0, 0), (1, 1), (2, 2), (3, 1.5),
(4, 0): area 4.5; uplift AUC 1/9.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from segvalue.errors import DataValidationError
from segvalue.measurement.uplift import (
    evaluate_uplift,
    perfect_qini_curve,
    perfect_uplift_curve,
    qini_auc_score,
    qini_curve,
    uplift_at_k,
    uplift_auc_score,
    uplift_curve,
)

Y, T, S = [1, 0, 1, 0], [1, 1, 0, 0], [0.9, 0.5, 0.4, 0.1]


def test_the_hand_checked_example() -> None:
    assert [v.tolist() for v in qini_curve(Y, S, T)] == [[0, 1, 2, 3, 4], [0, 1, 1, -1, 0]]
    assert [v.tolist() for v in perfect_qini_curve(Y, T)] == [[0, 1, 3, 4], [0, 1, 1, 0]]
    assert [v.tolist() for v in uplift_curve(Y, S, T)] == [[0, 1, 2, 3, 4], [0, 1, 1, -1.5, 0]]
    assert [v.tolist() for v in perfect_uplift_curve(Y, T)] == [[0, 1, 2, 3, 4], [0, 1, 2, 1.5, 0]]
    assert qini_auc_score(Y, S, T) == pytest.approx(1 / 3)
    assert uplift_auc_score(Y, S, T) == pytest.approx(1 / 9)
    assert uplift_at_k(Y, S, T, k=0.75) == pytest.approx(-0.5)  # top ceil(3): 1/2 - 1/1


def test_tied_scores_form_one_step_whatever_the_row_order() -> None:
    y, t, s = [1, 0, 0, 1, 1, 0], [1, 1, 0, 0, 1, 0], [0.5, 0.5, 0.5, 0.2, 0.2, 0.1]
    x, q = qini_curve(y, s, t)
    assert x.tolist() == [0, 3, 5, 6]  # one point per distinct score
    order = [2, 0, 1, 4, 3, 5]
    x2, q2 = qini_curve(np.take(y, order), np.take(s, order), np.take(t, order))
    assert x2.tolist() == x.tolist() and q2.tolist() == pytest.approx(q.tolist())


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 2**32 - 1))
def test_the_true_effect_ranks_above_noise_and_scores_are_bounded(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n = 2000
    effect = rng.uniform(-0.1, 0.3, n)  # each row's true uplift
    t = rng.integers(0, 2, n)
    y = (rng.random(n) < 0.2 + t * effect).astype(int)
    informed = qini_auc_score(y, effect, t)
    noise = qini_auc_score(y, rng.random(n), t)
    assert informed <= 1 + 1e-12 and noise <= 1 + 1e-12
    perfect = qini_auc_score(y, y * t - y * (1 - t), t)
    assert perfect == pytest.approx(1.0)
    assert informed > noise - 0.2  # (a weak sanity bound per draw; the mean is below)


def test_an_informed_score_beats_a_random_one_with_intervals() -> None:
    rng = np.random.default_rng(11)
    n = 6000
    effect = rng.uniform(-0.05, 0.35, n)
    t = rng.integers(0, 2, n)
    y = (rng.random(n) < 0.15 + t * effect).astype(int)
    informed = evaluate_uplift(y, effect, t, resamples=200, seed=1)
    noise = evaluate_uplift(y, rng.random(n), t, resamples=200, seed=1)
    low, high = informed["qini_auc_ci"]
    assert low <= informed["qini_auc"] <= high and low > 0
    assert noise["qini_auc_ci"][0] < 0 < noise["qini_auc_ci"][1]
    assert informed["qini_auc"] > noise["qini_auc_ci"][1]
    assert informed["uplift_at"]["0.1"] > informed["uplift_at"]["0.5"] > 0
    again = evaluate_uplift(y, effect, t, resamples=200, seed=1)
    assert again == informed  # seeded


def test_bad_inputs_are_refused() -> None:
    with pytest.raises(DataValidationError, match="outcome must be 0 or 1"):
        qini_auc_score([2, 0], [0.1, 0.2], [1, 0])
    with pytest.raises(DataValidationError, match="one group is empty"):
        qini_auc_score([1, 0], [0.1, 0.2], [1, 1])
    with pytest.raises(DataValidationError, match="a score is not a finite number"):
        qini_auc_score([1, 0], [float("nan"), 0.2], [1, 0])


def test_uplift_evaluate_prints_the_areas_and_json(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from segvalue.cli.main import cli

    rng = np.random.default_rng(3)
    n = 400
    effect = rng.uniform(0, 0.4, n)
    t = rng.integers(0, 2, n)
    y = rng.random(n) < 0.1 + t * effect
    file = tmp_path / "scored.csv"
    rows = [
        f"{'true' if a else 'false'},{int(b)},{c:.6f}" for a, b, c in zip(t, y, effect, strict=True)
    ]
    file.write_text("treated,converted,score\n" + "\n".join(rows) + "\n")
    args = ["uplift", "evaluate", str(file), "--treatment-col", "treated"]
    args += ["--outcome-col", "converted", "--score-col", "score", "--resamples", "50"]
    assert cli(args) == 0
    shown = capsys.readouterr().out
    assert f"{n:,} rows" in shown and "Qini AUC" in shown and "uplift among the top 10%" in shown
    assert cli([*args, "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert set(doc) >= {"qini_auc", "uplift_auc", "qini_auc_ci", "uplift_at"}
    assert set(doc["uplift_at"]) == {"0.1", "0.2", "0.3", "0.5"}
    assert doc["qini_auc_ci"][0] <= doc["qini_auc"] <= doc["qini_auc_ci"][1]
    file.write_text("treated,converted,score\ntrue,1,0.5\nfalse,yes,0.1\n")
    assert cli(args) == 2
    said = capsys.readouterr().err
    assert "line 3" in said and "'converted' holds 'yes'" in said


def _planted_test(tmp_path: Path, n: int = 6000) -> Path:
    """A randomised test whose effect is planted: +25 points under 35, +10 in the south."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    rng = np.random.default_rng(5)
    age = rng.integers(18, 80, n)
    region = rng.choice(["north", "south", "east"], n)
    t = rng.integers(0, 2, n)
    effect = 0.25 * (age < 35) + 0.1 * (region == "south")
    y = rng.random(n) < 0.1 + t * effect
    table = pa.table(
        {
            "customer_id": [f"C{i}" for i in range(n)],
            "email": [f"person{i}@example.org" for i in range(n)],
            "age": age,
            "region": region,
            "treated": t.astype(bool),
            "converted": y,
        }
    )
    path = tmp_path / "test.parquet"
    pq.write_table(table, path)
    return path


@pytest.mark.parametrize("method", ["x-learner", "two-model"])
def test_a_fitted_model_finds_the_planted_effect_on_its_holdout(
    tmp_path: Path, method: str
) -> None:
    from segvalue.pipeline import fit_uplift_file

    found = fit_uplift_file(
        _planted_test(tmp_path),
        treatment_col="treated",
        outcome_col="converted",
        features=["age", "region"],
        method=method,
        resamples=100,
    )
    holdout = found["holdout"]
    assert found["n_train"] + found["n_holdout"] == 6000
    assert holdout["qini_auc_ci"][0] > 0.05  # far better than random ordering (0)
    assert holdout["uplift_at"]["0.1"] > holdout["uplift_at"]["0.5"] > 0


def test_uplift_fit_writes_ids_and_scores_only(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import pyarrow.csv as pcsv

    from segvalue.cli.main import cli

    test = _planted_test(tmp_path, 3000)
    out = tmp_path / "scores.csv"
    args = ["uplift", "fit", str(test), "--treatment-col", "treated", "--outcome-col"]
    args += ["converted", "--feature", "age", "--feature", "region", "--resamples", "50"]
    assert cli([*args, "--id-col", "customer_id", "--out", str(out)]) == 0
    shown = capsys.readouterr().out
    assert "x-learner on age, region: fitted on 2,100 rows" in shown
    assert f"scores written to {out}" in shown
    scores = pcsv.read_csv(out)
    assert scores.column_names == ["customer_id", "uplift_score", "holdout"]
    assert "@" not in out.read_text()  # the input's contact details stay behind
    assert cli([*args, "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["method"] == "x-learner" and doc["out"] is None
    assert cli([*args, "--out", str(test)]) == 2  # never onto the input
    assert "input" in capsys.readouterr().err


def test_targeting_by_the_model_earns_more_than_contacting_everyone(tmp_path: Path) -> None:
    """With a contact cost of 3 and a response worth 50 x 0.4, contacting only those whose
    uplift exceeds 3 / 20 beats contacting everyone on the holdout (the planted effect
    is worth it under 35 only)."""
    from segvalue.pipeline import fit_uplift_file

    found = fit_uplift_file(
        _planted_test(tmp_path),
        treatment_col="treated",
        outcome_col="converted",
        features=["age", "region"],
        resamples=20,
        value=50.0,
        margin=0.4,
        contact_cost=3.0,
    )
    policy = found["policy"]
    assert policy["threshold"] == pytest.approx(0.15)
    assert 0.1 < policy["share_targeted"] < 0.6
    assert policy["profit"] > 0 > policy["profit_everyone"]


@settings(max_examples=50, deadline=None)
@given(
    rows=st.lists(
        st.tuples(st.booleans(), st.sampled_from([0.1, 0.2, 0.5, 0.7, 0.9]), st.booleans()),
        min_size=4,
        max_size=30,
    ),
    seed=st.integers(0, 10_000),
)
def test_a_resample_as_row_counts_is_the_resampled_rows_curve(
    rows: list[tuple[bool, float, bool]], seed: int
) -> None:
    """The bootstrap's shortcut (rows sorted once, a resample as counts) gives the areas
    of the resampled rows sorted anew."""
    from segvalue.measurement.uplift import (
        _by_responders,
        _normalised,
        _perfect_uplift_score,
        _qini_points,
        _Sorted,
        _uplift_points,
        qini_auc_score,
        uplift_auc_score,
    )

    y = np.array([float(r[0]) for r in rows])
    s = np.array([r[1] for r in rows])
    t = np.array([float(r[2]) for r in rows])
    treated, control = np.flatnonzero(t == 1), np.flatnonzero(t == 0)
    assume(treated.size > 0 and control.size > 0)
    rng = np.random.default_rng(seed)  # within each group, as evaluate_uplift draws
    drawn = np.r_[rng.choice(treated, treated.size), rng.choice(control, control.size)]
    w = np.bincount(drawn, minlength=len(rows)).astype(float)
    qini = _normalised(
        _qini_points(_Sorted(y, s, t).steps(w)),
        _qini_points(_Sorted(y, y * t - y * (1 - t), t).steps(w)),
    )
    perfect = _Sorted(y, _perfect_uplift_score(y, t, _by_responders(y, t, w)), t)
    uplift = _normalised(
        _uplift_points(_Sorted(y, s, t).steps(w)), _uplift_points(perfect.steps(w))
    )
    for shortcut, direct in (
        (qini, qini_auc_score(y[drawn], s[drawn], t[drawn])),
        (uplift, uplift_auc_score(y[drawn], s[drawn], t[drawn])),
    ):
        if np.isnan(direct):
            assert np.isnan(shortcut)
        else:
            assert shortcut == pytest.approx(direct, abs=1e-9)
