"""Route in seconds (issue 17): latency and requests of the webhook path, measured end to end.

Usage:
    make bench                                  # runs this after bench/scenarios.py
    .venv/bin/python bench/events.py --events 200

The sandbox runs in this process and sends its own webhooks (`sandbox.events`) to the real daemon,
started through its CLI in a subprocess (`python -m sync daemon`) with an interval of an hour:
after its first cycle only the event path routes anything. Four measures, `--events` each, one
event at a time (each waits for the previous to be fully processed, so a figure is one event's,
not a queue's):

    segment added → lead owned    a person adds "AM referral" to a Vitally account; until the
                                  crm-sync lead with that account's Sync_Key__c exists with an owner
    inbound lead → owner set      a web-to-lead Lead arrives unowned; until it has an owner
    opportunity opened → stage    a rep opens an opportunity on the Salesforce Account of a Vitally
                                  account (the Flow on Opportunity sends its Outbound Message); until
                                  the account's lifecycle_stage trait is the TAE's
    lead for an account → stage   a demo request arrives linked to a Vitally account
                                  (`Vitally_Account_Id__c`); until it has an owner and the account's
                                  lifecycle_stage trait is "New business lead" (one Outbound Message)

Timed from the change in the sandbox to the moment the sandbox holds the result (polled every
millisecond), so the webhook's delivery is included; the Playbook's own delay in Vitally (it runs
about hourly) is not: see the README. Requests are the API calls the sandbox logged while the
change was processed, minus the write requests (the records it writes), per change and per webhook
delivered: a change whose writes make Vitally send another webhook costs that webhook's reads too.
"""

from __future__ import annotations

import argparse
import os
import platform
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sandbox import Sandbox
from sandbox.events import ORG_ID
from sandbox.store import DEFAULT_OWNER_USER_ID
from state.events import inbox_path
from sync.config import example_against

ROOT = Path(__file__).resolve().parent.parent
WRITES = frozenset({"PUT", "PATCH", "POST", "DELETE"})
VITALLY_SECRET = "bench-vitally-webhook-secret-0123456789"
SF_SECRET = "bench-salesforce-om-secret-0123456789"
GOAL_SECONDS = 5.0
GOAL_REQUESTS = 3


def machine() -> str:
    model = platform.processor() or "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass  # not Linux
    return f"{platform.node()}: {model}, {os.cpu_count()} cores; Python {platform.python_version()}"


def _seed(accounts: int) -> dict[str, Any]:
    """`accounts` Vitally accounts for the segment measure, as many more for the opportunity one,
    each of those with a Salesforce Account naming it (`SF_ACCOUNT`), and as many more for the
    linked lead one."""
    pools = example_against("http://127.0.0.1:1").pools
    users = sorted({m.user_id: m.name for pool in pools.values() for m in pool.members}.items())
    return {
        "vitally": {
            "accounts": [
                {
                    "id": f"acc_{i:05d}",
                    "externalId": f"org_{i}",
                    "name": f"Company {i}",
                    "createdAt": "2025-01-01T00:00:00.000Z",
                    "updatedAt": "2026-11-20T09:00:00.000Z",
                    "mrr": 300,
                    "traits": {"country": "US", "users_by_country": {"US": 3}},
                    "keyRoles": [],
                    "segments": [],
                }
                for i in range(3 * accounts)
            ]
        },
        "salesforce": {
            "User": [{"Id": u, "Name": name, "Email": f"{u}@example.com", "IsActive": True} for u, name in users],
            "Lead": [],
            "Account": [
                {
                    "Id": SF_ACCOUNT.format(i),
                    "Name": f"Company {i}",
                    "Vitally_Account_Id__c": f"acc_{i:05d}",
                    "CreatedDate": "2026-01-05T09:00:00.000+0000",
                    "SystemModstamp": "2026-01-05T09:00:00.000+0000",
                }
                for i in range(accounts, 2 * accounts)
            ],
        },
    }


