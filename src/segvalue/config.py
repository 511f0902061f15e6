"""The pydantic model of ``segvalue.yaml``.

Loading goes through :func:`load_config`, which turns every YAML or validation problem into
one :class:`~segvalue.errors.ConfigError` that names the key and says how to fix it.
Relative paths in ``sources`` are resolved against the folder holding the YAML file.
"""

from __future__ import annotations

import datetime as dt
import functools
import itertools
import re
import types
import typing
import warnings
import zoneinfo
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    ValidationError,
    field_validator,
    model_validator,
)

from segvalue.errors import ConfigError, SegvalueError, did_you_mean
from segvalue.units import TimeUnit, parse_time_unit

# PyYAML is imported by the functions that read YAML: a command given its options on the
# command line (`segvalue clv FILE ...`) validates them here without reading any.
if TYPE_CHECKING:
    import yaml

__all__ = [
    "KPI_NAMES",
    "OPERATORS",
    "TABLE_NAMES",
    "ActivationConfig",
    "AllOf",
    "AnyOf",
    "AttributionConfig",
    "BudgetConfig",
    "CLVConfig",
    "CampaignConfig",
    "CampaignStep",
    "CapConfig",
    "ClusterConfig",
    "Condition",
    "ConditionExpr",
    "Config",
    "ControlGroupConfig",
    "CsvOptions",
    "CurvesFile",
    "EngineConfig",
    "ExperimentsConfig",
    "ExportConfig",
    "KPIConfig",
    "KPITarget",
    "LifecycleConfig",
    "MarketPotentialConfig",
    "MeasurementConfig",
    "NotOf",
    "OfferConfig",
    "OutputConfig",
    "PrivacyConfig",
    "QuietHoursConfig",
    "RFMConfig",
    "RFMSegmentRule",
    "ResponseItem",
    "RuleSchemeConfig",
    "SchemeConfig",
    "SegmentRule",
    "SegmentsConfig",
    "ServeConfig",
    "SourceConfig",
    "StoreConfig",
    "ValidationConfig",
    "config_template",
    "load_config",
    "parse_config",
    "re2_unsupported",
    "read_yaml",
]

TABLE_NAMES: tuple[str, ...] = (
    "customers",
    "orders",
    "order_lines",
    "touchpoints",
    "channel_spend",
    "experiments",
    "contact_log",
)

FileFormat = Literal["csv", "parquet", "duckdb"]

_EXTENSION_FORMATS: dict[str, FileFormat] = {
    ".csv": "csv",
    ".tsv": "csv",
    ".txt": "csv",
    ".gz": "csv",
    ".parquet": "parquet",
    ".pq": "parquet",
    ".duckdb": "duckdb",
    ".db": "duckdb",
}


def _repeated(names: list[str]) -> list[str]:
    """Names that occur more than once, sorted."""
    return sorted({n for n in names if names.count(n) > 1})


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class CsvOptions(_Strict):
    """How a delimited text file is read."""

    delimiter: str = Field(",", description="',', ';', '\\t', '|' or 'whitespace'")
    decimal: Literal[".", ","] = "."
    header: bool = True
    encoding: Literal["utf-8", "utf-16", "latin-1"] = "utf-8"
    quote: str = '"'

    @field_validator("delimiter")
    @classmethod
    def _known_delimiter(cls, value: str) -> str:
        aliases = {"tab": "\t", "\\t": "\t", "space": "whitespace", "comma": ",", "semicolon": ";"}
        value = aliases.get(value, value)
        if value != "whitespace" and len(value) != 1:
            raise ValueError("must be one character (',', ';', '|', '\\t') or 'whitespace'")
        return value


#: The touchpoint events segvalue understands (``sources.touchpoints.event_map`` maps others).
TOUCHPOINT_EVENTS: tuple[str, ...] = ("impression", "click", "open", "visit", "conversion")


class SourceConfig(_Strict):
    """Where one logical table comes from and how its columns are named."""

    path: str | None = Field(None, description="CSV, Parquet or DuckDB file (relative to yaml)")
    url: str | None = Field(None, description="Ibis connection URL, e.g. postgres://u@h/db")
    table: str | None = Field(
        None, description="table in a DuckDB file or database; alone: a table in the engine"
    )
    format: FileFormat | None = None
    csv: CsvOptions = CsvOptions()
    columns: dict[str, str] = Field(default_factory=dict, description="logical -> source column")
    date_format: str | None = Field(None, description="strftime format, e.g. '%d/%m/%Y'")
    event_map: dict[str, str] = Field(
        default_factory=dict, description="touchpoints: your event value -> a TOUCHPOINT_EVENTS"
    )

    @field_validator("event_map")
    @classmethod
    def _known_events(cls, value: dict[str, str]) -> dict[str, str]:
        unknown = sorted({v for v in value.values() if v not in TOUCHPOINT_EVENTS})
        if unknown:
            raise ValueError(
                f"maps to {', '.join(map(repr, unknown))}; "
                f"events are {', '.join(TOUCHPOINT_EVENTS)}"
            )
        return value

    @model_validator(mode="after")
    def _one_location(self) -> SourceConfig:
        if self.path is not None and self.url is not None:
            raise ValueError("give only one of 'path' (a file) or 'url' (a database)")
        if self.path is None and self.url is None and self.table is None:
            raise ValueError(
                "give 'path' (a file), 'url' and 'table' (a database), "
                "or 'table' alone (a table in the engine)"
            )
        if self.url is not None and self.table is None:
            raise ValueError("a 'url' source also needs 'table' (the table to read)")
        if self.resolved_format == "duckdb" and self.table is None:
            raise ValueError("a DuckDB file source also needs 'table' (the table to read)")
        return self

    @property
    def resolved_format(self) -> FileFormat | None:
        """The file format, given or inferred from the extension (None for URLs)."""
        if self.format is not None or self.path is None:
            return self.format
        suffix = Path(self.path).suffix.lower()
        if suffix not in _EXTENSION_FORMATS:
            return "csv"
        return _EXTENSION_FORMATS[suffix]


class EngineConfig(_Strict):
    """Where table work runs: an Ibis connection URL (DuckDB in memory by default)."""

    url: str = Field("duckdb://", description="duckdb:// (memory), duckdb:///file.duckdb, ...")


class ValidationConfig(_Strict):
    """How strict ingestion is and when data count as too thin for predictive models."""

    strict: bool = Field(False, description="fail on any rejected row instead of reporting it")
    zero_amounts: Literal["keep", "reject"] = Field(
        "keep", description="zero-amount orders: keep as purchases (counted) or reject"
    )
    min_repeat_customers: int = Field(500, ge=0)
    prediction_horizon: float = Field(52.0, gt=0, description="in time units")
    min_history_multiple: float = Field(3.0, ge=0)
    max_amount: float = Field(
        1e9, gt=0, description="money values beyond +/- this are rejected (implausible_value)"
    )


class CLVConfig(_Strict):
    """Customer lifetime value: which models, over what horizon, at what rates."""

    enabled: bool = True
    model: Literal["bgnbd", "mbgnbd", "pnbd", "auto"] = Field(
        "auto",
        description="auto: MBG/NBD or Pareto/NBD by holdout error (else log-likelihood); "
        "bgnbd cannot tell that a one-time buyer has left",
    )
    spend_model: Literal["gamma-gamma", "none"] = "gamma-gamma"
    horizon: int = Field(52, ge=1, description="whole time units")
    discount_rate: float = Field(0.10, gt=-1, description="annual, converted to the unit")
    margin: float = Field(1.0, gt=0, le=1, description="profit share of spend")
    holdout: float | None = Field(
        None, gt=0, description="last N time units kept out of the fit to validate it"
    )


# --- segmentation ----------------------------------------------------------------------


class _KeyedConfigError(ConfigError):
    """A validator's error about one key below the model it validates (e.g. ``value``).

    The formatter appends ``key`` to the location pydantic reports, so that the message
    names the exact key, and shows the value found there.
    """

    def __init__(self, message: str, *, key: str, fix: str) -> None:
        self.key = key
        super().__init__(message, fix=fix)


#: Comparison operators of the rule DSL.
OPERATORS: tuple[str, ...] = (
    "==",
    "!=",
    "<",
    "<=",
    ">",
    ">=",
    "in",
    "not_in",
    "between",
    "regex",
    "is_null",
    "not_null",
)
Operator = Literal[
    "==", "!=", "<", "<=", ">", ">=", "in", "not_in", "between", "regex", "is_null", "not_null"
]


_RE2_FLAGS = "imsU"
_RE2_MAX_REPEAT = 1000


