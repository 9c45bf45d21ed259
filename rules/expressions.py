"""Custom triggers: the sales team adds a rule in the config, as a safe expression, without code.

    [[rules.custom]]
    id = "custom.surveys_upsell"
    team = "TAM"
    when = 'mrr > 800 and "surveys" not in paid_products'
    reason = "MRR {mrr} > 800 and not paying for surveys"

`when` is evaluated by simpleeval (https://github.com/danthedeckie/simpleeval) over plain data,
after our own allow-list check of its syntax tree at config load; the text is never given to
Python's `eval()`. Everything wrong with a trigger (syntax, unknown variable, forbidden
construct, bad team, bad reason template) raises `ExpressionError` from `compile_trigger`,
so a bad config fails at load, not in the middle of a run.

Syntax of `when` (a Python-like expression; anything not listed is rejected):

    =========================  ==========================================================
    construct                  example
    =========================  ==========================================================
    numbers, strings, bools    ``800``, ``0.25``, ``"surveys"``, ``'DE'``, ``true``/``True``
    comparison                 ``==  !=  <  <=  >  >=`` (chains work: ``500 <= mrr <= 1667``)
    membership                 ``"surveys" in paid_products``, ``country not in ["US", "CA"]``
    boolean logic              ``and``, ``or``, ``not``, parentheses
    arithmetic                 ``+  -  *  /  //  %`` (no ``**``)
    conditional                ``a if condition else b``
    lists, tuples              ``["US", "CA"]``, ``("US", "CA")``
    subscript                  ``product_spend["surveys"]``, ``invoices[-1]["amount"]``
    functions                  ``len(x)``, ``min(a, b)``, ``max(a, b)``, ``abs(x)``,
                               ``round(x)``, ``round(x, 2)``, ``get(mapping, key, default)``
    =========================  ==========================================================

Not allowed: attribute access (``x.y``), any other function, comprehensions, lambdas,
assignments, ``**``, bit operators, ``is``, ``%`` on text (string formatting). ``&&``, ``||`` and
``!`` are rejected with a hint to use ``and``, ``or``, ``not``.

Limits (a trigger is data from a config file, and must never exhaust the daemon): at load, `when`
is at most 2,000 characters nesting at most `MAX_NESTING` levels, and every format spec of
`reason` is one of Python's with a width of at most `MAX_FORMAT_WIDTH` and a precision of at most
`MAX_FORMAT_PRECISION` (``{mrr:999999999}`` is refused at load). At run time every operator and
function is guarded: text and lists built by ``+`` and ``*`` hold at most `MAX_LENGTH`
characters or items, a whole number at most `MAX_INTEGER_BITS` bits, ``round`` at most 20 digits;
and one evaluation may take at most `MAX_STEPS` steps and touch at most `MAX_WORK` characters or
items in all. A trigger that goes past a run-time limit does not fire for that account and is
reported (`review`, with the limit it reached), like any other evaluation error; the cycle goes on.

Variables (see `VARIABLES` for the full list with descriptions): every `Account` field by its
canonical name (data-model.md; dates and timestamps as ISO strings, which compare correctly as
text, ``invoices`` as a list of ``{"month", "amount"}``, maps as dicts, lists as lists), plus
``arr``, ``paying_months``, ``primary_products_count``, ``last_invoice``, ``first_invoice``,
``mrr_growth_3m``, ``has_owner``, ``open_leads``, ``open_opportunities``, ``days_since_created``.

Unknown inputs: a variable the expression mentions that is unknown (``None``) makes the
trigger not fire, and the decision names it in `unknown` (data-model.md: absent is unknown,
not zero) – even when the expression could have been decided without it.

`reason` is a `str.format` template over the same variables (``{mrr}``, ``{arr:,.0f}``); a
number without a format spec is written like the other rules write numbers (``1,234.5``), an
unknown value as ``unknown``, a list as ``a, b``. Attribute access is rejected here too.
"""

from __future__ import annotations

import ast
import bisect
import difflib
import math
import operator
import re
import string
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from datetime import date, datetime, timedelta
from typing import Any, get_args

from simpleeval import EvalWithCompoundTypes, InvalidExpression

from core.model import Account, Invoice
from rules import clock
from rules.base import Decision, Team, fmt_num, product_key
from rules.context import AccountContext
from rules.policy import Policy
from rules.product_led import paying_months

