"""Score one customer without a re-run: features, a membership per scheme, predictions.

A run learns, besides its results, everything needed to place a customer later: the
feature conventions (as-of date, time unit, lookback, the category and channel columns),
each scheme's assigner (:mod:`segvalue.segments.scoring`) and the fitted BTYD and spend
models with the CLV settings. :func:`scorer_state` collects them from a run as
JSON-ready data; :class:`Scorer` applies them to one customer's attributes and history:

* features follow :func:`segvalue.features.customer.customer_features` (purchases are
  orders with ``amount >= 0``, merged per calendar day for the BTYD summary; ``recency``
  and ``T`` in the run's time unit; shares over purchases; category shares over the
  order lines of the customer's orders; touches and browsing since the last purchase),
  counting only orders in the run's window (lookback start to the end of the as-of day);
* predictions are the run's: P(alive) clipped to [0, 1], churn risk ``1 - P(alive)``,
  expected purchases over the horizon, discounted margin CLV with its delta-method
  interval (None where the run has none), all None for a customer without a purchase;
* memberships are assigned on the features, the predictions and the attributes (a
  feature wins over an attribute of the same name, as in the run).

For a customer of the run, with the history the run saw, the scorer gives what the run
stored (floats up to summation order).
"""

from __future__ import annotations

import datetime as dt
import functools
import json
import math
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple, Protocol

import numpy as np

from segvalue.config import Config
from segvalue.errors import DataValidationError
from segvalue.features.customer import BROWSE_EVENTS, ENGAGED_EVENTS, column_slug
from segvalue.models.base import model_from_json
from segvalue.models.clv import customer_lifetime_value
from segvalue.models.propensity import PurchasePropensityModel, encode_categories
from segvalue.segments.scoring import AS_OF, PURCHASE_DAYS, assign, scheme_state
from segvalue.units import parse_time_unit, per_period_rate

__all__ = ["PREDICTIONS", "History", "Scorer", "scorer_state"]

#: The prediction columns a run joins to its customer features, as the scorer returns them.
PREDICTIONS: tuple[str, ...] = (
    "probability_alive",
    "churn_risk",
    "expected_purchases",
    "expected_spend",
    "clv",
    "clv_lower",
    "clv_upper",
)

#: Version of the scorer document: bumped when its layout changes.
SCORER_VERSION = 1


class _Run(Protocol):
    """What :func:`scorer_state` reads of a :class:`segvalue.pipeline.RunResult`."""

    report: Any
    features: Any
    valuation: Any
    segmentation: Any


# --------------------------------------------------------------------------- state


def _model_document(model: Any) -> dict[str, Any]:
    """A fitted model's ``to_dict``, JSON-ready (NaN covariance entries as null)."""
    doc: dict[str, Any] = json.loads(model.to_json())
    return doc


def _finite_json(data: Any) -> Any:
    """``data`` with NaN and infinities as null, so it is strict JSON.

    The propensity model's ``seen_categories`` hold NaN for "missing"; the model reads
    its lists back as float arrays, where null becomes NaN again.
    """
    if isinstance(data, float):
        return data if math.isfinite(data) else None
    if isinstance(data, dict):
        return {k: _finite_json(v) for k, v in data.items()}
    if isinstance(data, list | tuple):
        return [_finite_json(v) for v in data]
    if isinstance(data, np.generic):
        return _finite_json(data.item())
    return data


def _mean_repeat_spend(features: Any) -> float:
    """The run's fallback spend without a spend model (see ``models.clv``).

    The run scores each distinct (frequency, recency, T, monetary value) pattern once, so
    the mean repeat spend is taken over the distinct patterns of the repeat customers.
    """
    keys = ["frequency", "recency", "T", "monetary_value"]
    rows = features.select(keys).to_pylist()
    patterns = {tuple(r[k] for k in keys) for r in rows if r["frequency"] is not None}
    repeat = [p[3] for p in patterns if p[0] > 0]
    return max(float(np.mean(repeat)), 0.0) if repeat else 0.0


