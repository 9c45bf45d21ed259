"""`report`: run history, leads and conversion per routing rule, round-robin fairness per pool.

The end-to-end tests run the real CLI against a sandbox holding a generated book: one cycle, then
a known set of the routed leads is converted in Salesforce (a status change through the sObject
API, and a conversion as Salesforce's convertLead leaves it: `IsConverted`), then cycles until
the mirror has caught up. Every expected number is computed from the sandbox's own state (Lead
`Routing_Rule__c`, `Sync_Key__c`, `OwnerId`; the Vitally onboarding-specialist trait) and the
config file, never by the report's code.
"""

from __future__ import annotations

import csv
import html
import io
import json
import re
import subprocess
import tomllib
import xml.etree.ElementTree as ET
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import requests
from support import example_config_for, person_sets_lead, run_cli

from rules.policy import ROUTING_RULE_IDS
from rules.round_robin import Member, Pool
from rules.routing import ACCOUNT_TRIGGERS
from sandbox import Sandbox, generate_book
from sandbox.store import sf_timestamp
from state import OwnerChoice, StateDB
from sync.charts import Bar, Series, bar_chart, grouped_bar_chart, nice_ceiling
from sync.cli import main
from sync.config import ReportSettings, load_config, packaged_example
from sync.report import ReportFormat, build_report, render_report

NOW = "2026-11-22T09:00:00Z"
SF = "/services/data/v59.0"
# A pool member whose name is hostile to every format: HTML, rich markup, CSV.
HOSTILE = '<script>alert(1)</script> [bold]Kim[/bold] & "Park", Jr.'


@dataclass(frozen=True)
class Scenario:
    config: Path
    state: Path
    salesforce: dict[str, list[dict[str, Any]]]
    vitally: dict[str, list[dict[str, Any]]]
    converted: frozenset[str]  # Lead Ids this test converted
    writes: tuple[tuple[int, int], ...]  # per cycle: Vitally PUTs, Salesforce write requests


def _converted_in_salesforce(sb: Sandbox, leads: list[dict[str, Any]]) -> None:
    """Half through the sObject API (Status), half as convertLead leaves a lead (IsConverted is
    read-only in the API, so the sandbox's load control stands in for the conversion)."""
    for index, lead in enumerate(leads):
        if index % 2 == 0:
            person_sets_lead(sb.url, lead["Id"], Status="Closed - Converted")
        else:
            converted = {**lead, "IsConverted": True, "Status": "Qualified", "SystemModstamp": sf_timestamp(sb.now())}
            requests.post(
                f"{sb.url}/_sandbox/load", json={"salesforce": {"Lead": [converted]}}, timeout=5
            ).raise_for_status()


def _cycle(sb: Sandbox, config: Path, state: Path) -> tuple[subprocess.CompletedProcess[str], tuple[int, int]]:
    sb.reset()
    result = run_cli(config, state, "run", "--now", NOW, "--format", "json", timeout=120)
    assert result.returncode == 0, result.stderr
    calls = sb.calls()
    puts = sum(1 for c in calls if c["system"] == "vitally" and c["method"] == "PUT")
    sf_writes = sum(1 for c in calls if c["system"] == "salesforce" and c["method"] != "GET")
    return result, (puts, sf_writes)


@pytest.fixture(scope="module")
def scenario(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Scenario]:
    tmp = tmp_path_factory.mktemp("report")
    book = generate_book(200, seed=1, now=datetime(2026, 11, 22, 9, tzinfo=UTC))
    del book["_cases"]
    state = tmp / "state.db"
    with Sandbox(book) as sb:
        config = example_config_for(sb.url, tmp / "config.toml", {'"Kim Park"': "'" + HOSTILE + "'"})
        writes = [_cycle(sb, config, state)[1]]
        routed = sorted(
            (lead for lead in sb.state()["salesforce"]["Lead"] if lead.get("Routing_Rule__c")),
            key=lambda lead: lead["Id"],
        )
        chosen = routed[::3]
        _converted_in_salesforce(sb, chosen)
        writes.append(_cycle(sb, config, state)[1])  # reads the conversions (a converted lead ends its episode)
        last, counts = _cycle(sb, config, state)  # reads what the previous cycle created
        writes.append(counts)
        assert not [line for line in last.stdout.splitlines() if '"salesforce"' in line], "the mirror lags Salesforce"
        snapshot = sb.state()
    yield Scenario(
        config,
        state,
        snapshot["salesforce"],
        snapshot["vitally"],
        frozenset(lead["Id"] for lead in chosen),
        tuple(writes),
    )


