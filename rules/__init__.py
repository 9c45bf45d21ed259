"""Pure decisions: the handbook's rules over typed records, each with a reason.

No clock, no network, no database: callers pass `now` and plain data (and may learn, through
`rules.clock.watching`, the first day on which the clock alone can change the verdicts).
`evaluate_account` and `evaluate_lead` are the whole policy for one record, in the order its
writes are claimed (`rules.evaluation`).
"""

from __future__ import annotations

from rules.base import Decision, Rule
from rules.context import EMPTY, AccountContext, LeadContext
from rules.evaluation import ALL_RULE_IDS, evaluate_account, evaluate_lead, managed_by, managed_segments
from rules.expressions import CompiledTrigger, CustomTrigger, ExpressionError, compile_trigger
from rules.policy import AllocationPolicy, GuardPolicy, Policy, ProductLedPolicy, Territories

__all__ = [
    "ALL_RULE_IDS",
    "EMPTY",
    "AccountContext",
    "AllocationPolicy",
    "CompiledTrigger",
    "CustomTrigger",
    "Decision",
    "ExpressionError",
    "GuardPolicy",
    "LeadContext",
    "Policy",
    "ProductLedPolicy",
    "Rule",
    "Territories",
    "compile_trigger",
    "evaluate_account",
    "evaluate_lead",
    "managed_by",
    "managed_segments",
]