def scorer_state(result: _Run, config: Config) -> dict[str, Any]:
    """Everything a run learned that scoring one customer needs, as JSON-ready data.

    Parameters
    ----------
    result
        The run (:class:`segvalue.pipeline.RunResult`): its report (as-of date, time
        unit, lookback start), customer features, valuation and segmentation.
    config
        The run's configuration (the CLV settings and the schemes).

    Returns
    -------
    dict
        ``{"version", "features": {...}, "schemes": {name: state}, "models": {...} or
        None}``; build a :class:`Scorer` from it.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> from segvalue.config import load_config
    >>> from segvalue.pipeline import run_demo
    >>> result, path = run_demo(n_customers=300, out_dir=pathlib.Path(tempfile.mkdtemp()))
    >>> state = scorer_state(result, load_config(path))
    >>> sorted(state["schemes"])[:3], state["models"]["time_unit"]
    (['age_band', 'behaviour', 'benefit'], 'week')
    """
    report = result.report
    features = result.features
    columns = list(features.column_names)
    sources = set(config.sources)
    feature_state = {
        "as_of": report.as_of.isoformat(),
        "time_unit": parse_time_unit(report.time_unit).value,
        "lookback_start": None
        if report.lookback_start is None
        else report.lookback_start.isoformat(),
        "customers": "customers" in sources,
        "discount": "discount_share" in columns,
        "categories": [c.removeprefix("share_") for c in columns if c.startswith("share_")]
        if "order_lines" in sources
        else None,
        "channels": [c.removeprefix("touches_") for c in columns if c.startswith("touches_")]
        if "touchpoints" in sources
        else None,
        "columns": columns,
    }
    schemes: dict[str, Any] = {}
    segmentation = result.segmentation
    if segmentation is not None:
        for scheme in config.segments.schemes:
            if scheme.name not in segmentation.details:
                continue
            schemes[scheme.name] = scheme_state(
                scheme, segmentation.details[scheme.name], features=features, as_of=report.as_of
            )
    models = None
    valuation = result.valuation
    if valuation is not None:
        unit = parse_time_unit(report.time_unit)
        clv = config.clv
        models = {
            "model": valuation.model,
            "transaction_model": _model_document(valuation.transactions),
            "spend_model": None if valuation.spend is None else _model_document(valuation.spend),
            "propensity_model": None
            if valuation.propensity_model is None
            else _finite_json(valuation.propensity_model.to_dict()),
            "mean_repeat_spend": None
            if valuation.spend is not None
            else _mean_repeat_spend(features),
            "horizon": int(clv.horizon),
            "annual_discount_rate": float(clv.discount_rate),
            "discount_rate": per_period_rate(clv.discount_rate, unit),
            "margin": float(clv.margin),
            "time_unit": unit.value,
            "as_of": report.as_of.isoformat(),
        }
    return {
        "version": SCORER_VERSION,
        "features": feature_state,
        "schemes": schemes,
        "models": models,
    }


# --------------------------------------------------------------------------- features


def _timestamp(value: Any, key: str) -> dt.datetime:
    """A naive UTC timestamp (as the run stores them) from a datetime, date or ISO text."""
    if isinstance(value, str):
        try:
            value = dt.datetime.fromisoformat(value)
        except ValueError:
            raise DataValidationError(
                f"{key} {value!r} is not an ISO date or timestamp",
                fix="give e.g. '2024-05-01T14:30:00'",
                parameter=key,
            ) from None
    if isinstance(value, dt.datetime):
        if value.tzinfo is not None:
            return value.astimezone(dt.UTC).replace(tzinfo=None)
        return dt.datetime.combine(value.date(), value.time())
    if isinstance(value, dt.date):
        return dt.datetime.combine(value, dt.time())
    raise DataValidationError(
        f"{key} {value!r} is not a date or timestamp",
        fix="give a datetime, a date or ISO text",
        parameter=key,
    )