@dataclass(frozen=True)
class Output:
    stdout: str
    stderr: str


def report(scenario: Scenario, *args: str) -> Output:
    """`report ARGS…` through the CLI's entry point, in this process (the cycles ran in their own)."""
    out, err = io.StringIO(), io.StringIO()
    status = main(["--config", str(scenario.config), "--state", str(scenario.state), "report", *args], out, err)
    assert status == 0, err.getvalue()
    return Output(out.getvalue(), err.getvalue())


def report_json(scenario: Scenario) -> dict[str, Any]:
    document: dict[str, Any] = json.loads(report(scenario, "--format", "json").stdout)
    return document


def expected_rules(scenario: Scenario) -> dict[str, dict[str, Any]]:
    """Per rule, from Salesforce's leads: how many carry it, created or inbound, and converted."""
    rules: dict[str, Counter[str]] = {}
    for lead in scenario.salesforce["Lead"]:
        rule = lead.get("Routing_Rule__c")
        if not rule:
            continue
        counts = rules.setdefault(rule, Counter())
        counts["leads"] += 1
        counts["created" if str(lead.get("Sync_Key__c") or "").startswith("crm-sync-") else "inbound"] += 1
        counts["converted"] += lead["Id"] in scenario.converted
    return {
        rule: {
            "leads": c["leads"],
            "created": c["created"],
            "inbound": c["inbound"],
            "converted": c["converted"],
            "conversion_rate": pytest.approx(c["converted"] / c["leads"], abs=1e-4),
            "vs_target": "below"
            if c["converted"] / c["leads"] < 0.2
            else "above"
            if c["converted"] / c["leads"] > 0.2
            else "at",
        }
        for rule, c in rules.items()
    }


def expected_pools(scenario: Scenario) -> dict[str, dict[str, Any]]:
    """Per pool of the config file: each member's leads in Salesforce (owned and routed) or, in the
    Onboarding pool, the accounts naming them as specialist; their fair share of the pool's total."""
    owned = Counter(lead.get("OwnerId") for lead in scenario.salesforce["Lead"] if lead.get("Routing_Rule__c"))
    specialists = Counter(account["traits"].get("onboarding_specialist") for account in scenario.vitally["accounts"])
    pools = {}
    for pool in tomllib.loads(scenario.config.read_text())["pools"]:
        members = pool["members"]
        if pool["team"] == "Onboarding":
            counts = [specialists[m["name"]] for m in members]
        else:
            counts = [owned[m["user_id"]] for m in members]
        total = sum(counts)
        weights = sum(m.get("weight", 1) for m in members)
        pools[f"{pool['team']}/{pool['region']}"] = {
            "assigned": total,
            "members": [
                (m["name"], count, pytest.approx(total * m.get("weight", 1) / weights, abs=0.005))
                for m, count in zip(members, counts, strict=True)
            ],
        }
    return pools


# -- the numbers -------------------------------------------------------------------------------------


@pytest.mark.e2e
def test_report_counts_leads_and_conversions_per_rule(scenario: Scenario) -> None:
    rules = {line.pop("rule"): line for line in report_json(scenario)["rules"]}

    assert {rule: {k: v for k, v in line.items() if k != "target"} for rule, line in rules.items()} == expected_rules(
        scenario
    )
    assert {line["target"] for line in rules.values()} == {0.2}
    assert sum(line["converted"] for line in rules.values()) == len(scenario.converted) > 0
    assert sum(line["created"] for line in rules.values()) > 0 and sum(line["inbound"] for line in rules.values()) > 0


