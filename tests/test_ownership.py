"""People win (sync/ownership.py, sync/relearn.py): whose a field's current value is, conflicts
reported once, a queued write compared with what its target holds now, and the round-robin memory
rebuilt from the owners given."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from rules.policy import EpisodePolicy, Policy
from rules.round_robin import Member, Pool, choose
from state import StateDB
from sync.ownership import Conflicts, Ownership, Verdict, changed_fields, new_statuses, ours_in, undecided
from sync.relearn import replayed_memory
from sync.vocabulary import Conflict, CycleReport

NOW = datetime(2026, 11, 22, 9, tzinfo=UTC)


@pytest.mark.parametrize(
    ("name", "current", "ours", "respect", "adopt"),
    [
        # crm-sync's own value (its last write, or its crm_sync_written trait): it may replace it
        ("new_owner", "EU CSM", ["EU CSM"], "write", "write"),
        ("new_owner", "EU CSM", ["US TAM", "EU CSM"], "write", "write"),
        # empty: nobody's decision
        ("lifecycle_stage", None, [], "write", "write"),
        ("lifecycle_stage", "", [], "write", "write"),
        # set by a person before crm-sync ever wrote the field
        ("lifecycle_stage", "Churn risk", [], "conflict", "adopt"),
        ("segment_nurture", False, [], "conflict", "adopt"),
        # changed by a person since crm-sync wrote it (emptied included): never adopted
        ("new_owner", "US TAM", ["EU CSM"], "conflict", "conflict"),
        ("new_owner", None, ["EU CSM"], "conflict", "conflict"),
        # what a rule exists to move a lead out of: a queue, an open status
        ("OwnerId", "00G000000000001QUE", [], "write", "write"),
        ("OwnerId", "005000000000001AAA", [], "conflict", "adopt"),
        ("Status", "Open - Not Contacted", [], "write", "write"),
        # a status a person moved the lead to ([rules.episodes] working, qualified, nurturing) is
        # theirs: a rep working a demo request the triage would drop as spam keeps it open
        ("Status", "Working", [], "conflict", "adopt"),
        ("Status", "working - contacted", [], "conflict", "adopt"),
        ("Status", "Nurturing", [], "conflict", "adopt"),
        ("Status", "Disqualified", [], "conflict", "adopt"),
        # ...but once crm-sync wrote it, a person's change back is theirs
        ("OwnerId", "00G000000000001QUE", ["005000000000001AAA"], "conflict", "conflict"),
        ("Status", "Working", ["Disqualified"], "conflict", "conflict"),
    ],
)
def test_ownership_judges_every_field_by_one_rule(
    name: str, current: Any, ours: list[Any], respect: Verdict, adopt: Verdict
) -> None:
    assert Ownership("report", "respect").judge(name, current, ours) == respect
    assert Ownership("report", "adopt").judge(name, current, ours) == adopt
    overwrite = "overwrite" if respect == "conflict" else respect
    assert Ownership("overwrite", "respect").judge(name, current, ours) == overwrite


def test_ownership_undecided_values() -> None:
    assert undecided("anything", None) and undecided("anything", "")
    assert not undecided("new_owner", "EU CSM") and not undecided("segment_nurture", False)
    assert undecided("OwnerId", "00G000000000001QUE") and not undecided("OwnerId", "005000000000001AAA")
    assert not undecided("Status", "Converted") and undecided("Status", "Open - Not Contacted")
    assert not undecided("Status", "Working") and not undecided("Status", "Qualified")
    assert undecided("Status", " new ") and undecided("Status", "OPEN")


# An org's own Lead Status picklist: a status no list of [rules.episodes] names is still one a
# person moved the lead to (Salesforce orgs customise the picklist: "Attempting Contact", "Bad
# fit"); only the picklist's default, `[rules.episodes] new_statuses`, is nobody's decision.
@pytest.mark.parametrize("status", ["Attempting Contact", "Bad fit", "Meeting booked", "Working"])
def test_a_status_of_the_org_s_own_picklist_is_a_person_s(status: str) -> None:
    assert not undecided("Status", status)
    assert Ownership("report", "respect").judge("Status", status, []) == "conflict"
    assert Ownership("report", "respect").judge("Status", "Open - Not Contacted", []) == "write"


def test_the_org_s_default_status_is_a_setting() -> None:
    policy = Policy(episodes=EpisodePolicy(new_statuses=("Untouched",)))
    custom = Ownership("report", "respect", new=new_statuses(policy))
    assert custom.judge("Status", "untouched", []) == "write"
    assert custom.judge("Status", "Open - Not Contacted", []) == "conflict"


def test_ownership_ours_reads_the_state_and_the_account_trait() -> None:
    last = {("acc_1", "new_owner"): "EU CSM"}
    assert ours_in(last, "acc_1", "new_owner") == ["EU CSM"]
    # The state, when it knows the field, is the whole answer: the trait may name an older value
    # (it is not rewritten when a write is found already there), which a person may set again.
    assert ours_in(last, "acc_1", "new_owner", trait={"new_owner": "US TAM"}) == ["EU CSM"]
    assert ours_in(last, "acc_1", "lifecycle_stage", trait={"lifecycle_stage": "Self serve"}) == ["Self serve"]
    assert ours_in(last, "acc_2", "new_owner", trait="not a mapping") == []
    assert ours_in({}, "acc_1", "segment_onboarding", trait={"segment_onboarding": None}) == [None]


@pytest.mark.parametrize(
    ("state_at", "trait_at", "ours"),
    [
        ("2026-11-22T09:10:00.000Z", "2026-11-22T09:00:00.000Z", "EU CSM"),  # the trait is older: the state's
        ("2026-11-22T09:00:00.000Z", "2026-11-22T09:00:00.000Z", "EU CSM"),  # the same write: the state's
        ("2026-11-22T09:00:00.000Z", None, "EU CSM"),  # a trait written before it said when
        ("2026-11-22T09:00:00.000Z", "2026-11-22T09:10:00.000Z", "US TAM"),  # a backup restored: the trait's
        (None, "2026-11-22T09:10:00.000Z", "US TAM"),  # a state that never recorded when
    ],
)
def test_ownership_ours_takes_the_trait_over_a_state_older_than_it(
    state_at: str | None, trait_at: str | None, ours: str
) -> None:
    last = {("acc_1", "new_owner"): "EU CSM"}
    adopted: list[tuple[str, object, str]] = []
    found = ours_in(
        last,
        "acc_1",
        "new_owner",
        trait={"new_owner": "US TAM", "lifecycle_stage": "Self serve"},
        # Each value's own time: the other field's later one says nothing about this one.
        trait_at={"lifecycle_stage": "2026-11-22T10:00:00.000Z", **({"new_owner": trait_at} if trait_at else {})},
        state_at=lambda r, f: state_at,
        adopt=lambda *learnt: adopted.append(learnt),
    )
    assert found == [ours]
    # The state learns what the trait knows better, so the next PUT's trait carries it on.
    assert adopted == ([("new_owner", "US TAM", trait_at)] if ours == "US TAM" else [])


@pytest.mark.parametrize(
    ("payload", "expects", "current", "applied", "changed"),
    [
        ({"new_owner": "EU CSM"}, {"new_owner": None}, {"new_owner": None}, False, {}),  # to send
        ({"new_owner": "EU CSM"}, {"new_owner": None}, {"new_owner": "EU CSM"}, True, {}),  # already there
        ({"new_owner": "EU CSM"}, {"new_owner": None}, {"new_owner": "US TAM"}, False, {"new_owner": "US TAM"}),
        ({"a": 1, "b": 2}, {"a": 0, "b": 0}, {"a": 1, "b": 5}, False, {"b": 5}),
        # a new record (no expectation): whatever differs was changed since it was created
        (
            {"OwnerId": "005A", "Company": "Acme"},
            None,
            {"OwnerId": "005B", "Company": "Acme"},
            False,
            {"OwnerId": "005B"},
        ),
        # crm-sync's computed fields are never a person's
        ({"Lead_Score__c": 40}, None, {"Lead_Score__c": 55}, False, {}),
    ],
)
def test_ownership_changed_fields_compares_a_queued_write_with_its_target(
    payload: dict[str, Any],
    expects: dict[str, Any] | None,
    current: dict[str, Any],
    applied: bool,
    changed: dict[str, Any],
) -> None:
    assert changed_fields(payload, expects, current, exempt={"Lead_Score__c"}) == (applied, changed)


def _conflict(theirs: Any, field: str = "new_owner", *, overwritten: bool = False) -> Conflict:
    return Conflict("vitally", "acc_1", field, "EU CSM", theirs, "allocation.new_owner", overwritten=overwritten)


def _cycle(state: StateDB, run_id: int, *found: Conflict) -> CycleReport:
    report = CycleReport(run_id=run_id, dry_run=False, now=NOW)
    ledger = Conflicts.of(state, report)
    for conflict in found:
        ledger.found(conflict)
    ledger.save(close_unseen=True)
    return report


def test_conflicts_are_reported_once_until_the_persons_value_changes() -> None:
    state = StateDB.memory()

    first = _cycle(state, 1, _conflict("US TAM"), _conflict("US TAM"))  # found twice in one cycle
    second = _cycle(state, 2, _conflict("US TAM"))
    third = _cycle(state, 3, _conflict("APAC TAM"))

    assert [c.theirs for c in first.conflicts] == ["US TAM"]
    assert second.conflicts == [] and second.counts["conflicts_held"] == 1
    assert [c.theirs for c in third.conflicts] == ["APAC TAM"]
    recorded = state.db.execute("SELECT run_id, theirs FROM conflicts ORDER BY run_id").fetchall()
    assert recorded == [(1, '"US TAM"'), (3, '"APAC TAM"')]


def test_conflicts_not_found_again_are_closed_and_a_later_one_is_new() -> None:
    state = StateDB.memory()
    _cycle(state, 1, _conflict("US TAM"))
    gone = _cycle(state, 2)  # the person's value went, or the rule stopped wanting the field
    back = _cycle(state, 3, _conflict("US TAM"))

    assert gone.counts["conflicts_open"] == 0
    assert [c.theirs for c in back.conflicts] == ["US TAM"]


def test_conflicts_overwritten_are_reported_every_time_and_never_held() -> None:
    state = StateDB.memory()
    _cycle(state, 1, _conflict("US TAM"))
    overwritten = _cycle(state, 2, _conflict("US TAM", overwritten=True))
    assert [c.overwritten for c in overwritten.conflicts] == [True]
    assert state.open_conflicts() == {}


def test_replayed_memory_is_what_smooth_weighted_round_robin_holds_after_those_draws() -> None:
    pool = Pool("TAM", "US", (Member("a", "A"), Member("b", "B", weight=2), Member("c", "C", weight=3)))
    credits: dict[str, float] = {}
    given: dict[str | None, int] = {}
    for draws in range(1, 25):
        assignment, credits = choose(pool, credits)
        given[assignment.user_id] = given.get(assignment.user_id, 0) + 1
        memory = replayed_memory(pool, given)
        assert {user: credit for user, (credit, _) in memory.items()} == credits, draws
        assert {user: n for user, (_, n) in memory.items() if n} == given
