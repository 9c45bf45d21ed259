"""Salesforce leads as a real org holds them (issue #14): `OwnerId` is never empty. Web-to-lead
leaves an inbound lead with a queue or with the org's default lead owner, a user (Lead Settings);
`Sforce-Auto-Assign: FALSE` on a create without an owner gives the lead to the API user (SF-owner in
tests/fixtures/real/SOURCES.md). crm-sync routes leads waiting with an "unrouted owner", every pool
names a fallback owner, and a new lead without a pool goes to the org's own assignment."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from conftest import SeedBuilder, sf_id

from core.errors import ConfigError
from core.model import Lead
from rules.context import LeadContext
from rules.new_business import DEMO_REQUEST
from rules.policy import Policy, RoutingPolicy
from sandbox import Sandbox, SandboxConfig
from sandbox.store import API_USER_ID, DEFAULT_OWNER_USER_ID, INBOUND_QUEUE_ID
from state import StateDB
from sync.app import make_salesforce, make_vitally
from sync.config import example_against, load_config, parse_config
from sync.cycle import run_cycle
from sync.ownership import Ownership, undecided

NOW = datetime(2026, 11, 22, 9, tzinfo=UTC)
ROUTING = RoutingPolicy(unrouted_owners=(DEFAULT_OWNER_USER_ID[:15],))


# -- who is waiting for routing -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("owner", "waiting"),
    [
        (None, "unowned"),
        ("", "unowned"),
        (INBOUND_QUEUE_ID, f"in queue {INBOUND_QUEUE_ID}"),
        (DEFAULT_OWNER_USER_ID, f"with unrouted owner {DEFAULT_OWNER_USER_ID}"),  # 18 characters, 15 configured
        (DEFAULT_OWNER_USER_ID[:15], f"with unrouted owner {DEFAULT_OWNER_USER_ID[:15]}"),
        (API_USER_ID, None),
        ("005000000000010AAA", None),
    ],
)
def test_a_lead_waits_for_routing_when_unowned_queued_or_with_an_unrouted_owner(
    owner: str | None, waiting: str | None
) -> None:
    assert ROUTING.waiting_for_routing(owner) == waiting
    assert undecided("OwnerId", owner, ROUTING) is (waiting is not None)


def test_by_default_only_empty_and_queue_owners_wait() -> None:
    assert RoutingPolicy().waiting_for_routing(DEFAULT_OWNER_USER_ID) is None
    assert Ownership().judge("OwnerId", DEFAULT_OWNER_USER_ID, []) == "conflict"
    assert Ownership(routing=ROUTING).judge("OwnerId", DEFAULT_OWNER_USER_ID, []) == "write"


def test_a_demo_request_with_the_default_lead_owner_is_routed() -> None:
    lead = Lead(id="00Q1", system_modstamp=NOW, lead_source="Demo request", status="Open - Not Contacted",
                owner_id=DEFAULT_OWNER_USER_ID)  # fmt: skip
    policy = Policy()
    assert not DEMO_REQUEST.decide(lead, LeadContext(), policy, NOW).fired
    configured = replace(policy, routing=ROUTING)
    decision = DEMO_REQUEST.decide(lead, LeadContext(), configured, NOW)
    assert decision.fired and f"with unrouted owner {DEFAULT_OWNER_USER_ID}" in decision.reason


def test_the_config_reads_unrouted_owners_and_refuses_what_is_no_user_or_queue() -> None:
    config = parse_config({"rules": {"routing": {"unrouted_owners": [DEFAULT_OWNER_USER_ID, INBOUND_QUEUE_ID]}}})
    assert config.policy.routing.unrouted_owners == (DEFAULT_OWNER_USER_ID, INBOUND_QUEUE_ID)
    with pytest.raises(ConfigError) as caught:
        parse_config({"rules": {"routing": {"unrouted_owners": ["00Q000000000001AAA"]}}})
    assert caught.value.problems[0].startswith("rules.routing.unrouted_owners[0]: expected a Salesforce user")


# -- every pool names a fallback ------------------------------------------------------------------


def _pools(*pools: str) -> dict[str, Any]:
    return {"pools": [{"team": "BDR", "region": "*", "members": [], **tomlish(p)} for p in pools]}


def tomlish(text: str) -> dict[str, str]:
    key, _, value = text.partition("=")
    return {key.strip(): value.strip()} if key else {}


def test_a_pool_without_a_fallback_owner_is_a_configuration_error() -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config(_pools(""))
    assert caught.value.problems == [
        "pools[0].fallback_owner: missing: the queue (00G…) or user (005…) that gets the pool's lead "
        "when nobody is eligible"
    ]


def test_a_pool_falls_back_to_a_queue_or_a_user_named_once() -> None:
    user = parse_config(_pools("fallback_owner = 005000000000099AAA"))
    assert user.pools[("BDR", "*")].fallback_owner == "005000000000099AAA"
    older = parse_config(_pools("fallback_queue = 00G000000000005AAA"))
    assert older.pools[("BDR", "*")].fallback_owner == "00G000000000005AAA"
    with pytest.raises(ConfigError) as caught:
        parse_config({"pools": [{"team": "BDR", "region": "*", "fallback_owner": "00G000000000005AAA",
                                 "fallback_queue": "00G000000000005AAA"}]})  # fmt: skip
    assert caught.value.problems == [
        "pools[0].fallback_queue: give fallback_owner or its older name fallback_queue, not both"
    ]
    with pytest.raises(ConfigError) as caught:
        parse_config(_pools("fallback_owner = 00Q000000000001AAA"))
    assert "expected a Salesforce queue (00G…) or user (005…) id" in caught.value.problems[0]


def test_every_pool_of_the_example_names_a_fallback_owner() -> None:
    pools = load_config(Path("config.example.toml")).pools
    assert pools and all(pool.fallback_owner for pool in pools.values())
    assert {pools[("BDR", "*")].fallback_owner, pools[("Onboarding", "*")].fallback_owner} == {
        "00G000000000005AAA",
        "00G000000000006AAA",
    }


# -- a cycle against an org that owns every lead --------------------------------------------------


def _inbound_seed() -> dict[str, Any]:
    """Three open demo requests (a sales request each), waiting as web-to-lead leaves them: in the
    inbound queue, with the default lead owner, and with a rep someone gave it to."""
    seed = SeedBuilder()
    text = "We are evaluating product analytics for 40 engineers and would like a demo and pricing."
    for i, owner in enumerate((INBOUND_QUEUE_ID, DEFAULT_OWNER_USER_ID, "005000000000013AAA")):
        seed.lead(i, LeadSource="Demo request", OwnerId=owner, Country="US", Form_Text__c=text,
                  Title="VP Engineering", AnnualRevenue=40_000_000)  # fmt: skip
    for index, name in ((10, "Sam Turner"), (11, "Dana Whitfield"), (13, "Lukas Berg")):
        first, last = name.split()
        seed.sf["User"].append({"Id": f"0050000000000{index}AAA", "FirstName": first, "LastName": last,
                                "IsActive": True})  # fmt: skip
    return seed.build()


def _cycle(sandbox: Sandbox, **routing: Any) -> list[Any]:
    config = example_against(sandbox.url)
    policy = replace(config.policy, routing=replace(config.policy.routing, **routing))
    config = replace(config, policy=policy)
    report = run_cycle(config, StateDB.memory(), make_vitally(config), make_salesforce(config), clock=lambda: NOW)
    return list(report.plan)


def test_leads_waiting_in_the_queue_or_with_the_default_owner_get_a_round_robin_owner() -> None:
    with Sandbox(_inbound_seed(), config=SandboxConfig(sf_default_lead_owner="user"), now=NOW) as sandbox:
        plan = _cycle(sandbox, unrouted_owners=(DEFAULT_OWNER_USER_ID,))
        owners = {lead["Id"]: lead["OwnerId"] for lead in sandbox.state()["salesforce"]["Lead"]}
    routed = {w.record: w.fields.get("OwnerId") for w in plan if w.op == "update_lead" and "OwnerId" in w.fields}
    queued, defaulted, given = (sf_id("00Q", i) for i in range(3))
    assert set(routed) == {queued, defaulted}
    assert {owners[queued], owners[defaulted]} == {"005000000000010AAA", "005000000000011AAA"}  # TAE US pool
    assert owners[given] == "005000000000013AAA"  # a person's choice stays


def test_without_the_default_owner_configured_its_leads_stay_where_they_are() -> None:
    with Sandbox(_inbound_seed(), config=SandboxConfig(sf_default_lead_owner="user"), now=NOW) as sandbox:
        plan = _cycle(sandbox)
    routed = {w.record for w in plan if w.op == "update_lead" and "OwnerId" in w.fields}
    assert routed == {sf_id("00Q", 0)}


def routed_book() -> dict[str, Any]:
    """One account the product-led MRR band routes to a TAM in the EU (sandbox/generator.py's
    `product_led.mrr_band` case, built by hand); test_real_org_fields.py routes it too."""
    seed = SeedBuilder()
    account = seed.account(0, mrr=812.0, traits={
        "paidProducts": ["product_analytics", "session_replay"], "employee_count": 64, "user_count": 9,
        "country": "DE", "invoices": [{"month": f"2026-{m:02d}", "amount": 812.0} for m in range(6, 11)],
        "first_paid_at": "2026-06-01"})  # fmt: skip
    account["name"] = "Band Co"
    for user_id, name in (("005000000000003AAA", "Lena Schmidt"), ("005000000000004AAA", "Tomas Garcia")):
        first, last = name.split()
        seed.sf["User"].append({"Id": user_id, "FirstName": first, "LastName": last, "IsActive": True})
    return seed.build()


@pytest.mark.parametrize("pooled", [True, False])
def test_a_new_lead_never_lands_on_the_integration_user(pooled: bool) -> None:
    """With a pool, its owner (and `Sforce-Auto-Assign: FALSE`); without one, no owner and no
    FALSE, so the org's assignment rule or default lead owner takes it, as the plan says."""
    with Sandbox(routed_book(), config=SandboxConfig(sf_default_lead_owner="user"), now=NOW) as sandbox:
        config = example_against(sandbox.url)
        if not pooled:
            config = replace(config, pools={k: p for k, p in config.pools.items() if k[0] != "TAM"})
        report = run_cycle(config, StateDB.memory(), make_vitally(config), make_salesforce(config), clock=lambda: NOW)
        (write,) = [w for w in report.plan if w.op == "upsert_lead"]
        (lead,) = [lead for lead in sandbox.state()["salesforce"]["Lead"] if lead.get("Sync_Key__c")]
        calls = [c for c in sandbox.calls() if c["path"].endswith("/composite/sobjects/Lead/Sync_Key__c")]
    assert len(calls) == 1 and report.exit_code == 0
    if pooled:
        assert lead["OwnerId"] in {"005000000000003AAA", "005000000000004AAA"}  # TAM EU
        assert write.fields["OwnerId"] == lead["OwnerId"]
    else:
        assert lead["OwnerId"] == DEFAULT_OWNER_USER_ID
        assert "OwnerId" not in write.fields
        assert "the org's assignment rule or default lead owner applies" in write.reason
    assert lead["OwnerId"] != API_USER_ID
