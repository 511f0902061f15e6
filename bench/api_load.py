"""Benchmark: the REST API under an open-loop load, served as a user runs it.

The goal (docs/performance.md): on the 100,000-customer demo, ``GET
/api/v1/customers/{id}`` and ``POST /api/v1/events`` at 200 requests/s for 60 s answer
with p99 <= 20 ms and no errors.

What it does, each step as a whole process where a user would run one:

1. builds the demo once with ``segvalue demo --customers N --out FOLDER`` (FOLDER:
   ``~/.cache/segvalue-bench/api-load-N`` unless ``--folder``), reused afterwards;
2. reads the latest run's customer ids and as-of date from the store;
3. creates a read and a write key (``segvalue keys create --json``), revoked at the end;
4. starts ``segvalue serve -c FOLDER/segvalue.yaml --host 127.0.0.1 --port FREE`` and
   waits for ``/health`` and for the dashboard's start-up preparation (its log line);
5. sends requests at a fixed rate (open loop: each request is due at ``start + i / rate``
   whether or not earlier ones have answered, and its latency counts from that due time,
   so time spent queued in the client or the server counts); customers are drawn with a
   seeded generator; a POST is a new order (a unique order id) for a random customer on
   the run's as-of date, amount 10-200;
6. prints per route: requests, achieved rate, p50 / p90 / p99 / max latency (ms), errors
   by status, the server's own time per request (its access log), the machine's load
   average before and after, and the verdict; then stops the server (also on Ctrl-C or a
   failure).

Bounded: at most ``--max-requests`` requests and ``--seconds`` of sending, each request
times out after ``--timeout`` s, at most ``--max-in-flight`` wait at once (more count as
errors, not sent), and the whole load phase stops after ``--seconds + --timeout + 10``
s whatever happens. Only loopback addresses are served and sent to.

Run: ``.venv/bin/python bench/api_load.py [--routes get|post|get,post] [--rate 200]
[--seconds 60] [--customers 100000] [--folder DIR] [--rebuild]``. With ``get,post`` the
rate is shared: requests alternate between the two routes.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import ipaddress
import json
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

import httpx

SEGVALUE = str(Path(sys.executable).with_name("segvalue"))
CACHE = Path.home() / ".cache" / "segvalue-bench"
GOAL_P99_MS = 20.0
ROUTES = {
    "get": ("GET", "/api/v1/customers/{customer_id}"),
    "post": ("POST", "/api/v1/events"),
}
_ACCESS = re.compile(r"segvalue\.api\.access (GET|POST) (\S+) (\d{3}) ([0-9.]+) ms")


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _free_port(host: str) -> int:
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as sock:
        sock.bind((host.strip("[]"), 0))
        return int(sock.getsockname()[1])


def _segvalue(*args: str, log: Path) -> str:
    """Run ``segvalue ARGS`` to completion; its stdout (stderr goes to ``log``)."""
    with log.open("a") as err:
        done = subprocess.run(
            [SEGVALUE, *args], check=False, stdout=subprocess.PIPE, stderr=err, text=True
        )
    if done.returncode != 0:
        raise SystemExit(f"segvalue {args[0]} failed ({done.returncode}): see {log}")
    return done.stdout


def _demo(folder: Path, customers: int, rebuild: bool) -> Path:
    """The demo's segvalue.yaml, its store holding a complete run (built if need be)."""
    config = folder / "segvalue.yaml"
    store = folder / "segvalue-store.duckdb"
    if rebuild and folder.exists():
        if CACHE not in folder.resolve().parents:
            raise SystemExit(f"--rebuild removes only folders under {CACHE}, not {folder}")
        shutil.rmtree(folder)
    if config.exists() and store.exists():
        print(f"reusing the {customers:,}-customer demo in {folder}")
        return config
    folder.parent.mkdir(parents=True, exist_ok=True)
    print(f"building the {customers:,}-customer demo in {folder} ...", flush=True)
    start = time.perf_counter()
    _segvalue(
        "demo", "--customers", str(customers), "--out", str(folder), "--json",
        log=folder.parent / f"{folder.name}.demo.log",
    )  # fmt: skip
    print(f"  built in {time.perf_counter() - start:.1f} s")
    return config


