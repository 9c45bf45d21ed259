"""PLG lead qualification: disqualify, nurture or qualify a product-led lead, with the signals
for the opening message (plg-lead-qualification.md, rules.md §6).

Order of the verdict (first that holds wins):

1. ``disqualify`` – already owned or worked (a routing guard holds, the cool-off aside), or one of
   the handbook's quick filters: MRR under 500 with no growth trend; all spend from one product and
   under 200; startup credits with 12+ months left and low burn.
2. ``disqualify`` – step 5's "pass or disqualify": a company too small to realistically hit 20k
   ARR (no realistic path, under 50 employees, no funding or hiring), or spend flat or declining
   with no expansion lever (no growth trend, no multi-product opportunity, no funding or hiring).
3. ``nurture`` – spend growing but MRR under 1,000; implementation too early (mostly
   autocapture, few custom events). The handbook says "don't add yet" for these even when the
   account otherwise looks good, so they win over ``qualify``.
4. ``qualify`` – all four of step 5: a realistic path to 20k ARR from the trajectory of the last
   3 invoices, a clear multi-product opportunity, a company profile that can grow, and a plausible
   first message (at least one of `OPENING_SIGNALS`). The first three without one: ``nurture``
   ("no opening message yet").
5. ``nurture`` – potential without an urgency signal (one of the three holds), or too little known
   to pass or qualify it (none holds, for want of data).

Unknown MRR or invoices make the rule not fire (and are named). Other unknown inputs make the
check that needs them fail, and the reason says so.

The recommendation is written to the account's `qualification` trait and, by `evaluate_account`,
onto the lead routing creates (`Qualification__c` and `Qualification_Reason__c`), next to the
trigger that routed it (`Routing_Rule__c`), so conversion is measured per trigger.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from functools import lru_cache
from typing import TYPE_CHECKING, Literal

from core.model import Account, Invoice
from rules import clock
from rules.base import AccountRule, Decision, Rule, fmt_num, months_between, per_policy, product_key
from rules.episodes import _policy_statuses, episodes
from rules.guards import routing_guard
from rules.policy import QualificationPolicy

if TYPE_CHECKING:
    from rules.context import AccountContext
    from rules.policy import Policy

__all__ = [
    "OPENING_SIGNALS",
    "RECOMMENDATION",
    "RULE_ID",
    "SIGNALS",
    "Recommendation",
    "monthly_growth",
    "not_product_led",
    "owner_decided",
    "recommend",
]

RULE_ID = "qualification.recommendation"

Recommendation = Literal["disqualify", "nurture", "qualify"]

SIGNALS = (
    "autocapture_no_actions",
    "b2b_no_group_analytics",
    "mobile_no_replay",
    "ai_no_llm_analytics",
    "flags_no_experiments",
    "spend_jump",
    "billing_page_views",
    "billing_limits_close",
    "annual_conversion",
    "competitor_destination",
    "warehouse_destination",
    "multi_project",
)
"""Every signal name `recommend` can report, in the order it reports them."""

OPENING_SIGNALS = frozenset(SIGNALS) - {"competitor_destination", "warehouse_destination", "multi_project"}
"""The signals a first message can lead with (plg-lead-qualification.md, "What makes a strong
opening message": optimisation, a missing product, a growth anomaly, billing; and the annual plan
and the billing limit the steps name as hooks), which "qualify" needs. Data to a competitor is a
risk, to a warehouse stickiness, several projects a bigger surface: reported, not an opening."""


def monthly_growth(invoices: tuple[Invoice, ...], window: int = 3) -> float | None:
    """Compound monthly growth (0.3 = +30 %/month) over the last `window` invoices, oldest first.

    None when it cannot be measured: fewer than 2 invoices, or the first of the window is 0.
    """
    recent = invoices[-window:]
    if len(recent) < 2 or recent[0].amount <= 0:
        return None
    ratio = recent[-1].amount / recent[0].amount
    return float(ratio ** (1 / (len(recent) - 1)) - 1)


def _pct(value: float) -> str:
    return f"{fmt_num(round(value, 1))} %"


def _products(names: tuple[str, ...] | None) -> set[str] | None:
    return None if names is None else {product_key(name) for name in names}


@lru_cache(maxsize=1024)
def _tokens(destination: str) -> frozenset[str]:
    """The words of a data destination's name (destinations repeat across accounts)."""
    return frozenset(re.split(r"[^a-z0-9]+", destination.casefold())) - {""}