def re2_unsupported(pattern: str) -> tuple[str, str] | None:
    """The first construct of a Python regex that RE2 (DuckDB's regex engine) rejects.

    Rules compile ``regex`` conditions to the engine's regex functions; DuckDB uses RE2,
    which has no lookaround, backreferences, possessive quantifiers, atomic groups,
    conditionals or comments, and caps counted repetition at 1000. The pattern must
    already compile with Python's ``re``.

    Returns
    -------
    tuple of (str, str) or None
        The construct (named, with where it is) and the fix, or None when RE2 accepts it.

    Examples
    --------
    >>> re2_unsupported("^(DE|AT)$") is None
    True
    >>> re2_unsupported("^foo(?!bar)")[0]
    "a negative lookahead '(?!' at position 4"
    """
    i, in_class = 0, False
    while i < len(pattern):
        char = pattern[i]
        at = f" at position {i}"
        if char == "\\":
            escaped = pattern[i + 1 : i + 2]
            if escaped and escaped in "123456789" and in_class:
                return f"the octal escape '\\{escaped}' in a set{at}", "write \\x{hh} instead"
            if escaped and escaped in "123456789":
                return (
                    f"a backreference '\\{escaped}'{at}",
                    "rewrite without backreferences (RE2 cannot match repeated text), "
                    "e.g. list the alternatives with |",
                )
            if escaped in ("Z", "u", "U", "N"):
                fixes = {"Z": "use '$' (end of text)", "N": "write the character itself"}
                fix = fixes.get(escaped, "write the character itself or use \\x{hhhh}")
                return f"the escape '\\{escaped}'{at}", fix
            i += 2
            continue
        if in_class:
            if char == "]":
                in_class = False
            i += 1
            continue
        if char == "[":
            in_class = True
            # ']' right after '[' or '[^' is a literal member, not the end of the set
            i += 1
            if pattern[i : i + 1] == "^":
                i += 1
            if pattern[i : i + 1] == "]":
                i += 1
            continue
        if char == "(" and pattern[i + 1 : i + 2] == "?":
            found = _re2_group(pattern[i + 2 :])
            if found is not None:
                return f"{found[0]}{at}", found[1]
        if char in "*+?" and pattern[i + 1 : i + 2] == "+" and (i == 0 or pattern[i - 1] != "("):
            return (
                f"a possessive quantifier '{char}+'{at}",
                f"drop the second '+' ('{char}' alone matches the same in RE2)",
            )
        if char == "{":
            counted = re.match(r"\{(\d*)(?:,(\d*))?\}", pattern[i:])
            if counted and not counted.group(1) and counted.group(2):
                return (
                    f"a count {counted.group(0)!r} with no lower bound{at} (RE2 reads it as "
                    "literal text)",
                    f"write {{0,{counted.group(2)}}}",
                )
            if counted and (counted.group(1) or counted.group(2)):
                numbers = [int(n) for n in counted.groups() if n]
                if max(numbers) > _RE2_MAX_REPEAT:
                    return (
                        f"a repetition count {counted.group(0)!r} over {_RE2_MAX_REPEAT}{at}",
                        f"use a count of at most {_RE2_MAX_REPEAT}, or '+' / '*'",
                    )
                end = i + len(counted.group(0))
                if pattern[end : end + 1] == "+":
                    return (
                        f"a possessive quantifier '{counted.group(0)}+'{at}",
                        "drop the '+' after the count",
                    )
                i = end
                continue
        i += 1
    return None


def _re2_group(rest: str) -> tuple[str, str] | None:
    """What follows ``(?``: None when RE2 knows it, else (construct, fix)."""
    lookaround = {
        "=": "a lookahead '(?='",
        "!": "a negative lookahead '(?!'",
        "<=": "a lookbehind '(?<='",
        "<!": "a negative lookbehind '(?<!'",
    }
    for head, name in sorted(lookaround.items(), key=lambda kv: -len(kv[0])):
        if rest.startswith(head):
            return name, (
                "rewrite without lookaround: match the text itself, or combine two "
                "conditions (e.g. all: [{op: regex, ...}, {not: {op: regex, ...}}])"
            )
    others = {
        ">": ("an atomic group '(?>'", "use a plain group '(?:'"),
        "(": ("a conditional group '(?('", "split it into conditions combined with any/all"),
        "#": ("a comment '(?#'", "remove the comment"),
        "P=": ("a named backreference '(?P='", "rewrite without backreferences"),
    }
    for head, found in others.items():
        if rest.startswith(head):
            return found
    flags = re.match(r"([a-zA-Z]*)(?:-([a-zA-Z]*))?[:)]", rest)
    if flags:
        bad = sorted(set((flags.group(1) or "") + (flags.group(2) or "")) - set(_RE2_FLAGS))
        if bad:
            return (
                f"the inline flag{'s' if len(bad) > 1 else ''} {''.join(bad)!r}",
                f"use only the flags {', '.join(_RE2_FLAGS)}, e.g. '(?i)' for case-insensitive",
            )
    return None


class Condition(_Strict):
    """One comparison of a customer attribute or feature: ``{field, op, value}``.

    ``in`` / ``not_in`` take a list, ``between`` a two-element list [low, high]
    (inclusive), ``regex`` a regular expression in the engine's dialect (RE2: no
    lookaround or backreferences; searched, not anchored),
    ``is_null`` / ``not_null`` no value.
    """

    field: str = Field(min_length=1)
    op: Operator = "=="
    value: Any = None

    @model_validator(mode="after")
    def _value_fits_operator(self) -> Condition:
        op, value = self.op, self.value
        if op in ("is_null", "not_null"):
            if value is not None:
                raise _KeyedConfigError(
                    f"operator {op!r} takes no value", key="value", fix="remove 'value'"
                )
        elif value is None:
            raise _KeyedConfigError(
                f"operator {op!r} needs a 'value'",
                key="value",
                fix=f"add a value to compare {self.field!r} with",
            )
        elif op in ("in", "not_in"):
            if not isinstance(value, list) or not value:
                example = f"[{value!r}]" if not isinstance(value, list) else "[a, b]"
                raise _KeyedConfigError(
                    f"operator {op!r} needs a non-empty list",
                    key="value",
                    fix=f"write the values as a list, e.g. value: {example}",
                )
        elif op == "between":
            if not isinstance(value, list) or len(value) != 2:
                raise _KeyedConfigError(
                    "operator 'between' needs two bounds [low, high] (inclusive)",
                    key="value",
                    fix="write value: [low, high], e.g. [18, 34]",
                )
            low, high = value
            if _orderable(low, high) and low > high:
                raise _KeyedConfigError(
                    f"'between' bounds are reversed: {low!r} > {high!r}",
                    key="value",
                    fix=f"write the lower bound first: value: [{high!r}, {low!r}]",
                )
        elif op == "regex":
            if not isinstance(value, str):
                raise _KeyedConfigError(
                    f"operator 'regex' needs a pattern (text), got {value!r}",
                    key="value",
                    fix="quote the pattern, e.g. value: '^DE'",
                )
            try:
                with warnings.catch_warnings():  # "possible nested set" and the like
                    warnings.simplefilter("ignore")
                    re.compile(value)
            except re.error as exc:
                raise _KeyedConfigError(
                    f"invalid regular expression {value!r}: {exc}",
                    key="value",
                    fix="correct the pattern; escape special characters such as ( [ . "
                    "with a backslash, or quote the whole value",
                ) from None
            unsupported = re2_unsupported(value)
            if unsupported is not None:
                construct, fix = unsupported
                raise _KeyedConfigError(
                    f"regular expression {value!r} uses {construct}, which the engine's "
                    "regex dialect (RE2) does not support",
                    key="value",
                    fix=fix,
                )
        elif isinstance(value, list | dict):
            raise _KeyedConfigError(
                f"operator {op!r} compares with one value, got a {type(value).__name__}",
                key="value",
                fix="give a single value, or use op: in with a list",
            )
        return self


class AllOf(_Strict):
    """True when every condition holds: ``{all: [...]}``."""

    all_of: list[ConditionExpr] = Field(alias="all", min_length=1)


class AnyOf(_Strict):
    """True when at least one condition holds: ``{any: [...]}``."""

    any_of: list[ConditionExpr] = Field(alias="any", min_length=1)


class NotOf(_Strict):
    """True when the condition does not hold: ``{not: ...}``."""

    not_of: ConditionExpr = Field(alias="not")


def _condition_kind(value: Any) -> str:
    """Which condition form a mapping is, by its keys (so errors name the right one)."""
    if isinstance(value, dict):
        for key in ("all", "any", "not"):
            if key in value:
                return key
        return "compare"
    kinds: dict[type, str] = {AllOf: "all", AnyOf: "any", NotOf: "not"}
    return kinds.get(type(value), "compare")


def _orderable(low: Any, high: Any) -> bool:
    """Both numbers (not booleans) or both text, so that ``low > high`` is meaningful."""
    numbers = all(isinstance(v, int | float) and not isinstance(v, bool) for v in (low, high))
    return numbers or (isinstance(low, str) and isinstance(high, str))


ConditionExpr = Annotated[
    Annotated[Condition, Tag("compare")]
    | Annotated[AllOf, Tag("all")]
    | Annotated[AnyOf, Tag("any")]
    | Annotated[NotOf, Tag("not")],
    Discriminator(_condition_kind),
]


