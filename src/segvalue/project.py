"""``Project``: the one object every face (CLI, API, notebooks) uses.

A project is a ``segvalue.yaml`` and the results store it names. ``Project`` validates
and runs it, reads the runs recorded in the store (typed results of one complete run,
the difference between two runs) and plans budgets from it. It owns the connections it
opens and closes them all in :meth:`Project.close` (or at the end of a ``with`` block).

Reads read: nothing here but :meth:`Project.run` computes or records a run.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import hmac
import json
import secrets
from collections import OrderedDict
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, cast, overload

from segvalue.config import Config, load_config
from segvalue.errors import ConfigError, DataValidationError

if TYPE_CHECKING:
    import pyarrow as pa

    from segvalue.config import ResponseItem
    from segvalue.data.validation import ValidationReport
    from segvalue.economics.curves import FittedCurve
    from segvalue.pipeline import Progress, RunResult
    from segvalue.realtime import EventError
    from segvalue.scoring import Scorer
    from segvalue.store import ResultsStore

__all__ = [
    "API_KEY_SCOPES",
    "MODEL_DOCUMENTS",
    "ApiKeys",
    "BudgetCurve",
    "BudgetCurves",
    "KeyInfo",
    "Profiles",
    "Project",
    "RunDiff",
    "RunInfo",
    "RunView",
    "Runs",
    "SchemeDiff",
]

#: The CLV model documents a run may hold (reloadable with ``model_from_json``).
MODEL_DOCUMENTS = ("clv_transaction_model", "clv_spend_model", "purchase_propensity_model")

#: What an API key may do: ``read`` every GET (and the budget computations), ``write``
#: also the routes that store something.
API_KEY_SCOPES = ("read", "write")
_KEY_PREFIX = "svk"

# KPI columns that are not KPIs (identifiers, interval bounds and sample sizes are
# reported with their KPI).
_KPI_KEYS = ("scheme", "segment")


@dataclass(frozen=True)
class RunInfo:
    """What the store records about one run (its ``RunRecord``), without its results.

    Attributes
    ----------
    run_id
        The store's id of the run.
    status
        ``"running"``, ``"complete"`` or ``"failed"``.
    as_of
        Observation end of the run's data (None until the data are read).
    started_at, finished_at
        UTC times; ``finished_at`` is None while the run is running.
    config_hash, data_fingerprint
        Hashes of the configuration and of the input data.
    schemes
        The segmentation schemes the run holds.
    row_counts, rejects, freshness, timings, versions
        Rows per table, rejected rows per rule, freshness per table, seconds per stage,
        versions of segvalue and its engines.
    error
        Why a failed run failed.

    Examples
    --------
    >>> import datetime as dt
    >>> info = RunInfo("r1", "complete", dt.date(2025, 1, 31),
    ...                dt.datetime(2025, 2, 1, 9, 0, tzinfo=dt.timezone.utc))
    >>> info.to_dict()["as_of"], info.to_dict()["started_at"]
    ('2025-01-31', '2025-02-01T09:00:00+00:00')
    """

    run_id: str
    status: str
    as_of: dt.date | None
    started_at: dt.datetime
    finished_at: dt.datetime | None = None
    config_hash: str = ""
    data_fingerprint: str = ""
    schemes: list[str] = dataclasses.field(default_factory=list)
    row_counts: dict[str, int] = dataclasses.field(default_factory=dict)
    rejects: dict[str, int] = dataclasses.field(default_factory=dict)
    freshness: dict[str, Any] = dataclasses.field(default_factory=dict)
    timings: dict[str, float] = dataclasses.field(default_factory=dict)
    versions: dict[str, str] = dataclasses.field(default_factory=dict)
    error: str | None = None

    @classmethod
    def from_record(cls, record: Any) -> RunInfo:
        """The info of a store ``RunRecord`` (any object with the same attributes)."""
        return cls(**{f.name: getattr(record, f.name) for f in dataclasses.fields(cls)})

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: dates and times as ISO strings, every field by name."""
        doc: dict[str, Any] = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if isinstance(value, dt.date):  # datetimes too
                value = value.isoformat()
            elif isinstance(value, (list, dict)):
                value = value.copy()
            doc[f.name] = value
        return doc


@dataclass(frozen=True)
class Profiles:
    """Segment profiles of a run: one row per segment, numeric and attribute detail."""

    segments: pa.Table
    numeric: pa.Table
    attributes: pa.Table


@dataclass(frozen=True)
class SchemeDiff:
    """How one scheme's memberships changed between two runs.

    Attributes
    ----------
    scheme
        The scheme.
    sizes
        ``segment, before, after, change`` (customers), every segment of either run.
    transitions
        ``from_segment, to_segment, customers`` of an exclusive scheme (one segment per
        customer; a null segment: not in the scheme in that run); None for a tag scheme.
    entered, left
        Customers per segment who are in it in the later run and were not in the
        earlier one, and the other way round.
    """

    scheme: str
    sizes: pa.Table
    transitions: pa.Table | None
    entered: dict[str, int]
    left: dict[str, int]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready."""
        return {
            "scheme": self.scheme,
            "sizes": self.sizes.to_pylist(),
            "transitions": None if self.transitions is None else self.transitions.to_pylist(),
            "entered": dict(self.entered),
            "left": dict(self.left),
        }


@dataclass(frozen=True)
class RunDiff:
    """The difference between two complete runs (``before`` is the first one named).

    Attributes
    ----------
    before, after
        The two runs' metadata.
    schemes
        Per scheme of either run, how its memberships changed.
    kpi_scheme
        The scheme both runs report KPIs for, or None.
    kpis
        ``segment, kpi, before, after, change`` for that scheme, or None.
    """

    before: RunInfo
    after: RunInfo
    schemes: dict[str, SchemeDiff]
    kpi_scheme: str | None
    kpis: pa.Table | None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready."""
        return {
            "before": self.before.to_dict(),
            "after": self.after.to_dict(),
            "schemes": {name: d.to_dict() for name, d in self.schemes.items()},
            "kpi_scheme": self.kpi_scheme,
            "kpis": None if self.kpis is None else self.kpis.to_pylist(),
        }


