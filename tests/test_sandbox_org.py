"""The sandbox as a real org: lead ownership, queues, State and Country picklists, `real_org`.

Sources (tests/fixtures/real/SOURCES.md): SF-owner (OwnerId implicitly the current user; a lead
may be owned by a user or a queue; describe says not nillable), the research notes on
`Sforce-Auto-Assign` (TRUE by default, FALSE keeps the caller as owner), SF-picklists and FI-msgs
(integration values, codes, `FIELD_INTEGRITY_EXCEPTION`).
"""

from __future__ import annotations

import signal
import sys
from collections.abc import Callable
from typing import Any

import pytest
from conftest import (
    T0,
    child_process,
    plain_http_session,
    salesforce_client,
    sf_collection,
    sf_errors,
    sf_id,
    small_seed,
    sobject,
)
from hypothesis import given, settings
from hypothesis import strategies as st
from simple_salesforce.api import Salesforce
from simple_salesforce.exceptions import SalesforceMalformedRequest

from sandbox.generator import MIN_FULL_COVERAGE_REAL_ORG, REAL_ORG_CASE_NAMES, generate_book
from sandbox.server import Sandbox, SandboxConfig
from sandbox.store import API_USER_ID, DEFAULT_OWNER_USER_ID, INBOUND_QUEUE_ID

REP = sf_id("005", 0)
FALSE = {"Sforce-Auto-Assign": "FALSE"}


def _owner_of(sf: Salesforce, record_id: str) -> Any:
    return sobject(sf, "Lead").get(record_id).get("OwnerId")


def _org(make_sandbox: Callable[..., Sandbox], **settings: Any) -> tuple[Sandbox, Salesforce]:
    sb = make_sandbox(small_seed(), **settings)
    return sb, salesforce_client(sb.url)


# ------------------------------------------------------------------------- ownership


@pytest.mark.parametrize(("mode", "default_owner"), [("user", DEFAULT_OWNER_USER_ID), ("queue", INBOUND_QUEUE_ID)])
def test_a_lead_created_without_owner_gets_the_default_owner_or_with_false_the_api_user(
    make_sandbox: Callable[..., Sandbox], mode: str, default_owner: str
) -> None:
    _, sf = _org(make_sandbox, sf_default_lead_owner=mode)

    assigned = sobject(sf, "Lead").create({"LastName": "A", "Company": "B"})
    opted_out = sobject(sf, "Lead").create({"LastName": "A", "Company": "B"}, headers=FALSE)
    chosen = sobject(sf, "Lead").create({"LastName": "A", "Company": "B", "OwnerId": REP}, headers=FALSE)
    collection = sf_collection(
        sf,
        "composite/sobjects/Lead/Sync_Key__c",
        "PATCH",
        {"records": [{"attributes": {"type": "Lead"}, "Sync_Key__c": "k", "LastName": "A", "Company": "B"}]},
        headers=FALSE,
    )

    assert _owner_of(sf, assigned["id"]) == default_owner
    assert _owner_of(sf, opted_out["id"]) == API_USER_ID
    assert _owner_of(sf, chosen["id"]) == REP
    assert _owner_of(sf, collection[0]["id"]) == API_USER_ID


def test_the_assignment_rule_wins_over_the_default_owner_unless_false(make_sandbox: Callable[..., Sandbox]) -> None:
    rule_queue = "00G8d000000RULEEA4"
    sb, sf = _org(make_sandbox, sf_default_lead_owner="user", assignment_rule_owner_id=rule_queue)
    sb.load({"salesforce": {"Group": [{"Id": rule_queue, "Name": "Rule", "DeveloperName": "Rule", "Type": "Queue"}]}})

    by_rule = sobject(sf, "Lead").create({"LastName": "A", "Company": "B", "OwnerId": REP})
    kept = sobject(sf, "Lead").create({"LastName": "A", "Company": "B", "OwnerId": REP}, headers=FALSE)
    sobject(sf, "Lead").update(kept["id"], {"Title": "CTO"})  # an update without FALSE: the rule applies again

    assert _owner_of(sf, by_rule["id"]) == rule_queue
    assert _owner_of(sf, kept["id"]) == rule_queue


