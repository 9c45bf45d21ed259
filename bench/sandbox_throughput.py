"""How fast the sandbox builds books, runs SOQL and serves requests.

Usage: .venv/bin/python bench/sandbox_throughput.py [--requests 3000] [--accounts 20000 100000]
Prints, in this order: how long `generate_book` takes for each `--accounts` size; how long the
SOQL engine takes to filter and sort 100,000 Lead records (`sandbox.soql.execute`, the query an
incremental read sends); then starts `python -m sync sandbox` in a subprocess and times small
GETs from this process over keep-alive. Figures only: the tests check what these produce, never
how fast.
"""

from __future__ import annotations

import argparse
import random
import socket
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import requests

from sandbox.generator import generate_book
from sandbox.soql import execute, parse


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def generator_figures(sizes: list[int]) -> None:
    """Seconds `generate_book` takes for each size (the default book, seed 0)."""
    now = datetime(2026, 11, 22, 10, 30, tzinfo=UTC)
    for n in sizes:
        started = time.perf_counter()
        book = generate_book(n, now=now)
        elapsed = time.perf_counter() - started
        leads = len(book["salesforce"]["Lead"])
        print(f"generate_book: {n:,} accounts ({leads:,} leads) in {elapsed:.2f} s")


def soql_figures(count: int = 100_000) -> None:
    """Seconds the SOQL engine takes to filter and sort `count` Lead records by SystemModstamp."""
    rng = random.Random(7)
    start = datetime(2026, 1, 1, tzinfo=UTC)
    records: list[dict[str, Any]] = [
        {
            "Id": f"00Q{i:015d}",
            "LastName": rng.choice(["Smith", "Jones", "Müller", "O'Brien", None]),
            "Company": f"Company {rng.randrange(5000)}",
            "SystemModstamp": (start + timedelta(seconds=rng.randrange(300 * 86400))).strftime(
                "%Y-%m-%dT%H:%M:%S.000+0000"
            ),
        }
        for i in range(count)
    ]
    query = parse(
        "SELECT Id, LastName, SystemModstamp FROM Lead WHERE SystemModstamp >= 2026-06-01T00:00:00Z "
        "ORDER BY SystemModstamp ASC, Id ASC"
    )
    started = time.perf_counter()
    rows = execute(query, records)
    elapsed = time.perf_counter() - started
    print(f"soql execute: filter and sort {count:,} records ({len(rows):,} kept) in {elapsed:.2f} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--accounts", type=int, nargs="*", default=[20_000, 100_000])
    args = parser.parse_args()
    generator_figures(args.accounts)
    soql_figures()
    port = _free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "sync", "sandbox", "--generate", "200", "--port", str(port)],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert server.stdout is not None
        server.stdout.readline()  # "sandbox listening on ..."
        base = f"http://127.0.0.1:{port}"
        session = requests.Session()
        session.post(f"{base}/_sandbox/config", json={"vitally_rate_limit": 10_000_000}, timeout=5)
        routes: dict[str, tuple[str, dict[str, Any]]] = {
            "vitally GET account": (f"{base}/resources/accounts/acc_1", {"auth": ("k", "")}),
            "salesforce GET lead": (
                f"{base}/services/data/v59.0/query/",
                {"params": {"q": "SELECT Id FROM User LIMIT 1"}, "headers": {"Authorization": "Bearer t"}},
            ),
        }
        for name, (url, kwargs) in routes.items():
            session.get(url, timeout=5, **kwargs).raise_for_status()
            started = time.perf_counter()
            for _ in range(args.requests):
                session.get(url, timeout=5, **kwargs)
            elapsed = time.perf_counter() - started
            print(f"{name}: {args.requests} requests in {elapsed:.2f} s = {args.requests / elapsed:,.0f} requests/s")
    finally:
        server.terminate()
        server.wait(timeout=10)


if __name__ == "__main__":
    main()
