"""Leads merged in Salesforce. A person merging duplicates keeps one lead, the master; the others
are deleted, each with `MasterRecordId` naming the master ("Use queryAll() to view records that
have been deleted during a merge", `merge()`, SOAP API guide; "Get Records that Have Been Deleted
or Merged", REST API guide), and the master keeps its own values except the ones the person takes
from the merged leads ("External ID fields cannot be used with merge()"). The sandbox imitates it
(`POST /_sandbox/merge`).

Before, crm-sync read its own lead merged into a person's lead as deleted, a person's "no": after
the 90-day cool-off the account's next lead and owner were created while a rep still worked the
lead it was merged into. Now the account's context shows the lead it lives on in: an open one
holds the account back, and its status decides what follows."""

from __future__ import annotations

import hashlib
import io
import json
import sqlite3
from dataclasses import replace
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import pytest
import requests
from real_org_world import NOW, crm_sync_s_lead, cycle_at, first_routed, real_org_book, routed
from support import back_to_schema, person_sets_lead, sandbox_org_config

from core.model import Account, Lead
from rules import Policy
from rules.context import AccountContext
from rules.episodes import answered, episodes, hold
from sandbox import Sandbox, SandboxConfig
from sandbox.server import ControlError
from state import StateDB
from sync.config import Config
from sync.explain import explain
from sync.facts import SalesforceFacts
from sync.ingest import mirror_sf
from sync.vocabulary import CycleReport, Hooks

HEADERS = {"Authorization": "Bearer x", "Sforce-Auto-Assign": "FALSE"}
DAY = timedelta(days=1)


def _a_person_s_lead(sandbox: Sandbox, **fields: Any) -> str:
    """A lead a person creates in Salesforce (naming no Vitally account unless told); its Id."""
    made = requests.post(
        f"{sandbox.url}/services/data/v59.0/sobjects/Lead",
        json={"LastName": "Dup", "Company": "Dup Inc", **fields},
        headers=HEADERS,
        timeout=10,
    )
    assert made.status_code == 201, made.text
    return str(made.json()["id"])


def _query_all(sandbox: Sandbox, soql: str) -> list[dict[str, Any]]:
    answer = requests.get(
        f"{sandbox.url}/services/data/v59.0/queryAll/", params={"q": soql}, headers=HEADERS, timeout=10
    )
    answer.raise_for_status()
    return list(answer.json()["records"])


# -- the sandbox ------------------------------------------------------------------------------------


def test_the_sandbox_merges_as_salesforce_does() -> None:
    with Sandbox(real_org_book(), config=SandboxConfig(real_org=True), now=NOW) as sandbox:
        master = _a_person_s_lead(sandbox, Title="Keeps")
        victim = _a_person_s_lead(sandbox, Title="Gives", Email="gives@example.com")
        before = _query_all(sandbox, f"SELECT SystemModstamp FROM Lead WHERE Id = '{master}'")[0]["SystemModstamp"]
        sandbox.set_clock(NOW + timedelta(minutes=5))
        answer = requests.post(
            f"{sandbox.url}/_sandbox/merge",
            json={"object": "Lead", "master": master, "merged": [victim], "fields": {"Email": "gives@example.com"}},
            timeout=10,
        )
        assert answer.json() == {"master": master, "merged": [victim]}
        fields = "Id, IsDeleted, MasterRecordId, Title, Email, SystemModstamp"
        soql = f"SELECT {fields} FROM Lead WHERE Id IN ('{master}', '{victim}')"
        rows = {r["Id"]: r for r in _query_all(sandbox, soql)}
        live = requests.get(
            f"{sandbox.url}/services/data/v59.0/query/",
            params={"q": f"SELECT Id FROM Lead WHERE Id = '{victim}'"},
            headers=HEADERS,
            timeout=10,
        ).json()["records"]

    assert live == []  # the Query resource filters it out, as any deleted record
    assert rows[victim]["IsDeleted"] is True and rows[victim]["MasterRecordId"] == master
    assert rows[master]["IsDeleted"] is False and rows[master]["MasterRecordId"] is None
    assert rows[master]["Title"] == "Keeps"  # the master's own value
    assert rows[master]["Email"] == "gives@example.com"  # the one the person took from the merged lead
    assert rows[master]["SystemModstamp"] > before


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"fields": {"Sync_Key__c": "k"}}, "'Sync_Key__c' cannot be taken"),
        ({"merged": []}, "one or two records"),
        ({"object": "Opportunity"}, "cannot be merged"),
        ({"merged": ["00Q000000000000AAA"]}, "no live Lead"),
    ],
)
def test_the_sandbox_refuses_what_salesforce_cannot_merge(change: dict[str, Any], message: str) -> None:
    with Sandbox(real_org_book(), config=SandboxConfig(real_org=True), now=NOW) as sandbox:
        master, victim = _a_person_s_lead(sandbox), _a_person_s_lead(sandbox)
        payload = {"object": "Lead", "master": master, "merged": [victim], **change}
        with pytest.raises(ControlError, match=message):
            sandbox.merge(payload["object"], payload["master"], payload["merged"], payload.get("fields"))


