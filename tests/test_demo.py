"""Tests of the demo data generator: contract, invariants and the planted ground truth.

Statistical checks compare observed quantities with the truth recorded next to the data;
tolerances are 4 standard errors (two-sided p ~ 6e-5 per check), so a wrong generator fails
while a correct one passes for any seed. The seeds are fixed anyway.
"""

from __future__ import annotations

import datetime
import io
import math
import pathlib

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from segvalue.data.demo import DEMO_TABLES, DemoData, generate_demo, write_demo
from segvalue.errors import ConfigError

Z = 4.0  # standard errors allowed in statistical checks

EXPECTED_SCHEMAS: dict[str, list[tuple[str, pa.DataType]]] = {
    "customers": [
        ("customer_id", pa.string()),
        ("signup_date", pa.date32()),
        ("age", pa.int16()),
        ("gender", pa.string()),
        ("income", pa.float64()),
        ("education", pa.string()),
        ("occupation", pa.string()),
        ("marital_status", pa.string()),
        ("household_size", pa.int8()),
        ("country", pa.string()),
        ("region", pa.string()),
        ("city", pa.string()),
        ("postal_code", pa.string()),
        ("climate_zone", pa.string()),
        ("lifestyle", pa.string()),
        ("interests", pa.string()),
        ("values", pa.string()),
        ("benefit_sought", pa.string()),
        ("consent_email", pa.bool_()),
        ("consent_sms", pa.bool_()),
        ("consent_push", pa.bool_()),
        ("consent_ads", pa.bool_()),
        ("email", pa.string()),
    ],
    "orders": [
        ("order_id", pa.string()),
        ("customer_id", pa.string()),
        ("order_ts", pa.timestamp("s")),
        ("amount", pa.float64()),
        ("currency", pa.string()),
        ("margin", pa.float64()),
        ("channel", pa.string()),
        ("discount", pa.float64()),
        ("returned", pa.bool_()),
    ],
    "order_lines": [
        ("order_id", pa.string()),
        ("product_id", pa.string()),
        ("quantity", pa.int32()),
        ("line_amount", pa.float64()),
        ("category", pa.string()),
        ("brand", pa.string()),
    ],
    "touchpoints": [
        ("customer_id", pa.string()),
        ("ts", pa.timestamp("s")),
        ("channel", pa.string()),
        ("campaign_id", pa.string()),
        ("event", pa.string()),
        ("cost", pa.float64()),
    ],
    "channel_spend": [
        ("period", pa.date32()),
        ("channel", pa.string()),
        ("spend", pa.float64()),
        ("campaign_id", pa.string()),
        ("conversions", pa.int64()),
        ("revenue", pa.float64()),
    ],
    "experiments": [
        ("customer_id", pa.string()),
        ("experiment_id", pa.string()),
        ("group", pa.string()),
        ("arm", pa.string()),
        ("assigned_at", pa.timestamp("s")),
        ("converted", pa.bool_()),
        ("revenue", pa.float64()),
    ],
    "contact_log": [
        ("customer_id", pa.string()),
        ("ts", pa.timestamp("s")),
        ("channel", pa.string()),
        ("campaign_id", pa.string()),
    ],
}
EXPECTED_TRUTH_SCHEMAS: dict[str, list[tuple[str, pa.DataType]]] = {
    "customers": [
        ("customer_id", pa.string()),
        ("persona", pa.string()),
        ("persona_id", pa.int8()),
        ("purchase_rate", pa.float64()),
        ("dropout_prob", pa.float64()),
        ("alive_at_as_of", pa.bool_()),
        ("death_ts", pa.timestamp("s")),
        ("mean_spend", pa.float64()),
        ("true_uplift", pa.float64()),
    ],
    "channel_response": [
        ("channel", pa.string()),
        ("form", pa.string()),
        ("beta", pa.float64()),
        ("k", pa.float64()),
        ("slope", pa.float64()),
    ],
}
PERSONA_COLUMNS = {
    "persona_id",
    "persona",
    "share",
    "r",
    "alpha",
    "a",
    "b",
    "spend_p",
    "spend_q",
    "spend_gamma",
    "age_mean",
    "income_mean",
    "favourite_categories",
    "preferred_channels",
    "uplift",
}


@pytest.fixture(scope="module")
def small() -> DemoData:
    return generate_demo(3_000, seed=5)


@pytest.fixture(scope="module")
def large() -> DemoData:
    """Big enough for per-persona statistics (smallest persona ~6,000 customers)."""
    return generate_demo(50_000, seed=2024)


def _end(data: DemoData) -> np.datetime64:
    """00:00 on as_of: every event must be strictly before it."""
    return np.datetime64(data.as_of, "s")


