"""Whose is a field's current value: the one rule crm-sync follows before it replaces anything.

**The rule.** A value crm-sync wrote is crm-sync's: the state records its last write to every
(record, field), and on Vitally each account it writes carries the same record in the
`crm_sync_written` trait (`sync.wire.WRITTEN_TRAIT`), so a lost state file does not turn
crm-sync's own values into strangers. Any other current value is a person's:

- changed since crm-sync wrote it: a **conflict**, reported once and left alone
  (`[sync] on_conflict = "overwrite"` replaces it, and says so);
- set before crm-sync ever wrote the field: the same, unless `[sync] on_first_sight = "adopt"`,
  which takes it as crm-sync's own from then on (the rule's value replaces it, quietly).

An *undecided* value is nobody's decision and may be filled: an empty field, and the states a
handbook rule exists to move a record out of, which that rule has read before it fires (an
inbound lead waiting for the round robin: unowned, in a queue, or with one of the configured
`[rules.routing] unrouted_owners`, such as the org's default lead owner, who owns every web-to-lead
lead no assignment rule placed; an open lead status nobody has moved, which demo triage closes for
spam). That open status is one of `[rules.episodes] new_statuses` (the Lead Status picklist's
default: "Open - Not Contacted", "Open", "New"): any other status is one a person moved the lead
to, and theirs, whether or not a list of `[rules.episodes]` names it (`Working - Contacted`, or an
org's own "Attempting Contact": a rep took it; the triage does not close it as spam, it reports
the conflict). Once crm-sync has written such a field, a person's later change is a conflict like
any other.

**Exempt** are the Lead fields only crm-sync computes, `Lead_Score__c`, `Routing_Rule__c` and
`Routing_Reason__c`: custom fields the operator's guide creates for crm-sync alone, recomputed
from their inputs every cycle. Nobody's decision lives there (a sales person who disagrees with a
score or a route changes the owner or the status, which this rule protects), and treating them
as a person's would freeze every score after a lost state file.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from rules.context import folded_statuses, is_closed
from rules.policy import Policy, RoutingPolicy
from state import StateDB
from sync.config import OnConflict, OnFirstSight
from sync.vocabulary import Conflict, CycleReport

__all__ = [
    "COMPUTED_LEAD_FIELDS",
    "Conflicts",
    "Ownership",
    "Verdict",
    "changed_fields",
    "new_statuses",
    "ours_in",
    "undecided",
]

COMPUTED_LEAD_FIELDS = frozenset({"Lead_Score__c", "Routing_Rule__c", "Routing_Reason__c"})

Verdict = Literal["write", "adopt", "conflict", "overwrite"]

_ROUTING = RoutingPolicy()


def new_statuses(policy: Policy) -> frozenset[str]:
    """The open lead statuses nobody has moved a lead to (`[rules.episodes] new_statuses`),
    casefolded: the only statuses, with an empty one, that are nobody's decision yet."""
    return folded_statuses(policy.episodes.new_statuses)


_NEW = new_statuses(Policy())


def undecided(name: str, value: Any, routing: RoutingPolicy = _ROUTING, new: frozenset[str] = _NEW) -> bool:
    """Whether `value` in field `name` is nobody's decision yet (see the module's docstring);
    `routing` says which lead owners mean "waiting for routing", `new` which lead statuses nobody
    has moved a lead to (`new_statuses`)."""
    if value is None or value == "":
        return True
    if name == "OwnerId":
        return isinstance(value, str) and routing.waiting_for_routing(value) is not None
    if name == "Status":
        return isinstance(value, str) and is_closed(value, new)
    return False


@dataclass(frozen=True)
class Ownership:
    """The configured rule: what to do with a person's value (`on_conflict`) and with a value
    found before crm-sync ever wrote the field (`on_first_sight`)."""

    on_conflict: OnConflict = "report"
    on_first_sight: OnFirstSight = "respect"
    routing: RoutingPolicy = _ROUTING
    new: frozenset[str] = _NEW

    def judge(self, name: str, current: Any, ours: Sequence[Any]) -> Verdict:
        """May crm-sync replace `current` in field `name`? `ours` are the values crm-sync knows it
        wrote there (none when it never did). `write`: it is crm-sync's (or undecided); `adopt`:
        a first sight taken as crm-sync's own; `conflict`: a person's, left alone; `overwrite`: a
        person's, replaced as configured."""
        if any(current == value for value in ours):
            return "write"
        if not ours and undecided(name, current, self.routing, self.new):
            return "write"
        if not ours and self.on_first_sight == "adopt":
            return "adopt"
        return "overwrite" if self.on_conflict == "overwrite" else "conflict"


def _theirs(value: Any) -> str:
    return json.dumps(value, sort_keys=True, default=str)


