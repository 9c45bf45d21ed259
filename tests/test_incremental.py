"""Incremental decisions (sync/incremental.py, README "Incremental decisions"): a cycle re-judges
only the accounts whose raw JSON, Salesforce facts, rules or clock window changed since they last
planned nothing, and plans exactly what judging every account plans."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import tempfile
from collections import Counter
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
import requests
from conftest import salesforce_client, sobject
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from simple_salesforce.exceptions import SalesforceMalformedRequest
from support import acted, pool_users, vitally_account

from core.errors import RecordError
from core.model import Account, Lead
from core.triage import Submission, Triage
from rules import evaluate_account
from rules.clock import watching
from rules.context import AccountContext
from rules.demo import awaits_triage, classifier_for
from rules.expressions import CustomTrigger, compile_trigger
from sandbox import Sandbox, generate_book
from state import PlannedWrite, StateDB
from sync.accounts import parse_mirrored
from sync.app import make_salesforce, make_vitally
from sync.config import Config, example_against
from sync.cycle import run_cycle
from sync.facts import SalesforceFacts
from sync.followups import Outlets
from sync.incremental import clock_window, rules_fingerprint
from sync.verdicts import Verdicts, triage_version
from sync.vocabulary import CycleReport

NOW = datetime(2026, 11, 22, 9, 30, tzinfo=UTC)
ROOT = Path(__file__).resolve().parent.parent

# Compares `days_since_created` with a number: its outcome changes only when the count becomes 400.
AGE_TRIGGER = CustomTrigger(
    id="custom.young_big", team="TAM", when="days_since_created < 400 and mrr > 500", reason="young and big"
)
# Uses it otherwise: its outcome may change with every day, at `created_at`'s time of day.
DAILY_TRIGGER = CustomTrigger(
    id="custom.weekly", team="TAM", when="days_since_created % 7 < 3 and mrr > 500", reason="in the week's first days"
)
# Reads the clock in `when` by whole months (`paying_months`), and the time of day only in its text.
TEXT_AGE_TRIGGER = CustomTrigger(
    id="custom.paying_big",
    team="TAM",
    when="paying_months >= 3 and mrr > 500",
    reason="paying for {paying_months} months, created {days_since_created} days ago",
)
# `paying_months` otherwise than compared with a number: every monthly anniversary may change it.
MONTHLY_TRIGGER = CustomTrigger(
    id="custom.even_months", team="TAM", when="paying_months % 2 == 0 and mrr > 500", reason="even months"
)
TRIGGERS = {
    "none": (),
    "when": (AGE_TRIGGER,),
    "daily": (DAILY_TRIGGER,),
    "text": (TEXT_AGE_TRIGGER,),
    "monthly": (MONTHLY_TRIGGER,),
}


def with_triggers(config: Config, which: str) -> Config:
    """`config` with the custom triggers of `TRIGGERS[which]`: none, one comparing
    `days_since_created` with a number, one using it in arithmetic, one reading it only in its reason
    template (and `paying_months` compared with a number in `when`), one using `paying_months` in
    arithmetic."""
    return replace(config, custom_triggers=tuple(compile_trigger(t, policy=config.policy) for t in TRIGGERS[which]))


def _cycle(
    config: Config, state: StateDB, sandbox: Sandbox, *, dry_run: bool = False, full: bool = False
) -> CycleReport:
    # No LLM is asked here: with the `llm` classifier, the tests give the verdicts themselves.
    outlets = Outlets() if config.policy.demo.classifier == "llm" else None
    return run_cycle(
        config,
        state,
        make_vitally(config),
        make_salesforce(config),
        clock=sandbox.now,
        dry_run=dry_run,
        full=full,
        outlets=outlets,
    )


def _dry(config: Config, path: Path, sandbox: Sandbox, *, full: bool) -> tuple[list[Any], list[Any], CycleReport]:
    """A dry run on a private copy of the state: its plan and its conflicts."""
    copy = StateDB.snapshot(path)
    try:
        report = _cycle(config, copy, sandbox, dry_run=True, full=full)
        return list(report.plan), list(report.conflicts), report
    finally:
        copy.close()


@pytest.fixture
def book() -> Iterator[tuple[Config, Sandbox, Path]]:
    with Sandbox(generate_book(120, seed=3, now=NOW), now=NOW) as sandbox, tempfile.TemporaryDirectory() as tmp:
        yield example_against(sandbox.url), sandbox, Path(tmp) / "state.db"


def _settled(config: Config, sandbox: Sandbox, path: Path) -> StateDB:
    """The state after a cold cycle and the cycles that read its writes back."""
    state = StateDB.open(path)
    for _ in range(3):
        _cycle(config, state, sandbox)
    return state


# -- what a cycle skips ---------------------------------------------------------------------------


def test_an_idle_cycle_skips_the_accounts_that_planned_nothing_and_plans_what_a_full_one_does(
    book: tuple[Config, Sandbox, Path],
) -> None:
    config, sandbox, path = book
    state = _settled(config, sandbox, path)
    incremental, conflicts, report = _dry(config, path, sandbox, full=False)
    full, full_conflicts, full_report = _dry(config, path, sandbox, full=True)
    assert incremental == full and conflicts == full_conflicts
    assert report.counts["accounts_not_judged"] > 60  # most of the 120 planned nothing
    assert full_report.counts["accounts_not_judged"] == 0
    assert report.counts["leads_not_judged"] > 0 and full_report.counts["leads_not_judged"] == 0
    assert report.counts["leads_evaluated"] + report.counts["leads_not_judged"] == full_report.counts["leads_evaluated"]
    assert (
        report.counts["accounts_evaluated"] + report.counts["accounts_not_judged"]
        == full_report.counts["accounts_evaluated"]
    )
    state.close()


def test_a_changed_account_is_judged_again_and_so_is_every_account_under_other_rules(
    book: tuple[Config, Sandbox, Path],
) -> None:
    config, sandbox, path = book
    state = _settled(config, sandbox, path)
    skipped = _cycle(config, state, sandbox).counts["accounts_not_judged"]
    assert skipped > 0
    changed = sandbox.simulate(1, random_seed=5)["mrr_changes"]
    after = _cycle(config, state, sandbox).counts
    assert after["accounts_read"] >= changed
    assert after["accounts_not_judged"] <= skipped - 1  # the accounts read again were judged again
    other = replace(config, policy=replace(config.policy, tier1_countries=config.policy.tier1_countries[:1]))
    assert rules_fingerprint(other, NOW) != rules_fingerprint(config, NOW)
    assert _cycle(other, state, sandbox).counts.get("accounts_not_judged", 0) == 0
    state.close()


@pytest.mark.parametrize("triggers", ["none", "text", "when", "daily"])
def test_the_next_day_judges_again_only_the_accounts_a_date_may_change(
    book: tuple[Config, Sandbox, Path], triggers: str
) -> None:
    """A judgement holds until the first day the clock alone may change it (`rules.clock`), not
    until the next midnight: the first cycle of a day judges the accounts whose day came (a cool-off
    ends, a routing reason counts one day more) and plans what judging every account plans. A
    custom trigger whose `when` uses `days_since_created` otherwise than compared with a number
    ends every window with a `created_at` within a day; one comparing it with 400 ends only those
    of the accounts that reach 400 days, and one that reads it only in its reason's text ends none."""
    config, sandbox, path = book
    config = with_triggers(config, triggers)
    state = _settled(config, sandbox, path)
    sandbox.set_clock(advance_seconds=3_600)
    holding = _cycle(config, state, sandbox).counts["accounts_not_judged"]
    assert holding > 60
    ends = [row[0] for row in state.db.conn.execute("SELECT valid_until FROM account_inputs")]
    midnight = datetime.combine(NOW.date() + timedelta(days=1), datetime.min.time(), tzinfo=UTC)
    due: dict[datetime, int] = {}
    for moment in (midnight, midnight + timedelta(days=400), midnight + timedelta(days=3 * 365)):
        due[moment] = sum(1 for end in ends if end <= moment.timestamp())
        sandbox.set_clock(moment)
        incremental, conflicts, report = _dry(config, path, sandbox, full=False)
        full, full_conflicts, _ = _dry(config, path, sandbox, full=True)
        assert incremental == full and conflicts == full_conflicts, moment
        assert report.counts["accounts_not_judged"] == len(ends) - due[moment], moment
    dated = state.db.conn.execute(
        "SELECT count(*) FROM account_inputs a JOIN accounts m ON m.id = a.id "
        "WHERE json_extract(m.raw, '$.createdAt') IS NOT NULL"
    ).fetchone()[0]
    if triggers == "daily":  # `days_since_created` grows within a day for every account that has a created_at
        assert 0 < dated <= sum(1 for end in ends if end <= (midnight + timedelta(days=1)).timestamp())
    else:  # most accounts' windows hold past the next midnight; some end within 400 days (a date of theirs says so)
        assert due[midnight] < dated // 2 and due[midnight + timedelta(days=400)] > due[midnight]
    state.close()


