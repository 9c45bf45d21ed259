"""config.example.toml documents every setting, with its default, its type and its doc, and a working
custom trigger; it is one file (the top-level path links to the packaged one), written from the
settings' declarations."""

from __future__ import annotations

import re
import tomllib
from collections.abc import Iterator, Mapping
from dataclasses import Field, fields, is_dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal, get_args, get_origin, get_type_hints

import pytest

from core.errors import ConfigError
from core.model import Account
from core.settings import Secret, Setting, declared, default_of, describe_limits
from rules.context import EMPTY
from rules.policy import Policy, Territories
from sync.config import (
    _POLICY_SECTIONS,
    SECTIONS,
    Config,
    CustomTriggerSettings,
    MemberSettings,
    PoolSettings,
    load_config,
    packaged_example,
)
from sync.example import render_example

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = Path("config.example.toml")
NOW = datetime(2025, 6, 1, tzinfo=UTC)
# Set elsewhere than the sub-policy's own table: routing.order is the [rules] `order` list.
NOT_IN_TABLE = {("routing", "order")}
CUSTOM_EXAMPLE = [
    "# [[rules.custom]]",
    '# id = "custom.surveys_upsell"',
    '# team = "TAM"',
    "# when = 'mrr > 800 and \"surveys\" not in paid_products'",
    '# reason = "MRR {mrr} > 800 and not paying for surveys"',
]


def _table(data: dict[str, Any], path: str) -> dict[str, Any]:
    node: Any = data
    for part in path.split("."):
        node = node.get(part, {})
    assert isinstance(node, dict), path
    return node


def _uncommented_custom_example(text: str) -> str:
    block = "\n".join(CUSTOM_EXAMPLE)
    assert block in text, "the commented-out [[rules.custom]] example is missing or changed"
    return text.replace(block, "\n".join(line.removeprefix("# ") for line in CUSTOM_EXAMPLE))


def test_config_example_policy_is_exactly_the_defaults() -> None:
    config = load_config(EXAMPLE)
    assert config.policy == Policy()
    assert config.policy.territories == Policy().territories
    assert config.custom_triggers == ()


def test_config_example_documents_every_policy_field() -> None:
    data = tomllib.loads(EXAMPLE.read_text(encoding="utf-8"))
    defaults = Policy()
    missing = []
    for name, path in _POLICY_SECTIONS.items():
        table = _table(data, path)
        for f in fields(getattr(defaults, name)):
            if (name, f.name) in NOT_IN_TABLE or getattr(getattr(defaults, name), f.name) is None:
                continue
            if f.name not in table:
                missing.append(f"{path}.{f.name}")
    assert missing == []


def test_config_example_sections_are_known_to_the_loader() -> None:
    data = tomllib.loads(EXAMPLE.read_text(encoding="utf-8"))
    assert set(_table(data, "rules")) - {"order", "countries", "custom", "owner_roles", "enabled"} == {
        p.split(".")[1] for p in _POLICY_SECTIONS.values()
    }


