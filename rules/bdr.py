"""BDR routing: accounts worth a second outbound attempt (lead-routing-and-scoring.md, BDR team).

Only the trigger the data can see is automated: the handbook's other BDR sources (self-generated
Lemlist campaigns, job switchers, low-usage orgs) are worked by the BDRs themselves.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, datetime, timedelta
from typing import TYPE_CHECKING

from core.model import Account, Opportunity
from rules import clock
from rules.base import AccountRule, Decision, Rule, Team, add_months
from rules.context import CLOSED_LOST, is_stage, same_picklist
from rules.guards import Check, trigger_decision

if TYPE_CHECKING:
    from rules.context import AccountContext
    from rules.policy import Policy, RoutingPolicy

__all__ = ["CLOSED_LOST_UNRESPONSIVE", "closed_lost_unresponsive"]

RULE_ID = "bdr.closed_lost_unresponsive"
TEAM: Team = "BDR"


def _may_closed_lost_unresponsive(account: Account, ctx: AccountContext, policy: Policy, now: datetime) -> bool:
    """An opportunity closed lost as unresponsive, closed within the window (the rule's one check)."""
    if not ctx.opportunities:
        return False
    routing = policy.routing
    earliest, latest = _window(routing, now)
    _window_moves(ctx.opportunities, routing)
    return any(
        o.close_date is not None
        and is_stage(o.stage_name, CLOSED_LOST)
        and same_picklist(o.loss_reason, routing.bdr_closed_lost_reason)
        and earliest <= o.close_date <= latest
        for o in ctx.opportunities
    )


def _window_moves(opportunities: Sequence[Opportunity], routing: RoutingPolicy) -> None:
    """The days the window's moving ends take a close date in or out of it: in on the first day
    its nearer end (`bdr_min_months` ago) reaches it, out on the first day its far end
    (`bdr_max_months` ago) passes it (`rules.clock`)."""
    for opportunity in opportunities:
        closed = opportunity.close_date
        if closed is not None and is_stage(opportunity.stage_name, CLOSED_LOST):
            clock.changes_when_month_shift_reaches(closed, -routing.bdr_min_months)
            if closed < date.max:
                clock.changes_when_month_shift_reaches(closed + timedelta(days=1), -routing.bdr_max_months)


def _window(routing: RoutingPolicy, now: datetime) -> tuple[date, date]:
    """The close dates "4-6 months old" covers: from the same day `bdr_max_months` ago to the same
    day `bdr_min_months` ago, both included (calendar months, clamped to a month's last day)."""
    today = now.date()
    return add_months(today, -routing.bdr_max_months), add_months(today, -routing.bdr_min_months)


def closed_lost_unresponsive(account: Account, ctx: AccountContext, policy: Policy, now: datetime) -> Decision:
    """An account with an opportunity closed lost 4–6 months ago (calendar months, both ends included:
    closed on or between the same day six months ago and the same day four months ago) because the
    customer was unresponsive goes to a BDR."""
    routing = policy.routing
    earliest, latest = _window(routing, now)
    _window_moves(ctx.opportunities, routing)
    window = f"{routing.bdr_min_months}-{routing.bdr_max_months} months old ({earliest} to {latest})"
    lost = [o for o in ctx.opportunities if is_stage(o.stage_name, CLOSED_LOST)]
    unresponsive = [o for o in lost if same_picklist(o.loss_reason, routing.bdr_closed_lost_reason)]
    dated = [(o, closed) for o in unresponsive if (closed := o.close_date) is not None]
    middle = add_months(now.date(), -((routing.bdr_min_months + routing.bdr_max_months) // 2))
    inputs: dict[str, object] = {
        "opportunities": [
            {"id": o.id, "stage": o.stage_name, "loss_reason": o.loss_reason, "close_date": o.close_date}
            for o in ctx.opportunities
        ]
    }
    checks: list[Check]
    match = next(((o, closed) for o, closed in dated if earliest <= closed <= latest), None)
    if match is not None:
        opportunity, closed = match
        checks = [Check("opportunities", True, f"{_describe(opportunity, routing)} closed {closed}, {window}")]
    elif dated:
        opportunity, closed = min(dated, key=lambda pair: abs((pair[1] - middle).days))
        checks = [Check("opportunities", False, f"{_describe(opportunity, routing)} closed {closed}, not {window}")]
    elif len(dated) < len(unresponsive):
        checks = [Check("close_date", None, f"close date unknown on {_describe(unresponsive[0], routing)}")]
    elif any(o.loss_reason is None for o in lost):
        undated = next(o for o in lost if o.loss_reason is None)
        checks = [Check("loss_reason", None, f"loss reason unknown on opportunity {undated.id} ({CLOSED_LOST})")]
    else:
        checks = [
            Check(
                "opportunities",
                False,
                f"no {CLOSED_LOST} opportunity with loss reason {routing.bdr_closed_lost_reason}"
                + (f" ({len(lost)} {CLOSED_LOST} with other reasons)" if lost else ""),
            )
        ]
    return trigger_decision(RULE_ID, account, ctx, policy, now, checks, inputs, team=TEAM)


CLOSED_LOST_UNRESPONSIVE: AccountRule = Rule(RULE_ID, closed_lost_unresponsive, _may_closed_lost_unresponsive)


def _describe(opportunity: Opportunity, routing: RoutingPolicy) -> str:
    return f"opportunity {opportunity.id} {CLOSED_LOST} ({opportunity.loss_reason or routing.bdr_closed_lost_reason})"
