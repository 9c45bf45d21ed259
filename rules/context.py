"""What a rule may read besides its record: for an account, what Salesforce knows about it; for a
lead, what Salesforce knows about its company. `sync.facts` gathers both from the mirror."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from functools import lru_cache
from typing import TYPE_CHECKING, Any, Generic, TypeVar, overload

from core.model import Lead, Opportunity
from core.triage import Remembered

if TYPE_CHECKING:
    from rules.policy import Policy

__all__ = [
    "CLOSED_LEAD_STATUSES",
    "CLOSED_LOST",
    "CLOSED_WON",
    "EMPTY",
    "AccountContext",
    "LeadContext",
    "closed_statuses",
    "dropped_as_spam",
    "folded_statuses",
    "in_picklist",
    "is_closed",
    "is_open_stage",
    "is_stage",
    "picklist_key",
    "picklist_keys",
    "same_picklist",
    "support_request",
]

T = TypeVar("T")

# The opportunity stages that close an opportunity (every other stage, or none, is open), compared
# by `picklist_key` (`is_stage`): "Closed lost" is Closed Lost for every reader alike.
CLOSED_WON = "Closed Won"
CLOSED_LOST = "Closed Lost"
OPEN_OPPORTUNITY_EXCLUDED = (CLOSED_WON, CLOSED_LOST)
CLOSED_LEAD_STATUSES = (
    "Unqualified", "Disqualified", "Converted", "Closed - Converted", "Closed - Not Converted", "Closed - Support",
)  # fmt: skip


@lru_cache(maxsize=64)
def _closed(statuses: tuple[str, ...]) -> frozenset[str]:
    return frozenset(status.strip().casefold() for status in statuses if status.strip())


def folded_statuses(statuses: Iterable[str]) -> frozenset[str]:
    """`statuses` as every lead status is compared: casefolded, spaces around each ignored."""
    return _closed(tuple(statuses))


# The statuses every lead check treats as closed when no policy says more (casefolded).
_DEFAULT_CLOSED = _closed(CLOSED_LEAD_STATUSES)


def closed_statuses(policy: Policy) -> frozenset[str]:
    """The lead statuses that close a lead under this policy, casefolded: `CLOSED_LEAD_STATUSES`,
    the configured `[rules.episodes] disqualified_statuses` and `converted_statuses` (an org's own
    "Bad fit" a person disqualifies with), and the statuses the demo triage gives spam and support.
    Every reader of a lead's openness uses this one set: the routing guards and the planner
    (`AccountContext.open_leads`), the lead-source triggers, the lead score and the triage."""
    kept = _CLOSED_BY_POLICY.get(id(policy))
    if kept is not None and kept[0] is policy:  # every lead asks, several times: once per policy
        return kept[1]
    episodes, demo = policy.episodes, policy.demo
    closed = _closed(
        (
            *CLOSED_LEAD_STATUSES,
            *episodes.disqualified_statuses,
            *episodes.converted_statuses,
            demo.spam_status or "",
            demo.support_status or "",
        )
    )
    if len(_CLOSED_BY_POLICY) >= 64:
        _CLOSED_BY_POLICY.clear()
    _CLOSED_BY_POLICY[id(policy)] = (policy, closed)
    return closed


# `closed_statuses`' answers by the identity of the policy asked about (a policy is immutable; it
# is kept with its answer, so its id is not reused while the answer is here).
_CLOSED_BY_POLICY: dict[int, tuple[Policy, frozenset[str]]] = {}


@lru_cache(maxsize=1)
def _default_new() -> frozenset[str]:
    """`[rules.episodes] new_statuses` of the default policy, folded."""
    from rules.policy import EpisodePolicy  # the policy module reads this one's constants

    return folded_statuses(EpisodePolicy().new_statuses)


def support_request(lead: Lead, new: frozenset[str] | None = None) -> bool:
    """Whether the demo triage classified the lead a support request (`Classification__c`, any
    case, spaces around it ignored) and nobody has moved it from a new status since (`new`: the
    folded `[rules.episodes] new_statuses`, the default policy's when None; no status counts as
    new). Such a lead skipped the round robin and became a Zendesk ticket (lead-routing-and-scoring.md:
    "If 'support' or 'spam', it'll skip round robin"); with `[rules.demo] support_status` unset it
    stays open in its status, but it is nobody's sales engagement with its account: it is not one
    of the account's open leads (`AccountContext.open_leads`). A person who moves it on (works,
    nurtures, qualifies it) makes it one."""
    classification = lead.classification
    if classification is None or classification.strip().casefold() != "support":
        return False
    status = (lead.status or "").strip().casefold()
    return not status or status in (_default_new() if new is None else new)


def is_closed(status: str | None, closed: frozenset[str] = _DEFAULT_CLOSED) -> bool:
    """Whether a lead in `status` is closed (`closed`: `closed_statuses(policy)`), as the episodes
    compare statuses: case-insensitively, spaces around it ignored."""
    return status is not None and status.strip().casefold() in closed


@lru_cache(maxsize=1024)
def picklist_key(value: str) -> str:
    """A Salesforce picklist value (a LeadSource) as crm-sync compares it with a configured one:
    casefolded, each run of whitespace one space, none around it ("Demo  request " is "demo request").
    Every LeadSource check uses it: the lead-source triggers, the demo triage and the instant
    scheduler, and `sync`'s search of the mirror for the demo requests to ask the LLM about."""
    return " ".join(value.split()).casefold()


