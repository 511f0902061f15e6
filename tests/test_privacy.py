"""Contact columns: found by name and content, never profiled; pseudonyms are keyed."""

from __future__ import annotations

from pathlib import Path

import ibis
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from segvalue.config import PrivacyConfig, load_config
from segvalue.errors import ConfigError, DataValidationError
from segvalue.features.privacy import (
    contact_columns,
    contact_kind,
    looks_like_phone,
    pseudonym,
    pseudonym_key,
    pseudonymise_tables,
)
from segvalue.pipeline import run, run_demo
from segvalue.segments.profiles import segment_profiles


@pytest.mark.parametrize(
    ("name", "text", "kind"),
    [
        ("email", True, "e-mail"),
        ("EmailAddress", True, "e-mail"),
        ("billing_email", True, "e-mail"),
        ("Mobile-Phone", True, "phone"),
        ("phone", False, "phone"),  # a phone number read as a number
        ("home_phone", True, "phone"),
        ("firstName", True, "name"),
        ("surname", True, "name"),
        ("address_line_2", True, "street address"),
        ("shipping_address", True, "street address"),
        ("postal_code", True, "postal code"),
        ("zip", False, "postal code"),
        ("country", True, None),
        ("region", True, None),
        ("city", True, None),
        ("engaged_email", False, None),  # a behaviour count per channel
        ("touches_phone", False, None),
        ("email", False, None),  # a number is no e-mail address
        ("home_phone", False, None),
    ],
)
def test_contact_kind_by_name(name: str, text: bool, kind: str | None) -> None:
    assert contact_kind(name, text=text) == kind


@pytest.mark.parametrize(
    ("value", "phone"),
    [
        ("+49 30 1234567", True),
        ("0151-2345678", True),
        ("(212) 555-0100", True),
        ("2024-01-02", False),
        ("02.01.2024", False),
        ("12:30:00", False),
        ("1234.5", False),
        ("123", False),
        ("north", False),
    ],
)
def test_phone_numbers_by_content(value: str, phone: bool) -> None:
    assert looks_like_phone(value) is phone


