"""config.example.toml documents every tunable of the rules, with its default, and a working custom trigger."""

from __future__ import annotations

import tomllib
from dataclasses import fields
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from core.errors import ConfigError
from core.model import Account
from rules.context import EMPTY
from rules.policy import Policy
from sync.config import _POLICY_SECTIONS, load_config

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
    assert set(_table(data, "rules")) - {"order", "countries", "custom"} == {
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