@dataclass(frozen=True)
class KeyInfo:
    """An API key as listed: its id, name, scope and times, never the key or its hash.

    Examples
    --------
    >>> import datetime as dt
    >>> info = KeyInfo("3f2a9c1d", "dashboard", "read",
    ...                dt.datetime(2025, 2, 1, 9, 0, tzinfo=dt.timezone.utc))
    >>> info.active, info.to_dict()["created_at"]
    (True, '2025-02-01T09:00:00+00:00')
    """

    key_id: str
    name: str | None
    scope: str
    created_at: dt.datetime
    revoked_at: dt.datetime | None = None

    @property
    def active(self) -> bool:
        """Whether the key is still accepted (not revoked)."""
        return self.revoked_at is None

    @classmethod
    def from_record(cls, record: Any) -> KeyInfo:
        """The info of a store ``ApiKeyRecord`` (the hash stays behind)."""
        return cls(**{f.name: getattr(record, f.name) for f in dataclasses.fields(cls)})

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: times as ISO strings."""
        return {
            "id": self.key_id,
            "name": self.name,
            "scope": self.scope,
            "created_at": self.created_at.isoformat(),
            "revoked_at": None if self.revoked_at is None else self.revoked_at.isoformat(),
        }


def _key_hash(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


class ApiKeys:
    """The API keys of a project's store: create, list, revoke, verify.

    A key is ``svk_<id>_<secret>``: the secret is 32 random bytes (URL-safe base64); the
    store keeps the key's SHA-256 only, so a key is shown once, when created.
    """

    def __init__(self, project: Project) -> None:
        self._project = project

    def create(self, scope: str, name: str | None = None) -> tuple[str, KeyInfo]:
        """A new key of ``scope`` (``read`` or ``write``): the key, shown once, and its info.

        Creates the store when there is none yet (and migrates an older one).

        Examples
        --------
        >>> import tempfile, pathlib
        >>> from segvalue.config import parse_config
        >>> d = pathlib.Path(tempfile.mkdtemp())
        >>> with Project(parse_config({"sources": {"orders": {"path": "o.csv"}}}, base_dir=d)) as p:
        ...     key, info = p.keys.create("read", name="dashboard")
        ...     p.keys.verify(key) == info, p.keys.verify(key + "x")
        (True, None)
        """
        if scope not in API_KEY_SCOPES:
            raise ConfigError(
                f"`scope` {scope!r} is not an API key scope",
                fix=f"use one of {', '.join(API_KEY_SCOPES)}",
                parameter="scope",
            )
        from segvalue.store import ApiKeyRecord

        key_id = secrets.token_hex(4)
        key = f"{_KEY_PREFIX}_{key_id}_{secrets.token_urlsafe(32)}"
        record = ApiKeyRecord(
            key_id=key_id,
            name=name,
            scope=scope,
            key_hash=_key_hash(key),
            created_at=dt.datetime.now(dt.UTC).replace(microsecond=0),
        )
        with self._project._writer() as store:
            store.add_api_key(record)
        return key, KeyInfo.from_record(record)

    def list(self) -> list[KeyInfo]:
        """Every key, revoked ones too, oldest first (none without a store)."""
        store = self._project._open_store(missing_ok=True)
        return [] if store is None else [KeyInfo.from_record(r) for r in store.api_keys()]

    def revoke(self, key_id: str) -> KeyInfo:
        """Revoke the key ``key_id``: from now on it is refused (revoking twice is harmless)."""
        with self._project._writer() as store:
            record = store.revoke_api_key(key_id, dt.datetime.now(dt.UTC).replace(microsecond=0))
        return KeyInfo.from_record(record)

    def verify(self, key: str) -> KeyInfo | None:
        """The info of ``key`` when it is a known, unrevoked key; otherwise None.

        The key's hash is compared with the stored one in constant time.
        """
        prefix, _, rest = key.partition("_")
        key_id, _, secret = rest.partition("_")
        if prefix != _KEY_PREFIX or not key_id or not secret:
            return None
        store = self._project._open_store(missing_ok=True)
        record = None if store is None else store.api_key(key_id)
        if record is None or record.revoked_at is not None:
            return None
        if not hmac.compare_digest(_key_hash(key), record.key_hash):
            return None
        return KeyInfo.from_record(record)


#: The export name of the segment enter / exit events (:meth:`Project.export`).
SEGMENT_EVENTS = "segment-events"
#: The export name prefix of a campaign's treatment and holdout as an experiment.
EXPERIMENT_PREFIX = "experiment:"


class RunView:
    """The results of one run, read from the store when first asked for, then kept.

    Only a complete run has results: on a running or failed run every result method
    raises :class:`DataValidationError` (its :attr:`info` is still there).
    """

    def __init__(self, info: RunInfo, store: Callable[[], ResultsStore]) -> None:
        self.info = info
        self._store = store
        self._cache: dict[tuple[str, str], Any] = {}
        self._names: tuple[list[str], list[str]] | None = None

    def __repr__(self) -> str:
        return f"RunView({self.info.run_id!r}, status={self.info.status!r})"

    @property
    def run_id(self) -> str:
        """The run's id."""
        return self.info.run_id

    def _holdings(self) -> tuple[list[str], list[str]]:
        if self.info.status != "complete":
            reason = f": {self.info.error}" if self.info.error else ""
            raise DataValidationError(
                f"run {self.info.run_id} is {self.info.status}{reason}; only complete runs "
                "hold results",
                fix="read a complete run (segvalue runs list shows their status)",
            )
        if self._names is None:
            store = self._store()
            self._names = (
                list(store.table_names(self.info.run_id)),
                list(store.document_names(self.info.run_id)),
            )
        return self._names

    def _missing(self, what: str) -> DataValidationError:
        tables, documents = self._holdings()
        return DataValidationError(
            f"run {self.info.run_id} holds no {what} (tables: {', '.join(tables) or 'none'}; "
            f"documents: {', '.join(documents) or 'none'})",
            fix="enable the step that computes it in segvalue.yaml and run again",
        )

    def table_names(self) -> list[str]:
        """The tables the run holds."""
        return list(self._holdings()[0])

    def document_names(self) -> list[str]:
        """The JSON documents the run holds."""
        return list(self._holdings()[1])

    def has_table(self, name: str) -> bool:
        """Whether the run holds the table ``name``."""
        return name in self._holdings()[0]

    def has_document(self, name: str) -> bool:
        """Whether the run holds the document ``name``."""
        return name in self._holdings()[1]

    def table(self, name: str) -> pa.Table:
        """One stored table of the run (see ``ResultsStore.table`` for the names)."""
        key = ("table", name)
        if key not in self._cache:
            if not self.has_table(name):
                raise self._missing(f"table {name!r}")
            self._cache[key] = self._store().table(self.info.run_id, name)
        return self._cache[key]

    def rows(self, name: str, column: str, value: Any) -> pa.Table:
        """The rows of table ``name`` whose ``column`` equals ``value`` (e.g. one customer's),
        read without reading the whole table (``ResultsStore.rows``)."""
        return self._store().rows(self.info.run_id, name, column, value)

    def document(self, name: str) -> Any:
        """One stored JSON document of the run."""
        key = ("document", name)
        if key not in self._cache:
            if not self.has_document(name):
                raise self._missing(f"document {name!r}")
            self._cache[key] = self._store().document(self.info.run_id, name)
        return self._cache[key]

    def customer_scores(self) -> pa.Table:
        """Features and CLV scores per customer (the ``customer_features`` output)."""
        return self.table("customer_scores")

    def memberships(self, scheme: str | None = None) -> pa.Table:
        """``customer_id, scheme, segment``, of every scheme or of ``scheme`` only."""
        import pyarrow.compute as pc

        table = self.table("memberships")
        if scheme is None:
            return table
        if scheme not in pc.unique(table.column("scheme")).to_pylist():
            raise self._missing(f"scheme {scheme!r} (schemes: {', '.join(self.info.schemes)})")
        return table.filter(pc.equal(table.column("scheme"), scheme))

    def segment_kpis(self) -> pa.Table:
        """Segment KPIs with their 95% intervals (first row: all customers)."""
        return self.table("segment_kpis")

    def kpi_status(self) -> pa.Table:
        """Each KPI target's status per segment."""
        return self.table("kpi_status")

    def priorities(self) -> pa.Table:
        """The segments ranked, with the reasons."""
        return self.table("segment_priorities")

    def profiles(self) -> Profiles:
        """Segment profiles: per segment, numeric features and attributes."""
        return Profiles(
            segments=self.table("segment_profiles"),
            numeric=self.table("segment_profiles_numeric"),
            attributes=self.table("segment_profiles_attributes"),
        )

    def personas(self) -> list[dict[str, Any]]:
        """One persona per segment and scheme."""
        return list(self.document("personas"))

    def models(self) -> dict[str, dict[str, Any]]:
        """The fitted CLV models as documents, by name (``MODEL_DOCUMENTS``)."""
        present = [name for name in MODEL_DOCUMENTS if self.has_document(name)]
        if not present:
            raise self._missing("CLV model")
        return {name: self.document(name) for name in present}

    def budget_guidance(self) -> dict[str, Any]:
        """The maximum acquisition cost per segment and its assumptions."""
        return dict(self.document("budget_guidance"))

    def measurement(self) -> dict[str, Any]:
        """The run's measurement (docs/measurement.md): the settings and facts of the
        step (``details``), and, where the run measured them, the ``attribution`` rows
        (per segment, model and channel), the ``channels`` (effectiveness and role per
        segment and channel), the experiments' ``lift`` rows, and per experiment its
        ``uplift`` evaluation with the Qini ``curves``.

        Examples
        --------
        >>> import tempfile, pathlib
        >>> from segvalue.pipeline import run_demo
        >>> _, path = run_demo(n_customers=400, out_dir=pathlib.Path(tempfile.mkdtemp()))
        >>> with Project.from_yaml(path) as project:
        ...     found = project.runs.require_latest().measurement()
        >>> sorted(found), found["details"]["scheme"]
        (['attribution', 'channels', 'details', 'lift', 'uplift'], 'clusters')
        """
        details = dict(self.document("measurement"))

        def rows(name: str) -> list[dict[str, Any]]:
            return self.table(name).to_pylist() if self.has_table(name) else []

        uplift: dict[str, Any] = {}
        for experiment, found in dict(details.pop("uplift", None) or {}).items():
            uplift[experiment] = {**found, "curves": {}}
        for row in rows("uplift_curves"):
            curves = uplift.setdefault(row["experiment_id"], {"curves": {}})["curves"]
            curve = curves.setdefault(row["curve"], {"share": [], "qini": []})
            curve["share"].append(row["share"])
            curve["qini"].append(row["qini"])
        return {
            "details": details,
            "attribution": rows("attribution"),
            "channels": rows("channel_effectiveness"),
            "lift": rows("experiment_lift"),
            "uplift": uplift,
        }

    def channel_roles(self) -> dict[str, dict[str, str]]:
        """Each segment's channels by role (``primary``, ``secondary``, ``support``,
        ``test``, ``reduce``; docs/measurement.md), as the run measured them: ``{segment:
        {channel: role}}``, the whole base under ``all customers``; empty when the run
        had no touchpoints."""
        if not self.has_table("channel_effectiveness"):
            return {}
        roles: dict[str, dict[str, str]] = {}
        for row in self.table("channel_effectiveness").to_pylist():
            roles.setdefault(str(row["segment"]), {})[str(row["channel"])] = str(row["role"])
        return roles

    def rejects(self) -> pa.Table:
        """The rejected input rows with their reasons."""
        return self.table("rejects")

    def report(self) -> dict[str, Any]:
        """The run document (``RunResult.summary()`` of the run)."""
        return dict(self.document("run"))

    def rfm_grid(self, scheme: str, segment: str | None = None) -> dict[str, Any] | None:
        """Customers per recency x frequency score of an RFM scheme (None for another).

        The run stores each customer's RFM segment, not the scores: they are given again
        from the stored features with the scheme's saved scorer state (the run's bin
        boundaries), one rule per (R, F) cell. ``segment`` None: every customer of the
        scheme; else its members. Returns ``bins``, ``cells`` (``recency``,
        ``frequency``, ``customers``, ``clv_mean``), ``members`` and ``unscored``.
        """
        if not self.has_document("scorer"):
            return None
        state = (self.document("scorer").get("schemes") or {}).get(scheme)
        if not state or state.get("type") != "rfm":
            return None
        # Imported only for an RFM scheme (segments.rfm imports Ibis: 0.3 s the first time).
        import numpy as np
        import pyarrow.compute as pc

        from segvalue.segments.rfm import FREQUENCY_COLUMN, MONETARY_MEASURE, RECENCY_COLUMN
        from segvalue.segments.scoring import assign

        bins = int(state["bins"])
        scores = range(1, bins + 1)
        # The scheme's own scoring, with a "segment" per cell instead of its named segments.
        by_cell = dict(
            state,
            segments=[
                {"r": [r, r], "f": [f, f], "segment": f"{r},{f}"} for r in scores for f in scores
            ],
            unassigned="",
        )
        members = self.memberships(scheme)
        if segment is not None:
            members = members.filter(pc.equal(members.column("segment"), segment))
        table = self.customer_scores()
        table = table.filter(
            pc.is_in(table.column("customer_id"), value_set=members.column("customer_id"))
        )
        columns = ["customer_id", RECENCY_COLUMN, FREQUENCY_COLUMN, MONETARY_MEASURE]
        has_clv = "clv" in table.column_names
        selected = table.select([*columns, "clv"] if has_clv else columns)
        size = selected.num_rows

        def numbers(name: str) -> Any:
            """A column as floats, NaN where missing."""
            return np.asarray(selected.column(name).to_numpy(), dtype=float)

        def row_at(index: int) -> dict[str, Any]:
            return dict(selected.slice(index, 1).to_pylist()[0])

        recency, orders = numbers(RECENCY_COLUMN), numbers(FREQUENCY_COLUMN)
        finite = np.isfinite(recency) & np.isfinite(orders)
        r_value = np.trunc(np.where(finite, recency, 0.0)).astype(np.int64)  # int(recency)
        f_value = np.trunc(np.where(finite, orders, 0.0)).astype(np.int64)
        money = np.isfinite(numbers(MONETARY_MEASURE))
        # The R score depends on the customer only through the recency and the F score
        # through the orders (whether scored at all: also through a missing monetary
        # value), but for a value on a boundary with split ties, where the customer id
        # breaks them: those customers are scored one by one, the others once per value,
        # each by the scheme's own scoring.
        boundaries = state.get("boundaries") or {}
        by_value = finite.copy()
        for short, values in (("r", r_value), ("f", f_value)):
            for bound in (b for b in boundaries.get(short, []) if len(b) > 1):
                edge = float(bound[0])
                by_value &= np.abs(values - edge) > 1e-9 * max(1.0, abs(edge))
        picked = np.flatnonzero(by_value)

        def scored(short: str, values: Any, flags: Any) -> Any:
            """The ``short`` score (0: unscored) of the rows scored by value."""
            state_of_score = dict(
                state,
                segments=[{short: [v, v], "segment": str(v)} for v in scores],
                unassigned="",
            )
            keys = values[picked] * 2 + flags[picked]
            _, first, inverse = np.unique(keys, return_index=True, return_inverse=True)
            distinct = [
                int(str(assign(state_of_score, row_at(int(picked[i])))) or 0) for i in first
            ]
            out = np.zeros(size, dtype=np.int64)
            out[picked] = np.asarray(distinct, dtype=np.int64)[inverse]
            return out

        r_score = scored("r", r_value, money & (f_value > 0))
        f_score = scored("f", f_value, money)
        width = bins + 1
        code = np.where((r_score > 0) & (f_score > 0), r_score * width + f_score, 0)
        for index in np.flatnonzero(~by_value):  # one by one
            cell = str(assign(by_cell, row_at(int(index))))
            if cell:
                r, f = (int(part) for part in cell.split(","))
                code[index] = r * width + f
        counts = np.bincount(code, minlength=width * width)
        clv = numbers("clv") if has_clv else np.full(size, np.nan)
        known = np.isfinite(clv) & (code > 0)
        clv_sums = np.bincount(code[known], weights=clv[known], minlength=width * width)
        clv_counts = np.bincount(code[known], minlength=width * width)
        cells = []
        order = sorted((f"{r},{f}", r, f) for r in scores for f in scores)  # as "r,f" sort
        for _, r, f in order:
            at = r * width + f
            if counts[at] == 0:
                continue
            clv_mean = float(clv_sums[at] / clv_counts[at]) if clv_counts[at] else None
            cells.append(
                {
                    "recency": r,
                    "frequency": f,
                    "customers": int(counts[at]),
                    "clv_mean": clv_mean if has_clv else None,
                }
            )
        return {
            "bins": bins,
            "cells": cells,
            "members": len(members),
            "unscored": members.num_rows - int(counts[1:].sum()),
        }

    def scorer(self) -> Scorer:
        """The run's saved scorer: one customer's features, memberships and CLV, no re-run.

        See :class:`segvalue.scoring.Scorer` (``score(attributes, orders, ...)``). Built
        once per view (a complete run never changes; the scorer keeps no state between
        customers).
        """
        from segvalue.scoring import Scorer

        key = ("scorer", "")
        if key not in self._cache:
            self._cache[key] = Scorer(self.document("scorer"))
        scorer: Scorer = self._cache[key]
        return scorer

    def segments(self) -> dict[str, Any]:
        """Segments summary: per scheme its type, mode, segments, sizes and personas."""
        return dict(self.document("segments"))

    def customer(self, customer_id: str) -> dict[str, Any] | None:
        """One customer as the run scored it; None when the run does not hold the customer.

        Reads that customer's rows only (``ResultsStore.rows``), not the run's tables; a
        process that reads many customers of a run (a server) holds its tables instead.

        Returns
        -------
        dict or None
            ``customer_id``, ``as_of``, ``features`` (every ``customer_scores`` column but
            the predictions), ``memberships`` (scheme: segment, or a list of segments for a
            ``tags`` scheme; None or [] where the customer is in none), and the
            predictions ``probability_alive``, ``churn_risk``, ``expected_purchases``,
            ``expected_spend``, ``clv``, ``clv_lower``, ``clv_upper``,
            ``purchase_propensity`` (None where the run has none), the same shape as
            ``Scorer.score``.

        Examples
        --------
        >>> import tempfile, pathlib
        >>> from segvalue.pipeline import run_demo
        >>> _, path = run_demo(n_customers=300, out_dir=pathlib.Path(tempfile.mkdtemp()))
        >>> with Project.from_yaml(path) as project:
        ...     one = project.runs.latest().customer("C0000001")
        ...     missing = project.runs.latest().customer("nobody")
        >>> one["features"]["orders"] > 0, one["memberships"]["lifecycle"] is not None, missing
        (True, True, None)
        """
        from segvalue.scoring import PREDICTIONS

        if not self.has_table("customer_scores"):
            raise self._missing("table 'customer_scores'")
        store = self._store()
        scores = store.rows(self.info.run_id, "customer_scores", "customer_id", customer_id)
        if scores.num_rows == 0:
            return None
        row = scores.to_pylist()[0]
        predicted = (*PREDICTIONS, "purchase_propensity")
        memberships: dict[str, Any] = {}
        if self.has_table("memberships"):
            tags = {name for name, mode in _scheme_modes(self).items() if mode == "tags"}
            for scheme in self.info.schemes:  # a scheme without the customer: None, []
                memberships[scheme] = [] if scheme in tags else None
            held = store.rows(self.info.run_id, "memberships", "customer_id", customer_id)
            for member in held.to_pylist():
                scheme, segment = member["scheme"], member["segment"]
                if scheme in tags:
                    memberships.setdefault(scheme, []).append(segment)
                else:
                    memberships[scheme] = segment
        return {
            "customer_id": customer_id,
            "as_of": self.info.as_of,
            "features": {k: v for k, v in row.items() if k not in predicted and k != "customer_id"},
            "memberships": memberships,
            **{name: row.get(name) for name in predicted},
        }


