"""`segvalue clv`, CLV composition and the holdout report on Fader & Hardie's CDNOW sample.

References: Fader, Hardie & Lee (2005), "Counting Your Customers the Easy Way", Marketing
Science 24(2): BG/NBD on the 2,357-customer CDNOW sample, 39-week calibration ending
1997-09-30, (r, alpha, a, b) = (0.2426, 4.4135, 0.7929, 2.4259), LL = -9582.43 (printed
to 4 significant digits / 2 decimals). Hardie's Gamma-Gamma note: (p, q, gamma) =
(6.25, 3.74, 15.44) on the 946 repeat buyers.
"""

from __future__ import annotations

import datetime as dt
import json
from collections import defaultdict
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cli_inputs import CDNOW_COLUMNS
from segvalue.cli.main import cli
from segvalue.models import clv as clv_module
from segvalue.models.bgnbd import BetaGeoModel
from segvalue.models.clv import customer_lifetime_value
from segvalue.models.gamma_gamma import GammaGammaModel
from segvalue.models.holdout import holdout_report
from segvalue.valuation import Valuation, score_customers

DATA = Path(__file__).parent / "data"
SAMPLE = DATA / "CDNOW_sample.txt"
CAL_END = dt.date(1997, 9, 30)
OBS_END = dt.date(1998, 6, 30)
ARGS = [
    "clv",
    str(SAMPLE),
    *CDNOW_COLUMNS,
    "--calibration-end",
    CAL_END.isoformat(),
    "--observation-end",
    OBS_END.isoformat(),
]


def _cdnow_truth() -> dict[str, dict[str, float]]:
    """Per-customer calibration (x, t_x, T, m) and holdout repeat count, from the raw file."""
    days: dict[str, dict[dt.date, float]] = defaultdict(lambda: defaultdict(float))
    for line in SAMPLE.read_text().splitlines():
        parts = line.split()
        day = dt.datetime.strptime(parts[2], "%Y%m%d").date()
        if day <= OBS_END:
            days[parts[1]][day] += float(parts[4])
    out = {}
    for cid, per_day in days.items():
        ordered = sorted(per_day)
        cal = [d for d in ordered if d <= CAL_END]
        if not cal:
            continue
        repeat = [per_day[d] for d in cal[1:]]
        out[cid] = {
            "x": len(repeat),
            "t_x": (cal[-1] - cal[0]).days / 7,
            "T": (CAL_END - cal[0]).days / 7,
            "m": sum(repeat) / len(repeat) if repeat else 0.0,
            "holdout": float(len([d for d in ordered if d > CAL_END])),
        }
    return out


@pytest.fixture(scope="module")
def truth() -> dict[str, dict[str, float]]:
    return _cdnow_truth()


@pytest.fixture(scope="module")
def fitted(truth: dict[str, dict[str, float]]) -> tuple[BetaGeoModel, GammaGammaModel]:
    x = np.array([v["x"] for v in truth.values()])
    t_x = np.array([v["t_x"] for v in truth.values()])
    big_t = np.array([v["T"] for v in truth.values()])
    m = np.array([v["m"] for v in truth.values()])
    return BetaGeoModel().fit(x, t_x, big_t), GammaGammaModel().fit(x, m)


