"""Attribution: rule-based models, exact Markov chains, Shapley values.

The worked example is the issue's (and the classic one of Anderl et al. 2016, Fig. 2):
paths "C1 > C2 > C3" converting, "C1" and "C2 > C3" not, give removal effects (0.5, 1,
1) and shares (0.2, 0.4, 0.4). Exact answers are checked against a brute-force
simulation of the same chain and against Shapley's closed form for the subset-sum value
function (Zhao et al. 2018, eq. 6: each journey's conversions split equally among its
distinct channels).
"""

from __future__ import annotations

import datetime as dt
import itertools
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from segvalue.errors import DataValidationError
from segvalue.measurement import RULE_MODELS, Paths, markov, rule_based, shapley

WORKED = Paths.parse(["C1 > C2 > C3", "C1", "C2 > C3"], [1, 0, 0], nulls=[0, 1, 1])


def test_the_worked_example_gives_removal_effects_and_shares() -> None:
    a = markov(WORKED)
    np.testing.assert_allclose(a.removal_effects, [0.5, 1.0, 1.0], rtol=1e-12)
    np.testing.assert_allclose(a.conversions / a.total_conversions, [0.2, 0.4, 0.4], rtol=1e-12)
    assert a.details["conversion_probability"] == pytest.approx(1 / 3, rel=1e-12)
    assert a.to_dict()["channels"]["C2"] == {
        "conversions": pytest.approx(0.4),
        "value": 0.0,
        "removal_effect": pytest.approx(1.0),
    }


def _simulated_removal_effects(paths: Paths, walkers: int, seed: int) -> tuple[np.ndarray, float]:
    """Brute force: walk the order-1 chain of ``paths`` (its transition frequencies),
    once with every channel and once without each, and count conversions."""
    n = len(paths.channels)
    start, conv, null = n, n + 1, n + 2
    counts = np.zeros((n + 1, n + 3))
    for path, c, z in zip(paths.paths, paths.conversions, paths.nulls, strict=True):
        steps = [start, *path]
        for a, b in itertools.pairwise(steps):
            counts[a, b] += c + z
        counts[path[-1], conv] += c
        counts[path[-1], null] += z
    probs = counts / counts.sum(axis=1, keepdims=True).clip(min=1e-300)
    cumulative = np.cumsum(probs, axis=1)
    rng = np.random.default_rng(seed)

    def rate(removed: int | None) -> float:
        at = np.full(walkers, start)
        done = np.zeros(walkers, dtype=bool)
        converted = np.zeros(walkers, dtype=bool)
        for _ in range(200):
            live = np.flatnonzero(~done)
            if live.size == 0:
                break
            u = rng.random(live.size)
            nxt = (cumulative[at[live]] < u[:, None]).sum(axis=1)
            converted[live] |= nxt == conv
            finished = (nxt == conv) | (nxt == null) | (nxt == removed)
            done[live[finished]] = True
            at[live[~finished]] = nxt[~finished]
        return float(converted.mean())

    base = rate(None)
    return np.array([1 - rate(c) / base for c in range(n)]), base


def test_exact_markov_agrees_with_a_simulation_of_the_same_chain() -> None:
    paths = Paths.parse(
        ["a > b > c", "a > c", "b", "c > a > b > c", "b > b > a", "a"],
        [30, 12, 5, 9, 4, 0],
        nulls=[70, 40, 60, 11, 30, 90],
    )
    exact = markov(paths)
    walkers = 200_000
    simulated, base = _simulated_removal_effects(paths, walkers, seed=3)
    assert base == pytest.approx(
        exact.details["conversion_probability"], abs=4 * 0.5 / walkers**0.5
    )
    # Each simulated effect is 1 - ratio of two frequencies: its error is a few 1e-3 here.
    np.testing.assert_allclose(simulated, exact.removal_effects, atol=0.02)
    assert not np.allclose(exact.removal_effects, exact.removal_effects[0])  # not trivial


