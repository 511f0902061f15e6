"""RFM scoring and the named RFM segments, as Ibis expressions that run in the engine.

Each buying customer gets three scores from 1 to ``bins`` (5 by default):

* **R** from ``recency_days`` (days since the last order, the feature
  ``days_since_last_order``): *fewer* days score *higher*;
* **F** from ``orders`` (purchase orders);
* **M** from the monetary measure: total ``revenue`` net of returns by default
  (:data:`MONETARY_MEASURE`), or ``average_order_value``.

``fm_score`` is the mean of F and M rounded half up, ``floor((F + M) / 2 + 0.5)``
(as BigQuery's ``ROUND`` in the published grid below), and ``rfm_cell`` the three
scores written together, e.g. ``"545"`` (separated by ``-`` when ``bins`` is 10).

Scoring methods (``RFMConfig.method`` and ``RFMConfig.ties``), with ``n`` the number
of buying customers and ``k`` the number of bins:

* ``quantile`` / ``ties: split``: customers are ordered by the measure (worst first),
  ties broken by ``customer_id`` ascending, and cut into ``k`` equal bins exactly as
  SQL ``NTILE(k)``: the first ``n mod k`` bins hold one customer more. Equal values
  may get different scores.
* ``quantile`` / ``ties: shared``: a customer's score is the ``NTILE`` bin of its
  value's *rank* (1 + the number of customers with a strictly worse value), i.e. the
  score the first of its tie group would get under ``split``. Equal values always
  share a score; bins may be unequal; without ties both policies agree.
* ``cuts``: fixed cut points ``c1 < ... < c(k-1)``; bins are closed on the right
  (a value equal to a cut belongs to the lower bin): F and M score 1 for
  ``value <= c1`` up to ``k`` for ``value > c(k-1)``; recency flips, so ``days <= c1``
  scores ``k`` and ``days > c(k-1)`` scores 1. ``ties`` does not apply.

Customers without a purchase (``orders`` 0 or null, or no last-order date) get null
scores and the scheme's ``unassigned`` segment (``"Others"`` by default), so every
customer appears exactly once.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal, get_args

import ibis
import ibis.expr.types as ir

from segvalue.config import RFMConfig, RFMSegmentRule
from segvalue.errors import ConfigError, DataValidationError

__all__ = [
    "DEFAULT_RFM_SEGMENTS",
    "FREQUENCY_COLUMN",
    "MONETARY_MEASURE",
    "RECENCY_COLUMN",
    "MonetaryMeasure",
    "assign_rfm",
    "default_rfm_segments",
    "rfm_scores",
]

MonetaryMeasure = Literal["revenue", "average_order_value"]

#: Feature measured by R: days from the last order to the as-of date.
RECENCY_COLUMN = "days_since_last_order"
#: Feature measured by F: purchase orders.
FREQUENCY_COLUMN = "orders"
#: Default feature measured by M: total revenue net of returns (the usual "monetary").
MONETARY_MEASURE: MonetaryMeasure = "revenue"

_S = RFMSegmentRule

#: The standard named RFM segments on the 5 x 5 grid of R and FM scores, in order
#: (first match wins), ending in an explicit catch-all ``"Others"``.
#:
#: Source: N. Ramiro, "A simple way to segment customers using Google BigQuery and
#: Data Studio", Towards Data Science (2021), code ``online_retail_rfm.sql`` in
#: github.com/noemistatcat/Data_Viz_Portfolio, which maps the UK Data & Marketing
#: Association's 11 RFM personas onto R x FM cells; the same grid is used in many
#: Kaggle / BigQuery RFM notebooks. Names as in the DMA / Putler table ("New
#: Customers" for the grid's "Recent Customers", "Need Attention" for "Customers
#: Needing Attention"). The rectangles below partition the 25 cells, so the
#: catch-all never fires with 5 bins.
DEFAULT_RFM_SEGMENTS: tuple[RFMSegmentRule, ...] = (
    _S(segment="Champions", r=(5, 5), fm=(4, 5)),
    _S(segment="Champions", r=(4, 4), fm=(5, 5)),
    _S(segment="Loyal Customers", r=(5, 5), fm=(3, 3)),
    _S(segment="Loyal Customers", r=(4, 4), fm=(4, 4)),
    _S(segment="Loyal Customers", r=(3, 3), fm=(4, 5)),
    _S(segment="Potential Loyalist", r=(5, 5), fm=(2, 2)),
    _S(segment="Potential Loyalist", r=(4, 4), fm=(2, 3)),
    _S(segment="Potential Loyalist", r=(3, 3), fm=(3, 3)),
    _S(segment="New Customers", r=(5, 5), fm=(1, 1)),
    _S(segment="Promising", r=(3, 4), fm=(1, 1)),
    _S(segment="Need Attention", r=(3, 3), fm=(2, 2)),
    _S(segment="Need Attention", r=(2, 2), fm=(2, 3)),
    _S(segment="About To Sleep", r=(2, 2), fm=(1, 1)),
    _S(segment="At Risk", r=(2, 2), fm=(4, 5)),
    _S(segment="At Risk", r=(1, 1), fm=(3, 3)),
    _S(segment="Can't Lose Them", r=(1, 1), fm=(4, 5)),
    _S(segment="Hibernating", r=(1, 1), fm=(2, 2)),
    _S(segment="Lost", r=(1, 1), fm=(1, 1)),
    _S(segment="Others"),
)

_DEFAULT_BINS = 5


def _grade(score: int, bins: int) -> int:
    """The 1..5 grade of a 1..bins score: ``1 + round_half_up(4 (s - 1) / (bins - 1))``."""
    return 1 + (8 * (score - 1) + (bins - 1)) // (2 * (bins - 1))


def _scale_range(
    span: tuple[int, int] | None, bins: int
) -> tuple[int, int] | Literal[False] | None:
    """The scores in 1..bins whose grade lies in ``span``; False when there are none."""
    if span is None:
        return None
    inside = [s for s in range(1, bins + 1) if span[0] <= _grade(s, bins) <= span[1]]
    return (inside[0], inside[-1]) if inside else False


def default_rfm_segments(bins: int = _DEFAULT_BINS) -> list[RFMSegmentRule]:
    """The default named segments for scores 1..``bins``.

    For 5 bins this is :data:`DEFAULT_RFM_SEGMENTS`. For other bin counts each score
    ``s`` is graded onto the 5-point grid as ``1 + floor(4 (s - 1) / (bins - 1) + 0.5)``
    (1 stays 1, ``bins`` becomes 5, the rest spread evenly) and every range is
    rewritten as the scores whose grade falls in it; a rule no score reaches is
    dropped. The result still partitions the ``bins x bins`` grid of R and FM.

    Parameters
    ----------
    bins
        Number of score bins, 2 to 10.

    Returns
    -------
    list of RFMSegmentRule
        Ordered; first match wins.

    Raises
    ------
    ConfigError
        If ``bins`` is outside 2..10.

    Examples
    --------
    >>> [(r.segment, r.r, r.fm) for r in default_rfm_segments(2)][:-1]
    [('Champions', (2, 2), (2, 2)), ('New Customers', (2, 2), (1, 1)), \
("Can't Lose Them", (1, 1), (2, 2)), ('Lost', (1, 1), (1, 1))]
    """
    if not 2 <= bins <= 10:
        raise ConfigError(f"RFM bins must be 2..10, got {bins}", fix="set bins between 2 and 10")
    rules: list[RFMSegmentRule] = []
    for rule in DEFAULT_RFM_SEGMENTS:
        spans = {name: _scale_range(getattr(rule, name), bins) for name in ("r", "f", "m", "fm")}
        if any(span is False for span in spans.values()):
            continue
        rules.append(RFMSegmentRule(segment=rule.segment, **spans))
    return rules


def _check_inputs(features: ir.Table, config: RFMConfig, monetary: str) -> None:
    if monetary not in get_args(MonetaryMeasure):
        raise ConfigError(
            f"unknown RFM monetary measure {monetary!r}",
            fix=f"use one of {list(get_args(MonetaryMeasure))}",
        )
    needed = ["customer_id", RECENCY_COLUMN, FREQUENCY_COLUMN, monetary]
    missing = [c for c in needed if c not in features.columns]
    if missing:
        raise DataValidationError(
            f"RFM scheme {config.name!r}: the feature table lacks column(s) {missing}",
            fix="build the table with segvalue.features.customer.customer_features",
        )


def _ntile(position: ir.IntegerValue, n: ir.IntegerValue, bins: int) -> ir.IntegerValue:
    """SQL ``NTILE(bins)`` of a 1-based position among ``n`` rows, as plain arithmetic.

    The first ``n mod bins`` bins hold ``n div bins + 1`` rows, the others ``n div bins``.
    """
    small = n // bins
    extra = n - small * bins
    in_big = extra * (small + 1)
    big_bin = (position - 1) // (small + 1) + 1
    # small is 0 only when n < bins, and then every position is in a big bin.
    small_bin = extra + (position - 1 - in_big) // small.nullif(0) + 1
    return ibis.ifelse(position <= in_big, big_bin, small_bin).cast("int64")


def _position(table: ir.Table, column: str, ties: str, higher_is_better: bool) -> ir.IntegerValue:
    """1-based position among buyers, worst value first: row number (split) or rank (shared)."""
    key = table[column] if higher_is_better else table[column].desc()
    if ties == "split":
        window = ibis.window(group_by=table.is_scored, order_by=[key, table.customer_id])
        return ibis.row_number().over(window) + 1
    return ibis.rank().over(ibis.window(group_by=table.is_scored, order_by=[key])) + 1


def _cut_score(
    value: ir.NumericValue, cuts: Sequence[float], bins: int, higher_is_better: bool
) -> ir.IntegerValue:
    scores = range(1, bins + 1) if higher_is_better else range(bins, 0, -1)
    branches = [(value <= cut, score) for cut, score in zip(cuts, scores, strict=False)]
    return ibis.cases(*branches, else_=scores[-1]).cast("int64")


def rfm_scores(
    features: ir.Table, config: RFMConfig, *, monetary: MonetaryMeasure = MONETARY_MEASURE
) -> ir.Table:
    """R, F and M scores per customer, computed in the engine.

    Parameters
    ----------
    features
        The customer feature table (``customer_id``, ``days_since_last_order``,
        ``orders`` and the monetary column), one row per customer.
    config
        The RFM scheme: ``bins``, ``method`` (``quantile`` / ``cuts``), ``cuts`` and
        ``ties`` (``split`` / ``shared``); see the module docstring for the definitions.
    monetary
        ``"revenue"`` (total, net of returns; default) or ``"average_order_value"``.

    Returns
    -------
    ibis.expr.types.Table
        ``customer_id``, ``recency_days``, ``orders``, ``monetary``, ``r_score``,
        ``f_score``, ``m_score``, ``fm_score`` (all int64, null without a purchase) and
        ``rfm_cell`` (e.g. ``"545"``), one row per input row.

    Raises
    ------
    DataValidationError
        If a needed column is missing.
    ConfigError
        If ``monetary`` is not a known measure.

    Examples
    --------
    >>> import ibis
    >>> from segvalue.config import RFMConfig
    >>> f = ibis.memtable({"customer_id": ["a", "b", "c", "d"],
    ...     "days_since_last_order": [3, 40, 40, None], "orders": [4, 1, 2, 0],
    ...     "revenue": [90.0, 10.0, 30.0, 0.0]})
    >>> s = rfm_scores(f, RFMConfig(type="rfm", bins=3)).order_by("customer_id")
    >>> s.select("customer_id", "rfm_cell", "fm_score").to_pyarrow().to_pylist()[:2]
    [{'customer_id': 'a', 'rfm_cell': '333', 'fm_score': 3}, \
{'customer_id': 'b', 'rfm_cell': '111', 'fm_score': 1}]
    """
    _check_inputs(features, config, monetary)
    table = features.select(
        "customer_id",
        recency_days=features[RECENCY_COLUMN].cast("int64"),
        orders=features[FREQUENCY_COLUMN].cast("int64"),
        monetary=features[monetary].cast("float64"),
    )
    buyer = (table.orders > 0) & table.recency_days.notnull() & table.monetary.notnull()
    table = table.mutate(is_scored=buyer.fill_null(False))
    bins = config.bins
    measures = {"r": "recency_days", "f": "orders", "m": "monetary"}
    scores: dict[str, ir.IntegerValue] = {}
    if config.method == "cuts":
        names: dict[str, Literal["recency", "frequency", "monetary"]] = {
            "r": "recency",
            "f": "frequency",
            "m": "monetary",
        }
        for short, column in measures.items():
            cuts = (config.cuts or {})[names[short]]
            scores[short] = _cut_score(table[column], cuts, bins, higher_is_better=short != "r")
    else:
        # Positions and the buyer count first, so the engine computes each window once.
        table = table.mutate(
            rfm_n_=table.customer_id.count().over(ibis.window(group_by=table.is_scored)),
            **{
                f"rfm_{short}_pos_": _position(table, column, config.ties, short != "r")
                for short, column in measures.items()
            },
        )
        for short in measures:
            scores[short] = _ntile(table[f"rfm_{short}_pos_"], table.rfm_n_, bins)
    table = table.mutate(
        **{
            f"{short}_score": ibis.cases((table.is_scored, score), else_=ibis.null("int64"))
            for short, score in scores.items()
        }
    )
    sep = "-" if bins >= 10 else ""
    cell = (
        table.r_score.cast("string")
        + sep
        + table.f_score.cast("string")
        + sep
        + table.m_score.cast("string")
    )
    return table.select(
        "customer_id",
        "recency_days",
        "orders",
        "monetary",
        "r_score",
        "f_score",
        "m_score",
        fm_score=((table.f_score + table.m_score + 1) // 2).cast("int64"),
        rfm_cell=ibis.cases((table.is_scored, cell), else_=ibis.null("string")),
    )


def _matches(table: ir.Table, rule: RFMSegmentRule) -> ir.BooleanValue:
    condition: ir.BooleanValue = table.r_score.notnull()
    for name in ("r", "f", "m", "fm"):
        span = getattr(rule, name)
        if span is not None:
            condition = condition & table[f"{name}_score"].between(span[0], span[1])
    return condition


def assign_rfm(
    features: ir.Table, config: RFMConfig, *, monetary: MonetaryMeasure = MONETARY_MEASURE
) -> ir.Table:
    """Exactly one named RFM segment per customer, computed in the engine.

    The rules are ``config.segments`` or, when omitted, :func:`default_rfm_segments`
    for ``config.bins``; the first rule whose score ranges all hold wins. Customers
    without a purchase, or matching no rule, get ``config.unassigned``.

    Parameters
    ----------
    features
        The customer feature table, as for :func:`rfm_scores`.
    config
        The RFM scheme.
    monetary
        As for :func:`rfm_scores`.

    Returns
    -------
    ibis.expr.types.Table
        ``customer_id``, ``segment``, ``r_score``, ``f_score``, ``m_score``,
        ``fm_score``, ``rfm_cell``; one row per input row.

    Examples
    --------
    >>> import ibis
    >>> from segvalue.config import RFMConfig
    >>> f = ibis.memtable({"customer_id": ["a", "b", "c", "d", "e", "f"],
    ...     "days_since_last_order": [2, 5, 300, 400, 30, None],
    ...     "orders": [9, 1, 8, 1, 3, 0], "revenue": [900.0, 20.0, 700.0, 15.0, 90.0, 0.0]})
    >>> out = assign_rfm(f, RFMConfig(type="rfm")).order_by("customer_id").to_pyarrow()
    >>> out.column("segment").to_pylist()
    ['Champions', 'Potential Loyalist', 'At Risk', 'Lost', 'Potential Loyalist', 'Others']
    """
    scores = rfm_scores(features, config, monetary=monetary)
    rules = config.segments if config.segments is not None else default_rfm_segments(config.bins)
    if rules:
        branches = [(_matches(scores, rule), rule.segment) for rule in rules]
        segment = ibis.cases(*branches, else_=config.unassigned)
    else:
        segment = ibis.literal(config.unassigned)
    return scores.select(
        "customer_id",
        segment=segment.cast("string"),
        r_score=scores.r_score,
        f_score=scores.f_score,
        m_score=scores.m_score,
        fm_score=scores.fm_score,
        rfm_cell=scores.rfm_cell,
    )