@pytest.mark.e2e
def test_report_conversion_covers_every_routing_trigger_product_led_ones_included(scenario: Scenario) -> None:
    """Issue #15: a created lead carries the trigger that routed it, so every account trigger with a
    case in the book has its own conversion row; the qualification verdict rides in its own fields."""
    rules = {line["rule"] for line in report_json(scenario)["rules"]}
    assert set(ACCOUNT_TRIGGERS) <= rules, sorted(set(ACCOUNT_TRIGGERS) - rules)
    assert {rule for rule in ROUTING_RULE_IDS if rule.startswith("product_led.")} <= rules
    assert rules <= set(ROUTING_RULE_IDS) | {"onboarding.direct_handover"}
    created = [
        lead for lead in scenario.salesforce["Lead"] if str(lead.get("Sync_Key__c") or "").startswith("crm-sync-")
    ]
    product_led = [lead for lead in created if lead["Routing_Rule__c"].startswith("product_led.")]
    assert product_led
    for lead in product_led:
        assert lead["LeadSource"] in ("Product-led", "AM referral"), lead
        assert lead["Qualification__c"] in ("qualify", "nurture", "disqualify"), lead
        assert lead["Qualification_Reason__c"].startswith(f"{lead['Qualification__c']}: "), lead
    for lead in created:
        assert lead["Routing_Reason__c"].startswith(f"{lead['Routing_Rule__c']}: "), lead
        if not lead["Routing_Rule__c"].startswith("product_led."):
            assert lead.get("Qualification__c") is None, lead


@pytest.mark.e2e
def test_report_compares_each_pool_member_with_their_fair_share(scenario: Scenario) -> None:
    pools = {pool["pool"]: pool for pool in report_json(scenario)["pools"]}
    expected = expected_pools(scenario)

    assert set(pools) == set(expected)
    for key, pool in pools.items():
        assert pool["assigned"] == expected[key]["assigned"], key
        assert [(m["name"], m["assigned"], m["fair_share"]) for m in pool["members"]] == expected[key]["members"], key
        for member in pool["members"]:
            assert member["deviation"] == pytest.approx(member["assigned"] - member["fair_share"], abs=0.01)
    queued = [lead for lead in scenario.salesforce["Lead"] if str(lead.get("OwnerId")).startswith("00G")]
    assert sum(pool["fallback"] for pool in pools.values()) == sum(1 for lead in queued if lead.get("Routing_Rule__c"))
    assert sum(pool["assigned"] for pool in pools.values()) > 0


@pytest.mark.e2e
def test_report_run_history_shows_each_cycle_with_its_writes(scenario: Scenario) -> None:
    runs = report_json(scenario)["runs"]

    assert [run["run"] for run in runs] == [3, 2, 1]
    assert [run["status"] for run in runs] == ["ok"] * 3
    assert [(run["vitally_puts"], run["salesforce_writes"]) for run in reversed(runs)] == list(scenario.writes)
    first = runs[-1]
    assert first["accounts_read"] == len(scenario.vitally["accounts"])
    assert first["applied"] == first["planned"] > 0 and first["failed"] == first["parked"] == 0
    assert first["record_errors"] > 0 and first["seconds"] >= 0


# -- the same numbers in every format ----------------------------------------------------------------


def _cells(line: str) -> list[str]:
    return [cell.strip() for cell in line.strip().strip("│┃").split("│")]


@pytest.mark.e2e
def test_report_csv_and_table_show_the_numbers_of_json(scenario: Scenario) -> None:
    document = report_json(scenario)
    rows = list(csv.DictReader(io.StringIO(report(scenario, "--format", "csv").stdout)))
    table = report(scenario, "--format", "table").stdout.splitlines()

    by_section = Counter(row["section"] for row in rows)
    assert by_section == {
        "runs": len(document["runs"]),
        "rules": len(document["rules"]),
        "pools": sum(len(pool["members"]) for pool in document["pools"]),
    }
    csv_rules = {row["rule"]: row for row in rows if row["section"] == "rules"}
    for rule in document["rules"]:
        row = csv_rules[rule["rule"]]
        assert [int(row[k]) for k in ("leads", "created", "inbound", "converted")] == [
            rule[k] for k in ("leads", "created", "inbound", "converted")
        ]
        assert float(row["conversion_rate"]) == rule["conversion_rate"] and row["vs_target"] == rule["vs_target"]
        (shown,) = [_cells(line) for line in table if line.startswith(f"│ {rule['rule']} ")]
        assert shown == [
            rule["rule"],
            *(str(rule[k]) for k in ("leads", "created", "inbound", "converted")),
            f"{rule['conversion_rate']:.1%}",
            "20.0%",
            rule["vs_target"],
        ]
    csv_members = {(row["pool"], row["user_id"]): row for row in rows if row["section"] == "pools"}
    for pool in document["pools"]:
        for member in pool["members"]:
            row = csv_members[(pool["pool"], member["user_id"])]
            assert row["name"] == member["name"] and int(row["pool_assigned"]) == pool["assigned"]
            assert (int(row["assigned"]), float(row["fair_share"])) == (member["assigned"], member["fair_share"])
            shown = next(_cells(line) for line in table if f"│ {member['user_id']} │" in line)
            assert shown[:7] == [
                member["name"],
                member["user_id"],
                str(member["weight"]),
                member["membership"],
                str(member["assigned"]),
                f"{member['fair_share']:.2f}",
                f"{member['deviation']:+.2f}",
            ]
    csv_runs = [row for row in rows if row["section"] == "runs"]
    assert [(int(r["run"]), int(r["applied"])) for r in csv_runs] == [
        (r["run"], r["applied"]) for r in document["runs"]
    ]


