"""A round-robin owner deactivated in Salesforce before their lead was created is drawn again.

The owner of a routed account's lead is drawn once and remembered, so that a retry never draws
twice. But Salesforce refuses a lead whose owner is an inactive user: `INACTIVE_OWNER_OR_USER`,
"operation performed with inactive user [005…] as owner of lead" (the sandbox answers it as an
org does, tests/test_sandbox_salesforce.py). Before, a lead drawn for a TAM who was deactivated
between the draw and the write (an admin offboarding someone while Salesforce was failing, or in
the seconds between a cycle's read and its write) was parked, planned again each cycle with the
same owner (a parked write waits for `retry`, which sends the same refused owner), and never
created: the account never reached a person.

Now the draw is taken back (the member is charged nothing for a lead they never got), the pool
draws again, the writes carrying the old owner are set aside with the reason, and the lead is
created once, with an active member. Never while a send carrying the old owner may have created
the lead: then the next read shows the lead, which keeps its owner.

Against the sandbox, through the CLI, as a user runs it.
"""

from __future__ import annotations

import json
import sqlite3
import subprocess
from pathlib import Path
from typing import Any

import pytest
from support import org_with_queue, person_sets_record, run_cli, vitally_account

from sandbox import Sandbox

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parent.parent
NOW = "2026-11-22T09:00:00Z"
TAMS = ["005000000000000TA0", "005000000000000TA1", "005000000000000TA2"]
QUEUE = "00G000000000001QUE"
UPSERT = "/services/data/v59.0/composite/sobjects/Lead/Sync_Key__c"
INACTIVE = "operation performed with inactive user [{}] as owner of lead"


def user(user_id: str, index: int) -> dict[str, Any]:
    """A User as an org holds it: the fields Salesforce requires of one (its describe: Username,
    LastName, Alias, ProfileId, TimeZoneSidKey) are set, so an admin's edit of it is accepted."""
    return {
        "Id": user_id,
        "FirstName": "Tam",
        "LastName": str(index),
        "Name": f"Tam {index}",
        "Email": f"tam.{index}@example.com",
        "Username": f"tam.{index}@org.example",
        "Alias": f"tam{index}",
        "ProfileId": "00e000000000001AAA",
        "TimeZoneSidKey": "America/New_York",
        "IsActive": True,
    }


def seed() -> dict[str, Any]:
    traits = {"country": "US", "users_by_country": {"US": 3}}
    account = vitally_account(0, traits=traits, segments=[{"id": "seg_am_referral", "name": "AM referral"}])
    return {
        "vitally": {"accounts": [account]},
        "salesforce": org_with_queue([user(t, i) for i, t in enumerate(TAMS)], QUEUE),
    }


def config_for(sandbox: Sandbox, tmp_path: Path, *, salesforce_attempts: int = 5) -> Path:
    text = (ROOT / "config.example.toml").read_text().replace("http://127.0.0.1:8765", sandbox.url)
    head, salesforce = text.split("[salesforce]", 1)
    text = head + "[salesforce]" + salesforce.replace("max_attempts = 5", f"max_attempts = {salesforce_attempts}", 1)
    text = text.split("# Round-robin pools")[0]  # the example's own pools are replaced by this one
    members = "".join(f'    {{ user_id = "{tam}", name = "Tam {i}" }},\n' for i, tam in enumerate(TAMS))
    pool = f'\n[[pools]]\nteam = "TAM"\nregion = "US"\nfallback_owner = "{QUEUE}"\nmembers = [\n{members}]\n'
    path = tmp_path / "config.toml"
    path.write_text(text + pool)
    return path


@pytest.fixture
def sandbox() -> Any:
    with Sandbox(seed()) as sb:
        sb.configure(vitally_rate_limit=10_000_000)
        yield sb


def deactivate(sandbox: Sandbox, user_id: str) -> None:
    """An admin deactivates a user (Setup, or the sObject API: `IsActive` false)."""
    person_sets_record(sandbox.url, "User", user_id, IsActive=False)


def run_once_tam_0_is_gone(
    sandbox: Sandbox, config: Path, state: Path, *args: str
) -> tuple[int, subprocess.CompletedProcess[str]]:
    """Deactivate Tam 0, then `run` (exit 0): (the sandbox's call count before it, the run)."""
    deactivate(sandbox, TAMS[0])
    mark = len(sandbox.calls())
    run = run_cli(config, state, "run", *args, "--now", NOW)
    assert run.returncode == 0, run.stderr[-2000:]
    return mark, run


def our_leads(sandbox: Sandbox) -> list[dict[str, Any]]:
    return [lead for lead in sandbox.state()["salesforce"]["Lead"] if lead.get("Sync_Key__c")]


def upserts(sandbox: Sandbox, since: int = 0) -> int:
    """How many lead upserts (collections) reached Salesforce since call `since`."""
    return sum(call["method"] == "PATCH" and call["path"] == UPSERT for call in sandbox.calls(since))