__all__ = [
    "FUNCTIONS",
    "VARIABLES",
    "CompiledTrigger",
    "CustomTrigger",
    "ExpressionError",
    "account_variables",
    "compile_trigger",
]

MAX_EXPRESSION_LENGTH = 2000
MAX_NESTING = 100  # levels of the syntax tree: the evaluator recurses once per level
MAX_FORMAT_WIDTH = 100
MAX_FORMAT_PRECISION = 20
MAX_LENGTH = 10_000  # characters of text, items of a list, built by + or *
MAX_INTEGER_BITS = 4_096  # about 1,200 digits
MAX_ROUND_DIGITS = 20
MAX_STEPS = 10_000  # syntax tree nodes evaluated in one evaluation
MAX_WORK = 1_000_000  # characters and items the operators and functions of one evaluation touch


class ExpressionLimitError(ValueError):
    """An evaluation went past one of the run-time limits (see the module docstring)."""


class ExpressionError(Exception):
    """A custom trigger that cannot be used, found at config load.

    `field` is the trigger field at fault (``when``, ``reason``, ``team``); `position` the
    0-based character offset in it, when known.
    """

    def __init__(self, rule_id: str, message: str, position: int | None = None, field: str = "when") -> None:
        self.rule_id = rule_id
        self.message = message
        self.position = position
        self.field = field
        where = f"position {position}: " if position is not None else ""
        super().__init__(f"{rule_id}: {field}: {where}{message}")


@dataclass(frozen=True)
class CustomTrigger:
    """One `[[rules.custom]]` entry of the config, as written there."""

    id: str
    team: str
    when: str
    reason: str


def _get(mapping: object, key: object, default: object = None) -> object:
    if not isinstance(mapping, Mapping):
        raise TypeError(f"get() needs a map, not {type(mapping).__name__}")
    return mapping.get(key, default)


def _round(number: Any, digits: Any = None) -> object:
    # round(5, -10**9) computes 10**(10**9): the digits are bounded before Python sees them.
    if digits is not None and isinstance(digits, int) and abs(digits) > MAX_ROUND_DIGITS:
        raise ExpressionLimitError(f"round() to more than {MAX_ROUND_DIGITS} digits")
    return round(number) if digits is None else round(number, digits)


def _size(value: object) -> int:
    """What an operand costs to touch: its length (text, lists, maps), else 1."""
    return len(value) if isinstance(value, str | list | tuple | dict) else 1


def _sequence_times(value: object, times: object) -> None:
    """`text * n` and `list * n` build at most MAX_LENGTH characters or items."""
    if isinstance(value, str | list | tuple) and isinstance(times, int) and times * len(value) > MAX_LENGTH:
        raise ExpressionLimitError(f"repetition longer than {MAX_LENGTH:,}")


def _safe_mul(left: Any, right: Any) -> object:
    _sequence_times(left, right)
    _sequence_times(right, left)
    if isinstance(left, int) and isinstance(right, int) and left.bit_length() + right.bit_length() > MAX_INTEGER_BITS:
        raise ExpressionLimitError(f"a whole number of more than {MAX_INTEGER_BITS:,} bits")
    return left * right


def _safe_add(left: Any, right: Any) -> object:
    sequences = isinstance(left, str | list | tuple) and isinstance(right, str | list | tuple)
    if sequences and len(left) + len(right) > MAX_LENGTH:
        raise ExpressionLimitError(f"text or list longer than {MAX_LENGTH:,}")
    return left + right


def _safe_mod(left: Any, right: Any) -> object:
    # `"%0999999999d" % 1` builds a gigabyte: % is arithmetic here, never string formatting.
    if isinstance(left, str | bytes):
        raise ExpressionLimitError("% on text (string formatting) is not allowed")
    return left % right


class _Budget:
    """What one evaluation may spend: `MAX_STEPS` nodes, `MAX_WORK` characters and items."""

    def __init__(self) -> None:
        self.steps = 0
        self.work = 0

    def reset(self) -> None:
        self.steps = self.work = 0

    def step(self) -> None:
        self.steps += 1
        if self.steps > MAX_STEPS:
            raise ExpressionLimitError(f"more than {MAX_STEPS:,} steps")

    def charge(self, args: tuple[object, ...]) -> None:
        self.work += sum(map(_size, args))
        if self.work > MAX_WORK:
            raise ExpressionLimitError(f"more than {MAX_WORK:,} characters and items touched")


