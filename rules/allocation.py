"""Account allocation: which team and region should own a $20k+ account (account-allocation.md)."""

from __future__ import annotations

from collections import Counter
from datetime import datetime
from typing import TYPE_CHECKING

from core.model import Account
from rules import clock
from rules.base import AccountRule, Decision, Rule, fmt_num, months_between, per_policy, product_key
from rules.context import CLOSED_WON, is_stage

if TYPE_CHECKING:
    from rules.context import AccountContext
    from rules.policy import AllocationPolicy, Policy

__all__ = ["NEW_OWNER", "new_owner", "owner_region"]

RULE_ID = "allocation.new_owner"


def owner_region(account: Account, policy: Policy) -> tuple[str | None, str]:
    """The region where most of the account's users are (see `_region`): (region or None when
    unknown, explanation)."""
    region, why, _ = _region(account, policy)
    return region, why


def _region(account: Account, policy: Policy) -> tuple[str | None, str, bool]:
    """(the region where most of the account's users are, the explanation, whether a person should
    review it). Users are counted by region ("where the most users are"); where regions tie, the
    HQ country's region breaks the tie if it is one of them, and without users at all it is the
    region. A tie the HQ cannot break (the HQ is in none of the tied regions, or unknown) is the
    handbook's "judgement call": the first tied region by name, to review (before, the HQ's region
    won even where the account had no user: found by a review against account-allocation.md)."""
    territories = policy.territories
    by_region: Counter[str] = Counter()
    for country, count in (account.users_by_country or {}).items():
        if count > 0:
            by_region[territories.region_of(country)] += count
    detail = ", ".join(
        f"{c} {n}" for c, n in sorted((account.users_by_country or {}).items(), key=lambda kv: -kv[1]) if n > 0
    )
    ranked = by_region.most_common()
    if ranked and (len(ranked) == 1 or ranked[0][1] > ranked[1][1]):
        return ranked[0][0], f"most users in {ranked[0][0]} ({detail})", False
    tied = sorted(region for region, count in ranked if count == ranked[0][1]) if ranked else []
    why = f"users tied ({detail})" if ranked else "no users by country"
    home = None if account.country is None else territories.region_of(account.country)
    if home is not None and (not tied or home in tied):
        return home, f"{why}; HQ country {account.country} → {home}", False
    if not tied:
        return None, f"{why} and HQ country unknown", False
    hq = "HQ country unknown" if home is None else f"HQ country {account.country} → {home}, where none of them is"
    return tied[0], f"{why}; {hq}: {tied[0]}, the first of {', '.join(tied)} (a judgement call: review)", True


def _situation(
    account: Account, ctx: AccountContext, team: str, paying: int, policy: Policy, now: datetime
) -> tuple[bool, str]:
    """(whether the account moves to a New Owner, the situation that moves it or why it stays): a CSM
    keeps it, and so does a TAM (key role, or an owned segment such as `AM Managed`) unless the
    account needs a CSM now; a lead being qualified stays
    with whoever qualifies it; an Account Executive hands over only after the sale (see `_after_sale`)."""
    rules = policy.allocation
    roles = account.roles
    # The key roles as the workspace labels them (`[rules.lifecycle]`), as the guards and the stage read them.
    csm, tam, executive = policy.lifecycle.csm_role, policy.lifecycle.tam_role, policy.lifecycle.ae_role
    if csm in roles:
        return False, f"already owned by a CSM ({roles[csm]})"
    # A TAM owns the account by key role, or by a segment meaning it is in a TAM's managed book
    # (`AM Managed`: lifecycle.stage and the routing guards read it the same way).
    by_role = tam in roles
    managed = tam if by_role else _owned_segment(account, policy)
    if managed is not None:
        if team != "CSM":
            owned = "TAM-owned" if by_role else f"TAM-owned (segment {managed})"
            return False, (
                f"{owned} and pays for {paying} primary products "
                f"(< {rules.csm_min_primary_products}: stays with the TAM)"
            )
        return True, "TAM → CSM handover" if by_role else f"TAM → CSM handover (segment {managed})"
    leads = policy.episodes.leads_segment
    if leads in account.segments:
        who = f"Account Executive {roles[executive]}" if executive in roles else "someone"
        return False, f"being worked: {who} is qualifying it (segment {leads}), not unowned"
    if executive in roles:
        return _after_sale(ctx, rules, now)
    if ctx.opportunities:
        held = _sale_in_salesforce(ctx, policy, now)
        if held is not None:
            return False, held
    return True, "no owner"


def _sale_in_salesforce(ctx: AccountContext, policy: Policy, now: datetime) -> str | None:
    """Why an account whose Vitally record names no Account Executive is still the Account
    Executive's in Salesforce, or None: as for one that names them (`_after_sale`), a deal open
    before the initial contract, or the 12 months of nurture from it. Salesforce shows the sale
    whether or not anyone keyed the role in Vitally."""
    moves, why = _after_sale(ctx, policy.allocation, now)
    return None if moves else why


def _owned_segment(account: Account, policy: Policy) -> str | None:
    """The first segment of `[guards] owned_segments` the account is in (`AM Managed`), else None."""
    segments = account.segments
    return next((s for s in policy.guards.owned_segments if s in segments), None) if segments else None