def sends(state: Path) -> list[tuple[str, str, int]]:
    """Every new-lead write the state queued: (owner, status, attempts), in order."""
    rows = table(state, "SELECT payload, status, attempts FROM outbox WHERE op = 'upsert_lead' ORDER BY id")
    return [(json.loads(payload)["OwnerId"], status, attempts) for payload, status, attempts in rows]


def table(state: Path, sql: str) -> list[tuple[Any, ...]]:
    db = sqlite3.connect(state)
    try:
        return db.execute(sql).fetchall()
    finally:
        db.close()


def test_a_lead_refused_for_its_deactivated_owner_is_drawn_again_and_created_once(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    config, state = config_for(sandbox, tmp_path), tmp_path / "state.db"
    # The race: Tam 0 is active when the cycle reads the users and draws, and deactivated by the
    # time the lead is written, so Salesforce refuses the write.
    sandbox.add_record_errors("Lead", "INACTIVE_OWNER_OR_USER", match={"OwnerId": TAMS[0]}, message=INACTIVE)
    first = run_cli(config, state, "run", "--now", NOW)
    assert first.returncode == 1, first.stderr[-2000:]  # a write was parked
    assert our_leads(sandbox) == []
    assert sends(state) == [(TAMS[0], "parked", 1)]
    mark, second = run_once_tam_0_is_gone(sandbox, config, state, "--format", "json")
    leads = our_leads(sandbox)
    assert [lead["OwnerId"] for lead in leads] == [TAMS[1]]  # created once, with the next member
    assert upserts(sandbox, mark) == 1
    assert sends(state) == [(TAMS[0], "superseded", 1), (TAMS[1], "done", 1)]  # Tam 0 never sent again
    plan = [json.loads(line) for line in second.stdout.splitlines()]
    [owner] = [line["owner"] for line in plan if line["op"] == "upsert_lead"]
    assert owner["user_id"] == TAMS[1]
    explained = run_cli(config, state, "explain", "acc_0000", "--now", NOW)
    assert "drawn again: Tam 0 (005000000000000TA0), drawn in run 1, is inactive in Salesforce" in explained.stdout

    # The parked write is set aside with the reason, so `failed` no longer lists it.
    [(why,)] = table(state, "SELECT last_error FROM outbox WHERE status = 'superseded'")
    assert why == "drawn again: Tam 0 (005000000000000TA0), drawn in run 1, is inactive in Salesforce"
    listed = run_cli(config, state, "failed")
    assert listed.returncode == 0 and "no parked writes" in listed.stderr
    # Tam 0 is charged nothing for a lead they never got: one lead assigned, to Tam 1.
    assigned = dict(table(state, "SELECT user_id, assigned FROM rr_credits WHERE pool = 'TAM/US'"))
    assert assigned == {TAMS[0]: 0, TAMS[1]: 1, TAMS[2]: 0}

    third = run_cli(config, state, "run", "--now", NOW)
    assert third.returncode == 0 and len(our_leads(sandbox)) == 1  # settled: nothing drawn or sent again


def test_an_owner_deactivated_while_salesforce_failed_is_drawn_again_before_the_lead_is_sent(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    config, state = config_for(sandbox, tmp_path, salesforce_attempts=1), tmp_path / "state.db"
    # Salesforce answers 503 to the upsert of the first cycle: the lead waits, drawn for Tam 0.
    sandbox.add_fault("status", method="PATCH", path_prefix=UPSERT, status=503, count=100)
    first = run_cli(config, state, "run", "--now", NOW)
    assert first.returncode == 1, first.stderr[-2000:]
    assert [(owner, status) for owner, status, _ in sends(state)] == [(TAMS[0], "pending")]
    sandbox.clear_faults()
    mark, _ = run_once_tam_0_is_gone(sandbox, config, state)
    assert [lead["OwnerId"] for lead in our_leads(sandbox)] == [TAMS[1]]
    assert upserts(sandbox, mark) == 1
    assert [(owner, status) for owner, status, _ in sends(state)] == [(TAMS[0], "superseded"), (TAMS[1], "done")]
    assigned = dict(table(state, "SELECT user_id, assigned FROM rr_credits WHERE pool = 'TAM/US'"))
    assert assigned == {TAMS[0]: 0, TAMS[1]: 1, TAMS[2]: 0}


def test_a_lead_whose_answer_was_lost_keeps_the_owner_it_was_created_with(sandbox: Sandbox, tmp_path: Path) -> None:
    config, state = config_for(sandbox, tmp_path), tmp_path / "state.db"
    # The upsert takes effect but its answer never comes back (the look after it finds the lead
    # under its key: done); Tam 0 is deactivated afterwards.
    sandbox.add_fault("drop_response", method="PATCH", path_prefix=UPSERT)
    first = run_cli(config, state, "run", "--now", NOW)
    assert first.returncode == 0, first.stderr[-2000:]
    assert [lead["OwnerId"] for lead in our_leads(sandbox)] == [TAMS[0]]
    sandbox.clear_faults()
    mark, _ = run_once_tam_0_is_gone(sandbox, config, state)
    # The lead exists with Tam 0: nothing is drawn again and no owner is written over it.
    assert [lead["OwnerId"] for lead in our_leads(sandbox)] == [TAMS[0]]
    assert upserts(sandbox, mark) == 0
    assert [(owner, status) for owner, status, _ in sends(state)] == [(TAMS[0], "done")]  # settled as applied
    assert table(state, "SELECT user_id, reason LIKE '%drawn again%' FROM assignments") == [(TAMS[0], 0)]


def test_apply_of_a_reviewed_plan_that_drew_again_records_the_new_owner(sandbox: Sandbox, tmp_path: Path) -> None:
    """A dry run's plan draws again for the deactivated owner (on its copy of the state); `apply`
    of that plan takes the old draw back in the real state and records the plan's (found by a
    review: apply refused it as "Tam 0 was drawn for it since the plan", and the lead waited)."""
    config, state = config_for(sandbox, tmp_path), tmp_path / "state.db"
    sandbox.add_record_errors("Lead", "INACTIVE_OWNER_OR_USER", match={"OwnerId": TAMS[0]}, message=INACTIVE)
    assert run_cli(config, state, "run", "--now", NOW).returncode == 1  # parked, drawn for Tam 0
    deactivate(sandbox, TAMS[0])
    plan = tmp_path / "plan.json"
    dry = run_cli(config, state, "run", "--dry-run", "--out", str(plan), "--now", NOW)
    assert dry.returncode == 0, dry.stderr[-2000:]
    applied = run_cli(config, state, "apply", str(plan))
    assert applied.returncode == 0, applied.stderr[-2000:]
    assert "1 owner(s) recorded from the plan, none drawn" in applied.stderr
    assert [lead["OwnerId"] for lead in our_leads(sandbox)] == [TAMS[1]]
    assert sends(state) == [(TAMS[0], "superseded", 1), (TAMS[1], "done", 1)]
    assigned = dict(table(state, "SELECT user_id, assigned FROM rr_credits WHERE pool = 'TAM/US'"))
    assert assigned == {TAMS[0]: 0, TAMS[1]: 1, TAMS[2]: 0}


def test_a_deactivated_onboarding_specialist_is_not_drawn_again(tmp_path: Path) -> None:
    """The specialist's draw is named in a Vitally trait and a task, which nothing refuses: the task
    may have gone out already (a task is created once), so the draw stands (found by a review: it
    was drawn again, the trait named the new specialist while the task kept the old one, and the
    old one's count was refunded for a task they had)."""
    invoices = [{"month": "2026-10", "amount": 300}]
    traits = {"country": "US", "users_by_country": {"US": 3}, "business_email": True, "invoices": invoices}
    account = vitally_account(1, mrr=300, traits={**traits, "domain": "acc1.example.com"})
    specialists = ["005000000000000SP0", "005000000000000SP1"]
    book = seed()
    book["vitally"]["accounts"] = [account]
    book["salesforce"]["User"] += [user(member, 10 + i) for i, member in enumerate(specialists)]
    with Sandbox(book) as sandbox:
        sandbox.configure(vitally_rate_limit=10_000_000)
        config, state = config_for(sandbox, tmp_path), tmp_path / "state.db"
        members = "".join(
            f'{{ user_id = "{member}", name = "Tam {10 + i}" }}, ' for i, member in enumerate(specialists)
        )
        # Retries without waiting (the cap of every wait), so the 503s below cost no time.
        text = config.read_text().replace("max_wait_seconds = 60", "max_wait_seconds = 0.01")
        config.write_text(
            text
            + f'\n[[pools]]\nteam = "Onboarding"\nregion = "*"\nfallback_owner = "{QUEUE}"\nmembers = [{members}]\n'
        )
        # The trait's PUT fails (503 to every attempt), the task goes out: both name the first specialist.
        sandbox.add_fault("status", method="PUT", path_prefix="/resources/accounts/acc_0001", status=503, count=20)
        assert run_cli(config, state, "run", "--now", NOW).returncode == 1
        sandbox.clear_faults()
        [task] = sandbox.state()["vitally"]["tasks"]
        assert "Tam 10" in task["name"]
        deactivate(sandbox, specialists[0])
        assert run_cli(config, state, "run", "--now", NOW).returncode == 0
        account_now = next(a for a in sandbox.state()["vitally"]["accounts"] if a["id"] == "acc_0001")
        assert account_now["traits"]["onboarding_specialist"] == "Tam 10"  # as the task says
        assert table(state, "SELECT user_id FROM assignments WHERE key = 'onboarding-acc_0001'") == [(specialists[0],)]
