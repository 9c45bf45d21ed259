"""Owners from the round-robin pools, chosen once per lead key.

The choice and the pool's new memory are written to the state in the caller's transaction (the
one that also queues the write carrying the owner), so a retry after a crash re-sends the same
owner and never draws again: no member is charged twice and none is skipped.

One case draws again: the owner chosen for a lead that was never created (its write refused,
failing, or not sent yet) has since been deactivated in Salesforce, or is no user of the org at
all. Salesforce refuses such an owner (`INACTIVE_OWNER_OR_USER`), so the lead would wait forever,
parked. The draw is taken back (`rules.round_robin.refund`: that member is charged nothing for a
lead they never got), the pool draws again, and the writes that carried the old owner are set
aside with the reason. A send whose answer was lost may have created the lead with the old
owner: it cannot be drawn again then, because every plan follows a read that shows the lead
(a cycle reads Lead changes since its cursor less `lookback_seconds`, and rolls back before
planning when that read fails; a mini-cycle reads the leads linked to its accounts fresh), and
callers ask for an owner only for a lead that read did not show.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping

from core.model import SfUser
from rules.round_robin import Pool, choose, refund
from state import OwnerChoice, StateDB
from sync.config import Config

__all__ = ["DRAWN_AGAIN", "Owners", "unavailable_users"]

# How the reason of a draw that replaced a taken-back one goes on (`Owners.owner_for`).
DRAWN_AGAIN = "; drawn again: "


def unavailable_users(users: Mapping[str, SfUser], config: Config) -> tuple[frozenset[str], frozenset[str]]:
    """(the Salesforce users no longer active, the pool members' user ids the org has no user for),
    as the round robin skips them: Salesforce refuses either as a lead's owner
    (`INACTIVE_OWNER_OR_USER`, `INVALID_CROSS_REFERENCE_KEY`), so a lead drawn for one would never
    be created. The mirror holds every user the org has (they are deactivated, never deleted);
    while it holds none (nothing read yet), no member is taken for unknown."""
    inactive = frozenset(user.id for user in users.values() if not user.is_active)
    if not users:
        return inactive, frozenset()
    members = {member.user_id for pool in config.pools.values() for member in pool.members}
    return inactive, frozenset(user_id for user_id in members if user_id not in users)


class Owners:
    """Looks up or draws owners for one cycle."""

    def __init__(
        self,
        config: Config,
        state: StateDB,
        inactive_users: frozenset[str],
        managed_by_email: Counter[str],
        run_id: int,
        at: str,
        unknown_users: frozenset[str] = frozenset(),
    ) -> None:
        self.config = config
        self.state = state
        self.inactive_users = inactive_users
        self.unknown_users = unknown_users
        self.managed_by_email = managed_by_email
        self.run_id = run_id
        self.at = at
        self.fallbacks: list[str] = []
        self.no_pool = 0  # how many times a lead's team had no pool for its region

    def owner_for(self, key: str, team: str, region: str, *, salesforce_owner: bool = True) -> OwnerChoice | None:
        """The owner of the lead `key`: the one chosen before, else a draw from the (team,
        region) pool, remembered. None when no pool is configured for it, which is reported with the
        fallbacks (`fallbacks`, the report's, counted as `no_pool`): the lead gets no owner from
        crm-sync, so the org's assignment rule or its owner in Salesforce stays. Callers ask only while
        the lead does not carry its owner yet: a chosen owner Salesforce would refuse as a lead's
        `OwnerId` is drawn again (see the module's docstring); not for `salesforce_owner` False (an
        onboarding specialist, named in a Vitally trait and task, which nothing refuses)."""
        earlier = self.state.assignment(key)
        if earlier is not None:
            why = self.take_back(earlier) if salesforce_owner else None
            if why is None:
                return earlier
            pool = self.config.pool_for(team, region)
            if pool is None:
                self.unpooled(key, team, region, salesforce_owner=salesforce_owner)
                return None
            return self._draw(key, pool, again=f"{DRAWN_AGAIN}{why} and never got the lead")
        pool = self.config.pool_for(team, region)
        if pool is None:
            self.unpooled(key, team, region, salesforce_owner=salesforce_owner)
            return None
        return self._draw(key, pool)

    def unpooled(self, key: str, team: str, region: str, *, salesforce_owner: bool = False) -> None:
        """No pool for (team, region): reported, nobody drawn (by every cycle that asks: a lead's
        judgement then holds until it changes, as an onboarding account's does, which the planner
        reports through this without asking for an owner)."""
        self.no_pool += 1
        if salesforce_owner:
            left = "no owner drawn, the org's assignment rule or the owner Salesforce gave the lead stays"
        else:
            left = "no specialist drawn, the account's specialist trait stays empty and no task is created"
        self.fallbacks.append(f'{key}: no {team} pool for region {region} ([[pools]] team and region, or "*"): {left}')

    def take_back(self, earlier: OwnerChoice) -> str | None:
        """Take back `earlier` when Salesforce would refuse its owner (inactive, or no user of the
        org): refund its pool, forget it, and set aside the writes carrying that owner; returns
        why ("Tam 0 (005…), drawn in run 3, is inactive in Salesforce"), or None when it stands."""
        gone = self._gone(earlier)
        if gone is None:
            return None
        user = earlier.user_id or ""
        drawn_from = next((p for p in self.config.pools.values() if p.key == earlier.pool), None)
        if drawn_from is not None:
            credits = refund(drawn_from, self.state.credits(drawn_from.key), user, earlier.candidates)
            self.state.save_credits(drawn_from.key, credits, None, refunded=user)
        self.state.forget_assignment(earlier.key)
        why = f"{earlier.name} ({user}), drawn in run {earlier.run_id}, is {gone}"
        self.state.supersede_owned_by(earlier.key, user, f"drawn again: {why}", self.at)
        return why

    def _gone(self, choice: OwnerChoice) -> str | None:
        """Why Salesforce would refuse the owner chosen earlier ("inactive in Salesforce", "not a
        Salesforce user"); None when it would not."""
        user = choice.user_id
        if choice.fallback or user is None:
            return None  # a fallback queue or user is the operator's, checked by `crm-sync check`
        why = "not a Salesforce user" if user in self.unknown_users else None
        why = "inactive in Salesforce" if user in self.inactive_users else why
        return why

    def _draw(self, key: str, pool: Pool, again: str = "") -> OwnerChoice:
        """Draw from `pool` for `key`, charge it and remember the choice (`again`: why an earlier
        draw was taken back, at the end of the reason)."""
        load = {
            member.user_id: self.managed_by_email[member.email]
            for member in pool.members
            if member.email and member.capacity is not None
        }
        assignment, credits = choose(
            pool,
            self.state.credits(pool.key),
            inactive_users=self.inactive_users,
            load=load,
            unknown_users=self.unknown_users,
        )
        self.state.save_credits(pool.key, credits, None if assignment.fallback else assignment.user_id)
        choice = OwnerChoice(
            key=key,
            pool=assignment.pool,
            user_id=assignment.user_id,
            name=assignment.name,
            fallback=assignment.fallback,
            reason=assignment.reason + again,
            run_id=self.run_id,
            at=self.at,
            candidates=tuple(assignment.candidates),
            skipped=dict(assignment.skipped),
        )
        self.state.record_assignment(choice)
        if assignment.fallback:
            self.fallbacks.append(f"{key}: {assignment.reason}")
        return choice
