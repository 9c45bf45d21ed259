"""Salesforce Accounts merged. A person merging duplicate Accounts keeps one, the master; the
others are deleted, each with `MasterRecordId` naming the master, and the master "becomes the new
parent of the related records": their opportunities and contacts move to it (`merge()`, SOAP API
guide; Salesforce Help, "Merge Duplicate Accounts"). The master keeps its own values except those
the person takes from the others, so a master that names no Vitally account (a rep's duplicate,
chosen to keep) leaves the Vitally account's opportunities on an Account that does not name it.
The sandbox imitates it (`POST /_sandbox/merge`, the Account merge reparenting the children).

Before, crm-sync found an account's opportunities only through an Account naming it, and a merged
Account left the mirror as any deleted record: the account lost sight of its open deal and was
routed again beside it, a new lead and owner. Now an Account merged away is remembered with the
Vitally account it named, and the Account it lives on in holds that account's opportunities."""

from __future__ import annotations

import io
import sqlite3
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import requests
from real_org_world import NOW, cycle_at, first_routed, real_org_book, routed
from support import back_to_schema, sandbox_org_config
from test_minicycle import _world

from sandbox import Sandbox, SandboxConfig
from state import StateDB
from sync.app import make_salesforce, make_vitally
from sync.config import Config
from sync.cycle import run_cycle
from sync.explain import explain
from sync.facts import SalesforceFacts
from sync.ingest import SF_OBJECTS, mirror_sf
from sync.vocabulary import CycleReport, Hooks

HEADERS = {"Authorization": "Bearer x"}
DAY = timedelta(days=1)


@pytest.fixture(scope="module")
def account() -> str:
    """An account the book's first cycle routes when nothing in Salesforce holds it."""
    return first_routed()


def _create(sandbox: Sandbox | Any, sobject: str, **fields: Any) -> str:
    made = requests.post(
        f"{sandbox.url}/services/data/v59.0/sobjects/{sobject}", json=fields, headers=HEADERS, timeout=10
    )
    assert made.status_code == 201, made.text
    return str(made.json()["id"])


def _deal(sandbox: Sandbox | Any, account: str) -> tuple[str, str]:
    """The company's Salesforce Account naming `account` and an open opportunity on it: (Account,
    opportunity)."""
    sf_account = _create(sandbox, "Account", Name="Acme", Vitally_Account_Id__c=account)
    opportunity = _create(
        sandbox, "Opportunity", Name="Acme-", AccountId=sf_account, StageName="Prospecting", CloseDate="2026-12-31"
    )
    return sf_account, opportunity


@dataclass
class _Acme:
    """The company's deal (`_deal`) after crm-sync's first cycle, and a day later a rep's duplicate
    Account naming no Vitally account."""

    sandbox: Sandbox
    config: Config
    state: StateDB
    named: str  # the Account naming the Vitally account
    opportunity: str
    duplicate: str
    first: CycleReport


@contextmanager
def _acme(account: str) -> Iterator[_Acme]:
    with Sandbox(real_org_book(), config=SandboxConfig(real_org=True), now=NOW) as sandbox:
        config, state = sandbox_org_config(sandbox.url), StateDB.memory()
        named, opportunity = _deal(sandbox, account)
        first = cycle_at(config, state, NOW)
        sandbox.set_clock(NOW + DAY)
        yield _Acme(sandbox, config, state, named, opportunity, _create(sandbox, "Account", Name="Acme Inc"), first)