SF_ACCOUNT = "0018d{:010d}AAA"  # the Salesforce Account naming acc_{i:05d}
TAE_STAGE = "Technical account executive"
NEW_BUSINESS_STAGE = "New business lead"


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass
class Daemon:
    config: Path
    state: Path
    port: int
    process: subprocess.Popen[str] | None = None

    @classmethod
    def configured(cls, sandbox: Sandbox, directory: Path) -> Daemon:
        port = _free_port()
        text = (ROOT / "config.example.toml").read_text().replace("http://127.0.0.1:8765", sandbox.url)
        text = text.replace("health_port = 9465", f"health_port = {port}")
        text = text.replace("interval_seconds = 900", "interval_seconds = 3600")
        # The sandbox's org gives every web-to-lead its default lead owner, as a real org does: that
        # owner means "not routed yet" (as `make demo` configures it).
        text = text.replace("unrouted_owners = []", f'unrouted_owners = ["{DEFAULT_OWNER_USER_ID}"]')
        text = text.replace('# salesforce_org_id = "00D000000000001EAA"', f'salesforce_org_id = "{ORG_ID}"')
        for name in ("vitally_secret_env", "salesforce_secret_env"):
            text = text.replace(f"# {name} = ", f"{name} = ")
        config = directory / "config.toml"
        config.write_text(text)
        return cls(config, directory / "state.db", port)

    def start(self, log: Path) -> None:
        env = {
            **os.environ,
            "CRM_SYNC_VITALLY_WEBHOOK_SECRET": VITALLY_SECRET,
            "CRM_SYNC_SALESFORCE_OM_SECRET": SF_SECRET,
        }
        command = [sys.executable, "-m", "sync", "--config", str(self.config), "--state", str(self.state), "daemon"]
        with log.open("w") as err:
            self.process = subprocess.Popen(
                command, stdout=subprocess.DEVNULL, stderr=err, text=True, cwd=ROOT, env=env
            )

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            self.process.wait(timeout=60)

    def one(self, sql: str, *, inbox: bool = False) -> Any:
        db = sqlite3.connect(inbox_path(self.state) if inbox else self.state, timeout=30)
        try:
            row = db.execute(sql).fetchone()
            return row[0] if row else None
        except sqlite3.OperationalError:
            return None
        finally:
            db.close()

    def idle(self) -> bool:
        """No event waiting and no run unfinished."""
        pending = self.one("SELECT count(*) FROM events WHERE status = 'pending'", inbox=True)
        running = self.one("SELECT count(*) FROM runs WHERE finished_at IS NULL")
        return bool(pending == 0 and running == 0)


def _until(check: Callable[[], bool], what: str, seconds: float = 60, poll: float = 0.001) -> None:
    deadline = time.monotonic() + seconds
    while not check():
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out waiting for {what}")
        time.sleep(poll)


def _lead_owned(sandbox: Sandbox, field: str, value: str, inbound_owner: str | None) -> bool:
    """The lead (by `field` = `value`) has an owner other than the one web-to-lead gave it: the
    org's default lead owner or queue is not a routed owner (a real org gives every web-to-lead one,
    the sandbox imitates that), so waiting for "an owner" would time nothing."""
    with sandbox._lock:
        table = sandbox._salesforce.tables["lead"]
        ids = [value] if field == "Id" else table.lookup(field, value)
        owners = [(table.get(i) or {}).get("OwnerId") for i in ids]
    return any(owner and owner != inbound_owner for owner in owners)


@dataclass
class Sample:
    seconds: float
    reads: int
    writes: int
    webhooks: int  # deliveries acknowledged: the change's own, and any its writes caused