# -- crm-sync's lead merged into a person's --------------------------------------------------------


@pytest.fixture(scope="module")
def account() -> str:
    """An account the book's first cycle routes."""
    return first_routed()


def _merged_into_a_person_s_lead(sandbox: Sandbox, state: StateDB, config: Config, account: str) -> tuple[str, str]:
    """crm-sync routes `account` and reads its lead back; a person merges that lead into their own
    lead (being worked) for the same company, which names no Vitally account. (crm-sync's lead,
    the person's)."""
    assert account in routed(cycle_at(config, state, NOW))
    cycle_at(config, state, NOW + timedelta(minutes=15))  # reads the lead it created into the mirror
    ours = crm_sync_s_lead(sandbox, account)["Id"]
    theirs = _a_person_s_lead(sandbox, Status="Working - Contacted")
    sandbox.merge("Lead", theirs, [ours])
    return ours, theirs


def test_crm_sync_s_lead_merged_into_a_person_s_is_not_their_no(tmp_path: Path, account: str) -> None:
    with Sandbox(real_org_book(), config=SandboxConfig(real_org=True), now=NOW) as sandbox:
        config = sandbox_org_config(sandbox.url)
        state = StateDB.open(tmp_path / "state.db")
        ours, theirs = _merged_into_a_person_s_lead(sandbox, state, config, account)
        report = cycle_at(config, state, NOW + DAY)
        after_cool_off = NOW + 120 * DAY  # past the 90-day cool-off a deletion starts
        sandbox.set_clock(after_cool_off)
        late = cycle_at(config, state, after_cool_off, full=True)
        out = io.StringIO()
        explain(config, state, account, after_cool_off, out, io.StringIO())

    assert state.lead_merges() == {ours: theirs}
    assert account not in routed(report) | routed(late)  # the rep works the lead it lives on in
    # Neither is routed, owned or closed. The lead kept, an open lead like any other, is scored
    # (scoring.lead_score writes `Lead_Score__c` on every open lead whose score changed).
    written = [w for w in [*report.plan, *late.plan] if w.record in (ours, theirs)]
    assert [(w.record, w.op, set(w.fields)) for w in written] == [(theirs, "update_lead", {"Lead_Score__c"})]
    shown = out.getvalue()
    assert f"lead {theirs} (crm-sync's lead {ours} merged into it) status Working - Contacted" in shown
    assert f"lead {ours} deleted" not in shown and f"lead {ours} merged into lead" not in shown


def test_the_lead_it_lives_on_in_decides_what_follows(account: str) -> None:
    """The person disqualifies the lead crm-sync's was merged into: the cool-off starts then (an
    incremental cycle sees it: that lead is part of the account's facts), and the account is
    routed again once it is over."""
    with Sandbox(real_org_book(), config=SandboxConfig(real_org=True), now=NOW) as sandbox:
        config = sandbox_org_config(sandbox.url)
        state = StateDB.memory()
        _, theirs = _merged_into_a_person_s_lead(sandbox, state, config, account)
        cycle_at(config, state, NOW + DAY)
        disqualified_on = NOW + 60 * DAY
        sandbox.set_clock(disqualified_on)
        person_sets_lead(sandbox.url, theirs, Status="Disqualified")
        held = cycle_at(config, state, disqualified_on + timedelta(hours=1))
        still_held = NOW + 120 * DAY  # 120 days after the merge, 60 after the "no"
        sandbox.set_clock(still_held)
        cooling = cycle_at(config, state, still_held)
        over = disqualified_on + 91 * DAY
        sandbox.set_clock(over)
        again = cycle_at(config, state, over)

    assert account not in routed(held) | routed(cooling)
    assert account in routed(again)  # an incremental cycle: the cool-off's end is a clock boundary


