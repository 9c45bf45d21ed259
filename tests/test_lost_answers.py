"""A write whose answer was lost is looked at again before it is sent again: people win.

When a write's request goes out and no answer comes back (a read timeout, a connection reset
once the request was on its way), the write may have taken effect. Before, the connectors' retry
policy sent it again, as it was, a second or two later: whatever a person, or an org's Flow, had
done to the record in between was overwritten, silently. Salesforce's own guidance for a lost
answer is to check the record before repeating the request (the REST API's "sObject Collections"
take no precondition, so crm-sync cannot make the write conditional); Vitally's PUT has none
either. Now the connectors raise `UnansweredError` for it and the apply step pauses, looks at the
record again exactly as before a first send, and sends only what is still missing
(`sync/apply.py`).

Each scenario: the real CLI in a subprocess against the sandbox; the sandbox applies the write
and drops its answer (`drop_response`, the fault tests/test_sandbox_controls.py pins), and while
crm-sync waits, a person edits the record through the service's own API (Vitally's account PUT,
Salesforce's sObject PATCH, Vitally's task upsert). Payload shapes: Vitally accounts as GET
/resources/accounts returns them (tests/support.py), Leads as the sObject API returns them.
Each test fails on the code before this change: the person's value is overwritten.
"""

from __future__ import annotations

import json
import sqlite3
import subprocess
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
import requests
from support import (
    SANDBOX_ORG_UNROUTED,
    UNROUTED_DEFAULT,
    example_config_for,
    person_sets_lead,
    pool_users,
    run_cli,
    start_cli,
    state_rows,
    vitally_account,
)
from test_e2e_followups import TOKEN, announced, configure, tickets
from test_minicycle import DEMO_REQUEST, World, _clock, _world
from test_minicycle import NOW as NOW_AT

from sandbox import Sandbox, SandboxConfig
from sync.config import example_against
from sync.cycle import run_cycle

pytestmark = pytest.mark.e2e

NOW = "2026-11-22T09:00:00Z"
UPSERT = "/services/data/v59.0/composite/sobjects/Lead/Sync_Key__c"
UPDATE = "/services/data/v59.0/composite/sobjects"
TASKS = "/resources/tasks"


US = {"country": "US", "users_by_country": {"US": 3}}


def seed(*extra: dict[str, Any], referral: bool = True) -> dict[str, Any]:
    """Users for the example config's pools; `acc_0000` in segment AM referral (a new lead, unless
    not `referral`), `acc_0001` grown into an Account review, and `extra`."""
    accounts = [vitally_account(1, mrr=2500, traits=US), *extra]  # lifecycle_stage "Account review"
    if referral:
        accounts.insert(0, vitally_account(0, traits=US, segments=[{"id": "seg_am_referral", "name": "AM referral"}]))
    users = pool_users(example_against("http://127.0.0.1:1"))
    return {"vitally": {"accounts": accounts}, "salesforce": {"User": users}}


@pytest.fixture
def sandbox() -> Iterator[Sandbox]:
    with Sandbox(seed()) as sb:
        sb.configure(vitally_rate_limit=10_000_000)
        yield sb


@pytest.fixture
def config(sandbox: Sandbox, tmp_path: Path) -> Path:
    return example_config_for(sandbox.url, tmp_path / "config.toml", {UNROUTED_DEFAULT: SANDBOX_ORG_UNROUTED})


def waiting_config(sandbox: Sandbox, tmp_path: Path, max_wait_seconds: float) -> Path:
    """The example config against `sandbox`, every pause capped at `max_wait_seconds`."""
    config = example_config_for(sandbox.url, tmp_path / "config.toml", {UNROUTED_DEFAULT: SANDBOX_ORG_UNROUTED})
    config.write_text(config.read_text().replace("max_wait_seconds = 60", f"max_wait_seconds = {max_wait_seconds}"))
    return config


def run_with_a_person_in_the_gap(
    sandbox: Sandbox, config: Path, state: Path, method: str, path: str, person: Callable[[], None]
) -> subprocess.CompletedProcess[str]:
    """`run` with the answer to the first `method path` write dropped (it takes effect), and
    `person()` acting as soon as the sandbox has dropped it, while crm-sync waits."""
    sandbox.add_fault("drop_response", method=method, path_prefix=path, count=1)
    since = sandbox.calls_total()
    return run_and_then(
        config, state, lambda: any(c.get("fault") == "drop_response" for c in sandbox.calls(since)), person
    )