def test_clv_json_reproduces_published_fit_and_holdout(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    truth: dict[str, dict[str, float]],
    fitted: tuple[BetaGeoModel, GammaGammaModel],
) -> None:
    out = tmp_path / "clv.parquet"
    assert cli([*ARGS, "--model", "bgnbd", "--json", "--out", str(out)]) == 0
    result = json.loads(capsys.readouterr().out)
    # BG/NBD only when asked for, and then its blind spot is said (FHL 2005: P(alive) = 1
    # for every customer without a repeat purchase).
    assert result["one_time_buyer_churn_identified"] is False
    assert any("not identified by BG/NBD" in w for w in result["warnings"])
    assert {"model", "time_unit", "params", "stderr", "loglik", "n_customers", "spend_model"} <= (
        result.keys()
    )
    assert result["model"] == "bgnbd"
    assert result["time_unit"] == "week"
    assert result["n_customers"] == 2357
    published = {"r": 0.2426, "alpha": 4.4135, "a": 0.7929, "b": 2.4259}
    for name, value in published.items():
        assert result["params"][name] == pytest.approx(value, rel=2e-3), name
        assert result["stderr"][name] > 0
    assert result["loglik"] == pytest.approx(-9582.43, abs=0.05)
    spend = result["spend_model"]["params"]
    assert spend == pytest.approx({"p": 6.25, "q": 3.74, "gamma": 15.44}, rel=3e-3)
    holdout = result["holdout"]
    assert holdout["actual_repeat"] == sum(v["holdout"] for v in truth.values())
    assert set(holdout) >= {"actual_repeat", "predicted_repeat", "mae", "rmse", "correlation"}
    # The prediction is the sum of the model's conditional expectations over the 39
    # holdout weeks (FHL 2005 eq. 10), here recomputed from an independent fit.
    model = fitted[0]
    x, t_x, big_t = (np.array([v[k] for v in truth.values()]) for k in ("x", "t_x", "T"))
    expected = float(np.sum(model.expected_purchases(x, t_x, big_t, horizon=39.0)))
    assert holdout["predicted_repeat"] == pytest.approx(expected, rel=1e-6)
    assert abs(holdout["predicted_repeat"] / holdout["actual_repeat"] - 1) < 0.15
    assert 0.5 < holdout["correlation"] < 1
    table = pq.read_table(out)
    assert table.num_rows == 2357
    assert {"probability_alive", "churn_risk", "expected_purchases", "clv", "clv_lower"} <= set(
        table.column_names
    )
    clv = table.column("clv").to_numpy()
    lower, upper = table.column("clv_lower").to_numpy(), table.column("clv_upper").to_numpy()
    assert np.all(lower <= clv + 1e-9)
    assert np.all(clv <= upper + 1e-9)
    assert result["total_clv"] == pytest.approx(float(clv.sum()))


def test_holdout_histogram_and_tracking_add_up(
    fitted: tuple[BetaGeoModel, GammaGammaModel], truth: dict[str, dict[str, float]]
) -> None:
    model, _ = fitted
    x = np.array([v["x"] for v in truth.values()])
    t_x = np.array([v["t_x"] for v in truth.values()])
    big_t = np.array([v["T"] for v in truth.values()])
    actual = np.array([v["holdout"] for v in truth.values()])
    report = holdout_report(model, x, t_x, big_t, actual, 39.0)
    rows = report.frequency_histogram
    assert sum(r["actual"] for r in rows) == 2357
    assert sum(r["expected"] for r in rows) == pytest.approx(2357, rel=1e-9)
    assert rows[0]["actual"] == int(np.sum(x == 0)) == 1411
    # the model's expected zero-repeat count is close to the observed 1,411 (FHL 2005 fig. 2)
    assert rows[0]["expected"] == pytest.approx(1411, rel=0.03)
    assert report.actual_repeat == actual.sum()


@settings(max_examples=25, deadline=None)
@given(st.floats(0.0, 0.5), st.floats(0.001, 0.5))
def test_clv_non_increasing_in_discount_rate(
    fitted: tuple[BetaGeoModel, GammaGammaModel], low: float, step: float
) -> None:
    model, spend = fitted
    x, t_x, big_t, m = [2, 0, 7], [30.43, 0.0, 35.0], [38.86, 38.86, 38.86], [20.0, 0.0, 45.0]
    args = {"horizon": 52, "margin": 0.3, "spend": spend, "monetary_value": m, "intervals": False}
    near = customer_lifetime_value(model, x, t_x, big_t, discount_rate=low, **args).clv
    far = customer_lifetime_value(model, x, t_x, big_t, discount_rate=low + step, **args).clv
    assert np.all(far <= near + 1e-12)
    assert np.all(far > 0)