def test_a_lead_merged_twice_lives_on_in_the_last_one(account: str) -> None:
    with Sandbox(real_org_book(), config=SandboxConfig(real_org=True), now=NOW) as sandbox:
        config = sandbox_org_config(sandbox.url)
        state = StateDB.memory()
        ours, theirs = _merged_into_a_person_s_lead(sandbox, state, config, account)
        cycle_at(config, state, NOW + DAY)
        last = _a_person_s_lead(sandbox, Status="Nurture")
        sandbox.merge("Lead", last, [theirs])  # the person's lead leaves the mirror; the merge is kept
        later = NOW + 120 * DAY
        sandbox.set_clock(later)
        report = cycle_at(config, state, later)
        out = io.StringIO()
        explain(config, state, account, later, out, io.StringIO())

    assert state.lead_merges() == {ours: theirs, theirs: last}
    assert state.sf_raw("Lead", theirs) is None
    assert account not in routed(report)
    assert f"lead {last} (crm-sync's lead {ours} merged into it) status Nurture" in out.getvalue()


def test_merged_into_a_lead_crm_sync_cannot_see_it_stays_a_deletion(account: str) -> None:
    """The lead it was merged into deleted since (a person's, so gone from the mirror): the merge
    is read as that deletion, a "no", and the reason says where the lead went."""
    with Sandbox(real_org_book(), config=SandboxConfig(real_org=True), now=NOW) as sandbox:
        config = sandbox_org_config(sandbox.url)
        state = StateDB.memory()
        ours, theirs = _merged_into_a_person_s_lead(sandbox, state, config, account)
        base = f"{sandbox.url}/services/data/v59.0"
        assert requests.delete(f"{base}/sobjects/Lead/{theirs}", headers=HEADERS, timeout=10).ok
        later = NOW + 30 * DAY
        sandbox.set_clock(later)
        report = cycle_at(config, state, later)
        out = io.StringIO()
        explain(config, state, account, later, out, io.StringIO())

    assert account not in routed(report)  # within the cool-off
    assert f"lead {ours} merged into lead {theirs}, unseen, in Salesforce" in out.getvalue()


def test_a_person_s_duplicate_merged_into_crm_sync_s_lead_changes_nothing(account: str) -> None:
    with Sandbox(real_org_book(), config=SandboxConfig(real_org=True), now=NOW) as sandbox:
        config = sandbox_org_config(sandbox.url)
        state = StateDB.memory()
        cycle_at(config, state, NOW)
        cycle_at(config, state, NOW + timedelta(minutes=15))
        ours = crm_sync_s_lead(sandbox, account)["Id"]
        theirs = _a_person_s_lead(sandbox, Vitally_Account_Id__c=account)
        sandbox.merge("Lead", ours, [theirs])
        report = cycle_at(config, state, NOW + DAY, full=True)

    assert state.lead_merges() == {}  # a person's lead merged away, no chain through it: nothing to follow
    assert state.sf_raw("Lead", theirs) is None  # a person's deleted lead leaves the mirror
    assert account not in routed(report)
    assert (state.sf_raw("Lead", ours) or {}).get("IsDeleted") is False


def test_a_state_from_before_merges_were_read_finds_them_in_the_recycle_bin(tmp_path: Path, account: str) -> None:
    """A state the build before kept (schema 14, mirrored leads without `MasterRecordId`): state
    migration 15 forgets the Lead cursors, so the next cycle reads every lead again and finds the
    merges still in the Recycle Bin."""
    path = tmp_path / "state.db"
    with Sandbox(real_org_book(), config=SandboxConfig(real_org=True), now=NOW) as sandbox:
        config = sandbox_org_config(sandbox.url)
        state = StateDB.open(path)
        _merged_into_a_person_s_lead(sandbox, state, config, account)
        cycle_at(config, state, NOW + DAY)
        state.close()
        with sqlite3.connect(path) as conn:  # the old build's mirror and schema version
            rows = conn.execute("SELECT id, raw FROM sf_records WHERE object = 'Lead'").fetchall()
            for lead_id, raw in rows:
                old = json.dumps({k: v for k, v in json.loads(raw).items() if k != "MasterRecordId"})
                digest = hashlib.blake2b(old.encode(), digest_size=16).digest()
                conn.execute("UPDATE sf_records SET raw = ?, digest = ? WHERE id = ?", [old, digest, lead_id])
            back_to_schema(conn, 14)
        state = StateDB.open(path)
        assert state.cursor("salesforce.Lead") is None
        later = NOW + 2 * DAY
        sandbox.set_clock(later)
        report = cycle_at(config, state, later)
        after_cool_off = NOW + 120 * DAY
        sandbox.set_clock(after_cool_off)
        late = routed(cycle_at(config, state, after_cool_off))
        state.close()

    assert report.counts["sf_lead_read"] >= 2
    assert account not in late


