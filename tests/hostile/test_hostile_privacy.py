"""Hostile privacy cases: contact details never leave, ids can be pseudonymised.

A customers file carries e-mail, a low-cardinality phone column (3 numbers: once profiled
as a "category"), first names, street addresses, postcodes, a phone column called
``contact`` and a column listed under ``privacy.pii``. After ``segvalue run`` or
``segvalue segment`` none of those values may appear in any file under the output folder
or the run store (CSV read as text, Parquet read back as values), nor on the console.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import pyarrow.csv as pa_csv
import pyarrow.parquet as pq
import pytest

from segvalue.features.privacy import pseudonym

N = 60
IDS = [f"cust-{i:04d}" for i in range(1, N + 1)]
EMAILS = [f"person{i}@mailhost.example" for i in range(1, N + 1)]
PHONES = ["+49 30 1111111", "+49 30 2222222", "+49 30 3333333"]
CONTACTS = ["+44 20 7946 0018", "+44 20 7946 0019"]
FIRST_NAMES = ["Annegret", "Bartholomew", "Cunegonde", "Desmond"]
STREETS = ["12 Quarrystone Lane", "7 Wobblecombe Road", "3 Fennimore Street"]
POSTCODES = ["SW1A 1AA", "EC1A 1BB"]
LOYALTY = ["LOYALTYSECRET-A", "LOYALTYSECRET-B"]
SECRETS = [*EMAILS, *PHONES, *CONTACTS, *FIRST_NAMES, *STREETS, *POSTCODES, *LOYALTY]
KEY = "k" * 40
OTHER_KEY = "o" * 40


def _customers() -> str:
    rows = ["customer_id,email,phone,first_name,street_address,postal_code,contact,loyalty,region"]
    for i, cid in enumerate(IDS):
        rows.append(
            ",".join(
                [
                    cid,
                    EMAILS[i],
                    PHONES[i % 3],
                    FIRST_NAMES[i % 4],
                    STREETS[i % 3],
                    POSTCODES[i % 2],
                    CONTACTS[i % 2],
                    LOYALTY[i % 2],
                    "north" if i < 20 else "south",
                ]
            )
        )
    return "\n".join(rows) + "\n"


def _orders(extra: str = "") -> str:
    rows = ["order_id,customer_id,order_ts,amount"]
    start = dt.date(2024, 1, 3)
    n = 0
    for i, cid in enumerate(IDS):
        for k in range(1 + i % 4):
            n += 1
            day = start + dt.timedelta(days=(i * 7 + k * 41) % 330)
            rows.append(f"o{n},{cid},{day.isoformat()},{10 + (i * 13 + k * 7) % 90}.5")
    return "\n".join(rows) + "\n" + extra


def _config(fmt: str = "csv", privacy: str = "") -> str:
    return (
        "sources:\n"
        "  orders: {path: orders.csv}\n"
        "  customers: {path: customers.csv}\n"
        "clv: {enabled: false}\n"
        f"output: {{dir: out, format: {fmt}}}\n"
        "store: {url: 'duckdb://store/results.duckdb'}\n" + privacy
    )


def _files(fmt: str = "csv", privacy: str = "", orders_extra: str = "") -> dict[str, str | bytes]:
    return {
        "segvalue.yaml": _config(fmt, privacy),
        "customers.csv": _customers(),
        "orders.csv": _orders(orders_extra),
    }


def _contents(root: Path) -> dict[str, str]:
    """Every file under ``root`` as text: Parquet read back as its values."""
    found: dict[str, str] = {}
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        if path.suffix == ".parquet":
            found[str(path)] = repr(pq.read_table(path).to_pylist())
        else:
            found[str(path)] = path.read_bytes().decode("utf-8", errors="replace")
    return found


def _store_contents(root: Path) -> dict[str, str]:
    """Every table and document of every complete run in the store, as text."""
    from segvalue.store import open_store

    found: dict[str, str] = {}
    with open_store(f"duckdb://{root / 'results.duckdb'}") as store:
        for run in store.runs(status="complete"):
            for name in store.table_names(run.run_id):
                found[f"store:{name}"] = repr(store.table(run.run_id, name).to_pylist())
            for name in store.document_names(run.run_id):
                found[f"store:{name}.json"] = repr(store.document(run.run_id, name))
    return found


def _leaks(texts: dict[str, str], values: list[str]) -> list[tuple[str, str]]:
    return [(name, v) for name, text in texts.items() for v in values if v in text]


def _table(path: Path) -> list[dict[str, Any]]:
    if path.suffix == ".parquet":
        return list(pq.read_table(path).to_pylist())
    return list(pa_csv.read_csv(path).to_pylist())


@pytest.mark.parametrize(
    ("argv", "fmt"),
    [
        (["run", "-c", "{ws}/segvalue.yaml"], "csv"),
        (["run", "-c", "{ws}/segvalue.yaml"], "parquet"),
        (["run", "-c", "{ws}/segvalue.yaml", "--json"], "csv"),
        (["segment", "-c", "{ws}/segvalue.yaml"], "csv"),
    ],
    ids=["run-csv", "run-parquet", "run-json", "segment-csv"],
)
def test_contact_details_never_reach_outputs_store_or_console(
    ws: Any, argv: list[str], fmt: str
) -> None:
    ws.write(_files(fmt, privacy="privacy: {pii: [loyalty]}\n"))
    outcome = ws.run(argv, may_write=["out", "store", ".out.lock", ".store.lock"])
    assert outcome.code == 0, outcome.text
    texts = _contents(ws.root / "out") | _store_contents(ws.root / "store")
    assert "store:customer_scores" in texts and "store:personas.json" in texts
    assert any(name.endswith(f"segment_profiles_attributes.{fmt}") for name in texts)
    assert _leaks(texts, SECRETS) == []
    assert _leaks({"console": outcome.text}, SECRETS) == []
    # the attribute that is no contact detail is still profiled
    attributes = _table(ws.root / "out" / f"segment_profiles_attributes.{fmt}")
    profiled = {r["attribute"] for r in attributes if r["kind"] == "attribute"}
    assert profiled == {"region"}


def test_a_phone_column_named_contact_is_caught_by_its_content(ws: Any) -> None:
    customers = ["customer_id,contact,notes"]
    tiers = ["plain", "gold"]
    customers += [f"{c},{CONTACTS[i % 2]},{tiers[i % 2]}" for i, c in enumerate(IDS)]
    ws.write(_files() | {"customers.csv": "\n".join(customers) + "\n"})
    outcome = ws.run(
        ["run", "-c", "{ws}/segvalue.yaml"], may_write=["out", "store", ".out.lock", ".store.lock"]
    )
    assert outcome.code == 0, outcome.text
    texts = _contents(ws.root / "out")
    assert _leaks(texts, CONTACTS) == []
    attributes = _table(ws.root / "out" / "segment_profiles_attributes.csv")
    # control: the low-cardinality column that holds no contact detail is profiled
    assert {r["attribute"] for r in attributes if r["kind"] == "attribute"} == {"notes"}


def test_pseudonymised_outputs_carry_no_raw_id(ws: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    # one order of an unknown customer: its id reaches the rejects, pseudonymised too
    ws.write(
        _files(
            privacy="privacy: {pseudonymise: true}\n",
            orders_extra="o9999,cust-9999,2024-05-05,12.5\n",
        )
    )
    monkeypatch.setenv("SEGVALUE_PSEUDONYM_KEY", KEY)
    outcome = ws.run(
        ["run", "-c", "{ws}/segvalue.yaml"], may_write=["out", "store", ".out.lock", ".store.lock"]
    )
    assert outcome.code == 0, outcome.text
    texts = _contents(ws.root / "out")
    assert _leaks(texts, [*IDS, "cust-9999"]) == []
    features = _table(ws.root / "out" / "customer_features.csv")
    key = KEY.encode()
    assert sorted(r["customer_id"] for r in features) == sorted(pseudonym(c, key) for c in IDS)
    rejects = _table(ws.root / "out" / "rejects.csv")
    assert [r["value"] for r in rejects] == [pseudonym("cust-9999", key)]
    memberships = _table(ws.root / "out" / "segment_memberships.csv")
    assert {r["customer_id"] for r in memberships} == {r["customer_id"] for r in features}


def test_another_key_gives_other_pseudonyms(ws: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    ws.write(_files(privacy="privacy: {pseudonymise: true, key_env: SHOP_KEY}\n"))
    ids = []
    for key in (KEY, OTHER_KEY):
        monkeypatch.setenv("SHOP_KEY", key)
        outcome = ws.run(
            ["run", "-c", "{ws}/segvalue.yaml"],
            may_write=["out", "store", ".out.lock", ".store.lock"],
        )
        assert outcome.code == 0, outcome.text
        rows = _table(ws.root / "out" / "customer_features.csv")
        ids.append(sorted(r["customer_id"] for r in rows))
        # same key, same pseudonym: the ids are the keyed HMAC of the raw ids
        assert ids[-1] == sorted(pseudonym(c, key.encode()) for c in IDS)
    assert not set(ids[0]) & set(ids[1])


@pytest.mark.parametrize(
    ("privacy", "env", "expected"),
    [
        ("privacy: {pseudonymise: true}\n", {}, "SEGVALUE_PSEUDONYM_KEY (privacy.key_env) is not"),
        (
            "privacy: {pseudonymise: true}\n",
            {"SEGVALUE_PSEUDONYM_KEY": "short"},
            "SEGVALUE_PSEUDONYM_KEY (privacy.key_env) holds 5 characters",
        ),
        (
            "privacy: {pseudonymise: true, key_env: SHOP_KEY}\n",
            {"SEGVALUE_PSEUDONYM_KEY": KEY},
            "SHOP_KEY (privacy.key_env) is not set",
        ),
    ],
    ids=["unset", "short", "other-variable"],
)
def test_pseudonymise_without_a_key_is_refused(
    ws: Any, monkeypatch: pytest.MonkeyPatch, privacy: str, env: dict[str, str], expected: str
) -> None:
    monkeypatch.delenv("SEGVALUE_PSEUDONYM_KEY", raising=False)
    monkeypatch.delenv("SHOP_KEY", raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    ws.write(_files(privacy=privacy))
    outcome = ws.run(["run", "-c", "{ws}/segvalue.yaml"], may_write=[])
    assert outcome.code == 2
    assert expected in outcome.text
    assert "secrets.token_hex" in outcome.text  # the fix: how to make a key
    assert not (ws.root / "out").exists()


def test_write_pii_writes_the_contact_columns(ws: Any) -> None:
    # Parquet: CSV cells starting with "+" are neutralised against formula injection
    ws.write(_files("parquet", privacy="privacy: {write_pii: true, pii: [loyalty]}\n"))
    outcome = ws.run(
        ["run", "-c", "{ws}/segvalue.yaml"], may_write=["out", "store", ".out.lock", ".store.lock"]
    )
    assert outcome.code == 0, outcome.text
    rows = _table(ws.root / "out" / "customer_features.parquet")
    features = {r["customer_id"]: r for r in rows}
    first = features["cust-0001"]
    assert first["email"] == EMAILS[0] and first["phone"] == PHONES[0]
    assert first["first_name"] == FIRST_NAMES[0] and first["contact"] == CONTACTS[0]
    assert first["loyalty"] == LOYALTY[0]
    assert "region" not in first  # only contact columns are added
    # still never profiled nor in personas
    texts = _contents(ws.root / "out")
    profiles = {k: v for k, v in texts.items() if "customer_features" not in k}
    assert _leaks(profiles, SECRETS) == []


def test_not_pii_lets_postal_codes_be_profiled(ws: Any) -> None:
    ws.write(_files(privacy="privacy: {not_pii: [postal_code]}\n"))
    outcome = ws.run(
        ["run", "-c", "{ws}/segvalue.yaml"], may_write=["out", "store", ".out.lock", ".store.lock"]
    )
    assert outcome.code == 0, outcome.text
    attributes = _table(ws.root / "out" / "segment_profiles_attributes.csv")
    assert {r["value"] for r in attributes if r["attribute"] == "postal_code"} == set(POSTCODES)
    texts = _contents(ws.root / "out")
    assert _leaks(texts, [*EMAILS, *PHONES, *FIRST_NAMES, *STREETS]) == []


@pytest.mark.parametrize(
    ("privacy", "expected"),
    [
        ("privacy: {key_env: 1-bad}\n", "privacy.key_env"),
        ("privacy: {pii: [region], not_pii: [region]}\n", "both pii and not_pii"),
        ("privacy: {pseudonymize: true}\n", "privacy"),
    ],
    ids=["bad-variable-name", "pii-and-not-pii", "unknown-key"],
)
def test_invalid_privacy_settings_are_refused(ws: Any, privacy: str, expected: str) -> None:
    ws.write(_files(privacy=privacy))
    outcome = ws.run(["run", "-c", "{ws}/segvalue.yaml"], may_write=[])
    assert outcome.code == 2
    assert expected in outcome.text and "segvalue.yaml" in outcome.text


def test_a_contact_column_is_never_a_cluster_feature(ws: Any) -> None:
    scheme = (
        "segments:\n"
        "  schemes:\n"
        "    - {name: groups, type: cluster, features: [frequency, contact], k: 2}\n"
    )
    ws.write(_files(privacy=scheme))
    outcome = ws.run(
        ["run", "-c", "{ws}/segvalue.yaml"], may_write=["out", "store", ".out.lock", ".store.lock"]
    )
    assert outcome.code == 2, outcome.text
    assert "segments.schemes[0].features: 'contact' holds contact details" in outcome.text
    assert "privacy.not_pii" in outcome.text
    assert not (ws.root / "out" / "segment_memberships.csv").exists()