@lru_cache(maxsize=64)
def picklist_keys(values: tuple[str, ...]) -> frozenset[str]:
    """Configured picklist values (a setting's list of LeadSources) as `picklist_key` gives them."""
    return frozenset(picklist_key(value) for value in values)


def in_picklist(value: str | None, configured: tuple[str, ...]) -> bool:
    """Whether `value` is one of the picklist values `configured`, compared by `picklist_key`."""
    return value is not None and picklist_key(value) in picklist_keys(configured)


def same_picklist(value: str | None, configured: str) -> bool:
    """Whether `value` is the picklist value `configured`, compared by `picklist_key`."""
    return value is not None and picklist_key(value) == picklist_key(configured)


# `OPEN_OPPORTUNITY_EXCLUDED` as `is_open_stage` compares a stage with them.
_CLOSED_STAGES = frozenset(picklist_key(stage) for stage in OPEN_OPPORTUNITY_EXCLUDED)


def is_stage(stage: str | None, expected: str) -> bool:
    """Whether an opportunity's `StageName` is `expected` (`CLOSED_WON`, `CLOSED_LOST`), compared
    as every stage check compares it: any case, spaces ignored (`picklist_key`)."""
    return same_picklist(stage, expected)


def is_open_stage(stage: str | None) -> bool:
    """Whether an opportunity in `StageName` `stage` is open: neither Closed Won nor Closed Lost
    (any case, spaces ignored), or no stage known."""
    return stage is None or picklist_key(stage) not in _CLOSED_STAGES


def dropped_as_spam(lead: Lead) -> bool:
    """Whether the demo triage classified the lead spam (`Classification__c`, any case, spaces
    around it ignored): crm-sync dropped it (its status the spam status), no person disqualified it.
    Such a lead neither starts the cool-off (`rules.episodes`) nor counts as a lead of its company
    disqualified within the last month (the instant scheduler's check, `sync.facts`)."""
    classification = lead.classification
    return classification is not None and classification.strip().casefold() == "spam"


class _computed_once(Generic[T]):
    """`functools.cached_property` without its lock: Python 3.11's takes one on every first read
    (0.7 µs, twice per account with a Salesforce record in a cycle; 3.12 dropped it). Computed on
    first read and kept in the instance's dictionary, which then answers every later read."""

    def __init__(self, compute: Callable[[Any], T]) -> None:
        self.compute = compute
        self.name = compute.__name__
        self.__doc__ = compute.__doc__

    @overload
    def __get__(self, instance: None, owner: type | None = None) -> _computed_once[T]: ...
    @overload
    def __get__(self, instance: object, owner: type | None = None) -> T: ...
    def __get__(self, instance: object | None, owner: type | None = None) -> T | _computed_once[T]:
        if instance is None:
            return self
        value = self.compute(instance)
        instance.__dict__[self.name] = value
        return value


