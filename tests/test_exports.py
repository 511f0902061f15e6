"""Audience exports (docs/activation.md#exports): files with manifests, database tables
(DuckDB and a real PostgreSQL), ad-platform lists of hashed match keys, webhooks, segment
events; never over something segvalue did not write; contact details only when listed."""

from __future__ import annotations

import csv
import hashlib
import http.server
import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import pyarrow.parquet as pq
import pytest

from segvalue.data.exports import file_sha256
from segvalue.errors import ConfigError, DataValidationError
from segvalue.pipeline import run_demo
from segvalue.project import Project

PLAN = """
activation:
  global_control: {share: 0.05}
  exports:
    contact_columns: CONTACTS
    webhook_allowlist: ["http://127.0.0.1:*"]
campaigns:
  - name: Win back
    segments: [cluster_1, cluster_2]
    objective: win_back
    theme: "=HYPERLINK(\\"http://x\\")"
    start: 2026-01-05
    steps: [{channel: email}, {channel: primary, delay_days: 3}]
"""


def _shop(folder: Path, contacts: str = "[]") -> Path:
    _, path = run_demo(n_customers=600, seed=9, out_dir=folder)
    path.write_text(
        path.read_text(encoding="utf-8") + PLAN.replace("CONTACTS", contacts), encoding="utf-8"
    )
    with Project.from_yaml(path) as project:
        project.activate()
    return path


