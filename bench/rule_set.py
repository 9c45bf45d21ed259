"""The whole rule set over N generated accounts on one core (no I/O): accounts per second.

Usage: .venv/bin/python bench/rule_set.py [--accounts 100000]
Parsing (raw Vitally JSON → typed Account) is timed separately from evaluation.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import time
from datetime import UTC, datetime

from core.errors import RecordError
from core.records import parse_account
from rules import EMPTY, Policy, evaluate_account
from sandbox.generator import generate_book


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--accounts", type=int, default=100_000)
    args = parser.parse_args()
    os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})  # one core
    now = datetime(2026, 11, 22, 9, tzinfo=UTC)
    book = generate_book(args.accounts, seed=1, now=now)
    started = time.perf_counter()
    accounts = []
    for raw in book["vitally"]["accounts"]:
        with contextlib.suppress(RecordError):  # malformed records are skipped, as in a cycle
            accounts.append(parse_account(raw))
    parsed = time.perf_counter() - started
    policy = Policy()
    print(f"accounts: {len(accounts):,} (malformed skipped: {args.accounts - len(accounts):,})")
    print(f"parse:    {parsed:.2f} s ({len(accounts) / parsed:,.0f} accounts/s)")
    for label, full in (("cycle (rules that cannot fire skipped)", False), ("explain (every verdict built)", True)):
        started = time.perf_counter()
        fired = 0
        for account in accounts:
            fired += sum(1 for d in evaluate_account(account, EMPTY, policy, now, full=full) if d.fired)
        evaluated = time.perf_counter() - started
        print(
            f"evaluate, {label}: {evaluated:.2f} s ({len(accounts) / evaluated:,.0f} accounts/s), "
            f"{fired:,} decisions fired"
        )


if __name__ == "__main__":
    main()
