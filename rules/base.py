"""What a rule is and what it returns.

A rule is a `Rule` record: its id, its verdict `decide(record, ctx, policy, now)` (one call
signature for every rule, account and lead alike) and `may_fire`, a cheap necessary condition
kept next to the rule it restates. The verdict is a `Decision`: fired or not, the reason, the
inputs, and what it wants done, in canonical names (traits, segments, a `LeadIntent`, a
`TaskIntent`); `sync/wire.py` turns the intents into the services' field names and JSON.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import date, datetime
from functools import lru_cache
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Generic, Literal, TypeAlias, TypeVar, get_args

from core.model import Account, Lead
from rules.context import AccountContext, LeadContext

if TYPE_CHECKING:
    from rules.policy import Policy

__all__ = [
    "REASON_TRAITS",
    "AccountRule",
    "Decision",
    "LeadField",
    "LeadIntent",
    "LeadRule",
    "Rule",
    "TaskIntent",
    "Team",
    "add_months",
    "always",
    "fmt_num",
    "months_between",
    "per_policy",
    "product_key",
    "reason_gist",
    "wanting_nothing",
]

Team = Literal["TAE", "TAM", "CSM", "BDR", "Onboarding"]

# The lead fields a rule may want, by canonical name (LeadIntent's fields).
LeadField = Literal[
    "score",
    "classification",
    "status",
    "lead_source",
    "routing_rule",
    "routing_reason",
    "qualification",
    "qualification_reason",
]
_LEAD_FIELDS: tuple[LeadField, ...] = get_args(LeadField)

RecordT = TypeVar("RecordT")
ContextT = TypeVar("ContextT")
DerivedT = TypeVar("DerivedT")


@dataclass(frozen=True)
class LeadIntent:
    """What a rule wants written on a Salesforce lead, by canonical name; None leaves a field
    alone. `sync/wire.py` names the Salesforce field of each (`score` is `Lead_Score__c`).

    A lead rule's intent is for the lead it judged; a routing winner's intent is what the lead
    created for its account carries: the trigger that routed it (`routing_rule`, `routing_reason`),
    its `lead_source` and, for a product-led lead, the qualification recommendation
    (`qualification`: disqualify, nurture or qualify) and its reasons.
    """

    score: int | None = None
    classification: str | None = None
    status: str | None = None
    lead_source: str | None = None
    routing_rule: str | None = None
    routing_reason: str | None = None
    qualification: str | None = None
    qualification_reason: str | None = None

    def wanted(self) -> dict[LeadField, object]:
        """The fields this intent sets, canonical name to value, in the order declared above."""
        return {name: value for name in _LEAD_FIELDS if (value := getattr(self, name)) is not None}


@dataclass(frozen=True)
class TaskIntent:
    """A task a rule wants a person to do on an account, created once per `key`.

    `key` names the rule, the account and the period (the same all period long, so a re-run finds
    the task it created instead of adding one); `assignee` is a Vitally user id, None leaves the
    task unassigned; `spell`, see there. `sync/wire.py` makes it a Vitally task.
    """

    key: str
    account_id: str
    title: str
    description: str
    due: date
    assignee: str | None
    tags: tuple[str, ...] = ()
    # A task due once per spell of a state that comes back (a lead nurtured, qualified, nurtured
    # again): the day this spell began. The first spell's task keeps `key`; a task sent under it
    # before this day was another spell's, and this one is created under `key:<day>` (`sync.plan`).
    spell: date | None = None


# A default of `Decision.__new__` standing for "a new empty dict", as the fields' default_factory.
_NEW_DICT: Mapping[str, object] = MappingProxyType({})


# slots: a cycle builds one per rule and account. init=False: `__new__` builds it (see there).
@dataclass(frozen=True, slots=True, init=False)
class Decision:
    """One rule's verdict on one record.

    `record` is the Vitally account id for account rules and the Lead Id for lead rules.
    `traits` maps canonical written-trait names (``new_owner``, ``routing_reason``, ...) to the
    value the rule wants; `segments` are the managed segments it wants the record in; `manages`
    are the managed segments this rule is responsible for (so they are removed when it stops
    holding); `lead` is what a lead rule wants on its lead, `task` a task to create. A rule that
    did not fire still explains why (`reason`) and which inputs were unknown.
    """

    rule: str
    record: str
    fired: bool
    reason: str
    inputs: Mapping[str, object] = field(default_factory=dict)
    unknown: tuple[str, ...] = ()
    traits: Mapping[str, object] = field(default_factory=dict)
    segments: frozenset[str] = frozenset()
    manages: frozenset[str] = frozenset()
    team: Team | None = None
    region: str | None = None
    review: bool = False
    guarded_by: str | None = None
    lead: LeadIntent | None = None
    task: TaskIntent | None = None
    # Other routing rules that matched too (the first in the configured order wins).
    also_matched: tuple[str, ...] = ()
    # Named signals found (qualification's opening-message hooks, etc.).
    signals: tuple[str, ...] = ()

    def __new__(
        cls,
        rule: str,
        record: str,
        fired: bool,
        reason: str,
        inputs: Mapping[str, object] = _NEW_DICT,
        unknown: tuple[str, ...] = (),
        traits: Mapping[str, object] = _NEW_DICT,
        segments: frozenset[str] = frozenset(),
        manages: frozenset[str] = frozenset(),
        team: Team | None = None,
        region: str | None = None,
        review: bool = False,
        guarded_by: str | None = None,
        lead: LeadIntent | None = None,
        task: TaskIntent | None = None,
        also_matched: tuple[str, ...] = (),
        signals: tuple[str, ...] = (),
    ) -> Decision:
        """The decision with these fields (the parameters are the fields, in order, with their
        defaults; tests/test_rules_speed_helpers.py checks it).

        Built in a writable twin that is then given this class, instead of by a frozen
        dataclass's `__init__`, which sets the 17 fields one `object.__setattr__` call at a time:
        1.8 µs a decision against 0.5 µs, and a cycle builds one or two per account. The result
        is the same frozen instance (same slots, compares equal; setting a field raises)."""
        made = _WritableDecision()
        made.rule = rule
        made.record = record
        made.fired = fired
        made.reason = reason
        made.inputs = {} if inputs is _NEW_DICT else inputs
        made.unknown = unknown
        made.traits = {} if traits is _NEW_DICT else traits
        made.segments = segments
        made.manages = manages
        made.team = team
        made.region = region
        made.review = review
        made.guarded_by = guarded_by
        made.lead = lead
        made.task = task
        made.also_matched = also_matched
        made.signals = signals
        made.__class__ = cls  # type: ignore[assignment]  # the same slots: the layouts match
        return made  # type: ignore[return-value]


class _WritableDecision:
    """`Decision`'s slots without its frozenness: where `Decision.__new__` fills one in."""

    __slots__ = Decision.__slots__
    rule: str
    record: str
    fired: bool
    reason: str
    inputs: Mapping[str, object]
    unknown: tuple[str, ...]
    traits: Mapping[str, object]
    segments: frozenset[str]
    manages: frozenset[str]
    team: Team | None
    region: str | None
    review: bool
    guarded_by: str | None
    lead: LeadIntent | None
    task: TaskIntent | None
    also_matched: tuple[str, ...]
    signals: tuple[str, ...]