def test_a_write_to_the_mirror_forgets_the_leads_judgement_and_a_pending_write_keeps_it_from_holding() -> None:
    state = StateDB.memory()
    lead = {"object": "Lead", "id": "00Q1", "modstamp": "x", "raw": "{}", "error": None}
    state.upsert_sf([lead, {**lead, "id": "00Q2"}, {**lead, "object": "Account", "id": "001"}])
    state.save_lead_inputs([(i, "acme", "c", "r", 0.0, 10.0) for i in ("00Q1", "00Q2")])
    assert set(state.leads_judged("r", 5.0)) == {"00Q1", "00Q2"}
    assert state.leads_judged("other rules", 5.0) == {} and state.leads_judged("r", 10.0) == {}
    state.upsert_sf([{**lead, "modstamp": "y"}, {**lead, "object": "Account", "id": "001", "modstamp": "y"}])
    assert set(state.leads_judged("r", 5.0)) == {"00Q2"}  # only the lead's own row forgets it
    score = {"Lead_Score__c": 40}
    write = PlannedWrite("salesforce", "update_lead", "00Q2", score, "scoring.lead", "why", score)
    state.enqueue([write], 1, "2026-11-22T09:30:00Z")
    assert state.leads_judged("r", 5.0) == {}


def test_an_unchanged_demo_request_is_classified_once(book: tuple[Config, Sandbox, Path]) -> None:
    """The offline triage's verdicts are kept in the state (`sync.verdicts`): a cycle that judges
    every lead again (`--full`) classifies no submission it classified before."""
    config, sandbox, path = book
    state = StateDB.open(path)
    _cycle(config, state, sandbox)
    demo = config.policy.demo
    version = triage_version(demo)
    kept = state.triage_verdicts(version)
    waiting = _open_demo_requests(config, state)
    assert waiting and {Submission.of_lead(lead).digest() for lead in waiting} <= set(kept)
    verdicts = Verdicts.of(state, demo)
    for lead in waiting:
        assert verdicts.verdict(lead).triage == classifier_for(demo).classify(Submission.of_lead(lead))
    assert verdicts.classified == 0
    changed = replace(demo, spam_keywords=(*demo.spam_keywords, "unheard-of"))
    assert triage_version(changed) != version and Verdicts.of(state, changed).verdict(waiting[0]) is not None
    assert _cycle(config, state, sandbox, full=True).counts["leads_not_judged"] == 0
    assert state.triage_verdicts(version) == kept
    state.close()