class Runs:
    """The runs recorded in a project's store: list, get, latest complete, diff."""

    def __init__(self, project: Project) -> None:
        self._project = project

    def list(self, status: str | None = None) -> list[RunInfo]:
        """Every run, newest first; ``status``: only ``complete``, ``failed`` or ``running``.

        A project without a store yet has no runs.
        """
        if status is not None and status not in ("complete", "failed", "running"):
            raise ConfigError(
                f"status {status!r} is not a run status",
                fix="use complete, failed or running",
                parameter="status",
            )
        store = self._project._open_store(missing_ok=True)
        if store is None:
            return []
        return [RunInfo.from_record(r) for r in store.runs(status=status)]

    def get(self, run_id: str) -> RunView:
        """The run ``run_id`` (a :class:`DataValidationError` lists recent ids if unknown)."""
        store = self._project._open_store()
        assert store is not None
        return self._project._view(RunInfo.from_record(store.run(run_id)))

    def latest(self) -> RunView | None:
        """The latest complete run (greatest as-of date, then finish time), or None."""
        store = self._project._open_store(missing_ok=True)
        record = None if store is None else store.latest()
        return None if record is None else self._project._view(RunInfo.from_record(record))

    def require_latest(self, run_id: str | None = None) -> RunView:
        """``get(run_id)``, or the latest complete run; an error saying what to do if none."""
        if run_id is not None:
            return self.get(run_id)
        view = self.latest()
        if view is None:
            raise ConfigError(
                f"no complete run in the store {self._project.config.store_url}",
                fix="compute one first: Project.run() (segvalue run -c segvalue.yaml)",
            )
        return view

    def diff(self, before: str | RunView, after: str | RunView) -> RunDiff:
        """How memberships, segment sizes and KPIs changed from run ``before`` to ``after``."""
        a = before if isinstance(before, RunView) else self.get(before)
        b = after if isinstance(after, RunView) else self.get(after)
        return _diff(a, b)