def always(record: object, ctx: object, policy: Policy, now: datetime) -> bool:
    """The necessary condition of a rule that has none cheaper than the rule itself."""
    return True


@dataclass(frozen=True)
class Rule(Generic[RecordT, ContextT]):
    """One rule: its id, its verdict and a cheap necessary condition.

    `decide(record, ctx, policy, now)` is the verdict on one record (an `Account` or a `Lead`),
    given what the rule may read besides it (`AccountContext` or `LeadContext`), the whole policy
    (the rule reads its own part) and the rules' clock; its `Decision.rule` is `id`.
    `may_fire(record, ctx, policy, now)` is false only when `decide` cannot fire: a cycle skips the
    verdict of a rule that cannot fire instead of building its explanation
    (tests/test_rules_fast_path.py checks it then decides exactly what the full evaluation does).
    """

    id: str
    decide: Callable[[RecordT, ContextT, Policy, datetime], Decision]
    may_fire: Callable[[RecordT, ContextT, Policy, datetime], bool] = always


AccountRule: TypeAlias = Rule[Account, AccountContext]
LeadRule: TypeAlias = Rule[Lead, LeadContext]


def wanting_nothing(decision: Decision, reason: str, *, guarded_by: str | None = None) -> Decision:
    """`decision` kept as a verdict (explain and the plan's reasons show it) that wants nothing
    written: not fired, no trait, segment, lead or task; what it manages stays listed, so the
    planner leaves those segments as they are. A rule switched off by `[rules.enabled]`, a routing
    winner held back by its qualification."""
    return replace(
        decision,
        fired=False,
        traits={},
        segments=frozenset(),
        lead=None,
        task=None,
        reason=reason,
        guarded_by=decision.guarded_by if guarded_by is None else guarded_by,
    )