def test_a_write_to_the_mirror_forgets_the_accounts_judgement() -> None:
    state = StateDB.memory()
    state.upsert_accounts([{"id": "a1", "updated_at": "x", "raw": "{}"}])
    state.save_account_inputs([("a1", "", "r", 0.0, 10.0, None)])
    assert list(state.accounts_to_judge("r", 5.0, [])) == []
    assert state.accounts_holding("r", 5.0, []) == (1, Counter())
    assert [row[:2] for row in state.accounts_to_judge("r", 5.0, ["a1"])] == [("a1", "{}")]  # its facts changed
    state.upsert_accounts([{"id": "a1", "updated_at": "y", "raw": "{}"}])
    assert [row[:2] for row in state.accounts_to_judge("r", 5.0, [])] == [("a1", "{}")]
    assert state.accounts_holding("r", 5.0, []) == (0, Counter())


# -- the property: an incremental cycle plans what a full one plans -------------------------------

BIG_DOMAINS = ("bigcorp.com", "WWW.BigCorp.com", "bigcorp.io")

_STEP = st.one_of(
    st.tuples(st.just("simulate"), st.integers(0, 1_000)),
    st.tuples(st.just("segment"), st.integers(0, 119), st.sampled_from(["Leads", "Churned", "Expansion"])),
    # Clock moves within a day, past a midnight, and past the months a cool-off, a hold, a BDR's
    # window or a nurture lasts (a judgement now holds until the day a date of it says: `rules.clock`).
    st.tuples(
        st.just("clock"),
        st.sampled_from(
            [60, 3_600, 8 * 3_600, 20 * 3_600, 86_400, 3 * 86_400, 40 * 86_400, 130 * 86_400, 400 * 86_400]
        ),
    ),
    st.tuples(st.just("lead"), st.integers(0, 40), st.sampled_from(["Disqualified", "Working - Contacted"])),
    # A person edits a lead: its form text (the triage's input), its company (whose disqualification
    # the lead rules read) or its source (the routing triggers').
    st.tuples(
        st.just("lead_field"),
        st.integers(0, 40),
        st.sampled_from(
            [
                ("Form_Text__c", "Our dashboard shows an error since the upgrade, please help"),
                ("Form_Text__c", "We are 400 people and want a demo of the enterprise plan"),
                ("Company", None),  # the company of the next lead in id order
                ("LeadSource", "Demo request"),
            ]
        ),
    ),
    # The LLM answers about an open demo request (`sync.triage` between two cycles): the lead's
    # record does not change, its context does.
    st.tuples(st.just("verdict"), st.integers(0, 40), st.sampled_from(["sales", "support", "spam"])),
    # A person moves an opportunity on, or points a Salesforce Account at another Vitally account
    # (its opportunities move with it): facts joined through two records.
    st.tuples(
        st.just("opportunity"), st.integers(0, 40), st.sampled_from(["Closed Won", "Closed Lost", "Prospecting"])
    ),
    st.tuples(st.just("sf_account"), st.integers(0, 40), st.integers(0, 79)),
    # An org of a 20,000-employee company signs up (created some days before the services' clock) on
    # one of a few domains of one company, spelt differently; a person gives an account one of them.
    # Big Fish reads which org of the company signed up first: another account's record
    # (`sync.signups`), which a change to that account alone must bring to the others' judgements.
    st.tuples(st.just("big_signup"), st.integers(0, len(BIG_DOMAINS) - 1), st.integers(0, 20)),
    st.tuples(st.just("domain"), st.integers(0, 200), st.integers(0, len(BIG_DOMAINS) - 1)),
    # A person moves an account's headquarters and users to another country: its region, which
    # pool its owners and specialist are drawn from (and whether one serves it).
    st.tuples(st.just("country"), st.integers(0, 200), st.sampled_from(["US", "DE", "SG", "BR"])),
)


def _open_demo_requests(config: Config, state: StateDB) -> list[Lead]:
    return sorted(
        (lead for lead, _ in SalesforceFacts(state).iter_leads() if awaits_triage(lead, config.policy)),
        key=lambda lead: lead.id,
    )


