"""Exports of a stored activation's audiences (and of segment enter / exit events) to
files, a database table, a webhook, or an ad platform's hashed customer list
(docs/activation.md#exports).

What an export holds: the audience rows of ``activation_audiences`` (no contact details),
plus the customers' columns listed in ``activation.exports.contact_columns`` and nothing
else personal; an ad-platform list holds only the hashed match keys. Every file export
has its manifest beside it (rows, columns, SHA-256, time); a table export is registered
in its database; a webhook export reports its deliveries and dead letters.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from segvalue.config import Config
from segvalue.errors import ConfigError, DataValidationError, did_you_mean

if TYPE_CHECKING:
    from segvalue.data.validation import ValidatedData

__all__ = ["EXPORT_TARGETS", "audience_rows", "export_rows"]

#: Where an export can go.
EXPORT_TARGETS = ("csv", "parquet", "jsonl", "table", "webhook", "meta", "google", "tiktok")
_AD_PLATFORMS = ("meta", "google", "tiktok")
#: The column headers of each platform's hashed customer list.
_LIST_HEADERS = {
    "meta": ("email", "phone"),
    "google": ("Email", "Phone"),
    "tiktok": ("email", "phone"),
}


def slug(text: str) -> str:
    """A file and table name from free text.

    Examples
    --------
    >>> slug("Loyalist early access!")
    'loyalist_early_access'
    """
    return re.sub(r"[^a-z0-9]+", "_", text.lower()).strip("_") or "audience"


def audience_rows(audiences: pa.Table, campaign: str, step: int | None) -> pa.Table:
    """The rows of one campaign's audience (one step, or all).

    Examples
    --------
    >>> t = pa.table({"campaign": ["a", "a", "b"], "step": [1, 2, 1], "customer_id": ["x"] * 3})
    >>> audience_rows(t, "a", 2).num_rows
    1
    """
    import pyarrow.compute as pc

    names = sorted(set(audiences.column("campaign").to_pylist()))
    if campaign not in names:
        raise ConfigError(
            f"no campaign {campaign!r} in the activation{did_you_mean(campaign, names)}",
            fix=f"name one of its campaigns: {', '.join(names) or 'none (run segvalue activate)'}",
            parameter="audience",
        )
    rows = audiences.filter(pc.equal(audiences.column("campaign"), campaign))
    if step is not None:
        steps = sorted(set(rows.column("step").to_pylist()))
        if step not in steps:
            raise ConfigError(
                f"campaign {campaign!r} has no step {step} with an audience",
                fix=f"use one of its steps: {', '.join(map(str, steps))}",
                parameter="step",
            )
        rows = rows.filter(pc.equal(rows.column("step"), step))
    return rows


def _contacts(config: Config, data: ValidatedData | None, ids: list[str]) -> pa.Table:
    """The listed contact columns (and country) of the customers, aligned to ``ids``."""
    from segvalue.features.materialise import to_arrow
    from segvalue.pipeline.ingest import load

    wanted = list(config.activation.exports.contact_columns)
    if data is None:
        data = load(config)
    customers = data.tables.get("customers")
    if customers is None:
        raise ConfigError(
            "exports.contact_columns needs a customers source",
            fix="add a customers source with the contact columns",
            parameter="activation.exports.contact_columns",
        )
    missing = [c for c in wanted if c not in customers.columns]
    if missing:
        raise ConfigError(
            f"activation.exports.contact_columns names {missing[0]!r}, not a column of the "
            f"customers source{did_you_mean(missing[0], list(customers.columns))}",
            fix="list columns of the customers source",
            parameter="activation.exports.contact_columns",
        )
    extra = ["country"] if "country" in customers.columns and "country" not in wanted else []
    found = to_arrow(customers.select("customer_id", *wanted, *extra))
    index = {str(c): i for i, c in enumerate(found.column("customer_id").to_pylist())}
    take = pa.array([index.get(c) for c in ids], pa.int64())
    return pa.table({c: found.column(c).take(take) for c in (*wanted, *extra)})


def _role(columns: list[str], words: tuple[str, ...]) -> str | None:
    return next((c for c in columns if any(w in c.lower() for w in words)), None)


def export_rows(
    config: Config,
    rows: pa.Table,
    *,
    to: str,
    target: str | None,
    name: str,
    about: dict[str, Any],
    data: ValidatedData | None = None,
) -> dict[str, Any]:
    """Export audience rows (see the module) ``to`` a destination.

    Parameters
    ----------
    rows
        The rows (:func:`audience_rows`, or segment events).
    to
        One of :data:`EXPORT_TARGETS`.
    target
        A file path (csv, parquet, jsonl, meta, google, tiktok; default
        ``activation.exports.dir/<name>.<ext>``), a table name (table; default ``name``),
        or a URL (webhook, required).
    name
        What the export is called (file and table names derive from it).
    about
        What the manifest says the export is (run, campaign, step).

    Returns
    -------
    dict
        The manifest (file and table exports) or the delivery report (webhook).
    """
    from segvalue.data.exports import export_file, export_table
    from segvalue.pipeline.persist import protected_store

    if to not in EXPORT_TARGETS:
        raise ConfigError(
            f"unknown export target {to!r}{did_you_mean(to, list(EXPORT_TARGETS))}",
            fix=f"use one of {', '.join(EXPORT_TARGETS)}",
            parameter="to",
        )
    settings = config.activation.exports
    ids = [str(c) for c in rows.column("customer_id").to_pylist()]
    contacts = (
        _contacts(config, data, ids)
        if settings.contact_columns or to in _AD_PLATFORMS
        else pa.table({})
    )
    about = {**about, "target": to, "contact_columns": list(settings.contact_columns)}
    if to in _AD_PLATFORMS:
        rows, about = _match_list(to, rows, contacts, list(settings.contact_columns), about)
    else:
        for column in settings.contact_columns:
            rows = rows.append_column(column, contacts.column(column))
    if to == "webhook":
        return _webhook(config, rows, target, name, about)
    if to == "table":
        if settings.table_url is None:
            raise ConfigError(
                "a table export needs the database: activation.exports.table_url",
                fix="set activation.exports.table_url (duckdb:///exports.duckdb, postgresql://...)",
                parameter="activation.exports.table_url",
            )
        url = settings.table_url
        if url.startswith("duckdb://") and not url.startswith("duckdb:///"):
            url = "duckdb://" + str(config.base_dir / url.removeprefix("duckdb://"))
        return export_table(rows, url, target or slug(name), about=about)
    stem = f"{slug(name)}_{to}" if to in _AD_PLATFORMS else slug(name)
    extension = "csv" if to in _AD_PLATFORMS else to
    path = Path(target) if target else Path(settings.dir) / f"{stem}.{extension}"
    if not path.is_absolute():
        path = config.base_dir / path
    from segvalue.pipeline.ingest import protected_inputs

    protected = {**protected_inputs(config), **protected_store(config)}
    return export_file(rows, path, about=about, protected=protected)


def _match_list(
    destination: str,
    rows: pa.Table,
    contacts: pa.Table,
    listed: list[str],
    about: dict[str, Any],
) -> tuple[pa.Table, dict[str, Any]]:
    """The platform's customer list: one row per customer with a usable key, hashed."""
    from segvalue.activation.matchkeys import match_key_columns

    email = _role(listed, ("mail",))
    phone = _role(listed, ("phone", "mobile", "tel"))
    if email is None and phone is None:
        raise ConfigError(
            f"a {destination} list needs an e-mail or phone column among "
            "activation.exports.contact_columns",
            fix="list the customers' e-mail and / or phone column there, e.g. [email, phone]",
            parameter="activation.exports.contact_columns",
        )
    keys = match_key_columns(
        destination,
        emails=contacts.column(email) if email else None,
        phones=contacts.column(phone) if phone else None,
        countries=contacts.column("country") if "country" in contacts.column_names else None,
    )
    seen: set[tuple[Any, Any]] = set()
    kept_email: list[str | None] = []
    kept_phone: list[str | None] = []
    for e, p in zip(keys["email_sha256"], keys["phone_sha256"], strict=True):
        if (e is None and p is None) or (e, p) in seen:
            continue
        seen.add((e, p))
        kept_email.append(e)
        kept_phone.append(p)
    head_email, head_phone = _LIST_HEADERS[destination]
    table = pa.table({head_email: kept_email, head_phone: kept_phone})
    problems = sum(x is not None for x in (*keys["email_problem"], *keys["phone_problem"]))
    about = {
        **about,
        "customers": rows.num_rows,
        "without_a_usable_key": rows.num_rows - len(seen) if rows.num_rows else 0,
        "values_not_valid": problems,
        "hashing": "SHA-256, lower-case hex, after the destination's normalisation "
        "(docs/activation-matchkeys.md)",
    }
    return table, about


