"""Incremental decisions: a cycle re-judges only the accounts whose judgement could have changed.

An account's plan is a pure function of its raw JSON in the mirror, the Salesforce facts joined to
it (`SalesforceFacts.context_for`, after this cycle's own lead writes), the rules and config, and
the rules' clock; and, for a Big Fish candidate, which account of its company signed up first
(`sync.signups`: a cycle forgets the judgements of a company's accounts when its first signup
changes, before it judges anything). After a cycle judged an account and planned *nothing* for it
(no write, no new conflict, no rule error, no lead or specialist waiting for an owner: a conflict
reported before and found again with the same value of the person's is nothing new, and stays open
while the judgement holds, `Planner._held`), the state keeps, in `account_inputs`:

- the fingerprint of its Salesforce facts (`SalesforceFacts.fingerprint`: a digest of the raw
  records its context is made of, no lead parsed; '' when Salesforce has nothing);
- the fingerprint of the rules and config (`rules_fingerprint`: the policy, the custom triggers,
  the trait keys, the conflict settings, the product version and the source of the code that
  decides and plans);
- the window of the rules' clock in which the judgement holds (`clock_window`: from the start of
  its day to the first day a date it read may change it);
- the TAM it counts for in a pool member's capacity (the owners' pass needs every account's).

The raw JSON needs no fingerprint: a trigger on the mirror deletes an account's record whenever its
row is written (read again from Vitally, marked malformed, inserted or removed).

A later cycle skips such an account, without even reading its JSON, when nothing of the above
changed and its rules' clock is inside the window: judging it again would plan nothing again.
Every other account is judged in full, as without this module, in the same order (the mirror's). `--full`
judges every account (and stores their records afresh).

The clock: every date a rule reads is compared with `now.date()` (days since, months between,
windows, cool-offs, roll-offs, due dates: rules/guards.py `days_since`, rules/base.py
`months_between`, rules/episodes.py, rules/qualification.py, rules/product_led.py,
rules/onboarding.py, rules/signals.py, rules/new_business.py, rules/bdr.py, rules/allocation.py),
and each comparison says the first day on which its outcome can differ (`rules.clock`: a cool-off's
end, the day a count of paying months reaches the threshold, the day a close date enters or leaves
a window, the next quarter of a once-a-quarter task). `Planner._judge_account` collects the
earliest of those days over the account's evaluation (`rules.clock.watching`), and its judgement
holds until the start of that day, or for good when none was said (a reason's text counting days
is no change to plan: `rules.base.reason_gist`). One variable reads
the time of day: a custom trigger's `days_since_created` (whole days of `now - created_at`), which
grows at `created_at` plus a whole number of days. A trigger whose `when` compares it with numbers
(`days_since_created < 400`) says the instants around `now` at which it reaches one of them
(`rules.clock.holds_between`), and the window is narrowed to those; one that uses it otherwise
(`days_since_created % 7 == 0`) narrows it to the whole day of `now - created_at` it is in. A
custom trigger's `paying_months` compared with numbers ends the window on the day the count reaches
the next of them, otherwise on its next monthly anniversary
(`rules.expressions.CompiledTrigger.clock_steps`). A reason template reading either is only a text.
A routed account's planned lead is stamped `now`, but an account waiting for a new lead is never
skipped (one whose episode's lead is open already waits for nothing).

Leads (`LeadBook`): a lead's plan is a pure function of its raw JSON in the mirror, its context
(`LeadContext`: the day its company last had a lead disqualified, the LLM's verdict remembered for
it), the rules and config, the rules' day, and what crm-sync wrote to it (read only when a field
differs, which plans a write or a conflict). After a cycle judged a lead and planned nothing for it
(no write, no new conflict, no owner drawn by the round robin in this run, no change the accounts' rules were
shown), `lead_inputs` keeps its company's key, its context's fingerprint (`lead_inputs_fingerprint`:
the raw JSON of its company's disqualified leads, which the day comes from, and the remembered
verdict), the rules' fingerprint and the window of the rules' clock (to the day the instant
scheduler's month after that disqualification ends, `rules.clock`, or for good); a trigger on the
mirror deletes the record whenever the lead's row is written. A later cycle skips such a lead,
without parsing it or its company's disqualified leads, in both lead passes (the linked leads shown
to the accounts' rules, and the leads' own plan), while its company's disqualified leads and its
remembered verdict give the same fingerprint, the rules are the same and the rules' clock is inside
the window; a lead with a write still pending is always judged. The offline triage's verdict is a
function of the lead's record and the classifier (part of the rules' fingerprint), and is kept in
the state too (`sync.verdicts`).
"""