def _seconds(column: pa.ChunkedArray) -> np.ndarray:
    return np.asarray(column.to_numpy().astype("datetime64[s]"), dtype=np.int64)


def _row_of(values: pa.ChunkedArray, keys: pa.ChunkedArray) -> np.ndarray:
    """Position of each value in keys (-1 if absent)."""
    idx = pc.index_in(values, value_set=keys.combine_chunks())
    return np.asarray(pc.fill_null(idx, -1).to_numpy(), dtype=np.int64)


def _ipc_bytes(table: pa.Table) -> bytes:
    sink = io.BytesIO()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return sink.getvalue()


# --------------------------------------------------------------------------- arguments


def test_fewer_than_100_customers_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="demo: `n_customers` must be at least 100") as info:
        generate_demo(99)
    assert info.value.fix
    # The command line words the parameter as its option.
    from segvalue.cli.main import as_options

    assert as_options(str(info.value)).startswith("demo: --customers must be at least 100")


def test_exactly_100_customers_works() -> None:
    assert generate_demo(100, seed=1).tables["customers"].num_rows == 100


@pytest.mark.parametrize(
    "kwargs",
    [
        {"n_customers": 1_000, "seed": -1},
        {"n_customers": 1_000, "history_years": 0.1},
        {"n_customers": 10_000_000},
        {"n_customers": 1_000.0},
    ],
)
def test_invalid_arguments_are_config_errors(kwargs: dict[str, object]) -> None:
    with pytest.raises(ConfigError, match="demo:"):
        generate_demo(**kwargs)  # type: ignore[arg-type]


# --------------------------------------------------------------------------- determinism


def test_same_seed_gives_byte_identical_tables() -> None:
    first, second = generate_demo(2_000, seed=9), generate_demo(2_000, seed=9)
    for name in DEMO_TABLES:
        assert _ipc_bytes(first.tables[name]) == _ipc_bytes(second.tables[name]), name
    for name in first.truth:
        assert _ipc_bytes(first.truth[name]) == _ipc_bytes(second.truth[name]), name


def test_different_seeds_give_different_tables() -> None:
    first, second = generate_demo(2_000, seed=9), generate_demo(2_000, seed=10)
    for name in DEMO_TABLES:
        assert not first.tables[name].equals(second.tables[name]), name


# --------------------------------------------------------------------------- contract


def test_tables_follow_the_contract_schema_exactly(small: DemoData) -> None:
    assert tuple(small.tables) == DEMO_TABLES
    for name, columns in EXPECTED_SCHEMAS.items():
        assert small.tables[name].schema.equals(pa.schema(columns)), name
        assert small.tables[name].num_rows > 0, name


def test_truth_tables_have_the_documented_columns(small: DemoData) -> None:
    assert set(small.truth) == {"customers", "personas", "channel_response"}
    for name, columns in EXPECTED_TRUTH_SCHEMAS.items():
        assert small.truth[name].schema.equals(pa.schema(columns)), name
    personas = small.truth["personas"]
    assert set(personas.column_names) >= PERSONA_COLUMNS
    assert personas.num_rows == 6
    assert personas["persona_id"].to_pylist() == list(range(6))
    assert min(personas["share"].to_pylist()) >= 0.08
    assert math.isclose(sum(personas["share"].to_pylist()), 1.0)
    assert small.truth["customers"]["customer_id"].equals(small.tables["customers"]["customer_id"])


def test_identifiers_are_pseudonymous_and_unique(small: DemoData) -> None:
    customers = small.tables["customers"]
    ids = customers["customer_id"].to_pylist()
    assert ids[:2] == ["C0000001", "C0000002"]
    assert len(set(ids)) == len(ids)
    assert customers["email"].to_pylist() == [f"{i.lower()}@example.invalid" for i in ids]
    order_ids = small.tables["orders"]["order_id"]
    assert pc.count_distinct(order_ids).as_py() == len(order_ids)


def test_customer_attributes_are_realistic(large: DemoData) -> None:
    customers = large.tables["customers"]
    age = customers["age"].to_numpy()
    assert age.min() >= 18 and age.max() <= 85
    income = customers["income"].drop_null().to_numpy()
    assert income.min() >= 12_000 and income.max() <= 250_000
    n = customers.num_rows
    assert 0.01 < customers["income"].null_count / n < 0.06
    assert 0.005 < customers["region"].null_count / n < 0.04
    for name in ("customer_id", "signup_date", "age", "gender", "city", "consent_email"):
        assert customers[name].null_count == 0, name
    assert set(customers["gender"].to_pylist()) == {"female", "male", "other"}
    assert {"temperate", "mediterranean", "continental", "nordic"} <= set(
        customers["climate_zone"].to_pylist()
    )
    assert {"price", "quality", "convenience", "sustainability", "status"} <= set(
        customers["benefit_sought"].to_pylist()
    )


