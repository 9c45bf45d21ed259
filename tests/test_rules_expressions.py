"""Custom triggers as safe expressions (rules.md: "adding a trigger must need no code change")."""

from __future__ import annotations

from dataclasses import fields
from datetime import UTC, date, datetime
from typing import Any

import pytest

from core.model import Account, Invoice, Lead, Opportunity
from rules.context import EMPTY, AccountContext
from rules.expressions import (
    FUNCTIONS,
    VARIABLES,
    CustomTrigger,
    ExpressionError,
    account_variables,
    compile_trigger,
)

NOW = datetime(2026, 11, 22, tzinfo=UTC)
EXAMPLE = CustomTrigger(
    id="custom.surveys_upsell",
    team="TAM",
    when='mrr > 800 and "surveys" not in paid_products',
    reason="MRR {mrr} > 800 and not paying for surveys",
)


def account(**kw: Any) -> Account:
    base: dict[str, Any] = {
        "id": "acc_1",
        "name": "Acme",
        "updated_at": NOW,
        "mrr": 812,
        "paid_products": ("product_analytics", "session_replay"),
    }
    base.update(kw)
    return Account(**base)


def trigger(when: str, reason: str = "matched", team: str = "TAM") -> CustomTrigger:
    return CustomTrigger(id="custom.test", team=team, when=when, reason=reason)


def error(when: str, reason: str = "matched", team: str = "TAM") -> ExpressionError:
    with pytest.raises(ExpressionError) as caught:
        compile_trigger(trigger(when, reason, team))
    return caught.value


def test_example_trigger_fires_with_its_reason() -> None:
    decision = compile_trigger(EXAMPLE).evaluate(account(), EMPTY, NOW)
    assert decision.fired
    assert decision.rule == "custom.surveys_upsell"
    assert decision.team == "TAM"
    assert decision.reason == "MRR 812 > 800 and not paying for surveys"
    assert decision.traits == {"routing_reason": "custom.surveys_upsell: MRR 812 > 800 and not paying for surveys"}
    assert decision.inputs == {"mrr": 812, "paid_products": ["product_analytics", "session_replay"]}


@pytest.mark.parametrize(
    ("kw", "fired"),
    [
        ({}, True),
        ({"mrr": 800}, False),
        ({"mrr": 800.01}, True),
        ({"paid_products": ("product_analytics", "surveys")}, False),
        ({"paid_products": ()}, True),
    ],
)
def test_example_trigger_thresholds(kw: dict[str, Any], fired: bool) -> None:
    decision = compile_trigger(EXAMPLE).evaluate(account(**kw), EMPTY, NOW)
    assert decision.fired is fired, decision.reason
    if not fired:
        assert decision.reason == 'not (mrr > 800 and "surveys" not in paid_products)'
        assert decision.traits == {}


def test_unknown_input_does_not_fire_and_is_named() -> None:
    decision = compile_trigger(EXAMPLE).evaluate(account(mrr=None, paid_products=None), EMPTY, NOW)
    assert not decision.fired
    assert decision.unknown == ("mrr", "paid_products")
    assert decision.reason == "unknown: mrr, paid_products"


def test_unknown_input_is_named_even_when_the_rest_would_decide() -> None:
    decision = compile_trigger(trigger("mrr > 100 or employee_count > 50")).evaluate(account(), EMPTY, NOW)
    assert not decision.fired
    assert decision.unknown == ("employee_count",)


def test_syntax_error_has_its_position() -> None:
    exc = error("mrr > 800 and and paid_products")
    assert exc.rule_id == "custom.test"
    assert exc.position == 14
    assert exc.message == "unexpected token 'and'"
    assert str(exc) == "custom.test: when: position 14: unexpected token 'and'"


@pytest.mark.parametrize(
    ("when", "position", "message"),
    [
        ("mrr >", 5, "unexpected end of expression"),
        ("mrr > 800 && x", 10, "unexpected token '&&' (use 'and')"),
        ("mrr = 800", 4, "unexpected token '=' (use == to compare)"),
        ("(mrr > 800", 0, "'(' was never closed"),
        ('"surveys in paid_products', 0, "unterminated string literal (detected at line 1)"),
        ("  mrr > 800 and and x", 16, "unexpected token 'and'"),
    ],
)
def test_syntax_errors_point_at_the_problem(when: str, position: int, message: str) -> None:
    exc = error(when)
    assert (exc.position, exc.message) == (position, message)


def test_unknown_variable_is_rejected_at_compile_with_a_suggestion() -> None:
    exc = error('mrr > 800 and "surveys" not in paid_product')
    assert exc.position == 31
    assert exc.message == "unknown variable 'paid_product' (did you mean 'paid_products'?)"