def test_an_account_merged_into_a_duplicate_keeps_its_open_deal(account: str) -> None:
    with _acme(account) as acme:
        acme.sandbox.merge("Account", acme.duplicate, [acme.named])
        later = cycle_at(acme.config, acme.state, NOW + DAY + timedelta(hours=1))
        full = cycle_at(acme.config, acme.state, NOW + 2 * DAY, full=True)
        out = io.StringIO()
        explain(acme.config, acme.state, account, NOW + 2 * DAY, out, io.StringIO())

    assert account not in routed(acme.first)  # the open deal holds it
    assert account not in routed(later) | routed(full)  # and still does on the Account kept
    shown = out.getvalue()
    assert f"open opportunity {acme.opportunity} (Prospecting) in Salesforce" in shown
    merged = f"Salesforce Account {acme.named}, which named this account, was merged into Account {acme.duplicate}"
    assert merged in shown


def test_the_deal_on_the_account_kept_decides_what_follows(account: str) -> None:
    """The deal moved to the Account kept holds the account while open; lost, it holds it no more,
    as the same deal on the Account naming it would (an incremental cycle sees the change: the
    opportunity is part of the account's facts through the merge)."""
    with _acme(account) as acme:
        sandbox, config, state = acme.sandbox, acme.config, acme.state
        sandbox.merge("Account", acme.duplicate, [acme.named])
        held = cycle_at(config, state, NOW + DAY + timedelta(hours=1))
        lost_on = NOW + 10 * DAY
        sandbox.set_clock(lost_on)
        requests.patch(
            f"{sandbox.url}/services/data/v59.0/sobjects/Opportunity/{acme.opportunity}",
            json={"StageName": "Closed Lost", "CloseDate": lost_on.date().isoformat()},
            headers=HEADERS,
            timeout=10,
        ).raise_for_status()
        lost = cycle_at(config, state, lost_on + timedelta(hours=1))
        out = io.StringIO()
        explain(config, state, account, lost_on + timedelta(hours=1), out, io.StringIO())

    assert account not in routed(held) and account in routed(lost)
    assert "Salesforce: 0 lead(s) (0 open), 1 opportunit(ies) (0 open)" in out.getvalue()


def _store(state: StateDB, sobject: str, *records: dict[str, Any]) -> None:
    """Records as a cycle's read stores them (QueryAll's deleted ones included)."""
    report = CycleReport(run_id=1, dry_run=False, now=NOW)
    mirror_sf(state, sobject, list(records), report=report, hooks=Hooks())


STAMP = "2026-11-01T00:00:00.000+0000"


def _account(record_id: str, **fields: Any) -> dict[str, Any]:
    return {"Id": record_id, "SystemModstamp": STAMP, "Name": record_id, "IsDeleted": False, **fields}


def _merged(record_id: str, master: str, **fields: Any) -> dict[str, Any]:
    return _account(record_id, IsDeleted=True, MasterRecordId=master, **fields)


def _opportunity(record_id: str, parent: str, stage: str = "Prospecting") -> dict[str, Any]:
    fields = {"AccountId": parent, "StageName": stage, "CloseDate": "2026-12-31"}
    return {"Id": record_id, "SystemModstamp": STAMP, **fields}


def _loads(state: StateDB, account_ids: list[str]) -> list[SalesforceFacts]:
    return [
        SalesforceFacts.load(state),
        SalesforceFacts.load(state, lazy=True),
        SalesforceFacts.load_for(state, account_ids),
    ]


def _opportunities(facts: SalesforceFacts, account_id: str) -> list[str]:
    return [o.id for o in facts.context_for(account_id).opportunities]