def run_and_then(
    config: Path, state: Path, when: Callable[[], bool], act: Callable[[], object]
) -> subprocess.CompletedProcess[str]:
    """`run`, and `act()` as soon as `when()` holds, while crm-sync works."""
    process = start_cli(config, state, "run", "--now", NOW)
    try:
        deadline = time.monotonic() + 90
        while not when():
            assert process.poll() is None, process.communicate()[1][-3000:]
            assert time.monotonic() < deadline, "the moment never came"
            time.sleep(0.002)
        act()
        out, err = process.communicate(timeout=180)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    return subprocess.CompletedProcess(process.args, process.returncode, out, err)


def sends(sandbox: Sandbox, method: str, path: str) -> int:
    return sum(call["method"] == method and call["path"] == path for call in sandbox.calls())


def account(sandbox: Sandbox, account_id: str) -> dict[str, Any]:
    return next(a for a in sandbox.state()["vitally"]["accounts"] if a["id"] == account_id)


def our_lead(sandbox: Sandbox) -> dict[str, Any]:
    [lead] = [lead for lead in sandbox.state()["salesforce"]["Lead"] if lead.get("Sync_Key__c")]
    return dict(lead)


def test_an_account_a_person_edits_while_the_put_answer_is_lost_keeps_their_value(
    sandbox: Sandbox, config: Path, tmp_path: Path
) -> None:
    path = "/resources/accounts/acc_0001"

    def person() -> None:  # a CSM: "not a review yet", in the app (the app PUTs the trait)
        requests.put(
            f"{sandbox.url}{path}", json={"traits": {"lifecycle_stage": "Self serve"}}, auth=("a-csm", ""), timeout=10
        ).raise_for_status()

    result = run_with_a_person_in_the_gap(sandbox, config, tmp_path / "state.db", "PUT", path, person)
    assert result.returncode == 0, result.stderr[-2000:]
    assert account(sandbox, "acc_0001")["traits"]["lifecycle_stage"] == "Self serve"
    assert sends(sandbox, "PUT", path) == 2  # crm-sync's, looked at again and not sent again; the person's
    assert 'vitally acc_0001 lifecycle_stage: someone set "Self serve"' in result.stderr


def test_a_new_lead_a_flow_reassigns_while_the_upsert_answer_is_lost_keeps_its_owner(
    sandbox: Sandbox, config: Path, tmp_path: Path
) -> None:
    manager = pool_users(example_against("http://127.0.0.1:1"))[-1]["Id"]

    def flow() -> None:  # an org's record-triggered Flow (or a manager) reassigns the new lead
        person_sets_lead(sandbox.url, our_lead(sandbox)["Id"], OwnerId=manager)

    result = run_with_a_person_in_the_gap(sandbox, config, tmp_path / "state.db", "PATCH", UPSERT, flow)
    assert result.returncode == 0, result.stderr[-2000:]
    lead = our_lead(sandbox)  # one lead: found by its key, not created again
    assert lead["OwnerId"] == manager
    assert sends(sandbox, "PATCH", UPSERT) == 1
    assert f"salesforce {lead['Sync_Key__c']} OwnerId: someone set" in result.stderr
    assert "applied 6," in result.stderr  # the upsert found done counts as applied


def test_a_demo_request_a_rep_takes_while_the_update_answer_is_lost_stays_theirs(tmp_path: Path) -> None:
    # No new lead in this book: the upserts' path starts with the updates' (the fault is by prefix).
    with Sandbox(seed(referral=False)) as sandbox:
        sandbox.configure(vitally_rate_limit=10_000_000)
        config = example_config_for(sandbox.url, tmp_path / "config.toml", {UNROUTED_DEFAULT: SANDBOX_ORG_UNROUTED})
        _a_rep_takes_the_demo_request(sandbox, config, tmp_path)