def test_attributes_depend_on_persona_but_do_not_determine_it(large: DemoData) -> None:
    customers = large.tables["customers"]
    persona = large.truth["customers"]["persona_id"].to_numpy()
    truth = large.truth["personas"]
    age = customers["age"].to_numpy()
    for k, age_mean in enumerate(truth["age_mean"].to_pylist()):
        assert abs(age[persona == k].mean() - age_mean) < 1.0
    benefit = np.asarray(customers["benefit_sought"].to_pylist())
    for k in range(6):
        _, counts = np.unique(benefit[persona == k], return_counts=True)
        top_share = counts.max() / counts.sum()
        assert 0.3 < top_share < 0.9, "persona should shape, not fix, benefit_sought"


# --------------------------------------------------------------------------- orders


def test_every_order_and_line_refers_to_an_existing_parent(large: DemoData) -> None:
    orders = large.tables["orders"]
    assert (_row_of(orders["customer_id"], large.tables["customers"]["customer_id"]) >= 0).all()
    lines = large.tables["order_lines"]
    purchases = orders.filter(pc.invert(orders["returned"]))
    assert (_row_of(lines["order_id"], purchases["order_id"]) >= 0).all()
    # every purchase has at least one line, return rows have none
    assert pc.count_distinct(lines["order_id"]).as_py() == purchases.num_rows


def test_orders_are_sorted_by_customer_and_time(large: DemoData) -> None:
    orders = large.tables["orders"]
    indices = pc.sort_indices(
        orders, sort_keys=[("customer_id", "ascending"), ("order_ts", "ascending")]
    )
    customer = orders["customer_id"].to_numpy(zero_copy_only=False)
    ts = _seconds(orders["order_ts"])
    assert (customer[indices.to_numpy()] == customer).all()
    assert (ts[indices.to_numpy()] == ts).all()


def test_order_lines_sum_to_the_order_amount_to_the_cent(large: DemoData) -> None:
    lines = large.tables["order_lines"]
    sums = lines.group_by("order_id").aggregate([("line_amount", "sum")])
    joined = large.tables["orders"].join(sums, "order_id", join_type="inner")
    amount = np.rint(joined["amount"].to_numpy() * 100)
    line_sum = np.rint(joined["line_amount_sum"].to_numpy() * 100)
    assert joined.num_rows > 0
    np.testing.assert_array_equal(amount, line_sum)
    assert pc.min(lines["line_amount"]).as_py() >= 0.01
    assert pc.min(lines["quantity"]).as_py() >= 1
    assert 8 <= pc.count_distinct(lines["category"]).as_py() <= 12


def test_amounts_discounts_and_margins_are_plausible(large: DemoData) -> None:
    orders = large.tables["orders"]
    purchase = pc.invert(orders["returned"]).to_numpy(zero_copy_only=False)
    amount = orders["amount"].to_numpy()
    assert (amount[purchase] >= 1.0).all() and (amount[~purchase] < 0).all()
    assert np.allclose(amount * 100, np.rint(amount * 100), rtol=0, atol=1e-6), "whole cents"
    assert set(orders["currency"].to_pylist()) == {"EUR"}
    assert set(orders["channel"].to_pylist()) == {"web", "app", "store"}
    discount = orders["discount"].to_numpy()
    assert (discount >= 0).all() and (discount[~purchase] == 0).all()
    margin = orders["margin"].to_numpy()
    assert (margin[purchase] <= amount[purchase]).all()
    assert 0.1 < margin[purchase].sum() / amount[purchase].sum() < 0.45
    assert 20 < amount[purchase].mean() < 150


