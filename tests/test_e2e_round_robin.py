"""Round-robin owners and lead creation, end to end against the sandbox with its org assignment
rule switched on, and a daemon killed in the middle of a routing batch."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from support import org_with_queue, run_cli, vitally_account

from sandbox import Sandbox

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parent.parent
NOW = "2026-11-22T09:00:00Z"
TAMS = [f"00500000000000{i}TAM" for i in range(4)]
CAPPED = "005000000000009CAP"
PAUSED = ["005000000000001EUP", "005000000000002EUP"]
ORG_RULE_OWNER = "005000000000000ORG"
QUEUE = "00G000000000001QUE"
UPSERT = "/services/data/v59.0/composite/sobjects/Lead/Sync_Key__c"


def user(user_id: str, name: str) -> dict[str, Any]:
    return {"Id": user_id, "Name": name, "Email": f"{name.lower().replace(' ', '.')}@example.com", "IsActive": True}


def account(index: int, country: str, **extra: Any) -> dict[str, Any]:
    traits = {"country": country, "users_by_country": {country: 3}}
    segments = [{"id": "seg_am_referral", "name": "AM referral"}]
    return vitally_account(index, **{"traits": traits, "segments": segments, **extra})


def seed(routed: int, eu: int) -> dict[str, Any]:
    accounts = [account(i, "US") for i in range(routed)] + [account(10_000 + i, "DE") for i in range(eu)]
    # The capped TAM already manages 15 accounts (segment AM Managed, TAM key role with their email).
    capped_email = "cap.tam@example.com"
    for i in range(15):
        accounts.append(
            {
                **account(20_000 + i, "US"),
                "mrr": 100,
                "segments": [{"id": "seg_am_managed", "name": "AM Managed"}],
                "keyRoles": [{"keyRole": {"label": "TAM"}, "vitallyUser": {"id": f"vu_{i}", "email": capped_email}}],
            }
        )
    users = [user(t, f"Tam {i}") for i, t in enumerate(TAMS)] + [
        user(CAPPED, "Cap Tam"),
        user(ORG_RULE_OWNER, "Org Rule"),
        *(user(p, f"Eu Paused {i}") for i, p in enumerate(PAUSED)),
    ]
    return {"vitally": {"accounts": accounts}, "salesforce": org_with_queue(users, QUEUE)}


_TAM_LINES = "".join(f'    {{ user_id = "{t}", name = "Tam {i}" }},\n' for i, t in enumerate(TAMS))
POOLS = f"""
[[pools]]
team = "TAM"
region = "US"
fallback_owner = "{QUEUE}"
capacity = 15
members = [
{_TAM_LINES}    {{ user_id = "{CAPPED}", name = "Cap Tam", email = "cap.tam@example.com" }},
]