def _apply(
    sandbox: Sandbox,
    step: tuple[Any, ...],
    accounts: list[str],
    leads: list[str],
    config: Config,
    state: StateDB,
    salesforce: dict[str, list[str]] | None = None,
) -> None:
    kind = step[0]
    others = salesforce or {}
    if kind in ("opportunity", "sf_account") and others.get(kind):
        ids = others[kind]
        sobject_name, fields = (
            ("Opportunity", {"StageName": step[2]})
            if kind == "opportunity"
            else ("Account", {"Vitally_Account_Id__c": accounts[step[2] % len(accounts)]})
        )
        with contextlib.suppress(SalesforceMalformedRequest):
            sobject(salesforce_client(sandbox.url), sobject_name).update(ids[step[1] % len(ids)], fields)
        return
    if kind == "lead_field" and leads:
        field, value = step[2]
        lead = leads[step[1] % len(leads)]
        if field == "Company":
            other = sobject(salesforce_client(sandbox.url), "Lead").get(leads[(step[1] + 1) % len(leads)])
            value = other.get("Company") or "Acme"
        with contextlib.suppress(SalesforceMalformedRequest):  # a converted lead cannot be changed
            sobject(salesforce_client(sandbox.url), "Lead").update(lead, {field: value})
        return
    if kind == "verdict":
        waiting = _open_demo_requests(config, state)
        if waiting:
            lead = waiting[step[1] % len(waiting)]
            digest = Submission.of_lead(lead).digest()
            with state.atomic():
                state.triage_asked(lead.id, digest, "2026-11-22T09:30:00Z")
                state.triage_answered(lead.id, digest, Triage(step[2], 0.9, "the LLM says so"), "2026-11-22T09:30:01Z")
        return
    if kind == "big_signup":
        index = 9_000 + len(accounts)
        stamp = "%Y-%m-%dT%H:%M:%S.000Z"
        traits = {
            "country": "US",
            "users_by_country": {"US": 3},
            "domain": BIG_DOMAINS[step[1]],
            "employee_count": 20_000,
        }
        created = (sandbox.now() - timedelta(days=step[2])).strftime(stamp)
        account = vitally_account(index, createdAt=created, updatedAt=sandbox.now().strftime(stamp), traits=traits)
        sandbox.load({"vitally": {"accounts": [account]}})
        accounts.append(account["id"])
        return
    if kind in ("domain", "country"):
        account_id = accounts[step[1] % len(accounts)]
        traits = (
            {"domain": BIG_DOMAINS[step[2]]}
            if kind == "domain"
            else {"country": step[2], "users_by_country": {step[2]: 5}}
        )
        requests.put(  # a person's edit through Vitally's API (refused for a malformed account: no matter)
            f"{sandbox.url}/resources/accounts/{account_id}", json={"traits": traits}, auth=("a-person", ""), timeout=10
        )
        return
    if kind == "simulate":
        sandbox.simulate(1, random_seed=step[1])
    elif kind == "segment":
        account = accounts[step[1] % len(accounts)]
        held = next(a for a in sandbox.state()["vitally"]["accounts"] if a.get("id") == account)
        sandbox.set_segment(account, step[2], present=step[2] not in str(held.get("segments")))
    elif kind == "clock":
        sandbox.set_clock(advance_seconds=step[1])
    elif kind == "lead" and leads:
        with contextlib.suppress(SalesforceMalformedRequest):  # a converted lead cannot be changed
            sobject(salesforce_client(sandbox.url), "Lead").update(leads[step[1] % len(leads)], {"Status": step[2]})


