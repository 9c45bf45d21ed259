"""An event's CPU as the book grows (issue 17: "a targeted mini-cycle for just that record").

Usage:
    .venv/bin/python bench/event_cpu.py                          # 2,000 and 20,000 accounts (~2 min)
    .venv/bin/python bench/event_cpu.py --accounts 5000,50000    # ~5 min

For each size: a generated book (`sandbox.generate_book`, its leads, opportunities and disqualified
leads included) in the in-process sandbox, one real cycle that applies its plan (so the state holds
what a running daemon's does: the mirror, what crm-sync wrote, its judgements, its triage
verdicts), then `--events` mini-cycles for Vitally accounts and as many for Salesforce leads, one
at a time (`sync.minicycle.run_mini_cycle`, as the daemon runs them). Each is timed with
`time.thread_time()` of the thread that runs it: crm-sync's CPU, not the sandbox's, whose threads
answer the requests. The records are unchanged, so an event reads and decides and writes nothing:
what grows with the book, if anything, is what it reads from the state. `bench/events.py` measures
the latency of events that do route and write.
"""

from __future__ import annotations

import argparse
import itertools
import statistics
import tempfile
import time
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

from sandbox import Sandbox, generate_book
from sandbox.store import DEFAULT_OWNER_USER_ID
from state import StateDB
from state.events import Event, EventInbox, EventSource
from sync.app import make_salesforce, make_vitally
from sync.config import Config, example_against
from sync.cycle import run_cycle
from sync.minicycle import run_mini_cycle

NOW = datetime(2026, 11, 22, 9, tzinfo=UTC)
RECEIVED = "2026-11-22T09:00:00.000Z"


def _org_config(url: str) -> Config:
    """The example config against the sandbox, as its org's operator sets it up: the org's default
    lead owner is an unrouted owner (docs/salesforce-setup.md, section 5)."""
    config = example_against(url)
    routing = replace(config.policy.routing, unrouted_owners=(DEFAULT_OWNER_USER_ID,))
    return replace(config, policy=replace(config.policy, routing=routing))


def _no_wait(seconds: float) -> None:
    """Retries back off without waiting (the sandbox injects no faults here)."""


def measure(accounts: int, events: int, directory: Path) -> str:
    book = generate_book(accounts, seed=3, now=NOW)
    account_ids = [a["id"] for a in book["vitally"]["accounts"] if a.get("churnedAt") is None]
    lead_ids = [lead["Id"] for lead in book["salesforce"]["Lead"]]
    step_a, step_l = max(1, len(account_ids) // events), max(1, len(lead_ids) // events)
    chosen = [("vitally", i) for i in account_ids[::step_a][:events]] + [
        ("salesforce", i) for i in lead_ids[::step_l][:events]
    ]
    with Sandbox(book, now=NOW) as sandbox:
        sandbox.configure(vitally_rate_limit=10**7)
        config = _org_config(sandbox.url)
        path = directory / f"state-{accounts}.db"
        state = StateDB.open(path)
        inbox = EventInbox(path, wait_seconds=5)
        try:
            vitally, salesforce = make_vitally(config, sleep=_no_wait), make_salesforce(config, sleep=_no_wait)
            started = time.perf_counter()
            first = run_cycle(config, state, vitally, salesforce, clock=lambda: NOW, now=NOW)
            cycle_seconds = time.perf_counter() - started
            deliveries = itertools.count()
            cpu: dict[str, list[float]] = {"vitally": [], "salesforce": []}
            for source, record in chosen:
                kind: EventSource = "vitally" if source == "vitally" else "salesforce"
                inbox.put([Event(f"{source}:{next(deliveries)}", kind, record)], RECEIVED)
                before = time.thread_time()
                queued = state.pending_events(100)
                run_mini_cycle(config, state, vitally, salesforce, queued, clock=lambda: NOW, log=lambda *_: None)
                cpu[source].append(time.thread_time() - before)
        finally:
            inbox.close()
            state.close()
    leads = len(book["salesforce"]["Lead"])
    figures = " | ".join(
        f"{statistics.median(cpu[s]) * 1000:.1f} ms / {max(cpu[s]) * 1000:.1f} ms" for s in ("vitally", "salesforce")
    )
    return (
        f"| {accounts:,} | {leads:,} | {first.counts.get('applied', 0):,} writes, {cycle_seconds:.0f} s | {figures} |"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--accounts", default="2000,20000", help="book sizes, comma-separated (default 2000,20000)")
    parser.add_argument("--events", type=int, default=20, help="events of each kind per size (default 20)")
    args = parser.parse_args()
    sizes = [int(size) for size in args.accounts.split(",")]
    print("An event's CPU in crm-sync's thread (median / max), records unchanged: bench/event_cpu.py\n")
    print("| accounts | leads | first cycle | Vitally account event | Salesforce lead event |")
    print("|---|---|---|---|---|")
    with tempfile.TemporaryDirectory(prefix="crm-sync-bench-event-cpu-") as tmp:
        for size in sizes:
            print(measure(size, args.events, Path(tmp)), flush=True)


if __name__ == "__main__":
    main()
