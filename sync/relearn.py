"""Starting over safely: a state file that does not know crm-sync's own marks in the services (a
new or emptied file next to services crm-sync has written to, or an older copy restored from a
backup) re-learns from those marks instead of overwriting what is there.

The marks crm-sync leaves, and what is learned from each:

- **leads it created**, `Sync_Key__c` = `crm-sync-<account>-<episode>`: the lead exists (it is
  never created again), and its owner is an owner crm-sync drew, so the round-robin memory is
  rebuilt from them (the owner chosen per key, each pool member's count and credit); so is the
  owner of every inbound lead whose `Routing_Rule__c` names a rule (routed by crm-sync);
- **the `crm_sync_written` trait** on every account it writes: the values it last wrote there.
  The planner reads it every cycle (`sync.ownership.ours_in`), so a value crm-sync wrote stays
  its own and a value a person changed stays theirs; the onboarding specialists it names rebuild
  the Onboarding pools' memory;
- **its tasks' `crm-sync:` externalIds**: while re-learning, the apply step looks each task up on
  its account before sending it (`sync.apply`), and one that exists is not sent again, so a
  person's due date or description is never reset.

"State lost" is detected when the state has no history at all and Vitally shows the trait, or
when Salesforce shows leads under crm-sync's keys that the state neither wrote nor queued. It is
logged (`state_relearned`) and said on stderr.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from rules.round_robin import Pool
from state import OwnerChoice, StateDB
from sync.config import Config
from sync.vocabulary import CycleReport, Hooks, iso
from sync.wire import SYNC_KEY_PREFIX, WRITTEN_TRAIT, read_written_trait

__all__ = ["relearn", "replayed_memory"]

# The team each family of routing rules hands its leads to (rules/*.py); custom triggers name
# theirs in the config.
_TEAM_OF_FAMILY = {"product_led": "TAM", "new_business": "TAE", "bdr": "BDR", "onboarding": "Onboarding"}
_REASON = "re-learned from Salesforce after the state file was lost"


def relearn(config: Config, state: StateDB, report: CycleReport, hooks: Hooks, at: datetime) -> None:
    """Detect a state that does not know crm-sync's marks and re-learn from them (see the module's
    docstring), in the caller's transaction, before anything is planned."""
    unknown = state.unknown_sync_keys(SYNC_KEY_PREFIX)
    marked = 0 if state.has_history() else state.marked_accounts(WRITTEN_TRAIT)
    if not unknown and not marked:
        return
    report.relearning = True
    learned = _Relearner(config, state, report.run_id, iso(at)).run(set(unknown))
    report.counts["relearned_owners"] = learned.owners
    report.notices.append(
        "state lost: the state file does not know crm-sync's own marks in the services "
        f"({len(unknown)} lead(s) under crm-sync's keys, {marked} account(s) with its {WRITTEN_TRAIT} trait); "
        f"re-learned {learned.owners} owner(s) in {len(learned.pools)} pool(s); values crm-sync did not "
        "write are left alone and tasks that exist are not sent again"
    )
    hooks.log(
        "state_relearned",
        {"run_id": report.run_id, "unknown_leads": len(unknown), "marked_accounts": marked, "owners": learned.owners},
    )


@dataclass
class _Learned:
    owners: int = 0
    pools: set[str] = field(default_factory=set)