@pytest.mark.slow  # Hypothesis over whole cycles: ~30 s
@settings(
    max_examples=12,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(
    seed=st.integers(0, 10_000),
    steps=st.lists(_STEP, min_size=1, max_size=4),
    triggers=st.sampled_from(sorted(TRIGGERS)),
    llm=st.booleans(),
    us_pools_only=st.booleans(),
)
def test_incremental_cycles_plan_exactly_what_full_ones_plan(
    seed: int, steps: list[tuple[Any, ...]], triggers: str, llm: bool, us_pools_only: bool
) -> None:
    """Over random books, changes to accounts, leads, opportunities and the Salesforce Accounts they
    hang from, the signups of a large company's orgs and a person moving accounts between its
    domains, LLM verdicts and clock moves, a cycle that
    skips the accounts and leads whose judgements hold plans exactly what judging everything plans.
    `us_pools_only`: the TAE and Onboarding pools serve the US only (as the TAM pools serve three
    regions), so that inbound leads, new business and onboarding accounts elsewhere get no owner
    and no specialist: judgements that hold while they wait for nothing a cycle could bring."""
    seeded = generate_book(80, seed=seed, now=NOW)
    with Sandbox(seeded, now=NOW) as sandbox, tempfile.TemporaryDirectory() as tmp:
        config = example_against(sandbox.url)
        config = with_triggers(config, triggers)  # `days_since_created` read by a `when`, or a text
        if us_pools_only:
            pools = {key: pool for key, pool in config.pools.items() if key not in {("TAE", "*"), ("Onboarding", "*")}}
            onboarding = replace(config.pools["Onboarding", "*"], region="US")
            config = replace(config, pools={**pools, ("Onboarding", "US"): onboarding})
        if llm:  # demo requests wait for the LLM's verdict, which the state remembers per lead
            policy = config.policy
            config = replace(config, policy=replace(policy, demo=replace(policy.demo, classifier="llm")))
        path = Path(tmp) / "state.db"
        state = StateDB.open(path)
        _cycle(config, state, sandbox)
        _cycle(config, state, sandbox)
        accounts = sorted(a["id"] for a in seeded["vitally"]["accounts"] if isinstance(a.get("id"), str))
        leads = sorted(lead["Id"] for lead in seeded["salesforce"]["Lead"] if isinstance(lead.get("Id"), str))
        salesforce = {
            kind: sorted(r["Id"] for r in seeded["salesforce"].get(name, []) if isinstance(r.get("Id"), str))
            for kind, name in (("opportunity", "Opportunity"), ("sf_account", "Account"))
        }
        for step in steps:
            _apply(sandbox, step, accounts, leads, config, state, salesforce)
            incremental, conflicts, _ = _dry(config, path, sandbox, full=False)
            full, full_conflicts, _ = _dry(config, path, sandbox, full=True)
            assert incremental == full, step
            assert conflicts == full_conflicts, step
            _cycle(config, state, sandbox)  # the state moves on by incremental cycles only
        state.close()


_SIGNUP_STEP = st.one_of(
    st.tuples(st.just("big_signup"), st.integers(0, len(BIG_DOMAINS) - 1), st.integers(0, 20)),
    st.tuples(st.just("domain"), st.integers(0, 200), st.integers(0, len(BIG_DOMAINS) - 1)),
    st.tuples(st.just("clock"), st.sampled_from([3_600, 86_400, 5 * 86_400])),
)


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(steps=st.lists(_SIGNUP_STEP, min_size=2, max_size=6))
# The company's first org moves to another company: its second becomes the first.
@example(steps=[("big_signup", 0, 5), ("big_signup", 1, 2), ("domain", 0, 2)])
# An org created before the company's first is read later (or given its domain): the first is no longer.
@example(steps=[("big_signup", 0, 2), ("big_signup", 2, 9), ("domain", 1, 1)])
@example(steps=[("big_signup", 1, 2), ("clock", 3_600), ("big_signup", 0, 9)])
def test_incremental_cycles_judge_a_company_s_signups_as_full_ones_do(steps: list[tuple[Any, ...]]) -> None:
    """Orgs of one large company signing up, in any order of creation, and a person moving them
    between its domains: Big Fish routes the company's first signup only, which another account's
    record says (`sync.signups`). An incremental cycle, which keeps the judgements of the accounts
    nothing of their own changed, plans exactly what judging everything plans."""
    users = pool_users(example_against("http://127.0.0.1:1"))
    with Sandbox({"salesforce": {"User": users}}, now=NOW) as sandbox, tempfile.TemporaryDirectory() as tmp:
        config = example_against(sandbox.url)
        path = Path(tmp) / "state.db"
        state = StateDB.open(path)
        accounts: list[str] = []
        for step in steps:
            if step[0] == "domain" and not accounts:
                continue
            _apply(sandbox, step, accounts, [], config, state)
            incremental, conflicts, _ = _dry(config, path, sandbox, full=False)
            full, full_conflicts, _ = _dry(config, path, sandbox, full=True)
            assert incremental == full, step
            assert conflicts == full_conflicts, step
            for _ in range(3):  # its writes, and the reads of their echoes: the judgements that hold are kept
                _cycle(config, state, sandbox)
        state.close()


# -- the clock window ------------------------------------------------------------------------------


def test_the_window_runs_from_the_day_of_now_in_its_zone_to_the_day_the_rules_said() -> None:
    start, end = clock_window(NOW, until=date(2027, 3, 1))
    assert (start, end) == (datetime(2026, 11, 22, tzinfo=UTC), datetime(2027, 3, 1, tzinfo=UTC))
    start, end = clock_window(NOW, until=None)  # no date can change it
    assert start == datetime(2026, 11, 22, tzinfo=UTC) and end.year == 9999
    zoned = NOW.astimezone(timezone(timedelta(hours=-5)))  # 04:30 the 22nd at -05:00
    start, end = clock_window(zoned, until=date(2026, 11, 23))
    assert (start, end) == (datetime(2026, 11, 22, 5, tzinfo=UTC), datetime(2026, 11, 23, 5, tzinfo=UTC))
    # Instants said by a count that steps at a time of day (`rules.clock.holds_between`) narrow it.
    since, until_at = datetime(2026, 11, 22, 3, tzinfo=UTC), datetime(2026, 11, 25, 15, tzinfo=UTC)
    assert clock_window(NOW, until=date(2026, 12, 1), since=since, until_at=until_at) == (since, until_at)
    assert clock_window(NOW, until=date(2026, 11, 24), since=None, until_at=until_at) == (
        datetime(2026, 11, 22, tzinfo=UTC),
        datetime(2026, 11, 24, tzinfo=UTC),
    )


def _window(trigger: CustomTrigger, account: Account, now: datetime) -> tuple[datetime, datetime]:
    """The clock window of `account` judged by `trigger` alone at `now`."""
    compiled = compile_trigger(trigger)
    with watching(now) as horizon:
        compiled.evaluate(account, AccountContext(), now)
    return clock_window(now, until=horizon.day, since=horizon.since, until_at=horizon.until)


def test_a_window_ends_when_days_since_created_reaches_a_number_the_trigger_compares_it_with() -> None:
    """`days_since_created < 400` can change only when the count becomes 400, at `created_at`'s time
    of day: the judgement of an account 100 days old holds for 300 days, one 399 days old until
    15:00 today, one past 400 for good. `% 7` can change every day: the window is the day of the
    count. `created_at` is 15:00 UTC; `NOW` 09:30."""

    def aged(days: int) -> Account:  # `days_since_created` is `days` at NOW
        created = datetime(2026, 11, 22, 15, tzinfo=UTC) - timedelta(days=days + 1)
        return Account(id="a", name="A", updated_at=NOW, mrr=900.0, created_at=created)

    young = AGE_TRIGGER
    assert _window(young, aged(100), NOW) == (datetime(2026, 11, 22, tzinfo=UTC), datetime(2027, 9, 17, 15, tzinfo=UTC))
    assert _window(young, aged(399), NOW)[1] == datetime(2026, 11, 22, 15, tzinfo=UTC)
    start, end = _window(young, aged(401), NOW)  # past it: since the instant it became 400
    assert (start, end.year) == (datetime(2026, 11, 22, tzinfo=UTC), 9999)
    start, end = _window(young, aged(400), NOW)  # it became 400 at 15:00 yesterday
    assert (start, end.year) == (datetime(2026, 11, 22, tzinfo=UTC), 9999)
    later = NOW.replace(hour=16)  # 400 since 15:00 today: the window starts there
    start, end = _window(young, aged(399), later)
    assert (start, end.year) == (datetime(2026, 11, 22, 15, tzinfo=UTC), 9999)
    assert _window(DAILY_TRIGGER, aged(100), NOW) == (
        datetime(2026, 11, 22, tzinfo=UTC),
        datetime(2026, 11, 22, 15, tzinfo=UTC),
    )
    assert _window(DAILY_TRIGGER, aged(100), later) == (  # over midnight: the count steps at 15:00
        datetime(2026, 11, 22, 15, tzinfo=UTC),
        datetime(2026, 11, 23, 15, tzinfo=UTC),
    )
    assert compile_trigger(young).clock_steps == {"days_since_created": (400,)}
    assert compile_trigger(DAILY_TRIGGER).clock_steps == {"days_since_created": None}


@pytest.fixture(scope="module")
def judged_book() -> Iterator[tuple[Config, StateDB, list[Account]]]:
    """A mirror and Salesforce facts after one cycle, and its well-formed accounts."""
    seeded = generate_book(150, seed=11, now=NOW)
    with Sandbox(seeded, now=NOW) as sandbox:
        config = example_against(sandbox.url)
        state = StateDB.memory()
        run_cycle(config, state, make_vitally(config), make_salesforce(config), clock=lambda: NOW, dry_run=True)
    accounts = []
    for _id, raw, error, _run in state.iter_accounts():
        if error:
            continue
        try:
            accounts.append(parse_mirrored(json.loads(raw), config))
        except RecordError:
            continue
    yield config, state, accounts


@pytest.mark.slow  # Hypothesis over a book: ~20 s
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    at=st.datetimes(min_value=datetime(2026, 1, 1), max_value=datetime(2027, 6, 1), timezones=st.just(UTC)),
    triggers=st.sampled_from(sorted(TRIGGERS)),
    probes=st.lists(st.floats(0, 1), min_size=4, max_size=4),
)
def test_nothing_a_plan_reads_changes_before_the_window_ends(
    judged_book: tuple[Config, StateDB, list[Account]], at: datetime, triggers: str, probes: list[float]
) -> None:
    """The claim the window rests on, checked against every account rule: what a plan reads of the
    verdicts at `at` (`support.acted`) is what it reads at the start of the window, on its last day (a
    day noted one day late fails here), and at instants between (up to three years ahead when no
    date ends it), with no custom trigger and with each of `TRIGGERS`: `days_since_created` and
    `paying_months` compared with numbers (the window ends when they reach one), in arithmetic
    (every step ends it), and in a reason template only (no step ends it)."""
    config, state, accounts = judged_book
    custom = with_triggers(config, triggers).custom_triggers
    facts = SalesforceFacts.load(state)
    for account in accounts:
        context = facts.context_for(account.id)

        def judged(when: datetime, account: Account = account, context: Any = context) -> list[object]:
            return acted(evaluate_account(account, context, config.policy, when, custom, full=False))

        with watching(at) as horizon:
            verdict = judged(at)
        start, end = clock_window(at, until=horizon.day, since=horizon.since, until_at=horizon.until)
        if end <= start:
            continue
        last = min(end, at + timedelta(days=3 * 365)) - timedelta(microseconds=1)
        for when in (start, last, *(start + (last - start) * share for share in probes)):
            assert judged(when) == verdict, (account.id, when, horizon)