class SegmentRule(_Strict):
    """A named segment and the condition for membership."""

    segment: str = Field(min_length=1)
    when: ConditionExpr
    description: str | None = None


class RuleSchemeConfig(_Strict):
    """Segments defined by rules over customer attributes and features.

    ``mode: first_match``: the rules are an ordered list, each customer gets the first
    segment whose condition holds, else ``unassigned``. ``mode: tags``: every rule is an
    independent yes / no tag (a customer may carry several, or none).
    """

    name: str = Field(min_length=1)
    type: Literal["demographic", "geographic", "psychographic", "behavioural", "benefit"]
    mode: Literal["first_match", "tags"] = "first_match"
    rules: list[SegmentRule] = Field(min_length=1)
    unassigned: str = "unassigned"
    description: str | None = None

    @model_validator(mode="after")
    def _unique_segments(self) -> RuleSchemeConfig:
        names = [r.segment for r in self.rules]
        duplicates = _repeated(names)
        if duplicates:
            raise _KeyedConfigError(
                f"segment names repeat in scheme {self.name!r}: {duplicates}",
                key="rules",
                fix="give each rule a unique 'segment' name (in mode first_match, merge "
                "the conditions of one segment with 'any')",
            )
        if self.unassigned in names:
            raise _KeyedConfigError(
                f"a rule uses the unassigned bucket's name {self.unassigned!r}",
                key="rules",
                fix="rename that segment, or set 'unassigned' to another name",
            )
        return self


class LifecycleConfig(_Strict):
    """Customer-journey stages: new, active, returning, at risk, lapsed, reactivated, one-time.

    Thresholds are in days; any left out is derived from the distribution of the time
    between purchases in the data (see :mod:`segvalue.segments.lifecycle` and
    docs/segments-rules.md).
    """

    name: str = "lifecycle"
    type: Literal["lifecycle"]
    new_days: float | None = Field(None, gt=0, description="first purchase within N days")
    active_days: float | None = Field(None, gt=0, description="last purchase within N days")
    lapsed_days: float | None = Field(None, gt=0, description="no purchase for N days")
    description: str | None = None

    @model_validator(mode="after")
    def _ordered(self) -> LifecycleConfig:
        if self.active_days and self.lapsed_days and self.active_days >= self.lapsed_days:
            raise _KeyedConfigError(
                f"active_days ({self.active_days:g}) must be below lapsed_days "
                f"({self.lapsed_days:g})",
                key="active_days",
                fix="lower active_days or raise lapsed_days (or leave both out to derive them "
                "from the time between purchases)",
            )
        return self


class RFMSegmentRule(_Strict):
    """A named RFM segment: inclusive score ranges; an omitted score matches any value."""

    segment: str = Field(min_length=1)
    r: tuple[int, int] | None = None
    f: tuple[int, int] | None = None
    m: tuple[int, int] | None = None
    fm: tuple[int, int] | None = Field(None, description="rounded mean of F and M scores")


class RFMConfig(_Strict):
    """RFM scores 1..bins and named segments.

    ``method: quantile`` cuts each measure at its quantiles; ``method: cuts`` uses the
    given cut points. ``ties: shared`` gives equal values the same score (bins may be
    unequal in size); ``ties: split`` makes equal-size bins, splitting a tie by customer id.
    """

    name: str = "rfm"
    type: Literal["rfm"]
    bins: int = Field(5, ge=2, le=10)
    method: Literal["quantile", "cuts"] = "quantile"
    cuts: dict[Literal["recency", "frequency", "monetary"], list[float]] | None = None
    ties: Literal["shared", "split"] = "shared"
    segments: list[RFMSegmentRule] | None = Field(
        None, description="ordered, first match wins; default: the standard 11 segments"
    )
    unassigned: str = "Others"
    description: str | None = None

    @model_validator(mode="after")
    def _cuts_fit_method(self) -> RFMConfig:
        if self.method == "cuts":
            missing = [
                k for k in ("recency", "frequency", "monetary") if k not in (self.cuts or {})
            ]
            if missing:
                raise _KeyedConfigError(
                    f"method 'cuts' needs cut points for {missing}",
                    key="cuts",
                    fix=f"give {self.bins - 1} increasing cut points for each of recency, "
                    "frequency and monetary, or use method: quantile",
                )
            for measure, points in (self.cuts or {}).items():
                if len(points) != self.bins - 1:
                    raise _KeyedConfigError(
                        f"{len(points)} cut points for {self.bins} bins; {self.bins} bins "
                        f"need {self.bins - 1}",
                        key=f"cuts.{measure}",
                        fix=f"give exactly {self.bins - 1} increasing cut points, or set "
                        f"bins: {len(points) + 1}",
                    )
                if any(b <= a for a, b in itertools.pairwise(points)):
                    raise _KeyedConfigError(
                        "cut points must increase strictly",
                        key=f"cuts.{measure}",
                        fix="sort them and drop repeats: "
                        f"[{', '.join(f'{p:g}' for p in sorted(set(points)))}]",
                    )
        elif self.cuts is not None:
            raise _KeyedConfigError(
                "'cuts' is only used with method: cuts",
                key="cuts",
                fix="set method: cuts, or remove 'cuts'",
            )
        for index, rule in enumerate(self.segments or []):
            for label, score in (("r", rule.r), ("f", rule.f), ("m", rule.m), ("fm", rule.fm)):
                if score is not None and not 1 <= score[0] <= score[1] <= self.bins:
                    raise _KeyedConfigError(
                        f"segment {rule.segment!r}: score range {list(score)} is outside "
                        f"1..{self.bins} or reversed",
                        key=f"segments[{index}].{label}",
                        fix=f"use [low, high] with 1 <= low <= high <= {self.bins}",
                    )
        return self


class ClusterConfig(_Strict):
    """Data-driven segments: clustering on chosen features, every customer assigned."""

    name: str = "clusters"
    type: Literal["cluster"]
    features: list[str] = Field(min_length=1)
    transform: Literal["none", "log1p"] | dict[str, Literal["none", "log1p"]] = "none"
    scaling: Literal["standard", "robust", "none"] = "standard"
    algorithm: Literal["kmeans", "minibatch_kmeans", "dbscan", "hdbscan"] = "kmeans"
    k: int | Literal["auto"] = "auto"
    k_range: tuple[int, int] = (2, 10)
    sample_size: int = Field(50_000, ge=100)
    eps: float | None = Field(None, gt=0, description="DBSCAN radius (scaled units)")
    min_samples: int = Field(10, ge=1)
    min_cluster_size: int = Field(50, ge=2, description="HDBSCAN")
    stability_resamples: int = Field(10, ge=0)
    seed: int = 0
    unassigned: str = "unassigned"
    description: str | None = None

    @model_validator(mode="after")
    def _k_fits(self) -> ClusterConfig:
        low, high = self.k_range
        if not 2 <= low <= high:
            good = sorted((max(low, 2), max(high, 2)))
            raise _KeyedConfigError(
                "k_range must be [low, high] with 2 <= low <= high",
                key="k_range",
                fix=f"write k_range: {good}",
            )
        if isinstance(self.k, int) and self.k < 2:
            raise _KeyedConfigError(
                f"k must be at least 2 (or 'auto'), got {self.k}",
                key="k",
                fix="set k: auto to choose it from the data, or a number of clusters >= 2",
            )
        if self.algorithm == "dbscan" and self.eps is None:
            raise _KeyedConfigError(
                "algorithm 'dbscan' needs 'eps' (the neighbourhood radius)",
                key="eps",
                fix="add eps (in scaled units, e.g. eps: 0.5), or use algorithm: hdbscan, "
                "which needs no radius",
            )
        if isinstance(self.transform, dict):
            unknown = sorted(set(self.transform) - set(self.features))
            if unknown:
                hint = "".join(did_you_mean(u, self.features) for u in unknown)
                raise _KeyedConfigError(
                    f"transform names features not in 'features': {unknown}{hint}",
                    key="transform",
                    fix=f"transform only listed features ({', '.join(self.features)}), or add "
                    "the feature to 'features'",
                )
        return self


SchemeConfig = Annotated[
    RuleSchemeConfig | LifecycleConfig | RFMConfig | ClusterConfig, Field(discriminator="type")
]


class MarketPotentialConfig(_Strict):
    """Addressable customers and revenue potential for a product or category, per segment.

    Addressable: members who have the ``need`` (all, when omitted) and have not bought
    ``category``. Revenue potential = addressable x ``adoption_rate`` x value per
    customer (``value_per_customer``, default: the mean spend on the category of those
    who bought it); every assumption is reported with the result.
    """

    name: str = Field(min_length=1)
    category: str = Field(min_length=1)
    need: ConditionExpr | None = None
    adoption_rate: float = Field(1.0, gt=0, le=1)
    value_per_customer: float | None = Field(None, gt=0)


