"""Account allocation: which team and region should own a $20k+ account (account-allocation.md)."""

from __future__ import annotations

from collections import Counter
from datetime import datetime
from typing import TYPE_CHECKING

from core.model import Account
from rules.base import AccountRule, Decision, Rule, fmt_num, product_key

if TYPE_CHECKING:
    from rules.context import AccountContext
    from rules.policy import AllocationPolicy, Policy

__all__ = ["NEW_OWNER", "new_owner", "owner_region"]

RULE_ID = "allocation.new_owner"


def owner_region(account: Account, policy: Policy) -> tuple[str | None, str]:
    """The region where most of the account's users are; a tie or no users → the HQ country's region.

    Returns (region or None when unknown, explanation).
    """
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
        return ranked[0][0], f"most users in {ranked[0][0]} ({detail})"
    why = f"users tied ({detail})" if ranked else "no users by country"
    if account.country is None:
        return None, f"{why} and HQ country unknown"
    region = territories.region_of(account.country)
    return region, f"{why}; HQ country {account.country} → {region}"


def _situation(account: Account, team: str, paying: int, rules: AllocationPolicy) -> tuple[bool, str]:
    """(whether the account moves to a New Owner, the situation that moves it or why it stays): a CSM
    keeps it, and so does a TAM unless the account needs a CSM now."""
    roles = account.key_roles
    if "CSM" in roles:
        return False, f"already owned by a CSM ({roles['CSM']})"
    if "TAM" in roles:
        if team != "CSM":
            return False, (
                f"TAM-owned and pays for {paying} primary products "
                f"(< {rules.csm_min_primary_products}: stays with the TAM)"
            )
        return True, "TAM → CSM handover"
    if "Account Executive" in roles:
        return True, "post-sale handover from the Account Executive"
    return True, "no owner"


def _option(wanted: str, rules: AllocationPolicy) -> tuple[str | None, str]:
    """(the owner option for `wanted` or its configured fallback, the reason's note on a fallback);
    (None, why) when nobody covers it."""
    if wanted in rules.owner_options:
        return wanted, ""
    fallback = rules.fallbacks.get(wanted)
    if fallback is None or fallback not in rules.owner_options:
        return None, f"no owner option for {wanted} and no fallback configured"
    return fallback, f"; no {wanted} → {fallback} (review)"


def _may_new_owner(account: Account, ctx: AccountContext, policy: Policy, now: datetime) -> bool:
    """A known ARR at or above the threshold."""
    return account.mrr is not None and 12 * account.mrr >= policy.allocation.arr_threshold


def new_owner(account: Account, ctx: AccountContext, policy: Policy, now: datetime) -> Decision:
    """Accounts paying $20k+ a year that have no owner, are still with their Account Executive after
    the sale, or have grown to 3+ primary products under a TAM get a New Owner: TAM for 1–2 primary
    products, CSM for 3+, in the region where most of their users are."""
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

    primary = {product_key(p) for p in rules.primary_products}
    paying = sorted({product_key(p) for p in account.paid_products} & primary)
    team = "CSM" if len(paying) >= rules.csm_min_primary_products else "TAM"
    moves, situation = _situation(account, team, len(paying), rules)
    if not moves:
        return no(situation)

    region, region_why = owner_region(account, policy)
    if region is None:
        return no(f"region unknown: {region_why}", ("users_by_country", "country"))

    choice, fallback_note = _option(f"{region} {team}", rules)
    if choice is None:
        return no(fallback_note)
    review = bool(fallback_note)

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
