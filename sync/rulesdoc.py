"""docs/rules.md, written from the rule definitions so it cannot drift from them.

`render_rules_doc()` is the whole text of `docs/rules.md`: every built-in rule id
(`rules.ALL_RULE_IDS`, routing triggers in their default order) with what it decides and writes
(`rules.policy.RULE_DOCS`) and the settings that tune it (those whose one-line doc names the rule,
and the table whose docstring does); then every `[rules.*]` table with each setting's default,
meaning and limits (`core.settings` declarations on `rules.policy.Policy`). `make docs` rewrites
the file (`python -m sync.rulesdoc > docs/rules.md`); a test fails when it is stale.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping
from dataclasses import Field, is_dataclass
from typing import Any, get_type_hints

from core.settings import REQUIRED, Setting, declared, default_of, describe_limits
from rules import ALL_RULE_IDS
from rules.policy import ROUTING_RULE_IDS, RULE_DOCS, Policy
from sync.example import toml_key, toml_value

__all__ = ["render_rules_doc"]

# A docstring's pointer to the sales handbook or a section of it ("(rules.md §5)", "(account-allocation.md)"):
# for the code's readers; the handbook is not part of what a user of crm-sync gets.
_HANDBOOK = re.compile(r" \((?:[^()]*?, )?[\w-]+\.md(?: §\d+)?(?:, [^()]*)?\)")
_LONG = 160  # characters of a default shown in the table; longer ones are in config.example.toml

_HEADER = """\
# Rules reference

<!-- Written by `make docs` (sync/rulesdoc.py) from rules/policy.py and the rule ids of rules/:
     edit those, not this file. A test fails when this file is stale. -->