_DEFAULT_SCHEMES: tuple[SchemeConfig, ...] = (
    LifecycleConfig(type="lifecycle"),
    RFMConfig(type="rfm"),
)


class SegmentsConfig(_Strict):
    """Segmentation schemes and the quality bars they are held to."""

    enabled: bool = True
    schemes: list[SchemeConfig] = Field(default_factory=lambda: list(_DEFAULT_SCHEMES))
    min_size: int = Field(30, ge=1, description="warn below this many customers")
    min_share: float = Field(0.01, ge=0, lt=1, description="warn below this share")
    max_segments: int | None = Field(
        None, ge=2, description="warn above this many (default: customers / min_size / 10)"
    )
    drift_threshold: float = Field(0.2, gt=0, description="relative size change that alerts")
    personas: bool = True
    market_potential: list[MarketPotentialConfig] = Field(default_factory=list)

    @model_validator(mode="after")
    def _unique_names(self) -> SegmentsConfig:
        names = [s.name for s in self.schemes]
        duplicates = _repeated(names)
        if duplicates:
            raise _KeyedConfigError(
                f"scheme names repeat: {duplicates}",
                key="schemes",
                fix="give each scheme a unique 'name' (lifecycle and rfm schemes default to "
                "'lifecycle' and 'rfm')",
            )
        return self


# --- economics --------------------------------------------------------------------------

#: The KPIs of the segment KPI table that targets may name.
KPI_NAMES: tuple[str, ...] = (
    "customers",
    "share",
    "revenue",
    "orders",
    "average_order_value",
    "purchase_frequency",
    "repeat_rate",
    "retention_rate",
    "churn_risk",
    "clv_mean",
    "clv_total",
    "margin",
    "marketing_cost",
    "cac",
    "clv_cac",
    "roi",
    "conversion_rate",
)


class KPITarget(_Strict):
    """A target for one KPI, in every segment of a scheme or in one segment.

    Status: ``on_track`` when the whole interval meets the target, ``off_track`` when the
    whole interval misses it by more than ``tolerance`` (relative), ``at_risk`` otherwise.
    """

    kpi: str
    target: float
    direction: Literal["at_least", "at_most"] = "at_least"
    tolerance: float = Field(0.05, ge=0, description="relative band before 'off track'")
    scheme: str | None = None
    segment: str | None = None

    @field_validator("kpi")
    @classmethod
    def _known_kpi(cls, value: str) -> str:
        if value not in KPI_NAMES:
            raise ValueError(f"unknown KPI {value!r}{did_you_mean(value, KPI_NAMES)}")
        return value


class KPIConfig(_Strict):
    """The segment KPI table: which scheme, the retention period, intervals and targets."""

    scheme: str | None = Field(None, description="default: the first exclusive scheme")
    retention_days: int = Field(90, ge=1, description="period for period-over-period retention")
    level: float = Field(0.95, gt=0, lt=1)
    targets: list[KPITarget] = Field(default_factory=list)


class ResponseItem(_Strict):
    """One budget item (a segment x channel, or a channel) and its response curve.

    ``hill``: response = beta * s^slope / (k^slope + s^slope); ``michaelis_menten``: the
    same with slope 1: beta * s / (k + s). ``value`` converts a unit of response to money
    (revenue, margin or CLV per conversion; 1 when the response is already money).
    Bounds are absolute (``min`` / ``max``) and / or relative to ``current``
    (``max_change``: +-share of current).
    """

    name: str = Field(min_length=1)
    form: Literal["hill", "michaelis_menten"] = "hill"
    beta: float = Field(gt=0)
    k: float = Field(gt=0)
    slope: float | None = Field(None, gt=0)
    value: float = Field(1.0, gt=0)
    current: float = Field(0.0, ge=0)
    min: float = Field(0.0, ge=0)
    max: float | None = Field(None, ge=0)
    max_change: float | None = Field(None, ge=0, description="e.g. 0.3: within +-30% of current")
    pinned: bool = False
    segment: str | None = Field(
        None, description="segment the item reaches: objective clv scales its value by its CLV"
    )

    @model_validator(mode="after")
    def _consistent(self) -> ResponseItem:
        if self.form == "hill" and self.slope is None:
            raise ValueError("form 'hill' needs 'slope' (1 is concave, > 1 is S-shaped)")
        if self.form == "michaelis_menten" and self.slope not in (None, 1.0):
            raise ValueError("form 'michaelis_menten' has slope 1: remove 'slope' or use hill")
        if self.max is not None and self.max < self.min:
            raise ValueError(f"max ({self.max}) is below min ({self.min})")
        return self


class CurvesFile(_Strict):
    """A ``--curves`` file for ``segvalue budget``: items and the total budget."""

    items: list[ResponseItem] = Field(min_length=1)
    total: float | None = Field(None, ge=0)
    segment_clv: dict[str, float] = Field(
        default_factory=dict,
        description="CLV per customer of each segment (and 'all customers'), for objective clv",
    )

    @model_validator(mode="after")
    def _unique(self) -> CurvesFile:
        names = [i.name for i in self.items]
        duplicates = _repeated(names)
        if duplicates:
            raise ValueError(f"item names repeat: {duplicates}")
        return self


class BudgetConfig(_Strict):
    """Budget allocation: objective, total, constraints; curves fitted or given."""

    objective: Literal["profit", "revenue", "clv"] = "profit"
    total: float | None = Field(None, ge=0, description="default: the current total")
    min_marginal_roi: float | None = Field(None, description="stop spending below this mROI")
    max_change: float | None = Field(None, ge=0, description="default +-share of current per item")
    form: Literal["hill", "michaelis_menten"] = Field(
        "hill", description="curve form fitted from channel_spend history"
    )
    adstock: bool = Field(True, description="fit geometric adstock (carry-over) as well")
    scheme: str | None = Field(None, description="segment column of channel_spend to use")
    items: list[ResponseItem] = Field(
        default_factory=list, description="explicit curves (instead of fitting)"
    )


AttributionModel = Literal[
    "first",
    "last",
    "last-non-direct",
    "linear",
    "linear-unique",
    "position",
    "time-decay",
    "markov",
    "shapley",
]
CreditModel = Literal[
    "first", "last", "last-non-direct", "linear", "linear-unique", "position", "time-decay"
]


DEFAULT_ATTRIBUTION_MODELS: tuple[AttributionModel, ...] = (
    "last",
    "linear",
    "position",
    "time-decay",
    "markov",
    "shapley",
)


class AttributionConfig(_Strict):
    """Attribution of the run's touchpoints per segment, and channel effectiveness."""

    models: list[AttributionModel] = Field(
        default_factory=lambda: list(DEFAULT_ATTRIBUTION_MODELS),
        description="the models computed and stored with the run",
    )
    conversions: Literal["auto", "touchpoints", "orders"] = Field(
        "auto",
        description="what a conversion is: touchpoint conversion events, or every order "
        "(auto: conversion events when the touchpoints have any, else orders)",
    )
    lookback_days: float = Field(30.0, gt=0, description="touches older than this are not credited")
    session_gap_minutes: float = Field(
        30.0, ge=0, description="repeat touches of one channel within this are one touch"
    )
    markov_order: int = Field(1, ge=1, le=4)
    half_life_days: float = Field(7.0, gt=0, description="time-decay's half-life")
    direct: str = Field("direct", description="the channel last-non-direct passes over")
    position: tuple[float, float, float] = Field(
        (0.4, 0.2, 0.4), description="position-based shares of first, middle and last touches"
    )
    value_function: Literal["subset-sum", "conversion-rate"] = "subset-sum"
    credit_model: CreditModel = Field(
        "linear", description="the journey-by-journey model channel effectiveness credits with"
    )
    min_reach: int = Field(30, ge=1, description="customers a channel must reach to get a role")

    @model_validator(mode="after")
    def _shares(self) -> AttributionConfig:
        if min(self.position) < 0 or abs(sum(self.position) - 1.0) > 1e-9:
            raise ValueError(f"position shares {list(self.position)} must be >= 0 and add up to 1")
        return self


class ExperimentsConfig(_Strict):
    """Lift of the experiments source per segment (and uplift models)."""

    group_column: str = Field("group", description="the column naming each customer's group")
    control: str = "control"
    ignore: list[str] = Field(
        default_factory=lambda: ["holdout"],
        description="groups that are neither treatment nor control (a global holdout)",
    )
    outcomes: list[str] | None = Field(
        None, description="outcome columns; default: converted and revenue, when present"
    )
    adjust: Literal["holm", "bh", "none"] = "holm"
    priority_outcome: str | None = Field(
        None, description="the outcome whose lift per segment feeds the priorities"
    )
    contact_cost: float | None = Field(None, gt=0, description="cost per treated customer")
    margin: float = Field(1.0, gt=0, le=1, description="profit share of a revenue outcome")
    uplift: bool = Field(False, description="fit an uplift model per experiment")
    uplift_method: Literal["x-learner", "two-model"] = "x-learner"
    uplift_sample: int = Field(
        20_000, ge=100, description="at most this many training customers (a seeded sample)"
    )
    uplift_features: list[str] | None = Field(
        None, description="customer feature columns; default: every numeric one"
    )
    seed: int = 0


