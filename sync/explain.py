"""`explain ID`: every rule's verdict on one account or lead, fired or not, with the condition
that failed, the inputs it used and those that were unknown.

Exit status: 0 explained (a malformed record is explained by its fault); 2 no such account or lead
(a usage error, like any other bad argument)."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any, TextIO

from core.errors import RecordError
from core.model import Account
from core.records import parse_lead
from rules import AccountContext, Decision
from rules.episodes import describe
from rules.round_robin import choose, explain_pool
from state import StateDB
from sync.accounts import parse_mirrored
from sync.config import Config
from sync.decider import Decider, routing_winner
from sync.facts import SalesforceFacts
from sync.owners import unavailable_users
from sync.plan import BDR_HANDOVER, handover_state
from sync.signups import Signups
from sync.wire import lead_fields, vitally_task

__all__ = ["explain"]


def _show(value: Any) -> str:
    if value is None:
        return "unknown"
    if isinstance(value, frozenset | set):
        value = sorted(value)
    if isinstance(value, tuple | list | dict):
        return json.dumps(value, default=str, ensure_ascii=False)
    return str(value)


def _verdict(decision: Decision) -> str:
    if decision.reason.startswith("switched off ([rules.enabled])"):
        return "SWITCHED OFF"
    if decision.guarded_by:
        return "GUARDED"
    if decision.fired and "(also matched;" in decision.reason:
        return "ALSO MATCHED"
    return "FIRED" if decision.fired else "no"


def _write(decisions: list[Decision], out: TextIO) -> None:
    for decision in decisions:
        _write_verdict(decision, out)
        if decision.fired:
            _write_wants(decision, out)


def _write_verdict(decision: Decision, out: TextIO) -> None:
    """Whether the rule fired, why, and what it looked at."""
    out.write(f"\n{decision.rule}: {_verdict(decision)}{' (review)' if decision.review else ''}\n")
    out.write(f"  reason: {decision.reason}\n")
    if decision.guarded_by:
        out.write(f"  guarded by: {decision.guarded_by}\n")
    if decision.unknown:
        out.write(f"  unknown inputs: {', '.join(decision.unknown)}\n")
    for name, value in decision.inputs.items():
        out.write(f"  input {name} = {_show(value)}\n")
    if decision.also_matched:
        out.write(f"  also matched: {', '.join(decision.also_matched)}\n")
    if decision.signals:
        out.write(f"  signals: {', '.join(decision.signals)}\n")


def _write_wants(decision: Decision, out: TextIO) -> None:
    """What a rule that fired wants written, and the team it routes to."""
    for key, value in decision.traits.items():
        out.write(f"  wants trait {key} = {_show(value)}\n")
    for segment in sorted(decision.segments):
        out.write(f"  wants segment {segment}\n")
    for key, value in lead_fields(decision.lead).items():
        out.write(f"  wants Lead field {key} = {_show(value)}\n")
    if decision.task is not None:
        out.write(f"  wants task {_show(vitally_task(decision.task))}\n")
    if decision.team:
        out.write(f"  team {decision.team}{' in ' + decision.region if decision.region else ''}\n")


def explain(config: Config, state: StateDB, record_id: str, now: datetime, out: TextIO, err: TextIO) -> int:
    """Explain an account (from the mirror, else from Vitally itself) or a lead (from the mirror)."""
    from sync.app import make_vitally

    vitally = make_vitally(config)  # an account not in the mirror yet is read from Vitally
    facts = SalesforceFacts.load(state, policy=config.policy)
    decider = Decider.of(config, facts, now, signups=Signups.of(config, state, persist=False))
    lead_raw = state.sf_raw("Lead", record_id)
    if lead_raw is not None:
        try:
            lead = parse_lead(lead_raw)
        except RecordError as bad:
            out.write(f"{record_id}: malformed: field {bad.field}: {bad.message} (cycles skip it)\n")
            return 0
        out.write(
            f"lead {lead.id} ({lead.company or 'no company'}, LeadSource {lead.lead_source or 'unknown'}) "
            f"from the state mirror, rules' clock {now.isoformat()}\n"
        )
        decisions = decider.lead(lead)
        _write(decisions, out)
        if any(d.fired and d.rule == BDR_HANDOVER for d in decisions) and lead.sync_key:
            # Whether the planner draws a TAE for the BDR's yes, or writes only its reason.
            due, why = handover_state(lead, state.last_written("salesforce"), config.policy.routing)
            out.write(f"handover {'due' if due else 'not due'}: {why}\n")
        return 0
    raw = state.account_raw(record_id)
    source = "state mirror"
    if raw is None:
        raw = vitally.get_account(record_id)
        source = "Vitally"
    if raw is None:
        err.write(
            f"error: no account or lead {record_id!r} in the mirror, and no such account in Vitally "
            "(a Vitally account id, or the Id of a Salesforce Lead a cycle has read)\n"
        )
        return 2
    try:
        account = parse_mirrored(raw, config)
    except RecordError as bad:
        out.write(f"{record_id}: malformed: field {bad.field}: {bad.message} (cycles skip it)\n")
        return 0
    context = facts.context_for(account.id)
    out.write(f"account {account.id} ({account.name}) from the {source}, rules' clock {now.isoformat()}\n")
    out.write(
        f"Salesforce: {len(context.leads)} lead(s) ({len(context.open_leads)} open), "
        f"{len(context.opportunities)} opportunit(ies) ({len(context.open_opportunities)} open)\n"
    )
    for merged, kept in facts.merged_accounts(account.id):
        out.write(
            f"Salesforce Account {merged}, which named this account, was merged into Account {kept}: "
            "the opportunities there are this account's\n"
        )
    if decider.disabled:
        out.write(f"switched off ([rules.enabled]): {', '.join(sorted(decider.disabled))}\n")
    _episodes(account, context, decider, out)
    decisions = decider.account(account)
    _write(decisions, out)
    _owner(config, state, decider, account, decisions, out)
    return 0


def _episodes(account: Account, context: AccountContext, decider: Decider, out: TextIO) -> None:
    """The account's lead episodes (rules.episodes): each family's state, what it was read from, and
    whether it blocks a new lead or allows one, and why."""
    lines = describe(account, context, decider.policy, decider.now)
    if not lines:
        out.write("lead episodes: none (no lead of the account in Salesforce): a signal may create one\n")
        return
    out.write("lead episodes:\n")
    for line in lines:
        out.write(f"  {line}\n")


def _owner(
    config: Config, state: StateDB, decider: Decider, account: Account, decisions: list[Decision], out: TextIO
) -> None:
    """For a routed account: the pool, the candidates and why its owner was (or would be) chosen."""
    winner = routing_winner(decisions)
    if winner is None or winner.team is None:
        return
    region = decider.region(account)
    chosen = state.assignments_like(f"crm-sync-{account.id}-")
    out.write(f"\nrouting: {winner.rule} → team {winner.team}, region {region}\n")
    if chosen:
        choice = chosen[0]
        out.write(f"  lead {choice.key}: owner: {choice.reason}\n")
        out.write(f"  candidates: {', '.join(choice.candidates) or 'none'}\n")
        for user, why in choice.skipped.items():
            out.write(f"  skipped {user}: {why}\n")
        return
    pool = config.pool_for(winner.team, region)
    if pool is None:
        out.write(f"  no pool for {winner.team}/{region}: Salesforce's default owner would apply\n")
        return
    inactive, unknown = unavailable_users(decider.facts.users, config)
    assignment, _ = choose(pool, state.credits(pool.key), inactive_users=inactive, unknown_users=unknown)
    out.write(f"  no owner chosen yet; next draw: owner: {assignment.reason}\n")
    out.write(f"  candidates: {', '.join(assignment.candidates) or 'none'}\n")
    for line in explain_pool(pool, state.credits(pool.key), inactive_users=inactive, unknown_users=unknown):
        out.write(f"  member {line}\n")
