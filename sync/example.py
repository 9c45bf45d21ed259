"""The example config, written from the settings' declarations (`core.settings`).

`render_example()` is the whole text of `sync/config.example.toml` (the top-level
`config.example.toml` is a link to it): every declared table with each setting at its default,
under a comment carrying its one-line doc and its limits. What is an example rather than a
default is written here by hand: the commented-out `[[rules.custom]]`, the region lists of
`[territories]` and the sandbox's `[[pools]]` (whose keys are still listed from their
declarations). A test keeps the shipped file equal to this; `make example` rewrites it.
"""

from __future__ import annotations

import json
import re
import textwrap
from collections.abc import Iterator, Mapping
from dataclasses import Field, is_dataclass
from pathlib import Path
from typing import Any, get_type_hints

from core.settings import REQUIRED, Secret, Setting, declared, default_of, describe_limits
from rules.policy import Policy, Territories
from sync.config import SECTIONS, MemberSettings, PoolSettings

__all__ = ["render_example"]

_WIDTH = 118  # the repository's line length, less a little
_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")

_HEADER = """\
# crm-sync configuration. Copy to ./config.toml and edit. Every setting is shown at its default,
# under its meaning and its limits; only the names of the secrets' environment variables are
# suggestions. This file works unchanged against the local sandbox (`python -m sync sandbox`).
# Secrets never go in this file: they come from the environment or an owner-only (0600) file.
# (Written by `make example` from the settings' declarations: edit those, not this file.)
"""

_TABLE_COMMENTS = {
    "rules": "Every tunable of the rules (rules.md): [rules] itself holds the routing order.",
    "rules.countries": "The lead-scoring table's country tiers; together they are the ICP countries.",
    "territories": "Countries to sales regions (ISO codes or names); entries here add to the built-in lists.",
}

_CUSTOM = """\
# Custom triggers: add a routing rule without code. Each [[rules.custom]] needs
#   id     - a new rule id (not one of the built-in ones), shown in plans, leads and reports;
#   team   - "TAE", "TAM", "CSM", "BDR" or "Onboarding";
#   when   - a condition over the account, e.g. mrr > 800 and "surveys" not in paid_products, using
#            numbers, "text", comparisons (== != < <= > >=, 500 <= mrr <= 1667), in / not in, and / or / not,
#            + - * / // %, a if b else c, ["lists"], x["key"], and len, min, max, abs, round, get(map, key, default);
#   reason - the text written on the decision, with {variable} placeholders ({mrr}, {arr:,.0f}; a format
#            spec's width at most 100, its precision at most 20).
# Variables: every account field of data-model.md by its name (mrr, plan, country, employee_count,
# paid_products, product_spend, invoices, segments, ...) plus arr, paying_months, primary_products_count,
# last_invoice, first_invoice, mrr_growth_3m, has_owner, open_leads, open_opportunities, days_since_created.
# A trigger whose variables are unknown for an account does not fire; the routing guards apply; it
# is tried after the built-in triggers of `order`. A mistake in a trigger (syntax, unknown variable,
# unknown team, bad reason) is found when the config is loaded: every command stops with a
# "configuration error" naming rules.custom[N], the rule id and the position in `when`, and exits with status 2.
# At run time a trigger is bounded (% on text, text or lists over 10,000 by + or *, round() past 20
# digits, more than 10,000 steps): it is then skipped for that account and listed as a "rule error".
# A `when` comparing days_since_created (whole days since createdAt) or paying_months only with
# numbers (days_since_created < 400) has an account judged again when its count reaches one of them;
# used otherwise (days_since_created % 7 < 3), each day at its createdAt's time of day (paying_months:
# each month). A reason reading either costs nothing (its text is written when the rule changes).
# [[rules.custom]]
# id = "custom.surveys_upsell"
# team = "TAM"
# when = 'mrr > 800 and "surveys" not in paid_products'
# reason = "MRR {mrr} > 800 and not paying for surveys"
"""

_REGIONS = """\
# US = ["US", "CA"]
# Singapore = ["SG", "AU"]
"""

_POOLS_INTRO = """\
# ---------------------------------------------------------------------------------------------
# Round-robin pools (round-robin.md). Routing picks the team, the account's region picks the
# pool, the pool picks the owner: a smooth weighted round robin that remembers its position in
# the state database. Nobody eligible → the pool's fallback owner (a queue or a user, required),
# reported in the plan.
"""

