"""Vitally accounts as a real workspace holds them (issue #14): owners in Vitally's own owner
attributes (`accountOwnerId`, `csmId`, `accountExecutiveId`, V-accounts), Vitally's default key
role labels ("Customer Success Manager", "Account Executive", V-keyroles), and churned accounts
(`churnedAt`; read with `status=activeOrChurned`), which leave every book."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import pytest
from conftest import real_fixture

from core.errors import ConfigError, RecordError
from core.model import Account
from core.records import parse_account
from rules import evaluate_account
from rules.context import EMPTY
from rules.guards import may_be_routed, routing_guard
from rules.lifecycle import STAGE
from rules.policy import Policy
from rules.round_robin import Member, Pool
from sandbox import Sandbox, generate_book
from state import StateDB
from sync.app import make_salesforce, make_vitally
from sync.config import example_against, parse_config
from sync.cycle import run_cycle

NOW = datetime(2026, 2, 27, 12, 0, tzinfo=UTC)
POLICY = Policy()


def _owned_raw() -> dict[str, Any]:
    """vitally_account_owned.json (V-accounts, AB-vitally) with no owner of any kind."""
    raw: dict[str, Any] = real_fixture("vitally_account_owned.json")
    return {**raw, "keyRoles": [], "accountOwnerId": None, "csmId": None, "accountExecutiveId": None}


# -- parsing -------------------------------------------------------------------------------------


def test_owner_attributes_and_churn_are_read() -> None:
    raw = real_fixture("vitally_accounts_page_activeorchurned_last.json")["results"][0]
    account = parse_account(raw)
    assert account.owner_ids == {"accountOwnerId": "00000000-0000-4000-8000-0000000ad001"}
    assert account.churned_at == datetime(2026, 1, 31, tzinfo=UTC) and account.churned
    assert account.roles == {"TAM": "00000000-0000-4000-8000-0000000ad001"}
    assert account.role_source("TAM") == "accountOwnerId"


def test_a_key_role_wins_over_an_owner_attribute_for_the_same_role() -> None:
    raw = real_fixture("vitally_account_owned.json")
    account = parse_account({**raw, "csmId": "someone-else"})
    assert account.key_roles["Customer Success Manager"] == "00000000-0000-4000-8000-0000000ad002"
    assert account.roles["CSM"] == "00000000-0000-4000-8000-0000000ad002"
    assert account.role_source("CSM") == "key role"
    assert account.role_emails["CSM"] == "casey@vendor.example"


def test_key_role_labels_and_owner_attributes_follow_the_configuration() -> None:
    raw = {
        **_owned_raw(),
        "accountExecutiveId": "ae-1",
        "keyRoles": [{"keyRole": {"label": "Technical Account Manager"}, "vitallyUser": {"id": "u-7"}}],
    }
    plain = parse_account(raw)
    assert plain.roles == {"Technical Account Manager": "u-7", "Account Executive": "ae-1"}
    configured = parse_account(
        raw, key_role_labels={"Technical Account Manager": "TAM"}, owner_fields={"accountExecutiveId": ""}
    )
    assert configured.roles == {"TAM": "u-7"}
    assert configured.owner_ids == {}


@pytest.mark.parametrize(
    ("field", "value"),
    [("churnedAt", "last week"), ("csmId", 42), ("accountOwnerId", ["u"])],
)
def test_a_malformed_owner_attribute_or_churn_date_names_its_field(field: str, value: object) -> None:
    with pytest.raises(RecordError) as caught:
        parse_account({**_owned_raw(), field: value})
    assert caught.value.field == field


def test_an_account_built_by_hand_reads_its_key_roles_as_roles() -> None:
    account = Account(id="a", name="A", updated_at=NOW, key_roles={"TAM": "t"}, key_role_emails={"TAM": "t@x"})
    assert account.roles == {"TAM": "t"} and account.role_emails == {"TAM": "t@x"}
    assert account.role_source("TAM") == "key role" and not account.churned


# -- the rules -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("field", "reason"),
    [
        ("accountOwnerId", "already owned (TAM in accountOwnerId)"),
        ("csmId", "already owned (CSM in csmId)"),
        ("accountExecutiveId", "already owned (Account Executive in accountExecutiveId)"),
    ],
)
def test_an_account_owned_through_an_owner_attribute_says_so(field: str, reason: str) -> None:
    account = parse_account({**_owned_raw(), field: "00000000-0000-4000-8000-0000000ad009"})
    assert not may_be_routed(account, POLICY)
    assert routing_guard(account, EMPTY, POLICY, NOW) == reason


def test_vitallys_default_csm_label_owns_the_account_and_reads_as_the_csm() -> None:
    raw = real_fixture("vitally_account_owned.json")
    csm_only = [r for r in raw["keyRoles"] if r["keyRole"]["label"] == "Customer Success Manager"]
    account = parse_account({**_owned_raw(), "keyRoles": csm_only})
    assert routing_guard(account, EMPTY, POLICY, NOW) == "already owned (CSM key role)"
    decision = STAGE.decide(account, EMPTY, POLICY, NOW)
    assert decision.fired and decision.traits["lifecycle_stage"] == "Customer success manager"


def test_an_account_whose_csm_is_only_in_csm_id_is_at_the_csm_stage() -> None:
    account = parse_account({**_owned_raw(), "csmId": "u-csm"})
    decision = STAGE.decide(account, EMPTY, POLICY, NOW)
    assert decision.reason.startswith("CSM in csmId (u-csm)")
    assert decision.traits["lifecycle_stage"] == "Customer success manager"


def test_a_churned_account_is_guarded_first_and_no_rule_fires_on_it() -> None:
    raw = real_fixture("vitally_accounts_page_activeorchurned_last.json")["results"][0]
    account = parse_account({**raw, "accountOwnerId": None})
    assert not may_be_routed(account, POLICY)
    assert routing_guard(account, EMPTY, POLICY, NOW) == "churned on 2026-01-31"
    decisions = evaluate_account(account, EMPTY, POLICY, NOW)
    assert [d.fired for d in decisions] == [False]
    assert "churned on 2026-01-31" in decisions[0].reason
    alive = evaluate_account(replace(account, churned_at=None), EMPTY, POLICY, NOW)
    assert any(d.fired for d in alive)  # the same account, not churned, is decided on


def test_the_config_refuses_an_owner_attribute_vitally_does_not_have() -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config({"vitally": {"owner_fields": {"ownerId": "TAM"}}})
    assert any(p.startswith("vitally.owner_fields.ownerId: not an owner attribute") for p in caught.value.problems)


def test_the_config_maps_key_role_labels_and_keeps_the_defaults() -> None:
    config = parse_config({"vitally": {"key_roles": {"Technical Account Manager": "TAM"}}})
    assert config.vitally.key_roles == {"Customer Success Manager": "CSM", "Technical Account Manager": "TAM"}


# -- a cycle -------------------------------------------------------------------------------------


def _churned_case(book: dict[str, Any]) -> dict[str, Any]:
    cases = book["_cases"]["accounts"]
    return next(a for a in book["vitally"]["accounts"] if "lifecycle.churned" in cases.get(a["id"], []))


def test_a_churned_account_gets_no_write_even_for_a_segment_crm_sync_once_managed() -> None:
    book = generate_book(200, seed=4, now=NOW, real_org=True)
    churned_ids = set(book["_cases"]["churned"])
    case = _churned_case(book)
    # crm-sync put it in Product-led lead before it churned: the trait still says so.
    case["traits"]["segment_product_led_lead"] = True
    with Sandbox(book, now=NOW) as sandbox:
        config = example_against(sandbox.url)
        report = run_cycle(
            config, StateDB.memory(), make_vitally(config), make_salesforce(config), clock=lambda: NOW, now=NOW
        )
        plan = list(report.plan)
    assert churned_ids and report.counts["accounts_churned"] == len(churned_ids)
    assert plan and not [w for w in plan if w.account in churned_ids]


def _tam_pool(capacity: int) -> Pool:
    member = Member("005000000000003AAA", "Lena Schmidt", capacity=capacity, email="lena@corp.example")
    return Pool("TAM", "EU", (member,), "00G000000000002AAA")


@pytest.mark.parametrize("churned", [True, False])
def test_a_churned_account_stops_counting_toward_a_tams_capacity(churned: bool) -> None:
    book = generate_book(200, seed=4, now=NOW, real_org=True)
    routed = _churned_case(book)
    routed.update(churnedAt=None, mrr=812.0)  # alive again, in the MRR band: a lead for the TAMs of the EU
    managed = next(a for a in book["vitally"]["accounts"] if a["id"] != routed["id"] and not a["keyRoles"])
    managed["segments"] = [{"id": "seg_am", "name": "AM Managed"}]
    managed["keyRoles"] = [{"keyRole": {"label": "TAM"}, "vitallyUser": {"id": "v-lena", "email": "lena@corp.example"}}]
    managed["churnedAt"] = "2026-01-05T00:00:00.000Z" if churned else None
    with Sandbox(book, now=NOW) as sandbox:
        config = example_against(sandbox.url)
        config = replace(config, pools={**config.pools, ("TAM", "EU"): _tam_pool(capacity=1)})
        report = run_cycle(
            config, StateDB.memory(), make_vitally(config), make_salesforce(config), clock=lambda: NOW, now=NOW
        )
    (lead,) = [w for w in report.plan if w.op == "upsert_lead" and w.account == routed["id"]]
    # Lena manages one account; a churned one is not hers to count any more.
    assert lead.fields.get("OwnerId") == ("005000000000003AAA" if churned else "00G000000000002AAA")


# -- the mirror and Vitally's Playbooks ------------------------------------------------------------


def _segments(accounts: list[dict[str, Any]]) -> dict[str, list[str]]:
    return {a["id"]: sorted(s["name"] for s in a.get("segments") or []) for a in accounts}


def _mirror_segments(state: StateDB) -> dict[str, list[str]]:
    rows = [json.loads(raw) for _, raw, error, _ in state.iter_accounts() if not error]
    return _segments(rows)


@pytest.mark.parametrize("playbooks", ["in_put", "delayed"])
def test_the_mirror_takes_segments_from_reads_never_from_a_puts_answer(playbooks: str) -> None:
    """A segment follows its trait when Vitally's Playbook runs (about hourly: docs.vitally.io,
    Playbooks), so a PUT's answer shows segments as they were; the sandbox can also move them
    inside the PUT (`in_put`), which a real workspace does not. Either way the mirror holds the
    segments its last read saw, and matches Vitally once the Playbooks ran and the next cycle read."""
    book = generate_book(200, seed=4, now=NOW)
    with Sandbox(book, now=NOW) as sandbox:
        sandbox.configure(vitally_playbooks=playbooks)
        config = example_against(sandbox.url)
        state = StateDB.memory()
        before = _segments(sandbox.state()["vitally"]["accounts"])
        run_cycle(config, state, make_vitally(config), make_salesforce(config), clock=lambda: NOW, now=NOW)
        after_put = _segments(sandbox.state()["vitally"]["accounts"])
        moved = {a for a in after_put if after_put[a] != before[a]}
        assert (playbooks == "in_put") == bool(moved)  # the sandbox moved segments inside the PUT, or not yet
        # Written accounts keep the segments the read saw, whatever the PUT answered.
        assert _mirror_segments(state) == {a: before[a] for a in _mirror_segments(state)}
        sandbox.run_playbooks(everything=True)
        run_cycle(config, state, make_vitally(config), make_salesforce(config), clock=lambda: NOW, now=NOW)
        vitally = _segments(sandbox.state()["vitally"]["accounts"])
    assert vitally != before  # the Playbooks moved segments
    mirrored = _mirror_segments(state)
    assert mirrored == {a: vitally[a] for a in mirrored}