@per_policy
def _listed_destinations(policy: Policy) -> tuple[frozenset[str], frozenset[str]]:
    """The competitor and the warehouse destinations, case-folded."""
    q = policy.qualification
    return (
        frozenset(item.casefold() for item in q.competitor_destinations),
        frozenset(item.casefold() for item in q.warehouse_destinations),
    )


@per_policy
def _primary(policy: Policy) -> frozenset[str]:
    """The primary products, by product key (the qualification's own list, else allocation's)."""
    q = policy.qualification
    return frozenset(product_key(p) for p in (q.primary_products or policy.allocation.primary_products))


@dataclass
class _Facts:
    """What the checks found, as (holds, text) with the text always set."""

    growth: float | None = None
    growth_text: str = ""
    growing: bool = False
    path: tuple[bool, str] = (False, "")
    multi: tuple[bool, str] = (False, "")
    can_grow: tuple[bool, str] = (False, "")
    inputs: dict[str, object] = field(default_factory=dict)


def _growth(invoices: tuple[Invoice, ...], q: QualificationPolicy, facts: _Facts) -> None:
    growth = monthly_growth(invoices, q.growth_invoices)
    facts.growth = growth
    facts.inputs["monthly_growth_pct"] = None if growth is None else round(100 * growth, 1)
    if growth is None:
        facts.growth_text = f"growth not measurable ({len(invoices)} invoices)"
        return
    facts.growing = 100 * growth >= q.growth_trend_pct
    window = min(len(invoices), q.growth_invoices)
    sign = "≥" if facts.growing else "<"
    facts.growth_text = f"growth {_pct(100 * growth)}/month over {window} invoices {sign} {_pct(q.growth_trend_pct)}"


def _path(mrr: float, q: QualificationPolicy, facts: _Facts) -> tuple[bool, str]:
    rate = min(max(facts.growth or 0.0, 0.0), q.max_projected_growth_pct / 100)
    projected = 12 * mrr * (1 + rate) ** q.months_to_target
    facts.inputs["projected_arr"] = round(projected, 2)
    ok = projected >= q.target_arr
    return ok, (
        f"projected ARR {fmt_num(round(projected))} in {q.months_to_target} months "
        f"{'≥' if ok else '<'} {fmt_num(q.target_arr)}"
    )


def _multi(
    paid: set[str] | None, activated: set[str] | None, primary: frozenset[str], q: QualificationPolicy, facts: _Facts
) -> tuple[bool, str]:
    if paid is None and activated is None:
        return False, "multi-product unknown (paid_products, activated_products unknown)"
    paid_primary = sorted((paid or set()) & primary)
    unpaid = sorted(((activated or set()) - (paid or set())) & primary)
    facts.inputs["paid_primary_products"] = paid_primary
    facts.inputs["unpaid_activated_products"] = unpaid
    if len(unpaid) >= q.unpaid_activated_min:
        return True, f"activated but not paying for {', '.join(unpaid)}"
    if len(paid_primary) >= q.paid_products_min:
        return True, f"paying for {len(paid_primary)} primary products ≥ {q.paid_products_min}"
    return False, (
        f"no multi-product opportunity (paying for {len(paid_primary)} primary products, "
        f"{len(unpaid)} activated unpaid)"
    )


def _can_grow(account: Account, q: QualificationPolicy, now: datetime) -> tuple[bool, str]:
    notes: list[str] = []
    if account.employee_count is not None:
        if account.employee_count >= q.employees_min:
            return True, f"employees {account.employee_count} ≥ {q.employees_min}"
        notes.append(f"employees {account.employee_count} < {q.employees_min}")
    else:
        notes.append("employees unknown")
    rising, text = _trajectory(account, q, now)
    if rising:
        return True, text
    return False, "company profile can't grow yet (" + ", ".join([*notes, text] if text else notes) + ")"