def test_returns_are_negative_after_their_purchase_and_before_as_of(large: DemoData) -> None:
    orders = large.tables["orders"]
    returned = orders.filter(orders["returned"])
    purchases = orders.filter(pc.invert(orders["returned"]))
    assert returned.num_rows > 0
    ids = returned["order_id"].to_pylist()
    assert all(i.startswith("R") for i in ids)
    assert all(i.startswith("O") for i in purchases["order_id"].to_pylist())
    original = _row_of(pa.chunked_array([["O" + i[1:] for i in ids]]), purchases["order_id"])
    assert (original >= 0).all()
    ret_amount = returned["amount"].to_numpy()
    orig_amount = purchases["amount"].to_numpy()[original]
    assert (ret_amount < 0).all()
    assert (-ret_amount <= orig_amount + 1e-9).all()
    assert (
        returned["customer_id"].to_numpy(zero_copy_only=False)
        == purchases["customer_id"].to_numpy(zero_copy_only=False)[original]
    ).all()
    delay = _seconds(returned["order_ts"]) - _seconds(purchases["order_ts"])[original]
    assert (delay >= 86_400).all() and (delay <= 30 * 86_400).all()
    assert (returned["order_ts"].to_numpy() < _end(large)).all()
    rate = returned.num_rows / purchases.num_rows
    assert 0.03 <= rate <= 0.08
    # a return gives back its share of the original margin (a loss if that was a loss)
    ret_margin = returned["margin"].to_numpy()
    orig_margin = purchases["margin"].to_numpy()[original]
    share = -ret_amount / orig_amount
    np.testing.assert_allclose(ret_margin, -orig_margin * share, rtol=0, atol=0.0051)


def test_return_rates_are_persona_dependent(large: DemoData) -> None:
    orders = large.tables["orders"]
    persona_of_row = large.truth["customers"]["persona_id"].to_numpy()[
        _row_of(orders["customer_id"], large.tables["customers"]["customer_id"])
    ]
    returned = orders["returned"].to_numpy(zero_copy_only=False)
    for k, rate in enumerate(large.truth["personas"]["return_rate"].to_pylist()):
        n_purchases = (~returned & (persona_of_row == k)).sum()
        observed = (returned & (persona_of_row == k)).sum() / n_purchases
        se = math.sqrt(rate * (1 - rate) / n_purchases)
        # returns due after as_of are not generated yet: a small downward truncation
        assert rate - Z * se - 0.005 < observed < rate + Z * se, k


def test_no_event_is_dated_on_or_after_as_of(large: DemoData) -> None:
    end = _end(large)
    checked = 0
    for name, table in [*large.tables.items(), *large.truth.items()]:
        for field in table.schema:
            if pa.types.is_timestamp(field.type):
                values = table[field.name].drop_null().to_numpy().astype("datetime64[s]")
                assert (values < end).all(), f"{name}.{field.name}"
                checked += 1
            elif pa.types.is_date(field.type):
                days = table[field.name].to_numpy().astype("datetime64[D]")
                assert (days < np.datetime64(large.as_of, "D")).all(), f"{name}.{field.name}"
                checked += 1
    assert checked == 7  # six tables with a time column, plus truth death_ts
    first = large.as_of - datetime.timedelta(days=round(3 * 365.25) + 1)
    orders_ts = large.tables["orders"]["order_ts"].to_numpy()
    assert (orders_ts >= np.datetime64(first, "s")).all()


# --------------------------------------------------------------------------- marketing


def test_contacts_and_owned_touches_respect_consent(large: DemoData) -> None:
    customers = large.tables["customers"]
    consent = {
        "email": customers["consent_email"].to_numpy(zero_copy_only=False),
        "sms": customers["consent_sms"].to_numpy(zero_copy_only=False),
        "app_push": customers["consent_push"].to_numpy(zero_copy_only=False),
        "paid_social": customers["consent_ads"].to_numpy(zero_copy_only=False),
    }
    contacts = large.tables["contact_log"]
    assert set(contacts["channel"].to_pylist()) == {"email", "app_push", "sms"}
    touches = large.tables["touchpoints"]
    for table, channels in [
        (contacts, ("email", "sms", "app_push")),
        (touches, ("email", "app_push", "paid_social")),
    ]:
        row = _row_of(table["customer_id"], customers["customer_id"])
        assert (row >= 0).all()
        channel = table["channel"].to_numpy(zero_copy_only=False)
        for name in channels:
            sent = channel == name
            assert sent.any(), name
            assert consent[name][row[sent]].all(), f"{name} without consent"


def test_touchpoints_are_realistic(large: DemoData) -> None:
    touches = large.tables["touchpoints"]
    per_customer = touches.num_rows / large.n_customers
    assert 3.0 <= per_customer <= 6.0
    assert set(touches["channel"].to_pylist()) == {
        "email",
        "paid_social",
        "search_ads",
        "app_push",
        "onsite",
    }
    assert set(touches["event"].to_pylist()) == {
        "impression",
        "click",
        "open",
        "visit",
        "conversion",
    }
    cost = touches["cost"].to_numpy()
    channel = touches["channel"].to_numpy(zero_copy_only=False)
    assert (cost >= 0).all()
    assert cost[channel == "email"].max() < 0.01
    assert cost[channel == "search_ads"].mean() > 10 * cost[channel == "email"].mean()
    campaign = touches["campaign_id"].to_numpy(zero_copy_only=False)
    ts = touches["ts"].to_numpy().astype("datetime64[M]").astype(str)
    assert all(c[3:] == m for c, m in zip(campaign[:1000], ts[:1000], strict=True))