def _after_sale(ctx: AccountContext, rules: AllocationPolicy, now: datetime) -> tuple[bool, str]:
    """An Account Executive's account is handed over "after the initial contract is signed"
    (account-allocation.md) and the TAE's 12 months of nurture that follow it (accounts-overview.md:
    "Close then nurture for 12 months"), counted from the first Closed Won opportunity. A deal open
    before any closed holds the account with the Account Executive; one opened later (a renewal,
    an expansion) does not, nor does a later close start the 12 months again (before, both did,
    and an account renewing every year stayed with its TAE for good: found by a review). The
    routing guards still read the last close (`rules.guards.nurtured_after_close`: no other team's
    signal while the TAE nurtures a fresh deal). Without any opportunity in Salesforce the sale is
    not visible, and the handover is proposed (a person reviews every New Owner)."""
    won = [o.close_date for o in ctx.opportunities if o.close_date and is_stage(o.stage_name, CLOSED_WON)]
    if not won:
        open_opportunities = ctx.open_opportunities
        if open_opportunities:
            first = open_opportunities[0]
            return False, (
                f"Account Executive's opportunity {first.id} is still open ({first.stage_name or 'no stage'}): "
                "hand over after the initial contract is signed"
            )
        return True, "post-sale handover from the Account Executive"
    closed = min(won)
    months = months_between(closed, now)
    wait = rules.handover_after_close_months
    clock.changes_when_months_reach(closed, wait)
    if months < wait:
        return False, (
            f"initial contract closed won {closed} ({months} months ago): the Account Executive nurtures it "
            f"for {wait} months before a handover"
        )
    initial = f"initial contract closed won {closed}, {months} months ≥ {wait}"
    return True, f"post-sale handover from the Account Executive ({initial})"


def _option(wanted: str, rules: AllocationPolicy) -> tuple[str | None, str]:
    """(the owner option for `wanted` or its configured fallback, the reason's note on a fallback);
    (None, why) when nobody covers it."""
    if wanted in rules.owner_options:
        return wanted, ""
    fallback = rules.fallbacks.get(wanted)
    if fallback is None or fallback not in rules.owner_options:
        return None, f"no owner option for {wanted} and no fallback configured"
    return fallback, f"; no {wanted} → {fallback} (review)"


@per_policy
def _primary(policy: Policy) -> frozenset[str]:
    """The primary products, by product key."""
    return frozenset(product_key(p) for p in policy.allocation.primary_products)


def _may_new_owner(account: Account, ctx: AccountContext, policy: Policy, now: datetime) -> bool:
    """A known ARR at or above the threshold, and no CSM (a CSM keeps the account: `_situation`)."""
    return (
        account.mrr is not None
        and 12 * account.mrr >= policy.allocation.arr_threshold
        and policy.lifecycle.csm_role not in account.roles
    )


def new_owner(account: Account, ctx: AccountContext, policy: Policy, now: datetime) -> Decision:
    """Accounts paying $20k+ a year that have no owner, are still with their Account Executive 12
    months after the sale closed, or have grown to 3+ primary products under a TAM get a New Owner:
    TAM for 1–2 primary products, CSM for 3+, in the region where most of their users are. An
    account a TAM is qualifying (segment `Leads`) is being worked, not unowned, and one in a TAM's
    managed book (segment `AM Managed`) is TAM-owned (account-allocation.md: the review is of the
    "$20K accounts without an owner")."""
    rules = policy.allocation
    manages = frozenset({rules.segment})
    inputs: dict[str, object] = {
        "mrr": account.mrr,
        "paid_products": account.paid_products,
        "key_roles": dict(account.key_roles),
        "users_by_country": account.users_by_country,
        "country": account.country,
    }

    def no(reason: str, unknown: tuple[str, ...] = ()) -> Decision:
        return Decision(RULE_ID, account.id, False, reason, inputs, unknown, manages=manages)

    if account.arr is None:
        return no("MRR unknown", ("mrr",))
    threshold = rules.arr_threshold
    if account.arr < threshold:
        return no(f"ARR {fmt_num(account.arr)} < {fmt_num(threshold)}")
    if account.paid_products is None:
        return no("paid products unknown", ("paid_products",))

    primary = _primary(policy)
    paying = sorted({product_key(p) for p in account.paid_products} & primary)
    team = "CSM" if len(paying) >= rules.csm_min_primary_products else "TAM"
    moves, situation = _situation(account, ctx, team, len(paying), policy, now)
    if not moves:
        return no(situation)

    region, region_why, judgement = _region(account, policy)
    if region is None:
        return no(f"region unknown: {region_why}", ("users_by_country", "country"))

    choice, fallback_note = _option(f"{region} {team}", rules)
    if choice is None:
        return no(fallback_note)
    review = bool(fallback_note) or judgement

    comparison = "≥" if team == "CSM" else "<"
    reason = (
        f"ARR {fmt_num(account.arr)} ≥ {fmt_num(threshold)}; {situation}; "
        f"pays for {len(paying)} primary products ({comparison} {rules.csm_min_primary_products} → {team}); "
        f"{region_why}{fallback_note}"
    )
    return Decision(
        RULE_ID,
        account.id,
        True,
        reason,
        inputs,
        traits={"new_owner": choice},
        segments=manages,
        manages=manages,
        team="CSM" if choice.endswith("CSM") else "TAM",
        region=region,
        review=review,
    )


NEW_OWNER: AccountRule = Rule(RULE_ID, new_owner, _may_new_owner)