class Project:
    """A ``segvalue.yaml`` and its results store: validate, run, read runs, plan budgets.

    Parameters
    ----------
    config
        The validated configuration (:func:`segvalue.load_config`).

    Examples
    --------
    >>> import tempfile, pathlib
    >>> from segvalue.config import parse_config
    >>> d = pathlib.Path(tempfile.mkdtemp())
    >>> _ = (d / "o.csv").write_text("order_id,customer_id,order_ts,amount\\n1,a,2024-01-02,5\\n")
    >>> with Project(parse_config({"sources": {"orders": {"path": "o.csv"}}}, base_dir=d)) as p:
    ...     p.validate().tables["orders"].rows_accepted, p.runs.list()
    (1, [])
    """

    def __init__(self, config: Config) -> None:
        self.config = config
        self._store: ResultsStore | None = None
        self._views: dict[str, RunView] = {}
        self.runs = Runs(self)
        self.keys = ApiKeys(self)

    @classmethod
    def from_yaml(cls, path: str | Path) -> Project:
        """The project of a ``segvalue.yaml`` file.

        Examples
        --------
        >>> import tempfile, pathlib
        >>> d = pathlib.Path(tempfile.mkdtemp())
        >>> _ = (d / "segvalue.yaml").write_text("sources: {orders: {path: o.csv}}")
        >>> Project.from_yaml(d / "segvalue.yaml").config.sources["orders"].path
        'o.csv'
        """
        return cls(load_config(path))

    def __repr__(self) -> str:
        return f"Project(base_dir={str(self.config.base_dir)!r})"

    def __enter__(self) -> Project:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        """Close the store connection this project opened (runs close their own engines)."""
        store, self._store = self._store, None
        self._views.clear()
        if store is not None:
            store.close()

    def _open_store(self, *, missing_ok: bool = False) -> ResultsStore | None:
        """The store, opened once; None when ``missing_ok`` and its file does not exist."""
        if self._store is None:
            path = self.config.store_path
            if missing_ok and path is not None and not path.exists():
                return None
            from segvalue.store import StoreMissingError, open_store

            try:
                self._store = open_store(
                    self.config.store_url, create=False, hold_bytes=self._hold_bytes()
                )
            except StoreMissingError:  # e.g. a server schema no run has written to
                if missing_ok:
                    return None
                raise
        return self._store

    @contextmanager
    def _writer(self) -> Iterator[ResultsStore]:
        """The store opened for writing (created or migrated if need be), then closed.

        Our read connection is closed first: a DuckDB file is open either for one writer
        or for readers. Runs are not waited for: they hold the file only briefly.
        """
        from segvalue.store import open_store

        self.close()
        store = open_store(self.config.store_url, create=True)
        try:
            yield store
        finally:
            store.close()

    def _store_for_views(self) -> ResultsStore:
        store = self._open_store()
        assert store is not None
        return store

    def _view(self, info: RunInfo) -> RunView:
        view = self._views.get(info.run_id)
        if view is None or view.info != info:
            view = self._views[info.run_id] = RunView(info, self._store_for_views)
        return view

    def validate(
        self,
        *,
        strict: bool = False,
        rejects: str | Path | None = None,
        progress: Progress | None = None,
    ) -> ValidationReport:
        """Read and validate every source; optionally write the rejected rows.

        Parameters
        ----------
        strict
            Fail on any rejected row (overrides ``validation.strict`` when true).
        rejects
            Where to write the rejected rows (``.csv`` or ``.parquet``).
        progress
            Optional progress callback ``(description, index, total)``.
        """
        from segvalue.pipeline import validate_config

        return validate_config(
            config=self.config, strict=strict, rejects_path=rejects, progress=progress
        )

    def run(
        self,
        *,
        schemes: list[str] | None = None,
        wait: float = 0,
        progress: Progress | None = None,
    ) -> RunResult:
        """Compute a run and record it in the store (the one method that computes).

        Parameters
        ----------
        schemes
            Recompute only these segmentation schemes (default: every configured one).
        wait
            Seconds to wait for another run holding the store or output folder.
        progress
            Optional progress callback ``(description, index, total)``.

        Examples
        --------
        >>> import tempfile, pathlib
        >>> from segvalue.config import parse_config
        >>> d = pathlib.Path(tempfile.mkdtemp())
        >>> rows = "order_id,customer_id,order_ts,amount\\n1,a,2024-01-02,5\\n2,b,2024-01-09,7\\n"
        >>> _ = (d / "o.csv").write_text(rows)
        >>> with Project(parse_config({"sources": {"orders": {"path": "o.csv"}}}, base_dir=d)) as p:
        ...     result = p.run()
        ...     latest = p.runs.latest()
        ...     latest.run_id == result.run_id, latest.customer_scores().num_rows
        (True, 2)
        >>> sorted(set(latest.memberships().column("scheme").to_pylist()))
        ['lifecycle', 'rfm']
        """
        from segvalue.pipeline import run

        if schemes and not self.config.segments.enabled:
            raise ConfigError(
                "schemes were named but segments.enabled is false",
                fix="set segments.enabled: true to segment",
                parameter="schemes",
            )
        # The run writes the store with its own connection: ours is reopened afterwards,
        # to see the new run.
        self.close()
        return run(self.config, schemes=schemes, wait=wait, progress=progress)

    def budget(
        self,
        *,
        total: float | None = None,
        objective: str | None = None,
        target: float | None = None,
    ) -> tuple[Any, list[str]]:
        """Optimise the budget of ``budget`` in segvalue.yaml (see ``pipeline.plan_budget``).

        With objective ``clv`` the segments' CLV comes from the latest complete run.

        Returns
        -------
        (Allocation, list of str)
            The plan and the curve-fitting warnings.

        Examples
        --------
        >>> from segvalue.config import parse_config
        >>> cfg = parse_config({
        ...     "sources": {"orders": {"path": "o.csv"}},
        ...     "budget": {"total": 100, "objective": "revenue", "items": [
        ...         {"name": "email", "form": "michaelis_menten", "beta": 1000, "k": 200},
        ...         {"name": "search", "form": "michaelis_menten", "beta": 600, "k": 100}]}})
        >>> plan, _ = Project(cfg).budget()
        >>> round(sum(plan.to_dict()["allocation"].values()), 6)
        100.0
        """
        from segvalue.pipeline import plan_budget

        return plan_budget(
            config=self.config,
            total=total,
            objective=objective,
            target=target,
            segment_clv=self.segment_clv,
        )

    def what_if(self, move: str) -> Any:
        """The change in outcome when ``FROM:TO:SHARE`` of spend moves between items.

        Examples
        --------
        >>> from segvalue.config import parse_config
        >>> cfg = parse_config({
        ...     "sources": {"orders": {"path": "o.csv"}},
        ...     "budget": {"items": [
        ...         {"name": "a", "form": "michaelis_menten", "beta": 1000, "k": 200,
        ...          "current": 300},
        ...         {"name": "b", "form": "michaelis_menten", "beta": 600, "k": 100,
        ...          "current": 50}]}})
        >>> Project(cfg).what_if("a:b:0.2").change_value > 0
        True
        """
        from segvalue.pipeline import budget_what_if

        return budget_what_if(move, config=self.config)

    def attribution(
        self,
        model: str = "markov",
        *,
        scheme: str | None = None,
        run_id: str | None = None,
        order: int = 1,
        lookback_days: float = 30.0,
        session_gap_minutes: float = 30.0,
        **options: Any,
    ) -> dict[str, Any]:
        """Attribution of the conversions in a complete run's touchpoints (the latest,
        or ``run_id``): for every customer, and with ``scheme`` per segment of it (a
        customer's journeys count in each segment they are in).

        The touchpoints are the run's (``history_touchpoints``); journeys as
        :func:`segvalue.measurement.attribution.journeys_from_touches` builds them
        (conversion rows: ``event`` = ``conversion``). ``options``: the model's own
        (``value_function``, ``half_life_days``, ``direct``).

        Returns
        -------
        dict
            ``{"run_id", "model", "scheme", "all": {...Attribution.to_dict()...},
            "segments": {segment: {...}}}`` (``segments`` empty without ``scheme``).

        Examples
        --------
        >>> import tempfile, pathlib
        >>> from segvalue.pipeline import run_demo
        >>> _, path = run_demo(n_customers=400, out_dir=pathlib.Path(tempfile.mkdtemp()))
        >>> with Project.from_yaml(path) as project:
        ...     found = project.attribution("last", scheme="lifecycle")
        >>> found["all"]["total_conversions"] > 0, sorted(found["segments"])[:1]
        (True, ['active'])
        """
        import numpy as np
        import pyarrow as pa

        from segvalue.measurement import attribute, journeys_from_touches

        view = self.runs.require_latest(run_id)
        if not view.has_table("history_touchpoints"):
            raise ConfigError(
                f"run {view.run_id} holds no touchpoints to attribute",
                fix="add a touchpoints source to segvalue.yaml and run again",
                parameter="sources.touchpoints",
            )
        touches = view.table("history_touchpoints")
        customers = touches.column("customer_id").to_pylist()
        if scheme is not None and scheme not in view.info.schemes:
            raise ConfigError(
                f"run {view.run_id} has no segmentation scheme {scheme!r}",
                fix=f"pick one of {', '.join(view.info.schemes) or 'none'}",
                parameter="scheme",
            )
        groups: dict[str | None, np.ndarray[Any, Any]] = {None: np.arange(len(customers))}
        if scheme is not None:
            members = view.table("memberships").to_pylist()
            segments_of: dict[str, list[str]] = {}
            for m in members:
                if m["scheme"] == scheme and m["segment"] is not None:
                    segments_of.setdefault(str(m["customer_id"]), []).append(str(m["segment"]))
            rows_of: dict[str | None, list[int]] = {}
            for i, customer in enumerate(customers):
                for segment in segments_of.get(str(customer), ()):
                    rows_of.setdefault(segment, []).append(i)
            groups.update({k: np.array(v) for k, v in sorted(rows_of.items())})
        converted = np.array(
            [e == "conversion" for e in touches.column("event").to_pylist()], dtype=bool
        )
        results: dict[str | None, dict[str, Any]] = {}
        for key, rows in groups.items():
            taken = touches.take(pa.array(rows, pa.int64()))
            journeys = journeys_from_touches(
                taken.column("customer_id"),
                taken.column("ts"),
                taken.column("channel"),
                converted[rows],
                lookback_days=lookback_days,
                session_gap_minutes=session_gap_minutes,
            )
            results[key] = attribute(journeys, model, order=order, **options).to_dict()
        return {
            "run_id": view.run_id,
            "model": model,
            "scheme": scheme,
            "all": results.pop(None),
            "segments": {str(k): v for k, v in results.items()},
        }

    @staticmethod
    def sample_size(
        effect: float,
        *,
        baseline: float | None = None,
        sd: float | None = None,
        level: float = 0.95,
        power: float = 0.8,
        treated_share: float = 0.5,
    ) -> dict[str, Any]:
        """The customers a test needs to find a lift of ``effect``, before it runs: on a
        rate from its ``baseline`` or on a mean with standard deviation ``sd``
        (:func:`segvalue.pipeline.sample_size_check`). Reads no run and no store.

        Examples
        --------
        >>> Project.sample_size(0.02, baseline=0.10)["n_treated"]
        3839
        """
        from segvalue.pipeline import sample_size_check

        return sample_size_check(
            effect,
            baseline=baseline,
            sd=sd,
            level=level,
            power=power,
            treated_share=treated_share,
        )

    def activate(self, *, dry_run: bool = False, run_id: str | None = None) -> Any:
        """Plan the campaigns of segvalue.yaml on a complete run (the latest, or
        ``run_id``): audiences per campaign step, every suppressed or capped contact with
        its reason, the global control group and the holdouts (docs/activation.md).
        Unless ``dry_run``, the plan is attached to the run in the store (replacing an
        earlier activation of it), for exports and the dashboard.

        Returns
        -------
        segvalue.activation.plans.ActivationPlan

        Examples
        --------
        >>> import tempfile, pathlib
        >>> from segvalue.pipeline import run_demo
        >>> _, path = run_demo(n_customers=400, out_dir=pathlib.Path(tempfile.mkdtemp()))
        >>> text = path.read_text() + (
        ...     "campaigns:\\n  - {name: winback, segments: [cluster_1], objective: win_back,\\n"
        ...     "     start: 2026-01-05, steps: [{channel: email}]}\\n")
        >>> _ = path.write_text(text)
        >>> with Project.from_yaml(path) as project:
        ...     plan = project.activate(dry_run=True)
        >>> plan.campaigns[0]["name"], plan.campaigns[0]["steps"][0]["audience"] > 0
        ('winback', True)
        """
        from segvalue.pipeline.activate import (
            ACTIVATION_TABLES,
            activation_scheme,
            plan_activation,
        )

        if not self.config.campaigns:
            raise ConfigError(
                "segvalue.yaml has no campaigns to activate",
                fix="add campaign plans under `campaigns` (docs/activation.md)",
                parameter="campaigns",
            )
        view = self.runs.require_latest(run_id)
        measured = (
            view.document("measurement").get("scheme") if view.has_document("measurement") else None
        )
        scheme = activation_scheme(self.config, view.info.schemes, measured)
        plan = plan_activation(
            self.config,
            scores=view.customer_scores(),
            memberships=view.memberships(),
            scheme=scheme,
            roles=view.channel_roles(),
            personas=view.personas() if view.has_document("personas") else [],
        )
        if dry_run:
            return plan
        held = set(view.table_names()) | set(view.document_names())
        with self._writer() as store:
            store.attach(
                view.run_id,
                plan.tables(),
                {"activation": plan.summary()},
                replace=[name for name in ACTIVATION_TABLES if name in held],
            )
        return plan

    def export(
        self,
        audience: str,
        to: str,
        target: str | None = None,
        *,
        step: int | None = None,
        run_id: str | None = None,
    ) -> dict[str, Any]:
        """Export a campaign's stored audience (``audience``: its name; one ``step`` or
        all), ``experiment:<campaign>`` (its treatment and holdout as an experiments
        source, the holdout as ``control``), or ``segment-events`` (the run's enter / exit
        events between runs and those found in real time since), ``to`` a destination of
        :data:`segvalue.pipeline.export.EXPORT_TARGETS` (docs/activation.md#exports).

        Returns
        -------
        dict
            The manifest (files, tables) or the delivery report (webhooks).
        """
        from segvalue.pipeline.export import audience_rows, check_rows, export_rows

        view = self.runs.require_latest(run_id)
        if audience == SEGMENT_EVENTS:
            rows = self._segment_event_rows(view)
        elif audience.startswith(EXPERIMENT_PREFIX):
            rows = self._experiment_rows(view, audience.removeprefix(EXPERIMENT_PREFIX))
        else:
            rows = audience_rows(_activation_table(view, "activation_audiences"), audience, step)
        check_rows(rows)
        name = audience if step is None else f"{audience}-step{step}"
        about = {"run_id": view.run_id, "audience": audience, "step": step}
        return export_rows(self.config, rows, to=to, target=target, name=name, about=about)

    def _experiment_rows(self, view: RunView, campaign: str) -> pa.Table:
        """A campaign's treatment and holdout in the experiments source's columns
        (``customer_id, experiment_id, group, segment, assigned_at``; the holdout is the
        ``control`` group), for the lift tools once its outcomes are known."""
        import pyarrow as pa
        import pyarrow.compute as pc

        from segvalue.pipeline.export import audience_rows

        held = audience_rows(_activation_table(view, "activation_holdouts"), campaign, None)
        plan: dict[str, Any] = next(
            (c for c in view.document("activation")["campaigns"] if c["name"] == campaign), {}
        )
        start = dt.datetime.fromisoformat(str(plan.get("start"))) if plan.get("start") else None
        group = pc.if_else(pc.equal(held.column("group"), "holdout"), "control", "treatment")
        return pa.table(
            {
                "customer_id": held.column("customer_id"),
                "experiment_id": pa.array([campaign] * held.num_rows, pa.string()),
                "group": group,
                "segment": held.column("segment"),
                "assigned_at": pa.array([start] * held.num_rows, pa.timestamp("us")),
            }
        )

    def _segment_event_rows(self, view: RunView) -> pa.Table:
        """Enter / exit events: the run's (against the run before it) and real time's."""
        import pyarrow as pa

        records: list[dict[str, Any]] = []
        finished = view.info.finished_at
        if view.has_table("membership_events"):
            for row in view.table("membership_events").to_pylist():
                records.append(
                    {
                        "customer_id": str(row["customer_id"]),
                        "scheme": row.get("scheme"),
                        "from_segment": row.get("from_segment"),
                        "to_segment": row.get("to_segment"),
                        "at": finished,
                        "source": "run",
                        "run_id": view.run_id,
                    }
                )
        for event in reversed(self.segment_events(limit=1_000_000)):
            records.append(
                {
                    "customer_id": event["customer_id"],
                    "scheme": event["scheme"],
                    "from_segment": event["from"],
                    "to_segment": event["to"],
                    "at": dt.datetime.fromisoformat(event["at"]),
                    "source": "real_time",
                    "run_id": event["run_id"],
                }
            )
        schema = pa.schema(
            [
                ("customer_id", pa.string()),
                ("scheme", pa.string()),
                ("from_segment", pa.string()),
                ("to_segment", pa.string()),
                ("at", pa.timestamp("us", tz="UTC")),
                ("source", pa.string()),
                ("run_id", pa.string()),
            ]
        )
        return pa.Table.from_pylist(records, schema=schema)

    def budget_curves(self) -> BudgetCurves:
        """The response curves the budget plans with, one per item, with their fit.

        The curves of ``budget.items`` as given, or, without them, the curves fitted per
        (segment x) channel from the ``channel_spend`` source, as :meth:`budget` fits
        them (form, adstock and scheme from the ``budget`` section): each with its
        parameters, standard errors and 95% intervals, and its fit quality (R²,
        Durbin-Watson, periods, observed spend, warnings). Fitting reads the sources;
        the result plans (:meth:`BudgetCurves.plan`) and answers what-ifs
        (:meth:`BudgetCurves.what_if`) on these curves without reading them again.

        Raises
        ------
        ConfigError
            The configuration has neither ``budget.items`` nor a ``channel_spend`` source.

        Examples
        --------
        >>> import tempfile, pathlib
        >>> from segvalue.pipeline import run_demo
        >>> _, path = run_demo(n_customers=300, out_dir=pathlib.Path(tempfile.mkdtemp()))
        >>> project = Project.from_yaml(path)
        >>> curves = project.budget_curves()
        >>> [c.item.name for c in curves]
        ['app_push', 'email', 'onsite', 'paid_social', 'search_ads']
        >>> fit = curves[0].fit
        >>> fit.form, sorted(fit.params), 0 < fit.r_squared <= 1, fit.n_periods
        ('hill', ['beta', 'k', 'slope', 'theta'], True, 156)
        >>> curves.plan()[0].allocation == project.budget()[0].allocation
        True
        """
        from segvalue.pipeline.budget import _budget_items  # the plan's very curves

        items, _, _, fits, warnings = _budget_items(self.config, None)
        return BudgetCurves(
            self, [BudgetCurve(item, fits.get(item.name)) for item in items], warnings
        )

    def scorer(self, run_id: str | None = None) -> Scorer:
        """The scorer saved with the latest complete run (or ``run_id``).

        ``scorer().score(attributes, orders)`` gives one customer's features, a
        membership per scheme, P(alive), churn risk, expected purchases and CLV with its
        interval, as the run would have, without re-running anything.

        Examples
        --------
        >>> import tempfile, pathlib
        >>> from segvalue.pipeline import run_demo
        >>> _, path = run_demo(n_customers=300, out_dir=pathlib.Path(tempfile.mkdtemp()))
        >>> with Project.from_yaml(path) as project:
        ...     scored = project.scorer().score(
        ...         {"customer_id": "NEW-1"},
        ...         [{"order_ts": "2025-06-01T10:00:00", "amount": 40.0},
        ...          {"order_ts": "2025-11-20T18:30:00", "amount": 55.0}])
        >>> scored["memberships"]["lifecycle"], 0 < scored["probability_alive"] <= 1
        ('returning', True)
        """
        return self.runs.require_latest(run_id).scorer()

    # ------------------------------------------------------------------ real time
    def _open_writer(self) -> ResultsStore:
        """The store opened for writing and kept open (a server applying events).

        A DuckDB file is open for one writer or for readers: our read connection is
        closed first. The server's gate closes it again when idle, so a run can write.
        """
        if self._store is not None and not self._store.read_only:
            return self._store
        from segvalue.store import open_store

        self.close()
        self._store = open_store(self.config.store_url, create=True, hold_bytes=self._hold_bytes())
        return self._store

    def _hold_bytes(self) -> int:
        return self.config.serve.memory_mib * 2**20

    def customer(self, customer_id: str, run_id: str | None = None) -> dict[str, Any] | None:
        """One customer now: as the latest complete run (or ``run_id``) scored them, then
        re-scored with the events received for them since that run, if any.

        The shape of :meth:`RunView.customer` (and of ``Scorer.score``); None when
        neither the run nor the events know the customer.

        Examples
        --------
        >>> import tempfile, pathlib
        >>> from segvalue.pipeline import run_demo
        >>> _, path = run_demo(n_customers=300, out_dir=pathlib.Path(tempfile.mkdtemp()))
        >>> with Project.from_yaml(path) as project:
        ...     before = project.customer("C0000001")["features"]["orders"]
        ...     reply = project.record_event({"type": "order", "customer_id": "C0000001",
        ...         "order_id": "API-1", "order_ts": "2025-12-31T10:00:00", "amount": 42.5})
        ...     after = project.customer("C0000001")["features"]["orders"]
        >>> after - before, reply["customer"]["features"]["orders"] == after
        (1, True)
        """
        view = self.runs.require_latest(run_id)
        store = self._store_for_views()
        pending = store.events(customer_id=customer_id, after=_events_through(view))
        return self._current(view, customer_id, pending)

    def _current(
        self, view: RunView, customer_id: str, pending: list[Any]
    ) -> dict[str, Any] | None:
        """The customer as the run scored them, with the ``pending`` events applied."""
        if not pending:
            return view.customer(customer_id)
        key = (view.run_id, customer_id, pending[-1].seq)
        known = _RESCORED.get(key)
        if known is not None:
            _RESCORED.move_to_end(key)
            return cast(dict[str, Any], json.loads(known))
        scored = self._rescored(view, customer_id, [e.body for e in pending])
        _remember_rescored(key, scored)
        return scored

    def _rescored(
        self, view: RunView, customer_id: str, events: list[dict[str, Any]]
    ) -> dict[str, Any]:
        """The customer re-scored by the run's scorer with the run's history and ``events``."""
        scored = self._rescored_many(view, [(customer_id, events)])[0]
        if isinstance(scored, Exception):
            raise scored
        return scored

    def _rescored_many(
        self, view: RunView, customers: Sequence[tuple[str, list[dict[str, Any]]]]
    ) -> list[dict[str, Any] | EventError]:
        """:meth:`_rescored` of several customers (distinct), the models evaluated once;
        a customer whose events break a rule gets the :class:`EventError` instead."""
        from segvalue.data.writers import json_safe
        from segvalue.realtime import EventError, history_with
        from segvalue.scoring import PREDICTIONS, History

        if not view.has_table("history_orders"):
            raise ConfigError(
                f"run {view.run_id} was recorded without the customers' history that "
                "real-time events are applied to (by an older segvalue)",
                fix="run the main job once (segvalue run), then send the event again",
                parameter="store.url",
            )
        scorer = view.scorer()
        run_as_of = dt.date.fromisoformat(str(view.info.as_of))
        out: list[dict[str, Any] | EventError] = []
        histories: list[History] = []
        for customer_id, events in customers:
            known = (
                view.rows("history_customers", "customer_id", customer_id).to_pylist()
                if view.has_table("history_customers")
                else []
            )
            if not known and scorer.knows_customers:
                out.append(
                    EventError(
                        f"unknown_customer: customer {customer_id!r} is not in the "
                        f"customers table of run {view.run_id}",
                        rule="unknown_customer",
                        field="customer_id",
                        fix="add the customer to the customers source and run again",
                    )
                )
                continue
            history: dict[str, list[dict[str, Any]]] = {}
            for name in ("history_orders", "history_order_lines", "history_touchpoints"):
                history[name] = (
                    view.rows(name, "customer_id", customer_id).to_pylist()
                    if view.has_table(name)
                    else []
                )
            try:
                histories.append(
                    history_with(
                        attributes={**(known[0] if known else {}), "customer_id": customer_id},
                        orders=history["history_orders"],
                        order_lines=history["history_order_lines"],
                        touchpoints=history["history_touchpoints"],
                        events=events,
                        run_as_of=run_as_of,
                        as_of_fixed=self.config.as_of is not None,
                    )
                )
                out.append({})  # filled below
            except EventError as exc:
                out.append(exc)
        scored = iter(scorer.score_many(histories))
        # Features as the run stores them (the predictions beside them, not among them).
        predicted = {*PREDICTIONS, "purchase_propensity"}
        for i, slot in enumerate(out):
            if isinstance(slot, EventError):
                continue
            one = next(scored)
            one["features"] = {k: v for k, v in one["features"].items() if k not in predicted}
            # As stored and as read back: JSON values (dates as ISO text).
            out[i] = json.loads(json.dumps(json_safe(one), default=str, allow_nan=False))
        return out

    def prepare_real_time(self) -> None:
        """Load what applying an event needs (the real-time rules, the latest complete
        run's scorer), so that a server's first event does not wait for it.

        Examples
        --------
        >>> from segvalue.config import parse_config
        >>> Project(parse_config({"sources": {"orders": {"path": "o.csv"}}})).prepare_real_time()
        """
        import segvalue.realtime  # noqa: F401  (the rules every event is checked by)

        if self._open_store(missing_ok=True) is None:
            return
        view = self.runs.latest()
        if view is not None and view.has_document("scorer"):
            view.scorer()

    def record_event(self, event: Mapping[str, Any]) -> dict[str, Any]:
        """Apply one new order or touchpoint now: check it, store it, re-score its customer.

        The event is checked with the rules a file's rows are checked against
        (:func:`segvalue.realtime.check_event`), stored (an event already stored, or an
        order the run's files hold, is applied once), and the customer is re-scored by
        the latest complete run's scorer with everything received for them since that
        run; the segments they entered and left are stored too. The next
        ``segvalue run`` includes the stored events. Several at once:
        :meth:`record_events`.

        Parameters
        ----------
        event
            ``{"type": "order", "customer_id", "order_id", "order_ts", "amount"}`` (and
            optionally ``discount``, ``currency``, ``channel``, ``lines``: ``[{"category",
            "line_amount", "product_id", "quantity", "brand"}]``), or ``{"type":
            "touchpoint", "customer_id", "ts", "channel"}`` (and ``event``, ``touch_id``,
            ``campaign_id``, ``cost``).

        Returns
        -------
        dict
            ``customer`` (as :meth:`customer`), ``events``: ``[{"scheme", "from",
            "to"}]`` for each segment entered or left, and ``duplicate`` (True when the
            event had been applied already: nothing changed).

        Raises
        ------
        segvalue.realtime.EventError
            The event breaks a rule (``rule``), naming the field.
        """
        outcome = self.record_events([event])[0]
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    def record_events(
        self, events: Sequence[Mapping[str, Any]]
    ) -> list[dict[str, Any] | DataValidationError]:
        """:meth:`record_event` of several events, in order, as if sent one by one.

        Each gets its own outcome: the reply, or the error that event alone would raise
        (the others are applied all the same). Events of distinct customers are
        re-scored together and stored in one transaction, which is what makes a server
        keep up with many events at once.

        Examples
        --------
        >>> import tempfile, pathlib
        >>> from segvalue.pipeline import run_demo
        >>> _, path = run_demo(n_customers=300, out_dir=pathlib.Path(tempfile.mkdtemp()))
        >>> order = {"type": "order", "order_ts": "2025-12-31T10:00:00", "amount": 9.0}
        >>> with Project.from_yaml(path) as project:
        ...     out = project.record_events([
        ...         {**order, "customer_id": "C0000001", "order_id": "B-1"},
        ...         {**order, "customer_id": "C0000002", "order_id": "B-2", "amount": "x"},
        ...         {**order, "customer_id": "C0000001", "order_id": "B-1"}])
        >>> out[0]["duplicate"], out[1].rule, out[2]["duplicate"]
        (False, 'unparseable_value', True)
        """
        from segvalue.realtime import CheckedEvent, check_event

        outcomes: list[dict[str, Any] | DataValidationError | None] = [None] * len(events)
        checked: list[tuple[int, CheckedEvent]] = []
        for i, event in enumerate(events):
            try:
                checked.append((i, check_event(event, self.config)))
            except DataValidationError as exc:
                outcomes[i] = exc
        # Rounds of distinct customers, in order: a customer's events apply one by one.
        round_: list[tuple[int, CheckedEvent]] = []
        for item in checked:
            if any(c.customer_id == item[1].customer_id for _, c in round_):
                self._record_round(round_, outcomes)
                round_ = []
            round_.append(item)
        self._record_round(round_, outcomes)
        done = [o for o in outcomes if o is not None]
        if len(done) != len(events):  # pragma: no cover - every event gets its outcome
            raise RuntimeError("an event was left without an outcome")
        return done

    def _record_round(
        self,
        round_: Sequence[tuple[int, Any]],
        outcomes: list[dict[str, Any] | DataValidationError | None],
    ) -> None:
        """Apply checked events of distinct customers: one re-scoring, one transaction."""
        from segvalue.realtime import transitions
        from segvalue.store import EventRecord

        if not round_:
            return
        store = self._open_writer()
        view = self.runs.require_latest()
        through = _events_through(view)
        duplicates: list[tuple[int, str]] = []
        fresh: list[tuple[int, Any, list[Any]]] = []
        seen: set[str] = set()
        for i, checked in round_:
            pending = store.events(customer_id=checked.customer_id, after=through)
            if (
                checked.event_id in seen
                or any(e.event_id == checked.event_id for e in pending)
                or (
                    checked.type == "order"
                    and view.has_table("history_orders")
                    and store.contains(
                        view.run_id, "history_orders", "order_id", checked.body["order_id"]
                    )
                )
            ):
                duplicates.append((i, checked.customer_id))
                continue
            seen.add(checked.event_id)
            fresh.append((i, checked, pending))
        # Re-scored with the new event, and (unless remembered) without it: one call.
        wanted = [(c.customer_id, [*(e.body for e in pending), c.body]) for _, c, pending in fresh]
        earlier = [
            ((view.run_id, c.customer_id, pending[-1].seq), c.customer_id, pending)
            for _, c, pending in fresh
            if pending and (view.run_id, c.customer_id, pending[-1].seq) not in _RESCORED
        ]
        scored = self._rescored_many(
            view, [*wanted, *((cid, [e.body for e in pending]) for _, cid, pending in earlier)]
        )
        for (key, _, _), was in zip(earlier, scored[len(wanted) :], strict=True):
            if not isinstance(was, Exception):
                _remember_rescored(key, was)
        applied: list[tuple[int, Any, dict[str, Any], list[Any]]] = []
        seq = store.last_event_seq()
        for (i, checked, pending), after in zip(fresh, scored[: len(wanted)], strict=True):
            if isinstance(after, Exception):
                outcomes[i] = after
                continue
            before = self._current(view, checked.customer_id, pending)
            moves = transitions((before or {}).get("memberships") or {}, after["memberships"])
            seq += 1
            record = EventRecord(
                seq,
                checked.event_id,
                checked.type,
                checked.customer_id,
                checked.occurred_at,
                checked.body,
            )
            applied.append((i, record, after, moves))
        try:
            store.apply_events([(r, moves) for _, r, _, moves in applied], run_id=view.run_id)
        except DataValidationError:
            if len(round_) == 1:
                if store.event(round_[0][1].event_id) is None:
                    raise
                duplicates = [(round_[0][0], round_[0][1].customer_id)]
                applied = []
            else:
                # Another writer stored events meanwhile: each on its own, as sent.
                for i, checked in round_:
                    if outcomes[i] is None:
                        self._record_round([(i, checked)], outcomes)
                return
        for i, record, after, moves in applied:
            _remember_rescored((view.run_id, record.customer_id, record.seq), after)
            outcomes[i] = {
                "customer": after,
                "events": [{"scheme": s, "from": a, "to": b} for s, a, b in moves],
                "duplicate": False,
            }
        for i, customer_id in duplicates:
            outcomes[i] = {"customer": self.customer(customer_id), "events": [], "duplicate": True}

    def segment_events(
        self, customer_id: str | None = None, limit: int = 1000
    ) -> list[dict[str, Any]]:
        """Segment entries and exits found in real time, newest first (see
        :meth:`record_event`)."""
        store = self._open_store(missing_ok=True)
        if store is None:
            return []
        return [m.to_dict() for m in store.segment_events(customer_id=customer_id, limit=limit)]

    def protected_paths(self) -> dict[Path, str]:
        """What no file segvalue writes may be or hold: the inputs and the store file.

        Examples
        --------
        >>> from segvalue.config import parse_config
        >>> cfg = parse_config({"sources": {"orders": {"path": "o.csv"}}}, base_dir=Path("/p"))
        >>> sorted(set(Project(cfg).protected_paths().values()))
        ['source orders', 'the results store', "the results store's events journal"]
        """
        from segvalue.pipeline.ingest import protected_inputs
        from segvalue.pipeline.persist import protected_store

        return {**protected_inputs(self.config), **protected_store(self.config)}

    def segment_clv(self, run_id: str | None = None) -> dict[str, float]:
        """Mean CLV per customer by segment (with ``all customers``) of a complete run.

        The ``clv_mean`` KPI of the latest complete run (or ``run_id``).
        """
        if not (self.config.clv.enabled and self.config.segments.enabled):
            raise ConfigError(
                "objective clv needs the segments' CLV, and clv or segments is disabled",
                fix="set clv.enabled: true and segments.enabled: true, or use objective revenue",
                parameter="objective",
            )
        kpis = self.runs.require_latest(run_id).segment_kpis()
        if "clv_mean" not in kpis.column_names:
            return {}
        return {
            str(row["segment"]): float(row["clv_mean"])
            for row in kpis.select(["segment", "clv_mean"]).to_pylist()
            if row["clv_mean"] is not None
        }