def test_touch_channel_mix_follows_personas(large: DemoData) -> None:
    touches = large.tables["touchpoints"]
    persona = large.truth["customers"]["persona_id"].to_numpy()[
        _row_of(touches["customer_id"], large.tables["customers"]["customer_id"])
    ]
    channel = touches["channel"].to_numpy(zero_copy_only=False)
    preferred = large.truth["personas"]["preferred_channels"].to_pylist()
    for k, channels in enumerate(preferred):
        top = channels.split("|")[0]
        mine = channel[persona == k]
        others = channel[persona != k]
        assert (mine == top).mean() > 1.5 * (others == top).mean(), k


def test_channel_spend_follows_the_true_response_curve(large: DemoData) -> None:
    spend_table = large.tables["channel_spend"]
    curves = large.truth["channel_response"].to_pylist()
    assert sorted(c["channel"] for c in curves) == sorted(set(spend_table["channel"].to_pylist()))
    period = spend_table["period"].to_numpy().astype("datetime64[D]")
    assert (period.astype(np.int64) % 7 == 4).all(), "weeks start on Monday"
    for curve in curves:
        rows = spend_table.filter(pc.equal(spend_table["channel"], curve["channel"]))
        weeks = rows["period"].to_numpy().astype("datetime64[D]").astype(np.int64)
        assert (np.diff(weeks) == 7).all()
        assert rows.num_rows >= 150
        spend = rows["spend"].to_numpy()
        revenue = rows["revenue"].to_numpy()
        assert spend.max() / spend.min() > 5, "too little variation to fit a curve"
        beta, k, slope = curve["beta"], curve["k"], curve["slope"]
        expected = beta * spend**slope / (k**slope + spend**slope)
        log_ratio = np.log(revenue / expected)
        # 8 % log-normal noise around the true curve
        assert abs(log_ratio.mean()) < Z * 0.08 / math.sqrt(len(log_ratio))
        assert 0.06 < log_ratio.std() < 0.10
        # and the curve saturates: revenue per EUR falls with spend
        low, high = spend < np.quantile(spend, 0.2), spend > np.quantile(spend, 0.8)
        assert (revenue[low] / spend[low]).mean() > (revenue[high] / spend[high]).mean()


# --------------------------------------------------------------------------- ground truth


def test_persona_shares_match_truth(large: DemoData) -> None:
    persona = large.truth["customers"]["persona_id"].to_numpy()
    n = persona.shape[0]
    for k, share in enumerate(large.truth["personas"]["share"].to_pylist()):
        observed = (persona == k).mean()
        assert abs(observed - share) < Z * math.sqrt(share * (1 - share) / n), k


def test_customer_parameters_are_drawn_from_the_persona_distributions(large: DemoData) -> None:
    truth = large.truth["customers"]
    persona = truth["persona_id"].to_numpy()
    personas = large.truth["personas"].to_pylist()
    rate = truth["purchase_rate"].to_numpy()
    dropout = truth["dropout_prob"].to_numpy()
    spend = truth["mean_spend"].to_numpy()
    for k, p in enumerate(personas):
        mine = persona == k
        n = mine.sum()
        # Gamma(r, alpha): mean r / alpha, sd sqrt(r) / alpha
        assert abs(rate[mine].mean() - p["r"] / p["alpha"]) < Z * math.sqrt(p["r"]) / p[
            "alpha"
        ] / math.sqrt(n)
        beta_mean = p["a"] / (p["a"] + p["b"])
        beta_sd = math.sqrt(beta_mean * (1 - beta_mean) / (p["a"] + p["b"] + 1))
        assert abs(dropout[mine].mean() - beta_mean) < Z * beta_sd / math.sqrt(n)
        # gamma-gamma: E[p / nu] = p gamma / (q - 1)
        spend_mean = p["spend_p"] * p["spend_gamma"] / (p["spend_q"] - 1)
        assert abs(spend[mine].mean() - spend_mean) < Z * spend[mine].std() / math.sqrt(n)