_POOLS = """\
# These users are the sandbox's generated sales team, the queues its org's.

[[pools]]
team = "TAM"
region = "US"
fallback_owner = "00G000000000001AAA"
capacity = 15
members = [
    { user_id = "005000000000000AAA", name = "Avery Collins", email = "avery.collins@posthog.example" },
    { user_id = "005000000000001AAA", name = "Jordan Reyes", email = "jordan.reyes@posthog.example" },
    { user_id = "005000000000002AAA", name = "Morgan Patel", email = "morgan.patel@posthog.example" },
]

[[pools]]
team = "TAM"
region = "EU"
fallback_owner = "00G000000000002AAA"
capacity = 15
members = [
    { user_id = "005000000000003AAA", name = "Lena Schmidt", email = "lena.schmidt@posthog.example" },
    { user_id = "005000000000004AAA", name = "Tomas Garcia", email = "tomas.garcia@posthog.example" },
]

[[pools]]
team = "TAM"
region = "Singapore"
fallback_owner = "00G000000000003AAA"
capacity = 15
members = [{ user_id = "005000000000005AAA", name = "Wei Lim", email = "wei.lim@posthog.example" }]

[[pools]]
team = "TAE"
region = "US"
fallback_owner = "00G000000000004AAA"
members = [
    { user_id = "005000000000010AAA", name = "Sam Turner" },
    { user_id = "005000000000011AAA", name = "Dana Whitfield" },
]

[[pools]]
team = "TAE"
region = "*"
fallback_owner = "00G000000000004AAA"
members = [
    { user_id = "005000000000012AAA", name = "Mina Okafor" },
    { user_id = "005000000000013AAA", name = "Lukas Berg" },
]

[[pools]]
team = "BDR"
region = "*"
fallback_owner = "00G000000000005AAA"
members = [
    { user_id = "005000000000014AAA", name = "Chris Hale" },
    { user_id = "005000000000015AAA", name = "Ines Duarte" },
]

[[pools]]
team = "Onboarding"
region = "*"
fallback_owner = "00G000000000006AAA"
members = [
    { user_id = "005000000000016AAA", name = "Kim Park" },
    { user_id = "005000000000017AAA", name = "Ola Nilsen" },
    { user_id = "005000000000018AAA", name = "Arjun Mehta" },
]"""


# -- values ------------------------------------------------------------------------------------------


def toml_key(key: str) -> str:
    """`key` as a TOML key: bare when it can be, quoted otherwise."""
    return key if _BARE_KEY.fullmatch(key) else json.dumps(key, ensure_ascii=False)


def toml_value(value: Any, *, indent: int = 0) -> str:
    """`value` as a TOML value; a long list is broken over lines, packed, four spaces in."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return f"{value:_}" if abs(value) >= 100_000 else str(value)
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, str | Path):
        return json.dumps(str(value), ensure_ascii=False)
    if isinstance(value, tuple | list):
        items = [toml_value(item) for item in value]
        one_line = f"[{', '.join(items)}]"
        if indent + len(one_line) <= _WIDTH:
            return one_line
        lines = textwrap.wrap(", ".join(items) + ",", _WIDTH - 4, break_long_words=False, break_on_hyphens=False)
        return "[\n" + "".join(f"    {line}\n" for line in _rejoin(lines, items)) + "]"
    raise TypeError(f"no TOML form for {value!r}")  # a declaration the example cannot show


def _rejoin(lines: list[str], items: list[str]) -> list[str]:
    """textwrap breaks at spaces, which may fall inside a quoted item: pack whole items instead."""
    packed: list[str] = []
    line = ""
    for item in items:
        candidate = f"{line} {item}," if line else f"{item},"
        if line and len(candidate) > _WIDTH - 4:
            packed.append(line)
            candidate = f"{item},"
        line = candidate
    if line:
        packed.append(line)
    return packed


def _comment(text: str, limits: str = "") -> str:
    """`text` as comment lines, with `[limits]` at the end of the last one (never broken)."""
    lines = textwrap.wrap(text, _WIDTH - 2, break_on_hyphens=False)
    if limits:
        suffix = f"  [{limits}]"
        if lines and len(lines[-1]) + len(suffix) <= _WIDTH - 2:
            lines[-1] += suffix
        else:
            lines.append(suffix.strip())
    return "".join(f"# {line}\n" for line in lines)


def _doc(declaration: Setting) -> str:
    """A setting's comment: its doc and its limits."""
    return _comment(declaration.doc, describe_limits(declaration))


# -- tables --------------------------------------------------------------------------------------------


def _fields_at(cls: type, path: str) -> Iterator[tuple[str, Field[Any], Setting]]:
    """(key, field, declaration) of every setting of `cls` that lives in the table at `path`."""
    for f, d in declared(cls):
        if d.toml is None:
            yield f.name, f, d
        elif d.toml.rpartition(".")[0] == path:
            yield d.toml.rpartition(".")[2], f, d


def _moved(cls: type, path: str) -> Iterator[tuple[str, Field[Any], Setting]]:
    """(dotted path, field, declaration) of every setting of `cls` that lives outside `path`."""
    for f, d in declared(cls):
        if d.toml is not None and d.toml.rpartition(".")[0] != path:
            yield d.toml, f, d