def test_the_rules_fingerprint_is_the_same_in_every_process() -> None:
    """Sets in the policy iterate in an order that depends on the process's hash seed: the
    fingerprint must not, or every start would judge the whole book again."""
    script = (
        "from datetime import UTC, datetime\n"
        "from sync.config import load_config, packaged_example\n"
        "from sync.incremental import rules_fingerprint\n"
        "print(rules_fingerprint(load_config(packaged_example()), datetime(2026, 11, 22, tzinfo=UTC)))\n"
    )
    seen = {
        subprocess.run(
            [sys.executable, "-c", script],
            cwd=ROOT,
            env={**os.environ, "PYTHONHASHSEED": str(seed)},
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        for seed in (1, 2, 3)
    }
    assert len(seen) == 1 and len(next(iter(seen))) == 32


_SCALARS = {"str", "str | None", "int | None", "float | None", "bool", "datetime", "datetime | None", "date | None"}


def test_the_facts_fingerprint_reads_only_records_whose_repr_is_the_same_in_every_process() -> None:
    """`SalesforceFacts.fingerprint` digests the repr of the opportunities as they are (and the lead
    context's fingerprint the repr of its fields): that holds only while their fields are scalars
    (a set or a dict there would need `_canonical` again)."""
    from dataclasses import fields

    from core.model import Lead, Opportunity

    for record in (Lead, Opportunity):
        assert {str(f.type) for f in fields(record)} <= _SCALARS, record.__name__


def test_the_lead_context_fingerprint_changes_with_every_field_of_the_lead_context() -> None:
    """What a lead's context is made of is fingerprinted (`lead_inputs_fingerprint`): its company's
    disqualified leads as the mirror holds them (`SalesforceFacts.disqualified_fingerprint`, which
    changes with each of them and gives the same `company_disqualified_at` when equal) and the
    remembered triage verdict, each of whose fields changes it."""
    from dataclasses import fields

    from core.triage import Remembered
    from rules.context import LeadContext
    from sync.incremental import lead_inputs_fingerprint

    # else: extend this (`account_disqualified_at` is the account's part, `LeadBook._account_fingerprint`:
    # test_scheduler_account.py; `person_classification` is the lead's own `Classification__c` against
    # the value crm-sync last wrote there, which only crm-sync's write of the lead changes: either
    # changes the lead, and a changed lead is judged again: test_people_win.py)
    assert {f.name for f in fields(LeadContext)} == {
        "company_disqualified_at",
        "triage",
        "account_disqualified_at",
        "person_classification",
    }
    # Digested by repr, as it is: only while these hold text and numbers (the same in every process).
    for record in (Remembered, Triage):
        assert {str(f.type) for f in fields(record)} <= {"str", "float", "Label", "Triage"}, record.__name__
    said = Remembered("d1", Triage("sales", 0.9, "a buyer"))
    variants = [
        ("", None),
        ("0123", None),
        ("0124", None),
        ("", said),
        ("", replace(said, digest="d2")),
        ("", replace(said, triage=Triage("spam", 0.9, "a buyer"))),
        ("", replace(said, triage=Triage("sales", 0.8, "a buyer"))),
        ("", replace(said, triage=Triage("sales", 0.9, "a seller"))),
    ]
    assert len({lead_inputs_fingerprint(*variant) for variant in variants}) == len(variants)

    stamp = "2026-11-20T10:00:00.000+0000"
    lead = {"Id": "00Q1", "SystemModstamp": stamp, "Status": "Disqualified", "Company": "Acme", "LastName": "A"}
    books = [
        [],
        [lead],
        [{**lead, "SystemModstamp": "2026-11-21T10:00:00.000+0000"}],
        [{**lead, "Title": "CTO"}],  # the same day: judged again all the same
        [lead, {**lead, "Id": "00Q2", "Company": "ACME"}],
        [{**lead, "Status": "Open"}],
    ]
    prints, days = [], []
    for book in books:
        lazy, eager = _facts_of(book, [], {}, lazy=True), _facts_of(book, [], {}, lazy=False)
        printed = lazy.disqualified_fingerprint("acme")
        assert eager.disqualified_fingerprint("acme") == printed == lazy.disqualified_fingerprint("ACME")
        assert lazy.company_disqualified_at("Acme") == eager.company_disqualified_at("Acme")
        assert lazy.disqualified_fingerprint("acme") == printed  # parsing for the day changed nothing
        prints.append(printed)
        days.append(lazy.company_disqualified_at("Acme"))
    assert prints[0] == prints[-1] == "" and days[0] is days[-1] is None
    assert len(set(prints[:-1])) == len(books) - 1
    assert days[1] == days[3] == NOW.date().replace(day=20) and days[2] == NOW.date().replace(day=21)


def _facts_of(
    leads: list[dict[str, Any]], opportunities: list[dict[str, Any]], owners: dict[str, str], *, lazy: bool
) -> SalesforceFacts:
    """Facts loaded from a mirror of these records: one Salesforce Account joined to `a1`, and the
    OwnerIds crm-sync wrote under these Sync_Key__c values."""
    state = StateDB.memory()
    sf_account = {"Id": "001", "SystemModstamp": "2026-11-01T00:00:00.000+0000", "Vitally_Account_Id__c": "a1"}
    rows = [("Account", sf_account), *(("Lead", r) for r in leads), *(("Opportunity", r) for r in opportunities)]
    state.upsert_sf(
        {"object": o, "id": r["Id"], "modstamp": r["SystemModstamp"], "raw": json.dumps(r), "error": None}
        for o, r in rows
    )
    for key, owner in owners.items():
        state.set_last_written("salesforce", key, {"OwnerId": owner}, 1, "2026-11-22T09:30:00Z")
    return SalesforceFacts.load(state, lazy=lazy)


def test_the_facts_fingerprint_changes_with_every_fact_of_the_context_and_only_then() -> None:
    """`SalesforceFacts.fingerprint` digests the raw records an account's context is made of, without
    parsing a lead: it changes with each of them (a lead's fields, a lead linked or not, an
    opportunity, the owner crm-sync gave a lead, the fields this cycle's writes give a lead), is the
    same whether the leads were parsed at load or not, and equal fingerprints mean equal contexts."""
    stamp = "2026-11-20T10:00:00.000+0000"
    lead = {"Id": "00Q1", "SystemModstamp": stamp, "Status": "Open", "Sync_Key__c": "k", "Vitally_Account_Id__c": "a1"}
    opportunity = {"Id": "0061", "SystemModstamp": stamp, "AccountId": "001", "StageName": "Prospecting"}
    other = {**lead, "Id": "00Q2", "Sync_Key__c": None, "Status": "Working - Contacted"}
    base = ([lead], [opportunity], {"k": "005A"})
    variants: list[tuple[list[dict[str, Any]], list[dict[str, Any]], dict[str, str]]] = [
        ([], [], {}),
        base,
        ([{**lead, "Status": "Working - Contacted"}], [opportunity], {"k": "005A"}),
        ([{**lead, "SystemModstamp": "2026-11-20T10:00:01.000+0000"}], [opportunity], {"k": "005A"}),
        ([{**lead, "Title": "CTO"}], [opportunity], {"k": "005A"}),  # a field no rule reads: judged again
        ([lead, other], [opportunity], {"k": "005A"}),
        ([lead], [{**opportunity, "StageName": "Closed Won"}], {"k": "005A"}),
        ([lead], [], {"k": "005A"}),
        ([lead], [opportunity], {"k": "005B"}),
        ([lead], [opportunity], {}),
        ([{**lead, "Vitally_Account_Id__c": "a2"}], [opportunity], {"k": "005A"}),
    ]
    prints = [_facts_of(*variant, lazy=True).fingerprint("a1") for variant in variants]
    assert prints[0] == "" and len(set(prints)) == len(variants)
    for variant, printed in zip(variants, prints, strict=True):
        lazy, eager = _facts_of(*variant, lazy=True), _facts_of(*variant, lazy=False)
        assert eager.fingerprint("a1") == printed
        assert lazy.context_for("a1") == eager.context_for("a1")
        assert lazy.fingerprint("a1") == printed  # parsing the leads for the context changed nothing
    assert _facts_of(*base, lazy=True).context_for("a1").assigned_owners == {"00Q1": "005A"}
    planned = _facts_of(*base, lazy=True)
    (linked,) = planned.linked_leads()
    planned.plan_lead_fields(linked, {"Status": "Disqualified"})
    assert planned.fingerprint("a1") not in prints
    assert planned.context_for("a1").leads[0].status == "Disqualified"


def test_finding_an_accounts_salesforce_facts_reads_no_records_json() -> None:
    """A lazy `load` (every cycle that judges few accounts) finds the linked leads, the Salesforce
    Accounts and the opportunities, and fingerprints them, from what was stored with each record
    when it was mirrored (state migration 12), not from its JSON: with every such record's JSON
    replaced behind the state's back, the same accounts have facts, with the same fingerprints."""
    stamp = "2026-11-20T10:00:00.000+0000"
    leads = [
        {"Id": f"00Q{i}", "SystemModstamp": stamp, "Status": "Open", "Vitally_Account_Id__c": f"a{i % 3}"}
        for i in range(6)
    ]
    disqualified = {"Id": "00Q9", "SystemModstamp": stamp, "Status": "Disqualified", "Company": "Acme"}
    opportunity = {"Id": "0061", "SystemModstamp": stamp, "AccountId": "001", "StageName": "Prospecting"}
    facts = _facts_of([*leads, disqualified], [opportunity], {}, lazy=True)
    before = {account: facts.fingerprint(account) for account in facts.with_facts()}
    assert set(before) == {"a0", "a1", "a2"} and all(before.values())

    facts.state.db.execute("UPDATE sf_records SET raw = '{}' WHERE id != '00Q9'")
    again = SalesforceFacts.load(facts.state, lazy=True)
    assert {account: again.fingerprint(account) for account in again.with_facts()} == before
    assert again.disqualified_fingerprint("acme") == facts.disqualified_fingerprint("acme") != ""


# -- the order a cycle plans the accounts in --------------------------------------------------------


def _planned_accounts(plan: list[Any]) -> list[str]:
    """The accounts of a plan's Vitally writes, in the order the plan first names them."""
    return list(dict.fromkeys(w.account for w in plan if w.system == "vitally" and w.account))


def test_a_cold_cycle_plans_the_accounts_in_the_order_vitally_listed_them(
    book: tuple[Config, Sandbox, Path],
) -> None:
    """The mirror's order (`state.db.MIRROR_ORDER`): on the first read, the order Vitally lists
    the accounts in (newest change first), not id order."""
    config, sandbox, path = book
    served = [a["id"] for a in make_vitally(config).iter_accounts_since(None) if isinstance(a, dict)]
    assert served != sorted(served)  # else the two orders could not be told apart
    planned = _planned_accounts(_dry(config, path, sandbox, full=False)[0])
    assert len(planned) > 60
    assert planned == [account for account in served if account in set(planned)]


def test_an_account_read_again_keeps_its_place_in_the_mirrors_order(tmp_path: Path) -> None:
    """An account Vitally lists first because it changed is stored in place (an upsert keeps the
    row): a full cycle and an incremental one judge the accounts in the order first read."""
    state = StateDB.open(tmp_path / "state.db")
    first = ["acc_b", "acc_c", "acc_a"]
    with state.atomic():
        state.upsert_accounts({"id": i, "updated_at": "2026-11-01T00:00:00Z", "raw": "{}"} for i in first)
        # Read again, changed (newest first), and a new account after them.
        state.upsert_accounts(
            {"id": i, "updated_at": "2026-11-02T00:00:00Z", "raw": '{"changed": true}'} for i in ("acc_a", "acc_0")
        )
    assert [row[0] for row in state.iter_accounts()] == ["acc_b", "acc_c", "acc_a", "acc_0"]
    assert [row[0] for row in state.iter_accounts(ids=["acc_0", "acc_b"])] == ["acc_b", "acc_0"]
    assert [row[0] for row in state.accounts_to_judge("rules", 0.0, [])] == ["acc_b", "acc_c", "acc_a", "acc_0"]
    state.close()


def test_finding_the_accounts_to_judge_reads_the_index_not_every_accounts_row(tmp_path: Path) -> None:
    """An idle cycle judges few accounts: SQLite finds them in the index of `accounts` (id ->
    rowid) and reads only their rows, in the mirror's order. Ordered by rowid over the table
    itself, it read every row, the holding ones too: 0.3 s more of an idle cycle's CPU at 100,000
    (bench/goals.py, 2026-12-05)."""
    state = StateDB.open(tmp_path / "state.db")
    with state.atomic():
        state.upsert_accounts({"id": f"acc_{i}", "updated_at": "t", "raw": "{}"} for i in (3, 1, 2))
    executed: list[str] = []
    state.db.conn.set_trace_callback(executed.append)
    assert [row[0] for row in state.accounts_to_judge("rules", 0.0, [])] == ["acc_3", "acc_1", "acc_2"]
    state.db.conn.set_trace_callback(None)
    query = next(sql for sql in executed if "FROM accounts a" in sql)
    plan = [row[-1] for row in state.db.execute("EXPLAIN QUERY PLAN " + query)]
    assert not any(step.startswith("SCAN a ") for step in plan), plan  # the rows: looked up, not scanned
    # None judged yet: the accounts without a judgement are found in the index, no row read.
    assert "SCAN accounts USING COVERING INDEX sqlite_autoindex_accounts_1" in plan, plan
    assert any(step.startswith("SEARCH a USING INTEGER PRIMARY KEY") for step in plan), plan
    assert any("COVERING INDEX sqlite_autoindex_accounts_1" in step for step in plan), plan
    assert not any("TEMP B-TREE FOR ORDER BY" in step for step in plan), plan
    state.close()