def _a_rep_takes_the_demo_request(sandbox: Sandbox, config: Path, tmp_path: Path) -> None:
    with sandbox._lock:
        [lead_id] = sandbox._salesforce.add_leads([DEMO_REQUEST], owner_ids=[])  # web-to-lead: the default owner
    rep = pool_users(example_against("http://127.0.0.1:1"))[0]["Id"]

    def person() -> None:  # a rep takes it from the queue and starts working it
        person_sets_lead(sandbox.url, lead_id, OwnerId=rep, Status="Working - Contacted")

    result = run_with_a_person_in_the_gap(sandbox, config, tmp_path / "state.db", "PATCH", UPDATE, person)
    assert result.returncode == 0, result.stderr[-2000:]
    lead = next(lead for lead in sandbox.state()["salesforce"]["Lead"] if lead["Id"] == lead_id)
    assert (lead["OwnerId"], lead["Status"]) == (rep, "Working - Contacted")
    assert sends(sandbox, "PATCH", UPDATE) == 1
    assert f"salesforce {lead_id} OwnerId: someone set" in result.stderr


def test_a_task_a_person_reschedules_while_its_answer_is_lost_keeps_their_date(tmp_path: Path) -> None:
    # Growing spend under the handover threshold: onboarding.circle_back wants a task.
    invoices = [{"month": m, "amount": a} for m, a in (("2026-08", 200), ("2026-09", 300), ("2026-10", 400))]
    growing = vitally_account(2, mrr=400, traits={**US, "business_email": False, "invoices": invoices})
    with Sandbox(seed(growing)) as sandbox:
        sandbox.configure(vitally_rate_limit=10_000_000)
        config = example_config_for(sandbox.url, tmp_path / "config.toml", {UNROUTED_DEFAULT: SANDBOX_ORG_UNROUTED})
        rescheduled: list[str] = []

        def person() -> None:  # the task's owner reschedules it (the app upserts it)
            [task] = [t for t in sandbox.state()["vitally"]["tasks"] if str(t.get("externalId")).startswith("crm-sync")]
            rescheduled.append(task["externalId"])
            requests.post(
                f"{sandbox.url}{TASKS}",
                json={"externalId": task["externalId"], "dueDate": "2027-02-01"},
                auth=("a-person", ""),
                timeout=10,
            ).raise_for_status()

        result = run_with_a_person_in_the_gap(sandbox, config, tmp_path / "state.db", "POST", TASKS, person)
        assert result.returncode == 0, result.stderr[-2000:]
        [task] = [t for t in sandbox.state()["vitally"]["tasks"] if t.get("externalId") in rescheduled]
        assert task["dueDate"] == "2027-02-01"
        assert sends(sandbox, "POST", TASKS) == 2  # crm-sync's, found on its account and not sent again; the person's


# -- what a lost answer's landing still calls for, and what it must not cost -------------------------

SUPPORT = {
    **DEMO_REQUEST,
    "Title": "Developer",
    "Form_Text__c": (
        "Since yesterday our session recordings stopped loading, the player shows a black screen. Can you check?"
    ),
}


@pytest.mark.parametrize("kind", ["sales", "support"])
def test_a_lead_update_that_landed_without_an_answer_is_announced_and_ticketed_once(tmp_path: Path, kind: str) -> None:
    """The look after the lost answer finds the update applied: it is recorded as the answer would
    have been, so the routed demo request is announced in Slack and the support request gets its
    Zendesk ticket, once; and the support status that update set is not taken for a person closing
    the lead (found by a review: neither follow-up was ever queued, and the score written with
    the support status was dropped as "a person closed the lead")."""
    with Sandbox(seed(referral=False), config=SandboxConfig(vitally_rate_limit=10**7, slack_burst=10**6)) as sandbox:
        config = configure(sandbox, tmp_path / "config.toml")
        config.write_text(config.read_text().replace(UNROUTED_DEFAULT, SANDBOX_ORG_UNROUTED))
        row = SUPPORT if kind == "support" else DEMO_REQUEST
        with sandbox._lock:
            [lead_id] = sandbox._salesforce.add_leads([row], owner_ids=[])
        sandbox.add_fault("drop_response", method="PATCH", path_prefix=UPDATE, count=1)
        state = tmp_path / "state.db"
        first = run_cli(config, state, "run", "--now", NOW, env=TOKEN)
        assert first.returncode == 0, first.stderr[-2000:]
        assert ", failed 0, parked 0; 0 conflict(s)" in first.stderr
        again = run_cli(config, state, "run", "--now", NOW, env=TOKEN)
        assert again.returncode == 0, again.stderr[-2000:]
        assert sends(sandbox, "PATCH", UPDATE) == 1  # looked at, found applied, not sent again
        if kind == "support":
            assert tickets(sandbox) == {f"crm-sync-lead-{lead_id}": 1}
        else:
            assert announced(sandbox) == {lead_id: 1}
        rows = sqlite3.connect(state).execute("SELECT status FROM outbox WHERE record = ?", [lead_id]).fetchall()
        assert {status for (status,) in rows} == {"done"}  # the score written with it too