# The traits whose value is a rule's reason: "<rule id>: <reason>" (`routing_reason`, written by a
# routing trigger) and "<rule id>: <recommendation>: <reasons>" (`qualification`).
REASON_TRAITS: frozenset[str] = frozenset({"routing_reason", "qualification"})


def reason_gist(trait: str, value: object) -> object:
    """What a plan compares of a trait's value (`sync.plan`): the value, but for a reason trait
    (`REASON_TRAITS`) the rule that wrote it (and the recommendation): the reason is why the account
    was routed or qualified as written then, and its text counts days ("created 3 days ago"), so
    the same rule's verdict on a later day is no change to write."""
    if trait not in REASON_TRAITS or not isinstance(value, str):
        return value
    parts = value.split(": ", 2)
    return tuple(parts[:2]) if trait == "qualification" else parts[0]


@lru_cache(maxsize=4096)
def fmt_num(value: float) -> str:
    """1234.5 -> '1,234.5'; 30000.0 -> '30,000'. (Cached: thresholds repeat in every reason. The
    accounts' own amounts seldom do: 65,536 entries held ~14 MiB at 100,000 accounts.)"""
    if float(value).is_integer():
        return f"{int(value):,}"
    return f"{value:,.2f}".rstrip("0").rstrip(".")


@lru_cache(maxsize=4096)
def product_key(name: str) -> str:
    """Product names compare case- and separator-insensitively ('Session replay' == 'session_replay')."""
    return "_".join(name.strip().casefold().replace("-", " ").split())


def add_months(day: date, months: int) -> date:
    """The same day `months` later (earlier when negative), clamped to the month's last day."""
    total = day.year * 12 + day.month - 1 + months
    year, month = divmod(total, 12)
    for last in (31, 30, 29, 28):
        try:
            return date(year, month + 1, min(day.day, last))
        except ValueError:
            continue
    raise AssertionError("unreachable")


def months_between(start: date, now: datetime | date) -> int:
    """Whole calendar months from `start` to `now`: the most months `n` with `add_months(start, n)`
    on or before `now` (negative when `now` is before `start`). A month counts once its day is
    reached, or the month's last day when it has no such day, as `add_months` clamps: from Aug 31,
    Nov 30 is 3 months (Nov 29 is 2), and Feb 28 of a common year is 6."""
    end = now.date() if isinstance(now, datetime) else now
    months = (end.year - start.year) * 12 + (end.month - start.month)
    if end.day < start.day and add_months(start, months) > end:
        months -= 1
    return months


def per_policy(derive: Callable[[Policy], DerivedT]) -> Callable[[Policy], DerivedT]:
    """`derive`, computed once per policy object: what a rule reads of the policy on every account
    (a set of segments, the ICP countries, its thresholds) is derived once, not per account.

    Keyed by identity, not equality: hashing a `Policy` (a tree of frozen dataclasses) costs more
    than deriving most values again. A `Policy` is frozen, so a value derived from it stays right;
    the cache holds the policy itself, so its id cannot be reused while the entry lives, and keeps
    the last few policies only (a process judges with one or two: the config's, a what-if's).
    """
    cache: dict[int, tuple[Any, DerivedT]] = {}

    def derived(policy: Policy) -> DerivedT:
        hit = cache.get(id(policy))
        if hit is not None and hit[0] is policy:
            return hit[1]
        value = derive(policy)
        if len(cache) >= 8:
            cache.clear()
        cache[id(policy)] = (policy, value)
        return value

    derived.__doc__ = derive.__doc__
    return derived