@pytest.mark.e2e
def test_report_section_narrows_json_and_csv(scenario: Scenario) -> None:
    rules_only = json.loads(report(scenario, "--format", "json", "--section", "rules").stdout)
    header = report(scenario, "--format", "csv", "--section", "pools", "--section", "runs").stdout.splitlines()[0]

    assert set(rules_only) == {"conversion_target", "rules"}
    assert header.startswith("section,run,started_at,") and header.endswith(",skipped,skip_reason")
    assert "rule" not in header.split(",")


@pytest.mark.e2e
def test_report_html_is_one_self_contained_page_with_charts(scenario: Scenario, tmp_path: Path) -> None:
    path = tmp_path / "report.html"
    result = report(scenario, "--format", "html", "--output", str(path))
    page = path.read_text(encoding="utf-8")
    document = report_json(scenario)

    assert result.stdout == "" and str(path) in result.stderr
    assert page.startswith("<!DOCTYPE html>") and page.rstrip().endswith("</html>")
    assert re.search(r"\b(src|href)\s*=", page) is None and re.search(r"https?://|@import|url\(", page) is None
    assert "<script" not in page and "<link" not in page
    charts = re.findall(r"<svg\b.*?</svg>", page, flags=re.DOTALL)
    assert len(charts) == 1 + len(document["pools"])
    for chart in charts:
        ET.fromstring(chart)
    for rule in document["rules"]:
        assert f"<td>{rule['rule']}</td>" in page
    for pool in document["pools"]:
        for member in pool["members"]:
            assert f"<td>{html.escape(member['name'])}</td>" in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt; [bold]Kim[/bold] &amp; &quot;Park&quot;, Jr." in page
    for run in document["runs"]:
        assert f'<td class="num">{run["run"]}</td>' in page


@pytest.mark.e2e
def test_report_keeps_hostile_names_intact_in_table_and_csv(scenario: Scenario) -> None:
    table = report(scenario, "--format", "table").stdout
    rows = list(csv.DictReader(io.StringIO(report(scenario, "--format", "csv", "--section", "pools").stdout)))

    assert HOSTILE in table  # shown as text, not read as rich markup
    assert HOSTILE in [row["name"] for row in rows]


@pytest.mark.e2e
def test_report_html_without_output_goes_to_stdout(scenario: Scenario) -> None:
    result = report(scenario, "--format", "html")

    assert result.stdout.startswith("<!DOCTYPE html>") and result.stderr == ""


@pytest.mark.e2e
def test_report_output_that_cannot_be_written_is_a_usage_error(scenario: Scenario, tmp_path: Path) -> None:
    target = tmp_path / "missing" / "report.html"

    result = run_cli(scenario.config, scenario.state, "report", "--format", "html", "--output", str(target))

    assert result.returncode == 2
    assert f"--output {target}" in result.stderr and not target.exists()


# -- the rules behind the numbers, on a hand-made state ------------------------------------------------


def _lead(n: int, rule: str | None, **fields: Any) -> dict[str, Any]:
    raw = {"Id": f"00Q{n:015d}", "SystemModstamp": "2026-11-20T09:00:00.000+0000", "LastName": f"L{n}"}
    return {
        "object": "Lead",
        "id": raw["Id"],
        "modstamp": raw["SystemModstamp"],
        "raw": json.dumps({**raw, "Routing_Rule__c": rule, **fields}),
    }


