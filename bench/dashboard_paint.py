"""Benchmark of the dashboard's first paint on the 50,000-customer demo.

Builds the demo in a temporary folder with ``segvalue demo --customers N --out DIR`` (its
own process), serves it with ``segvalue serve -c DIR/segvalue.yaml --host 127.0.0.1
--port FREE`` (its own process, loopback only) and opens every dashboard page in Debian's
headless Chromium through Playwright (``--no-sandbox``; never a browser Playwright
downloads). ``segvalue serve`` prepares the latest run's main pages and the budget plan
on a background thread at start-up: by default the pages are opened once it has logged
that they are prepared (``--no-wait``: as soon as it answers, while it prepares them, the
worst case). Each page is loaded twice in a fresh browser context: cold (nothing cached in
the browser; on the server, the first request for that page) and warm (a reload). Per load it prints
the server's response time (request sent to first byte, Navigation Timing), the
first-contentful-paint (``performance.getEntriesByType('paint')``), DOMContentLoaded and
load (from the start of the navigation), and the page weight (bytes over the wire, and the
bytes of every response whether cached or not). The goal is a first contentful paint
within 1 s on every load.

Bounded in time (``--timeout`` for the whole run, one for each page load); the server and
the demo build are processes of this script, stopped when it ends.

Run: ``python bench/dashboard_paint.py [--customers 50000] [--rounds 1] [--timeout 900]
[--no-wait]`` (``--demo DIR``: serve an existing demo folder instead of building one).
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any
from urllib.parse import quote

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
]
ENTRY = "from segvalue.cli.main import run; run()"
GOAL_MS = 1_000.0
# Everything one load reports, from the page's own timing entries.
MEASURE = """() => {
  const nav = performance.getEntriesByType('navigation')[0];
  const paint = performance.getEntriesByType('paint')
    .find(entry => entry.name === 'first-contentful-paint');
  const resources = performance.getEntriesByType('resource');
  const all = [nav, ...resources];
  return {
    server: nav.responseStart - nav.requestStart,
    fcp: paint ? paint.startTime : null,
    dcl: nav.domContentLoadedEventEnd,
    load: nav.loadEventEnd,
    html: nav.decodedBodySize,
    transferred: all.reduce((sum, entry) => sum + entry.transferSize, 0),
    weight: all.reduce((sum, entry) => sum + entry.decodedBodySize, 0),
  };
}"""


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _segvalue(*args: str) -> list[str]:
    """The command line of ``segvalue ARGS`` with this interpreter."""
    return [sys.executable, "-c", ENTRY, *args]


def _get(url: str, timeout: float) -> str:
    with urllib.request.urlopen(url, timeout=timeout) as response:  # loopback only
        return str(response.read().decode())


def _wait_for_server(server: subprocess.Popen[str], base: str, deadline: float) -> None:
    while True:
        try:
            _get(f"{base}/health", timeout=2)
            return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            if server.poll() is not None:
                raise SystemExit(f"segvalue serve stopped: {server.communicate()[1]}") from None
            if time.monotonic() > deadline:
                raise SystemExit("segvalue serve did not answer in time") from None
            time.sleep(0.2)


def _pages(out: Path) -> list[tuple[str, str]]:
    """(name, path) of every page: the segment pages are the KPI scheme's first segment
    (prepared at start-up) and the RFM scheme's largest (not prepared: built when asked).

    Read from the demo's output files, not over HTTP.
    """
    import pyarrow.parquet as pq

    kpis = pq.read_table(out / "output" / "segment_kpis.parquet", columns=["scheme", "segment"])
    scheme, segment = next(
        (row["scheme"], row["segment"])
        for row in kpis.to_pylist()
        if row["segment"] != "all customers"
    )
    sizes = pq.read_table(out / "output" / "segment_sizes.parquet").to_pylist()
    rfm = max((r for r in sizes if r["scheme"] == "rfm"), key=lambda r: r["customers"])

    def segment_path(scheme: str, segment: str) -> str:
        return f"/segments/{quote(scheme, safe='')}/{quote(segment, safe='')}"

    return [
        ("overview", "/"),
        ("segments", "/segments"),
        ("segments-rfm", "/segments?scheme=rfm"),
        ("segment", segment_path(scheme, segment)),
        ("segment-rfm", segment_path("rfm", rfm["segment"])),
        ("migration", "/migration"),
        ("models", "/models"),
        ("budget", "/budget"),
        ("budget-what-if", "/budget?from=paid_social&to=email&share=0.2"),
    ]


def _measure(browser: Any, base: str, path: str, timeout_ms: float) -> list[dict[str, Any]]:
    """The cold and the warm load of ``path`` in a fresh browser context."""
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    errors: list[str] = []
    outside: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.on("request", lambda r: None if r.url.startswith(base) else outside.append(r.url))
    loads = []
    try:
        for kind in ("cold", "warm"):
            if kind == "cold":
                response = page.goto(base + path, wait_until="load", timeout=timeout_ms)
            else:
                response = page.reload(wait_until="load", timeout=timeout_ms)
            status = response.status if response is not None else 0
            # The paint entry is queued after the paint: wait for it (bounded).
            page.wait_for_function(
                "performance.getEntriesByType('paint').length > 0", timeout=5_000
            )
            loads.append({"kind": kind, "status": status, **page.evaluate(MEASURE)})
    finally:
        context.close()
    if errors or outside:
        raise SystemExit(f"{path}: console errors {errors}, requests off the server {outside}")
    return loads


def _row(name: str, load: dict[str, Any]) -> str:
    fcp = load["fcp"]
    mark = "" if fcp is not None and fcp <= GOAL_MS else "  <- over 1 s"
    return (
        f"{name:<15} {load['kind']:<5} {load['status']:>4} {load['server']:>9.0f} "
        f"{fcp if fcp is not None else float('nan'):>8.0f} {load['dcl']:>8.0f} "
        f"{load['load']:>8.0f} {load['html'] / 1024:>8.0f} {load['transferred'] / 1024:>9.0f} "
        f"{load['weight'] / 1024:>8.0f}{mark}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=50_000)
    parser.add_argument("--rounds", type=int, default=1, help="servers started, one per round")
    parser.add_argument("--timeout", type=float, default=900.0, help="seconds for the whole run")
    parser.add_argument(
        "--demo", type=Path, default=None, help="an existing demo folder (default: build one)"
    )
    parser.add_argument(
        "--no-wait",
        action="store_true",
        help="open the pages as soon as the server answers, while it still prepares them",
    )
    args = parser.parse_args()
    deadline = time.monotonic() + args.timeout
    if not Path(CHROMIUM).exists():
        raise SystemExit(f"{CHROMIUM} is missing: apt-get install chromium (make services)")
    from playwright.sync_api import sync_playwright

    print(f"load average at the start: {' '.join(f'{v:.2f}' for v in os.getloadavg())}")
    with tempfile.TemporaryDirectory(prefix="segvalue-paint-") as tmp:
        out = Path(tmp) / "demo"
        if args.demo is not None:
            out = args.demo
            print(f"the demo in {out}")
        else:
            started = time.perf_counter()
            subprocess.run(
                _segvalue("demo", "--customers", str(args.customers), "--out", str(out)),
                check=True,
                capture_output=True,
                text=True,
                timeout=max(1.0, deadline - time.monotonic()),
            )
            seconds = time.perf_counter() - started
            print(f"segvalue demo --customers {args.customers:,}: {seconds:.1f} s")
        best: dict[tuple[str, str], float] = {}
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(
                executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS
            )
            print(f"Chromium {browser.version}")
            try:
                for round_number in range(1, args.rounds + 1):
                    _round(
                        browser,
                        out / "segvalue.yaml",
                        round_number,
                        deadline,
                        best,
                        wait=not args.no_wait,
                    )
            finally:
                browser.close()
    print(f"load average at the end: {' '.join(f'{v:.2f}' for v in os.getloadavg())}")
    missed = {key: fcp for key, fcp in best.items() if fcp > GOAL_MS}
    summary = "met" if not missed else f"missed on {len(missed)} loads: {missed}"
    print(f"goal FCP <= {GOAL_MS:.0f} ms on every load (best of {args.rounds}): {summary}")


def _round(
    browser: Any,
    config: Path,
    round_number: int,
    deadline: float,
    best: dict[tuple[str, str], float],
    *,
    wait: bool,
) -> None:
    """One server: started, every page loaded cold and warm, stopped."""
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    command = _segvalue("serve", "-c", str(config), "--host", "127.0.0.1", "--port", str(port))
    started = time.monotonic()
    server = subprocess.Popen(
        command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, bufsize=1
    )
    # The server's log, read as it comes (a full pipe would stall the server).
    log: list[str] = []
    prepared = threading.Event()

    def read_log() -> None:
        assert server.stderr is not None
        for line in server.stderr:
            log.append(line)
            if "pages prepared" in line or "preparing the pages stopped" in line:
                prepared.set()

    reader = threading.Thread(target=read_log, daemon=True)
    reader.start()
    try:
        _wait_for_server(server, base, deadline)
        up = time.monotonic() - started
        print(f"\nround {round_number}: segvalue serve on {base}, answering after {up:.1f} s")
        if wait:
            if not prepared.wait(timeout=max(0.0, min(300.0, deadline - time.monotonic()))):
                raise SystemExit("the dashboard did not finish preparing its pages in time")
            line = next(x for x in log if "prepar" in x).strip()
            print(f"waited for the start-up preparation: {line.split(' segvalue.web ')[-1]}")
        else:
            print("not waiting for the start-up preparation (--no-wait)")
        pages = _pages(config.parent)
        print(
            f"{'page':<15} {'load':<5} {'HTTP':>4} {'server ms':>9} {'FCP ms':>8} "
            f"{'DCL ms':>8} {'load ms':>8} {'HTML KB':>8} {'wire KB':>9} {'all KB':>8}"
        )
        for name, path in pages:
            left = deadline - time.monotonic()
            if left <= 0:
                raise SystemExit("out of time (--timeout)")
            for load in _measure(browser, base, path, timeout_ms=min(120.0, left) * 1000):
                print(_row(name, load), flush=True)
                key = (name, load["kind"])
                fcp = load["fcp"] if load["fcp"] is not None else float("inf")
                best[key] = min(best.get(key, float("inf")), fcp)
    finally:
        server.terminate()
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
        reader.join(timeout=10)


if __name__ == "__main__":
    main()