@pytest.mark.parametrize(
    ("when", "message"),
    [
        ("__import__('os')", "function '__import__' is not allowed (only len, min, max, abs, round, get)"),
        ("__import__('os').system('true')", "only the listed functions can be called, by name"),
        ("mrr.__class__", "attribute access is not allowed"),
        ("paid_products.__class__.__mro__", "attribute access is not allowed"),
        (
            "().__class__.__bases__[0].__subclasses__()",
            "only the listed functions can be called, by name",
        ),
        ("eval('1')", "function 'eval' is not allowed (only len, min, max, abs, round, get)"),
        ("open('/etc/passwd')", "function 'open' is not allowed (only len, min, max, abs, round, get)"),
        ("__builtins__", "unknown variable '__builtins__'"),
        ("[x for x in paid_products]", "ListComp is not allowed"),
        ("(lambda: 1)()", "only the listed functions can be called, by name"),
        ("lambda: 1", "Lambda is not allowed"),
        ("mrr ** 1000000 > 1", "operator '**' is not allowed"),
        ("mrr is None", "operator 'is' is not allowed"),
        ("{'a': 1}", "Dict is not allowed"),
        ("len(*paid_products)", "len() takes plain arguments only"),
        ("b'x' in paid_products", "constant b'x' is not allowed"),
    ],
)
def test_code_execution_attempts_are_rejected(when: str, message: str) -> None:
    assert error(when).message == message


def test_rejected_constructs_have_positions() -> None:
    assert error("mrr > 1 and mrr.__class__").position == 12
    assert error("mrr > 1 and mrr ** 2 > 1").position == 16


def test_reason_template_is_checked_at_compile() -> None:
    exc = error("mrr > 1", reason="MRR {mrr} for {nmae}")
    assert (exc.field, exc.position) == ("reason", 14)
    assert str(exc) == "custom.test: reason: position 14: unknown variable 'nmae' (did you mean 'name'?)"
    assert "only plain variable names" in error("mrr > 1", reason="{mrr.__class__}").message
    assert "must name a variable" in error("mrr > 1", reason="{}").message
    assert error("mrr > 1", reason="{mrr").field == "reason"


def test_team_is_checked_at_compile() -> None:
    exc = error("mrr > 1", team="Sales")
    assert str(exc) == "custom.test: team: unknown team 'Sales' (one of TAE, TAM, CSM, BDR, Onboarding)"


def test_empty_expression_is_rejected() -> None:
    assert error("   ").message == "empty expression"


def test_documented_syntax_works() -> None:
    acc = account(
        country="DE",
        product_spend={"surveys": 120.0},
        invoices=(Invoice("2026-08", 600), Invoice("2026-09", 700), Invoice("2026-10", 900)),
        first_paid_at=date(2026, 1, 15),
        is_b2b=True,
    )
    expressions = [
        "500 <= mrr <= 1667",
        'country in ["DE", "FR"] and country not in ("US",)',
        "not (mrr < 100) or false",
        'product_spend["surveys"] > 100',
        'get(product_spend, "error_tracking", 0) == 0',
        'invoices[-1]["amount"] == 900',
        "len(paid_products) == 2 and max(mrr, 1000) == 1000 and abs(-mrr) == mrr and round(mrr / 3, 1) == 270.7",
        "mrr * 12 == arr and (mrr + 8) // 10 == 82 and mrr % 2 == 0 and -mrr < 0",
        '"big" if mrr > 500 else "small"',  # not a bool: rejected at evaluation, see below
        'first_paid_at < "2026-06-01"',
        "is_b2b == true",
        "mrr > 800\n and is_b2b",
    ]
    results = [compile_trigger(trigger(text)).evaluate(acc, EMPTY, NOW) for text in expressions]
    assert [d.fired for d in results] == [True] * 8 + [False] + [True] * 3
    assert results[8].review
    assert results[8].reason == "when must be true or false, got 'big'"


def test_runtime_error_does_not_fire_and_asks_for_review() -> None:
    decision = compile_trigger(trigger('product_spend["surveys"] > 100')).evaluate(
        account(product_spend={}), EMPTY, NOW
    )
    assert not decision.fired
    assert decision.review
    assert decision.reason == "when could not be evaluated: KeyError: 'surveys'"


def test_derived_variables() -> None:
    acc = account(
        mrr=1000,
        created_at=datetime(2026, 11, 1, tzinfo=UTC),
        invoices=(Invoice("2026-07", 100), Invoice("2026-08", 800), Invoice("2026-09", 900), Invoice("2026-10", 1000)),
        paid_products=("Product analytics", "session-replay", "llm_analytics"),
        key_roles={"CSM": "u1"},
        segments=frozenset({"Leads", "AM referral"}),
    )
    ctx = AccountContext(
        leads=(Lead("00Q1", NOW, status="Open"), Lead("00Q2", NOW, status="Disqualified")),
        opportunities=(Opportunity("006", None, "Closed Lost", None, None, None),),
    )
    values = account_variables(acc, ctx, NOW)
    assert set(values) == set(VARIABLES)
    assert {
        name: values[name]
        for name in (
            "arr",
            "paying_months",
            "primary_products_count",
            "last_invoice",
            "first_invoice",
            "mrr_growth_3m",
            "segments",
            "has_owner",
            "open_leads",
            "open_opportunities",
            "days_since_created",
            "created_at",
        )
    } == {
        "arr": 12_000,
        "paying_months": 4,
        "primary_products_count": 2,
        "last_invoice": 1000,
        "first_invoice": 100,
        "mrr_growth_3m": pytest.approx(0.25),
        "segments": ["AM referral", "Leads"],
        "has_owner": True,
        "open_leads": 1,
        "open_opportunities": 0,
        "days_since_created": 21,
        "created_at": "2026-11-01T00:00:00+00:00",
    }


