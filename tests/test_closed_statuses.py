"""One set of lead statuses closes a lead, for every reader: the configured ones included.

`[rules.episodes] disqualified_statuses` and `converted_statuses` say which Lead statuses mean a
person disqualified or converted a lead (an org adds its own to the Lead Status picklist: "Bad fit",
"Not interested"), and `[rules.demo] spam_status` / `support_status` what the triage gives spam and
support. The episodes read them (the cool-off starts), but whether a lead was *open* came from a
fixed list: a lead in the org's own "Bad fit" was disqualified to the episodes and open to the
routing guards and the planner, so after the cool-off no next lead was ever created for the account
(the planner creates none while the episode's lead is open), a person's "Bad fit" lead guarded its
account forever, and the lead-source triggers and the lead score still treated it as open.
Statuses compare case-insensitively, as the episodes compare them.
"""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import requests
from support import band_account, example_config_for, person_sets_lead

from core.model import Account, Lead
from rules import Policy, evaluate_lead
from rules.context import AccountContext, LeadContext, closed_statuses, is_closed
from rules.demo import awaits_triage
from rules.guards import routing_guard
from rules.policy import DemoPolicy, EpisodePolicy
from sandbox import Sandbox, generate_book
from state import StateDB
from sync.app import make_salesforce, make_vitally
from sync.config import example_against, load_config
from sync.cycle import run_cycle
from sync.facts import SalesforceFacts
from sync.whatif import compare

NOW = datetime(2026, 11, 22, 9, 0, tzinfo=UTC)
BAD_FIT = Policy(episodes=EpisodePolicy(disqualified_statuses=("Disqualified", "Bad fit")))


def _lead(status: str, *, ours: bool = True, **more: Any) -> Lead:
    return Lead(
        id="00QA",
        system_modstamp=NOW - timedelta(days=5),
        lead_source="Demo request",
        status=status,
        vitally_account_id="acc_1",
        sync_key="crm-sync-acc_1-1" if ours else None,
        **more,
    )


def test_the_closed_set_holds_the_configured_statuses_casefolded() -> None:
    default = closed_statuses(Policy())
    assert is_closed("Closed - Not Converted", default)
    assert is_closed("closed - not converted", default)  # as the episodes compare statuses
    assert is_closed(" Disqualified ", default)
    assert not is_closed("Bad fit", default)
    assert not is_closed(None, default) and not is_closed("", default)
    configured = closed_statuses(BAD_FIT)
    assert is_closed("Bad fit", configured) and is_closed("BAD FIT", configured)
    spam = closed_statuses(Policy(demo=DemoPolicy(spam_status="Spam", support_status="Support ticket")))
    assert is_closed("Spam", spam) and is_closed("Support ticket", spam)


def test_a_configured_disqualified_status_closes_the_lead_for_the_guards_and_the_planner() -> None:
    account = Account(id="acc_1", name="Acme", updated_at=NOW, mrr=900)
    for lead in (_lead("Bad fit"), _lead("Bad fit", ours=False)):
        default = AccountContext((lead,))
        configured = AccountContext((lead,), closed=closed_statuses(BAD_FIT))
        assert default.open_leads == (lead,)
        assert configured.open_leads == ()
    someone_elses = _lead("Bad fit", ours=False)
    assert routing_guard(account, AccountContext((someone_elses,)), Policy(), NOW) == (
        "open lead 00QA (Bad fit) in Salesforce"
    )
    guard = routing_guard(account, AccountContext((someone_elses,), closed=closed_statuses(BAD_FIT)), BAD_FIT, NOW)
    assert guard is not None and guard.startswith("lead 00QA disqualified in Salesforce 5 days ago")


@pytest.mark.parametrize("fast", [False, True])
def test_lead_rules_read_the_configured_closed_statuses(fast: bool) -> None:
    # An inbound sales@ lead (the demo triage would drop an empty demo request as spam first).
    inbound = replace(_lead("Bad fit", ours=False), vitally_account_id=None, lead_source="Sales email")
    opened = {d.rule: d for d in evaluate_lead(inbound, LeadContext(), Policy(), NOW, full=not fast)}
    closed = {d.rule: d for d in evaluate_lead(inbound, LeadContext(), BAD_FIT, NOW, full=not fast)}
    assert opened["new_business.sales_email"].fired
    assert "new_business.sales_email" not in closed or not closed["new_business.sales_email"].fired
    if not fast:
        assert "lead status Bad fit is closed" in closed["new_business.sales_email"].reason
    assert "lead closed (status Bad fit)" in closed["scoring.lead_score"].reason
    assert "lead closed" not in opened["scoring.lead_score"].reason
    demo = replace(inbound, lead_source="Demo request")
    assert awaits_triage(demo, Policy()) and not awaits_triage(demo, BAD_FIT)


