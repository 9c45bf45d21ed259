"""Evaluations per second and error quality of candidate expression libraries for custom triggers.

Usage: .venv/bin/python bench/expressions.py [--n 50000]

Each library compiles the example trigger of the task once, then evaluates it `n` times against a
few alternating variable sets (the way the daemon evaluates one trigger over many accounts). It
then prints the error each library gives for a bad expression and for an unknown name. A library
that is not installed is skipped: only simpleeval is a dependency; for the comparison run
`.venv/bin/pip install common-expression-language rule-engine` first. Nothing here ever calls
`eval()` on the expression text.
"""

from __future__ import annotations

import argparse
import importlib
import time
from collections.abc import Callable
from typing import Any

VARIABLE_SETS: list[dict[str, Any]] = [
    {"mrr": 812.0, "paid_products": ["product_analytics", "session_replay"]},
    {"mrr": 650.0, "paid_products": ["product_analytics"]},
    {"mrr": 1200.0, "paid_products": ["product_analytics", "surveys"]},
    {"mrr": 900.0, "paid_products": []},
]
EXPECTED = [True, False, False, True]
BAD_SYNTAX = "mrr > 800 and and paid_products"
UNKNOWN_NAME = "mrrr > 800"
CODE_EXEC = '__import__("os").system("true")'


def _rate(run: Callable[[dict[str, Any]], Any], n: int) -> float:
    results = [bool(run(variables)) for variables in VARIABLE_SETS]
    assert results == EXPECTED, results
    sets = VARIABLE_SETS * (n // len(VARIABLE_SETS))
    start = time.perf_counter()
    for variables in sets:
        run(variables)
    return len(sets) / (time.perf_counter() - start)


def _error(action: Callable[[], Any]) -> str:
    try:
        action()
    except Exception as exc:  # the point is to show whatever each library raises
        return f"{type(exc).__name__}: {exc}".replace("\n", " | ")
    return "(no error)"


def bench_cel(n: int) -> None:
    cel: Any = importlib.import_module("cel")  # pip install common-expression-language

    source = 'mrr > 800.0 && !("surveys" in paid_products)'
    program = cel.compile(source)
    print(f"CEL (common-expression-language)  {source}")
    print(f"  {_rate(program.execute, n):>10,.0f} evaluations/s (dict per call)")

    def with_context(variables: dict[str, Any]) -> Any:
        return program.execute(cel.Context(variables))

    print(f"  {_rate(with_context, n):>10,.0f} evaluations/s (cel.Context per call)")
    print(f"  syntax error : {_error(lambda: cel.compile('mrr > 800.0 && && paid_products'))}")
    print(f"  unknown name : {_error(lambda: cel.compile('mrrr > 800.0').execute(VARIABLE_SETS[0]))}")
    print(f"  static names : {cel.compile('mrrr > 800.0').variables()} (checkable at compile time)")
    print(f"  int vs double: {_error(lambda: cel.evaluate('mrr > 800', {'mrr': 812.0}))}")


def bench_simpleeval(n: int) -> None:
    from simpleeval import EvalWithCompoundTypes

    source = 'mrr > 800 and "surveys" not in paid_products'
    evaluator = EvalWithCompoundTypes()
    parsed = evaluator.parse(source)

    def run(variables: dict[str, Any]) -> Any:
        evaluator.names = variables
        return evaluator.eval(source, previously_parsed=parsed)

    print(f"simpleeval  {source}")
    print(f"  {_rate(run, n):>10,.0f} evaluations/s (parsed once)")

    def fresh(variables: dict[str, Any]) -> Any:
        return EvalWithCompoundTypes(names=variables).eval(source, previously_parsed=parsed)

    print(f"  {_rate(fresh, n):>10,.0f} evaluations/s (parsed once, new evaluator per call)")

    def reparse(variables: dict[str, Any]) -> Any:
        evaluator.names = variables
        return evaluator.eval(source)

    print(f"  {_rate(reparse, n):>10,.0f} evaluations/s (re-parsed every call)")
    print(f"  syntax error : {_error(lambda: evaluator.parse(BAD_SYNTAX))}")

    def unknown() -> Any:
        evaluator.names = VARIABLE_SETS[0]
        return evaluator.eval(UNKNOWN_NAME)

    print(f"  unknown name : {_error(unknown)}")
    print(f"  code exec    : {_error(lambda: evaluator.eval(CODE_EXEC))}")
    print(f"  dunder attr  : {_error(lambda: evaluator.eval('mrr.__class__'))}")


def bench_rule_engine(n: int) -> None:
    rule_engine: Any = importlib.import_module("rule_engine")  # optional: pip install rule-engine

    source = 'mrr > 800 and not "surveys" in paid_products'
    rule = rule_engine.Rule(source)
    print(f"rule-engine  {source}")
    print(f"  {_rate(rule.matches, n):>10,.0f} evaluations/s")
    print(f"  syntax error : {_error(lambda: rule_engine.Rule(BAD_SYNTAX))}")


def bench_custom_trigger(n: int) -> None:
    """The daemon's real path: `CompiledTrigger.evaluate` on `Account` records (variables + Decision)."""
    from datetime import UTC, datetime

    from core.model import Account
    from rules.context import EMPTY
    from rules.expressions import CustomTrigger, compile_trigger

    now = datetime(2026, 11, 22, tzinfo=UTC)
    trigger = CustomTrigger(
        "custom.surveys_upsell",
        "TAM",
        'mrr > 800 and "surveys" not in paid_products',
        "MRR {mrr} > 800 and not paying for surveys",
    )
    compiled = compile_trigger(trigger)
    accounts = [
        Account(id=str(i), name="A", updated_at=now, mrr=v["mrr"], paid_products=tuple(v["paid_products"]))
        for i, v in enumerate(VARIABLE_SETS)
    ]
    print("rules.expressions.CompiledTrigger.evaluate (simpleeval inside)")
    print(
        f"  {_rate(lambda v: compiled.evaluate(accounts[VARIABLE_SETS.index(v)], EMPTY, now).fired, n):>10,.0f}"
        " evaluations/s (Account -> Decision)"
    )
    bad = CustomTrigger("custom.surveys_upsell", "TAM", "mrr > 800 and and paid_products", "r")
    print(f"  syntax error : {_error(lambda: compile_trigger(bad))}")
    unknown = CustomTrigger("custom.surveys_upsell", "TAM", "mrrr > 800", "r")
    print(f"  unknown name : {_error(lambda: compile_trigger(unknown))}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=50_000)
    args = parser.parse_args()
    for bench in (bench_cel, bench_simpleeval, bench_rule_engine, bench_custom_trigger):
        try:
            bench(args.n)
        except ImportError as exc:
            print(f"{bench.__name__}: skipped ({exc})")
        print()


if __name__ == "__main__":
    main()