def test_every_account_field_is_a_variable() -> None:
    assert {f.name for f in fields(Account)} - {"written"} <= set(VARIABLES)
    assert not set(FUNCTIONS) & set(VARIABLES)


def test_reason_formats_like_the_other_rules() -> None:
    compiled = compile_trigger(
        trigger("mrr > 0", reason="{mrr} / {arr:,.0f} / {paid_products} / {employee_count} / {is_b2b}")
    )
    decision = compiled.evaluate(account(mrr=1234.5, is_b2b=False), EMPTY, NOW)
    assert decision.reason == "1,234.5 / 14,814 / product_analytics, session_replay / unknown / false"


def test_thousand_accounts_fire_the_expected_count() -> None:
    compiled = compile_trigger(EXAMPLE)
    accounts = [
        account(
            id=f"acc_{i}",
            mrr=None if i % 10 == 0 else float(i),
            paid_products=("surveys",) if i % 7 == 0 else ("product_analytics",),
        )
        for i in range(1000)
    ]
    decisions = [compiled.evaluate(acc, EMPTY, NOW) for acc in accounts]
    fired = sum(d.fired for d in decisions)
    expected = sum(1 for i in range(801, 1000) if i % 10 != 0 and i % 7 != 0)
    assert fired == expected == 155
    assert sum(d.unknown == ("mrr",) for d in decisions) == 100


def test_reason_with_an_unsuitable_format_spec_still_fires() -> None:
    decision = compile_trigger(trigger("mrr > 0", reason="{paid_products:.0f}")).evaluate(account(), EMPTY, NOW)
    assert decision.fired
    assert decision.reason.startswith("{paid_products:.0f} (reason could not be formatted: ")


# -- hostile triggers (issue #13, item 4): refused at load, or bounded at run time ----------------------


@pytest.mark.parametrize(
    ("when", "limit"),
    [
        ("'ab' * 1000000000 == ''", "repetition longer than 10,000"),
        ("1000000000 * [1] == []", "repetition longer than 10,000"),
        ("'%0999999999d' % 1 == ''", "% on text"),
        ("plan % 1 == ''", "% on text"),  # the text comes from the record: refused at run time too
        ("round(mrr, -1000000000) > 0", "round() to more than 20 digits"),
        ("(mrr * 1" + "0" * 700 + ") * 1" + "0" * 700 + " > 0", "more than 4,096 bits"),
        ("len(name + name + name) > 0", "longer than 10,000"),
        (" or ".join(["name + name in name"] * 60), "characters and items touched"),
    ],
)
def test_runtime_limits_stop_a_hostile_expression_at_once_and_ask_for_review(when: str, limit: str) -> None:
    compiled = compile_trigger(trigger(when))
    decision = compiled.evaluate(account(name="N" * 5_000, plan="%0999999999d"), EMPTY, NOW)
    assert not decision.fired
    assert decision.review
    assert decision.reason.startswith("when could not be evaluated: ExpressionLimitError: ")
    assert limit in decision.reason


def test_runtime_budget_is_per_evaluation() -> None:
    compiled = compile_trigger(trigger(" or ".join(["name + name in name"] * 60)))
    assert compiled.evaluate(account(name="N" * 5_000), EMPTY, NOW).review  # over the budget once …
    for _ in range(50):  # … and a small account after it is evaluated in full, again and again
        decision = compiled.evaluate(account(name="Acme"), EMPTY, NOW)
        assert not decision.review and not decision.fired
    steps = compile_trigger(trigger(" and ".join(["mrr > 1"] * 150)))
    for _ in range(50):  # ~450 steps each: 22,500 in all, beyond one budget of 10,000
        assert steps.evaluate(account(), EMPTY, NOW).fired


@pytest.mark.parametrize(
    ("reason", "message"),
    [
        ("{mrr:999999999}", "width 999,999,999 is more than 100"),
        ("{mrr:,.999999999f}", "precision 999,999,999 is more than 20"),
        ("{mrr:>0999999999}", "width 999,999,999 is more than 100"),
        ("{mrr:!!}", "not a format spec"),
        ("{name:xq}", "not a format spec"),
    ],
)
def test_reason_format_spec_is_checked_at_load(reason: str, message: str) -> None:
    problem = error("mrr > 1", reason)
    assert problem.field == "reason"
    assert message in problem.message


def test_reason_format_specs_people_write_are_accepted() -> None:
    for reason in ("{mrr:,.0f}", "{arr:>12,.2f}", "{name:<20}", "{mrr:.1%}", "{mrr:_}", "{country:*^10}"):
        compile_trigger(trigger("mrr > 1", reason))


def test_expression_nested_too_deep_is_refused_at_load() -> None:
    problem = error("not " * 120 + "is_b2b")
    assert "nested more than 100 levels" in problem.message
    compile_trigger(trigger("not " * 40 + "is_b2b"))
