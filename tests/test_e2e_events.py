"""The webhook path end to end (issue 17): the real daemon in a subprocess, the sandbox sending its
own Vitally Playbook webhooks and Salesforce Outbound Messages to the daemon's receiver, with
duplicates, out-of-order and lost deliveries and a kill -9 in the middle of an event's mini-cycle.

The daemon's interval is an hour, so after its first cycle only the event path can route a
record until it is restarted: the restart's first (scheduled) cycle is what recovers the events
that were lost. Checked at the end: one lead per Sync_Key__c, every inbound lead owned, each
owner drawn once (assignments = round-robin credits, one per lead), no event left pending or
given up, and every delivery the sandbox saw acknowledged is in the state's event inbox.

Payload shapes: see tests/test_sandbox_events.py (tests/fixtures/real/SOURCES.md)."""

from __future__ import annotations

import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from support import SANDBOX_ORG_UNROUTED, UNROUTED_DEFAULT, pool_users, vitally_account

from sandbox import Sandbox
from sandbox.events import ORG_ID
from state.events import inbox_path
from sync.config import example_against

pytestmark = [pytest.mark.e2e, pytest.mark.chaos]

ROOT = Path(__file__).resolve().parent.parent
VITALLY_SECRET = "e2e-vitally-webhook-secret-0123456789"
SF_SECRET = "e2e-salesforce-om-secret-0123456789"
UPSERT = "/services/data/v59.0/composite/sobjects/Lead/Sync_Key__c"
ACCOUNTS = 24
FORM = "We would like a demo for our data team of 40 engineers."


def _seed() -> dict[str, Any]:
    return {
        "vitally": {"accounts": [vitally_account(i) for i in range(ACCOUNTS)]},
        "salesforce": {"User": pool_users(example_against("http://127.0.0.1:1")), "Lead": []},
    }


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class Daemon:
    def __init__(self, sandbox: Sandbox, directory: Path) -> None:
        self.port = _free_port()
        text = (ROOT / "config.example.toml").read_text().replace("http://127.0.0.1:8765", sandbox.url)
        text = text.replace("health_port = 9465", f"health_port = {self.port}")
        text = text.replace(UNROUTED_DEFAULT, SANDBOX_ORG_UNROUTED)  # the org's default lead owner waits
        text = text.replace('# salesforce_org_id = "00D000000000001EAA"', f'salesforce_org_id = "{ORG_ID}"')
        for name in ("vitally_secret_env", "salesforce_secret_env"):  # the secrets come from the environment
            text = text.replace(f"# {name} = ", f"{name} = ")
        assert "interval_seconds = 900" in text and f'salesforce_org_id = "{ORG_ID}"' in text
        text = text.replace("interval_seconds = 900", "interval_seconds = 3600")
        self.config = directory / "config.toml"
        self.config.write_text(text)
        self.state = directory / "state.db"
        self.log = directory / "daemon.log"
        self.process: subprocess.Popen[str] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        env = {
            **os.environ,
            "CRM_SYNC_VITALLY_WEBHOOK_SECRET": VITALLY_SECRET,
            "CRM_SYNC_SALESFORCE_OM_SECRET": SF_SECRET,
        }
        command = [sys.executable, "-m", "sync", "--config", str(self.config), "--state", str(self.state), "daemon"]
        with self.log.open("a") as err:  # a file, not a pipe: a pipe nobody reads could block the daemon
            self.process = subprocess.Popen(
                command, stdout=subprocess.DEVNULL, stderr=err, text=True, cwd=ROOT, env=env
            )

    def kill(self) -> None:
        assert self.process is not None
        os.kill(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=10)
        assert self.process.returncode == -signal.SIGKILL

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)

    def query(self, sql: str, *, inbox: bool = False) -> list[tuple[Any, ...]]:
        """Rows of the state file (of its event inbox with `inbox`); none before it exists."""
        path = inbox_path(self.state) if inbox else self.state
        if not path.exists():
            return []
        db = sqlite3.connect(path, timeout=30)
        try:
            return db.execute(sql).fetchall()
        except sqlite3.OperationalError:
            return []  # not migrated yet
        finally:
            db.close()

    def cycles(self) -> int:
        return len(self.query("SELECT id FROM runs WHERE mode != 'event' AND finished_at IS NOT NULL"))