def test_demo_run_scores_every_buyer_against_planted_truth(tmp_path: Path) -> None:
    assert cli(["demo", "--customers", "3000", "--seed", "5", "--out", str(tmp_path)]) == 0
    table = pq.read_table(tmp_path / "output" / "customer_features.parquet")
    assert table.num_rows == 3000
    frequency = table.column("frequency").to_numpy(zero_copy_only=False)
    clv = table.column("clv").to_numpy(zero_copy_only=False)
    assert np.all(np.isfinite(clv[np.isfinite(frequency)]))
    alive = table.column("probability_alive").to_numpy(zero_copy_only=False)
    assert np.nanmin(alive) >= 0
    assert np.nanmax(alive) <= 1
    # Ground truth planted by the generator: who is still alive at the as-of date.
    truth = pq.read_table(tmp_path / "data" / "truth" / "customers.parquet")
    is_alive = dict(
        zip(
            truth.column("customer_id").to_pylist(),
            truth.column("alive_at_as_of").to_pylist(),
            strict=True,
        )
    )
    labels = np.array([is_alive[c] for c in table.column("customer_id").to_pylist()])
    scores = np.nan_to_num(alive)
    # AUC as the probability that a random alive customer outscores a random dead one
    pos, neg = scores[labels], scores[~labels]
    auc = (pos[:, None] > neg[None, :]).mean() + 0.5 * (pos[:, None] == neg[None, :]).mean()
    assert auc > 0.75
    run = json.loads((tmp_path / "output" / "run.json").read_text())
    # the default (auto) picks a model that lets one-time buyers drop out
    assert run["clv"]["model"] in ("mbgnbd", "pnbd")
    assert run["clv"]["one_time_buyer_churn_identified"] is True
    assert "holdout MAE" in run["clv"]["selection"]
    assert run["clv"]["holdout"]["actual_repeat"] > 0
    propensity = run["clv"]["propensity"]
    assert propensity["horizon"] == pytest.approx(26.0)
    assert propensity["held_out"] > 500
    # both scores separate next-26-week buyers from the rest on held-out customers
    assert propensity["classifier"]["auc"] > 0.7
    assert propensity["btyd_baseline"]["auc"] > 0.7
    assert "age" in propensity["features"]
    scores = table.column("purchase_propensity").to_numpy(zero_copy_only=False)
    assert np.all((scores >= 0) & (scores <= 1))


def test_free_repeat_purchases_get_the_population_mean_spend(
    fitted: tuple[BetaGeoModel, GammaGammaModel],
) -> None:
    model, spend = fitted
    result = customer_lifetime_value(
        model,
        [3, 0],
        [20.0, 0.0],
        [38.0, 38.0],
        horizon=52,
        discount_rate=0.002,
        spend=spend,
        monetary_value=[0.0, 0.0],  # three repeat purchases, all free; and a one-timer
        intervals=False,
    )
    population_mean = spend.params_["p"] * spend.params_["gamma"] / (spend.params_["q"] - 1)
    assert result.expected_spend == pytest.approx([population_mean, population_mean])
    assert np.all(result.clv > 0)


# Histories (frequency, recency, T, monetary value) to draw customers from, with repeats:
# two customers may share a history and differ in spend, or share everything.
_POOL = [
    (0, 0.0, 38.86, 0.0),
    (0, 0.0, 10.0, 0.0),
    (2, 30.43, 38.86, 20.0),
    (2, 30.43, 38.86, 35.0),
    (2, 5.0, 38.86, 20.0),
    (7, 35.0, 38.86, 45.0),
    (1, 2.0, 10.0, 8.0),
    (3, 20.0, 38.0, 0.0),  # free repeat purchases
]


@settings(max_examples=30, deadline=None)
@given(st.lists(st.sampled_from(_POOL), min_size=1, max_size=12))
def test_scoring_each_distinct_history_once_equals_scoring_each_customer_alone(
    fitted: tuple[BetaGeoModel, GammaGammaModel], customers: list[tuple[float, ...]]
) -> None:
    """score_customers evaluates the transaction model once per distinct history and
    scatters the results: every customer must get what she gets when scored alone."""
    model, spend = fitted
    valuation = Valuation("bgnbd", model, spend, None)
    keys = ("frequency", "recency", "T", "monetary_value")
    columns = zip(*customers, strict=True)
    features = {k: np.array(c, dtype=float) for k, c in zip(keys, columns, strict=True)}
    options = {"horizon": 52, "discount_rate": 0.002, "margin": 0.3}
    together = score_customers(valuation, features, **options)
    for i in range(len(customers)):
        one = {k: v[i : i + 1] for k, v in features.items()}
        alone = score_customers(valuation, one, **options)
        for name, values in together.items():
            np.testing.assert_allclose(values[i], alone[name][0], rtol=1e-10, err_msg=name)


class _SpendWithoutClosedForm:
    """The fitted Gamma-Gamma model seen through expected_spend alone: CLV intervals then
    take the spend model's gradient by forward differences, as for any spend model."""

    def __init__(self, model: GammaGammaModel) -> None:
        self.model = model
        self.params_ = model.params_
        self.param_names = model.param_names
        self.covariance_ = model.covariance_

    def with_params(self, values: np.ndarray) -> _SpendWithoutClosedForm:
        return _SpendWithoutClosedForm(self.model.with_params(values))

    def expected_spend(self, x: np.ndarray, m: np.ndarray) -> np.ndarray:
        return self.model.expected_spend(x, m)