class MeasurementConfig(_Strict):
    """Attribution, channel effectiveness and experiment lift, stored with each run."""

    enabled: bool = True
    scheme: str | None = Field(None, description="the segmentation measured; default: kpis'")
    level: float = Field(0.95, gt=0, lt=1)
    attribution: AttributionConfig = AttributionConfig()
    experiments: ExperimentsConfig = ExperimentsConfig()


class CapConfig(_Strict):
    """A frequency cap: at most ``max`` contacts per customer per calendar ``per`` (in
    the customer's time zone) on ``channel``, or on every channel together (``*``)."""

    channel: str = Field("*", min_length=1, description="a channel, or * for all together")
    per: Literal["day", "week", "month"]
    max: int = Field(ge=0)


class QuietHoursConfig(_Strict):
    """Local hours in which a channel sends nothing (a send then waits for ``end``)."""

    start: dt.time
    end: dt.time

    @model_validator(mode="after")
    def _window(self) -> QuietHoursConfig:
        minutes = quiet_minutes(self.start, self.end)
        if minutes == 0 or minutes > 20 * 60:
            raise ValueError(
                f"quiet hours {self.start:%H:%M}-{self.end:%H:%M} must be a window of more "
                "than 0 and at most 20 hours"
            )
        return self


def quiet_minutes(start: dt.time, end: dt.time) -> int:
    """Minutes from ``start`` to ``end`` (across midnight when ``end`` is earlier).

    Examples
    --------
    >>> quiet_minutes(dt.time(21), dt.time(8))
    660
    """
    a, b = start.hour * 60 + start.minute, end.hour * 60 + end.minute
    return (b - a) % (24 * 60)


class ControlGroupConfig(_Strict):
    """The global control group: customers never contacted, measured against everyone."""

    share: float = Field(0.0, ge=0, lt=1, description="share of customers in it")
    key: str = Field(
        "segvalue-control", min_length=1, description="the keyed hash's key; a new key redraws"
    )


class CampaignStep(_Strict):
    """One step of a campaign's sequence."""

    channel: str = Field(min_length=1, description="a channel, or primary / secondary")
    delay_days: int = Field(0, ge=0, description="days after the campaign's start")
    send_time: dt.time = Field(dt.time(10), description="local time of the send")
    condition: Literal["none", "not_purchased_since_start", "not_purchased_since_previous"] = "none"


class OfferConfig(_Strict):
    """What a campaign offers, and to whom."""

    kind: str = Field("none", description="e.g. discount, early_access, style_guide")
    value: float | None = Field(None, description="e.g. 0.1 for a 10 % discount")
    when: ConditionExpr | None = Field(
        None, description="who qualifies (a rule condition); the others get the fallback"
    )
    fallback: str = Field("none", description="the offer of customers who do not qualify")


class CampaignConfig(_Strict):
    """One campaign plan: whom, why, through which channels, what, when, how much."""

    name: str = Field(min_length=1, max_length=100)
    segments: list[str] = Field(min_length=1, description="segments of activation.scheme")
    objective: Literal["acquire", "grow", "retain", "win_back"]
    channels: dict[Literal["primary", "secondary"], str] | None = Field(
        None, description="default: the roles measured per segment"
    )
    theme: str | None = Field(None, description="default: the segment persona's name")
    tone: str | None = Field(None, description="default: the segment persona's tone")
    offer: OfferConfig = OfferConfig()
    steps: list[CampaignStep] = Field(min_length=1)
    start: dt.date
    end: dt.date | None = None
    budget: float | None = Field(None, ge=0)
    cost_per_contact: float | None = Field(None, ge=0)
    priority: int = Field(100, description="lower first: a customer goes to one campaign")
    holdout: float = Field(0.1, ge=0, lt=1, description="share held out, per segment")
    suppress_bought: list[str] = Field(
        default_factory=list, description="categories: recent buyers are left out"
    )
    bought_window_days: int = Field(30, ge=1)
    recommend: bool = Field(False, description="attach each customer's next-best category")

    @model_validator(mode="after")
    def _dates(self) -> CampaignConfig:
        if self.end is not None and self.end < self.start:
            raise ValueError(f"campaign {self.name!r} ends ({self.end}) before it starts")
        if (self.budget is None) != (self.cost_per_contact is None) and self.budget is not None:
            raise ValueError(f"campaign {self.name!r}: a budget needs cost_per_contact")
        return self


#: Channels and the customers column holding consent for them, by default.
DEFAULT_CONSENT: dict[str, str] = {
    "email": "consent_email",
    "sms": "consent_sms",
    "app_push": "consent_push",
    "paid_social": "consent_ads",
    "search_ads": "consent_ads",
}


class ExportConfig(_Strict):
    """Where audience exports go, and what they may hold."""

    dir: str = Field("segvalue-exports", description="relative to segvalue.yaml")
    webhook_allowlist: list[str] = Field(
        default_factory=list, description="webhook targets allowed (URLs or prefixes/*)"
    )
    webhook_secret_env: str = Field(
        "SEGVALUE_WEBHOOK_SECRET", description="environment variable with the whsec_ secret"
    )
    table_url: str | None = Field(None, description="database of --to table exports")
    contact_columns: list[str] = Field(
        default_factory=list, description="contact columns exports may carry (PII)"
    )


class ActivationConfig(_Strict):
    """Control groups, frequency caps, quiet hours, consent and exports of activation."""

    scheme: str | None = Field(None, description="default: the measured (KPI) scheme")
    timezone_column: str = Field("timezone", description="customers' IANA time zone column")
    default_timezone: str | None = Field(None, description="default: the top-level timezone")
    global_control: ControlGroupConfig = ControlGroupConfig()
    caps: list[CapConfig] = Field(default_factory=list)
    quiet_hours: dict[str, QuietHoursConfig] = Field(default_factory=dict)
    consent: dict[str, str] = Field(default_factory=lambda: dict(DEFAULT_CONSENT))
    unsubscribed_column: str = "unsubscribed"
    seed: int = 0
    recommend_level: Literal["category", "product"] = Field(
        "category", description="what campaigns with recommend attach: a category or product"
    )
    exports: ExportConfig = ExportConfig()

    @field_validator("default_timezone")
    @classmethod
    def _zone(cls, value: str | None) -> str | None:
        return None if value is None else _timezone_name(value)


class OutputConfig(_Strict):
    """Where results go."""

    dir: str = "segvalue-output"
    format: Literal["parquet", "csv"] = "parquet"


class StoreConfig(_Strict):
    """The results store: every run's scores, memberships, KPIs and models, in a database."""

    url: str | None = Field(
        None,
        description="database of the results store: duckdb:///path/file.duckdb or "
        "postgresql://user@host:port/db (default: segvalue-store.duckdb beside the config)",
    )
    keep_runs: int | None = Field(
        30, ge=1, description="complete runs kept (older ones are removed); null keeps all"
    )


class ServeConfig(_Strict):
    """``segvalue serve``: where the REST API listens and what it accepts."""

    host: str = Field(
        "127.0.0.1", description="address the API listens on (loopback: this machine only)"
    )
    port: int = Field(8000, ge=1, le=65535, description="TCP port the API listens on")
    cors_origins: list[str] = Field(
        default_factory=list,
        description="browser origins allowed to call the API (CORS); empty: CORS off",
    )
    max_body_bytes: int = Field(
        1_000_000, ge=1, description="largest request body accepted (bytes; larger: 413)"
    )
    memory_mib: int = Field(
        512,
        ge=0,
        description="memory the server may use to hold run tables for lookups by customer "
        "(MiB; 0: every lookup reads the database)",
    )
    session_hours: float = Field(
        8.0,
        gt=0,
        le=24 * 30,
        description="how long a dashboard login lasts (off loopback, where it needs one)",
    )

    @field_validator("cors_origins")
    @classmethod
    def _origins(cls, value: list[str]) -> list[str]:
        for origin in value:
            if origin != "*" and not re.fullmatch(r"https?://[^/\s]+", origin):
                raise ValueError(
                    f"{origin!r} is not an origin: scheme and host, e.g. https://app.example.com"
                )
        return value


