"""What-if: the decisions that would change if the rules were those of another file.

Both rule sets judge the same mirror at the same `now`; only differences are reported, so a team
sees who would be affected before it changes a threshold.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TextIO

from rules import Decision
from rules.context import closed_statuses
from state import StateDB
from sync.accounts import iter_accounts
from sync.config import Config
from sync.decider import Decider
from sync.facts import SalesforceFacts
from sync.safe import cell, json_line
from sync.signups import Signups
from sync.wire import lead_fields

__all__ = ["Difference", "compare", "render_differences"]


@dataclass(frozen=True)
class Difference:
    record: str
    rule: str
    before: dict[str, Any]
    after: dict[str, Any]


def _summary(decision: Decision | None) -> dict[str, Any]:
    if decision is None:
        return {"fired": False, "reason": "rule not configured"}
    summary: dict[str, Any] = {"fired": decision.fired, "reason": decision.reason}
    if decision.fired:
        for name, value in (
            ("traits", dict(decision.traits)),
            ("segments", sorted(decision.segments)),
            ("lead_fields", lead_fields(decision.lead)),
            ("team", decision.team),
            ("review", decision.review or None),
        ):
            if value:
                summary[name] = value
    if decision.guarded_by:
        summary["guarded_by"] = decision.guarded_by
    return summary


def _material(summary: dict[str, Any]) -> dict[str, Any]:
    """What a person would call a different decision: the reason's wording alone is not."""
    return {k: v for k, v in summary.items() if k not in ("reason",)}


def _pairs(before: list[Decision], after: list[Decision]) -> Iterator[tuple[str, Decision | None, Decision | None]]:
    old = {d.rule: d for d in before}
    new = {d.rule: d for d in after}
    for rule in dict.fromkeys([*old, *new]):
        yield rule, old.get(rule), new.get(rule)


def _differences(record: str, before: list[Decision], after: list[Decision]) -> Iterator[Difference]:
    for rule, a, b in _pairs(before, after):
        old, new = _summary(a), _summary(b)
        if _material(old) != _material(new):
            yield Difference(record, rule, old, new)


def compare(state: StateDB, config: Config, other: Config, now: datetime) -> list[Difference]:
    """Per record and rule, the decisions whose outcome differs when the mirror's accounts, then
    its leads, are judged at `now` by `config`'s rules and by `other`'s (one `Decider` each, over
    the same mirror; the Salesforce facts are read once more when `other` reads lead statuses
    differently, as its closed and disqualified statuses shape every context)."""
    facts = SalesforceFacts.load(state, policy=config.policy)
    other_facts = facts
    if (closed_statuses(other.policy), other.policy.episodes.disqualified_statuses) != (
        facts.closed,
        facts.disqualified_statuses,
    ):
        other_facts = SalesforceFacts.load(state, policy=other.policy)
    current = Decider.of(config, facts, now, signups=Signups.of(config, state, persist=False))
    changed = Decider.of(other, other_facts, now, signups=Signups.of(other, state, persist=False))
    differences: list[Difference] = []
    for account in iter_accounts(state, config):
        differences.extend(_differences(account.id, current.account(account), changed.account(account)))
    for lead, _ in facts.iter_leads():
        differences.extend(_differences(lead.id, current.lead(lead), changed.lead(lead)))
    return differences


def render_differences(differences: list[Difference], fmt: str, out: TextIO) -> None:
    if fmt == "json":
        for diff in differences:
            line = {"record": diff.record, "rule": diff.rule, "before": diff.before, "after": diff.after}
            out.write(json_line(line) + "\n")
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"{len(differences)} decision(s) would change")
    for column in ("record", "rule", "now", "with the other rules"):
        table.add_column(column, overflow="fold")

    def show(summary: dict[str, Any]) -> str:
        verdict = "fires" if summary["fired"] else "does not fire"
        extra = {k: v for k, v in summary.items() if k not in ("fired", "reason")}
        return f"{verdict}: {summary['reason']}" + (f" {json_line(extra)}" if extra else "")

    for diff in differences:
        table.add_row(*map(cell, (diff.record, diff.rule, show(diff.before), show(diff.after))))
    Console(file=out, width=160).print(table)
