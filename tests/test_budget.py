"""Budget optimiser, inverse problem and what-if (segvalue.economics.budget).

References: the closed-form Michaelis-Menten optimum of issue 5 (equal marginal ROI,
``s_i = sqrt(beta_i k_i / lambda) - k_i``); fine grid searches for S-shaped curves.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from segvalue.config import ResponseItem
from segvalue.economics.budget import (
    Allocation,
    curves_from_mapping,
    item_marginal_roi,
    item_response,
    optimise_budget,
    smallest_budget,
    what_if,
)
from segvalue.economics.curves import fit_response_curve, hill, michaelis_menten
from segvalue.errors import ConfigError

PROPERTY = settings(max_examples=40, deadline=None, derandomize=True, database=None)


def mm(name: str, beta: float, k: float, **kw: float | bool) -> ResponseItem:
    return ResponseItem(name=name, form="michaelis_menten", beta=beta, k=k, **kw)  # type: ignore[arg-type]


def s_shaped(name: str, beta: float, k: float, **kw: float | bool) -> ResponseItem:
    return ResponseItem(name=name, form="hill", beta=beta, k=k, slope=2.0, **kw)  # type: ignore[arg-type]


CLOSED_FORM = [mm("a", 1000.0, 200.0), mm("b", 600.0, 100.0), mm("c", 300.0, 50.0)]


def _score(result: Allocation) -> float:
    return result.expected_outcome


# --------------------------------------------------------------------------- closed form


def test_closed_form_michaelis_menten() -> None:
    """Issue 5 acceptance: spend (266.627, 155.582, 77.791), response 1119.255, mROI 0.9185."""
    result = optimise_budget(CLOSED_FORM, total=500.0, objective="revenue")
    spend = [result.allocation[n] for n in "abc"]
    assert spend == pytest.approx([266.627, 155.582, 77.791], abs=1e-3)
    assert result.expected_response == pytest.approx(1119.255, abs=1e-3)
    # lambda = (sum sqrt(beta k) / (total + sum k))^2, from the KKT conditions
    lam = (sum(math.sqrt(b * k) for b, k in [(1000, 200), (600, 100), (300, 50)]) / 850.0) ** 2
    assert lam == pytest.approx(0.9185, abs=1e-4)
    for name in "abc":
        assert result.marginal_roi[name] == pytest.approx(lam, rel=1e-10)
    assert sum(spend) == pytest.approx(500.0, abs=1e-9)
    assert result.method == "kkt"
    assert result.binding_constraints == ["total"]
    # clv is the same computation (value per conversion as given)
    clv = optimise_budget(CLOSED_FORM, total=500.0, objective="clv")
    assert clv.allocation == pytest.approx(result.allocation, abs=1e-9)


def test_closed_form_json_shape() -> None:
    out = optimise_budget(CLOSED_FORM, total=500.0, objective="revenue").to_dict()
    assert list(out)[:5] == [
        "allocation",
        "expected_response",
        "current_response",
        "marginal_roi",
        "binding_constraints",
    ]
    assert out["allocation"]["a"] == pytest.approx(266.627, abs=1e-3)
    assert out["current_response"] == 0.0
    assert json.loads(json.dumps(out))["binding_constraints"] == ["total"]


def test_profit_stops_at_marginal_roi_one() -> None:
    # mROI at the full 500 is 0.9185 < 1: profit spends s_i = sqrt(beta k) - k instead.
    result = optimise_budget(CLOSED_FORM, total=500.0, objective="profit")
    expected = {"a": math.sqrt(200_000) - 200, "b": math.sqrt(60_000) - 100}
    expected["c"] = math.sqrt(15_000) - 50
    assert result.allocation == pytest.approx(expected, abs=1e-9)
    assert result.spend < 500.0
    assert result.marginal_roi == pytest.approx({"a": 1.0, "b": 1.0, "c": 1.0}, abs=1e-12)
    assert "total" not in result.binding_constraints
    # with a smaller total the cap binds and profit = revenue allocation
    tight = optimise_budget(CLOSED_FORM, total=300.0, objective="profit")
    revenue = optimise_budget(CLOSED_FORM, total=300.0, objective="revenue")
    assert tight.allocation == pytest.approx(revenue.allocation, abs=1e-9)
    assert tight.binding_constraints == ["total"]


def test_profit_without_total_is_free() -> None:
    result = optimise_budget(CLOSED_FORM, total=math.inf, objective="profit")
    assert result.total is None
    assert result.spend == pytest.approx(sum(math.sqrt(b * k) - k for b, k in [
        (1000, 200), (600, 100), (300, 50)]), abs=1e-9)  # fmt: skip
    # total=None with no current spend: profit is free too
    assert optimise_budget(CLOSED_FORM, objective="profit").spend == pytest.approx(result.spend)


def test_marginal_roi_floor() -> None:
    floor = 1.5
    result = optimise_budget(CLOSED_FORM, total=500.0, objective="revenue", min_marginal_roi=floor)
    for name, (b, k) in zip("abc", [(1000, 200), (600, 100), (300, 50)], strict=True):
        assert result.allocation[name] == pytest.approx(math.sqrt(b * k / floor) - k, abs=1e-9)
        assert result.marginal_roi[name] == pytest.approx(floor, rel=1e-9)
    assert result.binding_constraints == ["min_marginal_roi"]
    # a floor below the marginal ROI at the total does not bind
    loose = optimise_budget(CLOSED_FORM, total=500.0, objective="revenue", min_marginal_roi=0.5)
    assert loose.allocation == pytest.approx(
        optimise_budget(CLOSED_FORM, total=500.0, objective="revenue").allocation, abs=1e-9
    )
    assert all(m >= 0.5 for m in loose.marginal_roi.values())
    # S-shaped items respect it as well: every funded item returns at least the floor
    items = [s_shaped("a", 1000.0, 100.0), s_shaped("b", 400.0, 150.0)]
    s = optimise_budget(items, total=2000.0, objective="revenue", min_marginal_roi=2.0)
    for name, spend in s.allocation.items():
        if spend > 1e-6:
            assert s.marginal_roi[name] >= 2.0 - 1e-6


def test_pinned_items_unchanged_and_bounds_respected() -> None:
    items = [
        mm("a", 1000.0, 200.0, current=120.0, pinned=True),
        mm("b", 600.0, 100.0, current=200.0, max_change=0.25),
        mm("c", 300.0, 50.0, current=100.0, min=90.0, max=140.0),
        s_shaped("d", 800.0, 120.0, current=80.0),
    ]
    result = optimise_budget(items, objective="revenue")
    assert result.allocation["a"] == 120.0
    assert 150.0 - 1e-9 <= result.allocation["b"] <= 250.0 + 1e-9
    assert 90.0 - 1e-9 <= result.allocation["c"] <= 140.0 + 1e-9
    assert result.spend == pytest.approx(500.0, abs=1e-6)  # total None: the current total
    assert "a.pinned" in result.binding_constraints
    assert result.expected_value >= result.current_value


# --------------------------------------------------------------------------- infeasible


@pytest.mark.parametrize(
    ("items", "total", "objective", "words"),
    [
        (  # pinned + minimum over the budget
            [mm("tv", 1000.0, 200.0, current=300.0, pinned=True), mm("search", 600.0, 100.0,
             min=250.0), mm("email", 300.0, 50.0)],
            500.0, "revenue",
            ["lower limits add up to 550", "above the total 500", "'tv' pinned at its current 300",
             "'search' min 250", "raise the total to at least 550"],
        ),
        (  # maxima below an exact total
            [mm("tv", 1000.0, 200.0, max=100.0), mm("search", 600.0, 100.0, current=100.0,
             max_change=0.2), mm("email", 300.0, 50.0, max=50.0)],
            500.0, "revenue",
            ["total 500 cannot be spent", "upper limits add up to 270", "'tv' max 100",
             "'search' +20% of its current 100 = 120", "'email' max 50",
             "lower the total to at most 270"],
        ),
        (  # min above the max_change window
            [mm("tv", 1000.0, 200.0, current=100.0, min=200.0, max_change=0.5),
             mm("search", 600.0, 100.0)],
            500.0, "profit",
            ["'tv'", "lower limit (min 200)", "upper limit (+50% of its current 100 = 150)"],
        ),
        (  # max below the max_change window
            [mm("tv", 1000.0, 200.0, current=400.0, max=250.0, max_change=0.2),
             mm("search", 600.0, 100.0)],
            800.0, "revenue",
            ["'tv'", "lower limit (-20% of its current 400 = 320)", "upper limit (max 250)"],
        ),
        (  # pinned outside its limits
            [mm("tv", 1000.0, 200.0, current=100.0, max=50.0, pinned=True),
             mm("search", 600.0, 100.0)],
            500.0, "revenue",
            ["'tv' is pinned at its current 100, outside its min 0 .. max 50"],
        ),
        (  # minimums over the budget (profit: the total is a cap)
            [s_shaped("tv", 1000.0, 200.0, min=400.0), s_shaped("search", 600.0, 100.0,
             current=300.0, max_change=0.1)],
            600.0, "profit",
            ["lower limits add up to 670", "'tv' min 400",
             "'search' -10% of its current 300 = 270"],
        ),
    ],
)  # fmt: skip
def test_infeasible_limits_name_the_conflict(
    items: list[ResponseItem], total: float, objective: str, words: list[str]
) -> None:
    with pytest.raises(ConfigError) as raised:
        optimise_budget(items, total=total, objective=objective)  # type: ignore[arg-type]
    message = str(raised.value)
    for word in words:
        assert word in message, message
    assert "Fix:" in message


def test_other_input_errors() -> None:
    with pytest.raises(ConfigError, match="needs a total"):
        optimise_budget(CLOSED_FORM, objective="revenue")
    with pytest.raises(ConfigError, match="unlimited"):
        optimise_budget(CLOSED_FORM, total=math.inf, objective="revenue")
    with pytest.raises(ConfigError, match="repeat"):
        optimise_budget([mm("a", 1.0, 1.0), mm("a", 2.0, 1.0)], total=1.0)
    with pytest.raises(ConfigError, match="min_marginal_roi"):
        optimise_budget(CLOSED_FORM, total=1.0, min_marginal_roi=-1.0)
    with pytest.raises(ConfigError, match="unknown objective"):
        optimise_budget(CLOSED_FORM, total=1.0, objective="roas")  # type: ignore[arg-type]


# --------------------------------------------------------------------------- S-shaped


def _grid_best(beta: list[float], k: list[float], total: float, cap: bool = False) -> float:
    """Best summed Hill(slope 2) response on a fine grid of allocations of ``total``."""
    if len(beta) == 2:
        if cap:  # profit: spend at most the total
            g = np.linspace(0.0, total, 1201)
            a, b = np.meshgrid(g, g, indexing="ij")
            ok = a + b <= total * (1 + 1e-12)
            value = hill(a, beta[0], k[0], 2.0) + hill(b, beta[1], k[1], 2.0) - a - b
            return float(np.max(np.where(ok, value, -np.inf)))
        g = np.linspace(0.0, total, 20001)
        return float(np.max(hill(g, beta[0], k[0], 2.0) + hill(total - g, beta[1], k[1], 2.0)))
    g = np.linspace(0.0, total, 601)
    a, b = np.meshgrid(g, g, indexing="ij")
    c = total - a - b
    value = hill(a, beta[0], k[0], 2.0) + hill(b, beta[1], k[1], 2.0)
    value = value + hill(np.maximum(c, 0.0), beta[2], k[2], 2.0)
    return float(np.max(np.where(c >= -1e-9 * total, value, -np.inf)))


@st.composite
def s_problems(draw: st.DrawFn) -> tuple[list[float], list[float], float, list[float]]:
    n = draw(st.integers(2, 3))
    beta = [draw(st.floats(50.0, 2000.0)) for _ in range(n)]
    k = [draw(st.floats(10.0, 500.0)) for _ in range(n)]
    total = draw(st.floats(10.0, 2000.0))
    start = draw(st.sampled_from(["corner", "interior", "zero-one"]))
    if start == "interior":
        weights = [draw(st.floats(0.01, 1.0)) for _ in range(n)]
        current = [total * w / sum(weights) for w in weights]
    else:
        current = [0.0] * n
        current[draw(st.integers(0, n - 1))] = total  # everything on one item
    return beta, k, total, current


@PROPERTY
@given(s_problems())
def test_s_shaped_optimum_beats_fine_grid_from_any_start(
    problem: tuple[list[float], list[float], float, list[float]],
) -> None:
    beta, k, total, current = problem
    items = [
        s_shaped(f"i{i}", b, kk, current=c)
        for i, (b, kk, c) in enumerate(zip(beta, k, current, strict=True))
    ]
    result = optimise_budget(items, objective="revenue")  # total: the current total
    assert result.spend == pytest.approx(total, rel=1e-9)
    assert result.expected_value >= _grid_best(beta, k, total) - 1e-9 * sum(beta)
    assert result.expected_value >= result.current_value - 1e-9 * sum(beta)


@PROPERTY
@given(
    st.lists(st.tuples(st.floats(50.0, 2000.0), st.floats(10.0, 500.0)), min_size=2, max_size=2),
    st.floats(10.0, 2000.0),
)
def test_s_shaped_profit_beats_grid(pairs: list[tuple[float, float]], total: float) -> None:
    items = [s_shaped(f"i{i}", b, kk) for i, (b, kk) in enumerate(pairs)]
    result = optimise_budget(items, total=total, objective="profit")
    assert result.spend <= total * (1 + 1e-12)
    best = _grid_best([b for b, _ in pairs], [kk for _, kk in pairs], total, cap=True)
    assert result.expected_profit >= best - 1e-9 * sum(b for b, _ in pairs)


def test_s_shaped_corner_start_reaches_interior_optimum() -> None:
    # Two identical S-curves: from 'all on a', gradient methods stay put (b's marginal at
    # 0 is 0); the optimum splits when the budget exceeds ~1.3 k.
    items = [s_shaped("a", 1000.0, 100.0, current=400.0), s_shaped("b", 1000.0, 100.0)]
    result = optimise_budget(items, objective="revenue")
    assert result.allocation == pytest.approx({"a": 200.0, "b": 200.0}, abs=1e-6)
    assert result.expected_value == pytest.approx(1600.0, abs=1e-6)
    assert result.current_value == pytest.approx(1000.0 * 16 / 17, abs=1e-9)


@st.composite
def bounded_problems(draw: st.DrawFn) -> tuple[list[ResponseItem], str, float | None]:
    n = draw(st.integers(1, 4))
    items = []
    for i in range(n):
        current = draw(st.floats(0.0, 500.0))
        slope = draw(st.sampled_from([None, 0.6, 1.0, 1.5, 2.0, 3.0]))
        form = "michaelis_menten" if slope is None else "hill"
        low = draw(st.floats(0.0, 1.0)) * current
        high = current + draw(st.floats(0.0, 400.0))
        items.append(
            ResponseItem(
                name=f"i{i}",
                form=form,
                slope=slope,
                beta=draw(st.floats(10.0, 3000.0)),
                k=draw(st.floats(5.0, 400.0)),
                value=draw(st.floats(0.2, 5.0)),
                current=current,
                min=draw(st.sampled_from([0.0, low])),
                max=draw(st.sampled_from([None, high])),
                max_change=draw(st.sampled_from([None, 0.1, 0.5, 2.0])),
                pinned=draw(st.booleans()) and draw(st.booleans()),
            )
        )
    objective = draw(st.sampled_from(["profit", "revenue", "clv"]))
    floor = draw(st.sampled_from([None, None, 0.5, 1.5]))
    return items, objective, floor


@PROPERTY
@given(bounded_problems())
def test_never_worse_than_current(problem: tuple[list[ResponseItem], str, float | None]) -> None:
    items, objective, floor = problem
    if sum(i.current for i in items) == 0 and objective != "profit":
        return  # no total to keep (an error, tested elsewhere)
    result = optimise_budget(items, objective=objective, min_marginal_roi=floor)  # type: ignore[arg-type]
    # the score the optimiser maximises: value - c * spend, c = 1 for profit, the floor
    charge = max(1.0 if objective == "profit" else 0.0, floor or 0.0)
    score = result.expected_value - charge * result.spend
    current = result.current_value - charge * result.current_spend
    assert score >= current - 1e-9 * max(1.0, abs(current))
    for item in items:
        spend = result.allocation[item.name]
        if item.pinned:
            assert spend == item.current
        assert spend >= item.min - 1e-9
        if item.max is not None:
            assert spend <= item.max + 1e-9
        if item.max_change is not None and not item.pinned:
            assert abs(spend - item.current) <= item.max_change * item.current + 1e-9
    current_total = sum(i.current for i in items)
    if current_total > 0 or objective != "profit":  # profit from nothing: the total is free
        assert result.spend <= current_total * (1 + 1e-9) + 1e-9


# --------------------------------------------------------------------------- inverse problem


def test_smallest_budget_inverts_forward_problem() -> None:
    for total in (50.0, 500.0, 5000.0):
        forward = optimise_budget(CLOSED_FORM, total=total, objective="revenue")
        inverse = smallest_budget(CLOSED_FORM, forward.expected_value)
        assert inverse.total == pytest.approx(total, rel=1e-7)
        assert inverse.allocation == pytest.approx(forward.allocation, rel=1e-6)
    items = [s_shaped("a", 1000.0, 100.0), s_shaped("b", 600.0, 150.0), mm("c", 300.0, 50.0)]
    forward = optimise_budget(items, total=400.0, objective="revenue")
    inverse = smallest_budget(items, forward.expected_value)
    assert inverse.expected_value >= forward.expected_value * (1 - 1e-9)  # rtol of the search
    assert inverse.total == pytest.approx(400.0, rel=1e-4)
    # a response target (not money) with values != 1
    valued = [mm("a", 1000.0, 200.0, value=3.0), mm("b", 600.0, 100.0, value=0.5)]
    by_response = smallest_budget(valued, 800.0, measure="response")
    assert by_response.expected_response == pytest.approx(800.0, rel=1e-6)


def test_smallest_budget_unreachable_names_the_maximum() -> None:
    with pytest.raises(ConfigError, match=r"target 2,000 cannot be reached.*saturate at 1,900"):
        smallest_budget(CLOSED_FORM, 2000.0)
    capped = [mm("a", 1000.0, 200.0, max=200.0), mm("b", 600.0, 100.0, max=100.0)]
    with pytest.raises(ConfigError, match=r"most the items reach within a total of 300 is 800"):
        smallest_budget(capped, 900.0)
    with pytest.raises(ConfigError, match="within a total of 100"):
        smallest_budget(CLOSED_FORM, 1000.0, max_total=100.0)
    # optimise_budget(target=...) is the same inverse problem
    via_target = optimise_budget(CLOSED_FORM, target=1119.255, objective="revenue")
    assert via_target.total == pytest.approx(500.0, abs=1e-3)


# --------------------------------------------------------------------------- what-if


def test_what_if_move_by_hand() -> None:
    items = [mm("a", 1000.0, 200.0, current=250.0), mm("b", 600.0, 100.0, current=100.0)]
    result = what_if(items, move=("a", "b", 0.2))
    # a: 250 -> 200: 1000*200/400 - 1000*250/450 = -55.556; b: 100 -> 150: 360 - 300 = +60
    assert result.scenario == {"a": 200.0, "b": 150.0}
    assert result.change_by_item["a"] == pytest.approx(500.0 - 1000.0 * 250 / 450, abs=1e-12)
    assert result.change_by_item["b"] == pytest.approx(60.0, abs=1e-12)
    assert result.change_value == pytest.approx(4.0 + 4.0 / 9.0, abs=1e-12)
    assert result.change_spend == 0.0
    assert result.interval is None
    assert "no parameter uncertainty" in result.notes[0]
    # the other way round loses: b has the higher marginal ROI at the current spend
    assert item_marginal_roi(items[1], 100.0)[()] > item_marginal_roi(items[0], 250.0)[()]
    back = what_if(items, move=("b", "a", 0.5))
    assert back.change_value == pytest.approx(1000 * 300 / 500 - 1000 * 250 / 450 - 100.0)
    assert back.change_value < 0


def test_what_if_allocation_and_limits() -> None:
    items = [mm("a", 1000.0, 200.0, current=250.0, max=260.0), mm("b", 600.0, 100.0, current=100.0)]
    result = what_if(items, allocation={"a": 300.0})
    assert result.scenario == {"a": 300.0, "b": 100.0}
    assert result.change_spend == 50.0
    assert result.change_value == pytest.approx(600.0 - 1000 * 250 / 450)
    assert result.change_profit == pytest.approx(result.change_value - 50.0)
    assert any("'a' at 300 is outside its limits" in n for n in result.notes)
    with pytest.raises(ConfigError, match="unknown 'to' item 'tv'"):
        what_if(items, move=("a", "tv", 0.1))
    with pytest.raises(ConfigError, match="between 0 and 1"):
        what_if(items, move=("a", "b", 1.5))
    with pytest.raises(ConfigError, match="either a move"):
        what_if(items)


def test_what_if_interval_covers_truth() -> None:
    """Parameter uncertainty from fitted curves: the 95% interval of the change covers the
    true change in about 95% of simulated histories."""
    truth = {"a": (1000.0, 200.0), "b": (600.0, 100.0)}
    true_change = (michaelis_menten(200.0, *truth["a"]) - michaelis_menten(250.0, *truth["a"])) + (
        michaelis_menten(150.0, *truth["b"]) - michaelis_menten(100.0, *truth["b"])
    )
    covered, reps = 0, 200
    for rep in range(reps):
        rng = np.random.default_rng(rep)
        fits = {}
        for name, (beta, k) in truth.items():
            spend = rng.uniform(0.2 * k, 4.0 * k, 60)
            outcome = michaelis_menten(spend, beta, k) * rng.lognormal(0.0, 0.1, 60)
            fits[name] = fit_response_curve(spend, outcome, form="michaelis_menten", loss="log")
        items = [
            fits["a"].to_response_item("a", current=250.0),
            fits["b"].to_response_item("b", current=100.0),
        ]
        result = what_if(items, move=("a", "b", 0.2), uncertainty=fits, n_draws=2000, seed=rep)
        assert result.interval is not None
        low, high = result.interval
        assert low < result.change_value < high
        covered += low <= true_change <= high
    assert 0.91 <= covered / reps <= 0.99


def test_what_if_draws_array() -> None:
    items = [mm("a", 1000.0, 200.0, current=250.0), mm("b", 600.0, 100.0, current=100.0)]
    exact = np.array([[1000.0, 200.0]] * 10)
    result = what_if(items, move=("a", "b", 0.2), uncertainty={"a": exact, "b": exact * [0.6, 0.5]})
    assert result.interval == pytest.approx((result.change_value, result.change_value), abs=1e-9)
    with pytest.raises(ConfigError, match="2 columns"):
        what_if(items, move=("a", "b", 0.2), uncertainty={"a": np.ones((5, 3))})


# --------------------------------------------------------------------------- curves file


def test_curves_file_round_trip_to_optimiser() -> None:
    data = {
        "total": 500,
        "items": [
            {"name": "a", "form": "michaelis_menten", "beta": 1000, "k": 200},
            {"name": "b", "form": "michaelis_menten", "beta": 600, "k": 100},
            {"name": "c", "form": "michaelis_menten", "beta": 300, "k": 50},
        ],
    }
    curves = curves_from_mapping(data)
    result = optimise_budget(curves.items, total=curves.total, objective="revenue")
    assert result.allocation["b"] == pytest.approx(155.582, abs=1e-3)
    assert item_response(curves.items[0], 200.0)[()] == 500.0
    with pytest.raises(ConfigError, match=r"items\[1\]\.slpoe' \(did you mean 'slope'\?\)"):
        curves_from_mapping({"items": [data["items"][0], {**data["items"][1], "slpoe": 1}]})
    with pytest.raises(ConfigError, match="needs 'slope'"):
        curves_from_mapping({"items": [{"name": "a", "beta": 1, "k": 1}]})
    with pytest.raises(ConfigError, match="expected a mapping"):
        curves_from_mapping([1, 2])


def test_default_max_change_and_values_override() -> None:
    items = [mm("a", 1000.0, 200.0, current=100.0), mm("b", 600.0, 100.0, current=400.0)]
    # marginal ROI: a 200000 / 300^2 = 2.22, b 60000 / 500^2 = 0.24: money moves to a,
    # which may grow by 10% only; the binding limit names its source
    result = optimise_budget(items, objective="revenue", max_change=0.1)
    assert result.allocation == pytest.approx({"a": 110.0, "b": 390.0}, abs=1e-9)
    assert result.binding_constraints == ["total", "a.max_change"]
    # an item's own max_change wins over the default; then b's -10% (360) binds
    own = [mm("a", 1000.0, 200.0, current=100.0, max_change=0.5), items[1]]
    mixed = optimise_budget(own, objective="revenue", max_change=0.1)
    assert mixed.allocation == pytest.approx({"a": 140.0, "b": 360.0}, abs=1e-9)
    assert mixed.binding_constraints == ["total", "b.max_change"]
    # values (e.g. CLV per conversion) scale the returns: value 2 on a == beta 2000
    valued = optimise_budget(items, total=500.0, objective="clv", values={"a": 2.0})
    doubled = optimise_budget([mm("a", 2000.0, 200.0), items[1]], total=500.0, objective="clv")
    assert valued.allocation == pytest.approx(doubled.allocation, abs=1e-9)
    assert valued.expected_value == pytest.approx(doubled.expected_value, abs=1e-9)
    assert valued.expected_response < doubled.expected_response  # response is not valued
    with pytest.raises(ConfigError, match=r"values given for unknown items \['z'\]"):
        optimise_budget(items, total=500.0, values={"z": 1.0})


def test_profit_keeps_the_current_total_with_a_denormal_minimum() -> None:
    """Found by the property test in CI: a min of 5e-324 made the KKT fill past the cap."""
    items = [
        ResponseItem(name="i0", form="michaelis_menten", beta=10.0, k=5.0),
        ResponseItem(
            name="i1", form="michaelis_menten", beta=12.0, k=5.0, current=1.0, min=5e-324, max=1.0
        ),
    ]
    result = optimise_budget(items, objective="profit")
    assert result.spend == pytest.approx(1.0, rel=1e-9)
    # equal marginal ROI: sqrt(lam) = (sqrt(50) + sqrt(60)) / 11
    lam = ((50**0.5 + 60**0.5) / 11) ** 2
    assert result.allocation["i0"] == pytest.approx((50 / lam) ** 0.5 - 5, rel=1e-9)


@settings(max_examples=200, deadline=None, derandomize=True)
@given(
    st.floats(-50, 50),
    st.floats(0.01, 20),
    st.integers(1, 7).map(lambda p: 2 * p - 1),
    st.floats(0.5, 100),
)
def test_brent_root_finds_the_same_roots_as_scipy(
    shift: float, scale: float, power: int, width: float
) -> None:
    """segvalue's Brent (no scipy import on the curves path) against scipy's brentq."""
    from scipy.optimize import brentq

    from segvalue.economics.budget import brent_root

    def f(x: float) -> float:
        return scale * (x - shift) ** power + (x - shift)

    low, high = shift - width, shift + 0.5 * width
    ours = brent_root(f, low, high, xtol=1e-12, maxiter=500)
    theirs = brentq(f, low, high, xtol=1e-12, maxiter=500)
    assert abs(ours - shift) <= 1e-9 * max(1.0, abs(shift))
    assert abs(ours - theirs) <= 1e-9 * max(1.0, abs(shift))
