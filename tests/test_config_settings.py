"""Every declared setting is read from its declaration: a wrong type, a non-finite or out-of-range
number, or an unknown key anywhere is one `path: message` problem of a ConfigError, and the real
CLI exits 2 with that line, never with a traceback (#12, #13)."""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterator
from dataclasses import fields
from datetime import UTC, date, datetime
from functools import partial
from pathlib import Path
from typing import Any, get_args, get_type_hints

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from support import run_cli

from core.errors import ConfigError
from core.settings import Secret, Setting, declared
from rules.policy import Policy
from sync.config import SECTIONS, CustomTriggerSettings, MemberSettings, PoolSettings, parse_config

Document = dict[str, Any]
MEMBER = {"user_id": "005000000000000AAA", "name": "Avery Collins"}
TRIGGER = {"id": "custom.test", "team": "TAM", "when": "mrr > 800", "reason": "MRR {mrr}"}
PROBLEM = re.compile(r"[^\s:][^\n]*: [^\n]+")


def _nested(path: str, value: Any) -> Document:
    document: Document = {}
    node = document
    *tables, key = path.split(".")
    for table in tables:
        node = node.setdefault(table, {})
    node[key] = value
    return document


def _pool(key: str) -> Callable[[Any], Document]:
    return lambda value: {"pools": [{"team": "TAM", "region": "US", key: value}]}


def _member(key: str) -> Callable[[Any], Document]:
    return lambda value: {"pools": [{"team": "TAM", "region": "US", "members": [{**MEMBER, key: value}]}]}


def _trigger(key: str) -> Callable[[Any], Document]:
    return lambda value: {"rules": {"custom": [{**TRIGGER, key: value}]}}


def _locations() -> Iterator[tuple[str, Any, Setting, Callable[[Any], Document]]]:
    """(path as problems name it, declared type, declaration, document with a value there) for
    every declared setting of the config file, each secret's `_env` and `_file` keys included."""
    owners = [(path, cls) for path, cls in SECTIONS.values()]
    hints = get_type_hints(Policy)
    for f, d in declared(Policy):
        kind = hints[f.name]
        if hasattr(kind, "__dataclass_fields__"):
            owners.append((str(d.toml), kind))
        else:
            yield str(d.toml), kind, d, partial(_nested, str(d.toml))
    for table, cls in owners:
        kinds = get_type_hints(cls)
        for f, d in declared(cls):
            path = d.toml or f"{table}.{f.name}"
            if isinstance(d, Secret):
                for key in (f"{path}_env", f"{path}_file"):
                    yield key, str, d, partial(_nested, key)
            else:
                yield path, kinds[f.name], d, partial(_nested, path)
    yield "territories.Mars", tuple[str, ...], Setting("a region's countries"), partial(_nested, "territories.Mars")
    for cls, where, build in (
        (PoolSettings, "pools[0]", _pool),
        (MemberSettings, "pools[0].members[0]", _member),
        (CustomTriggerSettings, "rules.custom[0]", _trigger),
    ):
        kinds = get_type_hints(cls)
        for f, d in declared(cls):
            yield f"{where}.{f.name}", kinds[f.name], d, build(f.name)


LOCATIONS = list(_locations())
NUMERIC = [(path, kind, d, build) for path, kind, d, build in LOCATIONS if {int, float} & {kind, *get_args(kind)}]


def test_every_declared_setting_is_fed_bad_values() -> None:
    """The locations below are every setting, not a sample (sections, rules, pools, triggers)."""
    paths = {path for path, *_ in LOCATIONS}
    assert len(LOCATIONS) >= 175  # 180 today
    assert {"daemon.interval_seconds", "rules.order", "rules.countries.tier1", "vitally.traits"} <= paths
    assert {"vitally.api_key_env", "salesforce.client_secret_file", "pools[0].members[0].weight"} <= paths
    assert all(d.minimum is not None and d.maximum is not None for _, _, d, _ in NUMERIC), "a number without limits"