def test_owner_cannot_be_emptied_and_queues_must_exist(make_sandbox: Callable[..., Sandbox]) -> None:
    _, sf = _org(make_sandbox, sf_default_lead_owner="user")
    lead = sobject(sf, "Lead").create({"LastName": "A", "Company": "B"})

    with pytest.raises(SalesforceMalformedRequest) as emptied:
        sobject(sf, "Lead").update(lead["id"], {"OwnerId": None})
    with pytest.raises(SalesforceMalformedRequest) as unknown_queue:
        sobject(sf, "Lead").create({"LastName": "A", "Company": "B", "OwnerId": "00G8d000000NOPEEA4"})
    queued = sobject(sf, "Lead").create({"LastName": "A", "Company": "B", "OwnerId": INBOUND_QUEUE_ID})

    assert sf_errors(emptied.value)[0] == {
        "message": "Required fields are missing: [OwnerId]",
        "errorCode": "REQUIRED_FIELD_MISSING",
        "fields": ["OwnerId"],
    }
    assert sf_errors(unknown_queue.value)[0]["errorCode"] == "INVALID_CROSS_REFERENCE_KEY"
    assert _owner_of(sf, queued["id"]) == INBOUND_QUEUE_ID


def test_queues_and_the_orgs_users_are_records(make_sandbox: Callable[..., Sandbox]) -> None:
    _, sf = _org(make_sandbox, sf_default_lead_owner="queue")

    queues = sf.query("SELECT Id, Name, DeveloperName FROM Group WHERE Type = 'Queue'")["records"]
    users = {u["Id"]: u for u in sf.query("SELECT Id, Name, IsActive FROM User")["records"]}

    assert [(q["Id"], q["Name"]) for q in queues] == [(INBOUND_QUEUE_ID, "Inbound Leads")]
    assert users[API_USER_ID]["Name"] == "Integration User" and users[API_USER_ID]["IsActive"]
    assert users[DEFAULT_OWNER_USER_ID]["IsActive"]


def test_seeded_and_simulated_inbound_leads_are_never_unowned(make_sandbox: Callable[..., Sandbox]) -> None:
    sb = make_sandbox(small_seed(), now=T0, sf_default_lead_owner="queue")

    sb.simulate(steps=2, random_seed=3)

    owners = {lead.get("OwnerId") for lead in sb.state()["salesforce"]["Lead"]}
    assert None not in owners and owners == {INBOUND_QUEUE_ID}


def test_the_legacy_shape_keeps_leads_unowned_and_accepts_any_queue(make_sandbox: Callable[..., Sandbox]) -> None:
    # Pinned to the legacy shape (real_org=False) because the legacy shape is what this test is about:
    # it stays available, behind the explicit switch, for a test that needs it.
    sandbox, sf = _org(make_sandbox, real_org=False)
    created = sobject(sf, "Lead").create({"LastName": "A", "Company": "B"})
    queued = sobject(sf, "Lead").create({"LastName": "A", "Company": "B", "OwnerId": "00G8d000000AnyQEA4"})

    assert _owner_of(sf, created["id"]) is None
    assert queued["success"] is True
    assert "Group" not in sandbox.state()["salesforce"]


# ------------------------------------------------------------ state and country picklists


def test_country_takes_integration_values_and_fills_its_code(make_sandbox: Callable[..., Sandbox]) -> None:
    _, sf = _org(make_sandbox, sf_state_country_picklists=True)

    by_name = sobject(sf, "Lead").create({"LastName": "A", "Company": "B", "Country": "Germany"})
    by_code = sobject(sf, "Lead").create({"LastName": "A", "Company": "B", "CountryCode": "us", "StateCode": "NY"})
    state_by_name = sobject(sf, "Lead").create(
        {"LastName": "A", "Company": "B", "CountryCode": "CA", "State": "Ontario"}
    )
    lead = sobject(sf, "Lead").get(by_code["id"])

    named = sobject(sf, "Lead").get(by_name["id"])
    assert (named["Country"], named["CountryCode"]) == ("Germany", "DE")
    assert (lead["Country"], lead["CountryCode"], lead["State"], lead["StateCode"]) == (
        "United States",
        "US",
        "New York",
        "NY",
    )
    assert sobject(sf, "Lead").get(state_by_name["id"])["StateCode"] == "ON"


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"Country": "US"}, "Country"),  # an ISO code is not an integration value
        ({"Country": "Deutschland"}, "Country"),
        ({"CountryCode": "ZZ"}, "CountryCode"),
        ({"Country": "Germany", "CountryCode": "FR"}, "Country"),
        ({"CountryCode": "US", "State": "Bavaria"}, "State"),
        ({"CountryCode": "US", "StateCode": "ON"}, "StateCode"),
    ],
)
def test_anything_else_is_a_field_integrity_exception(
    make_sandbox: Callable[..., Sandbox], fields: dict[str, Any], field: str
) -> None:
    _, sf = _org(make_sandbox, sf_state_country_picklists=True)

    with pytest.raises(SalesforceMalformedRequest) as caught:
        sobject(sf, "Lead").create({"LastName": "A", "Company": "B", **fields})

    assert sf_errors(caught.value)[0]["errorCode"] == "FIELD_INTEGRITY_EXCEPTION"
    assert sf_errors(caught.value)[0]["fields"] == [field]