journeys = st.lists(
    st.tuples(
        st.lists(st.sampled_from("abcdef"), min_size=1, max_size=7),
        st.integers(0, 20),
        st.integers(0, 20),
        st.floats(0, 500),
    ),
    min_size=1,
    max_size=12,
)


def _paths(rows: list[tuple[list[str], int, int, float]]) -> Paths:
    return Paths.of(
        [r[0] for r in rows],
        [r[1] for r in rows],
        value=[r[3] if r[1] else 0.0 for r in rows],
        nulls=[r[2] for r in rows],
    )


@settings(max_examples=60, deadline=None)
@given(rows=journeys, order=st.integers(1, 4))
def test_markov_removal_effects_are_probabilities_and_credit_adds_up(
    rows: list[tuple[list[str], int, int, float]], order: int
) -> None:
    paths = _paths(rows)
    a = markov(paths, order=order)
    assert a.removal_effects is not None
    assert np.all((a.removal_effects >= 0) & (a.removal_effects <= 1))
    if a.removal_effects.sum() > 0:
        assert a.conversions.sum() == pytest.approx(paths.total_conversions, rel=1e-9)
        assert np.all(a.conversions >= 0)
    if paths.total_conversions > 0 and paths.total_value > 0 and a.value.sum() > 0:
        assert a.value.sum() == pytest.approx(paths.total_value, rel=1e-9)


@settings(max_examples=60, deadline=None)
@given(rows=journeys)
def test_rule_based_models_credit_every_conversion_once(
    rows: list[tuple[list[str], int, int, float]],
) -> None:
    paths = _paths(rows)
    for model in RULE_MODELS:
        a = rule_based(paths, model)
        assert a.conversions.sum() == pytest.approx(paths.total_conversions, abs=1e-9), model
        assert a.value.sum() == pytest.approx(paths.total_value, abs=1e-6), model


@settings(max_examples=60, deadline=None)
@given(rows=journeys)
def test_shapley_with_subset_sums_is_linear_attribution_per_unique_channel(
    rows: list[tuple[list[str], int, int, float]],
) -> None:
    paths = _paths(rows)
    exact = shapley(paths, value_function="subset-sum")
    linear = rule_based(paths, "linear-unique")
    np.testing.assert_allclose(exact.conversions, linear.conversions, atol=1e-9)
    np.testing.assert_allclose(exact.value, linear.value, atol=1e-6)


def test_a_journey_of_six_channels_is_credited_over_all_six() -> None:
    """marketing-attribution-models keeps only a journey's last 4 unique channels."""
    paths = Paths.parse(["a > b > c > d > e > f", "a > b"], [6, 2], nulls=[4, 8])
    for value_function in ("subset-sum", "conversion-rate"):
        a = shapley(paths, value_function=value_function)
        assert np.all(a.conversions > 0), value_function
        assert a.conversions.sum() == pytest.approx(8.0)
    np.testing.assert_allclose(shapley(paths).conversions, [2, 2, 1, 1, 1, 1])


def test_sampled_shapley_states_its_error_and_is_within_it() -> None:
    paths = Paths.parse(
        ["a > b > c > d", "b > e", "a", "c > f > g", "d > e > a"],
        [4, 3, 1, 2, 5],
        nulls=[6, 7, 9, 8, 5],
    )
    exact = shapley(paths, value_function="conversion-rate")
    sampled = shapley(paths, value_function="conversion-rate", exact_up_to=3, samples=4000, seed=1)
    assert exact.details["exact"] and not sampled.details["exact"]
    errors = np.array([sampled.details["standard_errors"][c] for c in paths.channels])
    assert np.all(errors > 0)
    assert np.all(np.abs(sampled.conversions - exact.conversions) <= 5 * errors + 1e-9)