def _until(check: Callable[[], bool], what: str, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def _start_sending_webhooks(sandbox: Sandbox, daemon: Daemon, **delivery: Any) -> None:
    """Start the daemon, wait for its first cycle, then have the sandbox send its webhooks (with
    `delivery`'s duplicates, jitter, ...) to the daemon's receiver."""
    daemon.start()
    _until(lambda: daemon.cycles() == 1, "the first cycle")
    sandbox.configure_events(
        vitally_url=f"{daemon.url}/events/vitally/{VITALLY_SECRET}",
        salesforce_url=f"{daemon.url}/events/salesforce/{SF_SECRET}",
        **delivery,
    )


def _pending_events(daemon: Daemon) -> bool:
    return bool(daemon.query("SELECT 1 FROM events WHERE status = 'pending'", inbox=True))


def _web_to_lead(sandbox: Sandbox, index: int) -> str:
    row = {
        "LastName": f"Doe {index}",
        "Company": f"Inbound {index}",
        "LeadSource": "Demo request",
        "Country": "US",
        "Status": "Open - Not Contacted",
        "Email": f"jane{index}@northwind{index}.com",
        "Form_Text__c": FORM,
    }
    with sandbox._lock:
        [lead] = sandbox._salesforce.add_leads([row], owner_ids=[])
    return lead


def _leads(sandbox: Sandbox) -> list[dict[str, Any]]:
    return list(sandbox.state()["salesforce"]["Lead"])


def _routed(sandbox: Sandbox, accounts: range) -> bool:
    keys = {lead.get("Sync_Key__c") for lead in _leads(sandbox) if lead.get("OwnerId")}
    return all(f"crm-sync-acc_{i:04d}-1" in keys for i in accounts)


def _owned(sandbox: Sandbox, leads: list[str]) -> bool:
    owners = {lead["Id"]: lead.get("OwnerId") for lead in _leads(sandbox)}
    return all(owners.get(lead) for lead in leads)


@pytest.fixture
def world(tmp_path: Path) -> Iterator[tuple[Sandbox, Daemon]]:
    with Sandbox(_seed()) as sandbox:
        sandbox.configure(vitally_rate_limit=10**7, fault_timeout_s=5)
        daemon = Daemon(sandbox, tmp_path)
        try:
            yield sandbox, daemon
        finally:
            daemon.stop()


def test_events_twice_out_of_order_lost_and_a_kill_9_route_each_record_once(world: tuple[Sandbox, Daemon]) -> None:
    sandbox, daemon = world
    _start_sending_webhooks(
        sandbox,
        daemon,
        duplicate_share=0.5,
        jitter_s=0.3,
        salesforce_retry_s=0.5,
        salesforce_max_attempts=10,
        random_seed=17,
    )

    # 1. Twice and out of order: routed by mini-cycles alone (the next cycle is an hour away).
    for i in range(8):
        sandbox.set_segment(f"acc_{i:04d}", "AM referral")
    inbound = [_web_to_lead(sandbox, i) for i in range(4)]
    _until(lambda: _routed(sandbox, range(8)) and _owned(sandbox, inbound), "the first events routed")
    assert daemon.cycles() == 1
    assert any(d.get("duplicate") for d in sandbox.event_deliveries())

    # 2. kill -9 in an event's mini-cycle: the lead upsert takes effect, its answer never comes.
    sandbox.add_fault("drop_response", method="PATCH", path_prefix=UPSERT, count=1)
    before = len(sandbox.calls())
    for i in range(8, 12):
        sandbox.set_segment(f"acc_{i:04d}", "AM referral")
    _until(lambda: any(c.get("fault") for c in sandbox.calls()[before:]), "the upsert in flight")
    daemon.kill()

    # 3. While the daemon is down: Vitally's webhooks fail and are gone, Salesforce's are retried;
    # and with the daemon up, more Vitally webhooks are lost on the way.
    sandbox.set_segment("acc_0012", "AM referral")
    inbound.append(_web_to_lead(sandbox, 4))
    daemon.start()
    _until(lambda: daemon.cycles() == 2, "the restart's cycle")  # routes what was lost, settles the outbox
    sandbox.configure_events(loss_share=1.0)
    for i in range(13, 15):
        sandbox.set_segment(f"acc_{i:04d}", "AM referral")
    sandbox.configure_events(loss_share=0.0)
    for i in range(15, 18):
        sandbox.set_segment(f"acc_{i:04d}", "AM referral")
    inbound.append(_web_to_lead(sandbox, 5))
    _until(lambda: _routed(sandbox, range(15, 18)) and _owned(sandbox, inbound), "the events after the restart")
    assert not _routed(sandbox, range(13, 15))  # lost: left for the scheduled cycle
    daemon.stop()
    daemon.start()  # the next scheduled cycle (the first after a start)
    _until(lambda: daemon.cycles() == 3, "the scheduled cycle")
    _until(lambda: _routed(sandbox, range(18)), "every account routed")
    # Every delivery answered, every stored event processed (a repeat or an echo of the cycle's
    # own writes may still arrive after the accounts are routed).
    _until(lambda: sandbox.events_pending() == 0 and not _pending_events(daemon), "every event processed")
    daemon.stop()

    # One lead per Sync_Key__c, one per routed account.
    keys = Counter(lead["Sync_Key__c"] for lead in _leads(sandbox) if lead.get("Sync_Key__c"))
    assert keys == Counter({f"crm-sync-acc_{i:04d}-1": 1 for i in range(18)})
    assert _owned(sandbox, inbound)
    # Each owner drawn once: a draw is an assignment and a round-robin credit.
    assigned = Counter(
        {
            (pool, user): n
            for pool, user, n in daemon.query("SELECT pool, user_id, count(*) FROM assignments GROUP BY 1, 2")
        }
    )
    credits = Counter(
        {(pool, user): n for pool, user, n in daemon.query("SELECT pool, user_id, assigned FROM rr_credits") if n}
    )
    assert assigned == credits
    assert sum(assigned.values()) == 18 + len(inbound)
    # Every event processed; every delivery acknowledged was stored.
    statuses = dict(daemon.query("SELECT status, count(*) FROM events GROUP BY 1", inbox=True))
    assert set(statuses) == {"done"}, statuses
    stored = {delivery for (delivery,) in daemon.query("SELECT delivery FROM events", inbox=True)}
    records = {(source, record) for source, record in daemon.query("SELECT source, record FROM events", inbox=True)}
    acknowledged = [d for d in sandbox.event_deliveries() if d.get("acknowledged")]
    assert {f"salesforce:{d['key']}" for d in acknowledged if d["source"] == "salesforce"} <= stored
    assert {(d["source"], d["record"]) for d in acknowledged} <= records
    lost = [d for d in sandbox.event_deliveries() if d.get("lost") or d.get("status") == 0]
    assert {d["record"] for d in lost} >= {"acc_0012", "acc_0013", "acc_0014"}
    assert daemon.query("SELECT count(*) FROM outbox WHERE status != 'done'") == [(0,)]


def test_a_kill_9_while_an_event_is_applied_is_finished_as_the_daemon_starts(world: tuple[Sandbox, Daemon]) -> None:
    """The events of a mini-cycle killed between its plan and its writes stay pending (they are
    done only once their writes were applied), and the restarted daemon processes them before its
    first cycle: the lead is written by an event run, once, with the owner drawn before the kill."""
    sandbox, daemon = world
    _start_sending_webhooks(sandbox, daemon)
    # The upsert hangs (and never reaches Salesforce): the daemon is killed while it waits.
    sandbox.add_fault("timeout", method="PATCH", path_prefix=UPSERT, count=1)
    before = len(sandbox.calls())
    sandbox.set_segment("acc_0000", "AM referral")
    _until(lambda: any(c.get("fault") for c in sandbox.calls()[before:]), "the upsert in flight")
    daemon.kill()
    assert not _routed(sandbox, range(1))
    stored = daemon.query("SELECT id, record, status FROM events", inbox=True)
    assert {record for _, record, _ in stored} == {"acc_0000"}
    assert {status for _, _, status in stored} == {"pending"}, "an event is done only once its writes are applied"
    [(killed_run,)] = daemon.query("SELECT max(id) FROM runs")
    drawn = daemon.query("SELECT key, user_id FROM assignments")
    assert len(drawn) == 1  # the owner was drawn and recorded with the planned write

    started = time.monotonic()
    daemon.start()
    _until(lambda: _routed(sandbox, range(1)), "the lead written after the restart", seconds=20)
    waited = time.monotonic() - started
    _until(lambda: daemon.cycles() == 2, "the restart's cycle")
    daemon.stop()

    assert waited < 15, f"{waited:.1f} s: the interval is an hour, so only the start-up processing can do it"
    ids = ",".join(str(int(event_id)) for event_id, _, _ in stored)
    finished = daemon.query(f"SELECT DISTINCT status, run_id FROM events WHERE id IN ({ids})", inbox=True)
    [(status, run_id)] = finished  # the events the killed run left, finished together
    [(mode,)] = daemon.query(f"SELECT mode FROM runs WHERE id = {int(run_id)}")
    restart_cycle = max(r for (r,) in daemon.query("SELECT id FROM runs WHERE mode != 'event'"))
    # Finished by an event run of the restarted daemon, before its first cycle.
    assert (status, mode) == ("done", "event") and killed_run < run_id < restart_cycle
    keys = Counter(lead["Sync_Key__c"] for lead in _leads(sandbox) if lead.get("Sync_Key__c"))
    assert keys == Counter({"crm-sync-acc_0000-1": 1})
    [lead] = [lead for lead in _leads(sandbox) if lead.get("Sync_Key__c")]
    assert daemon.query("SELECT key, user_id FROM assignments") == drawn  # no owner drawn twice
    assert lead["OwnerId"] == drawn[0][1]
    credits = daemon.query("SELECT sum(assigned) FROM rr_credits")
    assert credits == [(1,)]
    assert daemon.query("SELECT count(*) FROM outbox WHERE status != 'done'") == [(0,)]


def test_webhooks_are_acknowledged_at_once_while_the_state_is_locked_and_routed_after(
    world: tuple[Sandbox, Daemon],
) -> None:
    """A scheduled cycle holds the state's write lock for its whole plan (longer than
    `queue_wait_seconds` on a large book); here another connection holds it 4 s against a wait of
    1 s. Every webhook is answered 200 within a second, stored, and routed once the lock is let go."""
    sandbox, daemon = world
    text = daemon.config.read_text()
    assert "queue_wait_seconds = 20" in text
    daemon.config.write_text(text.replace("queue_wait_seconds = 20", "queue_wait_seconds = 1"))
    _start_sending_webhooks(sandbox, daemon)
    holder = sqlite3.connect(daemon.state, isolation_level=None, timeout=30)
    try:
        holder.execute("BEGIN IMMEDIATE")
        locked = time.monotonic()
        for i in range(4):
            sandbox.set_segment(f"acc_{i:04d}", "AM referral")
        inbound = [_web_to_lead(sandbox, 0)]
        _until(lambda: len(sandbox.event_deliveries()) >= 5, "the webhooks answered", seconds=10)
        assert time.monotonic() - locked < 4  # all answered while the lock is still held
        time.sleep(max(0.0, 4 - (time.monotonic() - locked)))
        assert not _routed(sandbox, range(4))  # the main thread waits for the lock: nothing planned yet
        holder.execute("ROLLBACK")
    finally:
        holder.close()
    deliveries = sandbox.event_deliveries()
    assert [d["status"] for d in deliveries] == [200] * len(deliveries)
    assert all(d["acknowledged"] for d in deliveries)
    assert max(d["sent"] - d["emitted"] for d in deliveries) < 1.0
    _until(lambda: _routed(sandbox, range(4)) and _owned(sandbox, inbound), "the events routed", seconds=30)
    assert daemon.cycles() == 1  # by the event path alone (the next cycle is an hour away)
    keys = Counter(lead["Sync_Key__c"] for lead in _leads(sandbox) if lead.get("Sync_Key__c"))
    assert keys == Counter({f"crm-sync-acc_{i:04d}-1": 1 for i in range(4)})


def _stage(sandbox: Sandbox, account: str) -> Any:
    [found] = [a for a in sandbox.state()["vitally"]["accounts"] if a["id"] == account]
    return found["traits"].get("lifecycle_stage")


def _rep_creates(sandbox: Sandbox, sobject: str, fields: dict[str, Any]) -> str:
    """A record a rep creates through the REST API, as the org's users do; its Id."""
    created = requests.post(
        f"{sandbox.url}/services/data/v59.0/sobjects/{sobject}",
        json=fields,
        headers={"Authorization": "Bearer rep"},
        timeout=10,
    )
    assert created.status_code == 201, created.text
    return str(created.json()["id"])


def test_an_opportunity_a_rep_opens_moves_its_accounts_stage_without_a_cycle(world: tuple[Sandbox, Daemon]) -> None:
    """A rep opens an opportunity on the Salesforce Account of acc_0002 (through the REST API, as
    the org's users do); the sandbox's Flow on Opportunity sends its Outbound Message (twice: a
    duplicate), and the daemon's mini-cycle moves the Vitally account to the TAE's stage within
    seconds, not at the next scheduled cycle (an hour away), writing it once."""
    sandbox, daemon = world
    stamp = "2026-11-20T09:00:00.000+0000"
    sf_account = {"Id": "001000000000002AAA", "Name": "Company 2", "Vitally_Account_Id__c": "acc_0002"}
    sandbox.load({"salesforce": {"Account": [{**sf_account, "CreatedDate": stamp, "SystemModstamp": stamp}]}})
    _start_sending_webhooks(sandbox, daemon, duplicate_share=1.0)
    before = _stage(sandbox, "acc_0002")
    assert before != "Technical account executive"
    sandbox.reset()
    opportunity = {
        "Name": "Annual plan",
        "AccountId": sf_account["Id"],
        "StageName": "Prospecting",
        "CloseDate": "2026-12-31",
    }
    _rep_creates(sandbox, "Opportunity", opportunity)
    _until(lambda: _stage(sandbox, "acc_0002") == "Technical account executive", "the account's new stage")
    _until(lambda: not _pending_events(daemon), "the duplicate's mini-cycle")
    assert daemon.cycles() == 1  # no scheduled cycle ran since the first
    puts = [c for c in sandbox.calls() if c["method"] == "PUT" and "acc_0002" in str(c["path"])]
    assert len(puts) == 1  # the duplicate found nothing left to write


def test_a_lead_a_rep_creates_for_an_account_moves_its_stage_without_a_cycle(world: tuple[Sandbox, Daemon]) -> None:
    """A rep enters a demo request by hand for the Vitally account acc_0003 (through the REST API,
    `Vitally_Account_Id__c` set, the org's default owner: waiting for routing); the sandbox's
    Flow on Lead sends its Outbound Message (twice: a duplicate), and the daemon's mini-cycle
    routes the lead and moves the account to "New business lead" within seconds, not at the next
    scheduled cycle (an hour away), writing the account once."""
    sandbox, daemon = world
    _start_sending_webhooks(sandbox, daemon, duplicate_share=1.0)
    assert _stage(sandbox, "acc_0003") != "New business lead"
    sandbox.reset()
    lead = {
        "LastName": "Hand",
        "Company": "Company 3",
        "LeadSource": "Demo request",
        "CountryCode": "US",  # the org has State and Country/Territory picklists (the sandbox's default)
        "Status": "Open - Not Contacted",
        "Email": "ada@company3.com",
        "Form_Text__c": FORM,
        "Vitally_Account_Id__c": "acc_0003",
    }
    lead_id = _rep_creates(sandbox, "Lead", lead)
    _until(lambda: _stage(sandbox, "acc_0003") == "New business lead", "the account's new stage")
    _until(lambda: _owned(sandbox, [lead_id]) and not _pending_events(daemon), "the lead's owner and the duplicate")
    assert daemon.cycles() == 1  # no scheduled cycle ran since the first
    puts = [c for c in sandbox.calls() if c["method"] == "PUT" and "acc_0003" in str(c["path"])]
    assert len(puts) == 1  # the duplicate found nothing left to write
