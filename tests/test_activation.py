"""Campaign planning: frequency caps, quiet hours, suppression reasons, control groups
and holdouts (docs/activation.md). Property tests with seeded data."""

from __future__ import annotations

import datetime as dt
import zoneinfo
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from segvalue.activation.caps import Cap, CapLedger, local_period
from segvalue.activation.controls import campaign_holdout, control_buckets, in_global_control
from segvalue.activation.plans import Customers, plan_campaigns
from segvalue.config import parse_config
from segvalue.errors import ConfigError

ZONES = ["UTC", "Europe/Berlin", "America/New_York", "Asia/Tokyo", None, "Not/AZone"]
CHANNELS = ["email", "sms", "app_push"]


def _config(campaigns: list[dict[str, Any]], **activation: Any) -> Any:
    return parse_config(
        {"sources": {"orders": {"path": "o.csv"}}, "campaigns": campaigns, "activation": activation}
    )


def _people(n: int, seed: int = 0, segments: tuple[str, ...] = ("a", "b")) -> Customers:
    rng = np.random.default_rng(seed)
    ids = [f"c{i:04d}" for i in range(n)]
    return Customers(
        ids,
        [segments[i % len(segments)] for i in range(n)],
        rng.gamma(2.0, 50.0, n),
        zone={c: ZONES[i % len(ZONES)] for i, c in enumerate(ids)},
    )


# ---------------------------------------------------------------------------- caps
@settings(max_examples=40, deadline=None)
@given(
    seed=st.integers(0, 10_000),
    caps=st.lists(
        st.tuples(
            st.sampled_from(["*", *CHANNELS]),
            st.sampled_from(["day", "week", "month"]),
            st.integers(0, 3),
        ),
        min_size=1,
        max_size=3,
    ),
    steps=st.lists(
        st.tuples(st.sampled_from(CHANNELS), st.integers(0, 20), st.integers(0, 23)),
        min_size=1,
        max_size=5,
    ),
)
def test_caps_are_never_exceeded(
    seed: int, caps: list[tuple[str, str, int]], steps: list[tuple[str, int, int]]
) -> None:
    """For random contact logs and plans, no customer gets a planned send in a period
    (their own time zone's) whose cap the log plus the plan would exceed."""
    rng = np.random.default_rng(seed)
    people = _people(30, seed)
    start = dt.datetime(2026, 1, 1)
    log_customers = [people.ids[i] for i in rng.integers(0, 30, 60)]
    log_channels = [CHANNELS[i] for i in rng.integers(0, 3, 60)]
    log_times = [start + dt.timedelta(hours=int(h)) for h in rng.integers(0, 24 * 30, 60)]
    campaigns = [
        {
            "name": f"k{j}",
            "segments": ["a", "b"],
            "objective": "grow",
            "holdout": 0,
            "start": "2026-01-02",
            "priority": j,
            "steps": [
                {"channel": ch, "delay_days": d, "send_time": f"{h:02d}:00"} for ch, d, h in steps
            ],
        }
        for j in range(2)
    ]
    cfg = _config(campaigns, caps=[{"channel": c, "per": p, "max": m} for c, p, m in caps])
    plan = plan_campaigns(
        people,
        cfg.campaigns,
        cfg.activation,
        default_zone="UTC",
        history=(log_customers, log_channels, log_times),
    )
    sends = plan.audiences.to_pylist()
    ledger = CapLedger([Cap(*c) for c in caps], default_zone="UTC", zones=people.zone)
    for k, cap in enumerate(ledger.caps):
        counts: Counter[tuple[str, int]] = Counter()
        for c, ch, at in zip(log_customers, log_channels, log_times, strict=True):
            if cap.applies(ch):
                counts[(c, local_period(at, ledger.zone(c), cap.per))] += 1
        planned: Counter[tuple[str, int]] = Counter()
        for s in sends:
            if cap.applies(s["channel"]):
                key = (
                    s["customer_id"],
                    local_period(s["send_at_utc"], ledger.zone(s["customer_id"]), cap.per),
                )
                planned[key] += 1
        for key, extra in planned.items():
            assert counts[key] + extra <= max(cap.max, counts[key]), (cap, key)
            assert counts[key] + extra <= cap.max, (k, cap, key, counts[key], extra)
    capped = plan.left_out.to_pylist()
    assert all(r["reason"].startswith("capped: ") for r in capped if "capped" in r["reason"])