def _purchase_summary(data: DemoData) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per customer: repeat purchases x, time from first purchase to as_of in weeks T, and
    the time of the last purchase (epoch seconds)."""
    orders = data.tables["orders"]
    purchases = orders.filter(pc.invert(orders["returned"]))
    row = _row_of(purchases["customer_id"], data.tables["customers"]["customer_id"])
    n = data.n_customers
    ts = _seconds(purchases["order_ts"])
    count = np.bincount(row, minlength=n)
    first = np.full(n, np.iinfo(np.int64).max)
    np.minimum.at(first, row, ts)
    last = np.zeros(n, dtype=np.int64)
    np.maximum.at(last, row, ts)
    end = _end(data).astype(np.int64)
    return count - 1, (end - first) / (7 * 86_400), last


def test_repeat_purchases_match_the_bgnbd_expectation(large: DemoData) -> None:
    """E[X(T) | lambda, p] = (1 - exp(-lambda p T)) / p (Fader, Hardie & Lee 2005, eq. 7,
    individual level) must match the observed repeat purchases per persona."""
    truth = large.truth["customers"]
    persona = truth["persona_id"].to_numpy()
    rate = truth["purchase_rate"].to_numpy()
    p = truth["dropout_prob"].to_numpy()
    x, tenure, _ = _purchase_summary(large)
    expected = -np.expm1(-rate * p * tenure) / p
    for k in range(6):
        diff = (x - expected)[persona == k]
        assert abs(diff.mean()) < Z * diff.std() / math.sqrt(diff.shape[0]), k
    # The personas differ: observed repeat rates follow the truth's ordering of expectations.
    observed = [x[persona == k].sum() / tenure[persona == k].sum() for k in range(6)]
    implied = [expected[persona == k].sum() / tenure[persona == k].sum() for k in range(6)]
    assert np.argsort(observed).tolist() == np.argsort(implied).tolist()


def test_repeat_purchase_times_of_active_customers_are_uniform(large: DemoData) -> None:
    """A customer still active at as_of has made all arrivals of a Poisson process on
    (0, T]: given their number, the times are i.i.d. uniform, mean T/2, sd T/sqrt(12)."""
    orders = large.tables["orders"]
    purchases = orders.filter(pc.invert(orders["returned"]))
    row = _row_of(purchases["customer_id"], large.tables["customers"]["customer_id"])
    ts = _seconds(purchases["order_ts"])
    first = np.full(large.n_customers, np.iinfo(np.int64).max)
    np.minimum.at(first, row, ts)
    alive = large.truth["customers"]["alive_at_as_of"].to_numpy(zero_copy_only=False)
    end = _end(large).astype(np.int64)
    repeat = alive[row] & (ts > first[row])
    position = (ts - first[row])[repeat] / (end - first[row])[repeat]
    assert position.shape[0] > 10_000
    assert abs(position.mean() - 0.5) < Z / math.sqrt(12 * position.shape[0])
    assert abs(np.quantile(position, 0.25) - 0.25) < 0.01


def test_death_time_is_the_last_purchase_of_churned_customers(large: DemoData) -> None:
    truth = large.truth["customers"]
    alive = truth["alive_at_as_of"].to_numpy(zero_copy_only=False)
    death = truth["death_ts"]
    assert death.null_count == alive.sum()
    assert 0.2 < (~alive).mean() < 0.8
    x, _, last = _purchase_summary(large)
    death_s = _seconds(death.fill_null(0))
    np.testing.assert_array_equal(death_s[~alive], last[~alive])
    assert (x[~alive] >= 1).all(), "dropout happens only after a repeat purchase"


def test_experiment_groups_and_timing(large: DemoData) -> None:
    exp = large.tables["experiments"]
    assert set(exp["experiment_id"].to_pylist()) == {"EXP-2025-RETENTION"}
    group = exp["group"].to_numpy(zero_copy_only=False)
    n = group.shape[0]
    for name, share in [("treatment", 0.8), ("control", 0.1), ("holdout", 0.1)]:
        assert abs((group == name).mean() - share) < Z * math.sqrt(share * (1 - share) / n)
    end = _end(large)
    assigned = exp["assigned_at"].to_numpy().astype("datetime64[s]")
    assert (assigned >= end - np.timedelta64(8 * 7, "D")).all()
    assert (assigned < end - np.timedelta64(4 * 7, "D")).all(), "4-week outcome by as_of"
    signup = large.tables["customers"]["signup_date"].to_numpy().astype("datetime64[s]")
    row = _row_of(exp["customer_id"], large.tables["customers"]["customer_id"])
    assert (signup[row] <= assigned).all()
    revenue = exp["revenue"].to_numpy()
    converted = exp["converted"].to_numpy(zero_copy_only=False)
    assert (revenue[converted] > 0).all() and (revenue[~converted] == 0).all()


def test_observed_uplift_matches_true_uplift_per_persona(large: DemoData) -> None:
    """Randomised assignment: treatment-minus-untreated conversion estimates the mean true
    uplift in each persona; tolerance Z binomial standard errors of the difference."""
    exp = large.tables["experiments"]
    truth = large.truth["customers"]
    row = _row_of(exp["customer_id"], truth["customer_id"])
    persona = truth["persona_id"].to_numpy()[row]
    true_uplift = truth["true_uplift"].to_numpy()[row]
    treated = exp["group"].to_numpy(zero_copy_only=False) == "treatment"
    converted = exp["converted"].to_numpy(zero_copy_only=False)
    estimates = {}
    for k in range(6):
        t, c = (persona == k) & treated, (persona == k) & ~treated
        p1, p0 = converted[t].mean(), converted[c].mean()
        se = math.sqrt(p1 * (1 - p1) / t.sum() + p0 * (1 - p0) / c.sum())
        assert abs((p1 - p0) - true_uplift[persona == k].mean()) < Z * se, k
        estimates[k] = (p1 - p0, se)
    uplift = large.truth["personas"]["uplift"].to_numpy()
    best, worst = int(np.argmax(uplift)), int(np.argmin(uplift))
    assert uplift[worst] < 0 < uplift[best]
    assert estimates[best][0] > Z * estimates[best][1], "strong effect must be detectable"


# --------------------------------------------------------------------------- personas


def _kmeans(x: np.ndarray, k: int, seed: int, n_init: int = 4) -> np.ndarray:
    """Plain Lloyd's k-means with k-means++ starts; labels of the lowest-inertia run."""
    rng = np.random.default_rng(seed)
    best_labels, best_inertia = np.zeros(x.shape[0], dtype=np.int64), np.inf
    for _ in range(n_init):
        centres = x[[rng.integers(x.shape[0])]]
        for _ in range(k - 1):
            d2 = ((x[:, None, :] - centres[None]) ** 2).sum(-1).min(1)
            centres = np.vstack([centres, x[rng.choice(x.shape[0], p=d2 / d2.sum())]])
        for _ in range(100):
            d2 = ((x[:, None, :] - centres[None]) ** 2).sum(-1)
            labels = d2.argmin(1)
            new = np.array([x[labels == j].mean(0) for j in range(k)])
            if np.allclose(new, centres):
                break
            centres = new
        inertia = d2[np.arange(x.shape[0]), labels].sum()
        if inertia < best_inertia:
            best_labels, best_inertia = labels, inertia
    return best_labels


