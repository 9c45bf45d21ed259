"""The whole account rule set over N generated accounts on one core (no I/O): issue 17's goal
"rule set over 100,000 accounts on one core ≤ 1 s".

Usage: .venv/bin/python bench/rule_set.py [--accounts 100000] [--repeat 5] [--explain]

What is timed is what a cycle runs per account and nothing else: `Decider.account(account,
full=False)` (the account's Salesforce context from the mirror's facts, then every account rule,
rules that cannot fire skipped), over N well-formed accounts (the book is generated without
malformed records, so N accounts are evaluated), pinned to one core, best of `--repeat` runs; the
figure is the process's CPU time (user + system: what the evaluation costs, also on a machine
shared with other work), printed beside the wall time.
Generating the book, parsing it (timed and printed separately) and loading the Salesforce facts
into an in-memory state are not timed. `--explain` also times explain's full evaluation (every
verdict built), which is not the goal's measure.

`--context empty` times what this bench timed before issue 17 (commit 5f2d409): `evaluate_account`
with an empty Salesforce context (no leads, opportunities or Salesforce Account for any account)
over the book generated with its share of malformed records (skipped when parsed, as a cycle
skips them), by the same CPU clock. That mode imports only what 5f2d409 already had, so
bench/goals.py runs this file against the older tree (PYTHONPATH pointing at it) and compares
like with like.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import time
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import Any

from well_formed import well_formed

from core.model import Account
from core.records import parse_account
from rules import EMPTY, Policy, evaluate_account
from sandbox.generator import generate_book


def _mirror_decider(book: dict[str, Any], now: datetime) -> Callable[[Account, bool], Iterable[Any]]:
    """A cycle's evaluation: `Decider.account` with the Salesforce facts of `book` loaded into an
    in-memory state (imported here: the `empty` mode runs against trees that have no Decider)."""
    from state import StateDB
    from sync.decider import Decider
    from sync.facts import SalesforceFacts

    state = StateDB.memory()
    state.upsert_sf(
        [
            {"object": obj, "id": r["Id"], "modstamp": r.get("SystemModstamp"), "raw": json.dumps(r), "error": None}
            for obj, records in book["salesforce"].items()
            for r in records
        ]
    )
    decider = Decider(Policy(), SalesforceFacts.load(state), now)
    return lambda account, full: decider.account(account, full=full)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--accounts", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=5, help="runs of the evaluation; the best is the figure")
    parser.add_argument("--explain", action="store_true", help="also time explain's full evaluation")
    parser.add_argument(
        "--context",
        choices=("mirror", "empty"),
        default="mirror",
        help="mirror: each account's Salesforce context from the book's records (a cycle's evaluation, the "
        "default); empty: no Salesforce context, malformed records in the book (5f2d409's measure)",
    )
    args = parser.parse_args()
    os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})  # one core
    now = datetime(2026, 11, 22, 9, tzinfo=UTC)
    policy = Policy()
    if args.context == "mirror":
        book = generate_book(args.accounts, seed=1, now=now, malformed_share=0.0)
    else:
        book = generate_book(args.accounts, seed=1, now=now)
    started = time.perf_counter()
    accounts = well_formed(book["vitally"]["accounts"], parse_account)
    parsed = time.perf_counter() - started
    if args.context == "mirror":
        evaluate = _mirror_decider(book, now)
    else:

        def evaluate(account: Account, full: bool) -> Iterable[Any]:
            return evaluate_account(account, EMPTY, policy, now, full=full)

    del book
    gc.collect()
    print(f"context: {args.context}; malformed skipped: {args.accounts - len(accounts):,}")
    print(f"accounts: {len(accounts):,}, one core, best of {args.repeat}")
    print(f"parse (not the goal's measure): {parsed:.2f} s ({len(accounts) / parsed:,.0f} accounts/s)")
    modes = [("cycle (rules that cannot fire skipped)", False)]
    if args.explain:
        modes.append(("explain (every verdict built)", True))
    for label, full in modes:
        runs: list[tuple[float, float]] = []
        fired = 0
        for _ in range(args.repeat):
            fired = 0
            cpu, wall = time.process_time(), time.perf_counter()
            # The verdicts are counted and dropped, as a cycle plans from them and drops them
            # (keeping them all would time the garbage collector's scans of 100,000 lists).
            for account in accounts:
                for decision in evaluate(account, full):
                    fired += decision.fired
            runs.append((time.process_time() - cpu, time.perf_counter() - wall))
        best = min(cpu for cpu, _ in runs)
        print(
            f"evaluate, {label}: {best:.2f} s CPU best ({len(accounts) / best:,.0f} accounts/s); "
            f"runs CPU/wall {', '.join(f'{cpu:.2f}/{wall:.2f}' for cpu, wall in runs)}; {fired:,} decisions fired"
        )


if __name__ == "__main__":
    main()
