"""Lead scoring: a score out of 70 from employees, revenue, role, sub-role and country
(lead-routing-and-scoring.md, "Lead scoring"; rules.md §2)."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import TYPE_CHECKING, NamedTuple

from core.countries import normalise_country
from core.model import Lead
from rules.base import Decision, LeadIntent, LeadRule, Rule, fmt_num
from rules.context import LeadContext, closed_statuses, is_closed
from rules.policy import Bands, ScoringPolicy

if TYPE_CHECKING:
    from rules.policy import Policy

__all__ = ["LEAD_SCORE", "ScoreComponent", "lead_score", "score_components"]

RULE_ID = "scoring.lead_score"


class ScoreComponent(NamedTuple):
    """One line of the scoring table applied to one lead.

    `name` is the Lead field scored; `value` the value as read (None when unknown, which scores 0);
    `text` the fragment of the reason, e.g. ``employees 64 → 10``.
    """

    name: str
    points: int
    value: str | None
    text: str


def _band_points(value: float, bands: Bands) -> int:
    ordered = sorted(bands)
    points = ordered[0][1] if ordered else 0
    for lower, band_points in ordered:
        if value >= lower:
            points = band_points
    return points


def _clean(value: str | None) -> str | None:
    if value is None or not value.strip():
        return None
    return value.strip()


def _listed(name: str, label: str, value: str | None, table: Mapping[str, int], other: int) -> ScoreComponent:
    text = _clean(value)
    if text is None:
        return ScoreComponent(name, 0, None, f"{label} unknown → 0")
    key = text.casefold()
    points = {k.casefold(): v for k, v in table.items()}
    if key in points:
        return ScoreComponent(name, points[key], text, f"{label} {text} → {points[key]}")
    return ScoreComponent(name, other, text, f"{label} {text} (other) → {other}")


def _country(lead: Lead, policy: ScoringPolicy) -> ScoreComponent:
    raw = _clean(lead.country)
    if raw is None:
        return ScoreComponent("country", 0, None, "country unknown → 0")
    code = normalise_country(raw)
    if code is None:
        # A value that is not a country cannot be placed in a tier: unknown, not "other".
        return ScoreComponent("country", 0, None, f"country {raw!r} not recognised → 0")
    if code in policy.tier1_countries:
        tier, points = "tier 1", policy.tier1_points
    elif code in policy.tier2_countries:
        tier, points = "tier 2", policy.tier2_points
    else:
        tier, points = "other", policy.other_country_points
    # Name what was typed when it differs from the code, so a mistaken lookup is visible.
    detail = tier if code == raw.upper() else f"{raw}, {tier}"
    return ScoreComponent("country", points, code, f"country {code} ({detail}) → {points}")


def score_components(lead: Lead, policy: ScoringPolicy) -> list[ScoreComponent]:
    """The five lines of the scoring table for one lead, in the handbook's order."""
    components: list[ScoreComponent] = []
    if lead.employees is None:
        components.append(ScoreComponent("employees", 0, None, "employees unknown → 0"))
    else:
        points = _band_points(lead.employees, policy.employee_bands)
        components.append(
            ScoreComponent("employees", points, str(lead.employees), f"employees {lead.employees} → {points}")
        )
    if lead.annual_revenue is None:
        components.append(ScoreComponent("annual_revenue", 0, None, "revenue unknown → 0"))
    else:
        shown = fmt_num(lead.annual_revenue)
        points = _band_points(lead.annual_revenue, policy.revenue_bands)
        components.append(ScoreComponent("annual_revenue", points, shown, f"revenue {shown} → {points}"))
    components.append(_listed("role", "role", lead.role, policy.role_points, policy.other_role_points))
    components.append(
        _listed("sub_role", "sub-role", lead.sub_role, policy.sub_role_points, policy.other_sub_role_points)
    )
    components.append(_country(lead, policy))
    return components


def lead_score(lead: Lead, ctx: LeadContext, policy: Policy, now: datetime) -> Decision:
    """Every open lead gets a score out of 70 (employees, revenue, role, sub-role, country) written to
    Lead_Score__c when it changed; an unknown input scores 0 and marks the score incomplete."""
    scoring = policy.scoring
    components = score_components(lead, scoring)
    score = sum(c.points for c in components)
    unknown = tuple(c.name for c in components if c.value is None)
    inputs: dict[str, object] = {
        "employees": lead.employees,
        "annual_revenue": lead.annual_revenue,
        "role": lead.role,
        "sub_role": lead.sub_role,
        "country": lead.country,
        "points": {c.name: c.points for c in components},
    }
    inputs |= {"score": score, "max_score": scoring.max_score, "previous_score": lead.lead_score}
    inputs["incomplete"] = bool(unknown)
    total = f"{score}/{scoring.max_score}"
    if unknown:
        total += f", incomplete (unknown: {', '.join(unknown)})"
    lines = "; ".join(c.text for c in components)

    def no(verdict: str) -> Decision:
        return Decision(RULE_ID, lead.id, False, f"{lines}; {verdict}", inputs, unknown)

    if lead.is_converted:
        return no(f"score {total}; lead converted")
    if is_closed(lead.status, closed_statuses(policy)):
        return no(f"score {total}; lead closed (status {lead.status})")
    if lead.lead_score is not None and lead.lead_score == score:
        return no(f"score unchanged at {total}")
    was = "" if lead.lead_score is None else f" (was {fmt_num(lead.lead_score)})"
    return Decision(
        RULE_ID,
        lead.id,
        True,
        f"{lines}; score {total}{was}",
        inputs,
        unknown,
        lead=LeadIntent(score=score),
    )


LEAD_SCORE: LeadRule = Rule(RULE_ID, lead_score)