def _run_facts(config: Path) -> tuple[str, dt.date, list[str]]:
    """The latest complete run: its id, as-of date and customer ids (read, then closed)."""
    from segvalue.config import load_config
    from segvalue.store import open_store

    with open_store(load_config(config).store_url) as store:
        record = store.latest()
        if record is None or record.as_of is None:
            raise SystemExit(f"the store of {config} holds no complete run")
        ids = store.table(record.run_id, "customer_scores", columns=["customer_id"])
        return record.run_id, record.as_of, [str(c) for c in ids.column(0).to_pylist()]


@dataclass
class Key:
    """An API key the benchmark created (revoked at the end)."""

    key: str
    key_id: str


def _create_key(config: Path, scope: str, log: Path) -> Key:
    out = _segvalue(
        "keys", "create", "-c", str(config), "--scope", scope, "--name", f"api-load {scope}",
        "--json", log=log,
    )  # fmt: skip
    doc = json.loads(out)
    return Key(doc["key"], doc["id"])


@contextmanager
def _server(config: Path, host: str, log: Path) -> Iterator[str]:
    """``segvalue serve`` on a free loopback port; its base URL. Stopped (SIGINT, then
    SIGKILL after 20 s) on leaving, also on Ctrl-C or a failure."""
    port = _free_port(host)
    with log.open("w") as out:
        # Its own session: a Ctrl-C in the terminal reaches the benchmark only, which
        # then stops the load first and the server after it.
        server = subprocess.Popen(
            [SEGVALUE, "serve", "-c", str(config), "--host", host, "--port", str(port)],
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    shown = f"[{host}]" if ":" in host else host
    base = f"http://{shown}:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            if server.poll() is not None:
                raise SystemExit(f"segvalue serve exited ({server.returncode}): see {log}")
            try:
                if httpx.get(f"{base}/health", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise SystemExit(f"segvalue serve did not answer /health in 60 s: see {log}")
            time.sleep(0.2)
        # Steady state: the dashboard builds its first pages in the background when the
        # server starts (through the same store gate); the load starts after that.
        ready = time.monotonic() + 120
        while "pages prepared" not in log.read_text() and time.monotonic() < ready:
            if server.poll() is not None:
                raise SystemExit(f"segvalue serve exited ({server.returncode}): see {log}")
            time.sleep(0.2)
        yield base
    finally:
        if server.poll() is None:
            server.send_signal(signal.SIGINT)
            try:
                server.wait(timeout=20)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait()


@dataclass
class Result:
    """One request: its route, outcome (an HTTP status or an error's name) and latency."""

    route: str
    outcome: str
    latency_ms: float


@dataclass
class Load:
    """What the load phase needs and what it measured."""

    base: str
    routes: list[str]
    rate: float
    seconds: float
    max_requests: int
    max_in_flight: int
    timeout: float
    connections: int
    ids: list[str]
    as_of: dt.date
    keys: dict[str, Key]
    seed: int
    server_log: Path
    results: list[Result] = field(default_factory=list)
    sent_for: float = 0.0
    log_offset: int = 0


def _request(load: Load, route: str, i: int, rng: random.Random, tag: str) -> Request:
    customer = rng.choice(load.ids)
    if route == "get":
        return Request("GET", f"/api/v1/customers/{quote(customer, safe='')}", "read", None)
    second = rng.randrange(86_400)
    order_ts = dt.datetime.combine(load.as_of, dt.time()) + dt.timedelta(seconds=second)
    body = {
        "type": "order",
        "customer_id": customer,
        "order_id": f"api-load-{tag}-{i}",
        "order_ts": order_ts.isoformat(),
        "amount": round(rng.uniform(10, 200), 2),
    }
    return Request("POST", "/api/v1/events", "write", json.dumps(body).encode())


@dataclass
class Request:
    """One request to send: method, path, the key's scope, a JSON body."""

    method: str
    path: str
    scope: str
    body: bytes | None


class Connections:
    """Keep-alive HTTP/1.1 connections to the server, at most ``size`` at once: a request
    waits for a free one, and the wait counts in its latency.

    Deliberately small: a general client (httpx) spends about 1 ms of CPU a request,
    which on 2 cores shared with the server would be measured as the server's latency.
    It reads what ``segvalue serve`` sends: a status line, headers, a body of
    ``Content-Length`` bytes.
    """

    def __init__(self, host: str, port: int, size: int, keys: dict[str, Key]) -> None:
        self.host, self.port = host.strip("[]"), port
        self.authority = f"{host}:{port}"
        self.keys = keys
        self.idle: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []
        self.slots = asyncio.Semaphore(size)

    async def send(self, request: Request) -> tuple[int, bytes]:
        """The response's status and body.

        A kept connection the server has closed meanwhile (uvicorn closes one idle for
        5 s) is replaced: once before use if its end was seen, once after if it answered
        nothing at all (as browsers and httpx do).
        """
        async with self.slots:
            while self.idle:
                reader, writer = self.idle.pop()
                if not reader.at_eof():
                    try:
                        return await self._exchange(reader, writer, request)
                    except (asyncio.IncompleteReadError, ConnectionResetError) as exc:
                        if isinstance(exc, asyncio.IncompleteReadError) and exc.partial:
                            raise
                    break
                writer.close()
            reader, writer = await asyncio.open_connection(self.host, self.port)
            return await self._exchange(reader, writer, request)

    async def _exchange(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, request: Request
    ) -> tuple[int, bytes]:
        head = [
            f"{request.method} {request.path} HTTP/1.1",
            f"Host: {self.authority}",
            f"Authorization: Bearer {self.keys[request.scope].key}",
        ]
        if request.body is not None:
            head += ["Content-Type: application/json", f"Content-Length: {len(request.body)}"]
        try:
            writer.write("\r\n".join([*head, "", ""]).encode("latin-1") + (request.body or b""))
            lines = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1").split("\r\n")
            status, length, close = int(lines[0].split(" ", 2)[1]), 0, False
            for line in lines[1:]:
                name, _, value = line.partition(":")
                name, value = name.strip().lower(), value.strip().lower()
                if name == "content-length":
                    length = int(value)
                elif name == "connection":
                    close = value == "close"
                elif name == "transfer-encoding":
                    raise ValueError(f"a {value} response (not read here)")
            body = await reader.readexactly(length)
        except BaseException:  # a time-out (cancelled) too: the connection is spent
            writer.close()
            raise
        if close:
            writer.close()
        else:
            self.idle.append((reader, writer))
        return status, body

    def close(self) -> None:
        for _, writer in self.idle:
            writer.close()


async def _send(pool: Connections, load: Load, route: str, due: float, request: Request) -> None:
    try:
        status, _ = await asyncio.wait_for(pool.send(request), load.timeout)
        outcome = str(status)
    except (OSError, ValueError, asyncio.IncompleteReadError, TimeoutError) as exc:
        outcome = type(exc).__name__
    load.results.append(Result(route, outcome, (time.perf_counter() - due) * 1000))


async def _warm_up(pool: Connections, load: Load, count: int) -> None:
    """A few requests one at a time before the clock starts (not counted): the server's
    first-request costs (imports, the store's first open) are not what is measured.
    Each answer is checked: a customer's own record, a stored event."""
    rng = random.Random(load.seed + 1)
    tag = f"warm{load.seed}-{time.time_ns()}"
    for i in range(count):
        route = load.routes[i % len(load.routes)]
        request = _request(load, route, i, rng, tag)
        status, body = await asyncio.wait_for(pool.send(request), load.timeout)
        if status // 100 != 2:
            raise SystemExit(f"warm-up: {request.method} {route} answered {status}: {body[:300]!r}")
        if route == "get" and not request.path.endswith(
            quote(json.loads(body)["customer_id"], safe="")
        ):
            raise SystemExit(f"warm-up: {request.path} answered another customer")


async def _open_loop(load: Load, warm_up: int) -> None:
    host, _, port = load.base.removeprefix("http://").rpartition(":")
    pool = Connections(host, int(port), load.connections, load.keys)
    try:
        await _warm_up(pool, load, warm_up)
        load.log_offset = load.server_log.stat().st_size  # the server's lines from here on
        rng = random.Random(load.seed)
        tag = f"{load.seed}-{time.time_ns()}"  # order ids unique across runs of this script
        pending: dict[asyncio.Task[None], tuple[str, float]] = {}
        start = time.perf_counter()
        total = min(load.max_requests, int(load.rate * load.seconds))
        for i in range(total):
            due = start + i / load.rate
            delay = due - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            route = load.routes[i % len(load.routes)]
            request = _request(load, route, i, rng, tag)
            if len(pending) >= load.max_in_flight:
                load.results.append(Result(route, "too many in flight", 0.0))
                continue
            task = asyncio.create_task(_send(pool, load, route, due, request))
            pending[task] = (route, due)
            task.add_done_callback(lambda done: pending.pop(done, None))
        load.sent_for = time.perf_counter() - start
        if pending:
            await asyncio.wait(list(pending), timeout=load.timeout + 5)
        for task, (route, due) in list(pending.items()):  # unanswered at the end: errors
            task.cancel()
            load.results.append(Result(route, "unanswered", (time.perf_counter() - due) * 1000))
    finally:
        pool.close()


def _server_ms(log: Path, offset: int) -> dict[str, list[float]]:
    """Milliseconds per request the server logged after ``offset``, by route template."""
    times: dict[str, list[float]] = {}
    with log.open() as lines:
        lines.seek(offset)
        for line in lines:
            hit = _ACCESS.search(line)
            if hit:
                times.setdefault(f"{hit[1]} {hit[2]}", []).append(float(hit[4]))
    return times


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * len(ordered)) - 1))]