def _problems(document: Document) -> list[str]:
    """The problems of `document`; [] when it loads. Anything but ConfigError fails the test."""
    try:
        parse_config(document)
    except ConfigError as exc:
        assert exc.problems, "a ConfigError without a problem"
        for problem in exc.problems:
            assert PROBLEM.fullmatch(problem), f"not one `path: message` line: {problem!r}"
        return exc.problems
    return []


EXTREMES = [math.nan, math.inf, -math.inf, 1e300, -1e300, -1, 10**30]


@pytest.mark.parametrize(("path", "kind", "declaration", "build"), NUMERIC, ids=[n[0] for n in NUMERIC])
def test_config_refuses_every_non_finite_or_out_of_range_number(
    path: str, kind: Any, declaration: Setting, build: Callable[[Any], Document]
) -> None:
    scalar = not str(kind).startswith(("tuple", "collections", "typing.Mapping"))
    for value in EXTREMES:
        shaped = value if scalar else _shape(kind, value)
        problems = _problems(build(shaped))
        assert any(p.startswith(path) for p in problems), (path, value, problems)
    for wrong in ("many", [1], {"a": 1} if scalar else {"a": "many"}, True):
        assert any(p.startswith(path) for p in _problems(build(wrong))), (path, wrong)


def _shape(kind: Any, number: float) -> Any:
    """`number` where a number goes in a collection setting (a band, a table of points)."""
    text = str(kind)
    if "Mapping" in text:
        return {"engineering": number}
    return [[number, 1]] if text.count("tuple") > 1 else [number]


# Every kind of value TOML can hold, at its edges: each goes into every setting below.
SWEEP = [
    *EXTREMES,
    0,
    1,
    -(10**30),
    True,
    "",
    "x",
    "\x00",
    "~nobody-here/x",
    "a\nb",
    [],
    [1, "a"],
    [[1, 2]],
    [{"a": 1}],
    {},
    {"a": 1},
    {"a": {"b": []}},
    date(2026, 1, 1),
    datetime(2026, 1, 1, tzinfo=UTC),
]


@pytest.mark.parametrize("location", LOCATIONS, ids=[location[0] for location in LOCATIONS])
def test_config_every_setting_takes_any_value_without_a_traceback(
    location: tuple[str, Any, Setting, Callable[[Any], Document]],
) -> None:
    path, _, _, build = location
    for value in SWEEP:
        problems = _problems(build(value))
        assert all(not p.startswith(path) or p.startswith((f"{path}:", f"{path}.", f"{path}[")) for p in problems)


# TOML can hold these: tables, arrays, text, integers of any size, floats, booleans and dates.
SCALARS = st.one_of(
    st.sampled_from([math.nan, math.inf, -math.inf, 1e300, -1, 0, 10**30, -(2**63), "", "\x00", "~nobody-here/x"]),
    st.integers(),
    st.floats(),
    st.booleans(),
    st.text(max_size=30),
    st.dates(min_value=date(1, 1, 1)),
    st.datetimes(timezones=st.just(UTC)),
)
VALUES = st.recursive(
    SCALARS,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=10,
)