def _metered(fn: Callable[..., object], budget: _Budget) -> Callable[..., object]:
    def metered(*args: object) -> object:
        budget.charge(args)
        return fn(*args)

    return metered


class _LimitedEval(EvalWithCompoundTypes):  # type: ignore[misc]  # simpleeval is untyped
    """simpleeval's evaluator with a step budget: every node evaluated is one step."""

    def __init__(self, budget: _Budget, operators: dict[type[ast.AST], Callable[..., object]]) -> None:
        super().__init__(operators=operators)
        self.budget = budget

    def _eval(self, node: ast.AST) -> Any:
        self.budget.step()
        return super()._eval(node)


FUNCTIONS: Mapping[str, Callable[..., object]] = {
    "len": len,
    "min": min,
    "max": max,
    "abs": abs,
    "round": _round,
    "get": _get,
}
"""The only functions an expression may call."""

_OPERATORS: Mapping[type[ast.AST], Callable[..., object]] = {
    ast.Add: _safe_add,
    ast.Sub: operator.sub,
    ast.Mult: _safe_mul,
    ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv,
    ast.Mod: _safe_mod,
    ast.Eq: operator.eq,
    ast.NotEq: operator.ne,
    ast.Gt: operator.gt,
    ast.Lt: operator.lt,
    ast.GtE: operator.ge,
    ast.LtE: operator.le,
    ast.Not: operator.not_,
    ast.USub: operator.neg,
    ast.UAdd: operator.pos,
    ast.In: lambda a, b: a in b,
    ast.NotIn: lambda a, b: a not in b,
}

_ALLOWED_NODES: tuple[type[ast.AST], ...] = (
    ast.Expression,
    ast.BoolOp,
    ast.And,
    ast.Or,
    ast.UnaryOp,
    ast.BinOp,
    ast.Compare,
    ast.IfExp,
    ast.Name,
    ast.Load,
    ast.Constant,
    ast.List,
    ast.Tuple,
    ast.Subscript,
    ast.Call,
    *_OPERATORS,
)

# `true`, `false`, `null` as in TOML/JSON, for people who write them that way.
_CONSTANTS: Mapping[str, object] = {"true": True, "false": False, "null": None}

_HINTS = {"=": "use == to compare", "&&": "use 'and'", "||": "use 'or'", "!": "use 'not'", "&": "use 'and'"}

Getter = Callable[[Account, AccountContext, datetime, Policy], object]


def _plain(value: object) -> object:
    """Record values as plain data for expressions: no objects with attributes to walk."""
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, Invoice):
        return {"month": value.month, "amount": value.amount}
    if isinstance(value, frozenset | set):
        return sorted(_plain(item) for item in value)  # type: ignore[type-var]
    if isinstance(value, tuple | list):
        return [_plain(item) for item in value]
    if isinstance(value, Mapping):
        return {str(key): _plain(item) for key, item in value.items()}
    return value


def _field_getter(name: str) -> Getter:
    return lambda account, ctx, now, policy: _plain(getattr(account, name))


def _last3(account: Account) -> tuple[Invoice, ...] | None:
    invoices = account.invoices
    return None if invoices is None or len(invoices) < 3 else invoices[-3:]


def _growth_3m(account: Account, ctx: AccountContext, now: datetime, policy: Policy) -> float | None:
    last3 = _last3(account)
    if last3 is None or last3[0].amount <= 0:
        return None
    return last3[-1].amount / last3[0].amount - 1


def _primary_count(account: Account, ctx: AccountContext, now: datetime, policy: Policy) -> int | None:
    if account.paid_products is None:
        return None
    primary = {product_key(name) for name in policy.allocation.primary_products}
    return len({product_key(name) for name in account.paid_products} & primary)


def _has_owner(account: Account, ctx: AccountContext, now: datetime, policy: Policy) -> bool:
    return any(role in account.roles for role in policy.owner_roles) or any(
        segment in account.segments for segment in policy.guards.owned_segments
    )


# The two variables the clock alone moves: `CompiledTrigger.evaluate` says when (`_note_clock`).
def _days_since_created(account: Account, ctx: AccountContext, now: datetime, policy: Policy) -> int | None:
    if account.created_at is None:
        return None
    return (now - account.created_at).days