def _report(load: Load, server: dict[str, list[float]], loads: tuple[str, str]) -> bool:
    met = True
    print(f"\n{'route':<38} {'requests':>8} {'req/s':>7} {'p50':>7} {'p90':>7} {'p99':>7}"
          f" {'max':>8}  errors")  # fmt: skip
    for route in load.routes:
        method, template = ROUTES[route]
        mine = [r for r in load.results if r.route == route]
        ok = [r.latency_ms for r in mine if r.outcome.startswith("2")]
        errors = Counter(r.outcome for r in mine if not r.outcome.startswith("2"))
        rate = len(mine) / load.sent_for if load.sent_for else 0.0
        latencies = [r.latency_ms for r in mine if r.latency_ms > 0] or [0.0]
        p50, p90, p99 = (_pct(latencies, q) for q in (0.5, 0.9, 0.99))
        shown = ", ".join(f"{k}: {v}" for k, v in sorted(errors.items())) or "none"
        print(f"{method + ' ' + template:<38} {len(mine):>8} {rate:>7.1f} {p50:>7.2f} "
              f"{p90:>7.2f} {p99:>7.2f} {max(latencies):>8.2f}  {shown}")  # fmt: skip
        own = server.get(f"{method} {template}", [])
        if own:
            print(f"{'  server time (access log)':<38} {len(own):>8} {'':>7} "
                  f"{_pct(own, 0.5):>7.2f} {_pct(own, 0.9):>7.2f} {_pct(own, 0.99):>7.2f} "
                  f"{max(own):>8.2f}")  # fmt: skip
        route_met = bool(ok) and not errors and p99 <= GOAL_P99_MS
        met = met and route_met
        print(f"  goal p99 <= {GOAL_P99_MS:.0f} ms, no errors: {'met' if route_met else 'MISSED'}"
              f" (p99 {p99:.2f} ms, {sum(errors.values())} errors)")  # fmt: skip
    print(f"\nlatency in ms from each request's due time; sending lasted {load.sent_for:.1f} s")
    print(f"load average (1, 5, 15 min) before: {loads[0]}; after: {loads[1]}")
    return met