def _cdnow_clv(
    truth: dict[str, dict[str, float]], model: BetaGeoModel, spend: object
) -> clv_module.CLVResult:
    columns = {k: np.array([v[k] for v in truth.values()]) for k in ("x", "t_x", "T", "m")}
    return customer_lifetime_value(
        model,
        columns["x"],
        columns["t_x"],
        columns["T"],
        horizon=52,
        discount_rate=0.002,
        spend=spend,
        monetary_value=columns["m"],
    )


def test_closed_form_spend_gradient_gives_the_forward_difference_intervals(
    truth: dict[str, dict[str, float]], fitted: tuple[BetaGeoModel, GammaGammaModel]
) -> None:
    """The Gamma-Gamma gradient in closed form changes the intervals only by the forward
    differences' own error: step 1e-4 in the log-parameters, so about 1e-4 of the
    standard error of log CLV (below 0.7 here), times z = 1.96, relative in the bounds."""
    model, spend = fitted
    closed = _cdnow_clv(truth, model, spend)
    differenced = _cdnow_clv(truth, model, _SpendWithoutClosedForm(spend))
    np.testing.assert_array_equal(closed.clv, differenced.clv)
    assert np.all(np.isfinite(closed.lower))
    for bound in ("lower", "upper", "total_lower", "total_upper"):
        np.testing.assert_allclose(
            getattr(closed, bound), getattr(differenced, bound), rtol=1e-4, err_msg=bound
        )
    assert closed.lower.tolist() != differenced.lower.tolist()  # the two paths did differ


def test_intervals_do_not_depend_on_the_number_of_threads(
    truth: dict[str, dict[str, float]],
    fitted: tuple[BetaGeoModel, GammaGammaModel],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The transaction model's perturbed evaluations run concurrently: bit for bit the
    same intervals on one thread as on several."""
    model, spend = fitted
    results = []
    for cores in (1, 2, 4):
        monkeypatch.setattr(clv_module, "_available_cores", lambda cores=cores: cores)
        results.append(_cdnow_clv(truth, model, spend))
    for other in results[1:]:
        for bound in ("clv", "lower", "upper"):
            np.testing.assert_array_equal(getattr(results[0], bound), getattr(other, bound))
        assert (other.total_lower, other.total_upper) == (
            results[0].total_lower,
            results[0].total_upper,
        )


@settings(max_examples=40, deadline=None)
@given(
    theta=st.tuples(*[st.floats(0.05, 20.0)] * 4),
    moved=st.lists(st.tuples(*[st.floats(0.9, 1.1)] * 4), min_size=1, max_size=4),
    histories=st.lists(
        st.tuples(st.integers(0, 30), st.floats(0.0, 1.0), st.floats(0.5, 200.0)),
        min_size=1,
        max_size=8,
    ),
    modified=st.booleans(),
)
def test_models_evaluated_together_give_each_models_value(
    theta: tuple[float, ...],
    moved: list[tuple[float, ...]],
    histories: list[tuple[int, float, float]],
    modified: bool,
) -> None:
    """Real time evaluates the fitted and the moved models of the CLV interval in one
    call: per element the same steps as one call per model, so the same values (to
    rounding: a different grouping of elements may take another SIMD lane)."""
    from segvalue.models import _bgnbd_math as math

    thetas = np.array([theta, *(np.multiply(theta, m) for m in moved)])
    x = np.array([h[0] for h in histories], dtype=float)
    big_t = np.array([h[2] for h in histories])
    t_x = np.where(x > 0, big_t * np.array([h[1] for h in histories]), 0.0)
    kwargs = {"discount_rate": 0.01, "horizon": 26, "modified": modified}
    together = math.discounted_expected_purchases_at(thetas, x, t_x, big_t, **kwargs)
    for row, params in zip(together, thetas, strict=True):
        alone = math.discounted_expected_purchases(params, x, t_x, big_t, **kwargs)
        np.testing.assert_allclose(row, alone, rtol=1e-12, atol=1e-300)


def test_few_customers_get_the_clv_and_interval_of_one_evaluation_per_model(
    truth: dict[str, dict[str, float]],
    fitted: tuple[BetaGeoModel, GammaGammaModel],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Up to _STACKED_ROWS distinct histories (a customer scored in real time) the models
    are evaluated together: the CLV and its interval are those of the model-by-model
    path, to rounding."""
    model, spend = fitted
    few = dict(list(truth.items())[:40])
    together = _cdnow_clv(few, model, spend)
    monkeypatch.setattr(clv_module, "_STACKED_ROWS", 0)
    apart = _cdnow_clv(few, model, spend)
    for bound in ("clv", "lower", "upper"):
        np.testing.assert_allclose(
            getattr(together, bound), getattr(apart, bound), rtol=1e-12, err_msg=bound
        )
    assert together.lower.tolist() != together.clv.tolist()  # an interval, not a point


def test_threads_see_the_callers_numpy_error_state(
    fitted: tuple[BetaGeoModel, GammaGammaModel], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The moved models are evaluated on worker threads in the caller's context."""
    model, _ = fitted
    monkeypatch.setattr(clv_module, "_available_cores", lambda: 2)
    seen = []

    def factor_of(moved: object, columns: tuple[np.ndarray, ...]) -> np.ndarray:
        seen.append(np.geterr()["divide"])
        return columns[0]

    with np.errstate(divide="ignore"):
        clv_module._evaluations(model, factor_of, (np.ones(3),), moved=True)
    assert seen == ["ignore"] * 5


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.floats(allow_nan=False, allow_infinity=False, min_value=-1e300, max_value=1e300),
        max_size=50,
    ),
    st.integers(0, 3),
)
def test_total_clv_sum_is_math_fsum(values: list[float], repeat: int) -> None:
    """The total CLV is the exact sum correctly rounded, as math.fsum gives it."""
    import math

    from segvalue.pipeline import _exact_sum

    x = np.array(values * (10**repeat), dtype=np.float64)
    assert repr(_exact_sum(x)) == repr(math.fsum(x))