def _paying_months(account: Account, ctx: AccountContext, now: datetime, policy: Policy) -> int | None:
    return paying_months(account, now)[0]


def _invoice_at(index: int) -> Getter:
    def get(account: Account, ctx: AccountContext, now: datetime, policy: Policy) -> float | None:
        return account.invoices[index].amount if account.invoices else None

    return get


_ACCOUNT_FIELDS = tuple(f.name for f in fields(Account) if f.name != "written")

_DERIVED: dict[str, tuple[str, Getter]] = {
    "arr": ("12 × mrr", lambda a, c, n, p: a.arr),
    "paying_months": ("months paying (first_paid_at, else paid invoices)", _paying_months),
    "primary_products_count": ("primary products in paid_products", _primary_count),
    "last_invoice": ("amount of the newest invoice", _invoice_at(-1)),
    "first_invoice": ("amount of the oldest invoice", _invoice_at(0)),
    "mrr_growth_3m": ("change over the last 3 invoices: newest / oldest − 1 (0.25 = +25 %)", _growth_3m),
    "has_owner": ("an owner key role (TAM, CSM, Account Executive) or segment AM Managed", _has_owner),
    "open_leads": ("open Salesforce leads of the account", lambda a, c, n, p: len(c.open_leads)),
    "open_opportunities": ("open Salesforce opportunities", lambda a, c, n, p: len(c.open_opportunities)),
    "days_since_created": ("whole days since created_at", _days_since_created),
}

VARIABLES: Mapping[str, str] = {
    **{name: f"Account.{name} (data-model.md)" for name in _ACCOUNT_FIELDS},
    **{name: text for name, (text, _) in _DERIVED.items()},
}
"""Every variable an expression or a reason template may use, with what it means."""

_GETTERS: Mapping[str, Getter] = {
    **{name: _field_getter(name) for name in _ACCOUNT_FIELDS},
    **{name: getter for name, (_, getter) in _DERIVED.items()},
}


def account_variables(
    account: Account, ctx: AccountContext, now: datetime, policy: Policy | None = None
) -> dict[str, object]:
    """Every variable of `VARIABLES` for one account (None when unknown)."""
    policy = policy or Policy()
    return {name: getter(account, ctx, now, policy) for name, getter in _GETTERS.items()}


class _ReasonFormatter(string.Formatter):
    def format_field(self, value: Any, format_spec: str) -> str:
        if value is None:
            return "unknown"
        if format_spec:
            return str(format(value, format_spec))
        if isinstance(value, bool):
            return "true" if value else "false"
        if isinstance(value, int | float):
            return fmt_num(value)
        if isinstance(value, list):
            return ", ".join(self.format_field(item, "") for item in value)
        return str(value)


_FORMATTER = _ReasonFormatter()


# Counts the clock alone moves, and only upwards: `days_since_created` grows by one at
# `created_at`'s time of day, `paying_months` (from `first_paid_at`) on its monthly anniversary.
_CLOCK_VARIABLES = ("days_since_created", "paying_months")


def _steps(tree: ast.Expression, name: str) -> tuple[int, ...] | None:
    """The whole-number values of the variable `name` at which the outcome of `tree` may change as
    the count grows by one, when every use of it in `tree` is an operand of a comparison whose
    neighbouring operands are numbers (`name < 400`, `30 <= name < 90`): `when` is then a function
    of those comparisons' outcomes (`name < 400` changes when the count becomes 400, `name <= 400`
    at 401, `name == 7` at 7 and 8). None for any other use (arithmetic, a function's argument,
    membership, a comparison with a variable): every value may change it."""
    uses = sum(1 for node in ast.walk(tree) if isinstance(node, ast.Name) and node.id == name)
    compared = 0
    steps: set[int] = set()
    for node in ast.walk(tree):
        if not isinstance(node, ast.Compare):
            continue
        operands = [node.left, *node.comparators]
        for index, operand in enumerate(operands):
            if not (isinstance(operand, ast.Name) and operand.id == name):
                continue
            compared += 1
            # (the operator, the number on its other side, whether the variable is on its left)
            sides = []
            if index > 0:
                sides.append((node.ops[index - 1], operands[index - 1], False))
            if index < len(node.ops):
                sides.append((node.ops[index], operands[index + 1], True))
            for op, other, left in sides:
                number = _number(other)
                changes = None if number is None else _changes_at(op, number, left)
                if changes is None:
                    return None
                steps.update(changes)
    return tuple(sorted(steps)) if compared == uses else None