def _load_average() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--routes", default="get", help="get, post or get,post (alternating)")
    parser.add_argument("--rate", type=float, default=200.0, help="requests per second")
    parser.add_argument("--seconds", type=float, default=60.0, help="how long to send")
    parser.add_argument("--max-requests", type=int, default=50_000, help="hard cap")
    parser.add_argument("--max-in-flight", type=int, default=2_000)
    parser.add_argument("--timeout", type=float, default=10.0, help="per request, seconds")
    parser.add_argument("--connections", type=int, default=32, help="client connection pool")
    parser.add_argument("--warm-up", type=int, default=20, help="requests before the clock")
    parser.add_argument("--customers", type=int, default=100_000)
    parser.add_argument("--folder", type=Path, default=None)
    parser.add_argument("--rebuild", action="store_true", help="build the demo anew")
    parser.add_argument("--host", default="127.0.0.1", help="a loopback address")
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    routes = [r.strip() for r in args.routes.split(",") if r.strip()]
    if not routes or any(r not in ROUTES for r in routes):
        parser.error(f"--routes: one or more of {', '.join(ROUTES)}")
    if not _loopback(args.host):
        parser.error(f"--host {args.host}: only loopback addresses are served and sent to")
    if args.rate <= 0 or args.seconds <= 0 or args.max_requests <= 0:
        parser.error("--rate, --seconds and --max-requests must be positive")

    folder = args.folder or CACHE / f"api-load-{args.customers}"
    config = _demo(folder, args.customers, args.rebuild)
    log = folder.parent / f"{folder.name}.bench.log"
    # Created first: a writer, it also migrates a store an older segvalue made.
    keys = {scope: _create_key(config, scope, log) for scope in ("read", "write")}
    run_id, as_of, ids = _run_facts(config)
    print(f"run {run_id}, as of {as_of}, {len(ids):,} customers")
    server_log = folder.parent / f"{folder.name}.serve.log"
    try:
        with _server(config, args.host, server_log) as base:
            spec = httpx.get(f"{base}/api/v1/openapi.json", timeout=10).json()
            for route in routes:
                method, template = ROUTES[route]
                if method.lower() not in spec.get("paths", {}).get(template, {}):
                    raise SystemExit(f"this segvalue serves no {method} {template}")
            load = Load(
                base=base, routes=routes, rate=args.rate, seconds=args.seconds,
                max_requests=args.max_requests, max_in_flight=args.max_in_flight,
                timeout=args.timeout, connections=args.connections, ids=ids, as_of=as_of,
                keys=keys, seed=args.seed, server_log=server_log,
            )  # fmt: skip
            shown = " and ".join(" ".join(ROUTES[r]) for r in routes)
            print(f"{shown} at {args.rate:g} requests/s for {args.seconds:g} s on {base}")
            before = _load_average()
            limit = args.seconds + args.timeout + 10 + args.warm_up * args.timeout
            asyncio.run(asyncio.wait_for(_open_loop(load, args.warm_up), timeout=limit))
            after = _load_average()
            server = _server_ms(server_log, load.log_offset)
        met = _report(load, server, (before, after))
    finally:
        for key in keys.values():
            with suppress(SystemExit):
                _segvalue("keys", "revoke", key.key_id, "-c", str(config), log=log)
    print(f"\nverdict: {'met' if met else 'MISSED'} (server log: {server_log})")
    if not met:
        sys.exit(1)


if __name__ == "__main__":
    main()