def test_max_writes_counts_a_write_whose_answer_was_lost_once(sandbox: Sandbox, config: Path, tmp_path: Path) -> None:
    """`--max-writes 1` writes one record even when its answer was lost and the look found it
    landed (found by a review: the lost write was counted back, and a second record went out)."""
    sandbox.add_fault("drop_response", method="PUT", path_prefix="/resources/accounts/acc_0000", count=1)
    result = run_cli(config, tmp_path / "state.db", "run", "--max-writes", "1", "--now", NOW)
    assert result.returncode == 0, result.stderr[-2000:]
    writes = [(c["method"], c["path"]) for c in sandbox.calls() if c["method"] in ("PUT", "PATCH", "POST")]
    assert writes == [("PUT", "/resources/accounts/acc_0000")]  # acc_0001's PUT and acc_0000's new lead wait
    assert "stopped after 1 record(s)" in result.stderr


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    """The in-process world of tests/test_minicycle.py (the real sandbox server, real clients)."""
    yield from _world(tmp_path, seed())


def test_a_stop_during_the_pause_after_a_lost_answer_leaves_the_write_pending_and_counted(world: World) -> None:
    """SIGTERM while the apply step waits to look again after a lost answer: the wait ends at
    once, the write stays pending (counted as deferred, as any write a stop holds back), and the
    next start settles it: the lead the lost upsert created is found, not created again."""
    stop: list[bool] = []

    def log(event: str, data: Mapping[str, Any]) -> None:
        if event == "write_unanswered":
            stop.append(True)  # SIGTERM arrives while crm-sync waits to look again

    world.sandbox.add_fault("drop_response", method="PATCH", path_prefix=UPSERT, count=1)
    report = run_cycle(
        world.config, world.state, world.vitally, world.salesforce, clock=_clock, now=NOW_AT, log=log,
        should_stop=lambda: bool(stop),
    )  # fmt: skip
    assert report.counts["deferred"] == 1
    [(status, attempts)] = world.state.db.execute(
        "SELECT status, attempts FROM outbox WHERE op = 'upsert_lead'"
    ).fetchall()
    assert (status, attempts) == ("pending", 1)
    world.cycle()  # the next start
    assert [lead.get("Sync_Key__c") for lead in world.leads()] == ["crm-sync-acc_0000-1"]
    assert world.state.pending_count() == 0


def test_an_account_a_gateway_always_fails_does_not_hold_back_the_other_writes(
    sandbox: Sandbox, config: Path, tmp_path: Path
) -> None:
    """A gateway answers 502 to every PUT of one account (an origin failing on that payload): each
    is a lost answer, looked at and sent again, five times; then that account's writes wait,
    failed, and the cycle goes on: the other account's PUT and the new lead go out (found by a
    review: the fifth loss ended the cycle as unreachable, and the lead was never created, cycle
    after cycle). No answer at all is what still ends it (tests/test_people_win.py)."""
    config.write_text(config.read_text().replace("max_wait_seconds = 60", "max_wait_seconds = 0.01"))
    path = "/resources/accounts/acc_0001"
    sandbox.add_fault("status", method="PUT", path_prefix=path, status=502, count=1000)
    result = run_cli(config, tmp_path / "state.db", "run", "--now", NOW)
    assert result.returncode == 1, result.stderr[-2000:]  # done, but some writes wait
    assert sends(sandbox, "PUT", path) == 5
    assert sends(sandbox, "PUT", "/resources/accounts/acc_0000") == 1
    assert our_lead(sandbox)["Sync_Key__c"] == "crm-sync-acc_0000-1"
    assert "applied 4, failed 2, parked 0" in result.stderr  # acc_0001's two traits wait, pending
    rows = (
        sqlite3.connect(tmp_path / "state.db")
        .execute("SELECT status, last_error FROM outbox WHERE record = 'acc_0001'")
        .fetchall()
    )
    assert {status for status, _ in rows} == {"pending"}
    assert all(error.startswith("vitally: account traits: no answer to 5 sends") for _, error in rows)