def test_periods_are_the_customers_calendar() -> None:
    """Sunday 23:30 UTC is Monday in Berlin: another week there, the same in New York."""
    late = dt.datetime(2026, 1, 4, 23, 30)
    utc, berlin, york = (zoneinfo.ZoneInfo(z) for z in ("UTC", "Europe/Berlin", "America/New_York"))
    assert local_period(late, berlin, "week") == local_period(late, utc, "week") + 1
    assert local_period(late, york, "day") == local_period(late, utc, "day")
    assert local_period(dt.datetime(2026, 1, 31, 23, 30), berlin, "month") == 2026 * 12 + 1


def test_quiet_hours_move_sends_out_of_the_window() -> None:
    cfg = _config(
        [
            {
                "name": "k",
                "segments": ["a", "b"],
                "objective": "grow",
                "holdout": 0,
                "start": "2026-03-28",
                "steps": [
                    {"channel": "sms", "send_time": "22:30"},
                    {"channel": "email", "send_time": "22:30"},
                ],
            }
        ],
        quiet_hours={"sms": {"start": "21:00", "end": "08:00"}},
    )
    plan = plan_campaigns(_people(40), cfg.campaigns, cfg.activation, default_zone="UTC")
    rows = plan.audiences.to_pylist()
    sms = [r for r in rows if r["channel"] == "sms"]
    assert sms and all(r["send_at_local"] == dt.datetime(2026, 3, 29, 8) for r in sms)
    assert all(r["send_at_local"].hour == 22 for r in rows if r["channel"] == "email")
    # the local time is the customer's: 08:00 in Berlin on the day clocks go forward is 06:00 UTC
    berlin = [r for r in sms if r["time_zone"] == "Europe/Berlin"]
    assert berlin and berlin[0]["send_at_utc"] == dt.datetime(2026, 3, 29, 6)
    steps = plan.steps.to_pylist()
    assert steps[0]["moved_by_quiet_hours"] == len(sms) and steps[1]["moved_by_quiet_hours"] == 0


def test_a_quiet_window_longer_than_20_hours_is_refused() -> None:
    with pytest.raises(ConfigError, match="at most 20 hours"):
        _config([], quiet_hours={"email": {"start": "08:00", "end": "07:00"}})


# ---------------------------------------------------------------------------- suppression
def test_each_suppression_reason() -> None:
    people = _people(12, segments=("a",))
    people.unsubscribed = np.array([i == 0 for i in range(12)])
    people.consent["email"] = np.array([i != 1 for i in range(12)])
    people.last_bought = {"garden": {people.ids[2]: dt.datetime(2026, 1, 1)}}
    people.purchases = {people.ids[3]: [dt.datetime(2026, 1, 6, 12)]}
    campaigns = [
        {
            "name": "first",
            "segments": ["a"],
            "objective": "retain",
            "priority": 1,
            "holdout": 0,
            "start": "2026-01-05",
            "end": "2026-01-06",
            "steps": [{"channel": "app_push"}],
        },
        {
            "name": "second",
            "segments": ["a"],
            "objective": "grow",
            "priority": 2,
            "holdout": 0,
            "start": "2026-01-05",
            "suppress_bought": ["garden"],
            "budget": 3.0,
            "cost_per_contact": 1.0,
            "steps": [
                {"channel": "email"},
                {"channel": "email", "delay_days": 2, "condition": "not_purchased_since_start"},
            ],
        },
    ]
    cfg = _config(campaigns)
    plan = plan_campaigns(
        people,
        [cfg.campaigns[1]],
        cfg.activation,
        default_zone="UTC",
        data_end=dt.datetime(2026, 1, 10),
    )
    reasons = {(r["customer_id"], r["step"]): r["reason"] for r in plan.left_out.to_pylist()}
    assert reasons[(people.ids[0], None)] == "unsubscribed"
    assert reasons[(people.ids[2], None)] == "bought_category"
    assert reasons[(people.ids[1], 1)] == "no_consent"
    assert reasons[(people.ids[3], 2)] == "purchased"
    sent = plan.audiences.to_pylist()
    assert len(sent) == 3  # the budget: 3 contacts at 1.0 each
    assert Counter(r for r in reasons.values())["over_budget"] > 0
    # a campaign of higher priority on overlapping dates claims its customers
    both = plan_campaigns(
        _people(12, segments=("a",)), cfg.campaigns, cfg.activation, default_zone="UTC"
    )
    claimed = [r for r in both.left_out.to_pylist() if r["reason"] == "claimed"]
    assert {r["campaign"] for r in claimed} == {"second"} and len(claimed) == 12
    # after the end date
    late = _config([{**campaigns[0], "steps": [{"channel": "sms", "delay_days": 3}]}])
    out = plan_campaigns(_people(5), late.campaigns, late.activation, default_zone="UTC")
    assert {r["reason"] for r in out.left_out.to_pylist()} == {"after_end"}