Every rule crm-sync applies, by its id: the id that plans, `explain`, leads (`Routing_Rule__c`)
and reports show, that `--rule` selects (`run --dry-run --rule ID`, `apply --rule ID`) and that
`[rules.enabled]` switches off (`"lifecycle.stage" = false`: the rule is still judged and shown by
`explain`, but writes nothing and draws no owner; a routing trigger switched off is left out of the
order, so another may win). Every decision carries a reason naming its inputs and thresholds; an
input that is absent is *unknown*, not zero: the rule does not fire and says which input was
missing. The settings below are the `[rules.*]` tables of the config file, each shown at its
default (`config.example.toml` has them all, commented); `--dry-run --compare-rules OTHER.toml`
shows who a change of them would affect. The Salesforce and Vitally fields the rules read and
write are in [data-model.md](data-model.md); how owners are drawn in [round-robin.md](round-robin.md).
"""


def _cell(text: str) -> str:
    """Text for a Markdown table cell: pipes escaped, lines joined."""
    return " ".join(text.replace("|", "\\|").split())


def _value(value: Any) -> str:
    """A default as the config file writes it, on one line (cut when very long)."""
    if isinstance(value, Mapping):
        text = "{" + ", ".join(f"{toml_key(str(k))} = {_value(v)}" for k, v in value.items()) + "}"
    elif isinstance(value, tuple | list):
        text = "[" + ", ".join(_value(item) for item in value) + "]"
    elif value is None or value is REQUIRED:
        text = "(none)"
    else:
        try:
            text = toml_value(value)
        except TypeError:
            text = json.dumps(value, default=str, ensure_ascii=False)
    return text if len(text) <= _LONG else text[: _LONG - 1] + "…"


def _sections() -> list[tuple[str, type]]:
    """(TOML table, settings class) of every `[rules.*]` section of `Policy`, in declaration order."""
    hints = get_type_hints(Policy)
    return [(str(d.toml), hints[f.name]) for f, d in declared(Policy) if is_dataclass(hints[f.name])]


def _settings() -> Iterator[tuple[str, Field[Any], Setting]]:
    """(dotted TOML path, field, declaration) of every rules setting, sections first."""
    for path, cls in _sections():
        for f, d in declared(cls):
            yield d.toml or f"{path}.{f.name}", f, d
    for f, d in declared(Policy):
        if not is_dataclass(get_type_hints(Policy)[f.name]):
            yield str(d.toml), f, d


def _mentions(text: str, rule: str) -> bool:
    return re.search(rf"(?<![\w.]){re.escape(rule)}(?![\w])", text) is not None


def _tuned_by(rule: str) -> list[str]:
    """The tables whose docstring names `rule`, then the settings whose doc names it (with those
    right after it whose doc goes on with "..."): `[rules.enabled]` names rules only as examples."""
    tables = [path for path, cls in _sections() if _mentions(cls.__doc__ or "", rule)]
    if rule in ROUTING_RULE_IDS:
        tables += ["rules.guards", "rules.order"]
    keys: list[str] = []
    following = False
    for path, _, d in _settings():
        if path == "rules.enabled" or path.rpartition(".")[0] in tables:
            following = False
            continue
        following = _mentions(d.doc, rule) or (following and d.doc.startswith("..."))
        if following:
            keys.append(path)
    return [f"`[{t}]`" if t != "rules.order" else _toml_name(t) for t in dict.fromkeys(tables)] + [
        _toml_name(k) for k in keys
    ]


def _toml_name(path: str) -> str:
    """`rules.routing.big_fish_days` as a person finds it in the config file: `[rules.routing] big_fish_days`."""
    table, _, key = path.rpartition(".")
    return f"`[{table}] {key}`"


def _rule_table() -> str:
    missing = sorted(set(ALL_RULE_IDS) - set(RULE_DOCS))
    extra = sorted(set(RULE_DOCS) - set(ALL_RULE_IDS))
    if missing or extra:  # a rule without its line (or a line without its rule) fails `make docs` and the test
        raise ValueError(f"RULE_DOCS does not match the rule ids: missing {missing}, unknown {extra}")
    lines = ["| rule id | what it decides and writes | tuned by |", "|---|---|---|"]
    for rule in ALL_RULE_IDS:
        tuned = ", ".join(_tuned_by(rule)) or "—"
        lines.append(f"| `{rule}` | {_cell(RULE_DOCS[rule])} | {_cell(tuned)} |")
    return "\n".join(lines) + "\n"


def _settings_table(rows: list[tuple[str, Field[Any], Setting]]) -> str:
    lines = ["| setting | default | meaning |", "|---|---|---|"]
    for key, f, d in rows:
        limits = describe_limits(d)
        meaning = d.doc + (f" ({limits})" if limits else "")
        name = _toml_name(key) if "." in key else f"`{key}`"
        lines.append(f"| {name} | `{_cell(_value(default_of(f)))}` | {_cell(meaning)} |")
    return "\n".join(lines) + "\n"


def render_rules_doc() -> str:
    """The whole text of docs/rules.md."""
    order = (
        "Routing triggers first, in their default order (`[rules] order`: the first that matches an account "
        'wins; the others are listed as "also matched").\n'
    )
    parts = [_HEADER, "## Rule ids\n", order, _rule_table()]
    sections = _sections()
    section_paths = {path for path, _ in sections}
    loose = [(path, f, d) for path, f, d in _settings() if path.rpartition(".")[0] not in section_paths]
    parts.append("## Settings\n")
    parts.append("### `[rules]` and `[rules.countries]`\n")
    parts.append(_settings_table(loose))
    for path, cls in sections:
        doc = _HANDBOOK.sub("", " ".join((cls.__doc__ or "").split()))
        doc = re.sub(r"from rules\.md §\d+", "from the sales handbook", doc)
        parts.append(f"### `[{path}]`\n")
        parts.append(doc + "\n")
        rows = [(p.rpartition(".")[2], f, d) for p, f, d in _settings() if p.rpartition(".")[0] == path]
        parts.append(_settings_table(rows))
    return "\n".join(parts)


if __name__ == "__main__":
    print(render_rules_doc(), end="")
