"""Campaign plans: from segments to audiences, step by step, every left-out contact with
its reason.

:func:`plan_campaigns` takes the customers of a run (their segment, consent, time zone,
CLV), the campaign plans and the rules of activation, and decides, campaign by campaign
in priority order (lower ``priority`` first, then name), whom each step contacts, when
and through which channel:

1. **Campaign-level suppression** of the campaign's segments' members, the first reason
   that applies: ``unsubscribed``; ``global_control`` (the global control group,
   :mod:`segvalue.activation.controls`); ``claimed`` (a campaign of higher priority whose
   dates overlap holds the customer, in its audience or its holdout); ``bought_category``
   (bought one of ``suppress_bought``'s categories within ``bought_window_days`` before
   the start).
2. **Holdout**: of the customers left (*eligible*), ``holdout`` of each segment are held
   out (reason ``holdout``), for the lift tools.
3. **Each step**, customers by CLV (highest first, then id): the step's channel (a channel
   name, or the segment's ``primary`` / ``secondary`` channel: the campaign's
   ``channels`` or the roles measured per segment); ``no_channel`` when the segment has no
   channel in that role; ``no_consent`` when the channel needs consent the customer has
   not given; ``purchased`` when the step's condition excludes a customer who bought since
   the start (or the previous step) up to the data's end; the send at the step's local
   time in the customer's zone, moved out of the channel's quiet hours; ``after_end`` past
   the campaign's end; ``over_budget`` once the sends would cost more than the budget;
   then the frequency caps (:mod:`segvalue.activation.caps`): a refused send is *capped*,
   with the cap as its reason. A step whose send lies after the data's end and carries a
   condition is marked ``conditional``: check it again when it is due.
"""

from __future__ import annotations

import datetime as dt
import math
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa

from segvalue.activation.caps import Cap, CapLedger, after_quiet_hours, to_utc
from segvalue.activation.controls import campaign_holdout, control_buckets
from segvalue.config import ActivationConfig, CampaignConfig, CampaignStep
from segvalue.errors import ConfigError, did_you_mean

__all__ = ["SUPPRESSION_REASONS", "ActivationPlan", "Customers", "plan_campaigns"]

#: Why a contact is left out (capped contacts carry the cap instead).
SUPPRESSION_REASONS = (
    "unsubscribed",
    "global_control",
    "claimed",
    "bought_category",
    "holdout",
    "no_channel",
    "no_consent",
    "purchased",
    "after_end",
    "over_budget",
)
_ROLE_NAMES = ("primary", "secondary")


@dataclass
class Customers:
    """What planning needs of each customer, one entry per customer (sorted by id)."""

    ids: list[str]
    segment: list[str | None]
    clv: np.ndarray[Any, np.dtype[np.float64]]
    zone: dict[str, Any] = field(default_factory=dict)
    #: channel -> whether each customer consented (channels absent need no consent).
    consent: dict[str, np.ndarray[Any, np.dtype[np.bool_]]] = field(default_factory=dict)
    unsubscribed: np.ndarray[Any, np.dtype[np.bool_]] | None = None
    #: category -> customer -> the last purchase of the category (naive UTC).
    last_bought: dict[str, dict[str, dt.datetime]] = field(default_factory=dict)
    #: customer -> purchase times (naive UTC, ascending), for the steps' conditions.
    purchases: dict[str, list[dt.datetime]] = field(default_factory=dict)
    #: campaign -> whether each customer qualifies for the campaign's offer.
    offer_ok: dict[str, np.ndarray[Any, np.dtype[np.bool_]]] = field(default_factory=dict)
    #: customer -> (next-best item, its reason).
    next_best: dict[str, tuple[str, str]] = field(default_factory=dict)


@dataclass
class ActivationPlan:
    """Audiences per campaign step, every suppressed or capped contact with its reason,
    the control groups, and counts per campaign and step."""

    audiences: pa.Table
    left_out: pa.Table
    controls: pa.Table
    holdouts: pa.Table
    steps: pa.Table
    campaigns: list[dict[str, Any]]
    notes: dict[str, Any]

    def tables(self) -> dict[str, pa.Table]:
        """The tables stored with the run, by name."""
        return {
            "activation_audiences": self.audiences,
            "activation_left_out": self.left_out,
            "activation_controls": self.controls,
            "activation_holdouts": self.holdouts,
            "activation_steps": self.steps,
        }

    def summary(self) -> dict[str, Any]:
        """Per campaign and step: audience size, suppressed and capped counts by reason."""
        return {"campaigns": self.campaigns, **self.notes}