def test_the_three_readers_join_the_account_kept_and_its_changes_are_facts() -> None:
    """`SalesforceFacts` eager, lazy and for an event's mini-cycle give the same opportunities
    through the Account kept; the fingerprint (eager and lazy alike) moves with the merge and with
    the moved opportunity's changes."""
    state = StateDB.memory()
    _store(state, "Account", _account("001A", Vitally_Account_Id__c="acc-1"), _account("001B"))
    _store(state, "Opportunity", _opportunity("006A", "001A"))
    before = {lazy: SalesforceFacts.load(state, lazy=lazy).fingerprint("acc-1") for lazy in (False, True)}
    _store(state, "Account", _merged("001A", "001B", Vitally_Account_Id__c="acc-1"))
    _store(state, "Opportunity", _opportunity("006A", "001B"))  # moved to the Account kept
    merged = {lazy: SalesforceFacts.load(state, lazy=lazy).fingerprint("acc-1") for lazy in (False, True)}
    _store(state, "Opportunity", _opportunity("006A", "001B", "Closed Lost"))
    lost = {lazy: SalesforceFacts.load(state, lazy=lazy).fingerprint("acc-1") for lazy in (False, True)}

    assert state.account_merges() == {"001A": ("001B", "acc-1")}
    assert state.sf_raw("Account", "001A") is None  # deleted: out of the mirror, remembered as merged
    assert [_opportunities(facts, "acc-1") for facts in _loads(state, ["acc-1"])] == [["006A"]] * 3
    assert before[False] == before[True] and merged[False] == merged[True] and lost[False] == lost[True]
    assert len({before[False], merged[False], lost[False]}) == 3


def test_a_chain_of_merges_is_followed_and_the_account_kept_may_name_another_account() -> None:
    """001A (acc-1) merged into 001B, then 001B into 001C, which names acc-2 (two Vitally accounts of
    one company): 001C's opportunities are both accounts'. A restored Account is merged no more."""
    state = StateDB.memory()
    _store(state, "Account", _merged("001A", "001B", Vitally_Account_Id__c="acc-1"))
    _store(state, "Account", _merged("001B", "001C"))  # named none itself: remembered as part of the chain
    _store(state, "Account", _merged("001X", "001C"))  # named none, and no remembered merge ends on it
    _store(state, "Account", _account("001C", Vitally_Account_Id__c="acc-2"))
    _store(state, "Opportunity", _opportunity("006C", "001C"))
    chained = [(_opportunities(f, "acc-1"), _opportunities(f, "acc-2")) for f in _loads(state, ["acc-1", "acc-2"])]
    scoped = _opportunities(SalesforceFacts.load_for(state, ["acc-1"]), "acc-1")

    assert chained == [(["006C"], ["006C"])] * 3 and scoped == ["006C"]
    assert state.account_merges() == {"001A": ("001B", "acc-1"), "001B": ("001C", None)}


LATER = "2026-11-02T00:00:00.000+0000"


def test_a_restored_account_keeps_the_deal_the_merge_moved() -> None:
    """Restoring (undeleting) an Account merged away does not move its opportunities back ("You
    can undelete records that were deleted as the result of a merge, but the child objects are
    reparented, which can't be undone": SOAP API, `undelete()`; Apex, "Restoring Deleted
    Records"): the deal still on the Account kept stays the account's. (Review of the change: the
    merge was forgotten on the restore, and the account routed again beside its deal.)"""
    state = StateDB.memory()
    _store(state, "Account", _account("001A", Vitally_Account_Id__c="acc-1"), _account("001B"))
    _store(state, "Opportunity", _opportunity("006A", "001A"))
    _store(state, "Account", _merged("001A", "001B", Vitally_Account_Id__c="acc-1"))
    _store(state, "Opportunity", _opportunity("006A", "001B"))  # moved by the merge
    _store(state, "Account", _account("001A", Vitally_Account_Id__c="acc-1"))  # undeleted

    assert state.account_merges() == {"001A": ("001B", "acc-1")}
    assert [_opportunities(facts, "acc-1") for facts in _loads(state, ["acc-1"])] == [["006A"]] * 3