def test_the_facts_give_every_context_the_configured_statuses() -> None:
    state = StateDB.memory()
    raw = {
        "Id": "00QA",
        "SystemModstamp": "2026-11-17T09:00:00.000+0000",
        "LastName": "Doe",
        "Company": "Acme",
        "Status": "Bad fit",
        "LeadSource": "Product-led",
        "IsConverted": False,
        "Vitally_Account_Id__c": "acc_1",
        "Sync_Key__c": "crm-sync-acc_1-1",
    }
    state.upsert_sf([{"object": "Lead", "id": "00QA", "modstamp": raw["SystemModstamp"], "raw": json.dumps(raw)}])
    for lazy in (False, True):
        assert SalesforceFacts.load(state, lazy=lazy).context_for("acc_1").open_leads != ()
        assert SalesforceFacts.load(state, lazy=lazy, policy=BAD_FIT).context_for("acc_1").open_leads == ()
    assert SalesforceFacts.load_for(state, ["acc_1"], policy=BAD_FIT).context_for("acc_1").open_leads == ()


def test_after_the_cool_off_a_lead_in_the_orgs_own_disqualified_status_is_followed_by_the_next(
    tmp_path: Path,
) -> None:
    """Real cycles against the in-process sandbox (the real HTTP server): crm-sync routes the
    account, a person sets its lead to the org's own "Bad fit" through the sObject API, and after
    the 90-day cool-off crm-sync creates the account's next lead (`crm-sync-<account>-2`)."""
    seed = generate_book(0, now=NOW)  # the sales team of the example pools, no accounts
    seed["vitally"]["accounts"] = [band_account("acc_bf1", "Bad Fit GmbH", "badfit.de")]
    del seed["_cases"]
    text = 'disqualified_statuses = ["Disqualified", "Unqualified", "Closed - Not Converted"]'
    configured = 'disqualified_statuses = ["Disqualified", "Unqualified", "Closed - Not Converted", "Bad fit"]'
    with Sandbox(seed, now=NOW) as sandbox:
        path = example_config_for(sandbox.url, tmp_path / "config.toml", {text: configured})
        assert "Bad fit" in path.read_text()
        config = load_config(path)
        state = StateDB.open(tmp_path / "state.db")

        def cycle() -> None:
            now = sandbox.now()
            report = run_cycle(config, state, make_vitally(config), make_salesforce(config), clock=lambda: now, now=now)
            assert report.counts["failed"] == 0

        def ours() -> list[dict[str, Any]]:
            leads = sandbox.state()["salesforce"]["Lead"]
            return sorted(
                (lead for lead in leads if str(lead.get("Sync_Key__c") or "").startswith("crm-sync-acc_bf1-")),
                key=lambda lead: lead["Sync_Key__c"],
            )

        def advance(seconds: float) -> None:
            requests.post(
                f"{sandbox.url}/_sandbox/clock", json={"advance_seconds": seconds}, timeout=5
            ).raise_for_status()

        try:
            cycle()
            (first,) = ours()
            assert first["Sync_Key__c"] == "crm-sync-acc_bf1-1"
            advance(3600)
            person_sets_lead(sandbox.url, first["Id"], Status="Bad fit")
            advance(86_400)
            cycle()
            assert [lead["Sync_Key__c"] for lead in ours()] == ["crm-sync-acc_bf1-1"]  # within the cool-off
            advance(91 * 86_400)
            cycle()
            assert [lead["Sync_Key__c"] for lead in ours()] == ["crm-sync-acc_bf1-1", "crm-sync-acc_bf1-2"]
        finally:
            state.close()


def test_what_if_reads_the_facts_with_the_other_rules_statuses() -> None:
    """`--dry-run --compare-rules`: the facts shape every context by their lead statuses, so rules
    that list "Bad fit" as disqualified must be judged over facts read with it (found by a review:
    the other rules were judged over the current config's facts, and the difference was missed)."""
    config = example_against("http://127.0.0.1:1")
    other = replace(config, policy=replace(config.policy, episodes=BAD_FIT.episodes))
    state = StateDB.memory()
    account = band_account("acc_1", "Bad Fit GmbH", "badfit.de")
    stamp = "2026-11-17T09:00:00.000+0000"
    lead = {
        "Id": "00QA",
        "SystemModstamp": stamp,
        "LastName": "Doe",
        "Company": "Bad Fit GmbH",
        "Status": "Bad fit",
        "LeadSource": "Web",
        "IsConverted": False,
        "Vitally_Account_Id__c": "acc_1",
    }
    state.upsert_accounts([{"id": "acc_1", "updated_at": account["updatedAt"], "raw": json.dumps(account)}])
    state.upsert_sf([{"object": "Lead", "id": "00QA", "modstamp": stamp, "raw": json.dumps(lead)}])
    differences = {(d.record, d.rule) for d in compare(state, config, other, NOW)}
    # A person's open lead holds the account back; disqualified (other's reading) it does not.
    assert ("acc_1", "product_led.mrr_band") in differences
    assert ("acc_1", "lifecycle.stage") in differences
    assert compare(state, config, config, NOW) == []