def _trajectory(account: Account, q: QualificationPolicy, now: datetime) -> tuple[bool, str]:
    """(True, why) when the company's growth trajectory is steep: recent funding, or aggressive
    hiring (`harmonic_headcount` against `harmonic_headcount_180d`); else (False, the notes on
    each). plg-lead-qualification.md, step 2: such companies "can qualify even if current spend is
    below threshold", the "growth trajectory override"."""
    notes: list[str] = []
    funded = account.harmonic_last_funding_date
    if funded is not None:
        days = (now.date() - funded).days
        clock.changes_when_days_reach(funded, 0, q.funding_within_days + 1)
        if 0 <= days <= q.funding_within_days:
            return True, f"funded {days} days ago ≤ {q.funding_within_days}"
        notes.append(f"funded {days} days ago")
    head, before = account.harmonic_headcount, account.harmonic_headcount_180d
    if head is not None and before:
        growth = round(100 * (head / before - 1), 9)  # 120 vs 100 is +20 %, not +19.999...
        if growth >= q.headcount_growth_pct:
            return True, f"headcount {before} → {head} (+{_pct(growth)}) ≥ {_pct(q.headcount_growth_pct)}"
        notes.append(f"headcount {before} → {head}")
    return False, ", ".join(notes)


def _quick_filters(
    account: Account, mrr: float, q: QualificationPolicy, facts: _Facts, now: datetime, override: bool
) -> list[str]:
    """Step 1's quick filters that deprioritise the lead. With the growth trajectory `override`
    (`_trajectory`), the two on current spend (low MRR without growth, all spend from one small
    product) do not apply: the company may qualify below the spend threshold."""
    found: list[str] = []
    if mrr < q.low_mrr and not facts.growing and not override:
        found.append(f"mrr {fmt_num(mrr)} < {fmt_num(q.low_mrr)} with no growth ({facts.growth_text})")
    spend = account.product_spend
    if spend is not None and not override:
        paying = {name: amount for name, amount in spend.items() if amount > 0}
        if len(paying) == 1:
            (name, amount), *_ = paying.items()
            if amount < q.single_product_spend_under:
                found.append(f"all spend from {name} {fmt_num(amount)} < {fmt_num(q.single_product_spend_under)}")
    total, used, ends = account.startup_credits_total, account.startup_credits_used, account.startup_plan_ends_at
    if total and used is not None and ends is not None:
        left = months_between(now.date(), ends)
        if ends < date.max:  # `left` falls below the threshold once a month shift of the day passes `ends`
            clock.changes_when_month_shift_reaches(ends + timedelta(days=1), q.credits_months_left)
        burn = 100 * used / total
        if left >= q.credits_months_left and burn < q.low_burn_used_pct:
            found.append(
                f"startup credits with {left} months left ≥ {q.credits_months_left} and low burn "
                f"(used {_pct(burn)} < {_pct(q.low_burn_used_pct)})"
            )
    return found


def _filters(
    account: Account, mrr: float, q: QualificationPolicy, facts: _Facts, now: datetime
) -> tuple[list[str], list[str]]:
    """(the quick filters that hold, the growth trajectory override's note when it set some aside)."""
    filters = _quick_filters(account, mrr, q, facts, now, override=False)
    if not filters:
        return filters, []
    rising, trajectory = _trajectory(account, q, now)
    if not rising:
        return filters, []
    kept = _quick_filters(account, mrr, q, facts, now, override=True)
    lifted = [text for text in filters if text not in kept]
    if not lifted:
        return kept, []
    return kept, [f"growth trajectory override ({trajectory}): set aside {'; '.join(lifted)}"]


def _early(account: Account, q: QualificationPolicy) -> str | None:
    auto, custom = account.autocapture_pct, account.custom_event_pct
    if auto is None or custom is None:
        return None
    if auto >= q.early_autocapture_pct and custom <= q.early_custom_event_pct:
        return (
            f"implementation early (autocapture {_pct(auto)} ≥ {_pct(q.early_autocapture_pct)}, "
            f"custom events {_pct(custom)} ≤ {_pct(q.early_custom_event_pct)})"
        )
    return None