def test_total_clv_sum_of_a_million_customers_is_math_fsum() -> None:
    import math

    from segvalue.pipeline import _exact_sum

    rng = np.random.default_rng(7)
    for x in (
        rng.gamma(0.3, 100.0, 1_000_000),
        rng.normal(0.0, 1.0, 1_000_000) * 10.0 ** rng.integers(-300, 300, 1_000_000),
        np.full(1_000_000, 0.1),
    ):
        assert _exact_sum(x) == math.fsum(x)


def test_fits_on_two_threads_each_note_their_fallbacks_in_a_fixed_order(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The spend model is fitted on a worker thread while the transaction model fits here.

    Each fit's fallback notes reach the valuation's warnings (never a Python warning), in
    the same order whichever fit finishes first: the worker notes first here.
    """
    import threading
    import time
    import warnings

    from segvalue.errors import ConvergenceWarning
    from segvalue.models import _fit
    from segvalue.valuation import fit_valuation

    threads: dict[str, int] = {}
    real_bg, real_gg = BetaGeoModel.fit, GammaGammaModel.fit

    def slow_bg(self: BetaGeoModel, *args: object, **kwargs: object) -> BetaGeoModel:
        time.sleep(0.3)  # the spend fit (and its note) finishes first
        threads["bgnbd"] = threading.get_ident()
        _fit.note_fallback("bgnbd: converged only with BFGS")
        return real_bg(self, *args, **kwargs)  # type: ignore[arg-type]

    def noted_gg(self: GammaGammaModel, *args: object, **kwargs: object) -> GammaGammaModel:
        threads["gamma-gamma"] = threading.get_ident()
        _fit.note_fallback("gamma-gamma: converged only with Nelder-Mead")
        return real_gg(self, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(BetaGeoModel, "fit", slow_bg)
    monkeypatch.setattr(GammaGammaModel, "fit", noted_gg)
    rng = np.random.default_rng(3)
    x = rng.poisson(2.0, 400).astype(float)
    t_x = np.where(x > 0, rng.uniform(0, 40, 400), 0.0)
    features = {
        "frequency": x,
        "recency": t_x,
        "T": np.full(400, 40.0),
        "monetary_value": np.where(x > 0, rng.gamma(5, 4, 400), 0.0),
    }
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        valuation = fit_valuation(features, model="bgnbd")
    assert threads["bgnbd"] != threads["gamma-gamma"]
    notes = [w for w in valuation.warnings if "converged only" in w]
    assert notes == [
        "bgnbd: converged only with BFGS",
        "gamma-gamma: converged only with Nelder-Mead",
    ]
    assert valuation.spend is not None
    # Outside a valuation, a fallback is a Python warning, as before.
    with pytest.warns(ConvergenceWarning, match="converged only"):
        _fit.note_fallback("bgnbd: converged only with BFGS")