def test_an_opportunity_still_mirrored_on_the_account_merged_away_stays_the_account_s() -> None:
    """A cycle reads Opportunities before Accounts: a merge made between the two reads is read,
    the opportunity's move is not (yet). Every Account of a chain joins, the one merged away (out
    of the mirror) included. (Review of the change: the opportunity joined nothing.)"""
    state = StateDB.memory()
    _store(state, "Account", _account("001A", Vitally_Account_Id__c="acc-1"), _account("001B"))
    _store(state, "Opportunity", _opportunity("006A", "001A"))
    before = {lazy: SalesforceFacts.load(state, lazy=lazy).fingerprint("acc-1") for lazy in (False, True)}
    _store(state, "Account", _merged("001A", "001B", Vitally_Account_Id__c="acc-1"))
    after = {lazy: SalesforceFacts.load(state, lazy=lazy).fingerprint("acc-1") for lazy in (False, True)}

    assert [_opportunities(facts, "acc-1") for facts in _loads(state, ["acc-1"])] == [["006A"]] * 3
    assert after[False] == after[True] != before[False]


def test_a_chain_read_in_one_page_is_kept_whatever_the_order_of_its_merges() -> None:
    """001Z (acc-1) merged into 001M, then 001M into 001C within one second: QueryAll orders them by
    (SystemModstamp, Id), so 001M's merge comes first in the page, before the one that makes it
    part of a chain. (Review of the change: 001M's merge was dropped.)"""
    state = StateDB.memory()
    _store(state, "Account", _account("001C"))
    _store(state, "Opportunity", _opportunity("006C", "001C"))
    _store(state, "Account", _merged("001M", "001C"), _merged("001Z", "001M", Vitally_Account_Id__c="acc-1"))

    assert state.account_merges() == {"001Z": ("001M", "acc-1"), "001M": ("001C", None)}
    assert [_opportunities(facts, "acc-1") for facts in _loads(state, ["acc-1"])] == [["006C"]] * 3


def test_a_merged_account_naming_unstorable_text_does_not_stop_the_read() -> None:
    """A hostile merged-away Account whose Vitally_Account_Id__c holds a lone surrogate (which
    SQLite cannot store as UTF-8) is no merge of a Vitally account's; the read goes on. (Review of
    the change: the page failed, and with it every cycle while the record was in the recycle bin.)
    Leads merged away are read the same way."""
    state = StateDB.memory()
    _store(state, "Account", _account("001M"))
    _store(state, "Account", _merged("001A", "001M", Vitally_Account_Id__c="acc-\udc80"))
    lead = {"Id": "00Q\udc80", "SystemModstamp": STAMP, "IsDeleted": True, "MasterRecordId": "00Qkept"}
    _store(state, "Lead", lead, {**lead, "Id": "00Qgone", "MasterRecordId": "00Q\udc80", "Sync_Key__c": "k"})

    assert state.account_merges() == {}
    assert state.lead_merges() == {}


class _MergesBeforeAccounts:
    """A cycle's Salesforce client, with a person merging Accounts just as the cycle starts reading
    Accounts (after the Opportunities: `SF_OBJECTS`' order)."""

    def __init__(self, client: Any, merge: Callable[[], object]) -> None:
        self._client, self._merge = client, merge

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)

    def iter_changed(self, sobject: str, *args: Any, **kwargs: Any) -> Any:
        if sobject == "Account":
            self._merge()
            self._merge = lambda: None
        return self._client.iter_changed(sobject, *args, **kwargs)


def test_a_merge_made_while_a_cycle_reads_does_not_route_the_account(account: str) -> None:
    with _acme(account) as acme:
        merge = lambda: acme.sandbox.merge("Account", acme.duplicate, [acme.named])  # noqa: E731
        salesforce = _MergesBeforeAccounts(make_salesforce(acme.config), merge)
        at = NOW + DAY + timedelta(hours=1)
        during = run_cycle(acme.config, acme.state, make_vitally(acme.config), salesforce, clock=lambda: at, now=at)

    assert acme.state.account_merges() == {acme.named: (acme.duplicate, account)}
    assert account not in routed(during)


