"""Round robin: which member of a team's regional pool owns the next account (round-robin.md).

A pool hands work out in turn, in proportion to each member's weight, skipping people who are
paused, no longer active in Salesforce or at their capacity; when nobody can take it, it goes to
the pool's fallback owner (a queue or a user) and the decision says so. Every decision names the pool, who was
eligible, who was skipped and why.

The method is nginx's smooth weighted round robin. Each member has a *credit*: every draw, each
eligible member's credit grows by its weight, the highest credit wins (ties go to the member listed
first) and the winner's credit drops by the total weight of the eligible members. The credits are
the pool's whole memory; the caller stores them (the state database) and passes them back, so the
rotation survives restarts and reloads, and this module never draws twice for the same account
because it never draws on its own.

What that guarantees, for a pool whose members and weights do not change, starting from zero
credits, after n draws with nobody skipped (W = total weight, k = number of members):

- **Equal weights: exact turns.** Members are picked in pool order, cycle after cycle, so each has
  ⌊n/k⌋ or ⌈n/k⌉ assignments.
- **Never a whole assignment ahead.** Each member's count is less than n·w/W + 1. (A member's
  credit is exactly n·w − W·count, and a winner's credit, the largest of values summing to W,
  is positive before W is taken off, so no credit ever reaches −W.)
- **Exact shares every W draws.** After any multiple of W draws every member has exactly n·w/W
  and all credits are back to zero.
- **Behind by less than k − 1**, since the credits sum to zero. With two members this makes the
  share exact to within one either way. In larger pools with unequal weights a member can fall
  slightly more than one assignment behind part-way through a cycle (weights 1,1,1,1,3,3,3,3:
  17/16 behind after 11 draws); it catches up by the end of the cycle.

A member who is paused, inactive in Salesforce or at capacity keeps its credit untouched, and a
new member starts at zero, so pausing, resuming or adding someone never resets the others' shares;
a removed member's credit is simply dropped. From any stored state, a member's count over the next
draws differs from its weighted share by exactly (credit before − credit after) / W.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

__all__ = ["Assignment", "Member", "Pool", "charge", "choose", "explain_pool", "refund"]


@dataclass(frozen=True)
class Member:
    """One person in a pool. Paused members (on leave) stay in the pool and keep their credit.

    `capacity` is a soft cap on managed accounts (TAMs: 15); None means no cap.
    """

    user_id: str
    name: str
    weight: int = 1
    active: bool = True
    capacity: int | None = None
    email: str | None = None

    def __post_init__(self) -> None:
        # Config validation reports this to the user; this guard keeps a bad pool from drawing at all.
        if self.weight < 1:
            raise ValueError(f"round-robin member {self.name} ({self.user_id}): weight must be ≥ 1, not {self.weight}")


@dataclass(frozen=True)
class Pool:
    """The members of one team in one region, in the order that breaks ties."""

    team: str
    region: str
    members: tuple[Member, ...]
    fallback_owner: str | None = None
    """Who gets the lead when nobody is eligible: a queue (00G…) or a user (005…)."""

    def __post_init__(self) -> None:
        ids = [m.user_id for m in self.members]
        if len(set(ids)) != len(ids):
            duplicates = sorted({i for i in ids if ids.count(i) > 1})
            raise ValueError(f"round-robin pool {self.key}: members listed twice: {', '.join(duplicates)}")

    @property
    def key(self) -> str:
        return f"{self.team}/{self.region}"


@dataclass(frozen=True)
class Assignment:
    """One draw from a pool: who gets the account, who could have, who was skipped and why.

    `user_id` is the chosen member, or on fallback the pool's fallback owner (None if it has none).
    `skipped` maps user id to "paused", "inactive in Salesforce" or "at capacity (15/15)".
    """

    pool: str
    user_id: str | None
    name: str
    fallback: bool
    candidates: tuple[str, ...]
    skipped: Mapping[str, str]
    reason: str


def _skip_reason(
    member: Member, inactive_users: frozenset[str], load: Mapping[str, int], unknown_users: frozenset[str] = frozenset()
) -> str | None:
    if not member.active:
        return "paused"
    if member.user_id in unknown_users:
        return "not a Salesforce user"
    if member.user_id in inactive_users:
        return "inactive in Salesforce"
    if member.capacity is not None:
        managed = load.get(member.user_id, 0)
        if managed >= member.capacity:
            return f"at capacity ({managed}/{member.capacity})"
    return None


def _fallback_name(owner: str | None) -> str:
    """How a fallback is named: "fallback queue 00G…" (a queue id), "fallback user 005…", "nobody"."""
    if owner is None:
        return "nobody"
    return f"fallback {'queue' if owner.startswith('00G') else 'user'} {owner}"


def _credit(value: float) -> str:
    return f"{value:.2f}"


def choose(
    pool: Pool,
    credits: Mapping[str, float],
    *,
    inactive_users: frozenset[str] = frozenset(),
    load: Mapping[str, int] | None = None,
    unknown_users: frozenset[str] = frozenset(),
) -> tuple[Assignment, dict[str, float]]:
    """Draw the next owner from `pool` and return it with the pool's new credits.

    Eligible members are active, not in `inactive_users` (Salesforce users no longer active) nor
    in `unknown_users` (ids the org has no user for: Salesforce refuses them as owners), and
    below their capacity (`load` counts each user's managed accounts; missing means 0). Each
    eligible credit grows by its weight, the highest wins (ties: first in `pool.members`) and
    loses the eligible members' total weight. Credits missing from `credits` count as 0;
    ineligible members keep theirs; the returned map has exactly the pool's members.
    Nobody eligible → a fallback assignment to `pool.fallback_owner` (possibly None) and the
    credits unchanged. Pure: the same inputs give the same result and `credits` is not modified.
    """
    load = load or {}
    new_credits = {m.user_id: float(credits.get(m.user_id, 0.0)) for m in pool.members}
    skipped: dict[str, str] = {}
    eligible: list[Member] = []
    for member in pool.members:
        why = _skip_reason(member, inactive_users, load, unknown_users)
        if why is None:
            eligible.append(member)
        else:
            skipped[member.user_id] = why
    names = {m.user_id: m.name for m in pool.members}
    skipped_text = "; ".join(f"{names[uid]}: {why}" for uid, why in skipped.items())

    if not eligible:
        fallback = pool.fallback_owner
        name = _fallback_name(fallback)
        target = name if fallback is not None else "nobody (no fallback owner)"
        reason = f"{pool.key}: nobody eligible ({skipped_text or 'no members'}) → {target}"
        return Assignment(pool.key, fallback, name, True, (), skipped, reason), new_credits

    total = sum(m.weight for m in eligible)
    for member in eligible:
        new_credits[member.user_id] += member.weight
    best = max(new_credits[m.user_id] for m in eligible)
    tied = [m for m in eligible if new_credits[m.user_id] == best]
    winner = tied[0]
    new_credits[winner.user_id] -= total

    detail = f"weight {winner.weight}; credit {_credit(best)} highest of {len(eligible)} eligible"
    if len(tied) > 1:
        detail += f", tied with {', '.join(m.name for m in tied[1:])} and listed first"
    if skipped_text:
        detail += f"; skipped {skipped_text}"
    reason = f"{pool.key}: {winner.name} ({detail})"
    candidates = tuple(m.user_id for m in eligible)
    return Assignment(pool.key, winner.user_id, winner.name, False, candidates, skipped, reason), new_credits


def charge(pool: Pool, credits: Mapping[str, float], user_id: str, candidates: tuple[str, ...]) -> dict[str, float]:
    """The pool's credits after a draw that was already decided: `user_id` chosen among
    `candidates` (the members eligible then), as `choose` would have left them had it made that
    draw from `credits`. A reviewed plan's owner is applied this way (`crm-sync apply`): the draw
    made during the dry run is charged once, from the credits the pool holds when it is applied,
    and never drawn again. Each candidate still in the pool gains its weight and the chosen one
    loses their total, so the credits still sum to what they summed to and every guarantee above
    holds from there on. Pure, like `choose`; a chosen member no longer in the pool changes nothing."""
    new_credits = {m.user_id: float(credits.get(m.user_id, 0.0)) for m in pool.members}
    eligible = [m for m in pool.members if m.user_id in candidates]
    if user_id not in {m.user_id for m in eligible}:
        return new_credits
    for member in eligible:
        new_credits[member.user_id] += member.weight
    new_credits[user_id] -= sum(m.weight for m in eligible)
    return new_credits


def refund(pool: Pool, credits: Mapping[str, float], user_id: str, candidates: tuple[str, ...]) -> dict[str, float]:
    """The pool's credits with a draw taken back: `user_id` chosen among `candidates` (the members
    eligible then), undone as if it had never been made. A draw is taken back when its lead was
    never created and never will be with that owner (Salesforce refuses a user deactivated since
    the draw), so the pool draws again (`sync.owners`): the member keeps no charge for a lead it
    never got, and when they are active again their share is where it would have been. Exactly
    `charge` in reverse (the credits still sum to what they summed to); pure, and a member no
    longer in the pool changes nothing."""
    new_credits = {m.user_id: float(credits.get(m.user_id, 0.0)) for m in pool.members}
    eligible = [m for m in pool.members if m.user_id in candidates]
    if user_id not in {m.user_id for m in eligible}:
        return new_credits
    for member in eligible:
        new_credits[member.user_id] -= member.weight
    new_credits[user_id] += sum(m.weight for m in eligible)
    return new_credits


def explain_pool(
    pool: Pool,
    credits: Mapping[str, float],
    *,
    inactive_users: frozenset[str] = frozenset(),
    load: Mapping[str, int] | None = None,
    unknown_users: frozenset[str] = frozenset(),
) -> list[str]:
    """One line per member, in pool order: name, user id, weight, credit and whether the next draw
    could pick them (or why not), judged exactly as `choose` would."""
    load = load or {}
    lines = []
    for member in pool.members:
        why = _skip_reason(member, inactive_users, load, unknown_users)
        status = "eligible" if why is None else f"skipped: {why}"
        managed = ""
        if member.capacity is not None:
            managed = f", load {load.get(member.user_id, 0)}/{member.capacity}"
        credit = _credit(float(credits.get(member.user_id, 0.0)))
        lines.append(f"{member.name} ({member.user_id}): weight {member.weight}, credit {credit}{managed}, {status}")
    return lines