#: Customers re-scored after events, by (run, customer, last event applied): the same
#: inputs give the same answer, so what was computed is kept (least recently used out),
#: as JSON text: one object each, which the garbage collector does not walk (a server's
#: full collections would otherwise pause it for every nested value kept).
_RESCORED: OrderedDict[tuple[str, str, int], str] = OrderedDict()
_RESCORED_KEPT = 100_000


def _activation_table(view: RunView, name: str) -> pa.Table:
    """One table of the run's stored activation; an error saying how to make one."""
    if not view.has_table(name):
        raise ConfigError(
            f"run {view.run_id} holds no activation to export",
            fix="plan the campaigns first (segvalue activate, or Project.activate)",
            parameter="audience",
        )
    return view.table(name)


def _remember_rescored(key: tuple[str, str, int], scored: dict[str, Any]) -> None:
    _RESCORED[key] = json.dumps(scored, allow_nan=False)
    while len(_RESCORED) > _RESCORED_KEPT:
        _RESCORED.popitem(last=False)


def _events_through(view: RunView) -> int:
    """The last stored event the run took in (0 for a run from before real-time events)."""
    return int(view.document("events")["through"]) if view.has_document("events") else 0


def _scheme_modes(view: RunView) -> dict[str, str]:
    """Each scheme's mode (``tags``: several segments per customer) from the segments doc."""
    if not view.has_document("segments"):
        return {}
    schemes: Mapping[str, Any] = view.segments().get("schemes", {})
    return {name: str(info.get("mode", "exclusive")) for name, info in schemes.items()}