@pytest.fixture(scope="module")
def shop(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _shop(tmp_path_factory.mktemp("exports") / "shop")


def _audience(path: Path, step: int | None = None) -> list[dict[str, Any]]:
    with Project.from_yaml(path) as project:
        rows = project.runs.require_latest().table("activation_audiences").to_pylist()
    return [r for r in rows if r["campaign"] == "Win back" and step in (None, r["step"])]


def _read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(encoding="utf-8") as f:
        return list(csv.DictReader(f))


def test_files_with_their_manifests(shop: Path) -> None:
    expected = _audience(shop, 1)
    with Project.from_yaml(shop) as project:
        done = project.export("Win back", "csv", step=1)
        again = project.export("Win back", "csv", step=1)  # its own file: replaced
        parquet = project.export("Win back", "parquet")
        lines = project.export("Win back", "jsonl", "out/all.jsonl")
    path = Path(done["path"])
    assert path == shop.parent / "segvalue-exports" / "win_back_step1.csv"
    rows = _read_csv(path)
    assert len(rows) == len(expected) == done["rows"] == again["rows"] > 0
    assert {r["customer_id"] for r in rows} == {r["customer_id"] for r in expected}
    assert "email" not in rows[0]  # no contact details unless listed
    assert rows[0]["theme"].startswith("'=HYPERLINK")  # never a live formula
    manifest = json.loads(Path(done["manifest"]).read_text(encoding="utf-8"))
    assert manifest["sha256"] == file_sha256(path) == hashlib.sha256(path.read_bytes()).hexdigest()
    assert manifest["rows"] == len(rows) and manifest["audience"] == "Win back"
    assert manifest["step"] == 1 and manifest["written_by"] == "segvalue"
    assert pq.read_table(parquet["path"]).num_rows == len(_audience(shop))
    records = [json.loads(x) for x in Path(lines["path"]).read_text().splitlines()]
    assert len(records) == len(_audience(shop)) and records[0]["campaign"] == "Win back"


def test_never_over_a_file_segvalue_did_not_write(shop: Path) -> None:
    foreign = shop.parent / "mine.csv"
    foreign.write_text("a,b\n1,2\n", encoding="utf-8")
    lines = shop.parent / "mine.jsonl"
    lines.write_text('{"keep": true}\n', encoding="utf-8")
    with Project.from_yaml(shop) as project:
        with pytest.raises(ConfigError, match="segvalue did not write it"):
            project.export("Win back", "csv", str(foreign))
        with pytest.raises(ConfigError, match="segvalue did not write it"):
            project.export("Win back", "jsonl", str(lines))
        with pytest.raises(ConfigError, match="is source orders"):
            project.export("Win back", "parquet", str(shop.parent / "data" / "orders.parquet"))
    assert foreign.read_text(encoding="utf-8") == "a,b\n1,2\n"
    assert lines.read_text(encoding="utf-8") == '{"keep": true}\n'


def test_unknown_audience_step_and_target(shop: Path) -> None:
    with Project.from_yaml(shop) as project:
        with pytest.raises(ConfigError, match=r"no campaign 'Win bak'.*Win back"):
            project.export("Win bak", "csv")
        with pytest.raises(ConfigError, match="no step 7"):
            project.export("Win back", "csv", step=7)
        with pytest.raises(ConfigError, match="unknown export target 'xls'"):
            project.export("Win back", "xls")
        with pytest.raises(ConfigError, match="table_url"):
            project.export("Win back", "table")


def test_duckdb_and_postgres_tables(shop: Path, pg_schema_url: str) -> None:
    import duckdb
    import psycopg

    for url in (f"duckdb:///{shop.parent / 'exports.duckdb'}", pg_schema_url):
        text = shop.read_text(encoding="utf-8")
        table_config = shop.parent / "tables.yaml"
        table_config.write_text(
            text.replace("  exports:\n", f"  exports:\n    table_url: '{url}'\n"),
            encoding="utf-8",
        )
        with Project.from_yaml(table_config) as project:
            done = project.export("Win back", "table", "win_back")
            done = project.export("Win back", "table", "win_back", step=2)  # replaced
        expected = len(_audience(shop, 2))
        assert done["rows"] == expected
        if url.startswith("duckdb"):
            con = duckdb.connect(url.removeprefix("duckdb://"))
            count = con.execute("SELECT count(*) FROM win_back").fetchone()
            registered = con.execute("SELECT rows FROM segvalue_exports").fetchall()
            con.execute("CREATE TABLE theirs (a INT)")
            con.close()
        else:
            schema = pg_schema_url.rsplit("%3D", 1)[1]
            with psycopg.connect(pg_schema_url.split("?", maxsplit=1)[0]) as con:
                count = con.execute(f"SELECT count(*) FROM {schema}.win_back").fetchone()
                registered = con.execute(f"SELECT rows FROM {schema}.segvalue_exports").fetchall()
                con.execute(f"CREATE TABLE {schema}.theirs (a INT)")
        assert count is not None and count[0] == expected and registered == [(expected,)]
        with (
            Project.from_yaml(table_config) as project,
            pytest.raises(ConfigError, match="segvalue did not write it"),
        ):
            project.export("Win back", "table", "theirs")


def test_ad_platform_lists_hold_only_hashed_keys(tmp_path: Path) -> None:
    path = _shop(tmp_path / "shop", contacts="[email]")
    with Project.from_yaml(path) as project:
        meta = project.export("Win back", "meta", step=1)
        google = project.export("Win back", "google", step=1)
        plain = project.export("Win back", "csv", step=1)
    rows = _read_csv(Path(meta["path"]))
    assert list(rows[0]) == ["email", "phone"]
    assert all(len(r["email"]) == 64 and r["email"] == r["email"].lower() for r in rows)
    # the e-mail of the first customer of the plain export (contact columns listed)
    listed = _read_csv(Path(plain["path"]))
    address = listed[0]["email"].strip().lower()
    assert hashlib.sha256(address.encode()).hexdigest() in {r["email"] for r in rows}
    assert list(_read_csv(Path(google["path"]))[0]) == ["Email", "Phone"]
    assert meta["without_a_usable_key"] == 0 and meta["customers"] == len(listed)
    text = Path(meta["path"]).read_text(encoding="utf-8")
    assert "@" not in text and "C0000" not in text  # no address, no customer id


class _Receiver(http.server.BaseHTTPRequestHandler):
    received: ClassVar[list[dict[str, Any]]] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        _Receiver.received.append({"body": body, "headers": dict(self.headers)})
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture()
def receiver() -> Iterator[str]:
    _Receiver.received = []
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Receiver)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/hook"
    server.shutdown()
    server.server_close()