def _signals(
    account: Account, paid: set[str] | None, activated: set[str] | None, policy: Policy
) -> list[tuple[str, str]]:
    """The opening-message hooks found, (name, text), in the order of `SIGNALS`."""
    q = policy.qualification
    return [
        *_product_signals(account, paid, activated, q),
        *_billing_signals(account, q),
        *_data_signals(account, policy),
    ]


def _product_signals(
    account: Account, paid: set[str] | None, activated: set[str] | None, q: QualificationPolicy
) -> list[tuple[str, str]]:
    """How the product is used: autocapture without actions, a product missing for what they build."""
    found: list[tuple[str, str]] = []
    if (
        account.autocapture_pct is not None
        and account.autocapture_pct >= q.high_autocapture_pct
        and account.actions_count == 0
    ):
        found.append(("autocapture_no_actions", f"autocapture {_pct(account.autocapture_pct)} with 0 actions"))
    if paid is None and activated is None:
        return found
    products = (paid or set()) | (activated or set())
    missing = (
        ("b2b_no_group_analytics", account.is_b2b, q.group_analytics_product, "B2B"),
        ("mobile_no_replay", account.has_mobile_app, q.mobile_replay_product, "mobile app"),
        ("ai_no_llm_analytics", account.is_ai_product, q.llm_analytics_product, "AI product"),
    )
    for name, flag, product, what in missing:
        if flag and product_key(product) not in products:
            found.append((name, f"{what} without {product}"))
    if product_key(q.flags_product) in products and product_key(q.experiments_product) not in products:
        found.append(("flags_no_experiments", f"{q.flags_product} without {q.experiments_product}"))
    return found


def _billing_signals(account: Account, q: QualificationPolicy) -> list[tuple[str, str]]:
    """What billing shows: a jump in spend, visits to the billing page, limits close to spend, a
    growing account still on a monthly plan."""
    found: list[tuple[str, str]] = []
    invoices = account.invoices or ()
    if len(invoices) >= 2 and invoices[-2].amount > 0:
        prev, last = invoices[-2].amount, invoices[-1].amount
        jump = 100 * (last / prev - 1)
        if jump >= q.spend_jump_pct:
            found.append(
                ("spend_jump", f"invoice {invoices[-1].month} {fmt_num(last)} up {_pct(jump)} on {fmt_num(prev)}")
            )
    views = account.billing_page_views_30d
    if views is not None and views >= q.billing_page_views_min:
        found.append(("billing_page_views", f"{views} billing page views in 30 days"))
    close = _limits_close(account.billing_limits, account.product_spend, q)
    if close:
        found.append(("billing_limits_close", "billing limit close to spend: " + ", ".join(close)))
    # "Monthly plan and growing? That's an annual conversion opportunity." (step 1)
    growth = monthly_growth(invoices, q.growth_invoices) if account.annual_plan is False else None
    if growth is not None and 100 * growth >= q.growth_trend_pct:
        found.append(("annual_conversion", f"monthly plan growing {_pct(100 * growth)}/month: annual plan"))
    return found


def _data_signals(account: Account, policy: Policy) -> list[tuple[str, str]]:
    """Where their data goes (a competitor, a warehouse) and how many projects they run."""
    q = policy.qualification
    found: list[tuple[str, str]] = []
    destinations = account.data_destinations or ()
    competitors, warehouses = _listed_destinations(policy)
    for name, listed, what in (
        ("competitor_destination", competitors, "data to competitor"),
        ("warehouse_destination", warehouses, "data to warehouse"),
    ):
        hits = [d for d in destinations if _tokens(d) & listed]
        if hits:
            found.append((name, f"{what} {', '.join(hits)}"))
    if account.project_count is not None and account.project_count >= q.several_projects:
        found.append(("multi_project", f"{account.project_count} projects ≥ {q.several_projects}"))
    return found


def _limits_close(
    limits: Mapping[str, float] | None, spend: Mapping[str, float] | None, q: QualificationPolicy
) -> list[str]:
    if not limits or not spend:
        return []
    by_key = {product_key(name): amount for name, amount in spend.items()}
    close: list[str] = []
    for name, limit in limits.items():
        used = by_key.get(product_key(name))
        if used and used > 0 and limit <= used * (1 + q.billing_limit_margin_pct / 100):
            close.append(f"{name} limit {fmt_num(limit)} vs spend {fmt_num(used)}")
    return close


