"""Pure decisions: the handbook's rules over typed records, each with a reason.

No clock, no network, no database: callers pass `now` and plain data.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from rules import allocation, product_led
from rules.base import Decision
from rules.model import Account, Invoice, Lead, Opportunity, SfAccount, SfUser
from rules.policy import AllocationPolicy, GuardPolicy, Policy, ProductLedPolicy, Territories

__all__ = [
    "ACCOUNT_RULES",
    "Account",
    "AllocationPolicy",
    "Decision",
    "GuardPolicy",
    "Invoice",
    "Lead",
    "Opportunity",
    "Policy",
    "ProductLedPolicy",
    "SfAccount",
    "SfUser",
    "Territories",
    "evaluate_account",
]

AccountRule = Callable[[Account, Policy, datetime], Decision]

# Rule id -> rule, in the default evaluation order (rules.md).
ACCOUNT_RULES: dict[str, AccountRule] = {
    "product_led.mrr_band": product_led.mrr_band,
    "allocation.new_owner": lambda account, policy, now: allocation.new_owner(account, policy),
}


def evaluate_account(account: Account, policy: Policy, now: datetime) -> list[Decision]:
    """Every account rule's verdict on one account, fired or not, in rule order."""
    return [rule(account, policy, now) for rule in ACCOUNT_RULES.values()]