def test_webhook_export_is_signed_and_complete(
    shop: Path, receiver: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    import base64
    import hmac

    secret = "whsec_" + base64.b64encode(b"k" * 24).decode()
    monkeypatch.setenv("SEGVALUE_WEBHOOK_SECRET", secret)
    with Project.from_yaml(shop) as project:
        done = project.export("Win back", "webhook", receiver, step=1)
        with pytest.raises(ConfigError, match="allow"):
            project.export("Win back", "webhook", "https://elsewhere.example/hook", step=1)
    expected = {r["customer_id"] for r in _audience(shop, 1)}
    got: list[str] = []
    for request in _Receiver.received:
        h = {k.lower(): v for k, v in request["headers"].items()}
        signed = f"{h['webhook-id']}.{h['webhook-timestamp']}.".encode() + request["body"]
        mac = hmac.new(base64.b64decode(secret.removeprefix("whsec_")), signed, hashlib.sha256)
        assert h["webhook-signature"] == "v1," + base64.b64encode(mac.digest()).decode()
        got += [r["customer_id"] for r in json.loads(request["body"])["records"]]
    assert sorted(got) == sorted(expected) and done["delivered_records"] == len(expected)
    monkeypatch.delenv("SEGVALUE_WEBHOOK_SECRET")
    with Project.from_yaml(shop) as project, pytest.raises(ConfigError, match="no webhook secret"):
        project.export("Win back", "webhook", receiver, step=1)


def test_segment_events_export(shop: Path) -> None:
    """Real-time enter / exit events go out as the audiences do."""
    order = {"type": "order", "order_ts": "2025-12-31T10:00:00", "amount": 5000.0}
    with Project.from_yaml(shop) as project:
        project.record_events(
            [{**order, "customer_id": f"C{i:07d}", "order_id": f"E-{i}"} for i in range(1, 40)]
        )
        events = project.segment_events()
        if not events:
            with pytest.raises(DataValidationError, match="empty"):
                project.export("segment-events", "jsonl")
            pytest.fail("39 large orders moved nobody between segments")
        done = project.export("segment-events", "jsonl")
    records = [json.loads(x) for x in Path(done["path"]).read_text().splitlines()]
    assert len(records) == len(events) and {r["source"] for r in records} == {"real_time"}
    assert {r["customer_id"] for r in records} == {e["customer_id"] for e in events}


def test_a_campaign_as_an_experiment_for_the_lift_tools(shop: Path) -> None:
    """experiment:<campaign> exports the treatment and holdout in the experiments
    source's columns; with outcomes joined, segvalue's lift reads it as it is."""
    from segvalue.pipeline import lift_file

    with Project.from_yaml(shop) as project:
        done = project.export("experiment:Win back", "csv", "experiment.csv")
        held = project.runs.require_latest().table("activation_holdouts").to_pylist()
    rows = _read_csv(Path(done["path"]))
    assert list(rows[0]) == ["customer_id", "experiment_id", "group", "segment", "assigned_at"]
    assert len(rows) == len([h for h in held if h["campaign"] == "Win back"])
    controls = {r["customer_id"] for r in rows if r["group"] == "control"}
    assert controls == {h["customer_id"] for h in held if h["group"] == "holdout"}
    assert {r["experiment_id"] for r in rows} == {"Win back"}
    outcomes = Path(done["path"]).with_name("with_outcomes.csv")
    with outcomes.open("w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=[*rows[0], "converted"])
        writer.writeheader()
        for i, r in enumerate(rows):
            writer.writerow({**r, "converted": int(i % 3 == 0)})
    lift = lift_file(outcomes, group_col="group", control="control", outcomes=["converted"])
    assert lift[0]["n_control"] == len(controls)