def _measure(sandbox: Sandbox, daemon: Daemon, change: Callable[[], Callable[[], bool]], what: str) -> Sample:
    """One event: make the change, time it until what it returns holds (the lead owned, the
    stage written), then wait until the daemon is idle and count the requests it made for it."""
    first, sent = sandbox.calls_total(), len(sandbox.event_deliveries())
    started = time.perf_counter()
    done = change()
    _until(done, what)
    elapsed = time.perf_counter() - started
    _until(lambda: sandbox.events_pending() == 0 and daemon.idle(), "the daemon idle", poll=0.01)
    calls = sandbox.calls(first)
    writes = sum(1 for c in calls if c["method"] in WRITES)
    webhooks = sum(1 for d in sandbox.event_deliveries()[sent:] if d.get("acknowledged"))
    return Sample(elapsed, len(calls) - writes, writes, webhooks)


def _owned(sandbox: Sandbox, field: str, value: str, inbound_owner: str | None) -> Callable[[], bool]:
    return lambda: _lead_owned(sandbox, field, value, inbound_owner)


def _stage_written(sandbox: Sandbox, account: str, stage: str = TAE_STAGE) -> bool:
    with sandbox._lock:
        found = sandbox._vitally.accounts.by_id.get(account) or {}
    return bool((found.get("traits") or {}).get("lifecycle_stage") == stage)


def _opportunity_opened(sandbox: Sandbox, index: int) -> Callable[[], bool]:
    """A rep opens an opportunity on acc_{index}'s Salesforce Account: stored as an API write
    stores it (the sandbox clock's stamps), and the Flow on Opportunity's message queued."""
    salesforce = sandbox._salesforce
    with sandbox._lock:
        stamp = sandbox.now().strftime("%Y-%m-%dT%H:%M:%S.000+0000")
        table = salesforce.tables["opportunity"]
        row = {
            "Id": table.new_id(),
            "Name": f"Company {index} - annual plan",
            "AccountId": SF_ACCOUNT.format(index),
            "StageName": "Prospecting",
            "CloseDate": "2026-12-31",
            "Amount": 3600,
            "CreatedDate": stamp,
            "LastModifiedDate": stamp,
            "SystemModstamp": stamp,
        }
        table.put(row)
        assert salesforce.opportunity_changed is not None
        salesforce.opportunity_changed(row)
    return lambda: _stage_written(sandbox, f"acc_{index:05d}")


def _linked_lead(sandbox: Sandbox, index: int) -> Callable[[], bool]:
    """A demo request for acc_{index} (`Vitally_Account_Id__c`), as a web form or a rep enters it."""
    field, lead, inbound_owner = _web_to_lead(sandbox, index, account=f"acc_{index:05d}")
    owned = _owned(sandbox, field, lead, inbound_owner)
    return lambda: owned() and _stage_written(sandbox, f"acc_{index:05d}", NEW_BUSINESS_STAGE)


def _web_to_lead(sandbox: Sandbox, index: int, account: str | None = None) -> tuple[str, str, str | None]:
    row = {
        "LastName": f"Doe {index}",
        "Company": f"Inbound {index}",
        "LeadSource": "Demo request",
        "Country": "US",
        "Status": "Open - Not Contacted",
        "Email": f"jane{index}@northwind{index}.com",
        "Form_Text__c": "We would like a demo for our data team of 40 engineers.",
    }
    if account is not None:
        row["Vitally_Account_Id__c"] = account
    with sandbox._lock:
        [lead] = sandbox._salesforce.add_leads([row], owner_ids=[])
        inbound_owner = (sandbox._salesforce.tables["lead"].get(lead) or {}).get("OwnerId")  # before routing
    return "Id", lead, inbound_owner


def _percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(share * len(ordered) + 0.5) - 1))]