def _scheme_diff(scheme: str, before: pa.Table, after: pa.Table, tags: bool) -> SchemeDiff:
    import pyarrow as pa

    def sizes(table: pa.Table) -> dict[str, int]:
        counts = table.group_by("segment").aggregate([("customer_id", "count")])
        return dict(
            zip(
                counts.column("segment").to_pylist(),
                counts.column("customer_id_count").to_pylist(),
                strict=True,
            )
        )

    def pairs(table: pa.Table) -> set[tuple[str, str]]:
        return set(
            zip(
                table.column("customer_id").to_pylist(),
                table.column("segment").to_pylist(),
                strict=True,
            )
        )

    old, new = sizes(before), sizes(after)
    names = sorted(set(old) | set(new))
    size_table = pa.table(
        {
            "segment": pa.array(names, pa.string()),
            "before": pa.array([old.get(n, 0) for n in names], pa.int64()),
            "after": pa.array([new.get(n, 0) for n in names], pa.int64()),
            "change": pa.array([new.get(n, 0) - old.get(n, 0) for n in names], pa.int64()),
        }
    )
    old_pairs, new_pairs = pairs(before), pairs(after)
    entered: dict[str, int] = {}
    left: dict[str, int] = {}
    for _, segment in new_pairs - old_pairs:
        entered[segment] = entered.get(segment, 0) + 1
    for _, segment in old_pairs - new_pairs:
        left[segment] = left.get(segment, 0) + 1
    transitions = None
    if not tags:
        was = dict(old_pairs)
        now = dict(new_pairs)
        counts: dict[tuple[str | None, str | None], int] = {}
        for customer in set(was) | set(now):
            key = (was.get(customer), now.get(customer))
            counts[key] = counts.get(key, 0) + 1
        order = sorted(counts, key=lambda k: (k[0] is None, k[0] or "", k[1] is None, k[1] or ""))
        transitions = pa.table(
            {
                "from_segment": pa.array([k[0] for k in order], pa.string()),
                "to_segment": pa.array([k[1] for k in order], pa.string()),
                "customers": pa.array([counts[k] for k in order], pa.int64()),
            }
        )
    return SchemeDiff(
        scheme=scheme,
        sizes=size_table,
        transitions=transitions,
        entered=dict(sorted(entered.items())),
        left=dict(sorted(left.items())),
    )


