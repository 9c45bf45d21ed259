"""Owners from the round-robin pools, chosen once per lead key.

The choice and the pool's new memory are written to the state in the caller's transaction (the
one that also queues the write carrying the owner), so a retry after a crash re-sends the same
owner and never draws again: no member is charged twice and none is skipped.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping

from core.model import SfUser
from rules.round_robin import choose
from state import OwnerChoice, StateDB
from sync.config import Config

__all__ = ["Owners", "unavailable_users"]


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

    def owner_for(self, key: str, team: str, region: str) -> OwnerChoice | None:
        """The owner of the lead `key`: the one chosen before, else a draw from the (team,
        region) pool, remembered. None when no pool is configured for it."""
        earlier = self.state.assignment(key)
        if earlier is not None:
            return earlier
        pool = self.config.pool_for(team, region)
        if pool is None:
            return None
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
            reason=assignment.reason,
            run_id=self.run_id,
            at=self.at,
            candidates=tuple(assignment.candidates),
            skipped=dict(assignment.skipped),
        )
        self.state.record_assignment(choice)
        if assignment.fallback:
            self.fallbacks.append(f"{key}: {assignment.reason}")
        return choice