def test_a_write_that_got_no_answer_at_all_still_ends_the_step_beside_a_gateways(
    sandbox: Sandbox, config: Path, tmp_path: Path
) -> None:
    """In one page, one account's PUTs get a gateway's 502 and the other's get no answer at all
    (the connection reset each time): the service looks down, as the connectors' retry policy
    says after any request that never got an answer, so the step ends (exit 3) and the new lead
    waits for the next cycle (found by a review: the step went on, because only the gateway's
    account was looked at)."""
    config.write_text(config.read_text().replace("max_wait_seconds = 60", "max_wait_seconds = 0.01"))
    sandbox.add_fault("status", method="PUT", path_prefix="/resources/accounts/acc_0001", status=502, count=1000)
    sandbox.add_fault("reset", method="PUT", path_prefix="/resources/accounts/acc_0000", count=1000)
    result = run_cli(config, tmp_path / "state.db", "run", "--now", NOW)
    assert result.returncode == 3, result.stderr[-2000:]
    assert sends(sandbox, "PATCH", UPSERT) == 0


REFERRAL = [{"id": "seg_am_referral", "name": "AM referral"}]


def referral_sandbox(accounts: int) -> Sandbox:
    """`accounts` accounts in segment AM referral (acc_0000 …): one new lead each, in one collection."""
    book = seed(*[vitally_account(i, traits=US, segments=REFERRAL) for i in range(2, accounts + 1)])
    sandbox = Sandbox(book)
    sandbox.configure(vitally_rate_limit=10_000_000)
    return sandbox


def upserts(sandbox: Sandbox) -> list[tuple[int, list[str]]]:
    """Each upsert of new leads the sandbox received: its status and the Sync_Key__c of its leads."""
    return [
        (call["status"], list(call["records"]))
        for call in sandbox.calls()
        if call["method"] == "PATCH" and call["path"] == UPSERT
    ]


def test_a_lead_a_gateway_always_refuses_is_singled_out_and_parked_and_its_collection_goes_out(
    tmp_path: Path,
) -> None:
    """A gateway (an origin failing on one payload, or a web application firewall that dislikes
    one lead's text) answers 502 to every upsert that holds one lead, wherever it travels. After
    the five sends of the collection, each looked at first, the collection is split in halves,
    each looked at and sent on its own, and the half lost again split again: the seven other
    leads are created and the one lead is parked with its reason (`failed`, `retry`). Before (a
    third review of the lost answers), the whole collection waited, cycle after cycle: one bad
    lead held back up to 199 others for good."""
    with referral_sandbox(8) as sandbox:
        config = waiting_config(sandbox, tmp_path, 0.01)
        poison = "crm-sync-acc_0005-1"
        sandbox.add_fault("status", method="PATCH", path_prefix=UPSERT, status=502, count=1000, body_contains=poison)
        state = tmp_path / "state.db"
        result = run_cli(config, state, "run", "--now", NOW)
        assert result.returncode == 1, result.stderr[-2000:]  # done, one write parked
        keys = sorted(lead["Sync_Key__c"] for lead in sandbox.state()["salesforce"]["Lead"] if lead.get("Sync_Key__c"))
        assert keys == sorted(f"crm-sync-acc_{i:04d}-1" for i in (0, 2, 3, 4, 6, 7, 8))
        sent = upserts(sandbox)
        # Five sends of all eight; then halves of 4 (poison in the second), 2, 1: two sends a
        # halving; then the lead alone twice more (a gateway failing at random parks no one).
        assert [len(leads) for _, leads in sent] == [8] * 5 + [4, 4, 2, 2, 1, 1, 1, 1]
        assert all((status == 502) == (poison in leads) for status, leads in sent)
        created = [key for status, leads in sent if status == 200 for key in leads]
        assert sorted(created) == keys  # each created by exactly one send
        [(status, error)] = state_rows(state, f"SELECT status, last_error FROM outbox WHERE record = '{poison}'")
        assert status == "parked"
        assert error.startswith(
            f"salesforce: lead {poison}: a gateway answered 502 to each of the 10 sends that held it"
        )
        listed = run_cli(config, state, "failed")
        assert poison in listed.stdout
        sandbox.clear_faults()  # the firewall's rule is fixed
        [[row_id]] = state_rows(state, f"SELECT id FROM outbox WHERE record = '{poison}'")
        assert run_cli(config, state, "retry", str(row_id)).returncode == 0
        again = run_cli(config, state, "run", "--now", NOW)
        assert again.returncode == 0, again.stderr[-2000:]
        keys = [lead["Sync_Key__c"] for lead in sandbox.state()["salesforce"]["Lead"] if lead.get("Sync_Key__c")]
        assert sorted(keys) == sorted(f"crm-sync-acc_{i:04d}-1" for i in (0, 2, 3, 4, 5, 6, 7, 8))