def _webhook(
    config: Config, rows: pa.Table, target: str | None, name: str, about: dict[str, Any]
) -> dict[str, Any]:
    from segvalue.data.webhooks import deliver
    from segvalue.data.writers import json_safe
    from segvalue.pipeline.ingest import protected_inputs
    from segvalue.pipeline.persist import protected_store

    settings = config.activation.exports
    if not target:
        raise ConfigError(
            "a webhook export needs the URL to POST to",
            fix="give the URL (it must be in activation.exports.webhook_allowlist)",
            parameter="target",
        )
    secret = os.environ.get(settings.webhook_secret_env)
    if not secret:
        raise ConfigError(
            f"the environment variable {settings.webhook_secret_env} holds no webhook secret",
            fix=f"export {settings.webhook_secret_env}=whsec_... (the receiver's signing secret)",
            parameter="activation.exports.webhook_secret_env",
        )
    folder = Path(settings.dir)
    if not folder.is_absolute():
        folder = config.base_dir / folder
    folder.mkdir(parents=True, exist_ok=True)
    report = deliver(
        json_safe(rows.to_pylist()),
        url=target,
        secret=secret,
        allowlist=settings.webhook_allowlist,
        dead_letter=folder / f"{slug(name)}.dead-letter.jsonl",
        idempotency_prefix=slug(f"{about.get('run_id', '')}_{name}"),
        event_type="segvalue.audience",
        protected={**protected_inputs(config), **protected_store(config)},
    )
    return {**about, **report.to_dict()}


def check_rows(rows: pa.Table) -> None:
    """An export of nothing is refused (the audience is empty)."""
    if rows.num_rows == 0:
        raise DataValidationError("the audience is empty: nothing to export", fix="check the plan")