@dataclass(frozen=True)
class AccountContext:
    """Salesforce records linked to one Vitally account.

    `leads` are the Leads whose `Vitally_Account_Id__c` names the account; `opportunities` those
    of the Salesforce Account whose `Vitally_Account_Id__c` names it. Empty tuples mean "none
    known", which is what a cycle passes when Salesforce has nothing for the account.

    `otherwise_lead` is what `evaluate_account` tells the rules after routing and allocation: a
    routing trigger or the direct handover won, or allocation chose a New Owner, in this
    evaluation, so the account is already a lead for someone; or a trigger matched it and a guard
    held it back (the cool-off after a person's "no", a Slack channel, ...): the account is a lead
    by the handbook's criteria, held, not an onboarding lead (`otherwise_why` says which).

    `assigned_owners` maps the Id of a lead crm-sync created to the `OwnerId` crm-sync gave it: a
    different owner on the lead now means a person reassigned it (the lead is being worked).
    """

    leads: tuple[Lead, ...] = ()
    opportunities: tuple[Opportunity, ...] = ()
    otherwise_lead: bool = False
    assigned_owners: Mapping[str, str] = field(default_factory=dict)
    # The lead statuses that close a lead (`closed_statuses(policy)`: `sync.facts` gives the configured ones).
    closed: frozenset[str] = _DEFAULT_CLOSED
    # Another Vitally account of the same company (domain) created before this one, the company's
    # first signup: (its id, when it was created); None when none is known (`sync.signups`, asked
    # only for a Big Fish candidate).
    earlier_signup: tuple[str, datetime] | None = None
    # The open lead statuses nobody has moved a lead to (`[rules.episodes] new_statuses`, folded;
    # None: the default policy's): a support request still in one is no open lead (`support_request`).
    new: frozenset[str] | None = None
    # Why `otherwise_lead` holds, as the onboarding rule reports it.
    otherwise_why: str = "a routing rule fired"

    # Cached on the (frozen) context: the guards, the onboarding rules and the lifecycle stage all
    # ask for them while judging one account.
    @_computed_once
    def open_leads(self) -> tuple[Lead, ...]:
        """Leads not converted, not deleted, not in a closed status (`closed`) and not a support
        request nobody moved on (`support_request`)."""
        closed = self.closed
        return tuple(
            lead
            for lead in self.leads
            if not lead.is_converted
            and not lead.is_deleted
            and not is_closed(lead.status, closed)
            and not (lead.classification is not None and support_request(lead, self.new))
        )

    @_computed_once
    def open_opportunities(self) -> tuple[Opportunity, ...]:
        """Opportunities in neither closed stage (`is_open_stage`: any case, spaces ignored)."""
        opportunities = self.opportunities
        if not opportunities:  # most accounts have none
            return ()
        return tuple(o for o in opportunities if is_open_stage(o.stage_name))


EMPTY = AccountContext()


@dataclass(frozen=True)
class LeadContext:
    """What the lead rules read besides the lead: the latest day a lead of the same company, or of
    the account it is linked to, was disqualified (None when none was, or it is unknown), and the
    triage verdict the state remembers for the lead's submission (the LLM's, asked by `sync` before
    any rule reads it; with another classifier, that classifier's own verdict, kept by `sync`
    between cycles)."""

    company_disqualified_at: date | None = None
    triage: Remembered | None = None
    # The latest day a lead of the Vitally account the lead is linked to (`Vitally_Account_Id__c`)
    # was disqualified by a person, or the account's `lead_disqualified_at` trait says one was
    # (None when neither, or the lead is linked to no account): lead-routing-and-scoring.md, "If an
    # account has had a lead disqualified within the last month, we no longer show the scheduler".
    account_disqualified_at: date | None = None
    # The lead's `Classification__c` when a person set it: crm-sync did not write that value (or
    # wrote another since). The person's label decides the round robin, not the triage's
    # (lead-routing-and-scoring.md: "If 'support' or 'spam', it'll skip round robin"; a TAE who
    # reads a lead the triage called support and sets "sales" wants it owned: found by a review).
    person_classification: str | None = None