def test_a_gateway_that_refuses_every_lead_costs_four_more_sends_and_parks_nothing(tmp_path: Path) -> None:
    """When the gateway answers 502 to every upsert (its outage, not one lead's payload), none of
    the split's first four sends goes through: no lead is to blame, nothing is parked, and the
    collection waits for the next cycle, as before; the cost of looking for a lead to blame is
    four sends per collection. The cycle goes on: the Vitally writes go out."""
    with referral_sandbox(8) as sandbox:
        config = waiting_config(sandbox, tmp_path, 0.01)
        sandbox.add_fault("status", method="PATCH", path_prefix=UPSERT, status=502, count=1000)
        state = tmp_path / "state.db"
        result = run_cli(config, state, "run", "--now", NOW)
        assert result.returncode == 1, result.stderr[-2000:]
        assert [len(leads) for _, leads in upserts(sandbox)] == [8] * 5 + [4, 4, 2, 2]
        assert not [lead for lead in sandbox.state()["salesforce"]["Lead"] if lead.get("Sync_Key__c")]
        rows = state_rows(state, "SELECT status, last_error FROM outbox WHERE op = 'upsert_lead'")
        assert len(rows) == 8
        assert {status for status, _ in rows} == {"pending"}
        # The second half's leads were sent 6 times, the first half's 7.
        assert sorted({error.split(",")[0] for _, error in rows}) == [
            "salesforce: leads: no answer to 6 sends",
            "salesforce: leads: no answer to 7 sends",
        ]
        assert sends(sandbox, "PUT", "/resources/accounts/acc_0001") == 1  # the cycle went on
        sandbox.clear_faults()
        assert run_cli(config, state, "run", "--now", NOW).returncode == 0
        assert len([lead for lead in sandbox.state()["salesforce"]["Lead"] if lead.get("Sync_Key__c")]) == 8


def test_an_inbound_lead_a_firewall_refuses_is_parked_and_the_others_get_their_owners(tmp_path: Path) -> None:
    """The same for updates: four web-to-lead demo requests get their owners in one collection;
    a web application firewall answers 502 to any request that holds one of them (its form text
    looks like script to it). The three others get their owners; that one is parked. The fault
    matches the request's body, as a firewall reads it (`body_contains`)."""
    with Sandbox(seed(referral=False)) as sandbox:
        sandbox.configure(vitally_rate_limit=10_000_000)
        config = waiting_config(sandbox, tmp_path, 0.01)
        requests_ = [
            {**DEMO_REQUEST, "LastName": f"Doe {i}", "Email": f"jane{i}@northwind-robotics.com"} for i in range(4)
        ]
        with sandbox._lock:
            ids = sandbox._salesforce.add_leads(requests_, owner_ids=[])
        poison = ids[2]
        sandbox.add_fault("status", method="PATCH", path_prefix=UPDATE, status=502, count=1000, body_contains=poison)
        state = tmp_path / "state.db"
        result = run_cli(config, state, "run", "--now", NOW)
        assert result.returncode == 1, result.stderr[-2000:]
        sent = [(c["status"], c["records"]) for c in sandbox.calls() if c["method"] == "PATCH" and c["path"] == UPDATE]
        assert [len(leads) for _, leads in sent] == [4] * 5 + [2, 2, 1, 1, 1, 1]
        assert all((status == 502) == (poison in leads) for status, leads in sent)
        pool = {user["Id"] for user in pool_users(example_against("http://127.0.0.1:1"))}
        owners = {lead["Id"]: lead["OwnerId"] for lead in sandbox.state()["salesforce"]["Lead"]}
        assert all(owners[lead_id] in pool for lead_id in ids if lead_id != poison)
        assert owners[poison] not in pool
        rows = state_rows(state, f"SELECT status, last_error FROM outbox WHERE record = '{poison}'")
        assert {status for status, _ in rows} == {"parked"}  # each of its writes (owner, routing fields)
        assert all(error.startswith(f"salesforce: lead {poison}: a gateway answered 502") for _, error in rows)
        assert not state_rows(state, f"SELECT id FROM outbox WHERE record != '{poison}' AND status != 'done'")