# -- the rules ----------------------------------------------------------------------------------------


def _lead(lead_id: str, **fields: Any) -> Lead:
    return Lead(id=lead_id, system_modstamp=NOW - 10 * DAY, created_date=NOW - 30 * DAY, **fields)


def test_a_referral_answered_on_the_lead_crm_sync_s_was_merged_into_is_held() -> None:
    """An `AM referral` routed a TAM's lead; the TAM merged it into their own lead and disqualified
    that: the team's "no", as if on crm-sync's lead (rules.episodes.answered)."""
    merged = _lead(
        "00Qtheirs",
        status="Disqualified",
        routing_rule="product_led.am_referral",
        vitally_account_id="acc-1",
        merged_from="00Qours",
    )
    policy = Policy()
    ctx = AccountContext((merged,))
    why = answered("product_led.am_referral", ctx, policy, NOW)
    assert why is not None and "the team this referral asks answered" in why
    not_merged = AccountContext((replace(merged, merged_from=None),))  # a person's lead: not the team's answer
    assert answered("product_led.am_referral", not_merged, policy, NOW) is None
    (episode,) = episodes(Account(id="acc-1", name="Acme", updated_at=NOW), ctx, policy)
    assert episode.family == "product_led" and episode.state == "disqualified"


def test_the_account_s_facts_change_with_the_lead_it_lives_on_in() -> None:
    """`SalesforceFacts.fingerprint` (eager and lazy alike) covers the lead a linked lead was merged
    into, so an incremental cycle judges the account again when a person changes that lead."""
    state = StateDB.memory()
    stamp = "2026-11-01T00:00:00.000+0000"
    common = {"SystemModstamp": stamp, "LastName": "A", "Company": "A"}
    ours = {"Id": "00Qours", **common, "IsDeleted": True, "Sync_Key__c": "crm-sync-acc-1-1",
            "Vitally_Account_Id__c": "acc-1", "MasterRecordId": "00Qtheirs"}  # fmt: skip
    theirs = {"Id": "00Qtheirs", **common, "Status": "Working"}

    def store(*records: dict[str, Any]) -> None:
        rows = [
            {"object": "Lead", "id": r["Id"], "modstamp": stamp, "raw": json.dumps(r), "error": None} for r in records
        ]
        state.upsert_sf(rows)

    store(ours, theirs)
    state.record_merges([("00Qours", "00Qtheirs", stamp, True)])
    prints = {lazy: SalesforceFacts.load(state, lazy=lazy).fingerprint("acc-1") for lazy in (False, True)}
    store({**theirs, "Status": "Disqualified"})
    changed = {lazy: SalesforceFacts.load(state, lazy=lazy).fingerprint("acc-1") for lazy in (False, True)}
    contexts = [
        SalesforceFacts.load(state, lazy=False).context_for("acc-1"),
        SalesforceFacts.load(state, lazy=True).context_for("acc-1"),
        SalesforceFacts.load_for(state, ["acc-1"]).context_for("acc-1"),  # an event's mini-cycle
    ]

    assert prints[False] == prints[True] and changed[False] == changed[True]
    assert prints[False] != changed[False]
    assert contexts[0] == contexts[1] == contexts[2]
    (lead,) = contexts[0].leads
    assert (lead.id, lead.status, lead.merged_from) == ("00Qtheirs", "Disqualified", "00Qours")
    assert lead.vitally_account_id == "acc-1"  # the account's lead now
    assert lead.created_date is None and lead.routing_rule is None  # nothing taken that the merged lead lacked
    assert date(2026, 11, 1) == lead.system_modstamp.date()


