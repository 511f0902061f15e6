"""Contact details and pseudonymous ids: the one place that decides what is personal data.

A *contact column* holds details that identify or reach a person: e-mail, phone, a person's
name, a street address, a postal code (a full postcode narrows a customer down to a few
households), or any column the configuration lists under ``privacy.pii``. Contact columns
are found

- by name: the normalised column name (lower case, ``camelCase`` and punctuation turned into
  ``_``) is one of :data:`CONTACT_NAMES` or ends with one of :data:`CONTACT_SUFFIXES`;
- by content: a text column of which at least :data:`CONTENT_MIN_SHARE` of a sample of
  :data:`CONTENT_SAMPLE` values look like e-mail addresses or phone numbers (so a phone
  column called ``contact`` is caught too). The sample is read from the engine in one query.

Boolean columns (``consent_email``) are flags, never contact details; the behaviour columns
of the feature table (``share_*``, ``touches_*``, ``engaged_*``) neither. A column listed
under ``privacy.not_pii`` is never a contact column (e.g. ``postal_code`` used as a
geography on purpose).

Contact columns are never profiled, never named in personas, never used by models and never
written to outputs unless ``privacy.write_pii`` says so. With ``privacy.pseudonymise``,
outputs carry :func:`pseudonym` (keyed HMAC-SHA256, the key from an environment variable)
instead of the customer id.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re
from collections.abc import Mapping, Sequence
from typing import Any

import ibis.expr.types as ir
import pyarrow as pa
import pyarrow.compute as pc

from segvalue.errors import ConfigError

__all__ = [
    "CONTACT_NAMES",
    "CONTACT_SUFFIXES",
    "CONTENT_MIN_SHARE",
    "CONTENT_SAMPLE",
    "MIN_KEY_LENGTH",
    "PSEUDONYM_LENGTH",
    "contact_columns",
    "contact_kind",
    "looks_like_email",
    "looks_like_phone",
    "pseudonym",
    "pseudonym_key",
    "pseudonymise_document",
    "pseudonymise_tables",
    "pseudonymise_text",
]

#: Normalised column name -> what it holds. Only text columns count, except the names
#: marked in :data:`_NUMERIC_OK` (a phone number or postcode may arrive as a number).
CONTACT_NAMES: Mapping[str, str] = {
    **dict.fromkeys(
        (
            "email",
            "e_mail",
            "mail",
            "emailaddress",
            "email_address",
            "e_mail_address",
            "mail_address",
        ),
        "e-mail",
    ),
    **dict.fromkeys(
        (
            "phone",
            "phone1",
            "phone2",
            "phone_1",
            "phone_2",
            "telephone",
            "tel",
            "mobile",
            "cell",
            "cellphone",
            "cell_phone",
            "mobile_phone",
            "fax",
            "msisdn",
            "phone_number",
            "phonenumber",
            "telephone_number",
            "mobile_number",
            "phone_no",
            "tel_no",
            "mobile_no",
        ),
        "phone",
    ),
    **dict.fromkeys(
        (
            "name",
            "first_name",
            "firstname",
            "given_name",
            "forename",
            "middle_name",
            "last_name",
            "lastname",
            "surname",
            "family_name",
            "maiden_name",
            "full_name",
            "fullname",
            "customer_name",
            "contact_name",
            "display_name",
            "nickname",
        ),
        "name",
    ),
    **dict.fromkeys(
        (
            "address",
            "addr",
            "street",
            "street_address",
            "street_name",
            "street_number",
            "house_number",
            "house_no",
            "address1",
            "address2",
            "address3",
            "address_1",
            "address_2",
            "address_3",
            "postal_address",
            "mailing_address",
            "billing_address",
            "shipping_address",
            "delivery_address",
            "home_address",
        ),
        "street address",
    ),
    **dict.fromkeys(
        ("postal_code", "postalcode", "postcode", "post_code", "zip", "zip_code", "zipcode"),
        "postal code",
    ),
}
#: Name endings that mark a text column as a contact column (``billing_email``,
#: ``home_phone``, ``contact_first_name``, ``address_line_1`` is a prefix, see below).
CONTACT_SUFFIXES: Mapping[str, str] = {
    "_email": "e-mail",
    "_e_mail": "e-mail",
    "_email_address": "e-mail",
    "_phone": "phone",
    "_telephone": "phone",
    "_phone_number": "phone",
    "_mobile_number": "phone",
    "_first_name": "name",
    "_last_name": "name",
    "_full_name": "name",
    "_surname": "name",
    "_address": "street address",
    "_street": "street address",
    "_postal_code": "postal code",
    "_postcode": "postal code",
    "_zip_code": "postal code",
}
_PREFIXES: Mapping[str, str] = {"address_line": "street address"}
_NUMERIC_OK = {"phone", "postal code"}
#: Feature columns that measure behaviour per channel or category (``engaged_email``).
_BEHAVIOUR_PREFIXES = ("share_", "touches_", "engaged_", "_")

#: Rows read from the engine to check the content of text columns.
CONTENT_SAMPLE = 1000
#: A text column is a contact column when at least this share of its sampled, non-blank
#: values looks like an e-mail address or a phone number.
CONTENT_MIN_SHARE = 0.5
#: Fewest characters of a pseudonym key (the value of the ``privacy.key_env`` variable).
MIN_KEY_LENGTH = 32
#: Hex characters kept of the HMAC-SHA256 digest: 32 (128 bits), collision-free in practice.
PSEUDONYM_LENGTH = 32

_EMAIL = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s.]{2,}")
_PHONE = re.compile(r"\+?[0-9 ()./\-]{7,24}")
# Text that a phone pattern would accept but that is a date, a time or a decimal number.
_NOT_PHONE = re.compile(
    r"\d{4}[-/.]\d{1,2}[-/.]\d{1,2}.*|\d{1,2}[-/.]\d{1,2}[-/.]\d{2,4}|\d+\.\d+|[\d:. ]+:\d\d.*"
)


def _normalise(name: str) -> str:
    snake = re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", str(name))
    return re.sub(r"[^0-9a-z]+", "_", snake.lower()).strip("_")


def contact_kind(name: str, *, text: bool = True) -> str | None:
    """What a column holds judging by its name: ``"e-mail"``, ``"phone"``, ..., or None.

    Parameters
    ----------
    name
        The column name as the source spells it.
    text
        Whether the column holds text. Numbers are contact details only under a phone or
        postal-code name (``phone``, ``zip``); booleans never are (pass neither then).

    Examples
    --------
    >>> contact_kind("E-Mail"), contact_kind("homePhone"), contact_kind("address_line_2")
    ('e-mail', 'phone', 'street address')
    >>> contact_kind("city"), contact_kind("engaged_email"), contact_kind("zip", text=False)
    (None, None, 'postal code')
    """
    key = _normalise(name)
    if str(name).startswith(_BEHAVIOUR_PREFIXES) or not key:
        return None
    kind = CONTACT_NAMES.get(key)
    if kind is None:
        kind = next((k for s, k in CONTACT_SUFFIXES.items() if key.endswith(s)), None)
        if kind is not None and not text:
            return None
    if kind is None:
        kind = next((k for p, k in _PREFIXES.items() if key.startswith(p)), None)
    if kind is not None and not text and kind not in _NUMERIC_OK:
        return None
    return kind


def looks_like_email(value: str) -> bool:
    """Whether a text value looks like an e-mail address.

    Examples
    --------
    >>> looks_like_email("ann@example.com"), looks_like_email("@home")
    (True, False)
    """
    return _EMAIL.fullmatch(value.strip()) is not None


def looks_like_phone(value: str) -> bool:
    """Whether a text value looks like a phone number (7 to 15 digits, phone punctuation).

    Dates, times and decimal numbers do not.

    Examples
    --------
    >>> looks_like_phone("+49 30 1234567"), looks_like_phone("(030) 123-4567")
    (True, True)
    >>> looks_like_phone("2024-01-02"), looks_like_phone("12.5"), looks_like_phone("DE")
    (False, False, False)
    """
    text = value.strip()
    if _PHONE.fullmatch(text) is None or _NOT_PHONE.fullmatch(text) is not None:
        return False
    return 7 <= sum(ch.isdigit() for ch in text) <= 15


def _content_kinds(table: ir.Table, names: Sequence[str], sample: int) -> dict[str, str]:
    """Text columns whose sampled values mostly look like e-mail addresses or phones."""
    if not names:
        return {}
    rows = table.select(*names).limit(sample).to_pyarrow()
    found: dict[str, str] = {}
    for name in names:
        values = [v.strip() for v in rows.column(name).to_pylist() if v is not None]
        values = [v for v in values if v]
        if not values:
            continue
        emails = sum(looks_like_email(v) for v in values)
        phones = sum(looks_like_phone(v) for v in values)
        if max(emails, phones) >= CONTENT_MIN_SHARE * len(values):
            found[name] = "e-mail" if emails >= phones else "phone"
    return found


def contact_columns(
    table: ir.Table,
    *,
    listed: Sequence[str] = (),
    not_contact: Sequence[str] = (),
    sample: int = CONTENT_SAMPLE,
) -> dict[str, str]:
    """The contact columns of a table, each with what it holds and how it was found.

    Parameters
    ----------
    table
        A customers or customer feature table (Ibis).
    listed
        Columns that hold personal data whatever their name and content
        (``privacy.pii``); a listed name the table lacks is ignored.
    not_contact
        Columns that are never contact columns (``privacy.not_pii``).
    sample
        Rows read to check the content of text columns.

    Returns
    -------
    dict of str to str
        Column -> a description such as ``"phone (by content)"``, in table order.

    Examples
    --------
    >>> import ibis
    >>> t = ibis.memtable({"customer_id": ["a", "b"], "email": ["a@x.org", "b@x.org"],
    ...                    "contact": ["+44 20 7946 0018", "+44 20 7946 0019"],
    ...                    "city": ["Leeds", "York"], "loyalty": ["L1", "L2"]})
    >>> for column, why in contact_columns(t, listed=["loyalty"]).items():
    ...     print(column, "->", why)
    email -> e-mail (by name)
    contact -> phone (by content)
    loyalty -> listed under privacy.pii
    """
    schema = table.schema()
    skip = {"customer_id", *not_contact}
    found: dict[str, str] = {}
    unnamed_text: list[str] = []
    for name, dtype in schema.items():
        if name in skip or dtype.is_boolean():
            continue
        if name in listed:
            found[name] = "listed under privacy.pii"
            continue
        text = dtype.is_string()
        if not (text or dtype.is_integer()):
            continue
        kind = contact_kind(name, text=text)
        if kind is not None:
            found[name] = f"{kind} (by name)"
        elif text and not name.startswith(_BEHAVIOUR_PREFIXES):
            unnamed_text.append(name)
    for name, kind in _content_kinds(table, unnamed_text, sample).items():
        found[name] = f"{kind} (by content)"
    return {name: found[name] for name in schema if name in found}


def pseudonym_key(env: str, environ: Mapping[str, str] | None = None) -> bytes:
    """The pseudonym key from the environment variable ``env`` (``privacy.key_env``).

    Raises
    ------
    ConfigError
        If the variable is unset or shorter than :data:`MIN_KEY_LENGTH` characters: there
        is no default key, since a known key makes every pseudonym reversible by lookup.

    Examples
    --------
    >>> len(pseudonym_key("K", {"K": "k" * 32}))
    32
    >>> pseudonym_key("K", {})  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    segvalue.errors.ConfigError: privacy.pseudonymise is true but the environment variable K ...
    """
    value = (os.environ if environ is None else environ).get(env)
    fix = (
        f"set the environment variable {env} to a secret of at least {MIN_KEY_LENGTH} "
        "characters (e.g. the output of "
        "`python -c 'import secrets; print(secrets.token_hex(32))'`), "
        "and keep it: the same key gives the same pseudonyms; or set privacy.pseudonymise: false"
    )
    if not value:
        raise ConfigError(
            f"privacy.pseudonymise is true but the environment variable {env} "
            "(privacy.key_env) is not set",
            fix=fix,
        )
    if len(value) < MIN_KEY_LENGTH:
        raise ConfigError(
            f"privacy.pseudonymise is true but the environment variable {env} "
            f"(privacy.key_env) holds {len(value)} characters, fewer than {MIN_KEY_LENGTH}",
            fix=fix,
        )
    return value.encode("utf-8")


def pseudonym(customer_id: object, key: bytes) -> str:
    """The pseudonym of a customer id: HMAC-SHA256 under ``key``, first 32 hex characters.

    Examples
    --------
    >>> key = b"k" * 32
    >>> pseudonym("C1", key) == pseudonym("C1", key), pseudonym("C1", key) != pseudonym("C2", key)
    (True, True)
    >>> len(pseudonym("C1", key)), pseudonym("C1", key) != pseudonym("C1", b"o" * 32)
    (32, True)
    """
    digest = hmac.new(key, str(customer_id).encode("utf-8"), hashlib.sha256).hexdigest()
    return digest[:PSEUDONYM_LENGTH]


def _pseudonymise_column(column: pa.ChunkedArray, key: bytes) -> pa.ChunkedArray | pa.Array:
    """Each distinct id hashed once, then mapped back (nulls stay null)."""
    text = column.cast(pa.string()) if not pa.types.is_string(column.type) else column
    unique = pc.unique(text)
    hashed = pa.array(
        [None if v is None else pseudonym(v, key) for v in unique.to_pylist()], pa.string()
    )
    return pc.take(hashed, pc.index_in(text, value_set=unique))


# A customer id quoted in a message: "customer 'C1'", "customer_id 'C1'", "customer id: "C1"".
_QUOTED_CUSTOMER = re.compile(r"""(customer(?:[ _]?id)?:? )(['"])(.*?)(\2)""", re.IGNORECASE)


def pseudonymise_text(text: str, key: bytes) -> str:
    """Customer ids quoted in a message (``customer_id 'C1'``) replaced by their pseudonyms.

    Examples
    --------
    >>> key = b"k" * 32
    >>> pseudonymise_text("customer_id 'C1' is unknown", key) == (
    ...     f"customer_id '{pseudonym('C1', key)}' is unknown")
    True
    """
    return _QUOTED_CUSTOMER.sub(
        lambda m: m.group(1) + m.group(2) + pseudonym(m.group(3), key) + m.group(4), text
    )


def pseudonymise_document(document: Any, key: bytes) -> Any:
    """A JSON-like document with :func:`pseudonymise_text` applied to every string.

    Examples
    --------
    >>> key = b"k" * 32
    >>> doc = pseudonymise_document({"examples": ["line 2: customer 'C1' ..."], "n": 1}, key)
    >>> "C1" in str(doc), doc["n"]
    (False, 1)
    """
    if isinstance(document, str):
        return pseudonymise_text(document, key)
    if isinstance(document, Mapping):
        return {k: pseudonymise_document(v, key) for k, v in document.items()}
    if isinstance(document, list | tuple):
        return [pseudonymise_document(v, key) for v in document]
    return document


def _pseudonymise_rejects(table: pa.Table, key: bytes) -> pa.Table:
    """Rejected customer ids in ``value`` and ``reason`` of a rejects table."""
    columns = table.column("column").to_pylist()
    values = table.column("value").to_pylist()
    reasons = table.column("reason").to_pylist()
    for i, (column, value, reason) in enumerate(zip(columns, values, reasons, strict=True)):
        if column == "customer_id" and value is not None:
            values[i] = pseudonym(value, key)
            if reason is not None:
                reasons[i] = reason.replace(value, values[i])
        if reasons[i] is not None:
            reasons[i] = pseudonymise_text(reasons[i], key)
    table = table.set_column(
        table.schema.get_field_index("value"), "value", pa.array(values, pa.string())
    )
    return table.set_column(
        table.schema.get_field_index("reason"), "reason", pa.array(reasons, pa.string())
    )


def pseudonymise_tables(tables: Mapping[str, pa.Table], key: bytes) -> dict[str, pa.Table]:
    """Every ``customer_id`` column replaced by its :func:`pseudonym`.

    A rejects table (columns ``column``, ``value``, ``reason``) has the rejected customer
    ids in its ``value`` and ``reason`` replaced too.

    Examples
    --------
    >>> import pyarrow as pa
    >>> key = b"k" * 32
    >>> out = pseudonymise_tables({"m": pa.table({"customer_id": ["a", "a"], "x": [1, 2]})}, key)
    >>> ids = out["m"].column("customer_id").to_pylist()
    >>> ids[0] == ids[1] == pseudonym("a", key), out["m"].column("x").to_pylist()
    (True, [1, 2])
    """
    out: dict[str, pa.Table] = {}
    for name, table in tables.items():
        safe = table
        if "customer_id" in safe.column_names:
            index = safe.schema.get_field_index("customer_id")
            hashed = _pseudonymise_column(safe.column("customer_id"), key)
            safe = safe.set_column(index, pa.field("customer_id", pa.string()), hashed)
        if {"column", "value", "reason"} <= set(safe.column_names):
            safe = _pseudonymise_rejects(safe, key)
        out[name] = safe
    return out