def _kpi_scheme(view: RunView) -> str | None:
    if not view.has_table("segment_kpis"):
        return None
    schemes = set(view.segment_kpis().column("scheme").to_pylist())
    return schemes.pop() if len(schemes) == 1 else None


def _kpi_diff(before: pa.Table, after: pa.Table) -> pa.Table:
    """``segment, kpi, before, after, change`` of every numeric KPI both tables report."""
    import pyarrow as pa

    def numeric(table: pa.Table) -> list[str]:
        return [
            f.name
            for f in table.schema
            if f.name not in _KPI_KEYS
            and not f.name.endswith(("_lower", "_upper", "_n"))
            and (pa.types.is_integer(f.type) or pa.types.is_floating(f.type))
        ]

    kpis = [k for k in numeric(after) if k in set(numeric(before))]
    old = {str(r["segment"]): r for r in before.to_pylist()}
    rows = []
    for row in after.to_pylist():
        segment = str(row["segment"])
        if segment not in old:
            continue
        for kpi in kpis:
            a, b = old[segment][kpi], row[kpi]
            change = None if a is None or b is None else b - a
            rows.append({"segment": segment, "kpi": kpi, "before": a, "after": b, "change": change})
    schema = pa.schema(
        [
            ("segment", pa.string()),
            ("kpi", pa.string()),
            ("before", pa.float64()),
            ("after", pa.float64()),
            ("change", pa.float64()),
        ]
    )
    return pa.Table.from_pylist(rows, schema=schema)


