"""Signed, batched, retried webhook delivery (Standard Webhooks 1.0).

An exporter hands :func:`deliver` a list of JSON-ready records (audience members,
segment enter / exit events); they are POSTed to one webhook in batches, each batch a
JSON envelope signed as the Standard Webhooks specification says
(https://github.com/standard-webhooks/standard-webhooks, ``spec/standard-webhooks.md``):

* ``webhook-id``: the batch's id, stable across retries *and* re-runs of the same export
  (the idempotency prefix, the batch number and a hash of the batch's content), also
  sent as ``Idempotency-Key`` so a receiver can de-duplicate;
* ``webhook-timestamp``: the attempt's time, integer seconds since the epoch;
* ``webhook-signature``: ``v1,`` + base64 of HMAC-SHA256 over ``{id}.{timestamp}.{body}``
  with the secret (``whsec_`` + base64), one space-separated signature per secret.

Connection errors, timeouts, 408, 429 and 5xx are retried with exponential backoff and
full jitter (``Retry-After`` honoured, capped); other answers are final. A batch that
still fails is appended to a dead-letter file (JSON Lines, segvalue's own: its first
line says so). Targets come only from an allowlist, checked before any request.
Record contents are never logged, printed or put in an error message.

docs/activation-webhooks.md describes the envelope, the receiving side and the rules.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import email.utils
import hashlib
import hmac
import http.client
import ipaddress
import json
import logging
import math
import os
import re
import ssl
import time
import urllib.parse
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from segvalue.data.safety import check_target, writing
from segvalue.data.writers import json_safe
from segvalue.errors import ConfigError, DataValidationError, safe_text

__all__ = ["DEAD_LETTER_HEADER", "DeliveryReport", "check_url", "deliver", "sign", "verify"]

_log = logging.getLogger("segvalue.data.webhooks")
# A library prints nothing unless the application configures logging.
_log.addHandler(logging.NullHandler())

_SECRET_PREFIX = "whsec_"
#: Standard Webhooks: a symmetric secret is random, 24 to 64 bytes (192 to 512 bits).
_SECRET_BYTES = (24, 64)
#: A message id is printable ASCII without ``.`` (the spec's separator) or spaces.
_MSG_ID = re.compile(r"[\x21-\x2d\x2f-\x7e]{1,256}")
#: The idempotency prefix starts every webhook-id: short, no ``.``.
_PREFIX = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,127}")
#: Event types as the spec recommends: full-stop delimited ``[a-zA-Z0-9_]`` identifiers.
_EVENT_TYPE = re.compile(r"[A-Za-z0-9_]+(?:\.[A-Za-z0-9_]+)*")
_LOOPBACK_NAMES = {"localhost", "localhost.localdomain"}
_DEFAULT_PORTS = {"http": 80, "https": 443}
#: How much of a response body is read (and thrown away): it is never looked at.
_RESPONSE_READ = 64 * 1024

#: The first line of every dead-letter file segvalue writes.
DEAD_LETTER_HEADER = json.dumps({"segvalue_webhook_dead_letters": 1}) + "\n"


# -- signing -------------------------------------------------------------------------


def _secret_key(secret: str) -> bytes:
    """The HMAC key of a ``whsec_<base64>`` secret (the prefix is optional, as in the
    reference libraries of the specification)."""
    if not isinstance(secret, str):
        raise ConfigError(
            "the webhook secret is not text", fix="give the whsec_... string", parameter="secret"
        )
    text = secret.strip().removeprefix(_SECRET_PREFIX)
    fix = (
        "use the secret exactly as given (whsec_ followed by base64); make a new one with "
        "python -c \"import base64, secrets; print('whsec_' + "
        'base64.b64encode(secrets.token_bytes(32)).decode())"'
    )
    # The messages never hold the secret, not even in part.
    try:
        # Some producers leave out the base64 padding.
        key = base64.b64decode(text + "=" * (-len(text) % 4), validate=True)
    except (binascii.Error, ValueError):
        raise ConfigError(
            "the webhook secret is not base64 after 'whsec_'", fix=fix, parameter="secret"
        ) from None
    low, high = _SECRET_BYTES
    if not low <= len(key) <= high:
        raise ConfigError(
            f"the webhook secret holds {len(key)} bytes; Standard Webhooks asks for "
            f"{low} to {high} random bytes",
            fix=fix,
            parameter="secret",
        )
    return key


def _digest(key: bytes, msg_id: str, timestamp: int, body: bytes) -> bytes:
    """HMAC-SHA256 over ``{msg_id}.{timestamp}.{body}`` (the spec's signed content)."""
    return hmac.new(key, f"{msg_id}.{timestamp}.".encode() + body, hashlib.sha256).digest()


def _signature(key: bytes, msg_id: str, timestamp: int, body: bytes) -> str:
    return "v1," + base64.b64encode(_digest(key, msg_id, timestamp, body)).decode("ascii")


def _check_signed_fields(msg_id: str, timestamp: int) -> None:
    if not isinstance(msg_id, str) or not _MSG_ID.fullmatch(msg_id):
        raise ConfigError(
            f"webhook id {safe_text(str(msg_id))[:80]!r} is not 1-256 printable ASCII "
            "characters without '.' or spaces (the signature separates fields with '.')",
            fix="choose another id",
            parameter="msg_id",
        )
    if isinstance(timestamp, bool) or not isinstance(timestamp, int) or timestamp < 0:
        raise ConfigError(
            f"webhook timestamp {timestamp!r} is not whole seconds since the epoch",
            fix="pass int(time.time())",
            parameter="timestamp",
        )


def sign(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    """The ``webhook-signature`` of a message: ``v1,`` + base64(HMAC-SHA256).

    The signed content is ``{msg_id}.{timestamp}.{body}`` (Standard Webhooks 1.0,
    "Signature scheme"); the key is the base64 part of ``whsec_<base64>``.

    Parameters
    ----------
    secret
        ``whsec_`` followed by the base64 of 24 to 64 random bytes (the prefix may be
        left out).
    msg_id
        The ``webhook-id``: printable ASCII without ``.`` or spaces.
    timestamp
        The ``webhook-timestamp``: whole seconds since the epoch.
    body
        The request body, exactly as sent.

    Returns
    -------
    str
        ``v1,<base64 signature>``.

    Raises
    ------
    ConfigError
        The secret is not base64 of 24 to 64 bytes, or the id or timestamp is malformed.

    Examples
    --------
    The test vector of the specification's reference library
    (``libraries/python/tests/test_webhooks.py``, ``test_sign_function``):

    >>> sign("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "msg_p5jXN8AQM9LWM0D4loKWxJek",
    ...      1614265330, b'{"test": 2432232314}')
    'v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE='
    """
    _check_signed_fields(msg_id, timestamp)
    return _signature(_secret_key(secret), msg_id, timestamp, bytes(body))


class _Headers(Protocol):
    def items(self) -> Iterable[tuple[str, Any]]: ...


def verify(
    secret: str,
    headers: Mapping[str, str] | _Headers,
    body: bytes,
    *,
    tolerance: float = 300,
    now: float | None = None,
) -> bool:
    """Whether a received webhook is authentic and fresh (Standard Webhooks 1.0).

    True when ``webhook-id``, ``webhook-timestamp`` and ``webhook-signature`` are present,
    the timestamp is whole seconds within ``tolerance`` of ``now`` (either way: too old
    is a replay, too new a forged clock), and one of the space-separated ``v1,``
    signatures equals the HMAC of ``{id}.{timestamp}.{body}``, compared in constant time.
    Signatures of other versions (``v1a``) are skipped. De-duplicate on ``webhook-id``
    after a True.

    Parameters
    ----------
    secret
        The endpoint's ``whsec_`` secret.
    headers
        The request's headers (any capitalisation; a dict or ``http.server``'s headers).
    body
        The raw request body: verify before parsing it.
    tolerance
        Seconds the timestamp may differ from ``now`` (the reference libraries: 5 min).
    now
        The current time in seconds since the epoch (default: the clock).

    Returns
    -------
    bool

    Raises
    ------
    ConfigError
        The secret itself is malformed (the receiver's configuration is wrong).

    Examples
    --------
    >>> secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
    >>> body = b'{"test": 2432232314}'
    >>> headers = {"webhook-id": "msg_p5jXN8AQM9LWM0D4loKWxJek",
    ...            "webhook-timestamp": "1614265330",
    ...            "webhook-signature": "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="}
    >>> verify(secret, headers, body, now=1614265330 + 60)
    True
    >>> verify(secret, headers, body + b" ", now=1614265330)
    False
    >>> verify(secret, headers, body, now=1614265330 + 301)
    False
    """
    key = _secret_key(secret)
    found: dict[str, str] = {}
    for name, value in headers.items():
        found[str(name).lower()] = str(value)
    msg_id = found.get("webhook-id", "")
    stamp = found.get("webhook-timestamp", "").strip()
    signatures = found.get("webhook-signature", "")
    if not (_MSG_ID.fullmatch(msg_id) and signatures):
        return False
    if not (stamp.isascii() and stamp.isdigit() and len(stamp) <= 15):
        return False
    timestamp = int(stamp)
    current = time.time() if now is None else float(now)
    if abs(current - timestamp) > tolerance:
        return False
    expected = _digest(key, msg_id, timestamp, bytes(body))
    matched = False
    for entry in signatures.split():
        version, _, encoded = entry.partition(",")
        if version != "v1":
            continue
        try:
            candidate = base64.b64decode(encoded, validate=True)
        except (binascii.Error, ValueError):
            continue
        # Every candidate is compared (no early exit): the time says nothing either.
        matched = hmac.compare_digest(expected, candidate) or matched
    return matched


# -- targets -------------------------------------------------------------------------


@dataclass(frozen=True)
class _Target:
    scheme: str
    host: str
    port: int
    request_path: str  # path and query, as sent
    path: str
    shown: str  # the URL with any query value hidden: fit for messages and files


def _host(parts: urllib.parse.SplitResult) -> str:
    return (parts.hostname or "").rstrip(".").lower()


def _is_loopback(host: str) -> bool:
    if host in _LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _shown(parts: urllib.parse.SplitResult) -> str:
    """The URL without credentials, fragment and query values (a query may hold a token)."""
    netloc = parts.netloc.rpartition("@")[2]
    text = f"{parts.scheme}://{netloc}{parts.path}"
    if parts.query:
        names = [name for name, _ in urllib.parse.parse_qsl(parts.query, keep_blank_values=True)]
        hidden = "&".join(f"{urllib.parse.quote(name, safe='')}=***" for name in names)
        text += f"?{hidden or '***'}"
    return safe_text(text)


def _port(parts: urllib.parse.SplitResult, what: str, parameter: str) -> int:
    try:
        port = parts.port
    except ValueError:
        raise ConfigError(
            f"{what} has an invalid port", fix="give a port from 1 to 65535", parameter=parameter
        ) from None
    return port if port is not None else _DEFAULT_PORTS[parts.scheme]


@dataclass(frozen=True)
class _AllowEntry:
    scheme: str
    host: str
    port: int | None  # None: any port (loopback only)
    path: str | None  # None: any path on the origin
    prefix: bool  # path ends with '*': any path starting with it

    def allows(self, target: _Target) -> bool:
        if (target.scheme, target.host) != (self.scheme, self.host):
            return False
        if self.port is not None and target.port != self.port:
            return False
        if self.path is None:
            return True
        return target.path.startswith(self.path) if self.prefix else target.path == self.path


_ENTRY_FIX = (
    "write each entry as an origin ('https://hooks.example.com', 'https://h.example:8443') "
    "or an origin and a path ('https://hooks.example.com/segvalue', or with a trailing * "
    "for every path under it: 'https://hooks.example.com/segvalue/*')"
)


def _allow_entry(entry: str) -> _AllowEntry:
    parts = urllib.parse.urlsplit(str(entry).strip())
    what = f"webhook allowlist entry {_shown(parts)!r}"
    # 'http://127.0.0.1:*': any port, for local receivers whose port changes (tests).
    any_port = parts.netloc.endswith(":*")
    if any_port:
        parts = parts._replace(netloc=parts.netloc.removesuffix(":*"))
    if parts.scheme not in _DEFAULT_PORTS or not parts.hostname:
        raise ConfigError(f"{what} is not an http(s) URL", fix=_ENTRY_FIX, parameter="allowlist")
    if "@" in parts.netloc or parts.query or parts.fragment or "*" in parts.netloc:
        raise ConfigError(
            f"{what} holds credentials, a query, a fragment or a host wildcard",
            fix=f"{_ENTRY_FIX}; list each host on its own",
            parameter="allowlist",
        )
    host = _host(parts)
    if any_port and not _is_loopback(host):
        raise ConfigError(
            f"{what}: a port wildcard is allowed for this machine only (127.0.0.1, ::1, localhost)",
            fix="name the port",
            parameter="allowlist",
        )
    if parts.scheme == "http" and not _is_loopback(host):
        raise ConfigError(
            f"{what} is plain http to a host other than this machine: the records (which "
            "may hold contact details) would cross the network unencrypted",
            fix="use https (plain http is allowed for 127.0.0.1, ::1 and localhost only)",
            parameter="allowlist",
        )
    path: str | None = parts.path
    if "*" in parts.path[:-1]:
        raise ConfigError(
            f"{what}: '*' may only end the path", fix=_ENTRY_FIX, parameter="allowlist"
        )
    prefix = parts.path.endswith("*")
    path = parts.path.removesuffix("*")
    if path in ("", "/"):
        path = None  # 'https://h', 'https://h/' and 'https://h/*': the whole origin
    port = None if any_port else _port(parts, what, "allowlist")
    return _AllowEntry(parts.scheme, host, port, path, prefix)


def _target(url: str, allowlist: Iterable[str]) -> _Target:
    if not isinstance(url, str):
        raise ConfigError("the webhook url is not text", parameter="url")
    parts = urllib.parse.urlsplit(url.strip())
    shown = _shown(parts)
    what = f"webhook url {shown!r}"
    if not url.strip().isascii() or any(
        c.isspace() or ord(c) < 32 or c == "\x7f" for c in url.strip()
    ):
        raise ConfigError(
            f"{what} holds spaces, control or non-ASCII characters",
            fix="percent-encode them (and write the host in its ASCII form)",
            parameter="url",
        )
    if parts.scheme not in _DEFAULT_PORTS or not parts.hostname:
        raise ConfigError(
            f"{what} is not an http(s) URL with a host",
            fix="give the full URL, e.g. https://hooks.example.com/segvalue",
            parameter="url",
        )
    if "@" in parts.netloc:
        raise ConfigError(
            f"{what} carries credentials (user:password@)",
            fix="remove them: the signature authenticates segvalue to the receiver, and a "
            "password in a URL ends up in logs",
            parameter="url",
        )
    segments = urllib.parse.unquote(parts.path).split("/")
    if "." in segments or ".." in segments:
        raise ConfigError(
            f"{what} has '.' or '..' in its path", fix="give the path plainly", parameter="url"
        )
    port = _port(parts, what, "url")
    request_path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    target = _Target(parts.scheme, _host(parts), port, request_path, parts.path or "/", shown)
    entries = [_allow_entry(entry) for entry in allowlist]
    if any(entry.allows(target) for entry in entries):
        return target
    host = f"[{target.host}]" if ":" in target.host else target.host
    origin = f"{target.scheme}://{host}" + (
        "" if port == _DEFAULT_PORTS[target.scheme] else f":{port}"
    )
    why = "the allowlist is empty" if not entries else "no allowlist entry matches it"
    if target.scheme == "http" and not _is_loopback(target.host):
        fix = "use https: plain http is allowed to 127.0.0.1, ::1 and localhost only"
    else:
        fix = (
            f"correct the url, or add {origin!r} (the whole host) or "
            f"{origin + target.path!r} (this path only) to the webhook allowlist "
            "(activation.exports.webhook_allowlist)"
        )
    raise ConfigError(
        f"{what} is not an allowed webhook target ({why}: scheme, host and port must match)",
        fix=fix,
        parameter="url",
    )


def check_url(url: str, allowlist: Iterable[str]) -> str:
    """Refuse a webhook URL the allowlist does not name; return it fit to show.

    An entry is an origin, ``scheme://host[:port]`` (any path on it), or an origin and a
    path (that path exactly; with a trailing ``*``, every path starting with it).
    Scheme, host and port must match exactly (host names without case; the port defaults
    to 80 / 443). No host wildcards; a port wildcard (``http://127.0.0.1:*``) only for
    this machine. Only http and https; plain http only to this machine
    (``127.0.0.0/8``, ``::1``, ``localhost``). A URL with credentials
    (``user:password@``) or ``.`` / ``..`` path segments is refused. Redirects are never
    followed, so the allowlist also holds for every request made.

    Parameters
    ----------
    url
        The webhook.
    allowlist
        The allowed targets (``activation.exports.webhook_allowlist``).

    Returns
    -------
    str
        The URL without credentials and with query values hidden (``?token=***``).

    Raises
    ------
    ConfigError
        Naming the URL (secrets hidden) and the entry to add.

    Examples
    --------
    >>> check_url("https://hooks.example.com/a/b?token=s3cr3t", ["https://hooks.example.com/a/*"])
    'https://hooks.example.com/a/b?token=***'
    >>> check_url("https://hooks.example.com.evil.io/a", ["https://hooks.example.com/*"])
    ... # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    segvalue.errors.ConfigError: webhook url 'https://hooks.example.com.evil.io/a' is not an ...
    """
    return _target(url, allowlist).shown


# -- the dead-letter file ------------------------------------------------------------


class _DeadLetters:
    """segvalue's dead-letter file: JSON Lines after a header line, appended, 0600."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: int | None = None

    def _open(self) -> int:
        if self._fd is None:
            header = DEAD_LETTER_HEADER.encode()
            with writing(self.path):
                try:
                    fd = os.open(
                        self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND, 0o600
                    )
                except FileExistsError:
                    fd = os.open(self.path, os.O_RDWR | os.O_APPEND)
                    # Checked on the file about to be written (check_target looked earlier).
                    if os.pread(fd, len(header), 0) != header:
                        os.close(fd)
                        raise _not_ours(self.path) from None
                    # A line cut short by a killed process keeps a line of its own.
                    size = os.fstat(fd).st_size
                    if os.pread(fd, 1, size - 1) != b"\n":
                        _write_all(fd, b"\n")
                else:
                    _write_all(fd, header)
            self._fd = fd
        return self._fd

    def append(self, entry: Mapping[str, Any]) -> None:
        line = json.dumps(entry, ensure_ascii=False, allow_nan=False, default=str) + "\n"
        fd = self._open()
        with writing(self.path):
            _write_all(fd, line.encode())
            os.fsync(fd)  # the last copy of records the receiver never got

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


def _write_all(fd: int, data: bytes) -> None:
    written = 0
    while written < len(data):
        written += os.write(fd, data[written:])


def _not_ours(path: Path) -> ConfigError:
    return ConfigError(
        f"dead-letter file {str(path)!r} exists and segvalue did not write it (its first "
        f"line is not {DEAD_LETTER_HEADER.strip()})",
        fix="choose another file name, or move that file away",
        parameter="dead_letter",
    )


def _check_dead_letter(path: Path, protected: Mapping[Path, str] | None) -> Path:
    if not path.expanduser().resolve().parent.is_dir():
        raise ConfigError(
            f"the folder of dead-letter file {str(path)!r} does not exist",
            fix="create it first, or choose another place",
            parameter="dead_letter",
        )
    header = DEAD_LETTER_HEADER.encode()
    try:
        resolved = check_target(
            path, "file", protected=protected, key="dead_letter", signature=header
        )
    except ConfigError as exc:
        raise ConfigError(exc.message, fix=exc.fix, parameter="dead_letter") from None
    # check_target finds the header in the first 4 kB; the file must start with it.
    if resolved.exists():
        with writing(resolved), resolved.open("rb") as handle:
            if handle.read(len(header)) != header:
                raise _not_ours(path)
    return resolved


# -- delivery ------------------------------------------------------------------------


@dataclass(frozen=True)
class DeliveryReport:
    """What :func:`deliver` did.

    Attributes
    ----------
    url
        The webhook, credentials and query values hidden.
    batches, records
        How many batches and records there were to send.
    delivered_batches, delivered_records
        Answered with a 2xx.
    attempts
        Requests made (every try of every batch).
    retried
        Attempts after a batch's first (``attempts - batches sent``).
    dead_lettered_batches, dead_lettered_records
        Appended to the dead-letter file.
    dead_letter
        The dead-letter file when something was appended to it, else None.
    statuses
        Attempts by outcome: the HTTP status (``"200"``, ``"503"``) or ``"timeout"``,
        ``"connection_error"``, ``"tls_error"``.
    stopped
        Why the remaining batches were not sent (the endpoint answered 410 Gone, or
        failed several batches in a row), else None.

    Examples
    --------
    >>> report = DeliveryReport(url="https://h.example/x", batches=1, records=2,
    ...     delivered_batches=1, delivered_records=2, attempts=2, retried=1,
    ...     dead_lettered_batches=0, dead_lettered_records=0, dead_letter=None,
    ...     statuses={"200": 1, "503": 1})
    >>> report.ok, report.to_dict()["statuses"]
    (True, {'200': 1, '503': 1})
    """

    url: str
    batches: int
    records: int
    delivered_batches: int
    delivered_records: int
    attempts: int
    retried: int
    dead_lettered_batches: int
    dead_lettered_records: int
    dead_letter: Path | None
    statuses: dict[str, int] = field(default_factory=dict)
    stopped: str | None = None

    @property
    def ok(self) -> bool:
        """Every record was delivered."""
        return self.delivered_records == self.records

    def to_dict(self) -> dict[str, Any]:
        """The report as JSON-ready values (no record contents)."""
        return {
            "url": self.url,
            "batches": self.batches,
            "records": self.records,
            "delivered_batches": self.delivered_batches,
            "delivered_records": self.delivered_records,
            "attempts": self.attempts,
            "retried": self.retried,
            "dead_lettered_batches": self.dead_lettered_batches,
            "dead_lettered_records": self.dead_lettered_records,
            "dead_letter": None if self.dead_letter is None else str(self.dead_letter),
            "statuses": dict(sorted(self.statuses.items())),
            "stopped": self.stopped,
            "ok": self.ok,
        }


@dataclass(frozen=True)
class _Batch:
    number: int
    msg_id: str
    body: bytes
    records: list[Any]


@dataclass(frozen=True)
class _Outcome:
    status: int | None  # None: no HTTP answer
    kind: str  # the key of DeliveryReport.statuses
    error: str | None = None
    retry_after: str | None = None

    @property
    def delivered(self) -> bool:
        return self.status is not None and 200 <= self.status <= 299

    @property
    def retryable(self) -> bool:
        if self.status is None:
            return self.kind != "tls_error"  # a certificate does not fix itself in seconds
        return self.status in (408, 429) or 500 <= self.status <= 599


def _check_number(
    name: str, value: Any, *, low: float, integer: bool = False, open_low: bool = False
) -> None:
    bad = isinstance(value, bool) or not isinstance(value, int if integer else (int, float))
    if not bad:
        bad = not math.isfinite(value) or value < low or (open_low and value == low)
    if bad:
        kind = "a whole number" if integer else "a number"
        bound = f"> {low:g}" if open_low else f">= {low:g}"
        raise ConfigError(
            f"`{name}` {value!r} is not {kind} {bound}", fix=f"give {kind} {bound}", parameter=name
        )


def _iso(value: Any) -> str:
    """Dates and times as ISO 8601 text (Arrow's ``to_pylist`` gives datetime objects)."""
    if isinstance(value, dt.date | dt.time):  # a datetime is a date
        return value.isoformat()
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


def _canonical(value: Any) -> str:
    """Compact JSON with sorted keys: the same text for the same content."""
    return json.dumps(
        value,
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=False,
        allow_nan=False,
        default=_iso,
    )


def _batches(
    records: Sequence[Mapping[str, Any]], batch_size: int, prefix: str, event_type: str
) -> list[_Batch]:
    """Every batch, serialised before the first request: a record that is not JSON stops
    the export before anything is sent."""
    total = math.ceil(len(records) / batch_size)
    batches: list[_Batch] = []
    for index in range(total):
        number = index + 1
        chunk = records[index * batch_size : number * batch_size]
        rows: list[Any] = []
        texts: list[str] = []
        for offset, record in enumerate(chunk):
            position = index * batch_size + offset
            if not isinstance(record, Mapping):
                raise DataValidationError(
                    f"webhook record {position} is a {type(record).__name__}, not a mapping",
                    fix="pass one dict per record",
                )
            try:
                text = _canonical(json_safe(dict(record)))
            except (TypeError, ValueError) as exc:
                # The type, never the value: records may hold contact details.
                raise DataValidationError(
                    f"webhook record {position} cannot be sent as JSON ({type(exc).__name__}: "
                    f"{str(exc)[:120]})",
                    fix="convert its values to text, numbers, booleans, lists or dicts with "
                    "text keys",
                ) from None
            texts.append(text)
            # As sent: the body, the id's hash and the dead letters hold the same values.
            rows.append(json.loads(text))
        records_json = "[" + ",".join(texts) + "]"
        digest = hashlib.sha256(f"{event_type}\n".encode() + records_json.encode()).hexdigest()
        msg_id = f"{prefix}_{number}_{digest[:32]}"
        envelope = {
            "type": event_type,
            "export": prefix,
            "batch": number,
            "batches": total,
            "count": len(rows),
            "records": rows,
        }
        body = json.dumps(envelope, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
        batches.append(_Batch(number, msg_id, body.encode(), rows))
    return batches


def _jitter(msg_id: str, attempt: int) -> float:
    """A number in [0, 1) fixed by the batch and attempt: full jitter, reproducibly."""
    digest = hashlib.sha256(f"{msg_id}:{attempt}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def _retry_after(value: str | None, current: float) -> float | None:
    """Seconds a ``Retry-After`` asks for (seconds or an HTTP date), or None."""
    if value is None:
        return None
    value = value.strip()
    if value.isascii() and value.isdigit():
        return float(int(value[:12]))
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    return max(when.timestamp() - current, 0.0)


def _post(target: _Target, headers: Mapping[str, str], body: bytes, timeout: float) -> _Outcome:
    """One request, on its own connection; redirects are not followed (http.client)."""
    connection: http.client.HTTPConnection
    if target.scheme == "https":
        context = ssl.create_default_context()
        connection = http.client.HTTPSConnection(
            target.host, target.port, timeout=timeout, context=context
        )
    else:
        connection = http.client.HTTPConnection(target.host, target.port, timeout=timeout)
    try:
        connection.request("POST", target.request_path, body=body, headers=dict(headers))
        response = connection.getresponse()
        response.read(_RESPONSE_READ)
        return _Outcome(
            response.status, str(response.status), None, response.getheader("Retry-After")
        )
    except TimeoutError as exc:
        return _Outcome(None, "timeout", safe_text(f"{type(exc).__name__}: {exc}"))
    except ssl.SSLCertVerificationError as exc:
        return _Outcome(None, "tls_error", safe_text(f"{type(exc).__name__}: {exc}"))
    except (OSError, http.client.HTTPException) as exc:
        return _Outcome(None, "connection_error", safe_text(f"{type(exc).__name__}: {exc}"))
    finally:
        connection.close()


def _when(seconds: float) -> str:
    return dt.datetime.fromtimestamp(seconds, dt.UTC).isoformat(timespec="seconds")


def deliver(
    records: Sequence[Mapping[str, Any]],
    *,
    url: str,
    secret: str | Sequence[str],
    batch_size: int = 500,
    max_attempts: int = 5,
    backoff: float = 0.5,
    max_backoff: float = 30.0,
    timeout: float = 10.0,
    allowlist: Iterable[str],
    dead_letter: str | Path,
    idempotency_prefix: str,
    event_type: str = "segvalue.export",
    stop_after_failed_batches: int | None = 3,
    protected: Mapping[Path, str] | None = None,
    sleep: Callable[[float], None] = time.sleep,
    now: Callable[[], float] = time.time,
) -> DeliveryReport:
    """POST records to a webhook in signed batches, retrying; dead-letter what fails.

    Each batch is one request, body
    ``{"type", "export", "batch", "batches", "count", "records"}`` (compact JSON), with
    the Standard Webhooks headers (``webhook-id``, ``webhook-timestamp``,
    ``webhook-signature``) and ``Idempotency-Key`` (the webhook-id as a quoted string).
    The webhook-id is ``<idempotency_prefix>_<batch>_<hash>``, the hash over the event
    type and the batch's records: the same export sends the same ids on every retry and
    re-run, and a receiver de-duplicates on it.

    A batch is delivered on a 2xx. Connection errors, timeouts, 408, 429 and 5xx are
    retried, at most ``max_attempts`` requests per batch, waiting ``Retry-After`` when the
    answer has one (capped at ``max_backoff``) and otherwise a full-jitter exponential
    backoff: a fraction in [0, 1), fixed by the batch's id and the attempt, of
    ``min(max_backoff, backoff * 2 ** (attempt - 1))``. Other answers (3xx: redirects are
    not followed; 4xx) are final. 410 Gone stops the delivery: that batch and the rest
    are dead-lettered unsent; so are the rest after ``stop_after_failed_batches``
    batches in a row failed every retry (the endpoint looks down).

    Everything is checked before the first request: the parameters, the URL against the
    allowlist (:func:`check_url`), the secret, every record (JSON), the dead-letter file.

    Parameters
    ----------
    records
        JSON-ready mappings. NaN and infinities are sent as null, dates and times as
        ISO 8601 text; keys are sorted.
    url
        The webhook (see :func:`check_url` for what is allowed).
    secret
        ``whsec_<base64>``; several (during a rotation: new and old) sign each request
        once each, space-separated in ``webhook-signature``.
    batch_size
        Records per request.
    max_attempts
        Requests per batch at most (1: no retry).
    backoff, max_backoff
        Seconds: the first retry's maximum wait, and the cap of every wait.
    timeout
        Seconds for connecting and for each read of the answer.
    allowlist
        The allowed targets (``activation.exports.webhook_allowlist``).
    dead_letter
        The JSON Lines file failed batches are appended to (created with mode 0600 when
        the first batch fails). An existing file is appended to only when its first line
        is :data:`DEAD_LETTER_HEADER`; its folder must exist.
    idempotency_prefix
        Names the export in every webhook-id (letters, digits, ``_``, ``-``; at most 128):
        the same for a re-run that should be de-duplicated, new for a new export.
    event_type
        The envelope's ``type`` (full-stop delimited identifiers, e.g.
        ``segvalue.audience``).
    stop_after_failed_batches
        Batches in a row that fail every retry before the rest are dead-lettered
        unsent (None: keep trying every batch).
    protected
        Paths the dead-letter file may not be (the inputs), each with what it is.
    sleep, now
        The clock (injected by tests): waiting, and seconds since the epoch.

    Returns
    -------
    DeliveryReport

    Raises
    ------
    ConfigError
        A parameter, the URL, the secret or the dead-letter file is refused (before any
        request).
    DataValidationError
        A record is not JSON (before any request).
    WriteError
        The dead-letter file cannot be written.

    Examples
    --------
    >>> import pathlib, tempfile
    >>> dead = pathlib.Path(tempfile.mkdtemp()) / "dead.jsonl"
    >>> secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
    >>> report = deliver([], url="https://hooks.example.com/in", secret=secret,
    ...                  allowlist=["https://hooks.example.com"], dead_letter=dead,
    ...                  idempotency_prefix="audience-vip-20250101")
    >>> report.batches, report.attempts, report.ok
    (0, 0, True)
    >>> deliver([{"id": 1}], url="https://other.example.com/in", secret=secret,
    ...         allowlist=["https://hooks.example.com"], dead_letter=dead,
    ...         idempotency_prefix="audience-vip-20250101")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    segvalue.errors.ConfigError: webhook url 'https://other.example.com/in' is not an allowed ...
    """
    _check_number("batch_size", batch_size, low=1, integer=True)
    _check_number("max_attempts", max_attempts, low=1, integer=True)
    _check_number("backoff", backoff, low=0)
    _check_number("max_backoff", max_backoff, low=0)
    _check_number("timeout", timeout, low=0, open_low=True)
    if stop_after_failed_batches is not None:
        _check_number("stop_after_failed_batches", stop_after_failed_batches, low=1, integer=True)
    target = _target(url, allowlist)
    secrets = [secret] if isinstance(secret, str) else list(secret)
    if not secrets:
        raise ConfigError(
            "no webhook secret given", fix="give the whsec_... secret", parameter="secret"
        )
    keys = [_secret_key(s) for s in secrets]
    if not isinstance(idempotency_prefix, str) or not _PREFIX.fullmatch(idempotency_prefix):
        raise ConfigError(
            f"`idempotency_prefix` {safe_text(str(idempotency_prefix))[:80]!r} is not 1-128 "
            "letters, digits, '_' or '-' starting with a letter or digit",
            fix="name the export plainly, e.g. audience-vip-20250101",
            parameter="idempotency_prefix",
        )
    if not isinstance(event_type, str) or not _EVENT_TYPE.fullmatch(event_type):
        raise ConfigError(
            f"`event_type` {safe_text(str(event_type))[:80]!r} is not full-stop delimited "
            "identifiers of letters, digits and '_'",
            fix="e.g. segvalue.audience",
            parameter="event_type",
        )
    dead_path = _check_dead_letter(Path(dead_letter), protected)
    batches = _batches(records, batch_size, idempotency_prefix, event_type)

    statuses: dict[str, int] = {}
    attempts = retried = delivered_batches = delivered_records = 0
    dead_batches = dead_records = 0
    failed_in_a_row = 0
    stopped: str | None = None
    dead = _DeadLetters(dead_path)

    def bury(batch: _Batch, tries: int, outcome: _Outcome | None, why: str | None) -> None:
        nonlocal dead_batches, dead_records
        dead.append(
            {
                "webhook_id": batch.msg_id,
                "type": event_type,
                "export": idempotency_prefix,
                "batch": batch.number,
                "url": target.shown,
                "attempts": tries,
                "status": None if outcome is None else outcome.status,
                "error": why if outcome is None else outcome.error,
                "failed_at": _when(now()),
                "count": len(batch.records),
                "records": batch.records,
            }
        )
        dead_batches += 1
        dead_records += len(batch.records)
        _log.warning(
            "webhook batch %s (%d records) dead-lettered after %d attempts: %s",
            batch.msg_id,
            len(batch.records),
            tries,
            why if outcome is None else outcome.kind,
        )

    try:
        for batch in batches:
            if stopped is not None:
                bury(batch, 0, None, f"not sent: {stopped}")
                continue
            outcome: _Outcome | None = None
            tries = 0
            while tries < max_attempts:
                if tries:
                    wait = _retry_after(outcome.retry_after if outcome else None, now())
                    if wait is None:
                        ceiling = min(max_backoff, backoff * 2.0 ** min(tries - 1, 60))
                        wait = _jitter(batch.msg_id, tries) * ceiling
                    sleep(min(wait, max_backoff))
                    retried += 1
                stamp = int(now())
                headers = {
                    "Content-Type": "application/json",
                    "User-Agent": "segvalue-webhooks",
                    "Connection": "close",
                    "webhook-id": batch.msg_id,
                    "webhook-timestamp": str(stamp),
                    "webhook-signature": " ".join(
                        _signature(key, batch.msg_id, stamp, batch.body) for key in keys
                    ),
                    "Idempotency-Key": f'"{batch.msg_id}"',
                }
                outcome = _post(target, headers, batch.body, timeout)
                tries += 1
                attempts += 1
                statuses[outcome.kind] = statuses.get(outcome.kind, 0) + 1
                _log.info("webhook batch %s attempt %d: %s", batch.msg_id, tries, outcome.kind)
                if outcome.delivered or not outcome.retryable:
                    break
            assert outcome is not None
            if outcome.delivered:
                delivered_batches += 1
                delivered_records += len(batch.records)
                failed_in_a_row = 0
                continue
            bury(batch, tries, outcome, None)
            if outcome.status == 410:
                stopped = "the endpoint answered 410 Gone (it no longer accepts deliveries)"
            elif outcome.retryable:
                failed_in_a_row += 1
                if (
                    stop_after_failed_batches is not None
                    and failed_in_a_row >= stop_after_failed_batches
                ):
                    stopped = (
                        f"{failed_in_a_row} batches in a row failed every retry "
                        "(the endpoint looks down)"
                    )
    finally:
        dead.close()

    return DeliveryReport(
        url=target.shown,
        batches=len(batches),
        records=sum(len(b.records) for b in batches),
        delivered_batches=delivered_batches,
        delivered_records=delivered_records,
        attempts=attempts,
        retried=retried,
        dead_lettered_batches=dead_batches,
        dead_lettered_records=dead_records,
        dead_letter=dead_path if dead_batches else None,
        statuses=statuses,
        stopped=stopped,
    )