def _adjusted_rand_index(a: np.ndarray, b: np.ndarray) -> float:
    """Hubert & Arabie (1985) adjusted Rand index."""
    table = np.zeros((a.max() + 1, b.max() + 1))
    np.add.at(table, (a, b), 1)

    def pairs(v: np.ndarray) -> float:
        return float((v * (v - 1) / 2).sum())

    index, rows, cols = pairs(table), pairs(table.sum(1)), pairs(table.sum(0))
    expected = rows * cols / pairs(np.array([a.shape[0]]))
    return (index - expected) / ((rows + cols) / 2 - expected)


def test_adjusted_rand_index_reference_values() -> None:
    a = np.array([0, 0, 1, 1, 2, 2])
    assert _adjusted_rand_index(a, np.array([1, 1, 0, 0, 2, 2])) == pytest.approx(1.0)
    # sklearn.metrics.adjusted_rand_score([0, 0, 1, 1], [0, 0, 1, 2]) = 0.5714285714
    assert _adjusted_rand_index(np.array([0, 0, 1, 1]), np.array([0, 0, 1, 2])) == pytest.approx(
        0.5714285714
    )


def test_kmeans_recovers_the_personas(large: DemoData) -> None:
    """Standardised (age, log income, purchase frequency, log order value, category shares,
    channel shares, discount share) separate the personas: ARI >= 0.8 on 20,000 customers."""
    n = 20_000
    customers = large.tables["customers"].slice(0, n)
    keys = customers["customer_id"]
    orders = large.tables["orders"]
    purchases = orders.filter(pc.invert(orders["returned"]))
    row = _row_of(purchases["customer_id"], keys)
    keep = row >= 0
    row = row[keep]
    amount = purchases["amount"].to_numpy()[keep]
    discount = purchases["discount"].to_numpy()[keep]
    x, tenure, _ = _purchase_summary(large)
    frequency = x[:n] / np.maximum(tenure[:n], 1.0)
    order_value = np.bincount(row, amount, minlength=n) / (x[:n] + 1)
    discount_share = np.bincount(row, discount, minlength=n) / np.bincount(
        row, amount + discount, minlength=n
    )

    lines = large.tables["order_lines"]
    line_customer = row[_row_of(lines["order_id"], purchases["order_id"].filter(keep))]
    in_sample = line_customer >= 0
    categories = lines["category"].to_numpy(zero_copy_only=False)[in_sample]
    category_names, category_code = np.unique(categories, return_inverse=True)
    category_share = np.zeros((n, category_names.shape[0]))
    np.add.at(
        category_share,
        (line_customer[in_sample], category_code),
        lines["line_amount"].to_numpy()[in_sample],
    )
    category_share /= category_share.sum(1, keepdims=True)

    touches = large.tables["touchpoints"]
    touch_row = _row_of(touches["customer_id"], keys)
    channel_names, channel_code = np.unique(
        touches["channel"].to_numpy(zero_copy_only=False)[touch_row >= 0], return_inverse=True
    )
    channel_share = np.zeros((n, channel_names.shape[0]))
    np.add.at(channel_share, (touch_row[touch_row >= 0], channel_code), 1.0)
    channel_share /= np.maximum(channel_share.sum(1, keepdims=True), 1.0)

    income = customers["income"].to_numpy(zero_copy_only=False).astype(float)
    income[np.isnan(income)] = np.nanmedian(income)
    features = np.column_stack(
        [
            customers["age"].to_numpy().astype(float),
            np.log(income),
            np.log1p(frequency),
            np.log(order_value),
            category_share,
            channel_share,
            discount_share,
        ]
    )
    features = (features - features.mean(0)) / features.std(0)
    labels = _kmeans(features, 6, seed=0)
    persona = large.truth["customers"]["persona_id"].to_numpy()[:n].astype(np.int64)
    assert _adjusted_rand_index(persona, labels) >= 0.8