@dataclass
class Conflicts:
    """Conflicts found by one cycle, each reported once: a conflict already reported (by an
    earlier cycle or earlier in this one) with the same value of the person's is counted
    (`conflicts_held`) and not reported again; once the person's value changes, it is a new
    conflict. What a cycle reports goes to `report.conflicts` and, by `save`, to the state."""

    state: StateDB
    report: CycleReport
    # (system, record, field) → (the person's value as JSON, the run that reported it)
    _known: dict[tuple[str, str, str], tuple[str, int]] = field(default_factory=dict)
    _seen: set[tuple[str, str, str]] = field(default_factory=set)
    _new: list[Conflict] = field(default_factory=list)

    @classmethod
    def of(cls, state: StateDB, report: CycleReport) -> Conflicts:
        return cls(state, report, state.open_conflicts())

    def found(self, conflict: Conflict) -> None:
        """One conflict found now: reported unless it already was, with this value."""
        key = (conflict.system, conflict.record, conflict.field)
        theirs = _theirs(conflict.theirs)
        first_look = key not in self._seen
        self._seen.add(key)
        known = self._known.get(key)
        if not conflict.overwritten and known is not None and known[0] == theirs:
            if first_look:
                self.report.counts["conflicts_held"] += 1
            return
        if conflict.overwritten:
            self._known.pop(key, None)
        else:
            self._known[key] = (theirs, self.report.run_id)
        self.report.conflicts.append(conflict)
        self.report.counts["conflicts"] += 1
        self._new.append(conflict)

    def records(self, system: str) -> set[str]:
        """The records of `system` with a conflict standing (reported by an earlier cycle or this one)."""
        return {record for (where, record, _) in self._known if where == system}

    def save(self, *, close_unseen: bool, held: Callable[[str, str], bool] | None = None) -> None:
        """Store what was reported since the last save (in the caller's transaction). With
        `close_unseen` (after a whole plan), conflicts of earlier cycles not found again are
        closed: the person's value went, or the rule stopped wanting the field. A conflict of a
        record the plan did not judge, because its judgement held (`held(system, record)`:
        nothing it reads changed, the person's value included, `sync.incremental`), stays open:
        judging it again would find the same conflict."""
        run_id = self.report.run_id
        self.state.record_conflicts(run_id, (_row(c) for c in self._new))
        for conflict in self._new:
            key = (conflict.system, conflict.record, conflict.field)
            if conflict.overwritten:
                self.state.close_conflicts([key])
            else:
                self.state.open_conflict(*key, _theirs(conflict.theirs), run_id)
        self._new.clear()
        if close_unseen:
            gone = [
                key
                for key, (_, run) in self._known.items()
                if key not in self._seen and run != run_id and not (held is not None and held(key[0], key[1]))
            ]
            self.state.close_conflicts(gone)
            for key in gone:
                del self._known[key]
        self.report.counts["conflicts_open"] = len(self._known)


def _row(conflict: Conflict) -> dict[str, Any]:
    return {
        "system": conflict.system,
        "record": conflict.record,
        "field": conflict.field,
        "ours": json.dumps(conflict.ours),
        "theirs": json.dumps(conflict.theirs),
        "rule": conflict.rule,
    }


def ours_in(
    last: Mapping[tuple[str, str], Any],
    record: str,
    name: str,
    trait: Any = None,
    trait_at: Mapping[str, str] | None = None,
    state_at: Callable[[str, str], str | None] | None = None,
    adopt: Callable[[str, Any, str], None] | None = None,
) -> list[Any]:
    """What crm-sync knows it wrote to (record, field): the state's last write; only where the
    state has none, the account's `crm_sync_written` trait (`trait`, decoded:
    `sync.wire.read_written_trait`, for Vitally), which stands in for a lost state file. The trait
    is not rewritten when a write is found already there without a PUT, so it can name an older
    value of crm-sync's: taken beside the state's, a person who later set that older value again
    would be taken for crm-sync and overwritten.

    One case takes the trait's over the state's: the trait says the field was written after the
    state's record of it (`trait_at`, field → time, from the trait; `state_at(record, field)`,
    the state's `written_at`): the state file is older than the account's mark, a backup
    restored. Its record names a value crm-sync wrote before a later one it no longer knows of,
    and a person who set that earlier value again since would be taken for crm-sync and
    overwritten. `adopt(field, value, time)` is told, so that the state learns it (and the next
    PUT's trait carries it on)."""
    if (record, name) in last:
        known = last[(record, name)]
        written = _written_since(trait, trait_at, state_at, record, name, known)
        if written is None:
            return [known]
        if adopt is not None:
            adopt(name, trait[name], written)
        return [trait[name]]
    if isinstance(trait, Mapping) and name in trait:
        return [trait[name]]
    return []


def _written_since(
    trait: Any,
    trait_at: Mapping[str, str] | None,
    state_at: Callable[[str, str], str | None] | None,
    record: str,
    name: str,
    known: Any,
) -> str | None:
    """When the trait says it wrote another value of the field than the state's `known`, after
    the state's record of it (`ours_in`); None when it does not."""
    if not trait_at or state_at is None or not isinstance(trait, Mapping) or trait.get(name, known) == known:
        return None
    when = trait_at.get(name)
    if when is None:
        return None
    at = state_at(record, name)
    return when if at is None or at < when else None


def changed_fields(
    payload: Mapping[str, Any],
    expects: Mapping[str, Any] | None,
    current: Mapping[str, Any],
    exempt: Iterable[str] = (),
) -> tuple[bool, dict[str, Any]]:
    """Compare a queued write with what its target holds now. Returns (already there: every
    field of `payload` holds its value, changed: field → the value a person put there since the
    write was planned). With `expects` None (a new record) every differing field counts as
    changed; `exempt` fields never do."""
    skip = frozenset(exempt)
    applied = True
    changed: dict[str, Any] = {}
    for name, value in payload.items():
        now = current.get(name)
        if now == value:
            continue
        applied = False
        if name in skip:
            continue
        if expects is None or name not in expects or now != expects[name]:
            changed[name] = now
    return applied, changed