def test_two_leads_a_firewall_refuses_in_different_halves_are_both_parked(tmp_path: Path) -> None:
    """Both halves of the first split are lost (one refused lead in each): that alone does not
    make it an outage. The halves are split again, a quarter goes through, and the split goes on
    until each refused lead is parked; the six others are created (found by a review: all eight
    waited, cycle after cycle)."""
    with referral_sandbox(8) as sandbox:
        config = waiting_config(sandbox, tmp_path, 0.01)
        refused = ("crm-sync-acc_0002-1", "crm-sync-acc_0007-1")
        for key in refused:
            sandbox.add_fault("status", method="PATCH", path_prefix=UPSERT, status=502, count=1000, body_contains=key)
        state = tmp_path / "state.db"
        result = run_cli(config, state, "run", "--now", NOW)
        assert result.returncode == 1, result.stderr[-2000:]
        keys = sorted(lead["Sync_Key__c"] for lead in sandbox.state()["salesforce"]["Lead"] if lead.get("Sync_Key__c"))
        assert keys == sorted(f"crm-sync-acc_{i:04d}-1" for i in (0, 3, 4, 5, 6, 8))
        parked = state_rows(state, "SELECT DISTINCT record FROM outbox WHERE status = 'parked'")
        assert sorted(record for (record,) in parked) == sorted(refused)
        created = [key for status, leads in upserts(sandbox) if status == 200 for key in leads]
        assert sorted(created) == keys  # each created by exactly one send


def test_a_lone_lead_whose_send_gets_no_answer_at_all_ends_the_step_unparked(tmp_path: Path) -> None:
    """Singled out after five gateway answers, the lead's own send gets no answer at all (a reset):
    the service may be down, and that send may have landed. It is not parked: the step ends
    (exit 3) and the lead waits for the next cycle's plan (found by a review: it was parked, "a
    gateway answered None")."""
    with referral_sandbox(2) as sandbox:  # acc_0000 and acc_0002
        config = waiting_config(sandbox, tmp_path, 0.01)
        poison = "crm-sync-acc_0002-1"
        sandbox.add_fault("status", method="PATCH", path_prefix=UPSERT, status=502, count=5, body_contains=poison)
        sandbox.add_fault("reset", method="PATCH", path_prefix=UPSERT, count=1000, body_contains=poison)
        state = tmp_path / "state.db"
        result = run_cli(config, state, "run", "--now", NOW)
        assert result.returncode == 3, result.stderr[-2000:]
        rows = state_rows(state, f"SELECT status FROM outbox WHERE record = '{poison}'")
        assert {status for (status,) in rows} == {"pending"}
        ours = [lead["Sync_Key__c"] for lead in sandbox.state()["salesforce"]["Lead"] if lead.get("Sync_Key__c")]
        assert ours == ["crm-sync-acc_0000-1"]


