"""Requests per second the sandbox serves to a separate client process over keep-alive.

Usage: .venv/bin/python bench/sandbox_throughput.py [--requests 3000]
Starts `python -m sync sandbox` in a subprocess, then times small GETs from this process.
"""

from __future__ import annotations

import argparse
import socket
import subprocess
import sys
import time
from typing import Any

import requests


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--requests", type=int, default=3000)
    args = parser.parse_args()
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