def test_global_control_is_never_contacted() -> None:
    cfg = _config(
        [
            {
                "name": "k",
                "segments": ["a", "b"],
                "objective": "grow",
                "holdout": 0,
                "start": "2026-01-05",
                "steps": [{"channel": "email"}],
            }
        ],
        global_control={"share": 0.2, "key": "k1"},
    )
    people = _people(500)
    plan = plan_campaigns(people, cfg.campaigns, cfg.activation, default_zone="UTC")
    control = set(np.array(people.ids)[in_global_control(people.ids, share=0.2, key="k1")])
    sent = set(plan.audiences.column("customer_id").to_pylist())
    assert control and not control & sent
    assert len(sent) == 500 - len(control)


# ---------------------------------------------------------------------------- control groups
def test_control_membership_is_stable_across_runs_and_independent_of_segment() -> None:
    ids = [f"C{i:07d}" for i in range(20_000)]
    buckets = control_buckets(ids, "segvalue-control")
    # another run: other customers around them, in another order
    rng = np.random.default_rng(1)
    shuffled = list(rng.permutation(ids[:5_000])) + [f"N{i}" for i in range(100)]
    again = dict(zip(shuffled, control_buckets(shuffled, "segvalue-control"), strict=True))
    assert all(again[c] == b for c, b in zip(ids[:5_000], buckets[:5_000], strict=True))
    # independent of segment: the share in control is the same in every segment of a
    # segmentation correlated with the ids (binomial 99.9 % bounds)
    member = in_global_control(ids, share=0.1, key="segvalue-control")
    segments = np.array([int(c[1:]) % 7 for c in ids])
    for s in range(7):
        n = int((segments == s).sum())
        share = member[segments == s].mean()
        assert abs(share - 0.1) < 3.3 * np.sqrt(0.1 * 0.9 / n), (s, share)
    assert 0.09 < member.mean() < 0.11
    # a new key redraws the group
    other = in_global_control(ids, share=0.1, key="another")
    assert (member != other).mean() > 0.1


def test_holdouts_are_stratified_seeded_and_stable() -> None:
    ids = [f"c{i}" for i in range(1_000)]
    segs = ["x" if i % 3 else "y" for i in range(1_000)]
    held = campaign_holdout(ids, segs, share=0.1, seed=4, campaign="spring")
    for s in ("x", "y"):
        members = [i for i, g in enumerate(segs) if g == s]
        assert held[members].sum() == round(0.1 * len(members))
    reordered = campaign_holdout(ids[::-1], segs[::-1], share=0.1, seed=4, campaign="spring")
    assert (reordered[::-1] == held).all()
    assert (campaign_holdout(ids, segs, share=0.1, seed=4, campaign="autumn") != held).any()