# --------------------------------------------------------------------------- writing


@pytest.mark.parametrize("file_format", ["parquet", "csv"])
def test_write_demo_round_trips(small: DemoData, tmp_path: pathlib.Path, file_format: str) -> None:
    paths = write_demo(small, tmp_path / "out", file_format=file_format)  # type: ignore[arg-type]
    assert set(paths) == set(DEMO_TABLES)
    written = {**{n: (t, paths[n]) for n, t in small.tables.items()}}
    for name, table in small.truth.items():
        path = tmp_path / "out" / "truth" / f"{name}.{file_format}"
        written[f"truth/{name}"] = (table, path)
    for name, (table, path) in written.items():
        assert path.name == f"{name.split('/')[-1]}.{file_format}"
        if file_format == "parquet":
            # Parquet has no second unit: timestamp[s] comes back as [ms], same values.
            back = pq.read_table(path).cast(table.schema)
        else:
            back = pa_csv.read_csv(
                path,
                convert_options=pa_csv.ConvertOptions(
                    column_types=table.schema, strings_can_be_null=True
                ),
            )
        assert back.equals(table), name
    leftovers = [p.name for p in (tmp_path / "out").rglob("*") if p.name.endswith(".tmp")]
    assert leftovers == []


def test_write_demo_replaces_existing_files(small: DemoData, tmp_path: pathlib.Path) -> None:
    (tmp_path / "orders.parquet").write_text("stale")
    paths = write_demo(small, tmp_path)
    assert pq.read_table(paths["orders"]).num_rows == small.tables["orders"].num_rows


def test_write_demo_rejects_unknown_format(small: DemoData, tmp_path: pathlib.Path) -> None:
    with pytest.raises(ConfigError, match="unknown file format 'xlsx'"):
        write_demo(small, tmp_path, file_format="xlsx")  # type: ignore[arg-type]
    assert list(tmp_path.iterdir()) == []


# --------------------------------------------------------------------------- properties


@settings(max_examples=8, deadline=None)
@given(n=st.integers(min_value=100, max_value=600), seed=st.integers(0, 2**32 - 1))
def test_invariants_hold_for_any_seed_and_size(n: int, seed: int) -> None:
    data = generate_demo(n, seed=seed, history_years=1.0)
    orders = data.tables["orders"]
    assert data.tables["customers"].num_rows == n
    assert (orders["order_ts"].to_numpy() < _end(data)).all()
    assert (_row_of(orders["customer_id"], data.tables["customers"]["customer_id"]) >= 0).all()
    sums = data.tables["order_lines"].group_by("order_id").aggregate([("line_amount", "sum")])
    joined = orders.join(sums, "order_id", join_type="inner")
    np.testing.assert_array_equal(
        np.rint(joined["amount"].to_numpy() * 100),
        np.rint(joined["line_amount_sum"].to_numpy() * 100),
    )
    customers_with_orders = pc.count_distinct(orders["customer_id"]).as_py()
    assert customers_with_orders == n, "every customer made the acquisition purchase"