def _changes_at(op: ast.cmpop, number: float, left: bool) -> tuple[int, ...] | None:
    """The whole values `k` of a count at which `count op number` (`number op count` when not
    `left`) differs from its outcome at `k - 1`; None for an operator other than the six comparisons."""
    if not left:  # `c < x` is `x > c`
        op = _MIRRORED.get(type(op), op)
    ceil, above = math.ceil(number), math.floor(number) + 1  # the least whole value ≥ / > number
    if isinstance(op, ast.Lt | ast.GtE):
        return (ceil,)
    if isinstance(op, ast.LtE | ast.Gt):
        return (above,)
    if isinstance(op, ast.Eq | ast.NotEq):
        return (ceil, ceil + 1) if ceil == number else ()
    return None


_MIRRORED: dict[type[ast.cmpop], ast.cmpop] = {
    ast.Lt: ast.Gt(),
    ast.LtE: ast.GtE(),
    ast.Gt: ast.Lt(),
    ast.GtE: ast.LtE(),
}


def _number(node: ast.expr) -> float | None:
    """The finite number a node is written as (`400`, `-1`, `2.5`), else None."""
    sign = 1
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub | ast.UAdd):
        sign = -1 if isinstance(node.op, ast.USub) else 1
        node = node.operand
    if not isinstance(node, ast.Constant) or isinstance(node.value, bool) or not isinstance(node.value, int | float):
        return None
    value = float(node.value) if isinstance(node.value, float) else node.value
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return sign * value


def _around(value: int, steps: tuple[int, ...] | None) -> tuple[int | None, int | None]:
    """The last step at or below `value` and the first above it (None: there is none); without
    steps, every value is one."""
    if steps is None:
        return value, value + 1
    index = bisect.bisect_right(steps, value)
    return (steps[index - 1] if index else None), (steps[index] if index < len(steps) else None)


def _days_after(moment: datetime, days: int | None) -> datetime | None:
    """`moment` plus whole `days`, None for None or beyond the calendar."""
    if days is None:
        return None
    try:
        return moment + timedelta(days=days)
    except OverflowError:
        return None


