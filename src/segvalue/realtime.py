"""Real-time events: one new order or touchpoint, checked and applied to its customer.

``POST /api/v1/events`` (through :meth:`segvalue.Project.record_event`) takes an order or
a touchpoint as JSON. :func:`check_event` applies the rules the run applies to a file's
rows (the rule names are :data:`segvalue.data.validation.RULES`), to the one event:

* ``null_id``: the customer id (or the order id) is missing or blank; ids are trimmed
  of blanks at both ends, as in files;
* ``missing_value`` / ``unparseable_value``: the time, amount or channel is missing or
  not a value of its type (times: ISO 8601, with or without a UTC offset; an offset is
  converted to the project's ``timezone``, as in files);
* ``non_finite``: NaN or an infinity; ``implausible_value``: beyond
  ``validation.max_amount``; ``zero_amount`` with ``validation.zero_amounts: reject``;
* ``unknown_event``: a touchpoint event that is not one segvalue understands, after
  ``sources.touchpoints.event_map``;
* ``future_timestamp``: more than a day after now; ``after_as_of``: after the
  configured ``as_of`` (an inferred as-of date moves with the data instead: the
  customer is scored as of the event's day);
* ``unknown_customer``: the run had a customers table and the customer is not in it;
  ``return_without_purchase``: a return of a customer without a purchase.

Unknown fields are refused (a misspelt ``ammount`` is not silently ignored). An order's
id is its event id: the same order sent twice is applied once
(``duplicate_key`` is not an error here, the repeat is answered with the stored state).

:func:`history_with` adds a customer's events since the run to the run's history of that
customer, for the run's saved scorer (``Scorer.score_many``, several customers at once),
and :func:`transitions` lists the segments the customer entered and left.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from zoneinfo import ZoneInfo

from segvalue.config import TOUCHPOINT_EVENTS, Config
from segvalue.data.validation import BLANKS
from segvalue.errors import DataValidationError
from segvalue.scoring import History

__all__ = [
    "EVENT_TYPES",
    "CheckedEvent",
    "EventError",
    "check_event",
    "history_with",
    "transitions",
]

#: The event types ``POST /api/v1/events`` takes.
EVENT_TYPES = ("order", "touchpoint")

_FIELDS: dict[str, dict[str, str]] = {
    # field -> kind ("id", "text", "time", "money", "number"); required ones listed first
    "order": {
        "type": "text",
        "customer_id": "id",
        "order_id": "id",
        "order_ts": "time",
        "amount": "money",
        "discount": "money",
        "currency": "text",
        "channel": "text",
        "lines": "lines",
    },
    "touchpoint": {
        "type": "text",
        "customer_id": "id",
        "ts": "time",
        "channel": "text",
        "event": "text",
        "touch_id": "id",
        "campaign_id": "text",
        "cost": "money",
    },
}
_REQUIRED = {
    "order": ("customer_id", "order_id", "order_ts", "amount"),
    "touchpoint": ("customer_id", "ts", "channel"),
}
_TIME_FIELD = {"order": "order_ts", "touchpoint": "ts"}
_FUTURE_MARGIN = dt.timedelta(days=1)  # as in files: data written east of UTC
_MAX_TEXT = 200
_MAX_LINES = 1000
_LINE_FIELDS = {
    "line_amount": "money",
    "category": "text",
    "product_id": "text",
    "quantity": "number",
    "brand": "text",
}


class EventError(DataValidationError):
    """An event broke a validation rule: ``rule`` names it, ``parameter`` the field."""

    def __init__(self, message: str, *, rule: str, field: str, fix: str) -> None:
        super().__init__(message, fix=fix, parameter=field)
        self.rule = rule


@dataclass(frozen=True)
class CheckedEvent:
    """A valid event: its id, type, customer, time (naive, in the project's zone) and the
    normalised fields (``body``, JSON-ready)."""

    event_id: str
    type: str
    customer_id: str
    occurred_at: dt.datetime
    body: dict[str, Any]


def _fail(rule: str, field: str, message: str, fix: str) -> EventError:
    return EventError(f"{rule}: {message}", rule=rule, field=field, fix=fix)


def _id(value: Any, field: str) -> str | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise _fail("unparseable_value", field, f"{field} {value!r} is not text", "send a string")
    text = str(value).strip(" \t\n\r\x0b\x0c" + BLANKS)
    if len(text) > _MAX_TEXT:
        raise _fail(
            "unparseable_value",
            field,
            f"{field} is longer than {_MAX_TEXT} characters",
            f"send at most {_MAX_TEXT} characters",
        )
    return text or None


def _time(value: Any, field: str, zone: str) -> dt.datetime:
    if not isinstance(value, str):
        raise _fail(
            "unparseable_value",
            field,
            f"{field} {value!r} is not an ISO 8601 date or time",
            "send e.g. '2026-01-05T10:00:00' or '2026-01-05T10:00:00+01:00'",
        )
    try:
        moment = dt.datetime.fromisoformat(value.strip())
    except ValueError:
        raise _fail(
            "unparseable_value",
            field,
            f"{field} {value!r} is not an ISO 8601 date or time",
            "send e.g. '2026-01-05T10:00:00' or '2026-01-05T10:00:00+01:00'",
        ) from None
    if moment.tzinfo is not None:  # an offset converts to the project's zone, as in files
        moment = moment.astimezone(ZoneInfo(zone)).replace(tzinfo=None)
    return moment


def _money(value: Any, field: str, limit: float) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _fail(
            "unparseable_value",
            field,
            f"{field} {value!r} is not a number",
            "send a JSON number, e.g. 42.5 (not text)",
        )
    number = float(value)
    if not math.isfinite(number):
        raise _fail("non_finite", field, f"{field} is {value!r}", "send a finite number")
    if abs(number) > limit:
        raise _fail(
            "implausible_value",
            field,
            f"{field} {number:g} is beyond +/- {limit:g} (validation.max_amount)",
            "check the unit (cents?) or raise validation.max_amount",
        )
    return number


def _lines(value: Any, limit: float) -> list[dict[str, Any]]:
    """An order's lines: a list of ``{"line_amount", "category", ...}`` objects."""
    if not isinstance(value, list) or len(value) > _MAX_LINES:
        raise _fail(
            "unparseable_value",
            "lines",
            f"lines is not a list of at most {_MAX_LINES} objects",
            'send e.g. [{"category": "shoes", "line_amount": 42.5}]',
        )
    out = []
    for i, line in enumerate(value):
        field = f"lines[{i}]"
        if not isinstance(line, Mapping):
            raise _fail(
                "unparseable_value",
                field,
                f"{field} is not an object",
                "send an object with its fields",
            )
        unknown = sorted(set(line) - set(_LINE_FIELDS))
        if unknown:
            raise _fail(
                "unparseable_value",
                f"{field}.{unknown[0]}",
                f"unknown field {unknown[0]!r} of an order line",
                f"use only {', '.join(_LINE_FIELDS)}",
            )
        if line.get("line_amount") is None:
            raise _fail(
                "missing_value",
                f"{field}.line_amount",
                f"{field}.line_amount is missing",
                "send each line's amount",
            )
        clean: dict[str, Any] = {}
        for name, what in _LINE_FIELDS.items():
            item = line.get(name)
            if item is None:
                continue
            if what == "text":
                if not isinstance(item, str) or len(item) > _MAX_TEXT:
                    raise _fail(
                        "unparseable_value",
                        f"{field}.{name}",
                        f"{name} {item!r} is not text",
                        "send a string",
                    )
                item = item.strip() or None
            else:
                item = _money(item, f"{field}.{name}", limit)
            if item is not None:
                clean[name] = item
        out.append(clean)
    return out


def check_event(
    event: Mapping[str, Any],
    config: Config,
    *,
    now: dt.datetime | None = None,
) -> CheckedEvent:
    """Check one event against the rules a file's rows are checked against.

    Parameters
    ----------
    event
        The JSON object: ``type`` (``order`` or ``touchpoint``) and its fields.
    config
        The project's configuration (time zone, ``validation``, ``as_of``, the
        touchpoints' ``event_map``).
    now
        The load time (default: now, UTC) for ``future_timestamp``.

    Raises
    ------
    EventError
        The first rule the event breaks (``rule``), naming the field (``parameter``).

    Examples
    --------
    >>> from segvalue.config import parse_config
    >>> cfg = parse_config({"sources": {"orders": {"path": "o.csv"}}})
    >>> e = check_event({"type": "order", "customer_id": " C1 ", "order_id": "A-1",
    ...                  "order_ts": "2026-01-05T10:00:00+01:00", "amount": 42.5}, cfg)
    >>> e.event_id, e.customer_id, e.occurred_at.isoformat(), e.body["amount"]
    ('order:A-1', 'C1', '2026-01-05T09:00:00', 42.5)
    >>> check_event({"type": "order", "customer_id": "C1", "order_id": "A-2",
    ...              "order_ts": "2026-01-05", "amount": float("nan")}, cfg)
    Traceback (most recent call last):
    ...
    segvalue.realtime.EventError: non_finite: amount is nan. Fix: send a finite number
    """
    if not isinstance(event, Mapping):
        raise _fail(
            "unparseable_value",
            "type",
            "the event is not a JSON object",
            "send one JSON object with a type",
        )
    kind = event.get("type")
    if kind not in EVENT_TYPES:
        raise _fail(
            "missing_value" if kind is None else "unparseable_value",
            "type",
            f"type {kind!r} is not an event type",
            f"use one of {', '.join(EVENT_TYPES)}",
        )
    fields = _FIELDS[kind]
    unknown = sorted(set(event) - set(fields))
    if unknown:
        raise _fail(
            "unparseable_value",
            unknown[0],
            f"unknown field {unknown[0]!r} for an {kind} event",
            f"use only {', '.join(fields)}",
        )
    validation = config.validation
    body: dict[str, Any] = {"type": kind}
    for field, what in fields.items():
        if field == "type":
            continue
        value = event.get(field)
        if what == "id":
            value = _id(value, field)
        elif what == "text" and value is not None:
            if not isinstance(value, str) or len(value) > _MAX_TEXT:
                raise _fail(
                    "unparseable_value", field, f"{field} {value!r} is not text", "send a string"
                )
            value = value.strip() or None
        if value is None:
            if field in _REQUIRED[kind]:
                rule = "null_id" if what == "id" else "missing_value"
                raise _fail(rule, field, f"{field} is missing", f"send {field}")
            continue
        if what == "time":
            value = _time(value, field, config.timezone)
        elif what == "money":
            value = _money(value, field, validation.max_amount)
        elif what == "lines":
            value = _lines(value, validation.max_amount)
        body[field] = value
    if kind == "order" and body["amount"] == 0 and validation.zero_amounts == "reject":
        raise _fail("zero_amount", "amount", "amount is 0", "validation.zero_amounts: keep")
    if kind == "touchpoint" and "event" in body:
        source = config.sources.get("touchpoints")
        mapped = (source.event_map if source is not None else {}).get(body["event"], body["event"])
        if mapped not in TOUCHPOINT_EVENTS:
            raise _fail(
                "unknown_event",
                "event",
                f"event {body['event']!r} is not a touchpoint event",
                f"use one of {', '.join(TOUCHPOINT_EVENTS)} (or map it in "
                "sources.touchpoints.event_map)",
            )
        body["event"] = mapped
    time_field = _TIME_FIELD[kind]
    moment: dt.datetime = body[time_field]
    current = now or dt.datetime.now(dt.UTC)
    local_now = current.astimezone(ZoneInfo(config.timezone)).replace(tzinfo=None)
    if moment > local_now + _FUTURE_MARGIN:
        raise _fail(
            "future_timestamp",
            time_field,
            f"{time_field} {moment.isoformat()} is after the load time",
            "check the date (and its UTC offset)",
        )
    if config.as_of is not None and moment.date() > config.as_of:
        raise _fail(
            "after_as_of",
            time_field,
            f"{time_field} {moment.isoformat()} is after the as-of date {config.as_of} "
            "fixed in the configuration (as_of)",
            "move as_of (and run again), or leave it out to follow the data",
        )
    if kind == "order":
        event_id = f"order:{body['order_id']}"
    elif "touch_id" in body:
        event_id = f"touchpoint:{body['touch_id']}"
    else:
        key = {k: body.get(k) for k in ("customer_id", "ts", "channel", "event", "campaign_id")}
        digest = hashlib.sha256(json.dumps(key, default=str, sort_keys=True).encode())
        event_id = f"touchpoint:{digest.hexdigest()[:32]}"
    body = {k: (v.isoformat() if isinstance(v, dt.datetime) else v) for k, v in body.items()}
    return CheckedEvent(event_id, kind, body["customer_id"], moment, body)


def _order_of(body: Mapping[str, Any]) -> dict[str, Any]:
    return {k: body.get(k) for k in ("order_id", "order_ts", "amount", "discount")}


def _touch_of(body: Mapping[str, Any]) -> dict[str, Any]:
    touch = {"ts": body["ts"], "channel": body["channel"]}
    if "event" in body:
        touch["event"] = body["event"]
    return touch


def history_with(
    *,
    attributes: Mapping[str, Any],
    orders: Sequence[Mapping[str, Any]],
    order_lines: Sequence[Mapping[str, Any]],
    touchpoints: Sequence[Mapping[str, Any]],
    events: Sequence[Mapping[str, Any]],
    run_as_of: dt.date,
    as_of_fixed: bool,
) -> History:
    """The customer's history as the run stored it plus ``events`` (event bodies), to
    score with the run's scorer.

    The customer is scored as of the run's as-of date, or of the latest event's day when
    that is later and the as-of date is not fixed in the configuration (a run would then
    infer it from the data).

    Raises
    ------
    EventError
        ``return_without_purchase``: the events make a return of a customer without a
        purchase.

    Examples
    --------
    >>> h = history_with(attributes={"customer_id": "C1"}, orders=[], order_lines=[],
    ...     touchpoints=[], events=[{"type": "order", "order_id": "A", "amount": 5.0,
    ...     "order_ts": "2025-01-03T10:00:00"}], run_as_of=dt.date(2025, 1, 1),
    ...     as_of_fixed=False)
    >>> len(h.orders), h.as_of
    (1, datetime.date(2025, 1, 3))
    """
    orders = [*orders, *(_order_of(e) for e in events if e["type"] == "order")]
    order_lines = [
        *order_lines,
        *(
            {**line, "order_id": e["order_id"]}
            for e in events
            if e["type"] == "order"
            for line in e.get("lines", ())
        ),
    ]
    touches = [*touchpoints, *(_touch_of(e) for e in events if e["type"] == "touchpoint")]
    as_of = run_as_of
    if not as_of_fixed and events:
        latest = max(dt.datetime.fromisoformat(e.get("order_ts") or e["ts"]) for e in events)
        as_of = max(as_of, latest.date())
    if any(e["type"] == "order" and e["amount"] < 0 for e in events) and not any(
        (o["amount"] or 0) >= 0 for o in orders
    ):
        raise _fail(
            "return_without_purchase",
            "amount",
            "a return (negative amount) of a customer with no purchase",
            "send the purchase first",
        )
    return History(
        attributes,
        orders,
        order_lines=order_lines,
        touchpoints=touches,
        as_of=None if as_of == run_as_of else as_of,
    )


def transitions(
    before: Mapping[str, Any], after: Mapping[str, Any]
) -> list[tuple[str, str | None, str | None]]:
    """``(scheme, from, to)`` for each segment entered or left (tags: one per tag).

    Examples
    --------
    >>> transitions({"rfm": "New", "tags": ["a"]}, {"rfm": "Promising", "tags": ["a", "b"]})
    [('rfm', 'New', 'Promising'), ('tags', None, 'b')]
    """
    out: list[tuple[str, str | None, str | None]] = []
    for scheme in sorted(set(before) | set(after)):
        old, new = before.get(scheme), after.get(scheme)
        if isinstance(old, list) or isinstance(new, list):
            old_tags, new_tags = set(old or []), set(new or [])
            out += [(scheme, tag, None) for tag in sorted(old_tags - new_tags)]
            out += [(scheme, None, tag) for tag in sorted(new_tags - old_tags)]
        elif old != new:
            out.append((scheme, old, new))
    return out