class PrivacyConfig(_Strict):
    """Contact details kept out of profiles, personas and outputs; pseudonymous ids.

    Contact columns (e-mail, phone, names, street address, postal code) are found by name
    and by content; see docs/privacy.md.
    """

    pii: list[str] = Field(
        default_factory=list,
        description="more customer columns that hold personal data (never profiled or written)",
    )
    not_pii: list[str] = Field(
        default_factory=list,
        description="columns detected as contact details that are not (e.g. postal_code)",
    )
    write_pii: bool = Field(False, description="write contact columns to customer_features")
    pseudonymise: bool = Field(
        False, description="outputs carry a keyed HMAC-SHA256 pseudonym instead of customer_id"
    )
    key_env: str = Field(
        "SEGVALUE_PSEUDONYM_KEY", description="environment variable holding the pseudonym key"
    )

    @field_validator("key_env")
    @classmethod
    def _env_name(cls, value: str) -> str:
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", value):
            raise ValueError(f"{value!r} is not an environment variable name (letters, digits, _)")
        return value

    @model_validator(mode="after")
    def _not_both(self) -> PrivacyConfig:
        both = sorted(set(self.pii) & set(self.not_pii))
        if both:
            raise ValueError(f"{both} listed under both pii and not_pii: keep one")
        return self


class Config(_Strict):
    """The whole of ``segvalue.yaml``.

    Examples
    --------
    >>> cfg = parse_config({"sources": {"orders": {"path": "orders.csv"}}})
    >>> cfg.time_unit.value, cfg.sources["orders"].resolved_format
    ('week', 'csv')
    """

    version: Literal[1] = 1
    as_of: dt.date | None = Field(None, description="observation end; default: latest order")
    time_unit: TimeUnit = TimeUnit.WEEK
    lookback: Annotated[float | None, Field(gt=0)] = None
    currency: str = "EUR"
    timezone: str = Field(
        "UTC", description="IANA zone times are stored in; offsets in the data convert to it"
    )
    engine: EngineConfig = EngineConfig()
    sources: dict[str, SourceConfig]
    validation: ValidationConfig = ValidationConfig()
    clv: CLVConfig = CLVConfig()
    segments: SegmentsConfig = SegmentsConfig()
    kpis: KPIConfig = KPIConfig()
    budget: BudgetConfig = BudgetConfig()
    measurement: MeasurementConfig = MeasurementConfig()
    activation: ActivationConfig = ActivationConfig()
    campaigns: list[CampaignConfig] = Field(default_factory=list)
    output: OutputConfig = OutputConfig()
    store: StoreConfig = StoreConfig()
    privacy: PrivacyConfig = PrivacyConfig()
    serve: ServeConfig = ServeConfig()
    base_dir: Path = Field(Path("."), exclude=True)

    @field_validator("campaigns")
    @classmethod
    def _unique_campaigns(cls, value: list[CampaignConfig]) -> list[CampaignConfig]:
        repeated = _repeated([c.name for c in value])
        if repeated:
            raise ValueError(f"campaign names repeat: {', '.join(repeated)}")
        return value

    @field_validator("time_unit", mode="before")
    @classmethod
    def _time_unit(cls, value: Any) -> TimeUnit:
        return parse_time_unit(str(value))

    @field_validator("timezone")
    @classmethod
    def _known_timezone(cls, value: str) -> str:
        return _timezone_name(value)

    @field_validator("sources")
    @classmethod
    def _known_tables(cls, value: dict[str, SourceConfig]) -> dict[str, SourceConfig]:
        for name in value:
            if name not in TABLE_NAMES:
                raise ValueError(f"unknown table {name!r}{did_you_mean(name, TABLE_NAMES)}")
        if "orders" not in value:
            raise ValueError("an 'orders' source is required")
        return value

    def source_path(self, table: str) -> Path:
        """Absolute path of a file source, resolved against the YAML file's folder."""
        raw = self.sources[table].path
        if raw is None:
            raise ConfigError(f"sources.{table} has no 'path'", fix="set sources.{table}.path")
        path = Path(raw).expanduser()
        return path if path.is_absolute() else (self.base_dir / path)

    @property
    def output_dir(self) -> Path:
        """Absolute output folder."""
        path = Path(self.output.dir).expanduser()
        return path if path.is_absolute() else (self.base_dir / path)

    @property
    def store_url(self) -> str:
        """The results store's URL (default: ``segvalue-store.duckdb`` beside the config).

        A relative DuckDB path is resolved against the config's folder.

        Examples
        --------
        >>> cfg = parse_config({"sources": {"orders": {"path": "o.csv"}}}, base_dir=Path("/p"))
        >>> cfg.store_url
        'duckdb:///p/segvalue-store.duckdb'
        """
        url = self.store.url
        if url is None:
            return f"duckdb://{(self.base_dir / 'segvalue-store.duckdb').absolute()}"
        if url.startswith("duckdb://") and not url.startswith("duckdb:///"):
            relative = Path(url.removeprefix("duckdb://")).expanduser()
            path = relative if relative.is_absolute() else self.base_dir / relative
            return f"duckdb://{path.absolute()}"
        return url

    @property
    def store_path(self) -> Path | None:
        """The store's DuckDB file, or None for a database server."""
        url = self.store_url
        return Path(url.removeprefix("duckdb://")) if url.startswith("duckdb:///") else None


def _timezone_name(value: str) -> str:
    """An IANA time zone name, as the database spells it (``utc`` -> ``UTC``)."""
    try:
        zoneinfo.ZoneInfo(value)
        return value
    except (zoneinfo.ZoneInfoNotFoundError, ValueError, OSError):
        pass
    known = zoneinfo.available_timezones()
    spelt = {name.lower(): name for name in known}
    if value.strip().lower() in spelt:
        return spelt[value.strip().lower()]
    raise ConfigError(
        f"unknown time zone{did_you_mean(value, sorted(known))}",
        fix="give an IANA name such as UTC, Europe/Berlin or America/New_York",
    )


for _model in (AllOf, AnyOf, NotOf, SegmentRule, MarketPotentialConfig):
    _model.model_rebuild()


#: Words people write for an operator of the rule DSL, mapped to the operator meant.
_OPERATOR_SYNONYMS: dict[str, str] = {
    "=": "==",
    "eq": "==",
    "is": "==",
    "equals": "==",
    "<>": "!=",
    "ne": "!=",
    "neq": "!=",
    "not": "!=",
    "lt": "<",
    "le": "<=",
    "lte": "<=",
    "gt": ">",
    "ge": ">=",
    "gte": ">=",
    "=<": "<=",
    "=>": ">=",
    "isin": "in",
    "one_of": "in",
    "nin": "not_in",
    "notin": "not_in",
    "not in": "not_in",
    "range": "between",
    "within": "between",
    "like": "regex",
    "ilike": "regex",
    "match": "regex",
    "matches": "regex",
    "contains": "regex",
    "startswith": "regex",
    "endswith": "regex",
    "~": "regex",
    "re": "regex",
    "null": "is_null",
    "isnull": "is_null",
    "is null": "is_null",
    "missing": "is_null",
    "notnull": "not_null",
    "is not null": "not_null",
    "exists": "not_null",
    "present": "not_null",
}

#: Keys of the condition forms: a comparison ``{field, op, value}`` or ``all`` / ``any`` / ``not``.
_CONDITION_KEYS: tuple[str, ...] = ("field", "op", "value", "all", "any", "not")


def _suggest(word: str, choices: Any, *, synonyms: dict[str, str] | None = None) -> str:
    """``" (did you mean 'x'?)"`` from a synonym table, else the closest choice, else ''."""
    meant = (synonyms or {}).get(str(word).strip().lower())
    if meant is not None:
        return f" (did you mean {meant!r}?)"
    return did_you_mean(word, choices)


def _strip_annotated(tp: Any) -> tuple[Any, tuple[Any, ...]]:
    metadata: tuple[Any, ...] = ()
    while typing.get_origin(tp) is Annotated:
        args = typing.get_args(tp)
        tp, metadata = args[0], metadata + tuple(args[1:])
    return tp, metadata


def _union_members(tp: Any) -> dict[str, Any]:
    """Tag -> member of a tagged union (``Tag`` metadata or a member's ``type`` literal)."""
    members: dict[str, Any] = {}
    for arg in typing.get_args(tp):
        inner, metadata = _strip_annotated(arg)
        tags = [m.tag for m in metadata if isinstance(m, Tag)]
        fields = getattr(inner, "model_fields", {})
        if not tags and "type" in fields:
            tags = [str(v) for v in typing.get_args(fields["type"].annotation)]
        for tag in tags:
            members[tag] = inner
    return members


def _field_by_key(model: type[BaseModel], key: str) -> Any:
    for name, info in model.model_fields.items():
        if key in (name, info.alias):
            return info
    return None