def test_contact_columns_by_name_content_and_configuration() -> None:
    n = 20
    table = ibis.memtable(
        {
            "customer_id": [f"c{i}" for i in range(n)],
            "consent_email": [True] * n,  # a flag, not an address
            "email": [f"p{i}@example.org" for i in range(n)],
            "contact": ["+44 20 7946 0018", "+44 20 7946 0019"] * (n // 2),
            "reach": [f"x{i}@example.org" if i % 4 else "unknown" for i in range(n)],
            "signup_text": ["2024-01-02"] * n,  # dates are no phones
            "postal_code": ["10115"] * n,
            "tier": ["gold", "silver"] * (n // 2),
            "income": [1.0] * n,
        }
    )
    assert contact_columns(table, listed=["tier"]) == {
        "email": "e-mail (by name)",
        "contact": "phone (by content)",
        "reach": "e-mail (by content)",
        "postal_code": "postal code (by name)",
        "tier": "listed under privacy.pii",
    }
    assert "postal_code" not in contact_columns(table, not_contact=["postal_code"])


def test_profiles_never_profile_a_low_cardinality_phone_column() -> None:
    ids = [f"c{i}" for i in range(40)]
    features = ibis.memtable(
        {
            "customer_id": ids,
            "income": [float(i) for i in range(40)],
            "contact": ["+49 30 1111111", "+49 30 2222222"] * 20,
            "region": ["north", "south"] * 20,
            "phone": [4930111111 + i % 2 for i in range(40)],  # read as numbers
        }
    )
    members = pa.table({"customer_id": ids, "segment": ["A"] * 20 + ["B"] * 20})
    profiles = segment_profiles(members, features)
    assert set(profiles.attributes.column("attribute").to_pylist()) == {"region"}
    assert set(profiles.numeric.column("feature").to_pylist()) == {"income"}
    with pytest.raises(DataValidationError, match="'contact' holds contact details"):
        segment_profiles(members, features, categorical=["contact"])
    # the configured set replaces detection: here region is declared personal data
    listed = segment_profiles(members, features, pii=["region", "contact", "phone"])
    assert listed.attributes.num_rows == 0


def test_pseudonyms_are_keyed_and_replace_every_customer_id() -> None:
    key, other = pseudonym_key("K", {"K": "a" * 32}), pseudonym_key("K", {"K": "b" * 32})
    assert pseudonym("C1", key) == pseudonym("C1", key) != pseudonym("C1", other)
    assert len(pseudonym("C1", key)) == 32
    tables = {
        "features": pa.table({"customer_id": ["C1", "C2", None], "x": [1, 2, 3]}),
        "rejects": pa.table(
            {
                "column": ["customer_id", "amount"],
                "value": ["C9", "abc"],
                "reason": ["customer_id 'C9' is not in the customers table", "not a number"],
            }
        ),
        "sizes": pa.table({"segment": ["A"]}),
    }
    out = pseudonymise_tables(tables, key)
    assert out["features"].column("customer_id").to_pylist() == [
        pseudonym("C1", key),
        pseudonym("C2", key),
        None,
    ]
    assert out["rejects"].column("value").to_pylist() == [pseudonym("C9", key), "abc"]
    assert "C9" not in str(out["rejects"].to_pylist())
    assert out["sizes"].equals(tables["sizes"])


def test_a_missing_or_short_key_names_the_variable_and_the_fix() -> None:
    with pytest.raises(ConfigError, match=r"MY_KEY .* is not set") as missing:
        pseudonym_key("MY_KEY", {})
    assert missing.value.fix is not None and "MY_KEY" in missing.value.fix
    with pytest.raises(ConfigError, match="holds 8 characters, fewer than 32"):
        pseudonym_key("MY_KEY", {"MY_KEY": "12345678"})


def test_a_whole_run_keeps_contact_columns_out_of_models_profiles_and_outputs(
    tmp_path: Path,
) -> None:
    """The demo shop (CLV with a holdout, so the propensity model runs) with a phone
    column of three numbers, e-mail addresses and a listed loyalty number."""
    _, config_path = run_demo(n_customers=600, seed=5, out_dir=tmp_path / "shop")
    config = load_config(config_path)
    path = config.source_path("customers")
    customers = pq.read_table(path)
    n = customers.num_rows
    phones = ["+49 30 1111111", "+49 30 2222222", "+49 30 3333333"]
    extra = {
        "phone": [phones[i % 3] for i in range(n)],
        "email": [f"p{i}@shop.example" for i in range(n)],
        "loyalty": [f"LOYAL-{i % 2}" for i in range(n)],
    }
    for name, values in extra.items():
        customers = customers.append_column(name, pa.array(values))
    pq.write_table(customers, path)
    privacy = PrivacyConfig(pii=["loyalty"])
    result = run(config.model_copy(update={"privacy": privacy}))
    assert result.valuation is not None and result.valuation.propensity is not None
    used = set(result.valuation.propensity["features"])
    assert used.isdisjoint({"phone", "email", "loyalty", "postal_code"})
    assert "region" in used or "city" in used  # other attributes are still model inputs
    written = [p for p in config.output_dir.rglob("*") if p.is_file()]
    text = "".join(
        repr(pq.read_table(p).to_pylist()) if p.suffix == ".parquet" else p.read_text()
        for p in written
    )
    for value in [*phones, "p0@shop.example", "LOYAL-0"]:
        assert value not in text
    assert result.segmentation is not None and result.segmentation.profiles is not None
    profiled = set(result.segmentation.profiles.attributes.column("attribute").to_pylist())
    assert "region" in profiled and profiled.isdisjoint({"phone", "email", "loyalty"})