def test_report_counts_converted_by_flag_or_converted_status() -> None:
    config = replace(load_config(packaged_example()), report=ReportSettings(conversion_target=0.5), pools={})
    state = StateDB.memory()
    state.upsert_sf(
        [
            _lead(1, "a.rule", IsConverted=True, Status="Qualified", Sync_Key__c="crm-sync-acc_1-1"),
            _lead(2, "a.rule", Status="Closed - Converted"),
            _lead(3, "a.rule", Status="Converted"),
            _lead(4, "a.rule", Status="Qualified", IsConverted=False),
            _lead(5, "b.rule", Status="Working", Sync_Key__c="crm-sync-acc_5-1"),
            _lead(6, "b.rule", Status="Closed - Converted"),
            _lead(7, "c.rule", Status="Closed - Converted"),
            _lead(8, None, IsConverted=True),  # routed by nobody: not counted
            _lead(9, "c.rule", NumberOfEmployees="many", IsConverted=True),  # malformed: left out
        ]
    )

    rules = {line.rule: line for line in build_report(config, state).rules}

    assert {rule: (r.leads, r.created, r.inbound, r.converted) for rule, r in rules.items()} == {
        "a.rule": (4, 1, 3, 3),
        "b.rule": (2, 1, 1, 1),
        "c.rule": (1, 0, 1, 1),
    }
    assert {rule: (r.conversion_rate, r.vs_target) for rule, r in rules.items()} == {
        "a.rule": (0.75, "above"),
        "b.rule": (0.5, "at"),
        "c.rule": (1.0, "above"),
    }


def test_report_counts_the_configured_converted_statuses() -> None:
    """An org that converts leads to its own "Won" status lists it in `[rules.episodes]
    converted_statuses`, which the episodes read; the report read a fixed pair."""
    base = replace(load_config(packaged_example()), report=ReportSettings(conversion_target=0.5), pools={})
    won = replace(base.policy.episodes, converted_statuses=("Won",))
    config = replace(base, policy=replace(base.policy, episodes=won))
    state = StateDB.memory()
    state.upsert_sf(
        [
            _lead(1, "a.rule", Status="Won"),
            _lead(2, "a.rule", Status="won "),  # compared as the episodes compare
            _lead(3, "a.rule", Status="Closed - Converted"),
        ]
    )
    assert [(r.leads, r.converted) for r in build_report(config, state).rules] == [(3, 2)]
    assert [(r.leads, r.converted) for r in build_report(base, state).rules] == [(3, 1)]  # the default's pair


def _assign(state: StateDB, key: str, pool: str, user: str | None, *, skipped: dict[str, str] | None = None) -> None:
    state.record_assignment(
        OwnerChoice(
            key=key,
            pool=pool,
            user_id=user,
            name=f"name of {user}",
            fallback=user is None or user.startswith("00G"),
            reason="test",
            run_id=1,
            at=f"2026-11-22T09:00:{len(key):02d}Z",
            candidates=(),
            skipped=skipped or {},
        )
    )


def test_report_fair_share_follows_weights_with_paused_and_removed_members() -> None:
    pool = Pool(
        "TAE",
        "US",
        (Member("005A", "Ann", 1), Member("005B", "Bo", 2), Member("005C", "Cy", 1, active=False)),
        "00G1",
    )
    config = replace(load_config(packaged_example()), pools={("TAE", "US"): pool})
    state = StateDB.memory()
    for n in range(4):
        _assign(state, f"a{n}", "TAE/US", "005A", skipped={"005C": "paused"})
    for n in range(6):
        _assign(state, f"bb{n}", "TAE/US", "005B", skipped={"005C": "paused"})
    _assign(state, "ccc0", "TAE/US", "005Z")  # someone since removed from the pool
    _assign(state, "dddd0", "TAE/US", "00G1", skipped={"005A": "at capacity (15/15)", "005B": "paused"})
    _assign(state, "eeeee0", "BDR/*", "005Q")  # a pool no longer configured

    pools = {line.pool: line for line in build_report(config, state).pools}

    tae = pools["TAE/US"]
    assert (tae.assigned, tae.fallback) == (11, 1)
    assert [
        (m.name, m.weight, m.membership, m.assigned, m.fair_share, m.deviation, m.skipped) for m in tae.members
    ] == [
        ("Ann", 1, "active", 4, 2.75, 1.25, 1),
        ("Bo", 2, "active", 6, 5.5, 0.5, 1),
        ("Cy", 1, "paused", 0, 2.75, -2.75, 10),
        ("name of 005Z", 0, "removed", 1, 0.0, 1.0, 0),
    ]
    assert tae.members[0].skip_reason == "at capacity (15/15)"
    gone = pools["BDR/*"]
    assert [(m.user_id, m.assigned, m.fair_share, m.membership) for m in gone.members] == [("005Q", 1, 0.0, "removed")]


