"""Owners from the round-robin pools, chosen once per lead key.

The choice and the pool's new memory are written to the state in the caller's transaction (the
one that also queues the write carrying the owner), so a retry after a crash re-sends the same
owner and never draws again: no member is charged twice and none is skipped.
"""

from __future__ import annotations

from collections import Counter

from rules.round_robin import choose
from state import OwnerChoice, StateDB
from sync.config import Config

__all__ = ["Owners"]


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
    ) -> None:
        self.config = config
        self.state = state
        self.inactive_users = inactive_users
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
        assignment, credits = choose(pool, self.state.credits(pool.key), inactive_users=self.inactive_users, load=load)
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
