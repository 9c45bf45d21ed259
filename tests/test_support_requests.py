"""A demo request the triage read as a support request is nobody's sales engagement with its
account (lead-routing-and-scoring.md, "Demo booking": "If 'support' or 'spam', it'll skip round
robin - 'support' will auto create Zendesk tickets"). With `[rules.demo] support_status` unset,
the default, such a lead stays open in its status; it held back the routing of the account it is
linked to, made the account "already a lead" for the onboarding rule and set its stage to
"New business lead". Found by a review against the handbook (2026-12-07)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from support import band_account
from test_minicycle import DEMO_REQUEST, World, _web_to_lead
from test_people_win import _world_of

from core.model import Account, Lead
from rules import Policy, evaluate_account
from rules.context import AccountContext, support_request
from rules.policy import EpisodePolicy

NOW = datetime(2026, 11, 22, 12, tzinfo=UTC)


def _band(**kw: Any) -> Account:
    """An account product_led.mrr_band routes (MRR 1,000, 51 employees, 8 users, US, paying 3 months)."""
    base: dict[str, Any] = {
        "id": "acc_1",
        "name": "Acme",
        "updated_at": NOW,
        "created_at": NOW - timedelta(days=400),
        "mrr": 1000,
        "employee_count": 51,
        "user_count": 8,
        "country": "US",
        "first_paid_at": date(2026, 8, 1),
    }
    return Account(**{**base, **kw})


def _demo(**kw: Any) -> Lead:
    """An inbound demo request linked to the account, nobody's yet."""
    base: dict[str, Any] = {
        "id": "00Q9",
        "system_modstamp": NOW - timedelta(days=5),
        "created_date": NOW - timedelta(days=5),
        "lead_source": "Demo request",
        "vitally_account_id": "acc_1",
        "status": "Open - Not Contacted",
        "classification": "support",
    }
    return Lead(**{**base, **kw})


def _routed(account: Account, ctx: AccountContext, policy: Policy | None = None) -> list[str]:
    decisions = evaluate_account(account, ctx, policy or Policy(), NOW, full=True)
    return [d.rule for d in decisions if d.fired and d.lead is not None]


@pytest.mark.parametrize(
    ("lead", "support"),
    [
        (_demo(), True),
        (_demo(status=None), True),
        (_demo(classification=" Support "), True),
        (_demo(status="Working - Contacted"), False),  # a person works it: their engagement
        (_demo(classification="sales"), False),
        (_demo(classification=None), False),
    ],
)
def test_a_support_request_nobody_moved_on_is_no_open_lead_of_its_account(lead: Lead, support: bool) -> None:
    assert support_request(lead) is support
    assert AccountContext(leads=(lead,)).open_leads == (() if support else (lead,))


def test_the_account_of_an_open_support_request_is_routed() -> None:
    assert _routed(_band(), AccountContext(leads=(_demo(),))) == ["product_led.mrr_band"]
    # ... and held back by one a person works, or by a sales demo request someone else owns
    for lead in (_demo(status="Working"), _demo(classification="sales")):
        assert _routed(_band(), AccountContext(leads=(lead,))) == [], lead


def test_a_support_request_does_not_hide_a_persons_no_before_it() -> None:
    """A person disqualified a demo request of the account 20 days ago (the 90-day cool-off holds);
    a later one is a support request. Taken for the newest lead of its family, the support request
    made the episode "open" and hid the cool-off: the account was routed (found by a review)."""
    theirs = _demo(
        id="00Q1",
        classification="sales",
        status="Closed - Not Converted",
        created_date=NOW - timedelta(days=40),
        system_modstamp=NOW - timedelta(days=20),
        status_since=NOW - timedelta(days=20),
    )
    for leads in ((theirs,), (theirs, _demo())):
        ctx = AccountContext(leads=leads)
        assert _routed(_band(), ctx) == [], leads
        [guarded] = [d for d in evaluate_account(_band(), ctx, Policy(), NOW) if d.rule == "product_led.mrr_band"]
        assert "lead 00Q1 disqualified in Salesforce 20 days ago (cool-off 90 days)" in guarded.reason


def test_an_org_s_own_new_status_counts() -> None:
    """`[rules.episodes] new_statuses` names the org's default status; the context carries it."""
    lead = _demo(status="Inbound")
    assert _routed(_band(), AccountContext(leads=(lead,))) == []
    policy = replace(Policy(), episodes=EpisodePolicy(new_statuses=("Inbound",)))
    ctx = AccountContext(leads=(lead,), new=frozenset({"inbound"}))
    assert _routed(_band(), ctx, policy) == ["product_led.mrr_band"]


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    yield from _world_of(tmp_path, band_account("acc_0001", "Band Co", "bandco.com"))


def test_a_cycle_routes_the_account_its_support_request_is_linked_to(world: World) -> None:
    """Against the sandbox: the support request is classified and gets no owner; the account it is
    linked to becomes a product-led lead all the same, once the classification is read."""
    support = {
        **DEMO_REQUEST,
        "Email": "ops@bandco.com",
        "Company": "Band Co",
        "Vitally_Account_Id__c": "acc_0001",
        "Form_Text__c": "Session replay is not working since yesterday, we get an error on every page.",
    }
    [lead_id] = _web_to_lead(world, support)  # before crm-sync first reads the account
    for _ in range(3):
        world.cycle()

    leads = {lead["Id"]: lead for lead in world.leads()}
    assert leads[lead_id]["Classification__c"] == "support"
    assert leads[lead_id]["Status"] == "Open - Not Contacted"  # support_status unset: left as it was
    ours = [lead for lead in leads.values() if lead.get("Sync_Key__c") == "crm-sync-acc_0001-1"]
    assert [lead["Routing_Rule__c"] for lead in ours] == ["product_led.mrr_band"]