def _row(name: str, samples: list[Sample]) -> str:
    seconds = [s.seconds for s in samples]
    reads = [s.reads for s in samples]
    per_webhook = max(s.reads / max(s.webhooks, 1) for s in samples)
    return (
        f"| {name} | {len(samples)} | {statistics.median(seconds):.3f} s | {_percentile(seconds, 0.95):.3f} s | "
        f"{max(seconds):.3f} s | {statistics.mean(reads):.2f} (max {max(reads)}) | "
        f"{statistics.mean(s.webhooks for s in samples):.2f} | {per_webhook:.2f} | "
        f"{statistics.mean(s.writes for s in samples):.2f} |"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=200, help="events per measure (default 200)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="crm-sync-bench-events-") as tmp, Sandbox(_seed(args.events)) as sandbox:
        sandbox.configure(vitally_rate_limit=10**7)
        daemon = Daemon.configured(sandbox, Path(tmp))
        daemon.start(Path(tmp) / "daemon.log")
        try:
            _until(lambda: daemon.one("SELECT count(*) FROM runs WHERE finished_at IS NOT NULL") == 1, "a cycle")
            sandbox.configure_events(
                vitally_url=f"http://127.0.0.1:{daemon.port}/events/vitally/{VITALLY_SECRET}",
                salesforce_url=f"http://127.0.0.1:{daemon.port}/events/salesforce/{SF_SECRET}",
            )

            def segment(index: int) -> Callable[[], Callable[[], bool]]:
                def change() -> Callable[[], bool]:
                    sandbox.set_segment(f"acc_{index:05d}", "AM referral")
                    return _owned(sandbox, "Sync_Key__c", f"crm-sync-acc_{index:05d}-1", None)

                return change

            def inbound_lead(index: int) -> Callable[[], Callable[[], bool]]:
                return lambda: _owned(sandbox, *_web_to_lead(sandbox, index))

            def opportunity(index: int) -> Callable[[], Callable[[], bool]]:
                return lambda: _opportunity_opened(sandbox, index)

            def linked_lead(index: int) -> Callable[[], Callable[[], bool]]:
                return lambda: _linked_lead(sandbox, index)

            events = range(args.events)
            segments = [_measure(sandbox, daemon, segment(i), "a lead owned") for i in events]
            inbound = [_measure(sandbox, daemon, inbound_lead(i), "an owner set") for i in events]
            opened = [_measure(sandbox, daemon, opportunity(args.events + i), "the stage written") for i in events]
            linked = [
                _measure(sandbox, daemon, linked_lead(2 * args.events + i), "an owner and the stage") for i in events
            ]
            cycles = daemon.one("SELECT count(*) FROM runs WHERE mode != 'event'")
        finally:
            daemon.stop()
    print(f"Webhook path (issue 17) on {machine()}")
    print(f"Scheduled cycles during the run: {cycles} (the first; the interval is an hour)\n")
    print(
        "| measure | events | p50 | p95 | max | reads per change | webhooks per change | reads per webhook (max) "
        "| writes per change |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    print(_row("segment added in Vitally → lead owned in Salesforce", segments))
    print(_row("inbound lead created in Salesforce → owner set", inbound))
    print(_row("opportunity opened in Salesforce → account's stage in Vitally", opened))
    print(_row("lead for an account in Salesforce → owner set and account's stage in Vitally", linked))
    worst = max(s.reads / max(s.webhooks, 1) for s in segments + inbound + opened + linked)
    p95 = max(_percentile([s.seconds for s in samples], 0.95) for samples in (segments, inbound, opened, linked))
    print(
        f"\nGoals: p95 ≤ {GOAL_SECONDS:g} s ({'met' if p95 <= GOAL_SECONDS else 'missed'}), "
        f"requests per webhook beyond writes ≤ {GOAL_REQUESTS} ({'met' if worst <= GOAL_REQUESTS else 'missed'})."
    )
    print(
        "A segment change costs one webhook here: the sandbox's Playbooks run an hour (sandbox clock) after a\n"
        "trait write, as Vitally's hourly runs do, so crm-sync's own trait write echoes after the measure."
    )


if __name__ == "__main__":
    main()
