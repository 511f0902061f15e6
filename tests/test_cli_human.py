"""What a person reads: every command's human output in an 80-column terminal.

Each command runs through :func:`segvalue.cli.main.cli` with the console at 80 columns
(``COLUMNS=80`` for the help formatter), from inside a scratch folder so that the paths it
prints are short. Every test asserts the exit code, the numbers and headings a reader
needs, no traceback, no line longer than 80 characters and no table heading cut short.
"""

from __future__ import annotations

import contextlib
import io
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from cli_inputs import CDNOW_COLUMNS, CDNOW_SAMPLE, CURVES
from segvalue.cli import main
from segvalue.cli.main import cli

WIDTH = 80
COMMANDS = [
    "init",
    "demo",
    "validate",
    "run",
    "segment",
    "kpis",
    "report",
    "budget",
    "attribute",
    "lift",
    "sample-size",
    "activate",
    "export",
    "uplift",
    "rfm",
    "clv",
    "runs",
    "hash",
]


@dataclass
class Shown:
    """One command's exit code and what it printed."""

    code: int
    out: str
    err: str


@contextlib.contextmanager
def _terminal(width: int) -> Iterator[None]:
    """The CLI's consoles and the help formatter at ``width`` columns."""
    saved_env, saved_width = os.environ.get("COLUMNS"), main.out.width
    os.environ["COLUMNS"] = str(width)
    main.out.width = width
    try:
        yield
    finally:
        main.out.width = saved_width
        if saved_env is None:
            del os.environ["COLUMNS"]
        else:
            os.environ["COLUMNS"] = saved_env


def show(argv: list[str], where: Path) -> Shown:
    """Run ``segvalue argv`` in folder ``where`` at 80 columns; check what any reader needs."""
    stdout, stderr = io.StringIO(), io.StringIO()
    with (
        contextlib.chdir(where),
        _terminal(WIDTH),
        contextlib.redirect_stdout(stdout),
        contextlib.redirect_stderr(stderr),
    ):
        code = cli(argv)
    shown = Shown(code, stdout.getvalue(), stderr.getvalue())
    assert "Traceback" not in shown.out + shown.err
    for line in (shown.out + shown.err).splitlines():
        assert len(line) <= WIDTH, f"{argv}: line longer than {WIDTH}: {line!r}"
        assert "…" not in line, f"{argv}: text cut short: {line!r}"
        if line.startswith("┃"):  # a table heading
            assert "..." not in line, f"{argv}: heading cut short: {line!r}"
    return shown


def ok(argv: list[str], where: Path) -> str:
    shown = show(argv, where)
    assert shown.code == 0, shown.err
    return shown.out


def _suggested(text: str) -> list[list[str]]:
    """The ``try: segvalue ...`` commands a demo suggests, as argument lists."""
    return [line.split()[2:] for line in text.splitlines() if line.startswith("try: segvalue ")]


# -- help and version ----------------------------------------------------------------


def test_version(tmp_path: Path) -> None:
    assert ok(["--version"], tmp_path).strip() == f"segvalue {main.__version__}"


def test_main_help_lists_every_command(tmp_path: Path) -> None:
    text = ok(["--help"], tmp_path)
    assert "Usage: segvalue [OPTIONS] COMMAND [ARGS]..." in text
    assert "Customer segments, lifetime value and ROI-maximising action." in text
    for command in COMMANDS:
        assert re.search(rf"^  {command}\s", text, re.MULTILINE), command
    listing = text.split("Commands:", 1)[1]
    assert "..." not in listing  # each command's line says all it has to say


@pytest.mark.parametrize("command", COMMANDS)
def test_command_help(tmp_path: Path, command: str) -> None:
    text = ok([command, "--help"], tmp_path)
    assert f"Usage: segvalue {command} [OPTIONS]" in text
    assert "--help" in text
    assert "[bold]" not in text and "[/]" not in text