def _owner_decided(account: Account, ctx: AccountContext, policy: Policy) -> tuple[Recommendation, list[str]] | None:
    """What the product-led lead's owner already decided, when they did (plg-lead-qualification.md,
    step 1: "not yet" → status nurturing, yes → status in progress): the recommendation follows
    their decision instead of arguing with it, its trait says whose it is, and the Nurture segment
    is there only for a lead they nurture. None while nobody decided (open, or being worked)."""
    if not ctx.leads:
        return None
    for episode in episodes(account, ctx, policy):
        if episode.family == "product_led" and episode.lead is not None and episode.state in _DECIDED:
            return _DECIDED[episode.state], [f"decided by the lead's owner: {episode.signal}"]
    return None


_DECIDED: dict[str, Recommendation] = {"qualified": "qualify", "nurturing": "nurture"}


def owner_decided(account: Account, ctx: AccountContext, policy: Policy) -> bool:
    """Whether the account's product-led lead is one its owner decided (in progress or nurturing):
    the recommendation then follows them whether or not routing chose the account again
    (`evaluate_account`). A TAM qualifying it as the handbook says, themselves as Account
    Executive and the Leads segment, makes the account owned: no trigger routes it any more, and
    the recommendation written before their decision would stay. Most accounts have no lead in
    such a status: they are answered without reading their episodes."""
    if not ctx.leads:
        return False
    # The TAM as Account Executive with the account in Leads is their "yes" whatever the lead's
    # status (`rules.episodes`); else only a lead in a decided status may be one.
    taken = policy.episodes.leads_segment in account.segments and policy.lifecycle.ae_role in account.roles
    if not taken:
        _, _, nurturing, qualified, _ = _policy_statuses(policy)
        if not any((lead.status or "").strip().casefold() in (nurturing | qualified) for lead in ctx.leads):
            return False
    return _owner_decided(account, ctx, policy) is not None


def recommend(account: Account, ctx: AccountContext, policy: Policy, now: datetime) -> Decision:
    """A product-led lead is disqualified, nurtured or qualified the way a TAM would judge it:
    a realistic path to $20k ARR, a clear multi-product opportunity and a company that can grow.

    Already worked means a routing guard holds (an owner, an open lead or opportunity, ...), the
    cool-off after a disqualification aside as for a person's referral. `evaluate_account` asks
    only about an account a product-led trigger has just routed, which no guard held back.
    """
    q = policy.qualification
    already_worked = routing_guard(account, ctx, policy, now, cool_off=False, family="product_led")
    manages = frozenset({q.segment})
    paid, activated = _products(account.paid_products), _products(account.activated_products)
    signals = _signals(account, paid, activated, policy)
    signal_names = tuple(name for name, _ in signals)
    signal_text = "; signals: " + (", ".join(text for _, text in signals) if signals else "none")
    facts = _Facts(inputs={"mrr": account.mrr})
    # "If they have an Onboarding Specialist assigned, coordinate with them" (step 1's quick filters).
    specialist = account.roles.get(policy.onboarding.specialist_role)
    coordinate = f"; coordinate with {policy.onboarding.specialist_role} {specialist}" if specialist else ""

    def verdict(label: Recommendation, reasons: list[str]) -> Decision:
        reason = f"{label}: {'; '.join(reasons)}{coordinate}{signal_text}"
        return Decision(
            RULE_ID,
            account.id,
            True,
            reason,
            {**facts.inputs, "recommendation": label},
            traits={"qualification": f"{RULE_ID}: {reason}"},
            segments=manages if label == "nurture" else frozenset(),
            manages=manages,
            team="TAM",
            signals=signal_names,
        )

    # The owner's decision first: a TAM who qualifies the lead the handbook's way (status in
    # progress, themselves as Account Executive, the Leads segment) makes the account owned.
    decided = _owner_decided(account, ctx, policy) or (
        ("disqualify", [f"already worked: {already_worked}"]) if already_worked else None
    )
    if decided is not None:
        return verdict(*decided)
    mrr, invoices = account.mrr, account.invoices
    unknown = tuple(name for name, value in (("mrr", mrr), ("invoices", invoices)) if value is None)
    if mrr is None or invoices is None:
        reason = "unknown: " + ", ".join(unknown)
        return Decision(
            RULE_ID,
            account.id,
            False,
            reason,
            {**facts.inputs, "recommendation": None},
            unknown,
            manages=manages,
            team="TAM",
            signals=signal_names,
        )
    _growth(invoices, q, facts)
    filters, overridden = _filters(account, mrr, q, facts, now)
    if filters:
        return verdict("disqualify", filters)
    opening = any(name in OPENING_SIGNALS for name in signal_names)
    return verdict(*_step_five(account, mrr, paid, activated, policy, facts, overridden, opening, now))