# -- found by a review of the change (each failed before its fix) ----------------------------------

STAMP = "2026-11-01T00:00:00.000+0000"


def _store(state: StateDB, *records: dict[str, Any]) -> None:
    state.upsert_sf(
        [{"object": "Lead", "id": r["Id"], "modstamp": STAMP, "raw": json.dumps(r), "error": None} for r in records]
    )


def _ours(lead_id: str, account: str, n: int = 1, **more: Any) -> dict[str, Any]:
    return {"Id": lead_id, "SystemModstamp": STAMP, "LastName": "A", "Company": "A", "CreatedDate": STAMP,
            "Sync_Key__c": f"crm-sync-{account}-{n}", "Vitally_Account_Id__c": account, **more}  # fmt: skip


def _all_paths(state: StateDB, account_id: str) -> list[AccountContext]:
    """The account's context as an eager load, a lazy one and an event's mini-cycle give it."""
    loads = (
        SalesforceFacts.load(state),
        SalesforceFacts.load(state, lazy=True),
        SalesforceFacts.load_for(state, [account_id]),
    )
    return [facts.context_for(account_id) for facts in loads]


@pytest.mark.parametrize("full", [False, True], ids=["incremental", "full"])
def test_merged_into_crm_sync_s_lead_of_another_account_is_not_routed_again(full: bool) -> None:
    """Two Vitally accounts of one company each got a lead; a rep keeps one. The account whose lead
    was merged away lives on in the lead kept, open and worked, as a person's lead (it does not
    carry that account's Sync_Key__c): no second lead, no second owner."""
    with Sandbox(real_org_book(), config=SandboxConfig(real_org=True), now=NOW) as sandbox:
        config = sandbox_org_config(sandbox.url)
        state = StateDB.memory()
        x, y = sorted(routed(cycle_at(config, state, NOW)))[:2]
        cycle_at(config, state, NOW + timedelta(minutes=15))
        merged, kept = crm_sync_s_lead(sandbox, x)["Id"], crm_sync_s_lead(sandbox, y)["Id"]
        sandbox.merge("Lead", kept, [merged])
        report = cycle_at(config, state, NOW + DAY, full=full)

    assert state.lead_merges() == {merged: kept}
    assert x not in routed(report)
    (lead,) = SalesforceFacts.load(state).context_for(x).leads
    assert (lead.id, lead.sync_key, lead.merged_from) == (kept, None, merged)


def test_a_referral_answered_on_a_lead_that_names_the_account_already_is_held() -> None:
    """crm-sync's AM-referral lead merged into the TAM's own lead, which names the account too, and
    which the TAM then disqualifies: the team's "no", as when the lead kept names no account."""
    state = StateDB.memory()
    ours = _ours(
        "00Qours", "acc-1", IsDeleted=True, MasterRecordId="00Qtheirs", Routing_Rule__c="product_led.am_referral"
    )
    theirs = {"Id": "00Qtheirs", "SystemModstamp": "2026-11-20T00:00:00.000+0000", "LastName": "B", "Company": "A",
              "Status": "Disqualified", "Vitally_Account_Id__c": "acc-1"}  # fmt: skip
    _store(state, ours, theirs)
    state.record_merges([("00Qours", "00Qtheirs", STAMP, True)])

    for ctx in _all_paths(state, "acc-1"):
        (lead,) = ctx.leads
        assert (lead.id, lead.merged_from, lead.routing_rule) == ("00Qtheirs", "00Qours", "product_led.am_referral")
        assert answered("product_led.am_referral", ctx, Policy(), NOW) is not None


@pytest.mark.parametrize("merges", [{"00Qours": "00Qours"}, {"00Qours": "00Qother", "00Qother": "00Qours"}],
                         ids=["itself", "two"])  # fmt: skip
def test_a_chain_of_merges_that_comes_back_on_itself_leaves_the_lead_a_deletion(merges: dict[str, str]) -> None:
    """No merge makes such records; hostile or hand-edited data must not hide crm-sync's deleted
    lead (a person's "no") from its account."""
    state = StateDB.memory()
    _store(state, _ours("00Qours", "acc-1", IsDeleted=True, MasterRecordId=merges["00Qours"]))
    if "00Qother" in merges:
        _store(state, _ours("00Qother", "acc-2", IsDeleted=True, MasterRecordId="00Qours"))
    state.record_merges([(victim, master, STAMP, True) for victim, master in merges.items()])
    account = Account(id="acc-1", name="Acme", updated_at=NOW)

    for ctx in _all_paths(state, "acc-1"):
        assert [lead.id for lead in ctx.leads] == ["00Qours"]
        assert hold(account, ctx, Policy(), NOW) is not None