def test_an_event_after_the_merge_does_not_route_the_account(tmp_path: Path) -> None:
    """An event's mini-cycle reads the account's opportunities from the mirror, joined through the
    Account kept, as a cycle does."""
    with contextmanager(_world)(tmp_path) as world:
        named, _ = _deal(world.sandbox, "acc_0003")
        world.cycle()
        duplicate = _create(world.sandbox, "Account", Name="Acme Inc")
        world.sandbox.merge("Account", duplicate, [named])
        world.cycle()  # reads the merge and the opportunity moved
        world.sandbox.set_segment("acc_0003", "AM referral")
        world.event("vitally", "acc_0003")
        upserts = [w for w in world.mini().plan if w.op == "upsert_lead"]
        merges = world.state.account_merges()

    assert upserts == []
    assert merges == {named: (duplicate, "acc_0003")}


def test_salesforce_accounts_are_read_with_master_record_id() -> None:
    assert "MasterRecordId" in SF_OBJECTS["Account"]


def test_state_migration_17_reads_every_account_again(tmp_path: Path) -> None:
    """A state from before migration 17 gets the table, and forgets the Account cursors: the next
    cycle reads every Account once more, finding the merges still in the recycle bin."""
    path = tmp_path / "state.db"
    old = StateDB.open(path)
    for name in ("salesforce.Account", "salesforce.Account.queried_at", "salesforce.Lead"):
        old.set_cursor(name, STAMP)
    old.db.conn.commit()
    old.close()
    with sqlite3.connect(path) as conn:  # as the build before left it
        back_to_schema(conn, 16)

    upgraded = StateDB.open(path)
    assert upgraded.cursors() == {"salesforce.Lead": STAMP}
    assert upgraded.account_merges() == {}
    upgraded.close()


def test_the_sandbox_restores_a_merged_account_without_its_children(account: str) -> None:
    """undelete(): "You can undelete records that were deleted as the result of a merge, but the
    child objects are reparented, which can't be undone" (SOAP API)."""
    with _acme(account) as acme:
        acme.sandbox.merge("Account", acme.duplicate, [acme.named])
        answer = requests.post(
            f"{acme.sandbox.url}/_sandbox/undelete", json={"object": "Account", "ids": [acme.named]}, timeout=10
        )
        base = f"{acme.sandbox.url}/services/data/v59.0/sobjects"
        restored = requests.get(f"{base}/Account/{acme.named}", headers=HEADERS, timeout=10).json()
        deal = requests.get(f"{base}/Opportunity/{acme.opportunity}", headers=HEADERS, timeout=10).json()
        again = requests.post(
            f"{acme.sandbox.url}/_sandbox/undelete", json={"object": "Account", "ids": [acme.named]}, timeout=10
        )

    assert answer.json() == {"undeleted": [acme.named]}
    assert restored["IsDeleted"] is False and restored["Vitally_Account_Id__c"] == account
    assert deal["AccountId"] == acme.duplicate  # still on the Account kept
    assert again.status_code == 400 and "not in the Recycle Bin" in again.text


def test_an_account_restored_after_its_merge_keeps_its_deal_end_to_end(account: str) -> None:
    """A person restores the merged Account from the Recycle Bin: it names the account again, and
    the deal the merge moved stays on the Account kept, still the account's: no lead beside it."""
    with _acme(account) as acme:
        acme.sandbox.merge("Account", acme.duplicate, [acme.named])
        merged = cycle_at(acme.config, acme.state, NOW + DAY + timedelta(hours=1))
        acme.sandbox.set_clock(NOW + 2 * DAY)
        acme.sandbox.undelete("Account", [acme.named])
        restored = cycle_at(acme.config, acme.state, NOW + 2 * DAY + timedelta(hours=1))
        out = io.StringIO()
        explain(acme.config, acme.state, account, NOW + 2 * DAY + timedelta(hours=1), out, io.StringIO())

    assert account not in routed(merged) | routed(restored)
    assert f"open opportunity {acme.opportunity} (Prospecting) in Salesforce" in out.getvalue()
    assert acme.state.account_merges() == {acme.named: (acme.duplicate, account)}
