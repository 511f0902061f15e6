"""The valuation stage: CLV models, per-customer scores and purchase propensity.

:func:`value_customers` fits the transaction and spend models on per-customer summaries,
scores each distinct history once and joins the scores back to every customer in the
engine; with a holdout it also trains the purchase-propensity classifier
(:func:`add_propensity`). :func:`fit_clv_models` is the fit alone, shared with
``clv`` on a file.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from segvalue.config import Config
from segvalue.errors import ConfigError
from segvalue.units import TimeUnit

if TYPE_CHECKING:
    import pyarrow as pa

    from segvalue.data.validation import ValidatedData
    from segvalue.models.base import Histories
    from segvalue.valuation import Valuation


@dataclass(frozen=True)
class Valued:
    """What the valuation stage produced.

    Attributes
    ----------
    valuation
        The fitted models, holdout and propensity reports; None when too few customers
        bought twice to fit a transaction model (the run warns instead).
    features
        The customer features with the scores joined (an engine table; unchanged when
        ``valuation`` is None).
    """

    valuation: Valuation | None
    features: Any


#: Below this many repeat customers no transaction model is fitted (the run warns instead).
MIN_REPEAT_CUSTOMERS_FOR_CLV = 10


def _scalar_of(expr: Any) -> Any:
    return expr.to_pyarrow().as_py()


def value_customers(
    config: Config, data: ValidatedData, features: Any, *, contacts: Sequence[str]
) -> Valued:
    """Fit the CLV models, score each unique (x, t_x, T, m) pattern, join back in the engine.

    Models never see raw transactions: they are fitted on per-customer summaries and
    evaluated once per distinct pattern; the engine joins the scores to every customer.
    Customers without a purchase (prospects) get null scores. ``contacts``: the contact
    columns of the customers table (:func:`segvalue.pipeline.ingest.contact_columns_of`),
    never model inputs.

    Examples
    --------
    With a holdout (39 weeks of CDNOW's 78), the purchase propensity is trained too:

    >>> import tempfile, pathlib
    >>> from segvalue.config import parse_config
    >>> from segvalue.data.datasets import copy_cdnow
    >>> from segvalue.pipeline.ingest import load
    >>> path = copy_cdnow(pathlib.Path(tempfile.mkdtemp()))
    >>> columns = {"order_id": "_row", "customer_id": "customer_id", "order_ts": "date",
    ...            "amount": "dollar_value"}
    >>> source = {"path": str(path), "csv": {"delimiter": "whitespace"}, "columns": columns}
    >>> cfg = parse_config({"sources": {"orders": source}, "as_of": "1998-06-30",
    ...                     "clv": {"holdout": 39}})
    >>> from segvalue.pipeline.features import compute_features
    >>> from segvalue.pipeline.stage import Steps
    >>> data = load(cfg)
    >>> valued = value_customers(cfg, data, compute_features(data, Steps(1, None)).table,
    ...                          contacts=())
    >>> sorted(c for c in valued.features.columns if "clv" in c or "propensity" in c)
    ['clv', 'clv_lower', 'clv_upper', 'purchase_propensity']
    >>> valued.valuation.propensity["customers"]
    23570
    """

    import pyarrow as pa

    from segvalue.data.readers import engine_table
    from segvalue.features.materialise import to_numpy
    from segvalue.units import per_period_rate
    from segvalue.valuation import score_customers

    report, settings = data.report, config.clv
    unit, as_of = report.time_unit, report.as_of
    # ``features`` is materialised (by the caller): sums of floats in a parallel engine
    # may differ in the last bit between two evaluations, and the scores are joined back
    # on these values.
    repeaters = int(_scalar_of(features.filter(features.frequency > 0).count()))
    if repeaters < MIN_REPEAT_CUSTOMERS_FOR_CLV:
        report.warnings.append(
            f"CLV not computed: {repeaters} repeat customers, at least "
            f"{MIN_REPEAT_CUSTOMERS_FOR_CLV} are needed to fit a transaction model"
        )
        return Valued(None, features)
    calibration_end = None
    if settings.holdout is not None:
        calibration_end = as_of - dt.timedelta(days=round(settings.holdout * unit.days))
    valuation = fit_clv_models(
        data.tables["orders"],
        as_of=as_of,
        unit=unit,
        calibration_end=calibration_end,
        model=settings.model,
        spend_model=settings.spend_model,
    )
    keys = ["frequency", "recency", "T", "monetary_value"]
    patterns = features.filter(features.frequency.notnull()).select(*keys).distinct()
    arrays = to_numpy(patterns)
    scores = score_customers(
        valuation,
        arrays,
        horizon=settings.horizon,
        discount_rate=per_period_rate(settings.discount_rate, unit),
        margin=settings.margin,
    )
    # The fit's doubts reach the console and run.json with the other warnings of the run.
    report.warnings.extend(f"CLV: {w}" for w in valuation.warnings)
    scored = engine_table(data.con, pa.table({**{k: arrays[k] for k in keys}, **scores}))
    joined = features.left_join(scored, keys).drop(*(f"{k}_right" for k in keys))
    if calibration_end is not None:
        # Scored from the materialised features (the classifier ignores the CLV scores),
        # so the join above runs once, when the caller materialises the result.
        propensity = add_propensity(data, valuation, features, calibration_end, contacts)
        joined = joined.left_join(propensity, "customer_id").drop("customer_id_right")
    return Valued(valuation, joined)


def fit_clv_models(
    table: Any,
    *,
    as_of: dt.date,
    unit: TimeUnit,
    calibration_end: dt.date | None,
    model: str,
    spend_model: str,
    full: dict[str, Any] | None = None,
    histories: Histories | None = None,
) -> Valuation:
    """Fit the CLV models on orders in the engine, with a holdout report when asked.

    ``full`` (features at ``as_of``) and its ``histories`` are used when there is no
    holdout: then the calibration period is the whole history.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> from segvalue.config import parse_config
    >>> from segvalue.data.datasets import copy_cdnow
    >>> from segvalue.pipeline.ingest import load
    >>> path = copy_cdnow(pathlib.Path(tempfile.mkdtemp()))
    >>> columns = {"order_id": "_row", "customer_id": "customer_id", "order_ts": "date",
    ...            "amount": "dollar_value"}
    >>> source = {"path": str(path), "csv": {"delimiter": "whitespace"}, "columns": columns}
    >>> cfg = parse_config({"sources": {"orders": source}, "as_of": "1998-06-30"})
    >>> data = load(cfg)
    >>> valuation = fit_clv_models(data.tables["orders"], as_of=data.report.as_of,
    ...                            unit=data.report.time_unit, calibration_end=None,
    ...                            model="bgnbd", spend_model="gamma-gamma")
    >>> type(valuation.transactions).__name__, valuation.to_dict()["n_customers"]
    ('BetaGeoModel', 23570)
    """
    from segvalue.features.materialise import to_numpy
    from segvalue.features.rfm import calibration_holdout, repeat_purchases_by_period, rfm_features
    from segvalue.valuation import fit_valuation

    holdout, cumulative = None, None
    if calibration_end is None:
        calibration = (
            full if full is not None else to_numpy(rfm_features(table, as_of=as_of, time_unit=unit))
        )
        if full is None:
            histories = None
    else:
        histories = None
        if calibration_end >= as_of:
            raise ConfigError(
                f"calibration end {calibration_end} is not before the observation end {as_of}",
                fix="choose an earlier calibration end (or a later observation end)",
            )
        calibration = to_numpy(
            calibration_holdout(
                table, calibration_end=calibration_end, observation_end=as_of, time_unit=unit
            )
        )
        holdout = (calibration["frequency_holdout"], float(calibration["duration_holdout"][0]))
        start = calibration["first_purchase"].min().astype(dt.date)
        counts = to_numpy(repeat_purchases_by_period(table, start=start, end=as_of, time_unit=unit))
        n_periods = int(np.ceil(((as_of - start).days + 1) / unit.days))
        per_period = np.zeros(n_periods + 1)
        np.add.at(per_period, counts["period"].astype(np.int64), counts["repeat_purchases"])
        cumulative = (np.arange(1, n_periods + 1, dtype=float), np.cumsum(per_period[1:]))
    return fit_valuation(
        calibration,
        model=model,
        spend_model=spend_model,
        time_unit=unit,
        holdout=holdout,
        cumulative=cumulative,
        histories=histories,
    )


def model_documents(valuation: Valuation | None) -> dict[str, Any]:
    """The fitted CLV models as JSON documents (reloadable with ``model_from_json``).

    Examples
    --------
    >>> model_documents(None)
    {}
    """
    if valuation is None:
        return {}
    docs = {"clv_transaction_model": valuation.transactions.to_dict()}
    if valuation.spend is not None:
        docs["clv_spend_model"] = valuation.spend.to_dict()
    if valuation.propensity_model is not None:  # its category lists travel with it
        docs["purchase_propensity_model"] = valuation.propensity_model.to_dict()
    return docs


# Columns that identify or date a customer rather than describe behaviour.
_NOT_FEATURES = {"customer_id", "first_purchase", "last_purchase"}
_SCORES = {
    "probability_alive",
    "churn_risk",
    "expected_purchases",
    "expected_spend",
    "clv",
    "clv_lower",
    "clv_upper",
}


def _feature_matrix(
    features: pa.Table,
    customers: pa.Table | None,
    names: list[str] | None = None,
    categories: dict[str, list[str]] | None = None,
) -> tuple[np.ndarray[Any, Any], list[str], list[bool], dict[str, list[str]]]:
    """Numeric features plus customer attributes (categoricals as integer codes).

    The category list of each text column is fixed once, at fit time (``categories``
    None: the sorted distinct values), and passed back at scoring time, so a code means
    the same category in both; a value unknown to the list, or missing, is NaN (the
    classifier's missing branch). Returns the matrix, column names, which columns are
    categorical, and the category lists.
    """
    import pyarrow as pa
    import pyarrow.compute as pc

    table = features
    if customers is not None:
        extra = [c for c in customers.column_names if c not in table.column_names]
        table = table.join(customers.select(["customer_id", *extra]), "customer_id")
        table = table.sort_by("customer_id")
    columns, kinds, matrix = [], [], []
    fitted = {} if categories is None else categories
    learned: dict[str, list[str]] = {}
    for name in table.column_names:
        if name in _NOT_FEATURES or name in _SCORES or name.startswith("_"):
            continue
        if names is not None and name not in names:
            continue
        column = table.column(name)
        kind = column.type
        if pa.types.is_integer(kind) or pa.types.is_floating(kind) or pa.types.is_boolean(kind):
            values = column.cast(pa.float64()).to_numpy(zero_copy_only=False)
            categorical = False
        elif pa.types.is_string(kind) or pa.types.is_large_string(kind):
            if categories is None:
                distinct = sorted(v for v in pc.unique(column).to_pylist() if v is not None)
                if len(distinct) > 50:  # identifiers such as e-mail: no signal
                    continue
                learned[name] = distinct
            elif name not in fitted:
                continue
            values = _category_codes(column, fitted.get(name, learned.get(name, [])))
            categorical = True
        else:
            continue
        columns.append(name)
        kinds.append(categorical)
        matrix.append(np.nan_to_num(values, nan=np.nan))
    if names is not None:
        order = [columns.index(n) for n in names if n in columns]
        columns = [columns[i] for i in order]
        kinds = [kinds[i] for i in order]
        matrix = [matrix[i] for i in order]
    return np.column_stack(matrix), columns, kinds, (learned if categories is None else fitted)


def _category_codes(column: pa.ChunkedArray, categories: list[str]) -> np.ndarray[Any, Any]:
    """:func:`encode_categories` of a text column: each distinct value coded once.

    A column holds a few distinct values in many rows; coding the distinct values and
    mapping the rows to them gives the same codes without a Python object per row.
    """
    import pyarrow.compute as pc

    from segvalue.models.propensity import encode_categories

    encoded = pc.dictionary_encode(column.combine_chunks())
    # One code per distinct value, and NaN (index len(dictionary)) for a missing value.
    codes = np.append(encode_categories(encoded.dictionary.to_pylist(), categories), np.nan)
    index = pc.fill_null(encoded.indices, len(encoded.dictionary))
    return np.asarray(codes[index.to_numpy(zero_copy_only=False)])


def add_propensity(
    data: ValidatedData,
    valuation: Valuation,
    features: Any,
    calibration_end: dt.date,
    contacts: Sequence[str] = (),
) -> Any:
    """Train "buys in the next holdout-length window" on calibration-time features.

    Labels come from the holdout period; 30 % of customers (by a hash of their id) are
    held out to compare the classifier with the BTYD baseline. The classifier then
    scores every customer of ``features`` (their features at the observation end);
    returns ``(customer_id, purchase_propensity)`` of the buyers as an engine table.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> from segvalue.config import parse_config
    >>> from segvalue.data.datasets import copy_cdnow
    >>> from segvalue.pipeline.ingest import load
    >>> path = copy_cdnow(pathlib.Path(tempfile.mkdtemp()))
    >>> columns = {"order_id": "_row", "customer_id": "customer_id", "order_ts": "date",
    ...            "amount": "dollar_value"}
    >>> source = {"path": str(path), "csv": {"delimiter": "whitespace"}, "columns": columns}
    >>> cfg = parse_config({"sources": {"orders": source}, "as_of": "1998-06-30"})
    >>> from segvalue.pipeline.features import compute_features
    >>> from segvalue.pipeline.stage import Steps
    >>> data = load(cfg)
    >>> calibration_end = dt.date(1997, 9, 30)
    >>> valuation = fit_clv_models(data.tables["orders"], as_of=data.report.as_of,
    ...                            unit=data.report.time_unit, calibration_end=calibration_end,
    ...                            model="bgnbd", spend_model="none")
    >>> features = compute_features(data, Steps(1, None)).table
    >>> scores = add_propensity(data, valuation, features, calibration_end)
    >>> scores.columns, sorted(valuation.propensity)[:3]
    (('customer_id', 'purchase_propensity'), ['base_rate', 'btyd_baseline', 'classifier'])
    """
    import ibis
    import pyarrow as pa

    from segvalue.features.customer import customer_features
    from segvalue.features.materialise import to_arrow
    from segvalue.models.propensity import PurchasePropensityModel, evaluate_propensity
    from segvalue.segments.rules import customer_attributes

    report = data.report
    unit, as_of = report.time_unit, report.as_of
    limit = dt.datetime.combine(calibration_end + dt.timedelta(days=1), dt.time())
    tables = dict(data.tables)
    tables["orders"] = tables["orders"].filter(tables["orders"].order_ts < limit)
    if "touchpoints" in tables:
        tables["touchpoints"] = tables["touchpoints"].filter(tables["touchpoints"].ts < limit)
    customers = data.tables.get("customers")
    if customers is not None and contacts:  # contact details are never model inputs
        customers = customers.drop(*contacts)
    # Customer attributes are joined in the engine, and rows come sorted by id from it.
    past = customer_features(tables, as_of=calibration_end, time_unit=unit)
    past = customer_attributes(past.filter(past.frequency.notnull()), customers)
    orders = data.tables["orders"]
    later = orders.filter((orders.order_ts >= limit) & (orders.amount >= 0))
    buyers = later.select("customer_id").distinct().mutate(bought=ibis.literal(True))
    labelled = past.left_join(buyers, "customer_id").drop("customer_id_right")
    labelled = labelled.mutate(bought=labelled.bought.fill_null(False))
    labelled = to_arrow(labelled.order_by("customer_id"))
    matrix, names, kinds, categories = _feature_matrix(labelled.drop(["bought"]), None)
    y = np.asarray(labelled.column("bought").to_numpy(zero_copy_only=False), dtype=bool)
    ids = labelled.column("customer_id").to_pylist()
    test = np.array([hash_id(c) % 10 < 3 for c in ids])
    model = PurchasePropensityModel().fit(
        matrix[~test], y[~test], feature_names=names, categorical=kinds, categories=categories
    )
    t_model = valuation.transactions
    x, t_x, big_t = (
        labelled.column(k).to_numpy(zero_copy_only=False) for k in ("frequency", "recency", "T")
    )
    horizon = (as_of - calibration_end).days / unit.days
    baseline = 1.0 - np.asarray(
        t_model.probability_of_purchases(0, x[test], t_x[test], big_t[test], horizon=horizon)
    )
    valuation.propensity = {
        "horizon": horizon,
        "customers": int(y.size),
        "held_out": int(test.sum()),
        "base_rate": float(y.mean()),
        "features": names,
        "classifier": evaluate_propensity(y[test], model.predict_proba(matrix[test])).to_dict(),
        "btyd_baseline": evaluate_propensity(y[test], baseline).to_dict(),
    }
    valuation.propensity_model = model
    current = customer_attributes(features.filter(features.frequency.notnull()), customers)
    current = to_arrow(current.order_by("customer_id"))
    # Scoring uses the category lists fixed at fit time (stored with the model).
    now, _, _, _ = _feature_matrix(current, None, names, model.categories_)
    scores = pa.table(
        {
            "customer_id": current.column("customer_id"),
            "purchase_propensity": model.predict_proba(now),
        }
    )
    return ibis.memtable(scores)


def hash_id(customer_id: str) -> int:
    """A stable hash of a customer id (Python's hash() is salted per process).

    Examples
    --------
    >>> hash_id("C0000001") == hash_id("C0000001")
    True
    """
    return int(hashlib.blake2b(str(customer_id).encode(), digest_size=4).hexdigest(), 16)