def test_help_text_is_printed_literally(tmp_path: Path) -> None:
    """ ":email:" is part of an example, not an emoji code."""
    text = ok(["budget", "--help"], tmp_path)
    assert "paid_social:email:0.2" in " ".join(text.split())
    assert "\N{E-MAIL SYMBOL}" not in text


# -- init -------------------------------------------------------------------------------


def test_init(tmp_path: Path) -> None:
    text = ok(["init", "shop.yaml"], tmp_path)
    assert text.splitlines() == [
        "wrote shop.yaml",
        "edit its sources and columns, then run:",
        "  segvalue validate -c shop.yaml",
    ]
    assert (tmp_path / "shop.yaml").is_file()
    shown = show(["init", "shop.yaml"], tmp_path)  # no overwrite without --force
    assert shown.code == 2
    assert "shop.yaml" in shown.err and "--force" in shown.err


# -- the generated demo and every command on its config ----------------------------------


@pytest.fixture(scope="module")
def shop(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """A 300-customer demo in folder ``shop`` and what ``segvalue demo`` printed."""
    where = tmp_path_factory.mktemp("human")
    return where, ok(["demo", "--customers", "300", "--seed", "7", "--out", "shop"], where)


def test_demo_prints_features_segments_and_where_things_are(shop: tuple[Path, str]) -> None:
    where, text = shop
    assert "Input as of" in text
    assert "Customer features (300 customers)" in text
    for feature in ("frequency", "recency", "monetary_value"):
        assert re.search(rf"│ {feature} +│", text), feature
    assert "Scheme lifecycle (lifecycle)" in text and "Scheme rfm (rfm)" in text
    assert "config  shop/segvalue.yaml" in text
    assert f"outputs in shop{os.sep}output{os.sep}" in text
    assert "customer_features.parquet" in text and "run.json" in text
    assert (where / "shop" / "output" / "run.json").is_file()


def test_demo_suggests_commands_that_work(shop: tuple[Path, str]) -> None:
    where, text = shop
    suggested = _suggested(text)
    assert [argv[:-2] for argv in suggested] == [
        ["segment", "--show"],
        ["kpis"],
        ["runs"],
        ["budget"],
    ]
    for argv in suggested:
        assert argv[-2:] == ["-c", "shop/segvalue.yaml"]
        ok(argv, where)
    # Then the report it wrote, and how to open the dashboard (a server: not run here).
    size = (where / "shop" / "report.html").stat().st_size
    assert f"report  shop/report.html ({size / 1_000_000:.1f} MB)" in text.splitlines()
    assert text.splitlines()[-1] == "dashboard: segvalue serve -c shop/segvalue.yaml"


def test_validate(shop: tuple[Path, str]) -> None:
    where, _ = shop
    text = ok(["validate", "-c", "shop/segvalue.yaml"], where)
    assert "Input as of" in text
    for table in ("customers", "orders", "touchpoints", "channel_spend"):
        assert re.search(rf"│ {table} +│", text), table
    assert re.search(r"┃ table +┃ +read ┃ accepted ┃ rejected ┃", text)


def test_run(shop: tuple[Path, str]) -> None:
    where, _ = shop
    text = ok(["run", "-c", "shop/segvalue.yaml"], where)
    assert "Input as of" in text and "Scheme clusters (cluster)" in text
    assert "segment_memberships.parquet" in text and "run.json" in text
    # the measurement step (docs/measurement.md): journeys, roles, the priorities' lift
    flat = " ".join(text.split())
    assert "measurement per segment of clusters" in flat
    assert re.search(r"[\d,]+ journeys, [\d,]+ converting; [\d,]+ conversions had no touch", flat)
    assert re.search(r"channel roles \(all customers\): primary \w+", flat)
    assert re.search(r"EXP-2025-RETENTION treatment: converted lift [+-][\d.]+ \(", flat)
    assert "channel_effectiveness.parquet" in text and "measurement.json" in text


def test_segment_one_scheme(shop: tuple[Path, str]) -> None:
    where, _ = shop
    text = ok(["segment", "-c", "shop/segvalue.yaml", "--scheme", "rfm"], where)
    assert "Scheme rfm (rfm)" in text and "Scheme lifecycle" not in text
    shares = [float(s) for s in re.findall(r"│ +([\d.]+)% │", text)]
    assert sum(shares) == pytest.approx(100, abs=0.1 * len(shares))


def test_kpis_fit_80_columns_with_every_heading(shop: tuple[Path, str]) -> None:
    where, _ = shop
    text = ok(["kpis", "-c", "shop/segvalue.yaml"], where)
    assert "Segment KPIs (clusters), 95% intervals" in text
    headings = " ".join(line for line in text.splitlines() if line.startswith("┃"))
    for heading in ("segment", "customers", "share", "repeat", "churn", "CLV:CAC"):
        assert heading in headings, heading
    assert re.search(r"│ all customers +│ +300 │ +100\.0% │", text)
    assert re.search(r"\[\d+\.\d%, \d+\.\d%\]", text)  # an interval under a rate
    assert re.search(r"^1\. cluster_\d+ \(", text, re.MULTILINE)  # ranked, with its persona


def test_budget_from_the_config(shop: tuple[Path, str]) -> None:
    where, _ = shop
    text = ok(["budget", "-c", "shop/segvalue.yaml"], where)
    assert "Budget plan" in text and "expected response" in text
    assert re.search(r"┃ item +┃ +current ┃ +planned ┃ marginal ROI ┃", text)
    # docs/getting-started.md: "what if we move 20% of paid social into e-mail"
    argv = ["budget", "-c", "shop/segvalue.yaml", "--move", "paid_social:email:0.2"]
    text = ok(argv, where)
    assert re.match(r"change in outcome: [+-][\d,]+\.\d\d \(95% interval ", text)


def test_budget_from_a_curves_file(tmp_path: Path) -> None:
    (tmp_path / "curves.yaml").write_text(CURVES)
    text = ok(["budget", "--curves", "curves.yaml"], tmp_path)
    assert re.search(r"│ email +│ +0\.00 │ +266\.63 │ +0\.9185 │", text)
    assert re.search(r"│ social +│ +0\.00 │ +77\.79 │ +0\.9185 │", text)
    assert "expected response 1,119.255 (current 0.000); binding: total" in text


def test_budget_what_if(tmp_path: Path) -> None:
    """Michaelis-Menten beta s / (k + s): email 100 -> 250 gains 555.56 - 333.33."""
    with_current = CURVES.replace("k: 200}", "k: 200, current: 100}")
    with_current = with_current.replace("k: 100}", "k: 100, current: 300}")
    (tmp_path / "curves.yaml").write_text(with_current)
    text = ok(["budget", "--curves", "curves.yaml", "--move", "search:email:0.5"], tmp_path)
    assert text.splitlines()[:3] == [
        "change in outcome: +132.22",
        "  email: +222.22",
        "  search: -90.00",
    ]


# -- sample size before a test ------------------------------------------------------------


def test_sample_size_for_a_rate_and_a_mean(tmp_path: Path) -> None:
    """10 % against 12 %: 3,839 per group (docs/measurement.md); a mean from its sd."""
    text = ok(["sample-size", "--effect", "0.02", "--baseline", "0.10"], tmp_path)
    assert text.splitlines() == [
        "to detect 10.0% -> 12.0% (+2.0 points) at 95% confidence with 80% power:",
        "  7,678 customers: 3,839 treated, 3,839 control",
    ]
    argv = ["sample-size", "--effect", "12.5", "--sd", "140", "--level", "0.975"]
    text = ok([*argv, "--power", "0.9", "--treated-share", "0.25"], tmp_path)
    assert text.startswith("to detect a mean difference of +12.5 (sd 140) at 97.5% confidence")
    assert re.search(r"^  [\d,]+ customers: [\d,]+ treated \(25%\), [\d,]+ control$", text, re.M)
    shown = show(["sample-size", "--effect", "0.02", "--baseline", "0.1", "--sd", "2"], tmp_path)
    assert shown.code == 2 and shown.out == ""
    assert "error: give exactly one of --baseline" in shown.err and "--sd" in shown.err


# -- match keys for an ad platform --------------------------------------------------------


def test_hash_prints_each_key_or_why_not(tmp_path: Path) -> None:
    """Meta's rule (docs/activation-matchkeys.md): e-mail trimmed and lower-cased, phone
    digits with the country code; the 64-character key fits the line (the keys are
    sha256sum of the normalised values)."""
    argv = ["hash", "--destination", "meta", "--email", " Ann@Example.com "]
    text = ok([*argv, "--phone", "030 1234567", "--country", "DE"], tmp_path)
    assert text.splitlines() == [
        "destination: meta",
        "email: ann@example.com",
        "  sha256: 71d4f55f72fa128dfb468a1a3901507c804b74316488744d769d7f4b16696476",
        "phone: 49301234567",
        "  sha256: 2f9fbc550b12cbc0e6242384cc472bd1e4f058a8b773f189f7acb86d202655ce",
    ]
    shown = show(["hash", "--destination", "google", "--phone", "030 1234567"], tmp_path)
    assert shown.code == 0
    flat = " ".join(shown.out.split())
    assert "phone: not hashed: '030 1234567': it has no country code" in flat
    assert "no --country to complete it" in flat
    shown = show(["hash", "--destination", "meta"], tmp_path)
    assert shown.code == 2 and shown.out == ""
    assert "error: give --email or --phone (or both)" in shown.err


# -- rfm and clv on Fader and Hardie's CDNOW sample ---------------------------------------


@pytest.fixture
def cdnow(tmp_path: Path) -> Path:
    """A folder holding the CDNOW sample as ``cdnow.txt`` (short paths in messages)."""
    (tmp_path / "cdnow.txt").write_bytes(CDNOW_SAMPLE.read_bytes())
    return tmp_path


def test_rfm_prints_the_summary_and_first_customers(cdnow: Path) -> None:
    argv = ["rfm", "cdnow.txt", *CDNOW_COLUMNS, "--as-of", "1997-09-30"]
    text = ok(argv, cdnow)
    assert "RFM summary (weeks, as of 1997-09-30)" in text
    assert re.search(r"│ +2,357 │ +2,457 │ +946 │", text)  # Fader & Hardie's summary
    assert "first customers" in text
    assert re.search(r"│ +0001 │ +2 │ +30\.43 │ +38\.86 │ +22\.34 │", text)
    assert "rejected cdnow.txt: 1,959 rows (after_as_of)" in text


def test_rfm_with_out_names_the_file(cdnow: Path) -> None:
    argv = ["rfm", "cdnow.txt", *CDNOW_COLUMNS, "--as-of", "1997-09-30"]
    text = ok([*argv, "--out", "rfm.csv"], cdnow)
    assert "features written to rfm.csv" in text
    assert "first customers" not in text
    lines = (cdnow / "rfm.csv").read_text().splitlines()
    assert lines[0].startswith('"customer_id","frequency"') and len(lines) == 1 + 2357


def test_clv_prints_the_fit_and_the_total(cdnow: Path) -> None:
    text = ok(["clv", "cdnow.txt", *CDNOW_COLUMNS], cdnow)
    assert "parameters (time unit: week)" in text
    assert "log-likelihood" in text
    assert re.search(r"total CLV over 52 weeks .*: [\d,]+\.\d\d for 2,357 customers", text, re.S)


def test_clv_with_out_names_the_file(cdnow: Path) -> None:
    text = ok(["clv", "cdnow.txt", *CDNOW_COLUMNS, "--out", "clv.parquet"], cdnow)
    assert "per-customer predictions written to clv.parquet" in text
    assert (cdnow / "clv.parquet").is_file()


# -- user text is text ---------------------------------------------------------------------


def test_user_values_are_printed_literally(tmp_path: Path) -> None:
    """Rich markup and emoji codes inside the data are shown as they are."""
    (tmp_path / "orders.csv").write_text(
        "customer,day,amount\n"
        "[bold]x[/bold],2024-01-02,10\n[bold]x[/bold],2024-02-02,12\n"
        ":email:,2024-01-05,7\n:email:,2024-03-01,9\n"
    )
    argv = ["rfm", "orders.csv", "--customer-col", "customer", "--date-col", "day"]
    text = ok([*argv, "--amount-col", "amount"], tmp_path)
    assert "[bold]x[/bold]" in text
    assert ":email:" in text and "\N{E-MAIL SYMBOL}" not in text


# -- CDNOW demo ------------------------------------------------------------------------------


@pytest.mark.slow
def test_cdnow_demo_and_its_suggestions(tmp_path: Path) -> None:
    """The CDNOW config has no channel spend: budget is not suggested; the rest works."""
    text = ok(["demo", "--dataset", "cdnow", "--out", "cdnow"], tmp_path)
    assert "Customer features (23,570 customers)" in text
    assert re.search(r"│ orders +│ +69,659 │ +69,659 │ +0 │", text)
    suggested = _suggested(text)
    assert [argv[:-2] for argv in suggested] == [["segment", "--show"], ["kpis"], ["runs"]]
    for argv in suggested:
        assert argv[-2:] == ["-c", "cdnow/segvalue.yaml"]
        ok(argv, tmp_path)
    assert (tmp_path / "cdnow" / "report.html").is_file()
    assert text.splitlines()[-1] == "dashboard: segvalue serve -c cdnow/segvalue.yaml"


def test_activate_dry_run_prints_each_step(shop: tuple[Path, str]) -> None:
    """The dry run: per campaign and step the audience and the suppressed and capped
    counts by reason (docs/activation.md); nothing stored."""
    where, _ = shop
    config = (where / "shop" / "segvalue.yaml").read_text(encoding="utf-8")
    plan = where / "shop" / "campaigns.yaml"
    plan.write_text(
        config
        + "activation:\n  global_control: {share: 0.1}\n"
        + "  caps: [{channel: email, per: week, max: 1}]\n"
        + "campaigns:\n"
        + "  - name: winback\n    segments: [cluster_1, cluster_2]\n    objective: win_back\n"
        + "    start: 2026-01-05\n"
        + "    steps: [{channel: email}, {channel: email, delay_days: 2}]\n",
        encoding="utf-8",
    )
    text = ok(["activate", "-c", "shop/campaigns.yaml", "--dry-run"], where)
    flat = " ".join(text.split())
    assert "dry run: nothing stored" in flat
    assert re.search(r"global control group: [\d,]+ of 300 customers \(10% asked\)", flat)
    assert re.search(r"winback \(win_back, priority 100, 2026-01-05\): \d+ members", flat)
    assert re.search(r"┃ step ┃ day +┃ channel ┃ audience ┃ suppressed +┃ capped", text)
    # the second e-mail of the same week is capped for everyone the first one reached
    assert "email: 1 per week" in text
    assert "global_control" in text


def test_export_prints_where_the_audience_went(shop: tuple[Path, str]) -> None:
    where, _ = shop
    config = (where / "shop" / "segvalue.yaml").read_text(encoding="utf-8")
    plan = where / "shop" / "exporting.yaml"
    plan.write_text(
        config
        + "campaigns:\n"
        + "  - name: Spring sale\n    segments: [cluster_1, cluster_2, cluster_3]\n"
        + "    objective: grow\n    start: 2026-03-02\n    steps: [{channel: email}]\n",
        encoding="utf-8",
    )
    ok(["activate", "-c", "shop/exporting.yaml"], where)
    text = ok(["export", "Spring sale", "--to", "csv", "-c", "shop/exporting.yaml"], where)
    flat = " ".join(text.split())
    assert re.search(
        r"Spring sale: [\d,]+ rows to csv: shop/segvalue-exports/spring_sale\.csv", flat
    )
    assert "manifest" in flat and re.search(r"sha256 [0-9a-f]{64}", flat)
    wrong = show(["export", "Sprig sale", "--to", "csv", "-c", "shop/exporting.yaml"], where)
    assert wrong.code == 2 and "Spring sale" in wrong.err
