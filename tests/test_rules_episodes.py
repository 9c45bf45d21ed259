"""Lead episodes (rules/episodes.py): a lead's life after it was created, read from what people do
in Salesforce and Vitally (plg-lead-qualification.md), and what each state allows."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest

from core.model import Account, Lead, Opportunity
from rules import Policy, evaluate_account
from rules.base import TaskIntent
from rules.context import EMPTY, AccountContext
from rules.episodes import (
    Episode,
    add_months,
    describe,
    episodes,
    family_of_lead,
    hold,
    nurture_follow_up,
    qualified_window,
    verdict,
)
from rules.guards import routing_guard
from rules.policy import EpisodePolicy, GuardPolicy
from rules.routing import route_account

NOW = datetime(2026, 11, 22, 9, 0, tzinfo=UTC)
POLICY = Policy()
# In the product-led MRR band: product_led.mrr_band fires unless something holds the account back.
BAND: dict[str, Any] = {
    "mrr": 900,
    "employee_count": 64,
    "user_count": 9,
    "country": "DE",
    "first_paid_at": date(2026, 1, 5),
}


def days_ago(n: int) -> datetime:
    return NOW - timedelta(days=n)


def account(**kw: Any) -> Account:
    base: dict[str, Any] = {"id": "acc_1", "name": "Acme", "updated_at": NOW, **BAND}
    base.update(kw)
    return Account(**base)


def lead(status: str = "Open - Not Contacted", *, ours: bool = True, **kw: Any) -> Lead:
    base: dict[str, Any] = {
        "id": "00QA",
        "system_modstamp": days_ago(5),
        "created_date": days_ago(40),
        "status": status,
        "lead_source": "Product-led",
        "owner_id": "005T",
        "vitally_account_id": "acc_1",
    }
    if ours:
        base |= {"sync_key": "crm-sync-acc_1-1", "routing_rule": "product_led.mrr_band"}
    base.update(kw)
    return Lead(**base)


def ctx(*leads: Lead, **kw: Any) -> AccountContext:
    return AccountContext(leads=leads, **kw)


def only(acc: Account, context: AccountContext) -> Episode:
    (episode,) = episodes(acc, context, POLICY)
    return episode


# -- states ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "state"),
    [
        ("Open - Not Contacted", "open"),
        ("Working", "working"),
        ("working - contacted", "working"),  # statuses compare case-insensitively
        ("In progress", "qualified"),
        ("Qualified", "qualified"),
        ("Nurturing", "nurturing"),
        ("Disqualified", "disqualified"),
        ("Unqualified", "disqualified"),
        ("Closed - Not Converted", "disqualified"),
        ("Closed - Converted", "converted"),
    ],
)
def test_episode_state_from_the_lead_status(status: str, state: str) -> None:
    episode = only(account(), ctx(lead(status)))
    assert (episode.family, episode.state, episode.ours) == ("product_led", state, True)


def test_episode_converted_by_is_converted_with_and_without_an_opportunity() -> None:
    without = only(account(), ctx(lead("Qualified", is_converted=True, converted_date=date(2026, 11, 1))))
    assert (without.state, without.since, without.opportunity) == ("converted", date(2026, 11, 1), None)
    into = only(account(), ctx(lead("Qualified", is_converted=True, converted_opportunity_id="006X")))
    assert (into.state, into.opportunity) == ("converted", "006X")
    assert into.since == days_ago(5).date()  # no ConvertedDate: the lead's last change


def test_episode_owner_changed_by_a_person_is_being_worked() -> None:
    assigned = {"00QA": "005T"}
    assert only(account(), ctx(lead(), assigned_owners=assigned)).state == "open"
    moved = only(account(), ctx(lead(owner_id="005P"), assigned_owners=assigned))
    assert moved.state == "working"
    assert moved.signal == "lead 00QA owner changed from 005T to 005P"
    # Someone else's lead (not ours) carries no assignment of ours: it stays open.
    assert only(account(), ctx(lead(ours=False, owner_id="005P"))).state == "open"


def test_episode_tam_qualifying_in_vitally() -> None:
    """ "Add yourself as the Account Executive in Vitally and use the 'Leads' segment"."""
    tam = {"key_roles": {"Account Executive": "u_tam"}, "segments": frozenset({"Leads"})}
    episode = only(account(**tam), ctx(lead("Working")))
    assert (episode.state, episode.signal) == ("qualified", "Account Executive u_tam and segment Leads")
    alone = only(account(**tam), EMPTY)  # no lead in Salesforce at all
    assert (alone.state, alone.lead) == ("qualified", None)
    # What a person said in Salesforce last wins: the lead was disqualified since.
    assert only(account(**tam), ctx(lead("Disqualified"))).state == "disqualified"
    # Only with both: an Account Executive alone, or the segment alone, qualifies nothing.
    assert only(account(key_roles={"Account Executive": "u"}), ctx(lead("Working"))).state == "working"
    assert only(account(segments=frozenset({"Leads"})), ctx(lead("Working"))).state == "working"


def test_a_tam_s_nurturing_status_wins_over_the_qualified_markers_left_in_vitally() -> None:
    """plg-lead-qualification.md: "If the answer is 'not yet', change status to 'nurturing' and
    come back ... Set a Vitally task to revisit in 30-60 days." A TAM who qualified in Vitally
    (Account Executive and `Leads`) and then says "not yet" in Salesforce keeps the key role and
    the segment; the status is the later word (the README's "qualified → nurturing: status
    Nurturing"), so the episode nurtures and the revisit task is set. Before, the Vitally markers
    read it as qualified and no revisit task came (found by a review, 2026-12-06)."""
    tam = account(key_roles={"Account Executive": "u_tam"}, segments=frozenset({"Leads"}))
    assert only(tam, ctx(lead("Nurturing"))).state == "nurturing"
    decision = nurture_follow_up(tam, ctx(lead("Nurturing")), POLICY, NOW)
    assert decision.fired and decision.task is not None and decision.task.assignee == "u_tam", decision.reason
    assert not qualified_window(tam, ctx(lead("Nurturing")), POLICY, NOW).fired
    # Back to "in progress", or no status said yet: qualified, as before.
    assert only(tam, ctx(lead("In progress"))).state == "qualified"
    assert only(tam, ctx(lead("Open - Not Contacted"))).state == "qualified"
    # The managed book still ends it, whatever the lead's status.
    managed = account(key_roles={"Account Executive": "u_tam"}, segments=frozenset({"Leads", "AM Managed"}))
    assert only(managed, ctx(lead("Nurturing"))).state == "converted"


def test_episode_managed_book_ends_it() -> None:
    episode = only(account(segments=frozenset({"AM Managed"})), ctx(lead("In progress")))
    assert (episode.state, episode.signal) == ("converted", "segment AM Managed: in the managed book")


def test_episode_newest_lead_of_each_family_decides() -> None:
    old = lead("Disqualified", id="00QOLD", created_date=days_ago(300), system_modstamp=days_ago(200))
    new = lead("Working", id="00QNEW", sync_key="crm-sync-acc_1-2", created_date=days_ago(10))
    demo = lead("Working", ours=False, id="00QDEMO", lead_source="Demo request")
    bdr = lead("Disqualified", id="00QBDR", routing_rule="bdr.low_usage", lead_source="BDR")
    found = episodes(account(), ctx(old, new, demo, bdr), POLICY)
    assert [(e.family, e.state, e.lead.id if e.lead else None) for e in found] == [
        ("product_led", "working", "00QNEW"),
        ("new_business", "working", "00QDEMO"),
        ("bdr", "disqualified", "00QBDR"),
    ]


@pytest.mark.parametrize(
    ("rule", "source", "family"),
    [
        ("product_led.forecast_spike", "Product-led", "product_led"),
        ("new_business.startup_credits", "New business signal", "new_business"),
        ("onboarding.direct_handover", "Onboarding referral", "new_business"),
        ("bdr.closed_lost_unresponsive", "BDR", "bdr"),
        (None, "AM referral", "product_led"),
        (None, "BDR", "bdr"),
        (None, "Demo request", "new_business"),
        ("custom.surveys_upsell", "Product-led", "product_led"),  # a custom trigger: its source
    ],
)
def test_family_of_a_lead(rule: str | None, source: str, family: str) -> None:
    assert family_of_lead(lead(routing_rule=rule, lead_source=source), POLICY) == family


def test_onboarding_episode_is_read_from_vitally_and_never_blocks() -> None:
    acc = account(key_roles={"Onboarding Specialist": "u_kim"}, segments=frozenset({"Onboarding"}))
    (episode,) = episodes(acc, EMPTY, POLICY)
    assert (episode.family, episode.state) == ("onboarding", "working")
    assert verdict(episode, POLICY, NOW)[0] is False


# -- what each state allows ----------------------------------------------------------------------


DQ = "lead 00QA disqualified in Salesforce {} days ago (cool-off 90 days)"
CONVERTED = "lead 00QA converted {} days ago without an opportunity (hold 365 days)"


@pytest.mark.parametrize(
    ("the_lead", "held"),
    [
        (lead("Disqualified", system_modstamp=days_ago(0)), DQ.format(0)),
        (lead("Disqualified", system_modstamp=days_ago(89)), DQ.format(89)),
        (lead("Disqualified", system_modstamp=days_ago(90)), None),
        (lead("Disqualified", ours=False, system_modstamp=days_ago(10)), DQ.format(10)),
        # crm-sync's own demo triage dropping spam is no person's disqualification.
        (lead("Disqualified", classification="spam", system_modstamp=days_ago(1)), None),
        (lead("Qualified", is_converted=True, converted_date=days_ago(364).date()), CONVERTED.format(364)),
        (lead("Qualified", is_converted=True, converted_date=days_ago(365).date()), None),
        (lead("Closed - Converted", system_modstamp=days_ago(3)), CONVERTED.format(3)),
        (lead("Qualified", is_converted=True, converted_opportunity_id="006X"), None),
        (lead("Working"), None),  # open episodes are the other guards' business
        (lead("Nurturing"), None),
    ],
)
def test_hold(the_lead: Lead, held: str | None) -> None:
    # An opportunity the lead was converted into is in the context: it decides (open here).
    deal = (Opportunity("006X", "001A", "Discovery", None, None, "005T"),)
    assert hold(account(), ctx(the_lead, opportunities=deal), POLICY, NOW) == held


def test_a_lead_converted_into_an_opportunity_the_context_lacks_holds_as_a_conversion_without_one() -> None:
    """Not read yet, deleted, or not shared with crm-sync: the opportunity cannot decide, and no
    second lead goes out beside it."""
    converted = lead("Qualified", is_converted=True, converted_opportunity_id="006X", converted_date=days_ago(3).date())
    assert hold(account(), ctx(converted), POLICY, NOW) == (
        "lead 00QA converted into opportunity 006X, which crm-sync does not see (not read yet, deleted, or not "
        "shared with it) 3 days ago (hold 365 days)"
    )
    long_ago = lead(
        "Qualified", is_converted=True, converted_opportunity_id="006X", converted_date=days_ago(365).date()
    )
    assert hold(account(), ctx(long_ago), POLICY, NOW) is None


def test_hold_windows_are_settings() -> None:
    policy = Policy(guards=GuardPolicy(cool_off_days=30, converted_hold_days=0))
    assert hold(account(), ctx(lead("Disqualified", system_modstamp=days_ago(30))), policy, NOW) is None
    assert hold(account(), ctx(lead("Disqualified", system_modstamp=days_ago(29))), policy, NOW) is not None
    assert hold(account(), ctx(lead("Qualified", is_converted=True, converted_date=NOW.date())), policy, NOW) is None


def test_statuses_are_settings() -> None:
    policy = Policy(episodes=EpisodePolicy(disqualified_statuses=("Rejected",), nurturing_statuses=("Later",)))
    assert episodes(account(), ctx(lead("Rejected")), policy)[0].state == "disqualified"
    assert episodes(account(), ctx(lead("Later")), policy)[0].state == "nurturing"
    assert episodes(account(), ctx(lead("Nurturing")), policy)[0].state == "open"


def test_a_person_disqualifying_in_salesforce_holds_signals_and_the_same_teams_referrals() -> None:
    """A person's referral skips the cool-off of another team's "no" (new information), but not the
    "no" of the team it asks: a segment carries no date (Vitally's `segments[]` are `{id, name}`),
    so a referral there all along cannot be told from one added after the "no", and without the
    hold every "no" was followed by a new lead (tests/test_referral_answered.py)."""
    disqualified = ctx(lead("Disqualified", system_modstamp=days_ago(20)))
    winner, decisions = route_account(account(), disqualified, POLICY, NOW)
    assert winner is None
    [band] = [d for d in decisions if d.rule == "product_led.mrr_band"]
    assert band.guarded_by == "lead 00QA disqualified in Salesforce 20 days ago (cool-off 90 days)"
    am = account(segments=frozenset({"AM referral"}), mrr=420)
    winner, decisions = route_account(am, disqualified, POLICY, NOW)
    assert winner is None
    held = next(d for d in decisions if d.rule == "product_led.am_referral")
    assert held.guarded_by == (
        "the team this referral asks answered: lead 00QA disqualified in Salesforce 20 days ago (cool-off 90 days)"
    )
    ae = account(segments=frozenset({"AE referral"}), mrr=420)  # another team: a TAE
    winner, _ = route_account(ae, disqualified, POLICY, NOW)
    assert winner is not None and winner.rule == "new_business.ae_referral"


def test_crm_syncs_own_open_lead_keeps_the_trigger_firing_without_a_guard() -> None:
    """The segment and routing reason stay while its lead is worked; the planner creates no second lead."""
    for status in ("Open - Not Contacted", "Working", "In progress", "Nurturing"):
        assert routing_guard(account(), ctx(lead(status)), POLICY, NOW) is None
        winner, _ = route_account(account(), ctx(lead(status)), POLICY, NOW)
        assert winner is not None and winner.rule == "product_led.mrr_band"
        blocks, why = verdict(only(account(), ctx(lead(status))), POLICY, NOW)
        assert blocks and why.startswith("crm-sync's lead 00QA is ")


def test_someone_elses_open_lead_guards() -> None:
    assert routing_guard(account(), ctx(lead("Working", ours=False)), POLICY, NOW) == (
        "open lead 00QA (Working) in Salesforce"
    )


def test_describe_names_state_signal_and_verdict() -> None:
    lines = describe(account(), ctx(lead("Disqualified", system_modstamp=days_ago(20))), POLICY, NOW)
    assert lines == [
        f"product_led: disqualified since {days_ago(20).date()} (lead 00QA status Disqualified; crm-sync's lead): "
        "blocks a new lead: lead 00QA disqualified in Salesforce 20 days ago (cool-off 90 days)"
    ]
    after = describe(account(), ctx(lead("Disqualified", system_modstamp=days_ago(100))), POLICY, NOW)
    assert after[0].endswith("allows a new lead: lead 00QA disqualified 100 days ago: the 90-day cool-off is over")
    assert describe(account(), EMPTY, POLICY, NOW) == []


# -- follow-up tasks ------------------------------------------------------------------------------


def test_nurture_follow_up_task_once_per_lead() -> None:
    acc = account(key_roles={"Account Executive": "u_tam"})
    decision = nurture_follow_up(acc, ctx(lead("Nurturing")), POLICY, NOW)
    assert decision.fired, decision.reason
    task = decision.task
    assert task is not None
    assert task.key == "episode.nurture_follow_up:acc_1:00QA"  # the same every cycle: created once
    assert task.due == (NOW + timedelta(days=45)).date()  # "revisit in 30-60 days"
    assert 30 <= (task.due - NOW.date()).days <= 60
    assert task.assignee == "u_tam"
    assert task.account_id == "acc_1"
    assert decision.reason == ("product_led lead 00QA is nurturing (status Nurturing, owner 005T): revisit in 45 days")
    again = nurture_follow_up(acc, ctx(lead("Nurturing")), POLICY, NOW + timedelta(days=3))
    assert again.task is not None and again.task.key == task.key


def test_nurture_follow_up_spell_is_the_noted_status_day_only() -> None:
    """The spell is the day crm-sync first read the lead nurturing (`status_since`); a lead without
    that note has no spell (its SystemModstamp moves with every edit: each would be a new "not yet",
    and a new task), so it keeps one task, as before."""
    noted = lead("Nurturing", status_since=days_ago(3))
    assert (nurture_follow_up(account(), ctx(noted), POLICY, NOW).task or _NO_TASK).spell == days_ago(3).date()
    for edited in (days_ago(2), days_ago(1)):
        bare = lead("Nurturing", system_modstamp=edited)  # no note
        assert (nurture_follow_up(account(), ctx(bare), POLICY, NOW).task or _NO_TASK).spell is None


_NO_TASK = TaskIntent("none", "acc_1", "", "", NOW.date(), None)


@pytest.mark.parametrize("status", ["Open - Not Contacted", "Working", "In progress", "Disqualified"])
def test_nurture_follow_up_only_for_a_nurturing_lead(status: str) -> None:
    decision = nurture_follow_up(account(), ctx(lead(status)), POLICY, NOW)
    assert not decision.fired and decision.task is None


def test_nurture_days_is_a_setting() -> None:
    policy = Policy(episodes=EpisodePolicy(nurture_days=60))
    task = nurture_follow_up(account(), ctx(lead("Nurturing")), policy, NOW).task
    assert task is not None and task.due == (NOW + timedelta(days=60)).date()


def test_qualified_window_task_due_three_months_after_the_lead_was_qualified() -> None:
    """ "You have up to 3 months to figure out whether a new lead belongs in your book"."""
    qualified = datetime(2026, 10, 31, 12, tzinfo=UTC)
    decision = qualified_window(account(), ctx(lead("In progress", status_since=qualified)), POLICY, NOW)
    assert decision.fired
    assert decision.task is not None
    assert decision.task.key == "episode.qualified_window:acc_1:00QA"
    assert decision.task.due == date(2027, 1, 31)
    assert "decide by 2027-01-31 (70 days left)" in decision.reason


def test_qualified_window_past_its_end_is_due_now() -> None:
    old = lead("In progress", created_date=days_ago(130), status_since=days_ago(120))
    decision = qualified_window(account(), ctx(old), POLICY, NOW)
    assert decision.task is not None and decision.task.due == NOW.date()
    assert "decide now" in decision.reason


def test_qualified_window_counts_from_the_yes_not_from_the_leads_creation() -> None:
    """ "Qualifying a lead means you're investing time in it ... You have up to 3 months": a lead
    nurtured for months before its TAM's "yes" keeps its three months (found by a review: counted
    from the lead's creation, it was told its window had ended the day it was qualified)."""
    late = lead("In progress", created_date=days_ago(200), status_since=days_ago(10))
    decision = qualified_window(account(), ctx(late), POLICY, NOW)
    assert decision.task is not None and decision.task.due == date(2027, 2, 12)
    assert f"3 months from {days_ago(10).date()}" in decision.reason and "decide by 2027-02-12" in decision.reason


def test_qualified_window_for_a_tam_qualifying_in_vitally_without_a_lead() -> None:
    acc = account(key_roles={"Account Executive": "u_tam"}, segments=frozenset({"Leads"}))
    decision = qualified_window(acc, EMPTY, POLICY, NOW)
    assert decision.fired
    assert decision.task is not None
    assert decision.task.key == "episode.qualified_window:acc_1:vitally"
    assert decision.task.assignee == "u_tam"


@pytest.mark.parametrize("status", ["Working", "Nurturing", "Disqualified"])
def test_qualified_window_only_for_a_qualified_product_led_lead(status: str) -> None:
    assert not qualified_window(account(), ctx(lead(status)), POLICY, NOW).fired
    new_business = lead("In progress", routing_rule="new_business.fundraise", lead_source="New business signal")
    assert not qualified_window(account(), ctx(new_business), POLICY, NOW).fired


def test_follow_up_tasks_ride_in_the_account_evaluation() -> None:
    decisions = {d.rule: d for d in evaluate_account(account(), ctx(lead("Nurturing")), POLICY, NOW, full=False)}
    assert decisions["episode.nurture_follow_up"].fired
    decisions = {d.rule: d for d in evaluate_account(account(), ctx(lead("In progress")), POLICY, NOW, full=False)}
    assert decisions["episode.qualified_window"].fired


@pytest.mark.parametrize(
    ("day", "months", "expected"),
    [(date(2026, 1, 31), 1, date(2026, 2, 28)), (date(2026, 11, 30), 3, date(2027, 2, 28)),
     (date(2024, 11, 29), 3, date(2025, 2, 28)), (date(2026, 5, 15), 12, date(2027, 5, 15))],
)  # fmt: skip
def test_add_months_clamps_to_the_month_end(day: date, months: int, expected: date) -> None:
    assert add_months(day, months) == expected


# -- the converted episode's opportunity ---------------------------------------------------------


def test_converted_into_an_open_opportunity_is_guarded_by_the_opportunity() -> None:
    converted = lead("Qualified", is_converted=True, converted_opportunity_id="006X")
    context = ctx(converted, opportunities=(Opportunity("006X", "001A", "Discovery", None, None, "005T"),))
    assert routing_guard(account(), context, POLICY, NOW) == "open opportunity 006X (Discovery) in Salesforce"


def test_months_between_counts_a_month_once_add_months_reaches_it() -> None:
    """`months_between(start, end)` is the most months n with `add_months(start, n)` on or before
    `end`, at every pair of days of four years (month ends and Feb 29 included): the two calendar
    functions of rules/base.py agree, so "paying for at least 3 months" (lead-routing-and-scoring.md),
    the 12 months after a Closed Won (allocation) and the months of credits left (qualification)
    count months as the roll-off and BDR windows do. Before, Aug 31 to Nov 30 was 2 months."""
    from rules.base import months_between

    first = date(2023, 1, 1)
    days = [first + timedelta(days=i) for i in range(0, 4 * 366, 3)] + [date(2024, 2, 29), date(2026, 8, 31)]
    for start in days[::7]:
        for end in days:
            n = months_between(start, end)
            assert add_months(start, n) <= end < add_months(start, n + 1), (start, end, n)
    assert months_between(date(2026, 8, 31), date(2026, 11, 30)) == 3
