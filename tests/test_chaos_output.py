"""Markup and formulas (issue #13, item 6): names and fields anyone can type into Vitally or
Salesforce are printed, never obeyed. Rich markup (`[/bold]` crashed the plan table after the
writes were applied; `[white on white]` hid text), terminal escape codes, bidirectional overrides
and spreadsheet formulas go through every output of the real CLI: the plan (table, csv, json), the
applied run, the report (table, csv, json, html), `explain`, and the summaries on stderr.
"""

from __future__ import annotations

import csv
import io
import json
import re
from datetime import UTC, datetime
from typing import Any

import pytest
from support import example_config_for, run_cli

from sandbox import Sandbox, SandboxConfig, generate_book

pytestmark = [pytest.mark.chaos, pytest.mark.e2e]

NOW = datetime(2026, 11, 22, 9, 0, tzinfo=UTC)
NOW_TEXT = "2026-11-22T09:00:00Z"
HOSTILE_NAMES = [
    "[/bold]",
    "[white on white]hidden audit row[/white on white]",
    "Acme \x1b[2J\x1b[31mcleared\x1b[0m",
    "\x1b]8;;https://evil.example\x07click me\x1b]8;;\x07",
    "Evil \u202eCorp",
    '=HYPERLINK("https://evil.example","invoice")',
    "+cmd|' /C calc'!A0",
    "@SUM(1+1)*cmd|' /C calc'!A0",
]
FORMULA = re.compile(r"^[=+\-@\t\r\uff1d\uff0b\uff0d\uff20]")
NUMBER = re.compile(r"^[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?$")
CUSTOM = '\n[[rules.custom]]\nid = "custom.named"\nteam = "TAM"\nwhen = "mrr > 0"\nreason = "{name}"\n'


def _book() -> dict[str, Any]:
    book = generate_book(60, seed=3, now=NOW)
    for n, account in enumerate(book["vitally"]["accounts"]):
        account["name"] = HOSTILE_NAMES[n % len(HOSTILE_NAMES)]
    for n, lead in enumerate(book["salesforce"]["Lead"][:8]):
        lead["Company"] = HOSTILE_NAMES[n % len(HOSTILE_NAMES)]
        lead["Routing_Rule__c"] = HOSTILE_NAMES[(n + 5) % len(HOSTILE_NAMES)]  # report: leads per rule
    return book


def _strict_json(line: str) -> Any:
    def refuse(name: str) -> Any:
        raise ValueError(f"{name} is not JSON")

    return json.loads(line, parse_constant=refuse)


def _strings(value: Any) -> list[str]:
    if isinstance(value, dict):
        return [s for item in value.values() for s in _strings(item)]
    if isinstance(value, list):
        return [s for item in value for s in _strings(item)]
    return [value] if isinstance(value, str) else []


def _csv_cells(text: str) -> list[str]:
    return [value for row in csv.reader(io.StringIO(text)) for value in row]


def _assert_inert(*texts: str) -> None:
    for text in texts:
        assert "\x1b" not in text and "\x07" not in text and "\u202e" not in text, repr(text[:300])


@pytest.fixture(scope="module")
def outputs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    directory = tmp_path_factory.mktemp("output")
    state = directory / "state.db"
    config = SandboxConfig().updated({"vitally_rate_limit": 10_000_000})
    results: dict[str, Any] = {}
    with Sandbox(_book(), config=config, now=NOW) as sandbox:
        settings = example_config_for(sandbox.url, directory / "config.toml")
        settings.write_text(settings.read_text() + CUSTOM)

        def cli(*args: str) -> Any:
            return run_cli(settings, state, *args, env={"COLUMNS": "400"}, timeout=120)

        for fmt in ("table", "csv", "json"):
            results[f"plan-{fmt}"] = cli("run", "--dry-run", "--format", fmt, "--now", NOW_TEXT)
        results["run-table"] = cli("run", "--format", "table", "--now", NOW_TEXT)
        for fmt in ("table", "csv", "json"):
            results[f"report-{fmt}"] = cli("report", "--format", fmt)
        results["report-html"] = cli("report", "--format", "html", "--output", str(directory / "report.html"))
        results["report-html-file"] = (directory / "report.html").read_text(encoding="utf-8")
        hostile = next(a["id"] for a in sandbox.state()["vitally"]["accounts"] if "\x1b[2J" in a["name"])
        results["explain"] = cli("explain", hostile, "--now", NOW_TEXT)
        results["failed"] = cli("failed")
    return results


def test_output_every_command_exits_as_usual_without_a_traceback(outputs: dict[str, Any]) -> None:
    for name, result in outputs.items():
        if name == "report-html-file":
            continue
        assert result.returncode in (0, 1), (name, result.stderr[-2000:])
        assert "Traceback" not in result.stderr, (name, result.stderr[-2000:])
        _assert_inert(result.stdout, result.stderr)
    _assert_inert(outputs["report-html-file"])


def test_output_plan_table_prints_markup_literally_and_escapes_control_characters(outputs: dict[str, Any]) -> None:
    for name in ("plan-table", "run-table"):
        table = outputs[name].stdout
        assert "[/bold]" in table
        assert "[white on white]hidden audit row[/white on white]" in table
        assert "\\x1b[2J" in table and "\\u202e" in table  # shown, visibly, as escapes
    assert re.search(r"^run \d+: read \d+ account", outputs["run-table"].stderr, re.MULTILINE)  # the summary


def test_output_csv_cells_never_run_as_formulas(outputs: dict[str, Any]) -> None:
    for name in ("plan-csv", "report-csv"):
        cells = _csv_cells(outputs[name].stdout)
        assert [c for c in cells if FORMULA.match(c) and not NUMBER.match(c)] == [], name
        assert any(c.startswith("'=HYPERLINK(") for c in cells), name  # the formula is there, inert
        assert any(c.startswith("'+cmd|") for c in cells), name


def test_output_json_is_always_valid_json(outputs: dict[str, Any]) -> None:
    lines = outputs["plan-json"].stdout.splitlines()
    assert lines
    planned = [_strict_json(line) for line in lines]
    assert any(HOSTILE_NAMES[2] in _strings(p) for p in planned)  # the data, exact
    report = _strict_json(outputs["report-json"].stdout)
    assert any(rule["rule"] == HOSTILE_NAMES[5] for rule in report["rules"])


def test_output_explain_shows_the_name_without_obeying_it(outputs: dict[str, Any]) -> None:
    assert "Acme \\x1b[2J\\x1b[31mcleared\\x1b[0m" in outputs["explain"].stdout