@pytest.mark.parametrize("fmt", ["table", "json", "csv", "html"])
def test_report_of_a_state_without_runs_renders_every_format(fmt: ReportFormat) -> None:
    config = load_config(packaged_example())
    out = io.StringIO()

    render_report(build_report(config, StateDB.memory()), fmt, out)

    assert out.getvalue()
    if fmt == "json":
        document = json.loads(out.getvalue())
        assert (document["runs"], document["rules"]) == ([], [])
        assert all(m["assigned"] == 0 and m["fair_share"] == 0 for p in document["pools"] for m in p["members"])


# -- the charts ---------------------------------------------------------------------------------------


def _bars(svg: str) -> list[float]:
    return [float(rect.get("width", "nan")) for rect in ET.fromstring(svg).iter("rect") if rect.get("class") == "bar"]


def test_bar_chart_is_svg_with_bar_widths_proportional_to_values() -> None:
    svg = bar_chart([Bar("a", 2), Bar("b", 4), Bar("c", 1), Bar("zero", 0)], title="t")

    widths = _bars(svg)

    assert ET.fromstring(svg).tag == "svg"
    assert widths[3] == 0 and widths[0] > 0
    assert widths[1] / widths[0] == pytest.approx(2, rel=1e-3) and widths[0] / widths[2] == pytest.approx(2, rel=1e-3)


def test_bar_chart_draws_the_target_line_where_a_bar_of_that_value_would_end() -> None:
    svg = bar_chart([Bar("a", 0.1), Bar("b", 0.4)], title="t", target=0.2, target_label="target 20%")
    root = ET.fromstring(svg)

    (line,) = [el for el in root.iter("line") if el.get("class") == "target"]
    first = next(el for el in root.iter("rect") if el.get("class") == "bar")

    assert float(line.get("x1", "nan")) == pytest.approx(
        float(first.get("x", "nan")) + 2 * float(first.get("width", "nan")), abs=0.2
    )
    assert "target 20%" in svg


def test_bar_chart_of_zeros_and_of_nothing_is_still_a_chart() -> None:
    zeros = bar_chart([Bar("a", 0), Bar("b", 0)], title="zeros")
    empty = bar_chart([], title="empty")
    grouped_empty = grouped_bar_chart([], [Series("s", (), "#000")], title="none")

    assert _bars(zeros) == [0, 0]
    for svg in (empty, grouped_empty):
        assert _bars(svg) == [] and "no data" in svg


def test_grouped_bar_chart_draws_one_bar_per_series_and_category() -> None:
    svg = grouped_bar_chart(
        ["Ann", "Bo"],
        [Series("assigned", (3.0, 0.0), "#111"), Series("fair share", (1.5, 1.5), "#999")],
        title="pool",
    )

    widths = _bars(svg)

    assert len(widths) == 4
    assert widths[1] == widths[3] == pytest.approx(widths[0] / 2, rel=1e-3) and widths[2] == 0
    with pytest.raises(ValueError, match="1 values for 2 categories"):
        grouped_bar_chart(["Ann", "Bo"], [Series("s", (1.0,), "#000")], title="bad")


def test_chart_text_is_escaped() -> None:
    svg = bar_chart([Bar("<b>&", 1, note='"x" <y>')], title="<title>")

    root = ET.fromstring(svg)

    assert "<b>" not in svg and [t.text for t in root.iter("text")][-1] == '"x" <y>'
    title = root.find("title")
    assert title is not None and title.text == "<title>"


@pytest.mark.parametrize(
    ("value", "ceiling"),
    [(0, 1), (-3, 1), (0.2, 0.2), (0.3, 0.5), (0.75, 1), (1, 1), (7, 10), (13, 20), (24, 50), (100, 100)],
)
def test_nice_ceiling_is_the_next_1_2_5_step(value: float, ceiling: float) -> None:
    assert nice_ceiling(value) == pytest.approx(ceiling)