def test_a_write_of_the_refused_lead_a_person_overtakes_is_theirs_not_parked(tmp_path: Path) -> None:
    """While crm-sync pauses before its last look at the lead it singled out, a person sets one of
    the fields it writes: that write is the person's (a conflict, superseded), and only the lead's
    other writes are parked (found by a review: every row of the lead was parked, the person's
    included, and `retry` would have sent it over them)."""
    with Sandbox(seed(referral=False)) as sandbox:
        sandbox.configure(vitally_rate_limit=10_000_000)
        config = waiting_config(sandbox, tmp_path, 1.5)
        leads = [{**DEMO_REQUEST, "LastName": f"Doe {i}", "Email": f"jane{i}@northwind-robotics.com"} for i in range(2)]
        with sandbox._lock:
            ids = sandbox._salesforce.add_leads(leads, owner_ids=[])
        poison = ids[1]
        sandbox.add_fault("status", method="PATCH", path_prefix=UPDATE, status=502, count=1000, body_contains=poison)
        state = tmp_path / "state.db"

        def alone() -> bool:  # the refused lead sent on its own: crm-sync now pauses before its next look
            return any(c["path"] == UPDATE and c.get("records") == [poison] for c in sandbox.calls())

        result = run_and_then(
            config, state, alone, lambda: person_sets_lead(sandbox.url, poison, Classification__c="support")
        )
        err = result.stderr
        assert result.returncode == 1, err[-2000:]
        classified = "json_extract(payload, '$.Classification__c') IS NOT NULL"
        sql = f"SELECT {classified}, group_concat(DISTINCT status) FROM outbox WHERE record = '{poison}' GROUP BY 1"
        rows = dict(state_rows(state, sql))
        assert rows == {1: "superseded", 0: "parked"}
        assert f"salesforce {poison} Classification__c: someone set" in err


def _split_then(
    sandbox: Sandbox, tmp_path: Path, when: Callable[[], bool], act: Callable[[], object]
) -> subprocess.CompletedProcess[str]:
    """`run` of 8 new leads, a firewall refusing acc_0008's, and `act()` once `when()` holds."""
    config = waiting_config(sandbox, tmp_path, 0.5)
    poison = "crm-sync-acc_0008-1"
    sandbox.add_fault("status", method="PATCH", path_prefix=UPSERT, status=502, count=1000, body_contains=poison)
    return run_and_then(config, tmp_path / "state.db", when, act)


def test_an_outage_that_begins_during_the_split_parks_no_healthy_lead(tmp_path: Path) -> None:
    """A firewall refuses one lead; while the collection is split, the gateway starts to fail every
    request (found by a review of the split: the leads still lost were split down to single leads
    and parked, three healthy leads of eight). Four halves lost in a row make it an outage: what is
    left waits, pending, and nothing but that lead (if anything) is parked."""
    poison = "crm-sync-acc_0008-1"
    with referral_sandbox(8) as sandbox:
        state = tmp_path / "state.db"
        result = _split_then(
            sandbox,
            tmp_path,
            lambda: any(status == 200 for status, _ in upserts(sandbox)),
            lambda: sandbox.add_fault("status", method="PATCH", path_prefix=UPSERT, status=502, count=1000),
        )
        assert result.returncode == 1, result.stderr[-2000:]
        parked = {record for (record,) in state_rows(state, "SELECT record FROM outbox WHERE status = 'parked'")}
        assert parked <= {poison}
        created = {lead["Sync_Key__c"] for lead in sandbox.state()["salesforce"]["Lead"] if lead.get("Sync_Key__c")}
        waiting = {
            r for (r,) in state_rows(state, "SELECT record FROM outbox WHERE op = 'upsert_lead' AND status = 'pending'")
        }
        assert created | waiting | parked == {f"crm-sync-acc_{i:04d}-1" for i in (0, 2, 3, 4, 5, 6, 7, 8)}


def test_a_service_unreachable_during_the_split_counts_every_lead_left(tmp_path: Path) -> None:
    """The look before a half's send finds Salesforce unreachable: the step ends (exit 3), and the
    leads not sent again are counted in the run's report (found by a review: the other half was
    neither sent nor counted; the outbox kept it, pending)."""
    with referral_sandbox(8) as sandbox:
        state = tmp_path / "state.db"
        result = _split_then(
            sandbox,
            tmp_path,
            lambda: len(upserts(sandbox)) >= 5,
            lambda: sandbox.add_fault("reset", method="GET", path_prefix="/services/data/v59.0/query", count=10**5),
        )
        assert result.returncode == 3, result.stderr[-2000:]
        [(counts,)] = state_rows(state, "SELECT counts FROM runs ORDER BY id DESC LIMIT 1")
        counts = json.loads(counts)
        rows = state_rows(state, "SELECT status FROM outbox")
        done = sum(status == "done" for (status,) in rows)
        assert counts["applied"] == done
        assert sum(counts.get(kind, 0) for kind in ("applied", "failed", "deferred", "parked")) == len(rows)