def _readable_loc(loc: tuple[Any, ...]) -> tuple[str, Any]:
    """The user's key path for a pydantic location, and the model holding its last key.

    Pydantic's locations contain union tags (``behavioural``, ``compare``) and type names of
    union members that appear nowhere in the YAML. They are dropped by walking the schema
    along the location; list positions are written in brackets:
    ``segments.schemes[0].rules[0].when.op``.
    """
    text = ""
    current: Any = Config
    parent: Any = None
    parts = list(loc)
    while parts:
        part = parts[0]
        current, _ = _strip_annotated(current)
        origin = typing.get_origin(current)
        if isinstance(part, str) and ("[" in part or "'" in part):
            parts.pop(0)  # a union member's type name or pydantic's '[key]' marker
            continue
        if origin in (typing.Union, types.UnionType):
            members = _union_members(current)
            if isinstance(part, str) and part in members:
                parts.pop(0)
                current = members[part]
                continue
            options = [a for a in typing.get_args(current) if a is not type(None)]
            current = options[0] if len(options) == 1 else None
            if current is not None:
                continue
        parts.pop(0)
        if isinstance(part, int):
            text += f"[{part}]"
            args = typing.get_args(current)
            current = args[0] if origin in (list, tuple) and args else None
            continue
        text += f".{part}" if text else str(part)
        if isinstance(current, type) and issubclass(current, BaseModel):
            parent = current
            info = _field_by_key(current, str(part))
            current = None if info is None else info.annotation
        elif origin is dict:
            parent = None
            current = typing.get_args(current)[1]
        else:
            parent, current = None, None
    return text, parent


def _allowed_keys(model: Any) -> list[str]:
    """Keys valid in ``model`` (the parent of an offending key), as written in YAML."""
    if model in (Condition, AllOf, AnyOf, NotOf):
        # Which form a condition is follows from its keys: offer all of them.
        return list(_CONDITION_KEYS)
    fields = getattr(model, "model_fields", {})
    return [info.alias or name for name, info in fields.items() if name != "base_dir"]


def _value_at(value: Any, key: str) -> Any:
    """The value below ``key`` (``cuts.recency``, ``segments[0].r``) in a raw mapping."""
    for part in re.findall(r"[^.\[\]]+", key):
        if isinstance(value, dict) and part in value:
            value = value[part]
        elif isinstance(value, list) and part.isdigit() and int(part) < len(value):
            value = value[int(part)]
        else:
            return _MISSING
    return value


_MISSING = object()


def _pick_error(errors: list[Any]) -> Any:
    """The most telling of several errors.

    An unknown key usually is a misspelt known key, which pydantic also reports as missing
    (``wen`` next to a missing ``when``): the unknown key, with its did-you-mean, is the
    better message.
    """
    unknown = [e for e in errors if e["type"] == "extra_forbidden"]
    return unknown[0] if unknown else errors[0]


def _format_validation_error(exc: ValidationError, source: str) -> ConfigError:
    errors = exc.errors()
    first = _pick_error(errors)
    if first["type"] == "extra_forbidden":
        # A key reported missing next to the unknown one is the same mistake.
        parent = tuple(first["loc"])[:-1]
        errors = [
            e
            for e in errors
            if e is first
            or not (e["type"] == "missing" and tuple(e["loc"])[: len(parent)] == parent)
        ]
    loc = tuple(first["loc"])
    key, parent = _readable_loc(loc)
    key = key or "(top level)"
    kind = first["type"]
    ctx = first.get("ctx", {})
    given = first.get("input")
    if kind == "extra_forbidden":
        allowed = _allowed_keys(parent)
        hint = did_you_mean(str(loc[-1]), allowed)
        message = f"{source}: unknown key '{key}'{hint}"
        fix = f"allowed keys here: {', '.join(allowed)}" if allowed else "remove the key"
    elif kind == "missing":
        message = f"{source}: required key '{key}' is missing"
        fix = f"add '{loc[-1]}' (see `segvalue init` for a commented example)"
    elif kind == "union_tag_invalid":
        choices = re.findall(r"'([^']*)'", str(ctx.get("expected_tags", "")))
        field = str(ctx.get("discriminator", "type")).strip("'")
        tag = ctx.get("tag")
        message = (
            f"{source}: key '{key}.{field}': unknown {field} {tag!r}{did_you_mean(tag, choices)}"
        )
        fix = f"use one of: {', '.join(choices)}"
    else:
        text = str(first["msg"]).removeprefix("Value error, ")
        fix = "correct the value (see `segvalue init` for a commented example)"
        cause = ctx.get("error")
        if isinstance(cause, SegvalueError):
            # Our own validators already say what is wrong and how to fix it.
            text, fix = cause.message, cause.fix or fix
        if isinstance(cause, _KeyedConfigError):
            key = f"{key}.{cause.key}" if not cause.key.startswith("[") else key + cause.key
            given = _value_at(given, cause.key)
        if kind == "literal_error":
            choices = re.findall(r"'([^']*)'", str(ctx.get("expected", "")))
            if loc and loc[-1] == "op" and choices == list(OPERATORS):
                text = f"unknown operator {given!r}" + _suggest(
                    str(given), choices, synonyms=_OPERATOR_SYNONYMS
                )
                given = _MISSING  # named in the text already
            else:
                text += did_you_mean(str(given), choices)
            fix = f"correct the value: use one of {', '.join(choices)}"
        message = f"{source}: key '{key}': {text}"
        structure = isinstance(given, dict) or (
            isinstance(given, list) and any(isinstance(v, dict) for v in given)
        )
        if given is not _MISSING and not structure:  # a whole block is no help to show
            message += f" (got {given!r})"
    more = len(errors) - 1
    if more:
        message += f" (and {more} more problem{'s' if more > 1 else ''})"
    return ConfigError(message, fix=fix)


def parse_config(data: Any, *, base_dir: Path | None = None, source: str = "config") -> Config:
    """Validate a mapping (already-parsed YAML) into a :class:`Config`.

    Parameters
    ----------
    data
        The parsed YAML document.
    base_dir
        Folder against which relative source paths resolve.
    source
        Name of the input, used in error messages.

    Returns
    -------
    Config

    Raises
    ------
    ConfigError
        Naming the offending key and the fix.

    Examples
    --------
    >>> parse_config({"sources": {"orders": {"path": "o.csv"}}, "time_unit": "month"}).time_unit
    <TimeUnit.MONTH: 'month'>
    """
    if not isinstance(data, dict):
        raise ConfigError(
            f"{source}: expected a mapping of keys at the top level, got {type(data).__name__}",
            fix="start from `segvalue init`",
        )
    payload = dict(data)
    payload["base_dir"] = base_dir or Path(".")
    try:
        return Config.model_validate(payload)
    except ValidationError as exc:
        raise _format_validation_error(exc, source) from None
    except ConfigError as exc:
        raise ConfigError(f"{source}: {exc.message}", fix=exc.fix) from None


@functools.cache
def _yaml_loader() -> type[yaml.SafeLoader]:
    """A safe loader that keeps dates as text.

    PyYAML turns ``2024-02-30`` into a date itself and fails without naming the key;
    as text, the value reaches pydantic, whose error names the key.
    """
    import yaml

    class _YamlLoader(yaml.SafeLoader):
        pass

    _YamlLoader.yaml_implicit_resolvers = {
        first: [(tag, regex) for tag, regex in resolvers if tag != "tag:yaml.org,2002:timestamp"]
        for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
    }
    return _YamlLoader


#: Largest ``segvalue.yaml`` read, in bytes: a configuration is a page of text.
MAX_CONFIG_BYTES = 1_000_000
#: Most nodes reached through aliases (``*name``) while reading a configuration: aliases
#: of aliases grow exponentially ("billion laughs"), so the expansion is counted first.
MAX_ALIAS_NODES = 10_000


def _key_text(node: yaml.Node) -> str:
    import yaml

    return str(node.value) if isinstance(node, yaml.ScalarNode) else f"<{node.tag}>"


def _check_yaml_tree(root: yaml.Node, source: str) -> None:
    """Refuse duplicate keys at any depth and alias expansion beyond MAX_ALIAS_NODES.

    Walks the composed node graph as the tree it expands to, before anything is built.
    """
    import yaml

    seen: set[int] = set()
    aliased = 0
    stack: list[tuple[yaml.Node, str]] = [(root, "")]
    while stack:
        node, path = stack.pop()
        if id(node) in seen:  # reached again: through an alias
            aliased += 1
            if aliased > MAX_ALIAS_NODES:
                raise ConfigError(
                    f"{source}: aliases (*name) expand to more than {MAX_ALIAS_NODES:,} "
                    f"nodes (at '{path or 'the top level'}')",
                    fix="write the repeated blocks out, or use fewer nested aliases",
                )
        seen.add(id(node))
        if isinstance(node, yaml.MappingNode):
            first: dict[tuple[str, str], int] = {}
            for key, value in node.value:
                name = _key_text(key)
                child = f"{path}.{name}" if path else name
                line = key.start_mark.line + 1
                known = (key.tag, name)
                if isinstance(key, yaml.ScalarNode) and key.tag != "tag:yaml.org,2002:merge":
                    if known in first:
                        lines = f"lines {first[known]} and {line}"
                        raise ConfigError(
                            f"{source}: key '{child}' is given twice, at "
                            + (lines if first[known] != line else f"line {line}"),
                            fix=f"keep one '{name}' (YAML would silently use the last one)",
                        )
                    first[known] = line
                stack.append((value, child))
        elif isinstance(node, yaml.SequenceNode):
            stack.extend((item, f"{path}[{i}]") for i, item in enumerate(node.value))