@dataclass(frozen=True)
class CompiledTrigger:
    """A custom trigger checked and parsed once; `evaluate` runs it over one account."""

    trigger: CustomTrigger
    names: tuple[str, ...]  # variables `when` reads, in order of first use
    template_names: tuple[str, ...]
    policy: Policy
    _tree: ast.Expression = field(repr=False, compare=False)
    _evaluator: _LimitedEval = field(repr=False, compare=False)
    _steps: Mapping[str, tuple[int, ...] | None] = field(default_factory=dict, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_steps", self.clock_steps)

    @property
    def id(self) -> str:
        return self.trigger.id

    @property
    def clock_steps(self) -> Mapping[str, tuple[int, ...] | None]:
        """For each variable of `when` that the clock alone moves (`days_since_created`,
        `paying_months`: counts that only grow), the values at which the outcome of `when` may
        change as it grows: `days_since_created < 400` may change when the count becomes 400, and
        at no other; None when `when` uses the variable otherwise than compared with a number
        (`days_since_created % 7 == 0`): then every step may change it."""
        return {name: _steps(self._tree, name) for name in _CLOCK_VARIABLES if name in self.names}

    def evaluate(self, account: Account, ctx: AccountContext, now: datetime) -> Decision:
        """The trigger's verdict on one account: fires when `when` is true (rule id = trigger id).

        Not thread-safe (one evaluator per trigger); a cycle evaluates sequentially.
        """
        trigger = self.trigger
        team: Team = trigger.team  # type: ignore[assignment]  # checked in compile_trigger
        policy = self.policy
        inputs = {name: _GETTERS[name](account, ctx, now, policy) for name in self.names}
        unknown = tuple(name for name, value in inputs.items() if value is None)
        if unknown:
            reason = "unknown: " + ", ".join(unknown)
            return Decision(trigger.id, account.id, False, reason, inputs, unknown, team=team)
        self._note_clock(account, now, inputs)
        self._evaluator.names = {**_CONSTANTS, **inputs}
        self._evaluator.budget.reset()
        try:
            result = self._evaluator.eval(trigger.when, previously_parsed=self._tree.body)
        except (ArithmeticError, LookupError, TypeError, ValueError, InvalidExpression, RecursionError) as exc:
            # The expression is valid but cannot be computed for this record (a missing key,
            # text compared with a number): one bad record, reported for review, not a crash.
            reason = f"when could not be evaluated: {type(exc).__name__}: {exc}"
            return Decision(trigger.id, account.id, False, reason, inputs, team=team, review=True)
        if not isinstance(result, bool):
            reason = f"when must be true or false, got {result!r}"
            return Decision(trigger.id, account.id, False, reason, inputs, team=team, review=True)
        if not result:
            return Decision(trigger.id, account.id, False, f"not ({trigger.when})", inputs, team=team)
        variables: dict[str, object] = inputs
        if any(name not in inputs for name in self.template_names):
            # Read only for the text, which no plan compares: no date it reads is a day to judge again.
            with clock.unwatched():
                variables = {
                    **inputs,
                    **{name: _GETTERS[name](account, ctx, now, policy) for name in self.template_names},
                }
        try:
            text = _FORMATTER.vformat(trigger.reason, (), variables)
        except (TypeError, ValueError) as exc:  # a format spec that does not suit the value, e.g. {country:.0f}
            text = f"{trigger.reason} (reason could not be formatted: {exc})"
        return Decision(
            trigger.id,
            account.id,
            True,
            text,
            inputs,
            traits={"routing_reason": f"{trigger.id}: {text}"},
            team=team,
        )

    def _note_clock(self, account: Account, now: datetime, inputs: Mapping[str, object]) -> None:
        """Say (`rules.clock`) when the clock alone may change the outcome of `when` for this
        account: when a count it reads reaches the next of its `clock_steps` (every value when it
        has none). Called once every input is known: an unknown one makes the verdict "unknown",
        which no date changes."""
        for name, steps in self._steps.items():
            value = inputs[name]
            if not isinstance(value, int):
                continue
            last, following = _around(value, steps)
            if name == "days_since_created" and account.created_at is not None:
                created = account.created_at
                clock.holds_between(_days_after(created, last), _days_after(created, following))
            elif name == "paying_months" and account.first_paid_at is not None and following is not None:
                clock.changes_when_months_reach(account.first_paid_at, following)


def _char_offset(text: str, lineno: int, col_offset: int) -> int:
    """ast positions are (1-based line, UTF-8 byte column); return a 0-based character offset."""
    lines = text.splitlines(keepends=True)
    before = sum(len(line) for line in lines[: lineno - 1])
    line = lines[lineno - 1] if lineno - 1 < len(lines) else ""
    return before + len(line.encode()[:col_offset].decode(errors="ignore"))


def _unknown_name(rule_id: str, name: str, position: int | None, field: str) -> ExpressionError:
    close = difflib.get_close_matches(name, [*VARIABLES, *FUNCTIONS], n=1)
    hint = f" (did you mean '{close[0]}'?)" if close else ""
    return ExpressionError(rule_id, f"unknown variable '{name}'{hint}", position, field)


def _syntax_error(rule_id: str, text: str, exc: SyntaxError) -> ExpressionError:
    if not exc.offset or exc.lineno is None:
        if exc.msg == "invalid syntax":  # Python reports a missing operand at offset 0
            return ExpressionError(rule_id, "unexpected end of expression", len(text))
        return ExpressionError(rule_id, exc.msg)
    lines = text.splitlines(keepends=True)
    position = sum(len(line) for line in lines[: exc.lineno - 1]) + exc.offset - 1
    position = max(0, min(position, len(text)))
    message = exc.msg
    if message == "invalid syntax":
        if text[max(position - 1, 0) : position + 1] in ("&&", "||"):  # Python points at the second one
            position -= 1
        token = re.match(r"\w+|&&|\|\||[^\s\w]", text[position:].lstrip())
        if token is None:
            return ExpressionError(rule_id, "unexpected end of expression", len(text.rstrip()))
        position += len(text[position:]) - len(text[position:].lstrip())
        message = f"unexpected token '{token.group()}'"
        if token.group() in _HINTS:
            message += f" ({_HINTS[token.group()]})"
    return ExpressionError(rule_id, message, position)


_SYMBOLS = {
    ast.Pow: "**",
    ast.LShift: "<<",
    ast.RShift: ">>",
    ast.BitAnd: "&",
    ast.BitOr: "|",
    ast.BitXor: "^",
    ast.Invert: "~",
    ast.MatMult: "@",
    ast.Is: "is",
    ast.IsNot: "is not",
}


def _check_operators(rule_id: str, text: str, node: ast.AST) -> None:
    """Operators carry no position: report the one after the left operand (or the unary's start)."""
    pairs: list[tuple[ast.AST, ast.expr | None]] = []
    if isinstance(node, ast.BinOp):
        pairs = [(node.op, node.left)]
    elif isinstance(node, ast.UnaryOp):
        pairs = [(node.op, None)]
    elif isinstance(node, ast.Compare):
        pairs = list(zip(node.ops, [node.left, *node.comparators], strict=False))
    for op, before in pairs:
        if type(op) in _OPERATORS:
            continue
        if before is None or before.end_lineno is None or before.end_col_offset is None:
            position = _char_offset(text, node.lineno, node.col_offset)  # type: ignore[attr-defined]
        else:
            position = _char_offset(text, before.end_lineno, before.end_col_offset)
            position += len(text[position:]) - len(text[position:].lstrip(" )\t\n"))
        symbol = _SYMBOLS.get(type(op), type(op).__name__)
        raise ExpressionError(rule_id, f"operator '{symbol}' is not allowed", position)


def _check_tree(rule_id: str, text: str, tree: ast.Expression) -> tuple[str, ...]:
    """Reject anything outside the documented syntax; return the variables used, in order."""
    called = {id(node.func) for node in ast.walk(tree) if isinstance(node, ast.Call)}
    used: list[ast.Name] = []
    for node in ast.walk(tree):
        lineno, col = getattr(node, "lineno", None), getattr(node, "col_offset", None)
        position = None if lineno is None or col is None else _char_offset(text, lineno, col)
        _check_operators(rule_id, text, node)
        if not isinstance(node, _ALLOWED_NODES):
            what = "attribute access" if isinstance(node, ast.Attribute) else type(node).__name__
            raise ExpressionError(rule_id, f"{what} is not allowed", position)
        if isinstance(node, ast.Call):
            func = node.func
            if not isinstance(func, ast.Name):
                raise ExpressionError(rule_id, "only the listed functions can be called, by name", position)
            if func.id not in FUNCTIONS:
                allowed = ", ".join(FUNCTIONS)
                raise ExpressionError(rule_id, f"function '{func.id}' is not allowed (only {allowed})", position)
            if node.keywords or any(isinstance(arg, ast.Starred) for arg in node.args):
                raise ExpressionError(rule_id, f"{func.id}() takes plain arguments only", position)
        elif isinstance(node, ast.Name) and id(node) not in called and node.id not in _CONSTANTS:
            if node.id not in VARIABLES:
                raise _unknown_name(rule_id, node.id, position, "when")
            used.append(node)
        elif isinstance(node, ast.Constant) and not isinstance(node.value, str | int | float | bool | type(None)):
            raise ExpressionError(rule_id, f"constant {node.value!r} is not allowed", position)
    used.sort(key=lambda n: (n.lineno, n.col_offset))
    return tuple(dict.fromkeys(n.id for n in used))


# Python's format spec mini-language: [[fill]align][sign][z][#][0][width][grouping][.precision][type]
_SPEC = re.compile(
    r"(?:(?P<fill>.)?[<>=^])?[-+ ]?z?#?0?(?P<width>\d+)?[,_]?(?:\.(?P<precision>\d+))?[bcdeEfFgGnosxX%]?",
    re.DOTALL,
)


def _check_spec(rule_id: str, name: str, spec: str, position: int) -> None:
    """A format spec Python understands, bounded: `{mrr:999999999}` would pad to a gigabyte."""
    match = _SPEC.fullmatch(spec)
    if match is None:
        raise ExpressionError(rule_id, f"'{{{name}:{spec}}}': not a format spec", position, "reason")
    width, precision = int(match["width"] or 0), int(match["precision"] or 0)
    if width > MAX_FORMAT_WIDTH:
        raise ExpressionError(
            rule_id, f"'{{{name}:{spec}}}': width {width:,} is more than {MAX_FORMAT_WIDTH}", position, "reason"
        )
    if precision > MAX_FORMAT_PRECISION:
        raise ExpressionError(
            rule_id,
            f"'{{{name}:{spec}}}': precision {precision:,} is more than {MAX_FORMAT_PRECISION}",
            position,
            "reason",
        )


def _check_nesting(rule_id: str, tree: ast.AST) -> None:
    """At most `MAX_NESTING` levels (`not not … x`, `-(-(…))`): the evaluator recurses per level."""
    stack = [(tree, 1)]
    while stack:
        node, level = stack.pop()
        if level > MAX_NESTING:
            raise ExpressionError(rule_id, f"expression nested more than {MAX_NESTING} levels deep")
        stack.extend((child, level + 1) for child in ast.iter_child_nodes(node))


def _template_names(trigger: CustomTrigger) -> tuple[str, ...]:
    names: list[str] = []
    try:
        parsed = list(string.Formatter().parse(trigger.reason))
    except ValueError as exc:
        raise ExpressionError(trigger.id, str(exc), field="reason") from None
    position = 0
    for literal, name, spec, _ in parsed:
        position += len(literal)
        if name is None:
            continue
        if name == "" or name.isdigit():
            raise ExpressionError(trigger.id, "fields must name a variable, e.g. {mrr}", position, "reason")
        if not re.fullmatch(r"[A-Za-z_]\w*", name):
            raise ExpressionError(
                trigger.id, f"'{{{name}}}': only plain variable names are allowed", position, "reason"
            )
        if name not in VARIABLES:
            raise _unknown_name(trigger.id, name, position, "reason")
        if spec and "{" in spec:
            raise ExpressionError(trigger.id, "nested fields are not allowed", position, "reason")
        if spec:
            _check_spec(trigger.id, name, spec, position)
        names.append(name)
        position += len(name) + 2 + (len(spec) + 1 if spec else 0)
    return tuple(dict.fromkeys(names))


def compile_trigger(trigger: CustomTrigger, *, policy: Policy | None = None) -> CompiledTrigger:
    """Check and parse a custom trigger once, at config load.

    Raises `ExpressionError` for a syntax error (with its position), a variable or function
    that does not exist, any construct outside the documented syntax, a team that is not one
    of the teams, or a bad reason template. `policy` supplies the primary products and owner
    roles of the derived variables (default: the defaults of rules.md).
    """
    teams = get_args(Team)
    if trigger.team not in teams:
        raise ExpressionError(trigger.id, f"unknown team '{trigger.team}' (one of {', '.join(teams)})", field="team")
    text = trigger.when
    if not text.strip():
        raise ExpressionError(trigger.id, "empty expression")
    if len(text) > MAX_EXPRESSION_LENGTH:
        raise ExpressionError(trigger.id, f"expression longer than {MAX_EXPRESSION_LENGTH} characters")
    # Python rejects leading whitespace ("unexpected indent") and line breaks outside brackets;
    # a TOML multi-line string may have both. Same-length replacements keep positions those of `when`.
    source = text.strip().replace("\r", " ").replace("\n", " ")
    lead = len(text) - len(text.lstrip())
    try:
        try:
            tree = ast.parse(source, mode="eval")
        except SyntaxError as exc:
            raise _syntax_error(trigger.id, source, exc) from None
        except (RecursionError, MemoryError):
            raise ExpressionError(trigger.id, "expression nested too deeply") from None
        _check_nesting(trigger.id, tree)
        names = _check_tree(trigger.id, source, tree)
    except ExpressionError as exc:
        if exc.position is None or not lead:
            raise
        raise ExpressionError(exc.rule_id, exc.message, exc.position + lead, exc.field) from None
    budget = _Budget()
    evaluator = _LimitedEval(budget, {op: _metered(fn, budget) for op, fn in _OPERATORS.items()})
    evaluator.functions = {name: _metered(fn, budget) for name, fn in FUNCTIONS.items()}
    return CompiledTrigger(
        trigger=trigger,
        names=names,
        template_names=_template_names(trigger),
        policy=policy or Policy(),
        _tree=tree,
        _evaluator=evaluator,
    )