def test_country_integrity_is_per_record_in_a_collection(make_sandbox: Callable[..., Sandbox]) -> None:
    _, sf = _org(make_sandbox, sf_state_country_picklists=True)
    records = [
        {"attributes": {"type": "Lead"}, "Sync_Key__c": key, "LastName": "A", "Company": "B", **fields}
        for key, fields in (("iso", {"Country": "GB"}), ("code", {"CountryCode": "GB"}))
    ]

    results = sf_collection(sf, "composite/sobjects/Lead/Sync_Key__c", "PATCH", {"records": records})

    assert results[0]["success"] is False and results[0]["errors"][0]["statusCode"] == "FIELD_INTEGRITY_EXCEPTION"
    assert results[1]["success"] is True


def test_seeded_leads_get_their_codes_with_the_picklists_on(make_sandbox: Callable[..., Sandbox]) -> None:
    seed = small_seed()
    seed["salesforce"]["Lead"][0]["Country"] = "Canada"
    seed["salesforce"]["Lead"][1]["CountryCode"] = "GB"
    sb = make_sandbox(seed, sf_state_country_picklists=True)

    leads = {lead["Id"]: lead for lead in sb.state()["salesforce"]["Lead"]}

    assert leads[sf_id("00Q", 0)]["CountryCode"] == "CA"
    assert leads[sf_id("00Q", 1)]["Country"] == "United Kingdom"


# ---------------------------------------------------------------------------- real_org


def test_real_org_is_the_default_turns_every_switch_on_and_each_can_be_set_alone() -> None:
    real = SandboxConfig()
    mixed = SandboxConfig(sf_state_country_picklists=False, vitally_playbooks="in_put")
    legacy = SandboxConfig(real_org=False)

    # The real services are the spec: by default the sandbox is a real org and workspace.
    assert real.real_org is True and real == SandboxConfig(real_org=True)
    assert (real.enforce_schema, real.default_lead_owner, real.state_country_picklists) == (True, "user", True)
    assert (real.playbooks_delayed, real.segment_links) == (True, True)
    # The legacy shape, only behind real_org=False: real where it never differed, invented elsewhere.
    assert (legacy.enforce_schema, legacy.default_lead_owner, legacy.state_country_picklists) == (True, "none", False)
    assert (legacy.playbooks_delayed, legacy.segment_links) == (False, True)
    assert (mixed.state_country_picklists, mixed.playbooks_delayed, mixed.enforce_schema) == (False, False, True)
    assert SandboxConfig(sf_enforce_schema=False, real_org=True).enforce_schema is False
    assert real.to_json()["effective"] == {
        "sf_enforce_schema": True,
        "sf_default_lead_owner": "user",
        "sf_state_country_picklists": True,
        "vitally_playbooks": "delayed",
        "vitally_segment_links": True,
    }


def test_real_org_over_the_config_control(sandbox: Sandbox) -> None:
    session = plain_http_session()

    shown = session.get(f"{sandbox.url}/_sandbox/config").json()
    legacy = session.post(f"{sandbox.url}/_sandbox/config", json={"real_org": False})
    unowned = sobject(salesforce_client(sandbox.url), "Lead").create({"LastName": "A", "Company": "B"})
    answer = session.post(f"{sandbox.url}/_sandbox/config", json={"real_org": True})
    created = sobject(salesforce_client(sandbox.url), "Lead").create({"LastName": "A", "Company": "B"})

    assert shown["real_org"] is True and shown["effective"]["sf_default_lead_owner"] == "user"
    assert legacy.json()["effective"]["sf_default_lead_owner"] == "none"
    assert _owner_of(salesforce_client(sandbox.url), unowned["id"]) is None
    assert answer.json()["effective"]["sf_default_lead_owner"] == "user"
    assert sobject(salesforce_client(sandbox.url), "Lead").get(created["id"])["OwnerId"] == DEFAULT_OWNER_USER_ID
    assert session.post(f"{sandbox.url}/_sandbox/config", json={"sf_default_queue_id": "005x"}).status_code == 400