def read_yaml(path: str | Path, *, what: str = "configuration") -> Any:
    """Read a YAML file as plain data, safely: the one YAML reader of segvalue.

    Dates stay text, duplicate keys at any depth are refused (naming both lines), alias
    expansion is limited to :data:`MAX_ALIAS_NODES` nodes and the file to
    :data:`MAX_CONFIG_BYTES` bytes.

    Raises
    ------
    ConfigError
        If the file is missing, too large, not UTF-8 or not valid YAML, naming the line.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> p = pathlib.Path(tempfile.mkdtemp()) / "curves.yaml"
    >>> _ = p.write_text("total: 500\\nas_of: 2024-01-31\\n")
    >>> read_yaml(p)
    {'total': 500, 'as_of': '2024-01-31'}
    >>> _ = p.write_text("total: 500\\ntotal: 600\\n")
    >>> read_yaml(p)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    segvalue.errors.ConfigError: ...key 'total' is given twice, at lines 1 and 2...
    """
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{what} file {str(path)!r} not found", fix="check the path")
    if path.stat().st_size > MAX_CONFIG_BYTES:
        raise ConfigError(
            f"{path}: {path.stat().st_size:,} bytes, more than a {what} needs "
            f"(limit {MAX_CONFIG_BYTES:,})",
            fix=f"check that this is the {what} file; keep data in the files under 'sources'",
        )
    import yaml

    try:
        loader = _yaml_loader()(path.read_text(encoding="utf-8"))  # a SafeLoader
        try:
            node = loader.get_single_node()
            if node is not None:
                _check_yaml_tree(node, str(path))
            return None if node is None else loader.construct_document(node)
        finally:
            loader.dispose()
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError(
            f"{path}: not valid YAML{where}: {problem}",
            fix="fix the indentation or quoting there",
        ) from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not UTF-8 text", fix="save the file as UTF-8") from None
    except RecursionError:  # PyYAML composes and builds nested blocks recursively
        raise ConfigError(
            f"{path}: blocks nested too deeply to read",
            fix=f"a {what} is a few levels deep: check the brackets and indentation",
        ) from None


def load_config(path: str | Path) -> Config:
    """Read and validate ``segvalue.yaml``.

    Parameters
    ----------
    path
        The YAML file.

    Returns
    -------
    Config

    Raises
    ------
    ConfigError
        If the file is missing, is not valid YAML, or breaks the schema.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> d = pathlib.Path(tempfile.mkdtemp())
    >>> _ = (d / "segvalue.yaml").write_text("sources:\\n  orders:\\n    path: orders.csv\\n")
    >>> load_config(d / "segvalue.yaml").source_path("orders") == d / "orders.csv"
    True
    """
    path = Path(path)
    if not path.is_file():
        raise ConfigError(
            f"config file {str(path)!r} not found", fix="check the path or run `segvalue init`"
        )
    data = read_yaml(path)
    return parse_config(data, base_dir=path.resolve().parent, source=str(path))


def config_template() -> str:
    """The commented example written by ``segvalue init``.

    Examples
    --------
    >>> import yaml
    >>> parse_config(yaml.safe_load(config_template())).time_unit.value
    'week'
    """
    return _TEMPLATE


_TEMPLATE = """\
# segvalue.yaml: what segvalue reads and how. Every key is optional unless marked required.
version: 1

# Observation end ("as of"). Orders after it are rejected as future timestamps.
# Default: the date of the latest order.
# as_of: 2025-12-31

# Unit for recency, T, horizons and rates: day, week or month (month = 30.4375 days).
time_unit: week

# Drop history older than this many time units before as_of (reported, never silent).
# lookback: 156

currency: EUR

# IANA time zone times are stored in. Times with a UTC offset (2024-01-05T23:30:00-05:00,
# ...Z, +0200) are converted to it; times without one are taken as already in it.
timezone: UTC

# Where table work runs. duckdb:// is an in-memory DuckDB; duckdb:///path/to/file.duckdb
# keeps the data; postgres://user:password@host:5432/db needs `pip install segvalue[postgres]`.
engine:
  url: "duckdb://"

# One entry per logical table. Required: orders. Each source is either a file (`path`:
# .csv/.txt/.tsv, .parquet, or .duckdb with `table`) or a database (`url` + `table`).
# `columns` maps segvalue's logical names to your column names (only where they differ).
sources:
  orders:                       # required: order_id, customer_id, order_ts, amount
    path: orders.csv
    csv:
      delimiter: ","            # ",", ";", "\\t", "|" or whitespace
      decimal: "."              # "." or "," (decimal comma)
      header: true
      encoding: utf-8           # utf-8, utf-16 or latin-1
    # date_format: "%d/%m/%Y"   # default: ISO dates, YYYYMMDD and YYYY/MM/DD are detected
    columns:
      order_id: order_id
      customer_id: customer_id
      order_ts: order_ts
      amount: amount
  # customers:                  # required: customer_id
  #   path: customers.parquet
  # order_lines:                # required: order_id, product_id, quantity, line_amount
  #   path: order_lines.parquet
  # touchpoints:                # required: customer_id, ts, channel
  #   url: postgres://analyst@127.0.0.1:5432/crm
  #   table: touchpoints
  # channel_spend:              # required: period, channel, spend
  #   path: channel_spend.csv
  # experiments:                # required: customer_id, experiment_id, group
  #   path: experiments.csv
  # contact_log:                # required: customer_id, ts, channel
  #   path: shop.duckdb
  #   table: contact_log

validation:
  strict: false                 # true: fail on any rejected row instead of reporting it
  zero_amounts: keep            # keep (count as purchases, reported) or reject
  min_repeat_customers: 500     # fewer repeat buyers -> warning: too thin for BTYD models
  prediction_horizon: 52        # in time units; history should be a multiple of it
  min_history_multiple: 3
  max_amount: 1000000000        # money values beyond +/- this are rejected as implausible

# Customer lifetime value per customer (probability alive, churn risk, expected purchases,
# expected spend, CLV with an interval from parameter uncertainty).
clv:
  enabled: true
  model: bgnbd                  # bgnbd, mbgnbd, pnbd, or auto (best holdout error)
  spend_model: gamma-gamma      # gamma-gamma or none (observed mean repeat spend)
  horizon: 52                   # whole time units
  discount_rate: 0.10           # ANNUAL rate, converted exactly to the time unit
  margin: 1.0                   # profit share of spend, e.g. 0.3
  # holdout: 26                 # keep the last 26 time units out of the fit and report the error

# Segmentation schemes (see docs/segments-rules.md). Default: lifecycle stages and RFM.
# segments:
#   schemes:
#     - type: lifecycle           # new, active, returning, at_risk, lapsed, reactivated, one_time
#       # active_days: 90         # days; left out: derived from the time between purchases
#     - type: rfm
#     - name: usage
#       type: behavioural         # demographic, geographic, psychographic, behavioural, benefit
#       mode: first_match         # first matching rule wins; or tags (independent yes / no)
#       rules:
#         - segment: bargain_hunters
#           when: {field: discount_share, op: ">=", value: 0.5}
#         - segment: dach_regulars
#           when:
#             all:
#               - {field: country, op: in, value: [DE, AT, CH]}
#               - {field: orders, op: ">=", value: 3}

# Measurement, with a touchpoints or experiments source (docs/measurement.md): attribution
# per segment, channel effectiveness and roles, experiment lift feeding the priorities.
# measurement:
#   scheme: rfm                 # default: the KPI scheme
#   attribution:
#     models: [last, linear, position, time-decay, markov, shapley]
#     lookback_days: 30
#   experiments:
#     control: control          # the control group's label; holdout groups are ignored
#     contact_cost: 0.5         # per treated customer: a revenue outcome's ROI
#     uplift: false             # true: an uplift model per experiment, with Qini curves

output:
  dir: segvalue-output          # relative to this file
  format: parquet               # parquet or csv

# The results store: every run's scores, memberships, KPIs and models (docs/store.md).
# store:
#   url: duckdb://segvalue-store.duckdb   # relative to this file; or postgresql://...
#   keep_runs: 30               # complete runs kept; null keeps all

# Contact details (e-mail, phone, names, street address, postal code; found by column name
# and by content) are never profiled, shown in personas or written (docs/privacy.md).
# privacy:
#   pii: [loyalty_card]         # more columns holding personal data
#   not_pii: [postal_code]      # detected as contact details but used as a geography here
#   write_pii: false            # true: customer_features carries the contact columns
#   pseudonymise: false         # true: outputs carry HMAC-SHA256 pseudonyms, not customer ids
#   key_env: SEGVALUE_PSEUDONYM_KEY   # environment variable holding the key (>= 32 chars)
"""
