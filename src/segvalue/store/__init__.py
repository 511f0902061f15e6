"""The results store: every run's scores, memberships, KPIs, models and events in a database.

A DuckDB file by default (``store.url``, beside the config), PostgreSQL with the same
schema. Runs become visible atomically; readers see complete runs only. See
:mod:`segvalue.store.results` and docs/store.md.
"""

from __future__ import annotations

from segvalue.store.results import (
    SCHEMA_VERSION,
    ApiKeyRecord,
    EventRecord,
    ResultsStore,
    RunRecord,
    SegmentEvent,
    StoreMissingError,
    open_store,
    store_lock,
)

__all__ = [
    "SCHEMA_VERSION",
    "ApiKeyRecord",
    "EventRecord",
    "ResultsStore",
    "RunRecord",
    "SegmentEvent",
    "StoreMissingError",
    "open_store",
    "store_lock",
]