class _Relearner:
    def __init__(self, config: Config, state: StateDB, run_id: int, at: str) -> None:
        self.config = config
        self.state = state
        self.run_id = run_id
        self.at = at
        self.learned = _Learned()

    def run(self, unknown: set[str]) -> _Learned:
        for lead in _mirrored(self.state, "Lead"):
            key = lead.get("Sync_Key__c")
            if isinstance(key, str) and key in unknown:
                self.state.set_last_written("salesforce", key, {"Sync_Key__c": key}, self.run_id, self.at)
                self._owner(key, lead, lead.get("Routing_Rule__c"))
            elif not key and lead.get("Routing_Rule__c"):
                self._owner(str(lead.get("Id")), lead, lead.get("Routing_Rule__c"))
        for account in _mirrored(self.state, "accounts"):
            self._specialist(account)
        for pool in self.config.pools.values():
            if pool.key in self.learned.pools:
                self._rebuild_memory(pool)
        return self.learned

    def _owner(self, key: str, lead: Mapping[str, Any], rule: object) -> None:
        owner = lead.get("OwnerId")
        if not isinstance(owner, str) or self.state.assignment(key) is not None:
            return
        country = lead.get("CountryCode") or lead.get("Country")
        pool = self._pool_of(owner, _team_of(rule, self.config), country if isinstance(country, str) else None)
        if pool is not None:
            self._remember(key, pool, owner)

    def _specialist(self, account: Mapping[str, Any]) -> None:
        traits = account.get("traits")
        written = read_written_trait(traits.get(WRITTEN_TRAIT) if isinstance(traits, dict) else None)
        name = written.get(self.config.vitally.written_traits.get("onboarding_specialist", "onboarding_specialist"))
        key = f"onboarding-{account.get('id')}"
        if not isinstance(name, str) or self.state.assignment(key) is not None:
            return
        for pool in self.config.pools.values():
            member = next((m for m in pool.members if m.name == name), None)
            if pool.team == "Onboarding" and member is not None:
                self._remember(key, pool, member.user_id)
                return

    def _pool_of(self, owner: str, team: str | None, country: str | None) -> Pool | None:
        """The pool a lead's owner was drawn from: the pools that hold the owner (or use it as
        their queue), narrowed by the routing rule's team, then by the lead's region."""
        pools = [
            pool
            for pool in self.config.pools.values()
            if owner == pool.fallback_owner or any(m.user_id == owner for m in pool.members)
        ]
        pools = [pool for pool in pools if pool.team == team] or pools
        if len(pools) > 1 and country:
            region = self.config.policy.territories.region_of(country)
            pools = [pool for pool in pools if pool.region == region] or [p for p in pools if p.region == "*"] or pools
        return pools[0] if pools else None

    def _remember(self, key: str, pool: Pool, owner: str) -> None:
        fallback = owner == pool.fallback_owner
        name = next((m.name for m in pool.members if m.user_id == owner), owner)
        self.state.record_assignment(
            OwnerChoice(key, pool.key, owner, name, fallback, _REASON, self.run_id, self.at, candidates=(owner,))
        )
        self.learned.owners += 1
        self.learned.pools.add(pool.key)

    def _rebuild_memory(self, pool: Pool) -> None:
        self.state.set_pool_memory(pool.key, replayed_memory(pool, self.state.assignments_by_user(pool.key)))


def replayed_memory(pool: Pool, given: Mapping[str | None, int]) -> dict[str, tuple[float, int]]:
    """A pool's memory (user id → (credit, count)) rebuilt from how many leads each member was
    given: the count, and the credit smooth weighted round robin holds after those draws when
    nobody was skipped (rules/round_robin.py: n·w − W·count). With skips the credits differ from
    the lost ones, but still sum to zero, so the next draws even out what the counts say."""
    counts = Counter({m.user_id: given.get(m.user_id, 0) for m in pool.members})
    draws = sum(counts.values())
    total = sum(m.weight for m in pool.members)
    return {m.user_id: (float(draws * m.weight - total * counts[m.user_id]), counts[m.user_id]) for m in pool.members}


def _team_of(rule: object, config: Config) -> str | None:
    if not isinstance(rule, str):
        return None
    custom = next((t for t in config.custom_triggers if t.id == rule), None)
    if custom is not None:
        return str(custom.trigger.team)
    return _TEAM_OF_FAMILY.get(rule.split(".", 1)[0])


def _mirrored(state: StateDB, kind: str) -> Iterator[dict[str, Any]]:
    """The well-formed raw records of the mirror: Salesforce `kind` records, or Vitally accounts."""
    rows = state.iter_sf(kind) if kind != "accounts" else ((i, raw, err) for i, raw, err, _ in state.iter_accounts())
    for _id, raw, error in rows:
        if error:
            continue
        record = json.loads(raw)
        if isinstance(record, dict):
            yield record