from __future__ import annotations

import dataclasses
import enum
import hashlib
from collections import Counter
from collections.abc import Collection, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from functools import cache
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from core.model import Account, Lead
from core.triage import Remembered
from rules.context import same_picklist
from state import StateDB
from sync.config import Config
from sync.facts import SalesforceFacts, company_key

__all__ = [
    "Book",
    "LeadBook",
    "clock_window",
    "code_digest",
    "digest_of",
    "lead_inputs_fingerprint",
    "product_version",
    "rules_fingerprint",
]

_ROOT = Path(__file__).resolve().parent.parent
_DECIDING_CODE = ("core", "rules", "sync")  # the packages whose source decides and plans
_DAY = timedelta(days=1)
_NEVER = datetime(9999, 1, 1)  # the end of the window of a judgement no clock can change
_BATCH = 1000  # judgements stored or forgotten per statement batch

AccountRow = tuple[str, str, None, int | None]  # (id, raw JSON, no error, the run that read it)


def _canonical(value: Any) -> Any:
    """`value` as plain, ordered data whose repr is the same in every process (sets sorted: their
    order depends on the process's hash seed)."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        fields = dataclasses.fields(value)
        return (type(value).__name__, tuple((f.name, _canonical(getattr(value, f.name))) for f in fields))
    if isinstance(value, Mapping):
        return ("map", tuple(sorted(((repr(_canonical(k)), _canonical(v)) for k, v in value.items()), key=repr)))
    if isinstance(value, set | frozenset):
        return ("set", tuple(sorted((_canonical(v) for v in value), key=repr)))
    if isinstance(value, list | tuple):
        return tuple(_canonical(v) for v in value)
    if isinstance(value, enum.Enum):
        return (type(value).__name__, value.name)
    return value


def digest_of(value: Any) -> str:
    """A short digest of `value` that is the same in every process (`_canonical`)."""
    return hashlib.blake2b(repr(_canonical(value)).encode(), digest_size=16).hexdigest()


@cache
def code_digest() -> str:
    """The source of the code that decides and plans: a changed rule invalidates every judgement."""
    digest = hashlib.blake2b(digest_size=16)
    for package in _DECIDING_CODE:
        # The source, and the data it reads (the triage model's training examples).
        for path in sorted([*(_ROOT / package).rglob("*.py"), *(_ROOT / package).rglob("*.jsonl")]):
            digest.update(str(path.relative_to(_ROOT)).encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()


@cache
def product_version() -> str:
    """The installed crm-sync's version ('unknown' when it is run from a bare source tree), read
    once per process (as `code_digest`: the code a process runs is the code it started with, even
    if the package is upgraded under it); each cycle asks twice, and the metadata lookup is ~3 ms."""
    try:
        return version("crm-sync")
    except PackageNotFoundError:
        return "unknown"


def rules_fingerprint(config: Config, now: datetime) -> str:
    """Everything of the config and product an account's plan depends on besides its own records
    and the clock's instant (never a secret: the services' settings are left out): the key roles
    and owner fields an account is parsed with, as its traits; the round-robin pools (which
    inbound lead an owner can be drawn for); and the UTC offset of the rules'
    clock `now`, which decides the calendar day the rules read (a judgement made at 00:30+02:00,
    the 23rd, does not hold at 23:00Z the 22nd, although its day window covers that instant)."""
    vitally = config.vitally
    return digest_of(
        (
            config.policy,
            tuple(trigger.trigger for trigger in config.custom_triggers),
            vitally.trait_keys,
            vitally.written_traits,
            vitally.segment_traits,
            vitally.key_roles,
            vitally.owner_fields,
            str(now.utcoffset()),
            config.on_conflict,
            config.on_first_sight,
            sorted(config.pools.items()),
            product_version(),
            code_digest(),
        )
    )


def _epoch(moment: datetime) -> float:
    return (moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)).timestamp()


def clock_window(
    now: datetime, *, until: date | None, since: datetime | None = None, until_at: datetime | None = None
) -> tuple[datetime, datetime]:
    """The rules' clock times around `now` between which a judgement cannot change by the clock
    alone: from the start of the day of `now` (in its zone) to the start of `until`, the first day on
    which the clock alone may change a verdict of its evaluation (`rules.clock`; None: none can, and
    the window has no end), narrowed to `since` and `until_at`, the instants between which the
    verdicts reading a count that steps at an instant hold (a custom trigger's `days_since_created`,
    `rules.clock.holds_between`)."""
    start = datetime.combine(now.date(), time(), tzinfo=now.tzinfo)
    end = _NEVER.replace(tzinfo=now.tzinfo) if until is None else datetime.combine(until, time(), tzinfo=now.tzinfo)
    if since is not None:
        start = max(start, since)
    if until_at is not None:
        end = min(end, until_at)
    return start, end


@dataclass
class Book:
    """The accounts one cycle judges, and what it learns for the next one. `accounts` yields the
    rows to judge (the mirror's order); `judged` records each verdict; `managers` counts the TAMs of the
    accounts skipped; `save` stores what was learnt (in the cycle's transaction)."""

    state: StateDB
    facts: SalesforceFacts
    now: datetime
    rules: str
    full: bool
    skipped: int = 0
    managers: Counter[str] = field(default_factory=Counter)
    _learnt: list[tuple[str, str, str, float, float, str | None]] = field(default_factory=list)
    _stale: list[str] = field(default_factory=list)

    @classmethod
    def of(cls, config: Config, state: StateDB, facts: SalesforceFacts, now: datetime, *, full: bool) -> Book:
        return cls(state, facts, now, rules_fingerprint(config, now), full)

    def accounts(self) -> Iterator[AccountRow]:
        """The well-formed mirrored accounts this cycle must judge, as `StateDB.iter_accounts`
        rows, in the mirror's order; the others are counted in `skipped` and their TAMs in `managers`.

        Which ones is SQLite's to say (`StateDB.accounts_to_judge`): those with no stored
        judgement, one under other rules, outside its clock window, with a write pending, or
        whose Salesforce facts changed. The last are found here by comparing the fingerprints
        stored with the current ones, for the accounts that have facts (`SalesforceFacts.fingerprint`);
        the rows of the accounts whose judgement holds never reach Python."""
        if self.full or not self.state.has_judgements():  # nothing can hold (a cold cycle): no fingerprint compared
            for record_id, raw, error, read_run in self.state.iter_accounts():
                if not error:
                    yield record_id, raw, None, read_run
            return
        stored = self.state.stored_facts()
        facts = self.facts
        changed = [
            account_id
            for account_id in facts.with_facts()
            if stored.pop(account_id, "") != facts.fingerprint(account_id)
        ]
        changed.extend(stored)  # facts stored, none now
        at = _epoch(self.now)
        self.skipped, self.managers = self.state.accounts_holding(self.rules, at, changed)
        for record_id, raw, read_run in self.state.accounts_to_judge(self.rules, at, changed):
            yield record_id, raw, None, read_run

    def judged(
        self,
        account: Account,
        *,
        planned_nothing: bool,
        manager: str | None,
        until: date | None,
        since: datetime | None = None,
        until_at: datetime | None = None,
    ) -> None:
        """The verdict of this cycle on `account`: a judgement that planned nothing is stored
        with its inputs and clock window (`clock_window` of what `rules.clock` collected: `until`,
        the first day the clock alone may change it, and the instants `since` and `until_at`);
        any other is forgotten (judged again next cycle)."""
        window = clock_window(self.now, until=until, since=since, until_at=until_at) if planned_nothing else None
        if window is None or window[1] <= window[0]:  # planned something, or no clock window
            self._stale.append(account.id)
        else:
            facts = self.facts.fingerprint(account.id)
            self._learnt.append((account.id, facts, self.rules, _epoch(window[0]), _epoch(window[1]), manager))
        # Either list flushes the batch: a cold cycle forgets nearly every account (each planned
        # something), and 100,000 ids held to the end were ~5 MiB of its peak.
        if len(self._learnt) + len(self._stale) >= _BATCH:
            self.save()

    def save(self) -> None:
        self.state.save_account_inputs(self._learnt)
        self.state.forget_account_inputs(self._stale)
        self._learnt.clear()
        self._stale.clear()


def lead_inputs_fingerprint(disqualified: str, triage: Remembered | None) -> str:
    """What a lead's rules read besides the lead itself and the rules (its `LeadContext`), as the
    mirror holds it: the fingerprint of its company's disqualified leads
    (`SalesforceFacts.disqualified_fingerprint`, from which their latest day comes) and the triage
    verdict the state remembers for it (the LLM's).

    Computed for every lead of every cycle, so without `_canonical`'s walk: text, and a
    `Remembered` of text and a `Triage` of text and a number, whose repr is the same in every
    process."""
    text = repr((disqualified, triage))
    return hashlib.blake2b(text.encode(), digest_size=16).hexdigest()


def _lead_window(now: datetime, until: date | None) -> tuple[float, float]:
    """From the start of the day of `now` (in its zone) to the start of `until` (None: no end), in
    epoch seconds: the lead rules read the clock as `now.date()` only (the instant scheduler's
    months since a disqualification), never the time, and say when it may change them (`rules.clock`)."""
    start = datetime.combine(now.date(), time(), tzinfo=now.tzinfo)
    end = _NEVER.replace(tzinfo=now.tzinfo) if until is None else datetime.combine(until, time(), tzinfo=now.tzinfo)
    return _epoch(start), _epoch(end)


# Put before a lead's context fingerprint while the owner the round robin chose for it is
# inactive or no user of the org (`LeadBook.of`).
_OWNER_GONE = "owner-gone:"


@dataclass
class LeadBook:
    """The leads one cycle judges, and what it learns for the next one (see "Leads" in the module
    docstring). `holds(id)` says whether a lead's stored judgement still holds (it planned nothing
    and its record, context, rules and day are unchanged): such a lead is neither parsed nor judged.
    `judged` records each verdict; `save` stores what was learnt (in the cycle's transaction).
    With `full`, every lead is judged and nothing stored is trusted; with `learn` off (a planning
    scope, an event's mini-cycle) nothing is stored either."""

    state: StateDB
    facts: SalesforceFacts
    rules: str
    now: datetime
    holding: frozenset[str] = frozenset()
    # The leads whose owner chosen earlier by the round robin is unavailable now (`of`).
    owner_gone: frozenset[str] = frozenset()
    learn: bool = True
    skipped: int = 0
    _learnt: list[tuple[str, str, str, str, float, float]] = field(default_factory=list)
    _stale: list[str] = field(default_factory=list)
    _fingerprints: dict[tuple[str, Remembered | None], str] = field(default_factory=dict)
    # The instant scheduler also reads the account a demo request is linked to (its other leads and
    # its `lead_disqualified_at` trait, `sync.decider`): the demo lead source and that trait's key.
    demo_source: str = "Demo request"
    trait_key: str = "lead_disqualified_at"
    _accounts: dict[str, str] = field(default_factory=dict)

    @classmethod
    def of(
        cls,
        config: Config,
        state: StateDB,
        facts: SalesforceFacts,
        now: datetime,
        *,
        full: bool,
        learn: bool = True,
        unavailable: Collection[str] = (),
    ) -> LeadBook:
        """The book of a cycle at `now`: which stored lead judgements hold, read once (the facts a
        lead's context comes from do not change during the plan). Whether the owner the round
        robin chose for a lead earlier is one of the `unavailable` users (inactive, or no user of
        the org: `sync.owners.unavailable_users`) is part of the lead's context: a lead whose
        owner leaves (or comes back) is judged once more, and a lead that asks for that owner
        (its owner write a person's conflict, held) has it taken back and drawn again, as a whole
        evaluation would; one that asks for no owner then holds again."""
        rules = rules_fingerprint(config, now)
        trait_key = config.vitally.trait_keys.get("lead_disqualified_at", "lead_disqualified_at")
        book = cls(
            state, facts, rules, now, learn=learn, demo_source=config.policy.demo.lead_source, trait_key=trait_key
        )
        if unavailable:
            book.owner_gone = frozenset(state.assigned_to(unavailable))
        if not full:
            at = _epoch(now)
            triage_of = facts.triage_of
            # The stored company is its key (`sync.facts.company_key`), which names the same disqualified leads;
            # most leads share a company's context: its fingerprint is asked for once per
            # (company, remembered verdict), not once per lead.
            known: dict[tuple[str, Remembered | None], str] = {}
            holding = []
            judged = state.leads_judged(rules, at)
            linked = book._scheduled_accounts(judged)
            for lead, (company, context) in judged.items():
                key = (company, triage_of(lead))
                current = known.get(key)
                if current is None:
                    current = known[key] = book._shared_fingerprint(lead, company or None)
                account = linked.get(lead)
                if account is not None:
                    current += book._account_fingerprint(account)
                if lead in book.owner_gone:
                    current = _OWNER_GONE + current
                if current == context:
                    holding.append(lead)
            book.holding = frozenset(holding)
        return book

    def _scheduled_accounts(self, leads: Collection[str]) -> dict[str, str]:
        """Lead id → the Vitally account it is linked to, for the demo requests among `leads` (the
        instant scheduler reads that account); their accounts' traits are read at once."""
        found = {
            lead: account
            for lead, (account, source) in self.state.lead_links(leads).items()
            if isinstance(source, str) and same_picklist(source, self.demo_source)
        }
        missing = sorted(set(found.values()) - self._accounts.keys())
        if missing:
            traits = self.state.account_traits(missing, self.trait_key)
            for account in missing:
                self._accounts[account] = self._account_digest(account, traits.get(account))
        return found

    def _account_digest(self, account: str, trait: object) -> str:
        text = repr((self.facts.linked_leads_digest(account), trait))
        return "|account:" + hashlib.blake2b(text.encode(), digest_size=16).hexdigest()

    def _account_fingerprint(self, account: str) -> str:
        """What the scheduler reads of the account a demo request is linked to: its linked leads as
        the mirror holds them and its `lead_disqualified_at` trait (`Decider.lead`)."""
        known = self._accounts.get(account)
        if known is None:
            trait = self.state.account_traits([account], self.trait_key).get(account)
            known = self._accounts[account] = self._account_digest(account, trait)
        return known

    @classmethod
    def everything(cls, config: Config, state: StateDB, facts: SalesforceFacts, now: datetime) -> LeadBook:
        """Judge every lead and learn nothing (an event's mini-cycle: it plans a few records)."""
        return cls.of(config, state, facts, now, full=True, learn=False)

    def _context_fingerprint(self, lead_id: str, company: str | None) -> str:
        shared = self._shared_fingerprint(lead_id, company)
        return _OWNER_GONE + shared if lead_id in self.owner_gone else shared

    def _shared_fingerprint(self, lead_id: str, company: str | None) -> str:
        """The part of a lead's context most leads share: its company's disqualified leads and
        the LLM's verdict remembered for it."""
        facts = self.facts
        key = (facts.disqualified_fingerprint(company), facts.triage_of(lead_id))
        known = self._fingerprints.get(key)
        if known is None:  # most leads share a context (no disqualified company, no verdict): digest it once
            known = self._fingerprints[key] = lead_inputs_fingerprint(*key)
        return known

    def holds(self, lead_id: str) -> bool:
        return lead_id in self.holding

    def judged(self, lead: Lead, *, planned_nothing: bool, until: date | None) -> None:
        """This cycle's verdict on `lead`: one that planned nothing is stored with what it read,
        until the day `until` the clock alone may change it (None: never, `rules.clock`); any other
        is forgotten (judged again next cycle)."""
        if not self.learn:
            return
        if not planned_nothing:
            self._stale.append(lead.id)
        else:
            company = company_key(lead.company or "")
            context = self._context_fingerprint(lead.id, lead.company)
            account = lead.vitally_account_id
            if account and lead.lead_source and same_picklist(lead.lead_source, self.demo_source):
                context += self._account_fingerprint(account)
            self._learnt.append((lead.id, company, context, self.rules, *_lead_window(self.now, until)))
        if len(self._learnt) + len(self._stale) >= _BATCH:
            self.save()

    def save(self) -> None:
        self.state.save_lead_inputs(self._learnt)
        self.state.forget_lead_inputs(self._stale)
        self._learnt.clear()
        self._stale.clear()