def _channel_of(
    step: CampaignStep,
    campaign: CampaignConfig,
    segment: str | None,
    roles: Mapping[str, Mapping[str, str]],
) -> str | None:
    if step.channel not in _ROLE_NAMES:
        return step.channel
    if campaign.channels is not None:
        return campaign.channels.get(step.channel)  # type: ignore[call-overload, no-any-return]
    measured = roles.get(str(segment), {})
    chosen = sorted(c for c, role in measured.items() if role == step.channel)
    return chosen[0] if chosen else None


def _overlaps(a: CampaignConfig, b: CampaignConfig) -> bool:
    a_end = a.end or dt.date.max
    b_end = b.end or dt.date.max
    return a.start <= b_end and b.start <= a_end


def plan_campaigns(
    customers: Customers,
    campaigns: Sequence[CampaignConfig],
    settings: ActivationConfig,
    *,
    default_zone: str,
    roles: Mapping[str, Mapping[str, str]] | None = None,
    personas: Mapping[str, Mapping[str, Any]] | None = None,
    history: tuple[Sequence[Any], Sequence[Any], Sequence[dt.datetime | None]] | None = None,
    data_end: dt.datetime | None = None,
) -> ActivationPlan:
    """Plan every campaign (see the module): audiences, left-out contacts and counts.

    Parameters
    ----------
    customers
        The customers of the run (:class:`Customers`).
    campaigns
        The campaign plans (``campaigns`` of segvalue.yaml).
    settings
        ``activation`` of segvalue.yaml: caps, quiet hours, the global control group.
    default_zone
        The time zone of customers without a valid one.
    roles
        Per segment, channel -> measured role (``RunView.channel_roles()``).
    personas
        Per segment, its persona (``name``, ``tone``) for the theme and tone.
    history
        The contact log: customers, channels, times (naive UTC), counted by the caps.
    data_end
        The end of the data (as of): steps due later with a condition are ``conditional``.

    Examples
    --------
    >>> from segvalue.config import parse_config
    >>> cfg = parse_config({"sources": {"orders": {"path": "o.csv"}}, "campaigns": [
    ...     {"name": "welcome", "segments": ["new"], "objective": "grow", "holdout": 0.5,
    ...      "start": "2026-01-05", "steps": [{"channel": "email"}]}]})
    >>> people = Customers(["a", "b", "c", "d"], ["new"] * 4, np.array([4.0, 3, 2, 1]))
    >>> plan = plan_campaigns(people, cfg.campaigns, cfg.activation, default_zone="UTC")
    >>> plan.audiences.column("customer_id").to_pylist()
    ['b', 'd']
    >>> plan.steps.select(["campaign", "audience", "holdout"]).to_pylist()
    [{'campaign': 'welcome', 'audience': 2, 'holdout': 2}]
    """
    roles = roles or {}
    personas = personas or {}
    ids = customers.ids
    n = len(ids)
    ledger = CapLedger(
        [Cap(c.channel, c.per, c.max) for c in settings.caps],
        default_zone=default_zone,
        zones=customers.zone,
    )
    if history is not None:
        ledger.add_many(*history)
    share = settings.global_control.share
    buckets = control_buckets(ids, settings.global_control.key)
    in_control = buckets < round(share * 10_000)
    unsubscribed = (
        customers.unsubscribed if customers.unsubscribed is not None else np.zeros(n, bool)
    )
    segments = sorted({s for s in customers.segment if s is not None})
    order = sorted(campaigns, key=lambda c: (c.priority, c.name))
    claimed: dict[str, list[tuple[CampaignConfig, str]]] = {}
    audience_rows: list[dict[str, Any]] = []
    left_rows: list[dict[str, Any]] = []
    holdout_rows: list[dict[str, Any]] = []
    step_rows: list[dict[str, Any]] = []
    summaries: list[dict[str, Any]] = []
    by_value = sorted(range(n), key=lambda i: (-_finite(customers.clv[i]), ids[i]))
    for campaign in order:
        unknown = [s for s in campaign.segments if s not in segments]
        if unknown:
            raise ConfigError(
                f"campaign {campaign.name!r} names segment {unknown[0]!r}, not a segment of "
                f"the run{did_you_mean(unknown[0], segments)}",
                fix=f"use segments of the activation scheme: {', '.join(segments)}",
                parameter="campaigns[].segments",
            )
        wanted = set(campaign.segments)
        members = [i for i in by_value if customers.segment[i] in wanted]
        start = dt.datetime.combine(campaign.start, dt.time())
        reason_of: dict[int, str] = {}
        for i in members:
            c = ids[i]
            if unsubscribed[i]:
                reason_of[i] = "unsubscribed"
            elif in_control[i]:
                reason_of[i] = "global_control"
            elif any(_overlaps(other, campaign) for other, _ in claimed.get(c, ())):
                reason_of[i] = "claimed"
            elif _bought_recently(customers, c, campaign, start):
                reason_of[i] = "bought_category"
        eligible = [i for i in members if i not in reason_of]
        held = campaign_holdout(
            [ids[i] for i in eligible],
            [customers.segment[i] for i in eligible],
            share=campaign.holdout,
            seed=settings.seed,
            campaign=campaign.name,
        )
        for i, h in zip(eligible, held, strict=True):
            group = "holdout" if h else "treatment"
            holdout_rows.append(
                {
                    "campaign": campaign.name,
                    "customer_id": ids[i],
                    "segment": customers.segment[i],
                    "group": group,
                }
            )
            claimed.setdefault(ids[i], []).append((campaign, group))
            if h:
                reason_of[i] = "holdout"
        treated = [i for i in eligible if reason_of.get(i) != "holdout"]
        for i, reason in reason_of.items():
            left_rows.append(
                {"campaign": campaign.name, "step": None, "customer_id": ids[i], "reason": reason}
            )
        campaign_counts = Counter(reason_of.values())
        spent = 0.0
        previous: dict[int, dt.datetime] = {}
        steps_out: list[dict[str, Any]] = []
        for number, step in enumerate(sorted(campaign.steps, key=lambda s: s.delay_days), 1):
            counts: Counter[str] = Counter()
            capped: Counter[str] = Counter()
            sent = 0
            moved = 0
            conditional = 0
            day = campaign.start + dt.timedelta(days=step.delay_days)
            sent_at: dict[int, dt.datetime] = {}
            for i in treated:
                c = ids[i]
                segment = customers.segment[i]
                channel = _channel_of(step, campaign, segment, roles)
                why: str | None = None
                zone = ledger.zone(c)
                local = dt.datetime.combine(day, step.send_time)
                quiet = settings.quiet_hours.get(channel or "")
                if quiet is not None:
                    shifted = after_quiet_hours(local, quiet.start, quiet.end)
                    moved += shifted != local
                    local = shifted
                at = to_utc(local, zone)
                if channel is None:
                    why = "no_channel"
                elif channel in customers.consent and not customers.consent[channel][i]:
                    why = "no_consent"
                elif step.condition != "none" and _purchased_since(
                    customers,
                    c,
                    start
                    if step.condition == "not_purchased_since_start"
                    else previous.get(i, start),
                    min(at, data_end) if data_end else at,
                ):
                    why = "purchased"
                elif campaign.end is not None and local.date() > campaign.end:
                    why = "after_end"
                elif (
                    campaign.budget is not None
                    and campaign.cost_per_contact is not None
                    and spent + campaign.cost_per_contact > campaign.budget + 1e-9
                ):
                    why = "over_budget"
                if why is not None:
                    counts[why] += 1
                    left_rows.append(
                        {"campaign": campaign.name, "step": number, "customer_id": c, "reason": why}
                    )
                    continue
                assert channel is not None
                refused = ledger.admit(c, channel, at)
                if refused is not None:
                    capped[refused] += 1
                    left_rows.append(
                        {
                            "campaign": campaign.name,
                            "step": number,
                            "customer_id": c,
                            "reason": f"capped: {refused}",
                        }
                    )
                    continue
                spent += campaign.cost_per_contact or 0.0
                sent += 1
                sent_at[i] = at
                is_conditional = step.condition != "none" and data_end is not None and at > data_end
                conditional += is_conditional
                persona = personas.get(str(segment), {})
                offer_ok = customers.offer_ok.get(campaign.name)
                qualifies = campaign.offer.when is None or (offer_ok is not None and offer_ok[i])
                best = customers.next_best.get(c) if campaign.recommend else None
                audience_rows.append(
                    {
                        "campaign": campaign.name,
                        "step": number,
                        "customer_id": c,
                        "segment": segment,
                        "channel": channel,
                        "send_at_utc": at,
                        "send_at_local": local,
                        "time_zone": str(zone.key),
                        "objective": campaign.objective,
                        "theme": campaign.theme or persona.get("name"),
                        "tone": campaign.tone or persona.get("tone") or None,
                        "offer": campaign.offer.kind if qualifies else campaign.offer.fallback,
                        "offer_value": campaign.offer.value if qualifies else None,
                        "next_best": best[0] if best else None,
                        "next_best_reason": best[1] if best else None,
                        "conditional": bool(is_conditional),
                    }
                )
            previous = sent_at or previous
            suppressed = {
                **{k: v for k, v in campaign_counts.items() if k != "holdout"},
                **counts,
            }
            row: dict[str, Any] = {
                "campaign": campaign.name,
                "step": number,
                "day": day,
                "channel": step.channel,
                "condition": step.condition,
                "members": len(members),
                "eligible": len(eligible),
                "holdout": len(eligible) - len(treated),
                "audience": sent,
                "moved_by_quiet_hours": moved,
                "conditional": conditional,
                "suppressed": suppressed,
                "capped": dict(capped),
            }
            steps_out.append(row)
            step_rows.append(
                {
                    **{k: v for k, v in row.items() if k not in ("suppressed", "capped")},
                    "suppressed": sum(suppressed.values()),
                    "capped": sum(capped.values()),
                    "suppressed_by_reason": _pairs(suppressed),
                    "capped_by_cap": _pairs(dict(capped)),
                }
            )
        summaries.append(
            {
                "name": campaign.name,
                "objective": campaign.objective,
                "segments": list(campaign.segments),
                "priority": campaign.priority,
                "start": campaign.start,
                "end": campaign.end,
                "budget": campaign.budget,
                "spent": spent if campaign.cost_per_contact is not None else None,
                "offer": campaign.offer.kind,
                "members": len(members),
                "eligible": len(eligible),
                "holdout": len(eligible) - len(treated),
                "steps": steps_out,
            }
        )
    controls = pa.table(
        {
            "customer_id": pa.array(ids, pa.string()),
            "bucket": pa.array(buckets, pa.int64()),
            "global_control": pa.array(in_control, pa.bool_()),
        }
    )
    return ActivationPlan(
        audiences=_table(audience_rows, _AUDIENCE_SCHEMA),
        left_out=_table(left_rows, _LEFT_SCHEMA),
        controls=controls,
        holdouts=_table(holdout_rows, _HOLDOUT_SCHEMA),
        steps=_table(step_rows, None),
        campaigns=summaries,
        notes={
            "customers": n,
            "global_control": int(in_control.sum()),
            "global_control_share": share,
            "default_time_zone": default_zone,
            "customers_in_default_zone": len(ledger.defaulted),
            "caps": [str(c) for c in ledger.caps],
        },
    )