def _diff(before: RunView, after: RunView) -> RunDiff:
    import pyarrow.compute as pc

    schemes: dict[str, SchemeDiff] = {}
    if before.has_table("memberships") and after.has_table("memberships"):
        old, new = before.memberships(), after.memberships()
        modes = {**_scheme_modes(before), **_scheme_modes(after)}
        names = sorted(
            set(old.column("scheme").to_pylist()) | set(new.column("scheme").to_pylist())
        )
        for name in names:
            schemes[name] = _scheme_diff(
                name,
                old.filter(pc.equal(old.column("scheme"), name)),
                new.filter(pc.equal(new.column("scheme"), name)),
                tags=modes.get(name) == "tags",
            )
    scheme = _kpi_scheme(after)
    kpis = None
    if scheme is not None and _kpi_scheme(before) == scheme:
        kpis = _kpi_diff(before.segment_kpis(), after.segment_kpis())
    return RunDiff(
        before=before.info,
        after=after.info,
        schemes=schemes,
        kpi_scheme=scheme if kpis is not None else None,
        kpis=kpis,
    )


def response_curve_points(
    item: ResponseItem, current: float, planned: float, points: int = 101
) -> dict[str, Any]:
    """A budget item's return ``value * response`` from no spend to past its planned spend.

    Examples
    --------
    >>> from segvalue.config import ResponseItem
    >>> item = ResponseItem(name="email", beta=50.0, k=100.0, slope=1.0, value=2.0)
    >>> curve = response_curve_points(item, 40.0, 60.0, points=5)
    >>> curve["spend"][0], curve["response"][0], curve["planned"]
    (0.0, 0.0, 60.0)
    """
    import numpy as np

    from segvalue.economics.budget import item_response

    top = 1.5 * max(current, planned, item.k)
    spend = np.linspace(0.0, top, points)
    ret = item.value * item_response(item, spend)
    return {
        "name": item.name,
        "spend": spend.tolist(),
        "response": ret.tolist(),
        "current": current,
        "planned": planned,
        "current_response": float(item.value * item_response(item, current)),
        "planned_response": float(item.value * item_response(item, planned)),
    }


@dataclass(frozen=True)
class BudgetCurve:
    """One budget item's response curve as the plan uses it, and its fit when fitted.

    Attributes
    ----------
    item
        The item: ``form``, ``beta``, ``k``, ``slope``, ``value`` (money per unit of
        response), ``current`` spend and its limits.
    fit
        The fitted curve (:class:`segvalue.economics.curves.FittedCurve`: parameters with
        standard errors and intervals, ``r_squared``, ``durbin_watson``, ``n_periods``,
        ``spend_range``, ``warnings``); None for a curve given in ``budget.items``.

    Examples
    --------
    >>> from segvalue.config import ResponseItem
    >>> curve = BudgetCurve(ResponseItem(name="email", form="michaelis_menten", beta=50, k=9))
    >>> curve.to_dict()["source"], curve.to_dict()["params"]
    ('given', {'beta': 50.0, 'k': 9.0, 'slope': 1.0})
    """

    item: ResponseItem
    fit: FittedCurve | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: the item's curve, and ``fit`` (None for a given curve)."""
        item, fit = self.item, self.fit
        out: dict[str, Any] = {
            "item": item.name,
            "source": "given" if fit is None else "fitted",
            "form": item.form,
            "params": {"beta": item.beta, "k": item.k, "slope": item.slope or 1.0},
            "value": item.value,
            "current": item.current,
            "segment": item.segment,
            "fit": None,
        }
        if fit is not None:
            out["fit"] = {
                "channel": fit.channel,
                "segment": fit.segment,
                "params": dict(fit.params),
                "standard_errors": dict(fit.standard_errors),
                "intervals": {name: list(bounds) for name, bounds in fit.intervals.items()},
                "r_squared": fit.r_squared,
                "durbin_watson": fit.durbin_watson,
                "residual_std": fit.residual_std,
                "n_periods": fit.n_periods,
                "spend_range": list(fit.spend_range),
                "loss": fit.loss,
                "converged": fit.converged,
                "warnings": list(fit.warnings),
            }
        return out


class BudgetCurves(Sequence[BudgetCurve]):
    """The curves of a project's budget, read and fitted once (:meth:`Project.budget_curves`).

    A sequence of :class:`BudgetCurve`; :meth:`plan` and :meth:`what_if` give what
    :meth:`Project.budget` and :meth:`Project.what_if` give, on these curves, without
    reading the sources again.

    Examples
    --------
    >>> from segvalue.config import parse_config
    >>> cfg = parse_config({
    ...     "sources": {"orders": {"path": "o.csv"}},
    ...     "budget": {"objective": "revenue", "total": 400, "items": [
    ...         {"name": "a", "form": "michaelis_menten", "beta": 1000, "k": 200, "current": 300},
    ...         {"name": "b", "form": "michaelis_menten", "beta": 600, "k": 100, "current": 50}]}})
    >>> curves = Project(cfg).budget_curves()
    >>> len(curves), curves.warnings, round(curves.what_if("a", "b", 0.2).change_value, 3)
    (2, [], 59.74)
    """

    def __init__(self, project: Project, curves: list[BudgetCurve], warnings: list[str]) -> None:
        self._project = project
        self._curves = list(curves)
        self.warnings = list(warnings)  #: the fits' warnings

    @overload
    def __getitem__(self, index: int) -> BudgetCurve: ...
    @overload
    def __getitem__(self, index: slice) -> list[BudgetCurve]: ...
    def __getitem__(self, index: int | slice) -> BudgetCurve | list[BudgetCurve]:
        return self._curves[index]

    def __len__(self) -> int:
        return len(self._curves)

    def __repr__(self) -> str:
        return f"BudgetCurves({[c.item.name for c in self._curves]!r})"

    def plan(
        self,
        *,
        total: float | None = None,
        objective: str | None = None,
        target: float | None = None,
    ) -> tuple[Any, list[str]]:
        """:meth:`Project.budget` on these curves: the same plan and warnings."""
        from segvalue.pipeline import plan_budget

        # The configuration with these curves as its given items: the settings (objective,
        # total, limits) apply as they do to curves fitted from channel_spend.
        config = self._project.config
        budget = config.budget.model_copy(update={"items": [c.item for c in self._curves]})
        plan, notes = plan_budget(
            config=config.model_copy(update={"budget": budget}),
            total=total,
            objective=objective,
            target=target,
            segment_clv=self._project.segment_clv,
        )
        return plan, [*self.warnings, *notes]

    def what_if(self, source: str, destination: str, share: float) -> Any:
        """:meth:`Project.what_if` of ``source:destination:share`` on these curves.

        Fitted curves carry their parameter uncertainty into the interval; given ones
        have none (the interval is None).
        """
        from segvalue.economics.budget import what_if

        fits = {c.item.name: c.fit for c in self._curves if c.fit is not None}
        return what_if(
            [c.item for c in self._curves],
            move=(source, destination, share),
            uncertainty=fits or None,
        )