[[pools]]
team = "TAM"
region = "EU"
fallback_queue = "{QUEUE}"
members = [
    {{ user_id = "{PAUSED[0]}", name = "Eu Paused 0", active = false }},
    {{ user_id = "{PAUSED[1]}", name = "Eu Paused 1", active = false }},
]
"""


def config_for(sandbox: Sandbox, tmp_path: Path) -> Path:
    text = (ROOT / "config.example.toml").read_text().replace("http://127.0.0.1:8765", sandbox.url)
    text = text.split("# Round-robin pools")[0]  # the example's own pools are replaced by this test's
    text = text.replace("interval_seconds = 900", "interval_seconds = 1")
    path = tmp_path / "config.toml"
    path.write_text(text + POOLS)
    return path


@pytest.fixture
def sandbox() -> Iterator[Sandbox]:
    with Sandbox(seed(1000, 3)) as sb:
        sb.configure(vitally_rate_limit=10_000_000, assignment_rule_owner_id=ORG_RULE_OWNER)
        yield sb


cli = run_cli


def leads(sandbox: Sandbox) -> list[dict[str, Any]]:
    return [lead for lead in sandbox.state()["salesforce"]["Lead"] if lead.get("Sync_Key__c")]


def test_round_robin_1000_leads_over_4_tams_end_250_each_and_keep_their_owner(sandbox: Sandbox, tmp_path: Path) -> None:
    config = config_for(sandbox, tmp_path)
    result = cli(config, tmp_path / "state.db", "run", "--format", "json", "--now", NOW)
    assert result.returncode == 0, result.stderr[-2000:]

    created = leads(sandbox)
    # State and Country/Territory picklists on (a new org's default): the ISO code is CountryCode.
    us = [lead for lead in created if lead["CountryCode"] == "US"]
    assert len(us) == 1000
    assert len({lead["Sync_Key__c"] for lead in created}) == len(created)  # one lead per key
    assert Counter(lead["OwnerId"] for lead in us) == {tam: 250 for tam in TAMS}  # fair, the capped TAM none
    assert not any(lead["OwnerId"] == ORG_RULE_OWNER for lead in created)  # Sforce-Auto-Assign: FALSE held
    upserts = [c for c in sandbox.calls() if c["method"] == "PATCH" and c["path"] == UPSERT]
    assert len(upserts) == 6  # 1,003 leads in collections of 200

    eu = [lead for lead in created if lead["CountryCode"] == "DE"]
    assert [lead["OwnerId"] for lead in eu] == [QUEUE] * 3  # everybody paused: the fallback queue
    assert result.stderr.count("fallback: crm-sync-acc_1") == 3
    assert "nobody eligible" in result.stderr

    plan = [json.loads(line) for line in result.stdout.splitlines()]
    owners = [line["owner"] for line in plan if line["op"] == "upsert_lead"]
    assert {o["pool"] for o in owners} == {"TAM/US", "TAM/EU"}


def test_round_robin_explain_shows_pool_candidates_and_why(sandbox: Sandbox, tmp_path: Path) -> None:
    config = config_for(sandbox, tmp_path)
    state = tmp_path / "state.db"
    assert cli(config, state, "run", "--now", NOW).returncode == 0
    text = cli(config, state, "explain", "acc_0000", "--now", NOW).stdout
    assert "owner: TAM/US:" in text
    assert "candidates:" in text and TAMS[0] in text
    assert "skipped Cap Tam: at capacity (15/15)" in text


def wait_until(predicate: Any, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.01)
    raise AssertionError("timed out")


def test_round_robin_kill_9_mid_batch_then_restart_creates_every_lead_once(sandbox: Sandbox, tmp_path: Path) -> None:
    config = config_for(sandbox, tmp_path)
    state = tmp_path / "state.db"

    def start() -> subprocess.Popen[str]:
        return subprocess.Popen(
            [sys.executable, "-m", "sync", "--config", str(config), "--state", str(state), "daemon"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            cwd=ROOT,
        )

    first = start()
    try:
        # Let two of the six upsert chunks through, then hold the next one and kill the daemon.
        wait_until(lambda: sum(c["path"] == UPSERT for c in sandbox.calls()) >= 2)
        sandbox.add_fault("timeout", method="PATCH", path_prefix=UPSERT, count=100)
        os.kill(first.pid, signal.SIGKILL)
        first.wait(timeout=10)
    finally:
        if first.poll() is None:
            first.kill()
    partial = len(leads(sandbox))
    assert 0 < partial < 1003, "the kill should land in the middle of the routing batch"
    sandbox.clear_faults()

    second = start()
    try:
        wait_until(lambda: len(leads(sandbox)) >= 1003)

        def settled() -> bool:
            db = sqlite3.connect(state)
            try:
                pending = db.execute("SELECT count(*) FROM outbox WHERE status = 'pending'").fetchone()[0]
            finally:
                db.close()
            return bool(pending == 0)

        wait_until(settled)
    finally:
        second.send_signal(signal.SIGTERM)
        second.communicate(timeout=60)
    created = leads(sandbox)
    assert len(created) == 1003
    assert len({lead["Sync_Key__c"] for lead in created}) == 1003
    us = Counter(lead["OwnerId"] for lead in created if lead["CountryCode"] == "US")
    assert us == {tam: 250 for tam in TAMS}
    db = sqlite3.connect(state)
    charged = dict(db.execute("SELECT user_id, assigned FROM rr_credits WHERE pool = 'TAM/US'").fetchall())
    db.close()
    assert {tam: charged[tam] for tam in TAMS} == {tam: 250 for tam in TAMS}  # nobody charged twice