@pytest.mark.parametrize("master", [5, {"Id": "00Qx"}, ["00Qx"], ""], ids=["number", "object", "list", "empty"])
def test_a_master_record_id_that_is_not_an_id_leaves_the_lead_a_deletion(master: Any) -> None:
    """`MasterRecordId` only adds to a deleted lead: a value that is not text does not make the lead
    malformed (which would drop crm-sync's deleted lead, a "no", from its account)."""
    state = StateDB.memory()
    raw = _ours("00Qours", "acc-1", IsDeleted=True, MasterRecordId=master)
    mirror_sf(state, "Lead", [raw], report=CycleReport(run_id=1, dry_run=False, now=NOW), hooks=Hooks())

    assert state.lead_merges() == {}
    for ctx in _all_paths(state, "acc-1"):
        assert [lead.id for lead in ctx.leads] == ["00Qours"]
        assert hold(Account(id="acc-1", name="Acme", updated_at=NOW), ctx, Policy(), NOW) is not None


def test_a_person_s_merge_is_remembered_only_where_a_chain_from_crm_sync_s_lead_ends() -> None:
    """An org's own deduplication merges thousands of leads: none is remembered unless crm-sync's
    lead was merged into the lead merged away (a chain to follow), so the table grows with
    crm-sync's merges, not the org's."""
    state = StateDB.memory()
    state.record_merges([(f"00Qp{i:011d}", f"00Qm{i:011d}", STAMP, False) for i in range(5000)])
    assert state.lead_merges() == {}
    state.record_merges([("00Qours", "00Qtheirs", STAMP, True), ("00Qtheirs", "00Qlast", STAMP, False)])
    assert state.lead_merges() == {"00Qours": "00Qtheirs", "00Qtheirs": "00Qlast"}


def test_an_event_reads_the_merges_of_its_accounts_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """An event's facts are found by the fields stored beside each record, so its cost does not grow
    with the book: of the merges, it follows only those of its accounts' leads."""
    state = StateDB.memory()
    others = [
        _ours(f"00Qo{i:011d}", f"acc-{i + 2}", IsDeleted=True, MasterRecordId=f"00Qm{i:011d}") for i in range(2000)
    ]
    _store(state, _ours("00Qours", "acc-1"), *others)
    state.record_merges([(r["Id"], r["MasterRecordId"], STAMP, True) for r in others])
    asked: list[str] = []
    masters = state.lead_masters

    def counted(ids: list[str]) -> dict[str, str]:
        asked.extend(ids)
        return masters(ids)

    monkeypatch.setattr(state, "lead_masters", counted)

    SalesforceFacts.load_for(state, ["acc-1"]).context_for("acc-1")

    assert asked == []


def test_the_sandbox_reparents_an_account_s_records_when_accounts_are_merged() -> None:
    """merge() "makes the master record the new parent of the related records" (SOAP API)."""
    with Sandbox(real_org_book(), config=SandboxConfig(real_org=True), now=NOW) as sandbox:
        base = f"{sandbox.url}/services/data/v59.0/sobjects"

        def made(sobject: str, **fields: Any) -> str:
            answer = requests.post(f"{base}/{sobject}", json=fields, headers=HEADERS, timeout=10)
            assert answer.status_code == 201, answer.text
            return str(answer.json()["id"])

        master, victim = made("Account", Name="Acme"), made("Account", Name="Acme Inc")
        deal = made("Opportunity", Name="Acme-", StageName="Prospecting", CloseDate="2026-12-31", AccountId=victim)
        person = made("Contact", LastName="P", AccountId=victim)
        sandbox.merge("Account", master, [victim])
        moved = [requests.get(f"{base}/{o}/{i}", headers=HEADERS, timeout=10).json() for o, i in
                 (("Opportunity", deal), ("Contact", person))]  # fmt: skip

    assert [record["AccountId"] for record in moved] == [master, master]
