"""Decode time of a cold read (issue #13): the page bodies a 100,000-account cold run receives,
decoded as before (one `json.loads` per page; Salesforce through simple-salesforce's default
`OrderedDict` hook) and record by record under limits (`core.decoding.decode_page`).

Usage:
    .venv/bin/python bench/decoding.py [--accounts 100000] [--repeat 3]

The bodies are fetched once from an in-process sandbox (the same bytes the real CLI receives),
then each decoder runs over all of them; the best of `--repeat` runs is printed.
"""

from __future__ import annotations

import argparse
import json
import time
from collections import OrderedDict
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import requests

from core.decoding import decode_page
from sandbox.generator import generate_book
from sandbox.server import Sandbox
from sync.ingest import SF_OBJECTS

NOW = datetime(2026, 11, 22, 9, 0, tzinfo=UTC)


def _vitally_pages(session: requests.Session, url: str) -> list[bytes]:
    pages, token = [], None
    while True:
        params: dict[str, Any] = {"limit": 100, "sortBy": "updatedAt"}
        if token:
            params["from"] = token
        response = session.get(f"{url}/resources/accounts", params=params, auth=("bench", ""), timeout=60)
        pages.append(response.content)
        token = response.json().get("next")
        if not token:
            return pages


def _salesforce_pages(session: requests.Session, url: str) -> list[bytes]:
    pages = []
    headers = {"Authorization": "Bearer bench"}
    for sobject, fields in SF_OBJECTS.items():
        soql = f"SELECT {', '.join(fields)} FROM {sobject} ORDER BY SystemModstamp, Id"
        response = session.get(f"{url}/services/data/v59.0/query", params={"q": soql}, headers=headers, timeout=60)
        while True:
            pages.append(response.content)
            following = response.json().get("nextRecordsUrl")
            if not following:
                break
            response = session.get(f"{url}{following}", headers=headers, timeout=60)
    return pages


def _best(decode: Callable[[bytes], object], pages: list[bytes], repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        started = time.perf_counter()
        for page in pages:
            decode(page)
        best = min(best, time.perf_counter() - started)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--accounts", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    book = generate_book(args.accounts, seed=0, now=NOW)
    with Sandbox(book, now=NOW) as sandbox:
        sandbox.configure(vitally_rate_limit=1_000_000_000)
        session = requests.Session()
        vitally, salesforce = _vitally_pages(session, sandbox.url), _salesforce_pages(session, sandbox.url)
    size = sum(map(len, vitally)) + sum(map(len, salesforce))
    print(
        f"{args.accounts:,} accounts: {len(vitally):,} Vitally pages, {len(salesforce):,} Salesforce pages, "
        f"{size / 2**20:,.0f} MiB"
    )
    rows = [
        ("Vitally, before: json.loads per page", _best(lambda b: json.loads(b.decode()), vitally, args.repeat)),
        (
            "Vitally, after: decode_page",
            _best(
                lambda b: decode_page(b, records_key="results", id_key="id", stamp_key="updatedAt"),
                vitally,
                args.repeat,
            ),
        ),
        (
            "Salesforce, before: json.loads(OrderedDict)",
            _best(lambda b: json.loads(b.decode(), object_pairs_hook=OrderedDict), salesforce, args.repeat),
        ),
        (
            "Salesforce, after: decode_page",
            _best(
                lambda b: decode_page(b, records_key="records", id_key="Id", stamp_key="SystemModstamp"),
                salesforce,
                args.repeat,
            ),
        ),
    ]
    for name, seconds in rows:
        print(f"  {name:<48} {seconds:6.2f} s")


if __name__ == "__main__":
    main()