def _number(value: Any, key: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise DataValidationError(
            f"{key} {value!r} is not a number", fix="give a number", parameter=key
        )
    return float(value)


def _days(day: dt.date) -> int:
    return (day - dt.date(1970, 1, 1)).days


def _in_window(ts: dt.datetime, as_of: dt.date, start: dt.date | None) -> bool:
    return ts.date() <= as_of and (start is None or ts.date() >= start)


def _order_features(
    state: Mapping[str, Any],
    orders: Sequence[Mapping[str, Any]],
    as_of: dt.date,
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """BTYD summary and order statistics of one customer (``features.rfm`` / ``customer``)."""
    start = state["lookback_start"]
    start_day = None if start is None else dt.date.fromisoformat(start)
    unit_days = parse_time_unit(state["time_unit"]).days
    kept = []
    for i, order in enumerate(orders):
        ts = _timestamp(order.get("order_ts"), f"orders[{i}].order_ts")
        if _in_window(ts, as_of, start_day):
            kept.append(
                {
                    **order,
                    "order_ts": ts,
                    "amount": _number(order.get("amount"), f"orders[{i}].amount"),
                }
            )
    kept.sort(key=lambda o: o["order_ts"])
    purchases = [o for o in kept if o["amount"] >= 0]
    per_day: dict[dt.date, float] = {}
    for o in purchases:
        day = o["order_ts"].date()
        per_day[day] = per_day[day] + o["amount"] if day in per_day else o["amount"]
    out: dict[str, Any] = {}
    n = len(purchases)
    if per_day:
        days = sorted(per_day)
        frequency = len(days) - 1
        total = 0.0
        for k, day in enumerate(days):
            total = per_day[day] if k == 0 else total + per_day[day]
        out.update(
            frequency=frequency,
            recency=float(_days(days[-1]) - _days(days[0])) / unit_days,
            T=float(_days(as_of) - _days(days[0])) / unit_days,
            monetary_value=(total - per_day[days[0]]) / float(frequency) if frequency > 0 else 0.0,
            first_purchase=days[0],
            last_purchase=days[-1],
        )
        gross = sum(o["amount"] for o in purchases)
        returns = sum(-o["amount"] for o in kept if o["amount"] < 0)
        revenue = sum(o["amount"] for o in kept)
        last_order = max(o["order_ts"] for o in kept)
        out.update(
            orders=n,
            gross_revenue=float(gross),
            returns_amount=float(returns),
            revenue=float(revenue),
            average_order_value=gross / float(n) if n > 0 else 0.0,
            return_rate=returns / gross if gross > 0 else 0.0,
            days_since_last_order=_days(as_of) - _days(last_order.date()),
        )
        counts = {
            "weekend_share": sum(o["order_ts"].weekday() >= 5 for o in purchases),
            "december_share": sum(o["order_ts"].month == 12 for o in purchases),
        }
        if state["discount"]:
            discounted = [o for o in purchases if (o.get("discount") or 0) > 0]
            counts = {"discount_share": len(discounted), **counts}
        out.update({k: v / n if n > 0 else 0.0 for k, v in counts.items()})
    else:
        # No purchase: the run has such a customer only from the customers table, with
        # the order statistics filled and the BTYD summary missing.
        out.update(
            frequency=None,
            recency=None,
            T=None,
            monetary_value=None,
            first_purchase=None,
            last_purchase=None,
            orders=0,
            gross_revenue=0.0,
            returns_amount=0.0,
            revenue=0.0,
            average_order_value=0.0,
            return_rate=0.0,
            days_since_last_order=None,
        )
        shares = ["discount_share"] if state["discount"] else []
        out.update(dict.fromkeys([*shares, "weekend_share", "december_share"], 0.0))
    return out, kept


@functools.lru_cache(maxsize=4096)
def _slug(value: str) -> str:
    """:func:`column_slug`, remembered (a customer's lines repeat few category names)."""
    return column_slug(value)


def _signup(attributes: Mapping[str, Any]) -> dt.date | None:
    value = attributes.get("signup_date")
    if value is None:
        return None
    if isinstance(value, dt.datetime):
        return value.date()
    if isinstance(value, dt.date):
        return value
    return dt.date.fromisoformat(str(value))


def customer_features_of(
    state: Mapping[str, Any],
    attributes: Mapping[str, Any],
    orders: Sequence[Mapping[str, Any]],
    *,
    order_lines: Sequence[Mapping[str, Any]] = (),
    touchpoints: Sequence[Mapping[str, Any]] = (),
    as_of: dt.date | None = None,
) -> tuple[dict[str, Any], list[dt.date]]:
    """One customer's feature row and purchase days, by the run's feature conventions.

    Parameters
    ----------
    state
        ``scorer_state(...)["features"]``.
    attributes
        The customer's attributes (``signup_date`` sets ``tenure_days``).
    orders
        ``order_ts`` and ``amount`` (negative: a return); ``order_id`` links order lines,
        ``discount`` counts for ``discount_share``.
    order_lines
        ``order_id``, ``category``, ``line_amount``.
    touchpoints
        ``ts``, ``channel`` and, when the run's touchpoints have one, ``event``.
    as_of
        Observation end (default: the run's).

    Returns
    -------
    (dict, list of datetime.date)
        The features by column name and the distinct purchase days.

    Examples
    --------
    >>> state = {"as_of": "2024-01-29", "time_unit": "week", "lookback_start": None,
    ...          "customers": False, "discount": False, "categories": None, "channels": None}
    >>> orders = [{"order_ts": "2024-01-01", "amount": 10.0},
    ...           {"order_ts": "2024-01-15", "amount": 20.0},
    ...           {"order_ts": "2024-01-15T18:00", "amount": 5.0}]
    >>> row, days = customer_features_of(state, {}, orders)
    >>> row["frequency"], row["recency"], row["T"], row["monetary_value"], len(days)
    (1, 2.0, 4.0, 25.0, 2)
    """
    end = as_of if as_of is not None else dt.date.fromisoformat(state["as_of"])
    row, kept = _order_features(state, orders, end)
    start = state["lookback_start"]
    start_day = None if start is None else dt.date.fromisoformat(start)
    first = row["first_purchase"]
    if state["customers"]:
        began = _signup(attributes) or first
        row["tenure_days"] = None if began is None else _days(end) - _days(began)
    else:
        row["tenure_days"] = None if first is None else _days(end) - _days(first)
    categories = state.get("categories")
    if categories:
        ids = {o.get("order_id") for o in kept if o.get("order_id") is not None}
        owned = [line for line in order_lines if line.get("order_id") in ids]
        total = sum(_number(line.get("line_amount"), "order_lines.line_amount") for line in owned)
        # Each slug's lines added in the lines' order, as a sum over that slug's lines.
        spent: dict[str, float] = {}
        for line in owned:
            if line.get("category") is not None:
                slug = _slug(line["category"])
                amount = float(line["line_amount"])
                spent[slug] = spent[slug] + amount if slug in spent else amount
        for slug in categories:
            share = spent.get(slug, 0) / total if owned and total > 0 else 0.0
            row[f"share_{slug}"] = share
    channels = state.get("channels")
    if channels is not None:
        touches = []
        for i, touch in enumerate(touchpoints):
            ts = _timestamp(touch.get("ts"), f"touchpoints[{i}].ts")
            if _in_window(ts, end, start_day):
                touches.append({**touch, "ts": ts})
        row["touches"] = len(touches)
        counted: dict[str, list[int]] = {}
        for t in touches:
            if t.get("channel") is not None:
                count = counted.setdefault(_slug(t["channel"]), [0, 0])
                count[0] += 1
                count[1] += ("event" not in t) or (t["event"] in ENGAGED_EVENTS)
        for slug in channels:
            touched, engaged = counted.get(slug, (0, 0))
            row[f"touches_{slug}"] = touched
            row[f"engaged_{slug}"] = engaged
        buys = [o["order_ts"] for o in kept if o["amount"] >= 0]
        last = max(buys) if buys else None
        browse = [t for t in touches if "event" not in t or t["event"] in BROWSE_EVENTS]
        row["browse_since_last_order"] = sum(last is None or t["ts"] > last for t in browse)
    days = sorted({o["order_ts"].date() for o in kept if o["amount"] >= 0})
    return row, days


# --------------------------------------------------------------------------- scorer


def _finite(value: Any) -> float | None:
    number = float(value)
    return number if math.isfinite(number) else None


class History(NamedTuple):
    """One customer's attributes and history, as :meth:`Scorer.score_many` takes them
    (the arguments of :meth:`Scorer.score`).

    Examples
    --------
    >>> History({"customer_id": "a"}, []).as_of is None
    True
    """

    attributes: Mapping[str, Any]
    orders: Sequence[Mapping[str, Any]]
    order_lines: Sequence[Mapping[str, Any]] = ()
    touchpoints: Sequence[Mapping[str, Any]] = ()
    as_of: dt.date | None = None


class Scorer:
    """One customer's features, memberships and predictions, as the run would give them.

    Parameters
    ----------
    state
        ``{"features": ..., "schemes": {name: state}, "models": ... or None}`` from
        :func:`scorer_state` (or :meth:`to_dict`).

    Examples
    --------
    >>> state = {"features": {"as_of": "2024-01-29", "time_unit": "week",
    ...     "lookback_start": None, "customers": True, "discount": False,
    ...     "categories": None, "channels": None}, "schemes": {}, "models": None}
    >>> out = Scorer(state).score({"customer_id": "x"}, [])
    >>> out["features"]["orders"], out["probability_alive"]
    (0, None)
    """

    def __init__(self, state: Mapping[str, Any]) -> None:
        missing = [k for k in ("features", "schemes", "models") if k not in state]
        if missing:
            raise DataValidationError(
                f"scorer state lacks {missing}", fix="build it with segvalue.scoring.scorer_state"
            )
        self._state = json.loads(json.dumps(state))  # a private, JSON-clean copy
        models = self._state["models"]
        self._transactions: Any = None
        self._spend: Any = None
        self._propensity: PurchasePropensityModel | None = None
        if models is not None:
            self._transactions = model_from_json(json.dumps(models["transaction_model"]))
            if models["spend_model"] is not None:
                self._spend = model_from_json(json.dumps(models["spend_model"]))
            if models.get("propensity_model") is not None:
                self._propensity = PurchasePropensityModel.from_dict(models["propensity_model"])

    @property
    def schemes(self) -> list[str]:
        """Names of the schemes the scorer assigns."""
        return list(self._state["schemes"])

    @property
    def knows_customers(self) -> bool:
        """Whether the run had a customers table (a customer not in it is unknown to it).

        Examples
        --------
        >>> Scorer({"features": {"customers": True}, "schemes": {}, "models": None}).knows_customers
        True
        """
        return bool(self._state["features"].get("customers"))

    def to_dict(self) -> dict[str, Any]:
        """The scorer as JSON-ready data.

        Examples
        --------
        >>> s = Scorer({"features": {}, "schemes": {}, "models": None})
        >>> Scorer.from_dict(json.loads(json.dumps(s.to_dict()))).to_dict() == s.to_dict()
        True
        """
        out: dict[str, Any] = json.loads(json.dumps(self._state))
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Scorer:
        """Rebuild a scorer from :meth:`to_dict`."""
        return cls(data)

    def predict(
        self,
        frequency: int | None,
        recency: float | None,
        T: float | None,  # noqa: N803 - the models' name for the customer's age
        monetary_value: float | None,
    ) -> dict[str, float | None]:
        """The run's predictions for one BTYD summary (all None without a purchase or models).

        Examples
        --------
        >>> Scorer({"features": {}, "schemes": {}, "models": None}).predict(1, 2.0, 4.0, 5.0)["clv"]
        """
        return self._predict_many([(frequency, recency, T, monetary_value)])[0]

    def _predict_many(
        self, summaries: Sequence[tuple[int | None, float | None, float | None, float | None]]
    ) -> list[dict[str, float | None]]:
        """:meth:`predict` of several BTYD summaries, the models evaluated once for all."""
        models = self._state["models"]
        out: list[dict[str, float | None]] = [dict.fromkeys(PREDICTIONS) for _ in summaries]
        rows = [i for i, summary in enumerate(summaries) if summary[0] is not None]
        if models is None or self._transactions is None or not rows:
            return out
        t = self._transactions
        x = np.array([float(summaries[i][0] or 0) for i in rows])
        t_x = np.array([float(summaries[i][1] or 0.0) for i in rows])
        big_t = np.array([float(summaries[i][2] or 0.0) for i in rows])
        m = np.array([float(summaries[i][3] or 0.0) for i in rows])
        # Rounding may put P(alive) a hair outside [0, 1]: clipped, as the run does.
        alive = np.clip(np.asarray(t.probability_alive(x, t_x, big_t), dtype=float), 0.0, 1.0)
        horizon = int(models["horizon"])
        purchases = np.asarray(t.expected_purchases(x, t_x, big_t, horizon=float(horizon)))
        value = customer_lifetime_value(
            t,
            x,
            t_x,
            big_t,
            horizon=horizon,
            discount_rate=float(models["discount_rate"]),
            margin=float(models["margin"]),
            spend=self._spend,
            monetary_value=m,
            intervals=True,
            mean_spend=models.get("mean_repeat_spend"),
        )
        for k, i in enumerate(rows):
            p_alive = float(alive[k])
            out[i] = {
                "probability_alive": p_alive,
                "churn_risk": 1.0 - p_alive,
                "expected_purchases": float(purchases[k]),
                "expected_spend": _finite(value.expected_spend[k]),
                "clv": _finite(value.clv[k]),
                "clv_lower": _finite(value.lower[k]),
                "clv_upper": _finite(value.upper[k]),
            }
        return out

    def score(
        self,
        attributes: Mapping[str, Any],
        orders: Sequence[Mapping[str, Any]],
        *,
        order_lines: Sequence[Mapping[str, Any]] = (),
        touchpoints: Sequence[Mapping[str, Any]] = (),
        as_of: dt.date | None = None,
    ) -> dict[str, Any]:
        """Features, a membership per scheme and the predictions of one customer.

        Parameters
        ----------
        attributes
            The customer's attributes (``customer_id``, ``age``, ``country``, ...).
        orders
            The order history: ``order_ts``, ``amount`` (and ``order_id``, ``discount``).
        order_lines, touchpoints
            The order lines and touchpoints, when the run had those tables.
        as_of
            Observation end (default: the run's): a later day scores the customer as of
            that day with the run's models (events after the run, in real time).

        Returns
        -------
        dict
            ``customer_id``, ``as_of``, ``features`` (by column), ``memberships`` (scheme
            -> segment; a tag scheme -> list of tags), ``probability_alive``,
            ``churn_risk``, ``expected_purchases``, ``expected_spend``, ``clv``,
            ``clv_lower``, ``clv_upper`` (None without a purchase, or when the run
            fitted no models or has no interval) and ``purchase_propensity`` (None
            without a purchase or without the run's classifier, fitted with a holdout).

        Raises
        ------
        DataValidationError
            An order without a valid timestamp or amount (the ``parameter`` names it).
        """
        history = History(attributes, orders, order_lines, touchpoints, as_of)
        return self.score_many([history])[0]

    def score_many(self, histories: Sequence[History]) -> list[dict[str, Any]]:
        """:meth:`score` of several customers, the models evaluated once for all of them
        (each answer is the one :meth:`score` gives that customer alone).

        Examples
        --------
        >>> state = {"features": {"as_of": "2024-01-29", "time_unit": "week",
        ...     "lookback_start": None, "customers": True, "discount": False,
        ...     "categories": None, "channels": None}, "schemes": {}, "models": None}
        >>> buys = [{"order_ts": "2024-01-02", "amount": 9.0}]
        >>> out = Scorer(state).score_many([History({"customer_id": "a"}, buys),
        ...                                 History({"customer_id": "b"}, [])])
        >>> [o["features"]["orders"] for o in out]
        [1, 0]
        """
        state = self._state["features"]
        featured = [
            customer_features_of(
                state,
                h.attributes,
                h.orders,
                order_lines=h.order_lines,
                touchpoints=h.touchpoints,
                as_of=h.as_of,
            )
            for h in histories
        ]
        predicted = self._predict_many(
            [
                (row["frequency"], row["recency"], row["T"], row["monetary_value"])
                for row, _ in featured
            ]
        )
        segment_rows: list[dict[str, Any]] = []
        for h, (row, _), predictions in zip(histories, featured, predicted, strict=True):
            if self._state["models"] is not None:
                row.update(predictions)
            segment_row = {k: v for k, v in h.attributes.items() if not str(k).startswith("_")}
            segment_row.update(row)
            segment_rows.append(segment_row)
        propensities = self._propensities(segment_rows)
        out = []
        for h, (row, days), predictions, segment_row, propensity in zip(
            histories, featured, predicted, segment_rows, propensities, strict=True
        ):
            if self._propensity is not None:
                row["purchase_propensity"] = segment_row["purchase_propensity"] = propensity
            customer_id = h.attributes.get("customer_id")
            segment_row.update({"customer_id": customer_id, PURCHASE_DAYS: days, AS_OF: h.as_of})
            memberships = {
                name: assign(scheme, segment_row) for name, scheme in self._state["schemes"].items()
            }
            out.append(
                {
                    "customer_id": customer_id,
                    "as_of": state["as_of"] if h.as_of is None else h.as_of.isoformat(),
                    "features": row,
                    "memberships": memberships,
                    **predictions,
                    "purchase_propensity": propensity,
                }
            )
        return out

    def purchase_propensity(self, row: Mapping[str, Any]) -> float | None:
        """P(buys within the run's holdout length) by the run's classifier; None without one.

        ``row`` holds the customer's features and attributes; a customer without a
        purchase (``frequency`` None) gets None, as in the run. Text attributes are coded
        by the category lists fixed at fit time (unknown or missing: the missing branch).

        Examples
        --------
        >>> Scorer({"features": {}, "schemes": {}, "models": None}).purchase_propensity({})
        """
        return self._propensities([row])[0]

    def _propensities(self, rows: Sequence[Mapping[str, Any]]) -> list[float | None]:
        """:meth:`purchase_propensity` of several rows, the classifier applied once."""
        model = self._propensity
        out: list[float | None] = [None] * len(rows)
        if model is None:
            return out
        scored = [i for i, row in enumerate(rows) if row.get("frequency") is not None]
        if not scored:
            return out
        matrix = []
        for i in scored:
            values = []
            for name, categorical in zip(model.feature_names_, model.categorical_, strict=True):
                value = rows[i].get(name)
                if categorical:
                    code = encode_categories([value], model.categories_.get(name, []))[0]
                    values.append(float(code))
                elif value is None:
                    values.append(math.nan)
                else:
                    values.append(float(value))
            matrix.append(values)
        probabilities = model.predict_proba(np.array(matrix, dtype=np.float64))
        for k, i in enumerate(scored):
            out[i] = float(probabilities[k])
        return out