def test_rule_definitions_on_a_hand_checked_journey() -> None:
    paths = Paths.parse(["search > direct > email > direct"], [10], value=[100.0])
    by = {
        m: dict(zip(paths.channels, rule_based(paths, m).conversions, strict=True))
        for m in RULE_MODELS
    }
    assert by["first"] == {"search": 10, "direct": 0, "email": 0}
    assert by["last"] == {"search": 0, "direct": 10, "email": 0}
    assert by["last-non-direct"] == {"search": 0, "direct": 0, "email": 10}
    assert by["linear"] == pytest.approx({"search": 2.5, "direct": 5.0, "email": 2.5})
    assert by["linear-unique"] == pytest.approx(
        {"search": 10 / 3, "direct": 10 / 3, "email": 10 / 3}
    )
    assert by["position"] == pytest.approx({"search": 4.0, "direct": 5.0, "email": 1.0})


def test_bad_paths_name_the_journey_and_the_fix() -> None:
    with pytest.raises(DataValidationError, match=r"conversions of journey 2 is -1.0") as bad:
        Paths.parse(["a", "b"], [1, -1])
    assert bad.value.parameter == "conversions" and bad.value.fix
    with pytest.raises(DataValidationError, match="journey 1 has an empty channel"):
        Paths.parse(["a >  > b"], [1])
    with pytest.raises(DataValidationError, match="not a finite number"):
        Paths.parse(["a"], [float("nan")])
    with pytest.raises(DataValidationError, match="Markov order 5"):
        markov(WORKED, order=5)
    with pytest.raises(DataValidationError, match="unknown rule-based model"):
        rule_based(WORKED, "u-shaped")


# ---------------------------------------------------------------------------- CLI
PATH_TABLE = (
    "path,total_conversions,total_conversion_value,total_null,segment\n"
    "C1 > C2 > C3,1,50,0,loyal\n"
    "C1,0,0,1,loyal\n"
    "C2 > C3,0,0,1,new\n"
    "C2 > C1,2,30,3,new\n"
)


