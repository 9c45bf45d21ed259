"""`demo`: the built-in sandbox with a generated book, a dry-run audit, an applied cycle, a second
cycle that has nothing to do, and a summary. Ends by itself with exit 0 when all went as it should."""

from __future__ import annotations

import tempfile
from collections import Counter
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import TextIO

from rich.console import Console
from rich.text import Text

from sandbox.generator import generate_book
from sandbox.server import Sandbox
from sandbox.store import DEFAULT_OWNER_USER_ID
from state import StateDB
from sync.app import make_salesforce, make_vitally
from sync.config import Config, example_against
from sync.cycle import run_cycle
from sync.output import Names, render_plan
from sync.safe import cell
from sync.vocabulary import CycleReport

__all__ = ["run_demo"]

_SHOWN = 15


def _writes(sandbox: Sandbox) -> int:
    """Write requests (anything but GET) the sandbox has received."""
    return sum(
        count
        for counts in sandbox.counters().values()
        for route, count in counts.items()
        if not route.startswith("GET ")
    )


def _cycle(config: Config, state: StateDB, *, dry_run: bool) -> CycleReport:
    vitally, salesforce = make_vitally(config), make_salesforce(config)
    return run_cycle(config, state, vitally, salesforce, clock=lambda: datetime.now(UTC), dry_run=dry_run)


def _set_up(config: Config) -> tuple[Config, list[dict[str, str]]]:
    """The example config and the sandbox org as an operator sets them up (docs/salesforce-setup.md,
    section 5): web-to-lead leaves leads with the org's default lead owner, listed as an unrouted
    owner, and the org has the queues the pools fall back to."""
    routing = replace(config.policy.routing, unrouted_owners=(DEFAULT_OWNER_USER_ID,))
    owners = {pool.fallback_owner for pool in config.pools.values() if pool.fallback_owner}
    queues = sorted(owner for owner in owners if owner.startswith(config.policy.routing.queue_id_prefix))
    groups = [{"Id": q, "Name": f"Fallback {i}", "DeveloperName": f"Fallback_{i}", "Type": "Queue"}
              for i, q in enumerate(queues)]  # fmt: skip
    return replace(config, policy=replace(config.policy, routing=routing)), groups


def run_demo(accounts: int, out: TextIO) -> int:
    console = Console(file=out, width=160)
    now = datetime.now(UTC)
    # A book as a real org and workspace hold it, in the sandbox's default: a real org (issue #14).
    book = generate_book(accounts, seed=7, now=now, real_org=True)
    with Sandbox(book) as sandbox, tempfile.TemporaryDirectory(prefix="crm-sync-demo-") as tmp:
        config, queues = _set_up(example_against(sandbox.url))
        sandbox.load({"salesforce": {"Group": queues}})
        config = config.with_state(Path(tmp) / "demo.db")
        console.rule(f"crm-sync demo: sandbox at {sandbox.url} with {accounts} generated accounts")

        console.print(
            "\n[bold]1. Dry-run audit[/bold]: every change the daemon would make, and why (nothing is written)"
        )
        copy = StateDB.snapshot(config.state_path)
        audit = _cycle(config, copy, dry_run=True)
        audit_size = len(audit.plan)
        render_plan(audit.plan[:_SHOWN], "table", out, Names(copy))
        if audit_size > _SHOWN:
            console.print(f"... and {audit_size - _SHOWN} more (run `python -m sync --dry-run` to see all)")
        copy.close()
        for error in audit.record_errors[:5]:
            console.print(Text("malformed, skipped: ", style="yellow") + cell(error))
        writes_after_audit = _writes(sandbox)

        state = StateDB.open(config.state_path)
        console.print("\n[bold]2. Applied cycle[/bold]")
        applied = _cycle(config, state, dry_run=False)
        console.print(
            f"applied {applied.counts.get('applied', 0)} of {len(applied.plan)} planned write(s) "
            f"in {applied.counts.get('vitally_puts', 0)} Vitally PUT(s); "
            f"{applied.counts.get('failed', 0)} failed"
        )

        # A cycle's plan is readable until the next cycle on the same state: summarise it now.
        applied_writes = list(applied.plan)
        by_rule = Counter(write.rule for write in applied_writes)
        owners = Counter(
            f"{w.owner.pool} → {w.owner.name}" for w in applied_writes if w.owner and w.op == "upsert_lead"
        )
        created = sum(1 for w in applied_writes if w.op == "upsert_lead")

        console.print("\n[bold]3. Second cycle[/bold]: nothing changed, so nothing to do")
        before = _writes(sandbox)
        second = _cycle(config, state, dry_run=False)
        sent = _writes(sandbox) - before
        console.print(f"planned {len(second.plan)} write(s), sent {sent} write request(s)")
        state.close()

        console.print("\n[bold]Summary[/bold]")
        for rule, count in sorted(by_rule.items()):
            console.print(f"  {rule}: {count} change(s)")
        console.print(f"  leads created in Salesforce (upsert on Sync_Key__c): {created}, owners by round robin:")
        for owner, count in sorted(owners.items()):
            console.print(f"    {owner}: {count}")
        console.print(
            f"  malformed records reported and skipped: {len(audit.record_errors)}; "
            f"conflicts left alone: {len(applied.conflicts)}"
        )
        ok = (
            writes_after_audit == 0
            and applied.exit_code == 0
            and len(applied_writes) == audit_size
            and not second.plan
            and sent == 0
        )
        console.print("[green]demo finished: all as expected[/green]" if ok else "[red]demo found a problem[/red]")
        return 0 if ok else 1