def test_config_example_custom_trigger_fires_when_uncommented(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_text(_uncommented_custom_example(EXAMPLE.read_text(encoding="utf-8")), encoding="utf-8")
    config = load_config(path)
    assert [t.id for t in config.custom_triggers] == ["custom.surveys_upsell"]
    trigger = config.custom_triggers[0]
    account = Account(id="a1", name="Acme", updated_at=NOW, mrr=900, paid_products=("product_analytics",))
    decision = trigger.evaluate(account, EMPTY, NOW)
    assert decision.fired
    assert decision.team == "TAM"
    assert "900" in decision.reason
    paying = Account(id="a2", name="Beta", updated_at=NOW, mrr=900, paid_products=("surveys",))
    assert not trigger.evaluate(paying, EMPTY, NOW).fired


def test_config_example_custom_trigger_syntax_error_names_rule(tmp_path: Path) -> None:
    text = _uncommented_custom_example(EXAMPLE.read_text(encoding="utf-8"))
    text = text.replace("when = 'mrr > 800 and", "when = 'mrr > > 800 and")
    path = tmp_path / "config.toml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    problems = [p for p in caught.value.problems if p.startswith("rules.custom[0]")]
    assert len(problems) == 1, caught.value.problems
    assert "custom.surveys_upsell" in problems[0]
    assert "position" in problems[0]


# -- one file, written from the declarations ------------------------------------------------------


def test_config_example_is_one_file_shipped_in_the_package() -> None:
    top_level = ROOT / "config.example.toml"
    assert top_level.is_symlink(), "config.example.toml must link to sync/config.example.toml, not copy it"
    assert top_level.resolve() == packaged_example().resolve()


def test_config_example_is_written_from_the_declarations() -> None:
    assert packaged_example().read_text(encoding="utf-8") == render_example(), (
        "sync/config.example.toml differs from the settings' declarations: run `make example`"
    )


def test_config_example_loads_to_exactly_the_declared_defaults() -> None:
    """Every value the example sets is the declared default: loading it changes nothing but the
    secrets (placeholders on loopback), its source and the sandbox's pools."""
    config = load_config(EXAMPLE)
    assert config.vitally.api_key == config.salesforce.token == "sandbox-placeholder"
    assert config.pools and config.custom_triggers == ()
    bare = replace(
        config,
        vitally=replace(config.vitally, api_key=None),
        salesforce=replace(config.salesforce, token=None),
        source=None,
        pools={},
    )
    assert bare == Config()


def _settings_in_the_file() -> Iterator[tuple[str, Field[Any], Setting, Any]]:
    """(dotted TOML path, field, declaration, type) of every declared setting that the example
    config shows in a table: the sections of `Config`, every `[rules.*]` table and the settings
    that live elsewhere (`Setting.toml`). Territories.regions is shown as region lists instead."""
    owners: list[tuple[str, type]] = [(path, cls) for path, cls in SECTIONS.values()]
    hints = get_type_hints(Policy)
    for f, d in declared(Policy):
        if isinstance(hints[f.name], type) and is_dataclass(hints[f.name]):
            owners.append((str(d.toml), hints[f.name]))
        else:
            yield str(d.toml), f, d, hints[f.name]
    for path, cls in owners:
        kinds = get_type_hints(cls)
        for f, d in declared(cls):
            if (cls, f.name) == (Territories, "regions"):
                continue
            yield (d.toml or f"{path}.{f.name}"), f, d, kinds[f.name]


def _tables(text: str) -> dict[str, list[str]]:
    """The example's lines, by the table they stand in (comments included)."""
    tables: dict[str, list[str]] = {"": []}
    current = ""
    for line in text.splitlines():
        header = re.fullmatch(r"\[([^\[\]]+)\]", line)
        if header:
            current = header.group(1).replace('"', "")
            tables[current] = []
        elif line.startswith("[["):
            current = "[[array]]"
            tables.setdefault(current, [])
        else:
            tables[current].append(line)
    return tables


def _comment_above(lines: list[str], index: int) -> str:
    comment: list[str] = []
    while index > 0 and lines[index - 1].startswith("# "):
        index -= 1
        comment.insert(0, lines[index][2:])
    return " ".join(comment)


def _plain(value: Any) -> Any:
    """A default as TOML reads it back: tuples as lists, mappings as dicts, paths as text."""
    if isinstance(value, tuple | list):
        return [_plain(item) for item in value]
    if isinstance(value, Mapping):
        return {key: _plain(item) for key, item in value.items()}
    return str(value) if isinstance(value, Path) else value


def _has_type(value: Any, kind: Any) -> bool:
    kind = get_args(kind)[0] if type(None) in get_args(kind) else kind
    origin = get_origin(kind)
    if origin is Literal:
        return value in get_args(kind)
    if kind is float:
        return isinstance(value, int | float) and not isinstance(value, bool)
    if kind is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if kind is Path:
        return isinstance(value, str)
    if origin is tuple:
        return isinstance(value, list)
    if origin in (Mapping, dict):
        return isinstance(value, dict)
    return isinstance(value, kind)


def test_config_example_shows_every_setting_at_its_default_with_its_type_and_doc() -> None:
    text = EXAMPLE.read_text(encoding="utf-8")
    data = tomllib.loads(text)
    tables = _tables(text)
    wrong: list[str] = []
    checked = 0
    for path, f, d, kind in _settings_in_the_file():
        table, _, key = path.rpartition(".")
        default = default_of(f)
        value: Any
        if isinstance(default, Mapping):  # a sub-table: its doc right under its header
            lines, pattern, value = tables.get(path, []), None, _table(data, path)
        else:
            lines, value = tables.get(table, []), _table(data, table).get(key)
            name = f"{key}_env" if isinstance(d, Secret) else key
            pattern = (
                rf"(# )?{re.escape(name)} = " if isinstance(d, Secret) or default is None else rf"{re.escape(name)} = "
            )
        at = 0 if pattern is None else next((i for i, line in enumerate(lines) if re.match(pattern, line)), None)
        if at is None:
            wrong.append(f"{path}: not shown")
            continue
        comment = " ".join(lines[:3]).replace("# ", "") if pattern is None else _comment_above(lines, at)
        if d.doc not in comment:
            wrong.append(f"{path}: comment {comment!r} lacks the doc {d.doc!r}")
        limits = describe_limits(d)
        if limits and f"[{limits}]" not in comment:
            wrong.append(f"{path}: comment {comment!r} lacks the limits [{limits}]")
        shown = not isinstance(d, Secret) and default is not None
        if shown and (value != _plain(default) or not _has_type(value, kind)):
            wrong.append(f"{path}: shows {value!r}, the default is {default!r} ({kind})")
        checked += 1
    assert wrong == []
    assert checked >= 150  # every declared setting (159 today), not a few of them


def test_config_example_lists_the_keys_of_pools_and_members_with_their_docs() -> None:
    text = EXAMPLE.read_text(encoding="utf-8")
    comment = text.split("\n[[pools]]\n")[0].split("# Round-robin pools")[1]
    intro = " ".join(" ".join(line.removeprefix("#").split()) for line in comment.splitlines())
    for cls in (PoolSettings, MemberSettings):
        for f, d in declared(cls):
            assert f.name in intro and d.doc in intro, (cls.__name__, f.name)
    custom = text.split("# [[rules.custom]]")[0]
    for f, _ in declared(CustomTriggerSettings):
        assert f"#   {f.name} " in custom, f.name


# -- `init` ---------------------------------------------------------------------------------------------


def test_init_writes_the_commented_example_and_never_overwrites(tmp_path: Path) -> None:
    import io

    from sync.cli import main

    target = tmp_path / "config.toml"
    out, err = io.StringIO(), io.StringIO()

    assert main(["init", str(target)], out=out, err=err) == 0

    assert target.read_text(encoding="utf-8") == render_example()
    assert load_config(target).source is not None  # the starter loads as it is
    assert f"wrote {target}" in out.getvalue() and "docs/operations.md" in out.getvalue()
    target.write_text("# mine\n")
    again = io.StringIO()
    assert main(["init", str(target)], out=io.StringIO(), err=again) == 2
    assert f"{target} exists: not overwritten" in again.getvalue()
    assert target.read_text() == "# mine\n"