def _finite(value: Any) -> float:
    return float(value) if value is not None and math.isfinite(value) else -math.inf


def _pairs(counts: Mapping[str, int]) -> str:
    return ", ".join(f"{k}: {v}" for k, v in sorted(counts.items()))


def _bought_recently(
    customers: Customers, customer: str, campaign: CampaignConfig, start: dt.datetime
) -> bool:
    window = dt.timedelta(days=campaign.bought_window_days)
    for category in campaign.suppress_bought:
        last = customers.last_bought.get(category, {}).get(customer)
        if last is not None and start - window <= last <= start:
            return True
    return False


def _purchased_since(
    customers: Customers, customer: str, since: dt.datetime, until: dt.datetime
) -> bool:
    return any(since <= t <= until for t in customers.purchases.get(customer, ()))


_AUDIENCE_SCHEMA = pa.schema(
    [
        ("campaign", pa.string()),
        ("step", pa.int64()),
        ("customer_id", pa.string()),
        ("segment", pa.string()),
        ("channel", pa.string()),
        ("send_at_utc", pa.timestamp("us")),
        ("send_at_local", pa.timestamp("us")),
        ("time_zone", pa.string()),
        ("objective", pa.string()),
        ("theme", pa.string()),
        ("tone", pa.string()),
        ("offer", pa.string()),
        ("offer_value", pa.float64()),
        ("next_best", pa.string()),
        ("next_best_reason", pa.string()),
        ("conditional", pa.bool_()),
    ]
)
_LEFT_SCHEMA = pa.schema(
    [
        ("campaign", pa.string()),
        ("step", pa.int64()),
        ("customer_id", pa.string()),
        ("reason", pa.string()),
    ]
)
_HOLDOUT_SCHEMA = pa.schema(
    [
        ("campaign", pa.string()),
        ("customer_id", pa.string()),
        ("segment", pa.string()),
        ("group", pa.string()),
    ]
)


def _table(rows: list[dict[str, Any]], schema: pa.Schema | None) -> pa.Table:
    if schema is not None:
        return pa.Table.from_pylist(rows, schema=schema)
    return pa.Table.from_pylist(rows) if rows else pa.table({"campaign": pa.array([], pa.string())})
