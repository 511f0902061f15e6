"""A corpus of bad inputs: each one must end in one clear message, exit code 2, no traceback.

Every case builds its files under ``tmp_path``, runs the command line in process and checks
that the message names the input (file or key), the line / row or column where there is one,
and the fix, and that nothing was written: the folder holds exactly what the case put there.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import duckdb
import pytest

from segvalue.cli.main import cli
from segvalue.config import config_template

HEADER = "order_id,customer_id,order_ts,amount\n"
ORDERS = HEADER + "1,c1,2024-01-05,10.5\n2,c2,2024-02-01,20\n3,c1,2024-03-01,5\n"
CONFIG = "sources:\n  orders:\n    path: orders.csv\n"

#: Writes one input file (for binary formats that need a library to produce them).
Writer = Callable[[Path], None]


@dataclass(frozen=True)
class Case:
    """One bad input: the files to create, the command, and what stderr must contain."""

    id: str
    files: dict[str, str | bytes | Writer]
    argv: list[str]
    expected: tuple[str, ...]
    fix: str
    outputs: tuple[str, ...] = ()
    #: Written although the command fails (the rejects that explain a failed validation).
    written: tuple[str, ...] = ()
    marks: tuple[pytest.MarkDecorator, ...] = ()


def _shop_duckdb(path: Path) -> None:
    con = duckdb.connect(str(path))
    con.execute(
        "CREATE TABLE orders AS SELECT * FROM (VALUES "
        "('1', 'c1', DATE '2024-01-05', 10.5), ('2', 'c2', DATE '2024-02-01', 20.0)"
        ") AS t(order_id, customer_id, order_ts, amount)"
    )
    con.close()


def _validate(*extra: str) -> list[str]:
    return ["validate", "-c", "{tmp}/segvalue.yaml", *extra]


def _rfm(*extra: str, customer_col: str = "customer_id") -> list[str]:
    return [
        "rfm",
        "{tmp}/orders.csv",
        "--customer-col",
        customer_col,
        "--date-col",
        "order_ts",
        "--amount-col",
        "amount",
        *extra,
    ]


def _config(text: str, orders: str | bytes = ORDERS) -> dict[str, str | bytes | Writer]:
    return {"segvalue.yaml": text, "orders.csv": orders}


def _strict(orders: str, config: str = CONFIG, **more: str) -> dict[str, str | bytes | Writer]:
    return {"segvalue.yaml": config, "orders.csv": orders, **more}


STRICT = _validate("--strict", "--rejects", "{tmp}/rejects.csv")
STRICT_FIX = "set validation.strict: false"
# Listing the tables of a DuckDB database (only done to suggest a name) goes through an
# ibis 12 call that DuckDB 1.5 deprecates; users never see library DeprecationWarnings.
LISTS_DUCKDB_TABLES = (
    pytest.mark.filterwarnings("ignore:fetch_arrow_table.. is deprecated:DeprecationWarning"),
)
MANY_ROWS = "".join(f"{i},c{i},2024-03-02,12\n" for i in range(10, 200))

CASES = [
    # --- the configuration file ---------------------------------------------------------
    Case(
        "missing_config",
        {},
        _validate(),
        ("segvalue.yaml' not found",),
        "run `segvalue init`",
    ),
    Case(
        "invalid_yaml_names_line",
        {"segvalue.yaml": "version: 1\ntime_unit: week\n" + CONFIG + "   columns: {}\n"},
        _validate(),
        ("segvalue.yaml: not valid YAML at line 6",),
        "fix the indentation or quoting there",
    ),
    Case(
        "yaml_not_a_mapping",
        {"segvalue.yaml": "- orders.csv\n"},
        _validate(),
        ("segvalue.yaml: expected a mapping of keys at the top level, got list",),
        "start from `segvalue init`",
    ),
    Case(
        "unknown_top_level_key",
        _config("time_unt: week\n" + CONFIG),
        _validate(),
        ("segvalue.yaml: unknown key 'time_unt' (did you mean 'time_unit'?)",),
        "allowed keys here: version, as_of, time_unit",
    ),
    Case(
        "unknown_nested_key",
        _config(CONFIG + "validation:\n  strcit: true\n"),
        _validate(),
        ("unknown key 'validation.strcit' (did you mean 'strict'?)",),
        "allowed keys here: strict, zero_amounts",
    ),
    Case(
        "unknown_csv_option",
        _config(CONFIG + "    csv:\n      delimeter: ';'\n"),
        _validate(),
        ("unknown key 'sources.orders.csv.delimeter' (did you mean 'delimiter'?)",),
        "allowed keys here: delimiter, decimal, header, encoding, quote",
    ),
    Case(
        "wrong_type_lookback",
        _config("lookback: abc\n" + CONFIG),
        _validate(),
        ("key 'lookback'", "valid number", "(got 'abc')"),
        "correct the value",
    ),
    Case(
        "negative_lookback",
        _config("lookback: -4\n" + CONFIG),
        _validate(),
        ("key 'lookback'", "greater than 0", "(got -4)"),
        "correct the value",
    ),
    Case(
        "bad_time_unit",
        _config("time_unit: fortnight\n" + CONFIG),
        _validate(),
        ("key 'time_unit': unknown time unit 'fortnight'",),
        "use one of: day, week, month",
    ),
    Case(
        "impossible_as_of_date",
        _config("as_of: 2024-02-30\n" + CONFIG),
        _validate(),
        ("key 'as_of'", "day value is outside expected range", "(got '2024-02-30')"),
        "correct the value",
    ),
    Case(
        "bad_zero_amounts_policy",
        _config(CONFIG + "validation:\n  zero_amounts: maybe\n"),
        _validate(),
        ("key 'validation.zero_amounts'", "'keep' or 'reject'", "(got 'maybe')"),
        "correct the value",
    ),
    Case(
        "bad_encoding_value",
        _config(CONFIG + "    csv:\n      encoding: cp1252\n"),
        _validate(),
        ("key 'sources.orders.csv.encoding'", "(got 'cp1252')"),
        "correct the value",
    ),
    Case(
        "source_with_path_and_url",
        _config("sources:\n  orders:\n    path: orders.csv\n    url: duckdb://\n    table: o\n"),
        _validate(),
        ("key 'sources.orders': give only one of 'path' (a file) or 'url' (a database)",),
        "correct the value",
    ),
    Case(
        "source_with_neither_path_url_nor_table",
        _config("sources:\n  orders:\n    columns: {amount: total}\n"),
        _validate(),
        ("key 'sources.orders': give 'path' (a file), 'url' and 'table' (a database)",),
        "correct the value",
    ),
    Case(
        "engine_table_missing",
        _config("sources:\n  orders:\n    table: ordrs\n"),
        _validate(),
        ("engine duckdb: no table 'ordrs'; tables: (none)",),
        "set the source's 'table' to one of those",
        marks=LISTS_DUCKDB_TABLES,
    ),
    Case(
        "duckdb_file_without_table",
        {"segvalue.yaml": "sources:\n  orders:\n    path: shop.duckdb\n"},
        _validate(),
        ("key 'sources.orders': a DuckDB file source also needs 'table'",),
        "correct the value",
    ),
    Case(
        "unknown_table_name",
        _config("sources:\n  order:\n    path: orders.csv\n"),
        _validate(),
        ("key 'sources': unknown table 'order' (did you mean 'orders'?)",),
        "correct the value",
    ),
    Case(
        "missing_orders_source",
        _config("sources:\n  customers:\n    path: orders.csv\n"),
        _validate(),
        ("key 'sources': an 'orders' source is required",),
        "correct the value",
    ),
    Case(
        "mapping_to_unknown_logical_column",
        _config(CONFIG + "    columns:\n      amont: amount\n"),
        _validate(),
        ("sources.orders.columns.amont: orders has no logical column 'amont'", "'amount'?"),
        "map one of: order_id, customer_id, order_ts, amount",
    ),
    Case(
        "mapping_renames_required_column_away",
        {
            "segvalue.yaml": CONFIG + "  customers:\n    path: customers.csv\n"
            "    columns:\n      custmer_id: customer_id\n",
            "orders.csv": ORDERS,
            "customers.csv": "customer_id\nc1\nc2\n",
        },
        _validate(),
        (
            "customers.csv: column 'customer_id' is mapped to customers.custmer_id "
            "(did you mean 'customer_id'?), so required column 'customer_id' is missing",
        ),
        "correct sources.customers.columns.custmer_id",
    ),
    Case(
        "date_format_unsupported_directive",
        _config(CONFIG + "    date_format: '%d %b %Y'\n"),
        _validate(),
        ("sources.orders.date_format '%d %b %Y': directive %b is not supported",),
        "use only %Y %m %d %H %M %S",
    ),
    # --- the data files -----------------------------------------------------------------
    Case(
        "mapped_column_not_in_file",
        _config(
            CONFIG + "    columns:\n      amount: amount_euro\n",
            ORDERS.replace(",amount", ",amount_eur"),
        ),
        _validate(),
        (
            "orders.csv: column 'amount_euro' (mapped to orders.amount) not found "
            "(did you mean 'amount_eur'?)",
        ),
        "correct sources.orders.columns.amount",
    ),
    Case(
        "required_column_missing",
        _config(CONFIG, ORDERS.replace(",amount", ",amt")),
        _validate(),
        ("orders.csv: required column 'amount' of table orders not found (did you mean 'amt'?)",),
        "sources.orders.columns.amount: <your column>",
    ),
    Case(
        "wrong_delimiter",
        _config(CONFIG, ORDERS.replace(",", ";")),
        _validate(),
        ("orders.csv: required column 'order_id' of table orders not found",),
        "set sources.orders.csv.delimiter",
    ),
    Case(
        "data_file_not_found",
        {"segvalue.yaml": CONFIG.replace("orders.csv", "data/orders.csv")},
        _validate(),
        ("data/orders.csv: file not found",),
        "check the path in segvalue.yaml",
    ),
    Case(
        "empty_file",
        _config(CONFIG, ""),
        _validate(),
        ("orders.csv: the file is empty",),
        "a file with a header and rows",
    ),
    Case(
        "header_only_file",
        _config(CONFIG, HEADER),
        _validate(),
        ("orders.csv: the orders table is empty",),
        "point sources.orders at",
    ),
    Case(
        "header_only_file_with_as_of",
        _config("as_of: 2024-03-01\n" + CONFIG, HEADER),
        _validate(),
        ("orders.csv: the orders table is empty",),
        "point sources.orders at",
    ),
    Case(
        "invalid_utf8",
        _config(CONFIG, ORDERS.encode() + b"4,c\xff3,2024-03-02,12\n"),
        _validate(),
        ("orders.csv: cannot be read as csv: line 5:", "not utf-8 encoded"),
        "set csv.encoding",
    ),
    Case(
        "ragged_line_too_many_fields",
        _config(CONFIG, ORDERS + "4,c3,2024-03-02,12,99\n5,c3,2024-03-02,12\n"),
        _validate(),
        ("orders.csv: cannot be read as csv: line 5: Expected Number of Columns: 4 Found: 5",),
        "fix the ragged line",
    ),
    Case(
        "ragged_line_too_few_fields",
        _config(CONFIG, ORDERS + "4,c3,2024-03-02\n"),
        _validate(),
        ("orders.csv: cannot be read as csv: line 5: Expected Number of Columns: 4 Found: 3",),
        "fix the ragged line",
    ),
    Case(
        # A ragged last line once made the CSV sniffer skip every line before it.
        "ragged_line_far_down",
        _config(CONFIG, ORDERS + MANY_ROWS + "4,c3,2024-03-02,12,99\n"),
        _validate(),
        ("orders.csv: cannot be read as csv: line 195: Expected Number of Columns: 4 Found: 5",),
        "fix the ragged line",
    ),
    Case(
        "corrupt_parquet",
        {
            "segvalue.yaml": CONFIG.replace("orders.csv", "orders.parquet"),
            "orders.parquet": b"PAR1",
        },
        _validate(),
        ("orders.parquet: cannot be read as parquet",),
        "check the file format",
    ),
    Case(
        "duckdb_file_missing_table",
        {
            "segvalue.yaml": "sources:\n  orders:\n    path: shop.duckdb\n    table: order\n",
            "shop.duckdb": _shop_duckdb,
        },
        _validate(),
        ("shop.duckdb: no table 'order' (did you mean 'orders'?); tables: orders",),
        "set the source's 'table' to one of those",
        marks=LISTS_DUCKDB_TABLES,
    ),
    # --- rows that break a rule under --strict ------------------------------------------
    Case(
        "strict_unparseable_amount",
        _strict(ORDERS + "4,c3,2024-03-02,12x\n"),
        STRICT,
        (
            "strict validation failed, nothing was written",
            "1 row break unparseable_value",
            "orders.csv 5: amount '12x' cannot be parsed as a number",
        ),
        STRICT_FIX,
        written=("rejects.csv",),
    ),
    Case(
        "strict_unparseable_date",
        _strict(ORDERS + "4,c3,2024-13-02,12\n"),
        STRICT,
        ("orders.csv 5: order_ts '2024-13-02' cannot be parsed as a timestamp",),
        STRICT_FIX,
        written=("rejects.csv",),
    ),
    Case(
        "strict_duplicate_order_id",
        _strict(ORDERS + "2,c3,2024-03-02,12\n"),
        STRICT,
        ("break duplicate_key", "orders.csv 5: order_id '2' already appeared on line 3"),
        STRICT_FIX,
        written=("rejects.csv",),
    ),
    Case(
        "strict_null_customer_id",
        _strict(ORDERS + "4,,2024-03-02,12\n"),
        STRICT,
        ("break null_id", "orders.csv 5: customer_id is empty"),
        STRICT_FIX,
        written=("rejects.csv",),
    ),
    Case(
        "strict_order_after_as_of",
        _strict(ORDERS + "4,c3,2024-03-02,12\n", "as_of: 2024-03-01\n" + CONFIG),
        STRICT,
        (
            "break after_as_of",
            "orders.csv 5: order_ts 2024-03-02 00:00:00 is after the as-of date 2024-03-01",
        ),
        STRICT_FIX,
        written=("rejects.csv",),
    ),
    Case(
        "strict_unknown_customer",
        _strict(
            ORDERS + "4,c9,2024-03-02,12\n",
            CONFIG + "  customers:\n    path: customers.csv\n",
            **{"customers.csv": "customer_id\nc1\nc2\nc3\n"},
        ),
        STRICT,
        ("break unknown_customer", "orders.csv 5: customer_id 'c9' is not in the customers table"),
        STRICT_FIX,
        written=("rejects.csv",),
    ),
    Case(
        "strict_from_config",
        _strict(ORDERS + "4,c3,2024-03-02,-5\n", CONFIG + "validation:\n  strict: true\n"),
        _validate("--rejects", "{tmp}/rejects.parquet"),
        ("orders.csv 5: return for customer 'c3' who has no accepted purchase",),
        STRICT_FIX,
        written=("rejects.parquet",),
    ),
    Case(
        "all_orders_invalid",
        _config(CONFIG, HEADER + "1,c1,2024-01-05,x\n2,c2,2024-01-06,y\n"),
        _validate("--rejects", "{tmp}/rejects.csv"),
        (
            "orders.csv: no valid orders remain (unparseable_value: 2); e.g. orders.csv line 2: "
            "amount 'x' cannot be parsed as a number (unparseable_value, 2 rows)",
        ),
        "correct the amount values",
        written=("rejects.csv",),
    ),
    Case(
        "all_orders_after_as_of",
        _config("as_of: 2020-01-01\n" + CONFIG),
        _validate(),
        ("orders.csv: no valid orders remain (after_as_of: 3)",),
        "set as_of to the end of the data",
    ),
    # --- command-line options -----------------------------------------------------------
    Case(
        "rfm_bad_as_of",
        {"orders.csv": ORDERS},
        _rfm("--as-of", "2024-13-01", "--out", "{tmp}/rfm.csv"),
        ("--as-of '2024-13-01' is not a date",),
        "use YYYY-MM-DD",
        outputs=("rfm.csv",),
    ),
    Case(
        "rfm_bad_time_unit",
        {"orders.csv": ORDERS},
        _rfm("--time-unit", "year", "--out", "{tmp}/rfm.csv"),
        ("unknown time unit 'year'",),
        "use one of: day, week, month",
        outputs=("rfm.csv",),
    ),
    Case(
        "rfm_bad_granularity",
        {"orders.csv": ORDERS},
        _rfm("--granularity", "hour", "--out", "{tmp}/rfm.csv"),
        ("--granularity 'hour' is not supported",),
        "use 'day' or 'unit'",
        outputs=("rfm.csv",),
    ),
    Case(
        "rfm_bad_decimal",
        {"orders.csv": ORDERS},
        _rfm("--decimal", ";", "--out", "{tmp}/rfm.csv"),
        ("--decimal ';' is not supported",),
        "use '.' or ','",
        outputs=("rfm.csv",),
    ),
    Case(
        "rfm_bad_delimiter",
        {"orders.csv": ORDERS},
        _rfm("--delimiter", "::", "--out", "{tmp}/rfm.csv"),
        ("--delimiter: must be one character", "(got '::')"),
        "correct the value",
        outputs=("rfm.csv",),
    ),
    Case(
        # %Y-%m is accepted (the first of the month); a format without a month is not
        "rfm_date_format_without_month",
        {"orders.csv": ORDERS},
        _rfm("--date-format", "%d/%Y", "--out", "{tmp}/rfm.csv"),
        ("date_format '%d/%Y' must contain %Y and %m",),
        "for example '%d/%m/%Y' or '%Y-%m'",
        outputs=("rfm.csv",),
    ),
    Case(
        "rfm_out_unknown_extension",
        {"orders.csv": ORDERS},
        _rfm("--out", "{tmp}/rfm.xlsx"),
        ("rfm.xlsx': unknown extension",),
        "use .csv or .parquet",
        outputs=("rfm.xlsx",),
    ),
    Case(
        "rfm_out_missing_folder",
        {"orders.csv": ORDERS},
        _rfm("--out", "{tmp}/missing/rfm.csv"),
        ("missing/rfm.csv': folder does not exist",),
        "create it first",
        outputs=("missing",),
    ),
    Case(
        "rfm_column_not_in_file",
        {"orders.csv": ORDERS},
        _rfm("--out", "{tmp}/rfm.csv", customer_col="custid"),
        ("orders.csv: column 'custid' (mapped to orders.customer_id) not found", "'customer_id'?"),
        "pass the right --customer-col",
        outputs=("rfm.csv",),
    ),
    Case(
        "rfm_orders_file_not_found",
        {},
        _rfm("--out", "{tmp}/rfm.csv"),
        ("orders.csv: file not found",),
        "check the path",
        outputs=("rfm.csv",),
    ),
    Case(
        "rfm_strict_unparseable_amount",
        {"orders.csv": ORDERS + "4,c3,2024-03-02,12x\n"},
        _rfm("--strict", "--out", "{tmp}/rfm.csv"),
        ("orders.csv 5: amount '12x' cannot be parsed as a number",),
        STRICT_FIX,
        outputs=("rfm.csv",),
    ),
    Case(
        "rejects_unknown_extension",
        _config(CONFIG),
        _validate("--rejects", "{tmp}/rejects.xlsx"),
        ("rejects.xlsx': unknown extension '.xlsx'",),
        "use .csv or .parquet",
        outputs=("rejects.xlsx",),
    ),
    Case(
        "rejects_into_missing_folder",
        _config(CONFIG),
        _validate("--rejects", "{tmp}/missing/rejects.csv"),
        ("missing/rejects.csv': folder does not exist",),
        "create it first",
        outputs=("missing",),
    ),
    Case(
        "init_onto_existing_file",
        {"segvalue.yaml": "# my own config\n" + CONFIG},
        ["init", "{tmp}/segvalue.yaml"],
        ("segvalue.yaml already exists",),
        "use --force to overwrite it",
    ),
    # --- engines and databases ----------------------------------------------------------
    Case(
        "engine_url_without_scheme",
        _config("engine:\n  url: shop.duckdb\n" + CONFIG),
        _validate(),
        ("engine URL 'shop.duckdb' has no scheme",),
        "use e.g. duckdb:// or postgres://host/db",
    ),
    Case(
        "engine_url_unknown_scheme",
        _config("engine:\n  url: nosuchdb://host/db\n" + CONFIG),
        _validate(),
        ("cannot connect to nosuchdb://host/db",),
        "check the URL",
    ),
    Case(
        "source_table_missing_in_database",
        _config("sources:\n  orders:\n    url: duckdb://\n    table: ordrs\n"),
        _validate(),
        ("duckdb://: no table 'ordrs'; tables: (none)",),
        "set the source's 'table' to one of those",
        marks=LISTS_DUCKDB_TABLES,
    ),
]


def _build(tmp_path: Path, files: dict[str, str | bytes | Writer]) -> None:
    for name, content in files.items():
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            path.write_bytes(content)
        elif isinstance(content, str):
            path.write_text(content, encoding="utf-8")
        else:
            content(path)


def _snapshot(folder: Path) -> dict[str, bytes]:
    """Every file and folder under ``folder`` with its bytes (folders map to b"")."""
    return {
        str(p.relative_to(folder)): (p.read_bytes() if p.is_file() else b"")
        for p in sorted(folder.rglob("*"))
    }


def _run(argv: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    code = cli([a.replace("{tmp}", str(tmp_path)) for a in argv])
    captured = capsys.readouterr()
    return code, captured.out + captured.err


def test_the_corpus_is_large_and_unique() -> None:
    ids = [case.id for case in CASES]
    assert len(ids) == len(set(ids))
    assert len(CASES) >= 30


@pytest.mark.parametrize("case", [pytest.param(c, id=c.id, marks=c.marks) for c in CASES])
def test_bad_input_gives_one_clear_message(
    case: Case, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # anything written to the working folder shows up below
    _build(tmp_path, case.files)
    before = _snapshot(tmp_path)

    code = cli([a.replace("{tmp}", str(tmp_path)) for a in case.argv])
    captured = capsys.readouterr()

    assert code == 2
    assert "Traceback" not in captured.out + captured.err
    error, _, fix = captured.err.partition("\nfix: ")
    assert error.startswith("error: "), captured.err
    for text in case.expected:
        assert text in error, f"{text!r} not in {error!r}"
    assert case.fix in fix, f"{case.fix!r} not in {fix!r}"
    for output in case.outputs:
        assert not (tmp_path / output).exists(), output
    for output in case.written:
        assert (tmp_path / output).stat().st_size > 0, output
    # Nothing else written, nothing half-written, no temporary files left behind.
    after = {k: v for k, v in _snapshot(tmp_path).items() if k not in case.written}
    assert after == before


def test_backend_that_is_not_installed_or_not_reachable(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """mysql:// needs a driver: the message says what to install, or that it cannot connect."""
    monkeypatch.chdir(tmp_path)
    url = "mysql://analyst:s3cret@127.0.0.1:1/shop"
    _build(tmp_path, _config(f"engine:\n  url: {url}\n" + CONFIG))
    before = _snapshot(tmp_path)

    code, output = _run(_validate(), tmp_path, capsys)

    assert code == 2
    assert "Traceback" not in output
    assert "s3cret" not in output  # a password never reaches a message
    installed = "the mysql backend is not installed" in output and "fix: pip install" in output
    unreachable = "cannot connect to mysql://analyst:***@127.0.0.1:1/shop" in output
    assert installed or unreachable, output
    assert _snapshot(tmp_path) == before


def test_init_with_force_overwrites(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The way out that the init message offers works."""
    target = tmp_path / "segvalue.yaml"
    target.write_text("# my own config\n")

    code, _ = _run(["init", str(target), "--force"], tmp_path, capsys)

    assert code == 0
    assert target.read_text() == config_template()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["segvalue.yaml"]


@pytest.mark.parametrize("value", ["'[red]x'", "'[/x]'"])
def test_messages_are_printed_verbatim(
    value: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _build(tmp_path, _config(f"lookback: {value}\n" + CONFIG))

    code, output = _run(_validate(), tmp_path, capsys)

    assert code == 2
    assert f"(got {value})" in output