# ---------------------------------------------------------------------------- a demo run
def test_activate_stores_the_plan_and_replaces_it(tmp_path: Path) -> None:
    from segvalue.pipeline import run_demo
    from segvalue.project import Project

    _, path = run_demo(n_customers=600, seed=3, out_dir=tmp_path / "shop")
    path.write_text(
        path.read_text(encoding="utf-8")
        + "campaigns:\n  - {name: grow, segments: [cluster_1, cluster_2], objective: grow,\n"
        "     start: 2026-01-05, steps: [{channel: primary}, {channel: email, delay_days: 3}]}\n",
        encoding="utf-8",
    )
    with Project.from_yaml(path) as project:
        first = project.activate()
        second = project.activate()
        view = project.runs.require_latest()
        stored = view.table("activation_audiences")
        doc = view.document("activation")
    assert stored.num_rows == first.audiences.num_rows == second.audiences.num_rows > 0
    assert doc["campaigns"][0]["name"] == "grow"
    roles = {r["channel"] for r in stored.to_pylist() if r["step"] == 1}
    assert roles and "primary" not in roles  # the measured primary channel per segment
    with pytest.raises(ConfigError, match=r"not a segment of the run"):
        bad = path.read_text(encoding="utf-8").replace("cluster_2]", "cluster_99]")
        path.write_text(bad, encoding="utf-8")
        with Project.from_yaml(path) as project:
            project.activate(dry_run=True)


def test_campaigns_attach_a_next_best_category_never_bought(tmp_path: Path) -> None:
    """recommend: true attaches each customer's next-best category with its reason; it is
    never a category the customer bought (docs/activation-recommendations.md)."""
    import pyarrow.parquet as pq

    from segvalue.pipeline import run_demo
    from segvalue.project import Project

    _, path = run_demo(n_customers=600, seed=5, out_dir=tmp_path / "shop")
    path.write_text(
        path.read_text(encoding="utf-8")
        + "campaigns:\n  - {name: cross, segments: [cluster_1, cluster_2, cluster_3],\n"
        "     objective: grow, recommend: true, start: 2026-01-05, steps: [{channel: email}]}\n",
        encoding="utf-8",
    )
    with Project.from_yaml(path) as project:
        plan = project.activate(dry_run=True)
    data = tmp_path / "shop" / "data"
    orders = pq.read_table(data / "orders.parquet").to_pylist()
    lines = pq.read_table(data / "order_lines.parquet").to_pylist()
    owner = {o["order_id"]: o["customer_id"] for o in orders if o["amount"] > 0}
    bought: dict[str, set[str]] = {}
    for line in lines:
        if line["order_id"] in owner:
            bought.setdefault(owner[line["order_id"]], set()).add(line["category"])
    rows = plan.audiences.to_pylist()
    assert rows and all(r["next_best"] and r["next_best_reason"] for r in rows)
    assert all(r["next_best"] not in bought.get(r["customer_id"], set()) for r in rows)


@settings(max_examples=30, deadline=None)
@given(
    seed=st.integers(0, 10_000),
    per=st.sampled_from(["day", "week", "month"]),
    channel=st.sampled_from(["*", "email"]),
)
def test_a_contact_log_counts_as_its_contacts_one_by_one(seed: int, per: str, channel: str) -> None:
    """add_many (zone by zone at once) counts what add counts one contact at a time,
    across clock changes and the turn of a month in the customers' zones."""
    rng = np.random.default_rng(seed)
    people = _people(20, seed)
    customers = [people.ids[i] for i in rng.integers(0, 20, 200)]
    channels = [CHANNELS[i] for i in rng.integers(0, 3, 200)]
    start = dt.datetime(2026, 3, 25)
    moments: list[dt.datetime | None] = [
        start + dt.timedelta(minutes=int(m)) for m in rng.integers(0, 60 * 24 * 14, 200)
    ]
    moments[0] = None
    at_once = CapLedger([Cap(channel, per, 3)], default_zone="UTC", zones=people.zone)
    at_once.add_many(customers, channels, moments)
    one_by_one = CapLedger([Cap(channel, per, 3)], default_zone="UTC", zones=people.zone)
    for c, ch, m in zip(customers, channels, moments, strict=True):
        if m is not None:
            one_by_one.add(c, ch, m)
    assert at_once._counts == one_by_one._counts