def test_a_real_org_book_in_a_real_org_sandbox(make_sandbox: Callable[..., Sandbox]) -> None:
    book = generate_book(MIN_FULL_COVERAGE_REAL_ORG, seed=5, now=T0, real_org=True)
    sb = make_sandbox(book, now=T0, real_org=True)
    sf = salesforce_client(sb.url)
    vitally = plain_http_session()

    leads = sf.query("SELECT Id, OwnerId, Country, CountryCode FROM Lead")["records"]
    listed = vitally.get(f"{sb.url}/resources/accounts", params={"limit": 100}, auth=("k", "")).json()
    every = vitally.get(f"{sb.url}/resources/accounts", params={"status": "activeOrChurned"}, auth=("k", ""))

    assert all(lead["OwnerId"] for lead in leads)
    assert {lead["OwnerId"][:3] for lead in leads} == {"005", "00G"}
    assert all(lead["CountryCode"] for lead in leads if lead["Country"] in ("Germany", "United States"))
    churned = set(book["_cases"]["churned"])
    assert churned and not churned & {a["id"] for a in listed["results"]}
    assert every.status_code == 200
    cases = {c for names in [*book["_cases"]["accounts"].values(), *book["_cases"]["leads"].values()] for c in names}
    assert set(REAL_ORG_CASE_NAMES) <= cases


@pytest.mark.slow
def test_sandbox_command_serves_a_real_org_by_default() -> None:
    command = [sys.executable, "-m", "sync", "sandbox", "--generate", "120", "--port", "0"]  # real by default
    with child_process(command) as process:
        assert process.stdout is not None
        url = process.stdout.readline().split()[3]
        config = plain_http_session(timeout=5).get(f"{url}/_sandbox/config").json()
        owners = salesforce_client(url).query("SELECT COUNT() FROM Lead WHERE OwnerId = null")["totalSize"]
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=10) == 0

    assert config["real_org"] is True and config["effective"]["sf_state_country_picklists"] is True
    assert owners == 0


def test_simulated_leads_in_a_real_org_use_integration_countries(make_sandbox: Callable[..., Sandbox]) -> None:
    sb = make_sandbox(None, now=T0, real_org=True)

    sb.simulate(steps=3, random_seed=1)

    leads = sb.state()["salesforce"]["Lead"]
    assert leads and all(lead["OwnerId"] == DEFAULT_OWNER_USER_ID for lead in leads)
    assert all(len(lead["Country"]) > 2 for lead in leads if lead.get("Country"))


# ------------------------------------------------------------------ hostile seeds

_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
    max_leaves=6,
)


@settings(max_examples=60, deadline=None, database=None, derandomize=True)
@given(
    account=st.dictionaries(
        st.sampled_from(["segments", "traits", "keyRoles", "accountOwnerId", "churnedAt", "csmId"]), _json
    ),
    lead=st.dictionaries(st.sampled_from(["Country", "CountryCode", "State", "StateCode", "OwnerId"]), _json),
)
def test_a_hostile_seed_loads_into_a_real_org(account: dict[str, Any], lead: dict[str, Any]) -> None:
    seed = {
        "vitally": {"accounts": [{"id": "acc_x", "name": "X", "updatedAt": "2026-11-01T00:00:00Z", **account}]},
        "salesforce": {"Lead": [{"LastName": "L", "Company": "C", **lead}]},
    }

    with Sandbox(seed, config=SandboxConfig(real_org=True), now=T0) as sb:
        state = sb.state()
        sb.set_segment("acc_x", "Nurture")
        sb.run_playbooks(everything=True)

    assert [a["id"] for a in state["vitally"]["accounts"]] == ["acc_x"]
    assert len(state["salesforce"]["Lead"]) == 1