@pytest.mark.slow
@settings(max_examples=2000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(location=st.sampled_from(LOCATIONS), value=VALUES)
def test_config_raises_nothing_but_config_error_whatever_a_setting_holds(
    location: tuple[str, Any, Setting, Callable[[Any], Document]], value: Any
) -> None:
    path, _, _, build = location
    problems = _problems(build(value))
    assert all(not p.startswith(path) or p.startswith((f"{path}:", f"{path}.", f"{path}[")) for p in problems)


KEYS = st.sampled_from(
    [*{path.split(".")[0] for path, *_ in LOCATIONS}, "rules", "pools", "custom", "members", "order", "countries"]
)
DOCUMENTS = st.recursive(
    SCALARS,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(KEYS | st.text(max_size=6), inner, max_size=4),
    max_leaves=12,
)


@pytest.mark.slow
@settings(max_examples=1000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(document=st.dictionaries(KEYS, DOCUMENTS, max_size=5))
def test_config_raises_nothing_but_config_error_whatever_the_document_holds(document: Document) -> None:
    _problems(document)


@pytest.mark.parametrize(
    ("document", "problem"),
    [
        ({"sync": {"on_conflit": "overwrite"}}, "sync.on_conflit: unknown setting (did you mean on_conflict?)"),
        (
            {"daemon": {"interval_secods": 5}},
            "daemon.interval_secods: unknown setting (did you mean interval_seconds?)",
        ),
        ({"salesforce": {"budget_shar": 0.5}}, "salesforce.budget_shar: unknown setting (did you mean budget_share?)"),
        ({"vitally": {"api_key_enb": "X"}}, "vitally.api_key_enb: unknown setting (did you mean api_key_env?)"),
        ({"state": {"file": "x.db"}}, "state.file: unknown setting"),
        ({"report": {"target": 0.5}}, "report.target: unknown setting"),
        ({"rules": {"oder": []}}, "rules.oder: unknown setting (did you mean order?)"),
        ({"rules": {"countries": {"tier3": []}}}, "rules.countries.tier3: unknown setting (did you mean tier2?)"),
        (
            {"rules": {"guards": {"cool_off": 5}}},
            "rules.guards.cool_off: unknown setting (did you mean cool_off_days?)",
        ),
        ({"rules": {"custom": [{**TRIGGER, "why": "x"}]}}, "rules.custom[0].why: unknown setting"),
        (
            {"pools": [{"team": "TAM", "region": "US", "member": []}]},
            "pools[0].member: unknown setting (did you mean members?)",
        ),
        ({"pools": [{"team": "TAM", "region": "US", "members": 5}]}, "pools[0].members: expected a list, got 5"),
        ({"deamon": {}}, "deamon: unknown section (did you mean daemon?)"),
        ({"vitally": {"a\nb": 1}}, "vitally.'a\\nb': unknown setting"),
    ],
)
def test_config_unknown_keys_are_errors_anywhere(document: Document, problem: str) -> None:
    assert problem in _problems(document)


@pytest.mark.parametrize(
    ("document", "problem"),
    [
        (_nested("daemon.interval_seconds", math.nan), "daemon.interval_seconds: expected a finite number, got nan"),
        (_nested("daemon.interval_seconds", 1e300), "daemon.interval_seconds: must be ≤ 86400, got 1e+300"),
        (_nested("vitally.timeout_seconds", math.inf), "vitally.timeout_seconds: expected a finite number, got inf"),
        (
            _nested("rules.product_led.mrr_min", math.nan),
            "rules.product_led.mrr_min: expected a finite number, got nan",
        ),
        (_nested("rules.guards.cool_off_days", -1), "rules.guards.cool_off_days: must be ≥ 0, got -1"),
        (
            _nested("rules.scoring.employee_bands", [[math.inf, 1]]),
            "rules.scoring.employee_bands[0][0]: expected a finite number, got inf",
        ),
        (_nested("rules.scoring.role_points", {"cto": -5}), "rules.scoring.role_points.cto: must be ≥ 0, got -5"),
        (
            _nested("rules.onboarding.task_due_days", 10**30),
            "rules.onboarding.task_due_days: must be ≤ 36500, got a 31-digit number",
        ),
        (
            _nested("rules.demo.classifier", "gpt"),
            "rules.demo.classifier: expected one of 'offline', 'keywords' or 'llm', got 'gpt'",
        ),
        # The LLM is a classifier like the others, but asked only with its key (loopback excepted).
        (
            _nested("rules.demo.classifier", "llm"),
            "triage.llm.api_key: no secret found (set api_key_env or api_key_file)",
        ),
        (_nested("state.path", "a\x00b"), "state.path: expected a file name, got 'a\\x00b'"),
        (
            _nested("vitally.api_key_env", "NO SUCH"),
            "vitally.api_key_env: expected the name of an environment variable, got 'NO SUCH'",
        ),
    ],
)
def test_config_numbers_and_names_are_checked_against_their_declaration(document: Document, problem: str) -> None:
    assert problem in _problems(document)


def test_config_a_valid_document_loads_and_keeps_its_values() -> None:
    """The checks refuse only what is wrong: values at their limits load as given."""
    config = parse_config(
        {
            "daemon": {"interval_seconds": 86_400, "healthy_within_seconds": 1},
            "rules": {"guards": {"cool_off_days": 0}, "product_led": {"mrr_min": 0, "mrr_max": 1e12}},
            "salesforce": {"budget_share": 1, "lookback_seconds": 0},
        }
    )
    assert config.interval_seconds == 86_400 and config.healthy_within_seconds == 1
    assert config.policy.guards.cool_off_days == 0 and config.policy.product_led.mrr_max == 1e12
    assert (config.salesforce.budget_share, config.salesforce.lookback_seconds) == (1.0, 0)


# -- the real command line --------------------------------------------------------------------------

BAD_SETTINGS = """
[vitally]
timeout_seconds = nan
color = "blue"

[salesforce]
budget_shar = 0.5

[state]
pth = "x.db"

[sync]
on_conflit = "overwrite"

[daemon]
interval_secods = 5

[rules.product_led]
mrr_min = nan

[rules.guards]
cool_off_days = -1

[[pools]]
team = "TAM"
region = "US"
members = 5
fallback_owner = "00G000000000001AAA"
"""


@pytest.mark.e2e
@pytest.mark.parametrize(
    ("text", "lines"),
    [
        ("[daemon]\ninterval_seconds = nan\n", ["daemon.interval_seconds: expected a finite number, got nan"]),
        ("[daemon]\ninterval_seconds = inf\n", ["daemon.interval_seconds: expected a finite number, got inf"]),
        ("[daemon]\ninterval_seconds = 1e300\n", ["daemon.interval_seconds: must be ≤ 86400, got 1e+300"]),
        (
            BAD_SETTINGS,
            [
                "vitally.timeout_seconds: expected a finite number, got nan",
                "vitally.color: unknown setting",
                "salesforce.budget_shar: unknown setting (did you mean budget_share?)",
                "state.pth: unknown setting (did you mean path?)",
                "sync.on_conflit: unknown setting (did you mean on_conflict?)",
                "daemon.interval_secods: unknown setting (did you mean interval_seconds?)",
                "rules.product_led.mrr_min: expected a finite number, got nan",
                "rules.guards.cool_off_days: must be ≥ 0, got -1",
                "pools[0].members: expected a list, got 5",
            ],
        ),
    ],
    ids=["interval-nan", "interval-inf", "interval-1e300", "every-other-bad-setting"],
)
def test_cli_daemon_exits_2_with_one_line_per_bad_setting(tmp_path: Path, text: str, lines: list[str]) -> None:
    config = tmp_path / "config.toml"
    config.write_text(text, encoding="utf-8")
    result = run_cli(config, tmp_path / "state.db", "daemon", timeout=60)
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    reported = result.stderr.splitlines()
    assert reported[0] == "configuration error:"
    assert sorted(reported[1:]) == sorted(f"  {line}" for line in lines)
    assert not (tmp_path / "state.db").exists()


def test_every_field_of_every_settings_class_is_declared() -> None:
    """A field added without `setting(...)` would be read, checked and documented by nobody."""
    classes = [cls for _, cls in SECTIONS.values()] + [PoolSettings, MemberSettings, CustomTriggerSettings, Policy]
    hints = get_type_hints(Policy)
    classes += [kind for kind in hints.values() if hasattr(kind, "__dataclass_fields__")]
    undeclared = [
        f"{cls.__name__}.{f.name}"
        for cls in classes
        for f in fields(cls)
        if f.name not in {g.name for g, _ in declared(cls)}
    ]
    assert undeclared == []
    # [alerts] (AlertSettings), ZeroSpendPolicy, LowUsagePolicy, EpisodePolicy (issue #15); [events] (issue #17);
    # [announcements], [zendesk] and [triage.llm] (issue #15 part 2).
    assert len(classes) == 28
