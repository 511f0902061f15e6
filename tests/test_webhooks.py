"""Webhook delivery against a real HTTP server on 127.0.0.1 (segvalue.data.webhooks).

The server checks every request's signature twice, with ``verify`` and with its own
HMAC, de-duplicates on the idempotency key and fails on a fixed schedule. Nobody
sleeps: ``sleep`` is injected and records the waits.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import json
import logging
import re
import socket
import stat
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from segvalue.data.webhooks import DeliveryReport, check_url, deliver, sign, verify
from segvalue.errors import ConfigError, DataValidationError

DOCS = Path(__file__).parents[1] / "docs" / "activation-webhooks.md"

SECRET = "whsec_" + base64.b64encode(bytes(range(32))).decode()
OLD_SECRET = "whsec_" + base64.b64encode(bytes(range(100, 124))).decode()
PREFIX = "audience-vip-1"
#: Query values are secrets to hide; the server ignores the query.
TOKEN = "tok3n-hunter2"

# The Standard Webhooks reference library's signing test vector:
# standard-webhooks/standard-webhooks, libraries/python/tests/test_webhooks.py,
# test_sign_function (the same values are in its other libraries' tests).
SPEC_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
SPEC_ID = "msg_p5jXN8AQM9LWM0D4loKWxJek"
SPEC_TIMESTAMP = 1614265330
SPEC_BODY = b'{"test": 2432232314}'
SPEC_SIGNATURE = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
# The reference tests' "invalid signature": the same with its last base64 digit changed.
SPEC_WRONG = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OA="


def _records(n: int, segment: str = "vip") -> list[dict[str, Any]]:
    return [
        {"customer_id": f"C{i:04d}", "email": f"c{i}@example.com", "segment": segment}
        for i in range(n)
    ]


def _hmac_signature(secret: str, msg_id: str, stamp: str, body: bytes) -> str:
    """The signature computed here, independently of the code under test."""
    key = base64.b64decode(secret.removeprefix("whsec_"))
    mac = hmac.new(key, msg_id.encode() + b"." + stamp.encode() + b"." + body, hashlib.sha256)
    return "v1," + base64.b64encode(mac.digest()).decode()


# -- the receiving server ------------------------------------------------------------

Plan = Callable[[int, int], Any]  # (batch number, attempt of this id) -> what to do


def _always_ok(batch: int, attempt: int) -> Any:
    return 200


class Receiver(ThreadingHTTPServer):
    """A webhook receiver: checks signatures, de-duplicates, fails as planned.

    A plan's answer is a status, ``(status, retry_after)``, ``"lose-answer"`` (store the
    batch, then drop the connection without answering) or ``"hang"`` (answer nothing
    until released: the client times out).
    """

    daemon_threads = True

    def __init__(self, plan: Plan = _always_ok, secrets: tuple[str, ...] = (SECRET,)) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.plan = plan
        self.secrets = secrets
        self.lock = threading.Lock()
        self.requests: list[tuple[str, int]] = []  # (webhook-id, batch), in order
        self.tries: Counter[str] = Counter()
        self.accepted: dict[str, list[dict[str, Any]]] = {}
        self.duplicates = 0
        self.problems: list[str] = []
        self.bodies: list[bytes] = []
        self.release = threading.Event()
        #: When set, decides the answer instead of the built-in store (the docs' receiver).
        self.app: Callable[[Any, bytes], int] | None = None

    @property
    def port(self) -> int:
        return int(self.server_address[1])

    @property
    def origin(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return f"{self.origin}/hooks/in?hook={TOKEN}"

    def check(self, headers: dict[str, str], body: bytes) -> list[str]:
        problems = []
        msg_id = headers.get("webhook-id", "")
        stamp = headers.get("webhook-timestamp", "")
        offered = headers.get("webhook-signature", "").split(" ")
        for secret in self.secrets:
            if not verify(secret, headers, body):
                problems.append(f"{msg_id}: verify() refused it")
            if _hmac_signature(secret, msg_id, stamp, body) not in offered:
                problems.append(f"{msg_id}: no signature equals the test's own HMAC")
        if len(offered) != len(self.secrets):
            problems.append(f"{msg_id}: {len(offered)} signatures for {len(self.secrets)}")
        if not re.fullmatch(r"[A-Za-z0-9_-]+_[0-9]+_[0-9a-f]{32}", msg_id):
            problems.append(f"{msg_id}: malformed id")
        if headers.get("Idempotency-Key") != f'"{msg_id}"':
            problems.append(f"{msg_id}: Idempotency-Key {headers.get('Idempotency-Key')}")
        if not stamp.isdigit() or abs(int(stamp) - time.time()) > 5:
            problems.append(f"{msg_id}: timestamp {stamp!r} is not now")
        if headers.get("Content-Type") != "application/json":
            problems.append(f"{msg_id}: content type {headers.get('Content-Type')}")
        return problems

    def store(self, msg_id: str, records: list[dict[str, Any]]) -> None:
        with self.lock:
            if msg_id in self.accepted:
                self.duplicates += 1
            else:
                self.accepted[msg_id] = records

    def delivered(self) -> Counter[str]:
        """How often each customer was stored (after de-duplication by key)."""
        return Counter(r["customer_id"] for rs in self.accepted.values() for r in rs)


class _Handler(BaseHTTPRequestHandler):
    server: Receiver

    def do_POST(self) -> None:
        server = self.server
        body = self.rfile.read(int(self.headers["Content-Length"]))
        headers = dict(self.headers.items())
        msg_id = headers.get("webhook-id", "")
        envelope = json.loads(body)
        with server.lock:
            server.tries[msg_id] += 1
            attempt = server.tries[msg_id]
            server.requests.append((msg_id, envelope["batch"]))
            server.bodies.append(body)
        action = server.plan(envelope["batch"], attempt)
        problems = server.check(headers, body)
        if problems:
            with server.lock:
                server.problems.extend(problems)
            self._answer(401)
            return
        if action == "hang":
            server.release.wait(5)
            self.close_connection = True
            return
        if isinstance(action, tuple):
            self._answer(action[0], retry_after=action[1])
            return
        if action not in ("lose-answer", 200):
            self._answer(int(action))
            return
        if server.app is not None:
            status = server.app(self.headers, body)
        else:
            server.store(msg_id, envelope["records"])
            status = 200
        if action == "lose-answer":
            self.close_connection = True  # stored, but the client never hears so
            return
        self._answer(status)

    def _answer(self, status: int, retry_after: str | None = None) -> None:
        self.send_response(status)
        if retry_after is not None:
            self.send_header("Retry-After", retry_after)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        pass  # quiet


@pytest.fixture
def serve() -> Iterator[Callable[..., Receiver]]:
    started: list[tuple[Receiver, threading.Thread]] = []

    def start(plan: Plan = _always_ok, **kwargs: Any) -> Receiver:
        server = Receiver(plan, **kwargs)
        thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        thread.start()
        started.append((server, thread))
        return server

    yield start
    for server, thread in started:
        server.release.set()
        server.shutdown()
        server.server_close()
        thread.join(5)


def _deliver(
    server: Receiver, records: list[dict[str, Any]], tmp_path: Path, sleeps: list[float], **kw: Any
) -> DeliveryReport:
    options: dict[str, Any] = {
        "url": server.url,
        "secret": SECRET,
        "allowlist": [server.origin],
        "dead_letter": tmp_path / "dead.jsonl",
        "idempotency_prefix": PREFIX,
        "batch_size": 5,
        "backoff": 0.5,
        "max_backoff": 2.0,
        "timeout": 5.0,
        "sleep": sleeps.append,
    }
    options.update(kw)
    return deliver(records, **options)


def _dead_letters(path: Path) -> list[dict[str, Any]]:
    lines = path.read_text(encoding="utf-8").splitlines()
    assert json.loads(lines[0]) == {"segvalue_webhook_dead_letters": 1}
    return [json.loads(line) for line in lines[1:]]


# -- signing: the specification's test vector and verification -----------------------


def test_sign_reproduces_the_specification_test_vector() -> None:
    assert sign(SPEC_SECRET, SPEC_ID, SPEC_TIMESTAMP, SPEC_BODY) == SPEC_SIGNATURE
    # Without the whsec_ prefix the rest is read as base64 (the reference library does).
    bare = SPEC_SECRET.removeprefix("whsec_")
    assert sign(bare, SPEC_ID, SPEC_TIMESTAMP, SPEC_BODY) == SPEC_SIGNATURE
    # The test's own HMAC agrees: the vector pins both.
    assert _hmac_signature(SPEC_SECRET, SPEC_ID, str(SPEC_TIMESTAMP), SPEC_BODY) == SPEC_SIGNATURE


def test_sign_accepts_unpadded_base64_and_refuses_a_dot_in_the_id() -> None:
    padded = SECRET  # 32 bytes: base64 ends with '='
    assert padded.endswith("=")
    assert sign(padded.rstrip("="), "m1", 1, b"x") == sign(padded, "m1", 1, b"x")
    assert sign(padded, "m1", 1, b"x") != sign(OLD_SECRET, "m1", 1, b"x")
    with pytest.raises(ConfigError, match=r"without '\.'") as info:
        sign(SECRET, "a.b", 1, b"x")
    assert info.value.parameter == "msg_id"


def _spec_headers(signature: str = SPEC_SIGNATURE, **changes: str) -> dict[str, str]:
    headers = {
        "webhook-id": SPEC_ID,
        "webhook-timestamp": str(SPEC_TIMESTAMP),
        "webhook-signature": signature,
    }
    headers.update(changes)
    return headers


@pytest.mark.parametrize(
    ("offset", "expected"), [(0, True), (300, True), (-300, True), (301, False), (-301, False)]
)
def test_verify_timestamp_tolerance_both_ways(offset: int, expected: bool) -> None:
    # now - timestamp = offset: 5 minutes either way, as the reference libraries.
    now = SPEC_TIMESTAMP + offset
    assert verify(SPEC_SECRET, _spec_headers(), SPEC_BODY, now=now) is expected


def test_verify_tolerance_is_a_parameter() -> None:
    now = SPEC_TIMESTAMP + 100
    assert verify(SPEC_SECRET, _spec_headers(), SPEC_BODY, now=now, tolerance=100)
    assert not verify(SPEC_SECRET, _spec_headers(), SPEC_BODY, now=now, tolerance=99)


@pytest.mark.parametrize(
    "signature",
    [
        SPEC_SIGNATURE,
        # the reference test test_multi_sig_payload_is_valid: other versions and wrong
        # v1 signatures around the right one
        "v1,Ceo5qEr07ixe2NLpvHk3FH9bwy/WavXrAFQ/9tdO6mc= "
        "v2,Ceo5qEr07ixe2NLpvHk3FH9bwy/WavXrAFQ/9tdO6mc= "
        f"{SPEC_SIGNATURE} v1,Ceo5qEr07ixe2NLpvHk3FH9bwy/WavXrAFQ/9tdO6mc=",
        f"garbage v1, v1,@@@ {SPEC_SIGNATURE}",  # malformed entries are skipped
    ],
)
def test_verify_accepts_one_valid_signature_among_several(signature: str) -> None:
    assert verify(SPEC_SECRET, _spec_headers(signature), SPEC_BODY, now=SPEC_TIMESTAMP)


@pytest.mark.parametrize(
    ("headers", "body"),
    [
        (_spec_headers(SPEC_WRONG), SPEC_BODY),
        (_spec_headers("garbage v1, v1,@@@"), SPEC_BODY),
        (_spec_headers(), SPEC_BODY + b" "),  # tampered body
        (_spec_headers(**{"webhook-id": SPEC_ID + "x"}), SPEC_BODY),
        (_spec_headers(**{"webhook-timestamp": str(SPEC_TIMESTAMP + 1)}), SPEC_BODY),
        (_spec_headers(**{"webhook-timestamp": f"{SPEC_TIMESTAMP}.0"}), SPEC_BODY),
        (_spec_headers(**{"webhook-timestamp": "hello"}), SPEC_BODY),
        (_spec_headers("v1a," + SPEC_SIGNATURE[3:]), SPEC_BODY),  # right bytes, other scheme
        (_spec_headers(SPEC_SIGNATURE.replace("v1,", "v1 ")), SPEC_BODY),
        (
            {"webhook-timestamp": str(SPEC_TIMESTAMP), "webhook-signature": SPEC_SIGNATURE},
            SPEC_BODY,
        ),
        ({"webhook-id": SPEC_ID, "webhook-signature": SPEC_SIGNATURE}, SPEC_BODY),
        ({"webhook-id": SPEC_ID, "webhook-timestamp": str(SPEC_TIMESTAMP)}, SPEC_BODY),
    ],
)
def test_verify_refuses(headers: dict[str, str], body: bytes) -> None:
    assert not verify(SPEC_SECRET, headers, body, now=SPEC_TIMESTAMP)


def test_verify_refuses_another_secret_and_reads_headers_without_case() -> None:
    assert not verify(SECRET, _spec_headers(), SPEC_BODY, now=SPEC_TIMESTAMP)
    shouting = {k.title(): v for k, v in _spec_headers().items()}
    assert "Webhook-Signature" in shouting
    assert verify(SPEC_SECRET, shouting, SPEC_BODY, now=SPEC_TIMESTAMP)


@pytest.mark.parametrize(
    ("secret", "message"),
    [
        ("whsec_!!!not-base64!!!", "not base64"),
        ("whsec_" + base64.b64encode(b"x" * 23).decode(), "holds 23 bytes"),
        ("whsec_" + base64.b64encode(b"x" * 65).decode(), "holds 65 bytes"),
        ("", "holds 0 bytes"),
    ],
)
def test_a_bad_secret_is_refused_without_showing_it(secret: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message) as info:
        sign(secret, "m1", 1, b"x")
    assert info.value.parameter == "secret"
    body = secret.removeprefix("whsec_")
    assert not body or body not in str(info.value)
    with pytest.raises(ConfigError):
        verify(secret, _spec_headers(), SPEC_BODY)


# -- delivery through failures ---------------------------------------------------------


def _flaky(batch: int, attempt: int) -> Any:
    if attempt > 1:
        return 200
    if batch == 2:
        return "lose-answer"
    if batch == 4:
        return (429, "0")
    if batch == 7:
        return (500, "3600")  # far beyond max_backoff: capped
    if batch % 3 == 0:
        return 503
    return 200


def test_every_record_arrives_exactly_once_through_failures(
    serve: Callable[..., Receiver], tmp_path: Path
) -> None:
    server = serve(_flaky)
    records = _records(47)  # 10 batches of 5, the last of 2
    sleeps: list[float] = []
    report = _deliver(server, records, tmp_path, sleeps)

    assert server.problems == []
    assert server.delivered() == Counter(r["customer_id"] for r in records)
    assert set(server.delivered().values()) == {1}
    # Batch 2 was stored, its answer lost, and sent again with the same key.
    assert server.duplicates == 1
    assert len(server.accepted) == 10
    # Retried batches 2, 3, 4, 6, 7, 9 once each; nobody exceeded max_attempts.
    assert max(server.tries.values()) == 2
    assert sorted(b for b, n in Counter(b for _, b in server.requests).items() if n == 2) == [
        2,
        3,
        4,
        6,
        7,
        9,
    ]
    assert report.to_dict() == {
        "url": f"{server.origin}/hooks/in?hook=***",
        "batches": 10,
        "records": 47,
        "delivered_batches": 10,
        "delivered_records": 47,
        "attempts": 16,
        "retried": 6,
        "dead_lettered_batches": 0,
        "dead_lettered_records": 0,
        "dead_letter": None,
        "statuses": {"200": 10, "429": 1, "500": 1, "503": 3, "connection_error": 1},
        "stopped": None,
        "ok": True,
    }
    assert report.attempts == len(server.requests)
    assert not (tmp_path / "dead.jsonl").exists()
    # Waits, in batch order 2, 3, 4, 6, 7, 9: Retry-After 0 is honoured, 3600 is capped at
    # max_backoff; the others are full jitter below `backoff`, each different.
    assert len(sleeps) == 6
    assert sleeps[2] == 0.0
    assert sleeps[4] == 2.0
    jittered = [sleeps[i] for i in (0, 1, 3, 5)]
    assert all(0 <= s <= 0.5 for s in jittered)
    assert len(set(jittered)) == 4


def test_a_rerun_sends_the_same_ids_and_a_changed_batch_a_new_one(
    serve: Callable[..., Receiver], tmp_path: Path
) -> None:
    server = serve()
    records = _records(23)  # 5 batches
    first = _deliver(server, records, tmp_path, [])
    ids = set(server.accepted)
    assert first.delivered_records == 23
    assert len(ids) == 5

    again = _deliver(server, records, tmp_path, [])
    assert again.delivered_records == 23
    assert set(server.accepted) == ids  # every id seen before: de-duplicated
    assert server.duplicates == 5
    assert {msg_id for msg_id, _ in server.requests[5:]} == ids

    # The id is over the records' content, not the order of their keys.
    reordered = [dict(reversed(list(r.items()))) for r in records]
    assert list(reordered[0]) != list(records[0])
    _deliver(server, reordered, tmp_path, [])
    assert set(server.accepted) == ids
    assert server.duplicates == 10

    changed = [dict(r) for r in records]
    changed[0]["segment"] = "lapsed"  # batch 1 only
    _deliver(server, changed, tmp_path, [])
    new = set(server.accepted) - ids
    assert len(new) == 1
    assert next(iter(new)).startswith(f"{PREFIX}_1_")
    assert server.duplicates == 14
    # Another export of the same records is not taken for this one.
    _deliver(server, records, tmp_path, [], idempotency_prefix="audience-vip-2")
    assert len(server.accepted) == 11
    assert sum(i.startswith("audience-vip-2_") for i in server.accepted) == 5
    assert server.problems == []


def _down(batch: int, attempt: int) -> Any:
    return 503


def test_a_server_that_stays_down_dead_letters_every_batch(
    serve: Callable[..., Receiver], tmp_path: Path
) -> None:
    server = serve(_down)
    records = _records(12)  # 3 batches
    sleeps: list[float] = []
    options = {"max_attempts": 4, "backoff": 1.0, "max_backoff": 1.5}
    report = _deliver(server, records, tmp_path, sleeps, stop_after_failed_batches=None, **options)

    assert server.problems == []
    assert len(server.requests) == 12
    assert set(server.tries.values()) == {4}
    assert (report.delivered_records, report.dead_lettered_batches) == (0, 3)
    assert (report.dead_lettered_records, report.attempts, report.retried) == (12, 12, 9)
    assert report.statuses == {"503": 12}
    assert not report.ok
    dead = tmp_path / "dead.jsonl"
    assert report.dead_letter == dead
    assert stat.S_IMODE(dead.stat().st_mode) == 0o600
    entries = _dead_letters(dead)
    assert [e["batch"] for e in entries] == [1, 2, 3]
    assert [e["records"] for e in entries] == [records[0:5], records[5:10], records[10:12]]
    assert [e["count"] for e in entries] == [5, 5, 2]
    assert [e["webhook_id"] for e in entries] == list(server.tries)
    for entry in entries:
        assert entry["attempts"] == 4
        assert entry["status"] == 503
        assert entry["error"] is None
        assert entry["url"] == f"{server.origin}/hooks/in?hook=***"
        assert entry["export"] == PREFIX
        assert dt.datetime.fromisoformat(entry["failed_at"]).tzinfo is not None
    assert TOKEN not in dead.read_text()
    # Waits grow as backoff * 2**(n-1), capped at max_backoff: ceilings 1, 1.5, 1.5.
    assert len(sleeps) == 9
    for batch in range(3):
        waits = sleeps[batch * 3 : batch * 3 + 3]
        assert all(0 <= w <= c for w, c in zip(waits, (1.0, 1.5, 1.5), strict=True)), waits

    # A second run appends to segvalue's file, and waits exactly as long (same ids).
    again: list[float] = []
    _deliver(server, records, tmp_path, again, stop_after_failed_batches=None, **options)
    assert again == sleeps
    entries = _dead_letters(dead)
    assert len(entries) == 6
    assert dead.read_text().count("segvalue_webhook_dead_letters") == 1
    assert [e["webhook_id"] for e in entries[3:]] == [e["webhook_id"] for e in entries[:3]]

    # A line cut short (a killed run) stays apart from the next one.
    with dead.open("a") as handle:
        handle.write('{"webhook_id": "cut sh')
    _deliver(server, records[:5], tmp_path, [], max_attempts=1)
    *_, cut, last = dead.read_text().splitlines()
    assert cut == '{"webhook_id": "cut sh'
    assert json.loads(last)["records"] == records[:5]


def test_delivery_stops_after_batches_fail_in_a_row(
    serve: Callable[..., Receiver], tmp_path: Path
) -> None:
    server = serve(_down)
    records = _records(25)  # 5 batches
    report = _deliver(server, records, tmp_path, [], max_attempts=2, stop_after_failed_batches=2)
    assert len(server.requests) == 4  # batches 1 and 2, twice each
    assert report.stopped is not None and "2 batches in a row" in report.stopped
    entries = _dead_letters(tmp_path / "dead.jsonl")
    assert [e["attempts"] for e in entries] == [2, 2, 0, 0, 0]
    assert [e["status"] for e in entries] == [503, 503, None, None, None]
    assert all(e["error"].startswith("not sent: ") for e in entries[2:])
    assert sum(len(e["records"]) for e in entries) == 25 == report.dead_lettered_records


def test_a_success_resets_the_count_of_failed_batches(
    serve: Callable[..., Receiver], tmp_path: Path
) -> None:
    server = serve(lambda batch, attempt: 503 if batch in (1, 3) else 200)
    report = _deliver(
        server, _records(20), tmp_path, [], max_attempts=2, stop_after_failed_batches=2
    )
    assert report.stopped is None
    assert sorted({b for _, b in server.requests}) == [1, 2, 3, 4]
    assert (report.delivered_batches, report.dead_lettered_batches) == (2, 2)


def test_a_bad_request_is_not_retried(serve: Callable[..., Receiver], tmp_path: Path) -> None:
    server = serve(lambda batch, attempt: 400 if batch == 2 else 200)
    records = _records(15)
    sleeps: list[float] = []
    report = _deliver(server, records, tmp_path, sleeps)
    assert [b for _, b in server.requests] == [1, 2, 3]
    assert sleeps == []
    assert (report.attempts, report.retried, report.delivered_records) == (3, 0, 10)
    assert report.statuses == {"200": 2, "400": 1}
    (entry,) = _dead_letters(tmp_path / "dead.jsonl")
    assert (entry["batch"], entry["attempts"], entry["status"]) == (2, 1, 400)
    assert entry["records"] == records[5:10]
    assert server.delivered() == Counter(r["customer_id"] for r in records[:5] + records[10:])


def test_gone_stops_the_delivery(serve: Callable[..., Receiver], tmp_path: Path) -> None:
    server = serve(lambda batch, attempt: 410 if batch == 2 else 200)
    report = _deliver(server, _records(20), tmp_path, [])
    assert [b for _, b in server.requests] == [1, 2]
    assert report.stopped is not None and "410" in report.stopped
    entries = _dead_letters(tmp_path / "dead.jsonl")
    assert [(e["batch"], e["attempts"], e["status"]) for e in entries] == [
        (2, 1, 410),
        (3, 0, None),
        (4, 0, None),
    ]


def test_a_refused_connection_is_retried_then_dead_lettered(tmp_path: Path) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    sleeps: list[float] = []
    report = deliver(
        _records(3),
        url=f"http://127.0.0.1:{port}/in",
        secret=SECRET,
        allowlist=[f"http://127.0.0.1:{port}"],
        dead_letter=tmp_path / "dead.jsonl",
        idempotency_prefix=PREFIX,
        max_attempts=3,
        sleep=sleeps.append,
    )
    assert report.statuses == {"connection_error": 3}
    assert len(sleeps) == 2
    (entry,) = _dead_letters(tmp_path / "dead.jsonl")
    assert entry["status"] is None
    assert entry["error"].startswith("ConnectionRefusedError")


def test_a_timeout_is_retried(serve: Callable[..., Receiver], tmp_path: Path) -> None:
    server = serve(lambda batch, attempt: "hang" if attempt == 1 else 200)
    report = _deliver(server, _records(3), tmp_path, [], timeout=0.3)
    assert report.statuses == {"timeout": 1, "200": 1}
    assert report.delivered_records == 3
    assert server.duplicates == 0


def test_rotation_signs_with_every_secret(serve: Callable[..., Receiver], tmp_path: Path) -> None:
    server = serve(secrets=(SECRET, OLD_SECRET))  # checks one signature per secret
    report = _deliver(server, _records(7), tmp_path, [], secret=[SECRET, OLD_SECRET])
    assert server.problems == []
    assert report.delivered_records == 7


# -- refusals before any request -------------------------------------------------------


@pytest.mark.parametrize(
    "allowlist",
    [
        [],
        ["http://127.0.0.1:1"],  # another port
        ["https://127.0.0.1:{port}"],  # another scheme
        ["http://127.0.0.1:{port}/other/*"],  # another path
        ["http://localhost:{port}"],  # another host, even if it is the same machine
    ],
)
def test_a_target_off_the_allowlist_is_refused_before_any_request(
    serve: Callable[..., Receiver], tmp_path: Path, allowlist: list[str]
) -> None:
    server = serve()
    entries = [a.format(port=server.port) for a in allowlist]
    with pytest.raises(ConfigError, match="not an allowed webhook target") as info:
        _deliver(server, _records(3), tmp_path, [], allowlist=entries)
    message = str(info.value)
    assert f"'{server.origin}/hooks/in?hook=***'" in message
    assert TOKEN not in message
    assert f"add '{server.origin}'" in message
    assert server.requests == []
    assert not (tmp_path / "dead.jsonl").exists()


ALLOWED = [
    ("https://hooks.example.com/a", ["https://hooks.example.com"]),
    ("https://HOOKS.example.com:443/a", ["https://hooks.example.com/*"]),
    ("https://hooks.example.com./a", ["https://hooks.example.com/"]),
    ("https://hooks.example.com/segvalue/x", ["https://hooks.example.com/segvalue/*"]),
    ("https://hooks.example.com/in", ["https://other.example.com", "https://hooks.example.com/in"]),
    ("https://h.example.com:8443/in", ["https://h.example.com:8443"]),
    ("http://127.0.0.1:8080/in", ["http://127.0.0.1:8080"]),
    ("http://127.0.0.2/in", ["http://127.0.0.2:80"]),
    ("http://[::1]:8080/in", ["http://[::1]:8080"]),
    ("http://localhost/in", ["http://localhost"]),
    ("http://127.0.0.1:54321/in", ["http://127.0.0.1:*"]),  # local receivers on any port
    ("https://[::1]:8443/in", ["https://[::1]:*/in"]),
]


@pytest.mark.parametrize(("url", "allowlist"), ALLOWED)
def test_allowlist_allows(url: str, allowlist: list[str]) -> None:
    assert check_url(url, allowlist) == url


REFUSED = [
    ("https://hooks.example.com.evil.io/a", ["https://hooks.example.com/*"]),
    ("https://evil.io/?next=https://hooks.example.com", ["https://hooks.example.com"]),
    ("http://hooks.example.com/a", ["https://hooks.example.com"]),
    ("https://hooks.example.com:8443/a", ["https://hooks.example.com"]),
    ("https://hooks.example.com/other", ["https://hooks.example.com/segvalue/*"]),
    ("https://hooks.example.com/in/more", ["https://hooks.example.com/in"]),
    ("https://hooks.example.com/segvalue/../admin", ["https://hooks.example.com/segvalue/*"]),
    ("https://hooks.example.com/segvalue/%2e%2e/admin", ["https://hooks.example.com/segvalue/*"]),
    ("https://ann:hunter2@hooks.example.com/a", ["https://hooks.example.com"]),
    ("ftp://hooks.example.com/a", ["https://hooks.example.com"]),
    ("https:///a", ["https://hooks.example.com"]),
    ("https://hooks.example.com/a b", ["https://hooks.example.com"]),
    ("https://hooks.example.com/a", []),
    ("http://127.0.0.2:8080/in", ["http://127.0.0.1:*"]),
    ("https://127.0.0.1:8443/in", ["http://127.0.0.1:*"]),
]


@pytest.mark.parametrize(("url", "allowlist"), REFUSED)
def test_allowlist_refuses(url: str, allowlist: list[str]) -> None:
    with pytest.raises(ConfigError) as info:
        check_url(url, allowlist)
    assert info.value.parameter == "url"
    assert "hunter2" not in str(info.value)


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ("http://hooks.example.com", "plain http"),
        ("http://10.0.0.5:8080", "plain http"),
        ("https://*.example.com", "host wildcard"),
        ("https://hooks.example.com:*", "port wildcard is allowed for this machine only"),
        ("https://10.0.0.5:*", "port wildcard is allowed for this machine only"),
        ("https://hooks.example.com/a*b", "may only end the path"),
        ("https://ann:hunter2@hooks.example.com", "credentials"),
        ("https://hooks.example.com/?token=x", "query"),
        ("ftp://hooks.example.com", "not an http"),
        ("hooks.example.com", "not an http"),
    ],
)
def test_a_bad_allowlist_entry_is_refused(entry: str, message: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(message)) as info:
        check_url("https://hooks.example.com/a", ["https://hooks.example.com", entry])
    assert info.value.parameter == "allowlist"
    assert "hunter2" not in str(info.value)


def test_a_dead_letter_file_segvalue_did_not_write_is_refused(
    serve: Callable[..., Receiver], tmp_path: Path
) -> None:
    server = serve(_down)
    mine = tmp_path / "dead.jsonl"
    for text in ("my notes\n", "", 'x\n{"segvalue_webhook_dead_letters": 1}\n'):
        mine.write_text(text)
        with pytest.raises(ConfigError, match="segvalue did not write it") as info:
            _deliver(server, _records(3), tmp_path, [])
        assert info.value.parameter == "dead_letter"
        assert mine.read_text() == text
    source = tmp_path / "customers.csv"
    source.write_text("customer_id\n")
    with pytest.raises(ConfigError, match="is the customers file"):
        _deliver(
            server,
            _records(3),
            tmp_path,
            [],
            dead_letter=source,
            protected={source: "the customers file"},
        )
    with pytest.raises(ConfigError, match="does not exist"):
        _deliver(server, _records(3), tmp_path, [], dead_letter=tmp_path / "no" / "dead.jsonl")
    with pytest.raises(ConfigError, match="is a folder"):
        _deliver(server, _records(3), tmp_path, [], dead_letter=tmp_path)
    assert server.requests == []


@pytest.mark.parametrize(
    ("changes", "parameter"),
    [
        ({"batch_size": 0}, "batch_size"),
        ({"batch_size": 2.5}, "batch_size"),
        ({"max_attempts": 0}, "max_attempts"),
        ({"backoff": -1}, "backoff"),
        ({"max_backoff": float("nan")}, "max_backoff"),
        ({"timeout": 0}, "timeout"),
        ({"stop_after_failed_batches": 0}, "stop_after_failed_batches"),
        ({"idempotency_prefix": "audience.vip"}, "idempotency_prefix"),
        ({"idempotency_prefix": ""}, "idempotency_prefix"),
        ({"idempotency_prefix": "a" * 129}, "idempotency_prefix"),
        ({"event_type": "segvalue audience"}, "event_type"),
        ({"secret": "whsec_c2hvcnQ="}, "secret"),
        ({"secret": []}, "secret"),
    ],
)
def test_bad_parameters_are_refused_before_any_request(
    serve: Callable[..., Receiver], tmp_path: Path, changes: dict[str, Any], parameter: str
) -> None:
    server = serve()
    with pytest.raises(ConfigError) as info:
        _deliver(server, _records(3), tmp_path, [], **changes)
    assert info.value.parameter == parameter
    assert server.requests == []


def test_a_record_that_is_not_json_is_refused_without_showing_it(
    serve: Callable[..., Receiver], tmp_path: Path
) -> None:
    server = serve()
    records = [*_records(7), {"email": "ann@secret.example", "tags": {"ann@secret.example"}}]
    with pytest.raises(DataValidationError, match="record 7 cannot be sent as JSON") as info:
        _deliver(server, records, tmp_path, [])
    assert "type set" in str(info.value)
    assert "ann@secret.example" not in str(info.value)
    with pytest.raises(DataValidationError, match="record 1 is a list"):
        _deliver(server, [{"a": 1}, ["ann@secret.example"]], tmp_path, [])
    assert server.requests == []


def test_nan_is_sent_as_null_and_times_as_iso_text(
    serve: Callable[..., Receiver], tmp_path: Path
) -> None:
    # What Arrow's to_pylist gives for an audience (send_at_utc is a timestamp column).
    record = {
        "customer_id": "C1",
        "clv": float("nan"),
        "send_at_utc": dt.datetime(2025, 1, 2, 9, 30, tzinfo=dt.UTC),
        "send_at_local": dt.datetime(2025, 1, 2, 10, 30),
        "day": dt.date(2025, 1, 2),
    }
    server = serve(lambda batch, attempt: 400)
    report = _deliver(server, [record], tmp_path, [])
    sent = {
        "customer_id": "C1",
        "clv": None,
        "send_at_utc": "2025-01-02T09:30:00+00:00",
        "send_at_local": "2025-01-02T10:30:00",
        "day": "2025-01-02",
    }
    (body,) = server.bodies
    assert json.loads(body)["records"] == [sent]
    (entry,) = _dead_letters(tmp_path / "dead.jsonl")
    assert entry["records"] == [sent]  # the dead letter holds what was sent
    assert report.dead_lettered_records == 1


# -- privacy ---------------------------------------------------------------------------


def test_record_contents_are_never_logged_or_printed(
    serve: Callable[..., Receiver],
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
) -> None:
    sentinel = "ann.sentinel@contact.example"
    server = serve(lambda batch, attempt: 400 if batch == 2 else (503 if attempt == 1 else 200))
    records = [{"customer_id": f"C{i}", "email": sentinel} for i in range(12)]
    caplog.set_level(logging.DEBUG)
    report = _deliver(server, records, tmp_path, [])
    assert report.dead_lettered_batches == 1
    # The log is there (batch ids and statuses) and holds no record content.
    assert "dead-lettered" in caplog.text
    assert "503" in caplog.text
    assert sentinel not in caplog.text
    captured = capsys.readouterr()
    assert sentinel not in captured.out + captured.err
    assert sentinel not in json.dumps(report.to_dict())
    assert sentinel in (tmp_path / "dead.jsonl").read_text()  # only the dead letters keep it


# -- the documented receiver -------------------------------------------------------------


def _doc_receiver() -> dict[str, Any]:
    blocks = re.findall(r"```python\n(.*?)```", DOCS.read_text(encoding="utf-8"), re.DOTALL)
    namespace: dict[str, Any] = {}
    exec(blocks[0], namespace)
    return namespace


def test_the_documented_receiver_verifies_and_stores_each_record_once(
    serve: Callable[..., Receiver], tmp_path: Path
) -> None:
    receiver = _doc_receiver()
    server = serve(lambda batch, attempt: "lose-answer" if (batch, attempt) == (2, 1) else 200)
    server.app = lambda headers, body: int(receiver["handle"](SECRET, headers, body))
    records = _records(14)
    report = _deliver(server, records, tmp_path, [])
    assert report.delivered_records == 14
    assert report.statuses == {"200": 3, "connection_error": 1}
    assert receiver["stored"] == records  # in order, each once
    # The documented check agrees with the specification's vector, and refuses forgeries.
    ok = receiver["signature_ok"]
    assert ok(SPEC_SECRET, _spec_headers(), SPEC_BODY, now=SPEC_TIMESTAMP)
    assert not ok(SPEC_SECRET, _spec_headers(SPEC_WRONG), SPEC_BODY, now=SPEC_TIMESTAMP)
    assert not ok(SPEC_SECRET, _spec_headers(), SPEC_BODY, now=SPEC_TIMESTAMP + 301)
    assert receiver["handle"](SPEC_SECRET, _spec_headers(), SPEC_BODY + b"x") == 401