def test_attribute_prints_a_table_per_channel_and_json(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from segvalue.cli.main import cli

    table = tmp_path / "paths.csv"
    table.write_text(PATH_TABLE)
    assert cli(["attribute", str(table)]) == 0
    shown = capsys.readouterr().out
    assert "Attribution: markov (order 1)" in shown and "removal effect" in shown
    assert "conversions 3.00, value 80.00; P(conversion) 0.3750" in shown
    assert cli(["attribute", str(table), "--model", "last", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["model"] == "last" and doc["total_conversions"] == 3.0
    assert {k: v["conversions"] for k, v in doc["channels"].items()} == {
        "C1": 2.0,
        "C2": 0.0,
        "C3": 1.0,
    }
    assert cli(["attribute", str(table), "--model", "shapley", "--by", "segment", "--json"]) == 0
    by = json.loads(capsys.readouterr().out)
    assert by["by"] == "segment" and set(by["segments"]) == {"loyal", "new"}
    assert by["segments"]["new"]["channels"]["C1"]["conversions"] == pytest.approx(1.0)
    assert cli(["attribute", str(table), "--model", "shapley", "--by", "segment"]) == 0
    assert "segment = loyal" in capsys.readouterr().out


def test_attribute_refuses_a_bad_table_naming_line_column_and_fix(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from segvalue.cli.main import cli

    table = tmp_path / "paths.csv"
    table.write_text(PATH_TABLE.replace("C2 > C3,0,0,1", "C2 > C3,many,0,1"))
    assert cli(["attribute", str(table)]) == 2
    said = capsys.readouterr().err
    assert "line 4" in said and "'total_conversions' holds 'many'" in said and "fix:" in said
    assert cli(["attribute", str(table), "--conversions-col", "conv"]) == 2
    assert "no column 'conv'" in capsys.readouterr().err
    table.write_text(PATH_TABLE)
    assert cli(["attribute", str(table), "--model", "u-shaped"]) == 2
    assert "unknown attribution model 'u-shaped'" in capsys.readouterr().err


def test_the_held_out_likelihood_picks_the_order_that_made_the_journeys() -> None:
    """Journeys drawn from a second-order process (whether 'b' leads to conversion
    depends on the channel before it): order 2 scores best, order 1 misses the memory
    and orders 3-4 only add noise."""
    from segvalue.measurement.attribution import markov_order_likelihood

    rng = np.random.default_rng(7)
    journeys: list[list[str]] = []
    converted: list[int] = []
    for _ in range(6000):
        first = rng.choice(["a", "c"])
        path = [str(first), "b"]
        while rng.random() < 0.3:
            path += [str(rng.choice(["a", "c"])), "b"]
        journeys.append(path)
        converted.append(int(rng.random() < (0.6 if path[-2] == "a" else 0.05)))
    paths = Paths.of(journeys, converted, nulls=[1 - c for c in converted])
    scores = markov_order_likelihood(paths, orders=(1, 2, 3, 4), seed=1)
    assert max(scores, key=lambda k: scores[k]) == 2
    assert scores[2] > scores[1] + 0.05


# ---------------------------------------------------------------------------- journeys
def _at(day: float) -> dt.datetime:
    return dt.datetime(2025, 1, 1) + dt.timedelta(days=day)


def test_journeys_keep_the_lookback_merge_sessions_and_end_in_a_null() -> None:
    from segvalue.measurement.attribution import journeys_from_touches

    rows = [  # customer, day, channel, converted
        ("a", 0.0, "display", False),  # 40 days before the conversion: outside 30
        ("a", 35.0, "email", False),
        ("a", 35.01, "email", False),  # 14 minutes later: the same session
        ("a", 38.0, "search", False),
        ("a", 40.0, "onsite", True),
        ("a", 41.0, "social", False),  # after the last conversion: a null journey
        ("b", 3.0, "onsite", True),  # no touch before it: not attributed
    ]
    j = journeys_from_touches(
        [r[0] for r in rows], [_at(r[1]) for r in rows], [r[2] for r in rows], [r[3] for r in rows]
    )
    shown = [[j.channels[c] for c in t] for t in j.touches]
    assert shown == [["email", "search"], ["social"]]
    assert j.converted.tolist() == [1.0, 0.0] and j.untouched == 1
    assert j.ages[0] == pytest.approx((40 - 35.01, 2.0))


@settings(max_examples=40, deadline=None)
@given(
    ages=st.lists(st.floats(0, 60), min_size=1, max_size=6),
    half_life=st.floats(0.5, 30),
)
def test_time_decay_credits_each_conversion_once_more_to_recent_touches(
    ages: list[float], half_life: float
) -> None:
    from segvalue.measurement.attribution import Journeys, time_decay

    n = len(ages)
    journeys = Journeys(
        tuple(f"c{i}" for i in range(n)),
        (tuple(range(n)),),
        (tuple(ages),),
        np.array([3.0]),
        np.array([90.0]),
    )
    a = time_decay(journeys, half_life_days=half_life)
    assert a.conversions.sum() == pytest.approx(3.0) and a.value.sum() == pytest.approx(90.0)
    for i in range(n):
        for k in range(n):
            if ages[i] < ages[k]:
                assert a.conversions[i] >= a.conversions[k]
    # One half-life apart: exactly twice the credit.
    two = Journeys(("x", "y"), ((0, 1),), ((half_life, 0.0),), np.array([1.0]), np.array([0.0]))
    assert time_decay(two, half_life_days=half_life).conversions.tolist() == pytest.approx(
        [1 / 3, 2 / 3]
    )


TOUCHES = (
    "customer_id,ts,channel,event,value\n"
    "a,2025-01-01 10:00:00,email,click,\n"
    "a,2025-01-03 10:00:00,search,click,\n"
    "a,2025-01-03 12:00:00,onsite,conversion,80\n"
    "b,2025-01-02 09:00:00,social,impression,\n"
    "b,2025-01-05 09:00:00,email,open,\n"
)


def test_attribute_reads_touchpoints_into_journeys(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from segvalue.cli.main import cli

    file = tmp_path / "touches.csv"
    file.write_text(TOUCHES)
    args = ["attribute", str(file), "--format", "touchpoints"]
    assert cli([*args, "--model", "time-decay", "--half-life", "2", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["model"] == "time-decay" and doc["total_conversions"] == 1.0
    # email 2 days + 2 hours before, search 2 hours before: weights 2^-(50/48), 2^-(1/24)
    weights = np.exp2(-np.array([50 / 48, 2 / 48]))
    share = weights / weights.sum()
    assert doc["channels"]["email"]["conversions"] == pytest.approx(share[0])
    assert doc["channels"]["search"]["value"] == pytest.approx(80 * share[1])
    assert cli([*args, "--model", "markov"]) == 0
    assert "P(conversion) 0.5000" in capsys.readouterr().out
    assert cli(["attribute", str(file), "--model", "time-decay"]) == 2  # a path table: no times
    assert "time-decay needs each touch's time" in capsys.readouterr().err
    file.write_text(TOUCHES.replace("2025-01-03 10:00:00", "yesterday"))
    assert cli([*args, "--model", "last"]) == 2
    said = capsys.readouterr().err
    assert "line 3" in said and "'ts' holds 'yesterday'" in said


@settings(max_examples=60, deadline=None)
@given(rows=journeys)
def test_paths_add_up_identical_journeys_whatever_their_spacing(
    rows: list[tuple[list[str], int, int, float]],
) -> None:
    """Paths.of groups identical journeys first, then checks and codes each distinct one:
    the same as adding them one by one, a channel's surrounding spaces ignored."""
    from collections import defaultdict

    spaced = [([f" {c}" if i % 2 else c for i, c in enumerate(r[0])], *r[1:]) for r in rows]
    paths = Paths.of(
        [r[0] for r in rows + spaced],
        [r[1] for r in rows + spaced],
        value=[r[3] for r in rows + spaced],
        nulls=[r[2] for r in rows + spaced],
    )
    expected: dict[tuple[str, ...], list[float]] = defaultdict(lambda: [0.0, 0.0, 0.0])
    for journey, conv, null, value in rows + spaced:
        acc = expected[tuple(c.strip() for c in journey)]
        acc[0] += conv
        acc[1] += value
        acc[2] += null
    got = {
        tuple(paths.channels[c] for c in path): [conv, value, null]
        for path, conv, value, null in zip(
            paths.paths, paths.conversions, paths.value, paths.nulls, strict=True
        )
    }
    assert got.keys() == expected.keys()
    for key, sums in expected.items():
        assert got[key] == pytest.approx(sums)
    with pytest.raises(DataValidationError, match="journey 3 has an empty channel"):
        Paths.of([["a"], ["a"], ["a", " "]], [1, 1, 1])


def _reference_journeys(
    customers: list[str],
    times: list[dt.datetime],
    channels: list[str],
    conversions: list[bool],
    values: list[float],
    lookback_days: float,
    session_gap_minutes: float,
) -> tuple[list[list[str]], list[tuple[float, ...]], list[float], list[float], int, list[str]]:
    """journeys_from_touches written as the plain loop its definition describes."""
    order = sorted(range(len(customers)), key=lambda i: (customers[i], times[i]))
    lookback = dt.timedelta(days=lookback_days)
    gap = dt.timedelta(minutes=session_gap_minutes)
    out: tuple[list[Any], ...] = ([], [], [], [], [])
    untouched = 0

    def close(
        touches: list[tuple[str, dt.datetime]], end: dt.datetime, conv: bool, value: float, who: str
    ) -> None:
        nonlocal untouched
        kept = [(c, at) for c, at in touches if not conv or end - at <= lookback]
        if not kept:
            untouched += conv
            return
        for column, item in zip(
            out,
            (
                [c for c, _ in kept],
                tuple((end - at).total_seconds() / 86_400 for _, at in kept),
                1.0 if conv else 0.0,
                value if conv else 0.0,
                who,
            ),
            strict=True,
        ):
            column.append(item)

    current: list[tuple[str, dt.datetime]] = []
    who: str | None = None
    for i in order:
        if customers[i] != who:
            if current and who is not None:
                close(current, current[-1][1], False, 0.0, who)
            current, who = [], customers[i]
        if conversions[i]:
            close(current, times[i], True, values[i], customers[i])
            current = []
            continue
        if current and current[-1][0] == channels[i] and times[i] - current[-1][1] <= gap:
            current[-1] = (channels[i], times[i])
            continue
        current.append((channels[i], times[i]))
    if current and who is not None:
        close(current, current[-1][1], False, 0.0, who)
    return out[0], out[1], out[2], out[3], untouched, out[4]


@settings(max_examples=60, deadline=None)
@given(
    rows=st.lists(
        st.tuples(
            st.sampled_from(["a", "b", "c"]),
            st.integers(0, 60 * 24 * 90),  # minutes
            st.sampled_from(["email", "search", "social"]),
            st.booleans(),
            st.floats(0, 500),
        ),
        max_size=40,
    ),
    lookback=st.sampled_from([1.0, 7.0, 30.0]),
    gap=st.sampled_from([0.0, 30.0, 600.0]),
)
def test_vectorised_journeys_equal_the_plain_loop(
    rows: list[tuple[str, int, str, bool, float]], lookback: float, gap: float
) -> None:
    from segvalue.measurement.attribution import journeys_from_touches

    columns = (
        [r[0] for r in rows],
        [dt.datetime(2025, 1, 1) + dt.timedelta(minutes=r[1]) for r in rows],
        [r[2] for r in rows],
        [r[3] for r in rows],
        [r[4] for r in rows],
    )
    j = journeys_from_touches(*columns, lookback_days=lookback, session_gap_minutes=gap)
    touches, ages, converted, value, untouched, who = _reference_journeys(*columns, lookback, gap)
    assert [[j.channels[c] for c in t] for t in j.touches] == touches
    assert [list(a) for a in j.ages] == [pytest.approx(list(a), abs=1e-9) for a in ages]
    assert j.converted.tolist() == converted and j.value.tolist() == value
    assert j.untouched == untouched and list(j.customers) == who


@settings(max_examples=40, deadline=None)
@given(
    journeys=st.lists(
        st.lists(st.tuples(st.integers(0, 3), st.floats(0, 60)), min_size=1, max_size=6),
        min_size=1,
        max_size=8,
    ),
    half_life=st.floats(0.5, 30),
)
def test_journey_credit_is_each_journeys_own_split(
    journeys: list[list[tuple[int, float]]], half_life: float
) -> None:
    """The vectorised credits equal the per-journey definitions: linear 1/length per
    touch (as rule_based's), time-decay 2^(-age / half-life) normalised."""
    from segvalue.measurement.attribution import Journeys, _rule_credit, journey_credit

    j = Journeys(
        ("a", "b", "c", "d"),
        tuple(tuple(c for c, _ in t) for t in journeys),
        tuple(tuple(a for _, a in t) for t in journeys),
        np.ones(len(journeys)),
        np.ones(len(journeys)),
    )
    linear = journey_credit(j, "linear")
    assert linear == pytest.approx(
        _rule_credit(j.touches, j.channels, "linear", "", (0.4, 0.2, 0.4))
    )
    decay = journey_credit(j, "time-decay", half_life_days=half_life)
    for row, touches in enumerate(journeys):
        weights = [2 ** (-a / half_life) for _, a in touches]
        expected = np.zeros(4)
        for (c, _), w in zip(touches, weights, strict=True):
            expected[c] += w / sum(weights)
        assert decay[row] == pytest.approx(expected)
    assert decay.sum(axis=1) == pytest.approx(np.ones(len(journeys)))