def _step_five(
    account: Account,
    mrr: float,
    paid: set[str] | None,
    activated: set[str] | None,
    policy: Policy,
    facts: _Facts,
    overridden: list[str],
    signalled: bool,
    now: datetime,
) -> tuple[Recommendation, list[str]]:
    """Step 5, "is it qualified?", for a lead no quick filter deprioritised: pass, nurture or
    qualify (the module's docstring gives the order), with the reasons."""
    q = policy.qualification
    nurture: list[str] = []
    if facts.growing and mrr < q.nurture_mrr_under:
        nurture.append(f"spend growing ({facts.growth_text}) but mrr {fmt_num(mrr)} < {fmt_num(q.nurture_mrr_under)}")
    early = _early(account, q)
    if early:
        nurture.append(early)
    checks = [_path(mrr, q, facts), _multi(paid, activated, _primary(policy), q, facts), _can_grow(account, q, now)]
    texts = [*overridden, *(text for _, text in checks)]
    (path, _), (multi, _), (can_grow, _) = checks
    passed = _pass(account, paid, activated, q, facts, path=path, multi=multi, can_grow=can_grow, now=now)
    if passed:
        return "disqualify", [passed, facts.growth_text, *texts]
    if nurture:
        return "nurture", nurture + texts
    if all(ok for ok, _ in checks):
        if signalled:
            return "qualify", [facts.growth_text, *texts]
        return "nurture", ["no opening message yet (no opening signal found)", facts.growth_text, *texts]
    if any(ok for ok, _ in checks):
        return "nurture", ["potential without an urgency signal", facts.growth_text, *texts]
    return "nurture", ["too little known to pass or qualify it", facts.growth_text, *texts]


def _pass(
    account: Account,
    paid: set[str] | None,
    activated: set[str] | None,
    q: QualificationPolicy,
    facts: _Facts,
    *,
    path: bool,
    multi: bool,
    can_grow: bool,
    now: datetime,
) -> str | None:
    """Step 5's "pass or disqualify", where the account shows it (None otherwise):

    - "company is too small to realistically hit $20k ARR": no realistic path, fewer employees
      than `employees_min` (known, not missing) and no growth trajectory (funding, hiring);
    - "spend is flat or declining with no expansion lever": no growth trend, no multi-product
      opportunity (products known, not missing) and no growth trajectory.

    Missing data is no evidence: an account whose size, products or trend (fewer than 2 invoices)
    is unknown is not passed on their account. "Usage looks like a misconfiguration" is left to
    the TAM (README, "What the handbook leaves to people"): a spike on one product is also the
    handbook's growth anomaly to open with, and billing alone cannot tell the two apart."""
    if not path and not can_grow and account.employee_count is not None:
        return f"company too small to realistically hit {fmt_num(q.target_arr)} ARR"
    if facts.growing or facts.growth is None or multi or (paid is None and activated is None):
        return None  # growing, or a trend the invoices cannot show yet (fewer than 2): no evidence
    rising, _ = _trajectory(account, q, now)
    if rising:
        return None
    return "spend flat or declining with no expansion lever (no multi-product opportunity, no funding or hiring)"


# Asked by `evaluate_account` for the product-led lead routing has just chosen, and only then.
RECOMMENDATION: AccountRule = Rule(RULE_ID, recommend)


def not_product_led(account: Account, policy: Policy) -> Decision:
    """The verdict `explain` shows for an account no product-led trigger routed: nothing to qualify."""
    return Decision(
        RULE_ID,
        account.id,
        False,
        "not a product-led lead",
        manages=frozenset({policy.qualification.segment}),
    )
