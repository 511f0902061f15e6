"""Segment profiles: who is in each segment, against the whole customer base.

Every aggregation runs in the engine (one grouped query for the numeric features, category
shares, channel engagement, revenue and CLV scores; one for the categorical attributes);
only the small per-segment result is collected into Arrow tables.

Definitions (``n`` is the number of members with a non-null value of the feature):

- ``index`` = segment mean / population mean x 100 (null when the population mean is 0);
- ``z`` = (segment mean - population mean) / (population sd / sqrt(n)), the population
  sd being the sample standard deviation over every customer (no finite-population
  correction, so ``z`` is conservative for segments that are a large part of the base);
- categories: the mean share of wallet ``share_<category>`` of the members;
- channels: the share of members who engaged (``engaged_<channel>`` > 0) at least once;
- categorical attributes (region, city, lifestyle, ...): the share of members with each
  value among members whose value is known;
- ``monetary_value`` (the mean of *repeat* purchases, 0 by the BTYD convention for
  customers who bought once) is profiled over repeat buyers only: a zero there means
  "undefined", and averaging it in made every segment of repeat buyers look big-basket.

Contact columns (e-mail, phone, names, street address, postal code and ``privacy.pii``;
see :mod:`segvalue.features.privacy`) are never profiled, whatever their number of values.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import ibis
import ibis.expr.types as ir
import pyarrow as pa

from segvalue.errors import DataValidationError, did_you_mean
from segvalue.features.privacy import contact_columns
from segvalue.segments.rules import customer_attributes

__all__ = [
    "SCORE_COLUMNS",
    "SegmentProfiler",
    "SegmentProfiles",
    "as_memberships",
    "segment_profiles",
]

#: Per-customer CLV-step scores: summarised per segment, not profiled as features.
SCORE_COLUMNS: tuple[str, ...] = (
    "clv",
    "clv_lower",
    "clv_upper",
    "probability_alive",
    "churn_risk",
    "expected_purchases",
    "expected_spend",
    "purchase_propensity",
)
#: Identifier and date columns that describe no behaviour.
_NOT_PROFILED = {"customer_id", "scheme", "segment", "first_purchase", "last_purchase"}
#: String columns with more distinct values than this are identifiers.
MAX_LEVELS = 50
#: Features defined only for repeat buyers (the BTYD convention stores 0 for the others).
REPEAT_ONLY: tuple[str, ...] = ("monetary_value",)
#: Features that measure money spent: meaningless as traits when every amount is equal.
SPEND_FEATURES: tuple[str, ...] = (
    "revenue",
    "gross_revenue",
    "monetary_value",
    "average_order_value",
    "returns_amount",
)
_DEFAULT_SCHEME = "segments"


def as_memberships(memberships: ir.Table | pa.Table, *, scheme: str | None = None) -> ir.Table:
    """A membership table as an Ibis table ``(customer_id, scheme, segment)``.

    Parameters
    ----------
    memberships
        Ibis or Arrow table with ``customer_id`` and ``segment``, and ``scheme`` when it
        holds several schemes.
    scheme
        Scheme name to use when the table has no ``scheme`` column (default
        ``"segments"``).

    Returns
    -------
    ibis.expr.types.Table

    Raises
    ------
    DataValidationError
        If ``customer_id`` or ``segment`` is missing.

    Examples
    --------
    >>> import pyarrow as pa
    >>> m = as_memberships(pa.table({"customer_id": ["a"], "segment": ["X"]}), scheme="rfm")
    >>> m.to_pyarrow().to_pylist()
    [{'customer_id': 'a', 'scheme': 'rfm', 'segment': 'X'}]
    """
    table = ibis.memtable(memberships) if isinstance(memberships, pa.Table) else memberships
    missing = [c for c in ("customer_id", "segment") if c not in table.columns]
    if missing:
        raise DataValidationError(
            f"membership table lacks column(s) {missing} (has {list(table.columns)})",
            fix="pass a table with customer_id, segment and, for several schemes, scheme",
        )
    label = ibis.literal(scheme or _DEFAULT_SCHEME)
    scheme_col = table.scheme.cast("string") if "scheme" in table.columns else label
    return table.select(
        customer_id=table.customer_id, scheme=scheme_col, segment=table.segment.cast("string")
    )


def check_columns(table: ir.Table, names: Sequence[str], what: str) -> None:
    """Raise a DataValidationError naming the first column of ``names`` not in ``table``."""
    for name in names:
        if name not in table.columns:
            hint = did_you_mean(name, table.columns)
            raise DataValidationError(
                f"{what}: column {name!r} is not in the customer features{hint}",
                fix=f"use one of {sorted(table.columns)}",
            )


def _numeric_columns(features: ir.Table, private: Sequence[str]) -> list[str]:
    schema = features.schema()
    return [
        name
        for name, dtype in schema.items()
        if (dtype.is_numeric() or dtype.is_boolean())
        and name not in _NOT_PROFILED
        and name not in private
        and name not in SCORE_COLUMNS
        and not name.startswith(("share_", "touches_", "engaged_", "_"))
    ]


def _string_columns(features: ir.Table, max_levels: int, private: Sequence[str]) -> list[str]:
    schema = features.schema()
    names = [
        n
        for n, t in schema.items()
        if t.is_string() and n not in _NOT_PROFILED and n not in private
    ]
    if not names:
        return []
    counts = features.aggregate(**{f"c{i}": features[n].nunique() for i, n in enumerate(names)})
    row = counts.to_pyarrow().to_pylist()[0]
    return [n for i, n in enumerate(names) if 0 < (row[f"c{i}"] or 0) <= max_levels]


@dataclass(frozen=True)
class SegmentProfiles:
    """Profiles of every segment of one or more schemes.

    Attributes
    ----------
    segments
        One row per (scheme, segment): ``customers``, ``share`` (of all customers),
        ``revenue``, ``revenue_share`` and, when the features carry CLV scores,
        ``clv_mean``, ``clv_total``, ``probability_alive_mean``, ``churn_risk_mean``.
    numeric
        One row per (scheme, segment, feature): ``segment_mean``, ``segment_median``,
        ``n``, ``population_mean``, ``population_median``, ``population_sd``, ``index``,
        ``z``.
    attributes
        One row per (scheme, segment, kind, attribute, value) with ``kind`` one of
        ``category``, ``channel``, ``attribute``: ``members`` (members with that value;
        null for categories and channels), ``segment_rate``, ``population_rate``,
        ``population_sd`` (of the per-customer share or yes / no indicator), ``index``
        and ``z`` (for channels and attributes the binomial z of a proportion).
    population
        Number of customers in the feature table.
    constant_amounts
        Every order had the same amount (count-only data, e.g. every amount 1.0): spend
        features then only restate the number of orders.
    """

    segments: pa.Table
    numeric: pa.Table
    attributes: pa.Table
    population: int
    constant_amounts: bool = False

    def to_dict(self) -> dict[str, Any]:
        """The profiles as JSON-ready lists of rows."""
        return {
            "population": self.population,
            "segments": self.segments.to_pylist(),
            "numeric": self.numeric.to_pylist(),
            "attributes": self.attributes.to_pylist(),
            "constant_amounts": self.constant_amounts,
        }

    def schemes(self) -> list[str]:
        """Scheme names, sorted."""
        return sorted(set(self.segments.column("scheme").to_pylist()))


def _ratio(num: float | None, den: float | None) -> float | None:
    if num is None or den is None or den == 0:
        return None
    return float(num) / float(den)


def _index(segment: float | None, population: float | None) -> float | None:
    ratio = _ratio(segment, population)
    return None if ratio is None else 100.0 * ratio


def _z(mean: float | None, pop_mean: float | None, sd: float | None, n: int) -> float | None:
    if mean is None or pop_mean is None or sd is None or n <= 0 or sd <= 0 or math.isnan(sd):
        return None
    return (float(mean) - float(pop_mean)) / (float(sd) / math.sqrt(n))


def as_float(column: ir.Value) -> ir.FloatingValue:
    """A numeric or boolean column as float64 (PostgreSQL cannot cast boolean to double).

    Examples
    --------
    >>> import ibis
    >>> t = ibis.memtable({"b": [True, False, None]})
    >>> t.select(x=as_float(t.b)).to_pyarrow().column("x").to_pylist()
    [1.0, 0.0, None]
    """
    if column.type().is_boolean():
        return ibis.cases((column, 1.0), (~column, 0.0), else_=ibis.null("float64"))
    return column.cast("float64")


def _binomial_sd(rate: float | None) -> float | None:
    """Standard deviation of a yes / no indicator with mean ``rate``."""
    return None if rate is None else math.sqrt(max(rate * (1.0 - rate), 0.0))


def segment_profiles(
    memberships: ir.Table | pa.Table,
    features: ir.Table,
    *,
    numeric: Sequence[str] | None = None,
    categorical: Sequence[str] | None = None,
    customers: ir.Table | None = None,
    scheme: str | None = None,
    max_levels: int = MAX_LEVELS,
    pii: Sequence[str] | None = None,
) -> SegmentProfiles:
    """Profile each segment against the whole customer base, aggregating in the engine.

    Parameters
    ----------
    memberships
        ``(customer_id, segment)`` or ``(customer_id, scheme, segment)``; see
        :func:`as_memberships`.
    features
        The customer feature table (one row per customer: the population).
    numeric
        Numeric features to profile (default: every numeric or boolean column except
        identifiers, CLV scores and the ``share_`` / ``touches_`` / ``engaged_`` columns,
        which are profiled as categories and channels).
    categorical
        Categorical attributes to profile (default: every string column with at most
        ``max_levels`` distinct values, e.g. region, city, gender, lifestyle).
    customers
        Customer attributes to join to ``features`` (columns ``features`` lacks).
    scheme
        Scheme name when ``memberships`` has no ``scheme`` column.
    max_levels
        Above this many distinct values a string column is treated as an identifier.
    pii
        Contact columns, never profiled (default: those
        :func:`segvalue.features.privacy.contact_columns` finds by name and content).

    Returns
    -------
    SegmentProfiles

    Raises
    ------
    DataValidationError
        If a requested column is missing, not of the right type or a contact column.

    Examples
    --------
    >>> import ibis
    >>> f = ibis.memtable({"customer_id": ["a", "b", "c", "d"],
    ...                    "income": [10.0, 20.0, 30.0, 40.0], "revenue": [1.0, 1.0, 1.0, 5.0]})
    >>> m = ibis.memtable({"customer_id": ["a", "b", "c", "d"], "segment": ["L", "L", "H", "H"]})
    >>> p = segment_profiles(m, f)
    >>> p.segments.select(["segment", "customers", "share", "revenue_share"]).to_pylist()[0]
    {'segment': 'H', 'customers': 2, 'share': 0.5, 'revenue_share': 0.75}
    >>> row = p.numeric.to_pylist()[0]
    >>> row["segment"], row["feature"], row["segment_mean"], row["index"]
    ('H', 'income', 35.0, 140.0)
    """
    profiler = SegmentProfiler(
        features,
        numeric=numeric,
        categorical=categorical,
        customers=customers,
        max_levels=max_levels,
        pii=pii,
    )
    profiler.add(memberships, scheme=scheme)
    return profiler.result()


class SegmentProfiler:
    """:func:`segment_profiles` in two phases: memberships added in parts, one result.

    The population is aggregated once, when the profiler is made; each :meth:`add` runs
    the per-segment queries of the schemes it is given. So a caller can profile the
    schemes it has while another is still being computed (a cluster fit) and add that
    one later; :meth:`result` is what :func:`segment_profiles` of all the memberships at
    once returns (same rows, same order). A scheme must come in one part only.

    Parameters
    ----------
    features, numeric, categorical, customers, max_levels, pii
        As in :func:`segment_profiles`.

    Examples
    --------
    >>> import ibis
    >>> f = ibis.memtable({"customer_id": ["a", "b", "c", "d"], "income": [1.0, 2.0, 3.0, 4.0]})
    >>> profiler = SegmentProfiler(f)
    >>> profiler.add(ibis.memtable({"customer_id": ["a", "b", "c", "d"],
    ...                             "segment": ["L", "L", "H", "H"]}), scheme="s1")
    >>> profiler.add(ibis.memtable({"customer_id": ["a", "b", "c", "d"],
    ...                             "segment": ["x", "y", "y", "y"]}), scheme="s2")
    >>> profiler.result().segments.select(["scheme", "segment", "customers"]).to_pylist()[-1]
    {'scheme': 's2', 'segment': 'x', 'customers': 1}
    """

    def __init__(
        self,
        features: ir.Table,
        *,
        numeric: Sequence[str] | None = None,
        categorical: Sequence[str] | None = None,
        customers: ir.Table | None = None,
        max_levels: int = MAX_LEVELS,
        pii: Sequence[str] | None = None,
    ) -> None:
        features = customer_attributes(features, customers)
        private = list(contact_columns(features) if pii is None else pii)
        for what, names in (("numeric", numeric), ("categorical", categorical)):
            _refuse_contacts(names or (), private, what)
        if numeric is None:
            numeric = _numeric_columns(features, private)
        else:
            check_columns(features, numeric, "numeric profile features")
            for name in numeric:
                dtype = features.schema()[name]
                if not (dtype.is_numeric() or dtype.is_boolean()):
                    raise DataValidationError(
                        f"numeric profile features: column {name!r} is {dtype}, not numeric",
                        fix="list it under 'categorical' instead",
                    )
        if categorical is None:
            categorical = _string_columns(features, max_levels, private)
        else:
            check_columns(features, categorical, "categorical profile attributes")
        columns = list(features.columns)
        channels = [c for c in columns if c.startswith("engaged_")]
        self._features = features
        self._numeric = list(numeric)
        self._categorical = list(categorical)
        self._categories = [c for c in columns if c.startswith("share_")]
        self._channels = channels or [c for c in columns if c.startswith("touches_")]
        self._scores = [c for c in ("clv", "probability_alive", "churn_risk") if c in columns]
        self._revenue = "revenue" if "revenue" in columns else None
        self._spend_check = {"average_order_value", "orders"} <= set(columns)
        self._pop = features.aggregate(**self._aggregates(features, True)).to_pyarrow()
        self._pop_counts = (
            _value_counts(features.select("customer_id", *self._categorical), [], self._categorical)
            if self._categorical
            else []
        )
        self._rows: list[dict[str, Any]] = []
        self._counts: list[dict[str, Any]] = []

    def _feature(self, t: ir.Table, name: str) -> ir.FloatingValue:
        col = as_float(t[name])
        if name in REPEAT_ONLY and "frequency" in t.columns:
            return ibis.cases((t.frequency > 0, col), else_=ibis.null("float64"))
        return col

    def _aggregates(self, t: ir.Table, population: bool) -> dict[str, Any]:
        aggs: dict[str, Any] = {"customers": t.customer_id.count()}
        if self._revenue is not None:
            aggs["revenue"] = t[self._revenue].cast("float64").sum()
        if population and self._spend_check:
            buyers = t.orders > 0
            aggs["_aov_min"] = t.average_order_value.cast("float64").min(where=buyers)
            aggs["_aov_max"] = t.average_order_value.cast("float64").max(where=buyers)
        for i, name in enumerate(self._numeric):
            col = self._feature(t, name)
            aggs[f"mean{i}"] = col.mean()
            aggs[f"median{i}"] = col.median()
            aggs[f"n{i}"] = col.count()
            if population:
                aggs[f"sd{i}"] = col.std()
        for i, name in enumerate(self._categories):
            aggs[f"cat{i}"] = t[name].cast("float64").mean()
            if population:
                aggs[f"catsd{i}"] = t[name].cast("float64").std()
        for i, name in enumerate(self._channels):
            aggs[f"chan{i}"] = as_float(t[name] > 0).mean()
        for name in self._scores:
            aggs[f"{name}_mean"] = t[name].cast("float64").mean()
            if name == "clv":
                aggs["clv_total"] = t[name].cast("float64").sum()
        return aggs

    def add(self, memberships: ir.Table | pa.Table, *, scheme: str | None = None) -> None:
        """Run the per-segment queries of ``memberships`` (see :func:`segment_profiles`)."""
        members = as_memberships(memberships, scheme=scheme)
        joined = members.join(self._features, "customer_id")
        grouped = joined.group_by(["scheme", "segment"]).aggregate(
            **self._aggregates(joined, False)
        )
        self._rows.extend(grouped.to_pyarrow().to_pylist())
        if self._categorical:
            narrow = self._features.select("customer_id", *self._categorical)
            both = joined.select("scheme", "segment", "customer_id").join(narrow, "customer_id")
            self._counts.extend(_value_counts(both, ["scheme", "segment"], self._categorical))

    def result(self) -> SegmentProfiles:
        """The profiles of every segment added so far."""
        pop = self._pop.to_pylist()[0]
        rows = sorted(self._rows, key=lambda r: (r["scheme"], -r["customers"], r["segment"]))
        numeric, categories, channels = self._numeric, self._categories, self._channels
        scores, revenue = self._scores, self._revenue
        population = int(pop["customers"])

        seg_rows, num_rows, attr_rows = [], [], []
        for r in rows:
            key = {"scheme": r["scheme"], "segment": r["segment"]}
            seg: dict[str, Any] = {
                **key,
                "customers": int(r["customers"]),
                "share": _ratio(r["customers"], population),
            }
            if revenue is not None:
                seg["revenue"] = r["revenue"]
                seg["revenue_share"] = _ratio(r["revenue"], pop["revenue"])
            if "clv" in scores:
                seg["clv_mean"], seg["clv_total"] = r["clv_mean"], r["clv_total"]
            for name in ("probability_alive", "churn_risk"):
                if name in scores:
                    seg[f"{name}_mean"] = r[f"{name}_mean"]
            seg_rows.append(seg)
            for i, name in enumerate(numeric):
                n = int(r[f"n{i}"] or 0)
                num_rows.append(
                    {
                        **key,
                        "feature": name,
                        "segment_mean": r[f"mean{i}"],
                        "segment_median": r[f"median{i}"],
                        "n": n,
                        "population_mean": pop[f"mean{i}"],
                        "population_median": pop[f"median{i}"],
                        "population_sd": pop[f"sd{i}"],
                        "index": _index(r[f"mean{i}"], pop[f"mean{i}"]),
                        "z": _z(r[f"mean{i}"], pop[f"mean{i}"], pop[f"sd{i}"], n),
                    }
                )
            customers = int(r["customers"])
            for kind, names, alias in (
                ("category", categories, "cat"),
                ("channel", channels, "chan"),
            ):
                for i, name in enumerate(names):
                    value = name.split("_", 1)[1]
                    rate, base = r[f"{alias}{i}"], pop[f"{alias}{i}"]
                    sd = pop[f"catsd{i}"] if kind == "category" else _binomial_sd(base)
                    attr_rows.append(
                        {
                            **key,
                            "kind": kind,
                            "attribute": kind,
                            "value": value,
                            "members": None,
                            "segment_rate": rate,
                            "population_rate": base,
                            "population_sd": sd,
                            "index": _index(rate, base),
                            "z": _z(rate, base, sd, customers),
                        }
                    )
        attr_rows.extend(_categorical_rows(self._counts, self._pop_counts))

        return SegmentProfiles(
            segments=_table(seg_rows, _SEGMENT_SCHEMA, float_extras=True),
            numeric=_table(num_rows, _NUMERIC_SCHEMA),
            attributes=_table(attr_rows, _ATTRIBUTE_SCHEMA),
            population=population,
            constant_amounts=self._spend_check
            and pop["_aov_min"] is not None
            and pop["_aov_min"] == pop["_aov_max"],
        )


def _refuse_contacts(names: Sequence[str], private: Sequence[str], what: str) -> None:
    """A contact column asked for by name is refused, not profiled."""
    for name in names:
        if name in private:
            raise DataValidationError(
                f"{what} profile attributes: column {name!r} holds contact details, "
                "which are never profiled",
                fix=f"leave {name!r} out, or list it under privacy.not_pii if it holds "
                "no personal data",
            )


def _value_counts(
    table: ir.Table, keys: Sequence[str], columns: Sequence[str]
) -> list[dict[str, Any]]:
    """Rows per (keys, attribute, value) with their count, in one pass over ``table``.

    Each row is repeated once per column by a cross join with a small index table and the
    column picked by a CASE: plain SQL that every backend runs, and one scan of the join
    instead of one per column.
    """
    pick = ibis.memtable({"_column": list(range(len(columns)))})
    wide = table.select(*keys, *[table[c].cast("string").name(c) for c in columns])
    long = wide.cross_join(pick)
    long = long.select(
        *keys,
        attribute=ibis.cases(*[(long._column == i, c) for i, c in enumerate(columns)]),
        value=ibis.cases(*[(long._column == i, long[c]) for i, c in enumerate(columns)]),
    )
    long = long.filter(long.value.notnull())
    counts = long.group_by([*keys, "attribute", "value"]).aggregate(members=long.count())
    return list(counts.to_pyarrow().to_pylist())


def _categorical_rows(
    seg: Sequence[dict[str, Any]], pop: Sequence[dict[str, Any]]
) -> list[dict[str, Any]]:
    """Member shares of each value of each categorical attribute, segment vs population.

    ``seg`` and ``pop``: :func:`_value_counts` of the members by (scheme, segment) and of
    the whole base.
    """
    pop_known: dict[str, int] = {}
    pop_count: dict[tuple[str, str], int] = {}
    for r in pop:
        pop_known[r["attribute"]] = pop_known.get(r["attribute"], 0) + r["members"]
        pop_count[(r["attribute"], r["value"])] = r["members"]
    seg_known: dict[tuple[str, str, str], int] = {}
    for r in seg:
        key = (r["scheme"], r["segment"], r["attribute"])
        seg_known[key] = seg_known.get(key, 0) + r["members"]
    rows = []
    for r in sorted(seg, key=lambda r: (r["scheme"], r["segment"], r["attribute"], r["value"])):
        known = seg_known[(r["scheme"], r["segment"], r["attribute"])]
        seg_rate = _ratio(r["members"], known)
        pop_rate = _ratio(pop_count[(r["attribute"], r["value"])], pop_known[r["attribute"]])
        rows.append(
            {
                "scheme": r["scheme"],
                "segment": r["segment"],
                "kind": "attribute",
                "attribute": r["attribute"],
                "value": r["value"],
                "members": int(r["members"]),
                "segment_rate": seg_rate,
                "population_rate": pop_rate,
                "population_sd": _binomial_sd(pop_rate),
                "index": _index(seg_rate, pop_rate),
                "z": _z(seg_rate, pop_rate, _binomial_sd(pop_rate), known),
            }
        )
    return rows


_SEGMENT_SCHEMA = pa.schema(
    [
        ("scheme", pa.string()),
        ("segment", pa.string()),
        ("customers", pa.int64()),
        ("share", pa.float64()),
    ]
)
_NUMERIC_SCHEMA = pa.schema(
    [
        ("scheme", pa.string()),
        ("segment", pa.string()),
        ("feature", pa.string()),
        ("segment_mean", pa.float64()),
        ("segment_median", pa.float64()),
        ("n", pa.int64()),
        ("population_mean", pa.float64()),
        ("population_median", pa.float64()),
        ("population_sd", pa.float64()),
        ("index", pa.float64()),
        ("z", pa.float64()),
    ]
)
_ATTRIBUTE_SCHEMA = pa.schema(
    [
        ("scheme", pa.string()),
        ("segment", pa.string()),
        ("kind", pa.string()),
        ("attribute", pa.string()),
        ("value", pa.string()),
        ("members", pa.int64()),
        ("segment_rate", pa.float64()),
        ("population_rate", pa.float64()),
        ("population_sd", pa.float64()),
        ("index", pa.float64()),
        ("z", pa.float64()),
    ]
)


def _table(
    rows: list[dict[str, Any]], schema: pa.Schema, *, float_extras: bool = False
) -> pa.Table:
    """Rows as an Arrow table with a fixed schema (plus float columns beyond it)."""
    fields = list(schema)
    if float_extras and rows:
        known = set(schema.names)
        fields += [pa.field(k, pa.float64()) for k in rows[0] if k not in known]
    full = pa.schema(fields)
    return pa.Table.from_pylist(rows, schema=full) if rows else full.empty_table()


def rows_by_segment(table: pa.Table) -> Mapping[tuple[str, str], list[dict[str, Any]]]:
    """Rows of a profile table grouped by (scheme, segment), in table order."""
    out: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for row in table.to_pylist():
        out.setdefault((row["scheme"], row["segment"]), []).append(row)
    return out