def _setting(key: str, f: Field[Any], d: Setting) -> str:
    """One setting: its doc, then its key at its default (commented out when it has none)."""
    text = _doc(d)
    if isinstance(d, Secret):
        env = f"{toml_key(key + '_env')} = {toml_value(d.env)}\n" if d.env else ""
        text += env if d.required else "".join(f"# {line}\n" for line in env.splitlines())
        if d.file:
            text += f"# {toml_key(key + '_file')} = {toml_value(d.file)}\n"
        return text
    value = default_of(f)
    if value is None or value is REQUIRED:
        return text + f"# {toml_key(key)} = {toml_value(d.example)}\n"
    line = f"{toml_key(key)} = "
    return text + line + toml_value(value, indent=len(line)) + "\n"


def _subtable(path: str, f: Field[Any], d: Setting) -> str:
    value: Mapping[str, Any] = default_of(f)
    entries = "".join(f"{toml_key(k)} = {toml_value(v)}\n" for k, v in value.items())
    if not value and isinstance(d.example, Mapping):  # an empty table: its example, commented out
        entries = "".join(f"# {toml_key(k)} = {toml_value(v)}\n" for k, v in d.example.items())
    return f"[{path}]\n{_doc(d)}{entries}"


def _table(path: str, comment: str, settings: list[tuple[str, Field[Any], Setting]]) -> str:
    """`[path]` with its scalar settings, then one sub-table per mapping setting."""
    scalars = "".join(_setting(key, f, d) for key, f, d in settings if not _is_mapping(f))
    text = f"{_comment(comment)}[{path}]\n{scalars}"
    for key, f, d in settings:
        if _is_mapping(f):
            text += "\n" + _subtable(f"{path}.{key}", f, d)
    return text


def _is_mapping(f: Field[Any]) -> bool:
    return isinstance(default_of(f), Mapping)


def _first_line(cls: type) -> str:
    return (cls.__doc__ or "").strip().splitlines()[0]


def _sections_of(owner: type) -> dict[str, tuple[str, type]]:
    """Field -> (TOML table, settings class) of every field of `owner` holding a whole section."""
    hints = get_type_hints(owner)
    return {f.name: (str(d.toml), hints[f.name]) for f, d in declared(owner) if is_dataclass(hints[f.name])}


def _section_tables() -> list[str]:
    return [_table(path, _first_line(cls), list(_fields_at(cls, path))) for path, cls in SECTIONS.values()]


def _rules_tables() -> list[str]:
    """[rules] and [rules.countries] (the settings that live there), then one table per `[rules.*]`."""
    sections = _sections_of(Policy)
    moved: dict[str, list[tuple[str, Field[Any], Setting]]] = {"rules": [], "rules.countries": []}
    for path, cls in sections.values():
        for toml, f, d in _moved(cls, path):
            moved[toml.rpartition(".")[0]].append((toml.rpartition(".")[2], f, d))
    for f, d in declared(Policy):
        if f.name not in sections and d.toml is not None:
            moved[d.toml.rpartition(".")[0]].append((d.toml.rpartition(".")[2], f, d))
    tables = [_table(path, _TABLE_COMMENTS[path], settings) for path, settings in moved.items()]
    for path, cls in sections.values():
        if path != "territories":
            tables.append(_table(path, _first_line(cls), list(_fields_at(cls, path))))
    return tables


def _territories() -> str:
    """[territories]: `default_region`; its region lists are examples, commented out."""
    settings = [(key, f, d) for key, f, d in _fields_at(Territories, "territories") if key != "regions"]
    return _table("territories", _TABLE_COMMENTS["territories"], settings) + _REGIONS


def _keys_comment(title: str, cls: type) -> str:
    """A comment listing the keys of an array of tables, each with its doc and limits."""
    width = max(len(f.name) for f, _ in declared(cls))
    lines = [title]
    for f, d in declared(cls):
        required = "(required) " if default_of(f) is REQUIRED else ""
        limits = describe_limits(d)
        text = f"{f.name.ljust(width)}  {required}{d.doc}{f'  [{limits}]' if limits else ''}"
        lines += textwrap.wrap(text, _WIDTH - 2, initial_indent="  ", subsequent_indent=" " * (width + 4))
    return "".join(f"# {line}\n" for line in lines)


def render_example() -> str:
    """The text of the example config."""
    parts = [_HEADER, *_section_tables(), *_rules_tables(), _CUSTOM, _territories()]
    pools = _POOLS_INTRO + _keys_comment("Each [[pools]] has:", PoolSettings)
    pools += _keys_comment("and each of its members:", MemberSettings) + _POOLS
    return "\n".join(parts) + "\n" + pools + "\n"


if __name__ == "__main__":
    print(render_example(), end="")
