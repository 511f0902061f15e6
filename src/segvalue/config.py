"""The pydantic model of ``segvalue.yaml``.

Loading goes through :func:`load_config`, which turns every YAML or validation problem into
one :class:`~segvalue.errors.ConfigError` that names the key and says how to fix it.
Relative paths in ``sources`` are resolved against the folder holding the YAML file.
"""

from __future__ import annotations

import datetime as dt
import difflib
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from segvalue.errors import ConfigError, SegvalueError
from segvalue.units import TimeUnit, parse_time_unit

__all__ = [
    "TABLE_NAMES",
    "CLVConfig",
    "Config",
    "CsvOptions",
    "EngineConfig",
    "OutputConfig",
    "SourceConfig",
    "ValidationConfig",
    "config_template",
    "load_config",
    "parse_config",
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


class CLVConfig(_Strict):
    """Customer lifetime value: which models, over what horizon, at what rates."""

    enabled: bool = True
    model: Literal["bgnbd", "mbgnbd", "pnbd", "auto"] = "bgnbd"
    spend_model: Literal["gamma-gamma", "none"] = "gamma-gamma"
    horizon: int = Field(52, ge=1, description="whole time units")
    discount_rate: float = Field(0.10, gt=-1, description="annual, converted to the unit")
    margin: float = Field(1.0, gt=0, le=1, description="profit share of spend")
    holdout: float | None = Field(
        None, gt=0, description="last N time units kept out of the fit to validate it"
    )


class OutputConfig(_Strict):
    """Where results go."""

    dir: str = "segvalue-output"
    format: Literal["parquet", "csv"] = "parquet"


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
    engine: EngineConfig = EngineConfig()
    sources: dict[str, SourceConfig]
    validation: ValidationConfig = ValidationConfig()
    clv: CLVConfig = CLVConfig()
    output: OutputConfig = OutputConfig()
    base_dir: Path = Field(Path("."), exclude=True)

    @field_validator("time_unit", mode="before")
    @classmethod
    def _time_unit(cls, value: Any) -> TimeUnit:
        return parse_time_unit(str(value))

    @field_validator("sources")
    @classmethod
    def _known_tables(cls, value: dict[str, SourceConfig]) -> dict[str, SourceConfig]:
        for name in value:
            if name not in TABLE_NAMES:
                raise ValueError(f"unknown table {name!r}{_did_you_mean(name, TABLE_NAMES)}")
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


def _did_you_mean(word: str, choices: Any) -> str:
    close = difflib.get_close_matches(str(word), [str(c) for c in choices], n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _allowed_keys(model: type[BaseModel], loc: tuple[Any, ...]) -> list[str]:
    """Field names valid at ``loc`` (the parent of the offending key)."""
    current: Any = model
    for part in loc[:-1]:
        fields = getattr(current, "model_fields", None)
        if fields is None:
            continue
        if isinstance(part, str) and part in fields:
            annotation = fields[part].annotation
            args = getattr(annotation, "__args__", ())
            current = next((a for a in (annotation, *args) if hasattr(a, "model_fields")), None)
            if current is None and args:
                current = next((a for a in args if hasattr(a, "model_fields")), None)
            if current is None:
                return []
    fields = getattr(current, "model_fields", {})
    return [name for name in fields if name != "base_dir"]


def _format_validation_error(exc: ValidationError, source: str) -> ConfigError:
    first = exc.errors()[0]
    loc = tuple(first["loc"])
    key = ".".join(str(p) for p in loc) or "(top level)"
    kind = first["type"]
    if kind == "extra_forbidden":
        allowed = _allowed_keys(Config, loc)
        hint = _did_you_mean(str(loc[-1]), allowed)
        message = f"{source}: unknown key '{key}'{hint}"
        fix = f"allowed keys here: {', '.join(allowed)}" if allowed else "remove the key"
    elif kind == "missing":
        message = f"{source}: required key '{key}' is missing"
        fix = f"add '{loc[-1]}' (see `segvalue init` for a commented example)"
    else:
        text = str(first["msg"]).removeprefix("Value error, ")
        fix = "correct the value (see `segvalue init` for a commented example)"
        cause = first.get("ctx", {}).get("error")
        if isinstance(cause, SegvalueError):
            # Our own validators already say what is wrong and how to fix it.
            text, fix = cause.message, cause.fix or fix
        message = f"{source}: key '{key}': {text} (got {first.get('input')!r})"
    more = len(exc.errors()) - 1
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


class _YamlLoader(yaml.SafeLoader):
    """A safe loader that keeps dates as text.

    PyYAML turns ``2024-02-30`` into a date itself and fails without naming the key;
    as text, the value reaches pydantic, whose error names the key.
    """


_YamlLoader.yaml_implicit_resolvers = {
    first: [(tag, regex) for tag, regex in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


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
    try:
        data = yaml.load(path.read_text(encoding="utf-8"), Loader=_YamlLoader)  # a SafeLoader
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

output:
  dir: segvalue-output          # relative to this file
  format: parquet               # parquet or csv
"""
