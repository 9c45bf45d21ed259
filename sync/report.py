"""`report`: run history, leads and conversion per routing rule, round-robin fairness per pool;
for people (table, html) and programs (json, csv).

Everything comes from a read-only copy of the state file (`StateDB.snapshot`) and the config:

- **runs**: the runs table, newest first (a dry run leaves no row behind).
- **rules**: the Salesforce Lead mirror as of the last run. A lead counts for the rule in its
  `Routing_Rule__c`, which only crm-sync writes: the leads it created (`created`: `Sync_Key__c`
  starts with `crm-sync-`) and the inbound leads it routed (`inbound`). A lead is converted when
  `IsConverted` is true or its `Status` is `Converted` or `Closed - Converted`. Only rules with at
  least one lead are listed, so the rate is always defined; `vs_target` compares it with
  `[report] conversion_target`. A lead Salesforce holds in a malformed shape is left out, as it
  is from every cycle.
- **pools**: the owners the round robin chose (the assignments table: new leads, inbound leads,
  onboarding handovers), per configured pool and member. A member's fair share is the pool's
  `assigned` total × their weight / the sum of the configured members' weights (paused members
  included, so the deviation shows what a pause or a skip cost them; `skipped` counts the draws
  that passed them over and `skip_reason` gives the latest reason). Draws that went to the
  fallback queue are counted apart (`fallback`); someone no longer in the config keeps their
  count with weight 0 (`membership` "removed").
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import stat
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, fields
from datetime import datetime
from html import escape
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, TextIO

if TYPE_CHECKING:  # imported where a table is drawn: the CLI builds its parser from this module
    from rich.table import Table

from core.errors import ConfigError, RecordError
from core.model import Lead
from core.records import parse_lead
from rules.round_robin import Pool
from state import OwnerChoice, StateDB
from sync.charts import Bar, Series, bar_chart, grouped_bar_chart
from sync.config import Config
from sync.safe import cell, csv_cell, json_line, printable

__all__ = [
    "CONVERTED_STATUSES",
    "DESCRIPTION",
    "FORMATS",
    "SECTIONS",
    "MemberLine",
    "PoolLine",
    "Report",
    "RuleLine",
    "RunLine",
    "build_report",
    "render_report",
    "save_report",
]

ReportFormat = Literal["table", "json", "csv", "html"]
Section = Literal["runs", "rules", "pools"]
Verdict = Literal["below", "at", "above"]
Membership = Literal["active", "paused", "removed"]

FORMATS: tuple[ReportFormat, ...] = ("table", "json", "csv", "html")
SECTIONS: tuple[Section, ...] = ("runs", "rules", "pools")
# Salesforce's default converted status is "Closed - Converted"; some orgs name it "Converted".
# The report counts the configured `[rules.episodes] converted_statuses` (these by default).
CONVERTED_STATUSES = frozenset({"Converted", "Closed - Converted"})
_CONVERTED = frozenset(status.casefold() for status in CONVERTED_STATUSES)
_CREATED_PREFIX = "crm-sync-"  # the planner's Sync_Key__c: crm-sync-<account>-<episode>

DESCRIPTION = """\
Run history; leads and conversion per routing rule against [report] conversion_target; and, per
round-robin pool, what each member was assigned against their fair share.

rules: every lead of the Salesforce mirror (as of the last run) whose Routing_Rule__c is set:
  `created` by crm-sync (Sync_Key__c crm-sync-…) or `inbound` leads it routed. Converted:
  IsConverted, or a Status of [rules.episodes] converted_statuses ("Converted", "Closed -
  Converted" by default). Rules without leads are left out.
pools: owners the round robin chose (new leads, inbound leads, onboarding handovers). Fair share =
  the pool's total × weight / sum of the configured members' weights (paused members included);
  `skipped` counts the draws that passed a member over; fallback-queue draws are counted apart.

formats:
  table  rich tables (default)
  json   one document on one line: {"conversion_target", "runs": [...], "rules": [...], "pools": [{"pool",
         "assigned", "fallback", "members": [...]}]} (only the chosen sections)
  csv    one table for a spreadsheet: a `section` column (runs, rules, pools), then every chosen
         section's columns, blank where they do not apply; one row per run, per rule and per pool
         member (a member row repeats its pool's pool_assigned and pool_fallback). Filter on
         `section`, or pick one with --section for a plain table.
  html   one self-contained page (inline CSS and SVG charts, nothing fetched): conversion per rule
         against the target, assigned vs fair share per pool, the run history. Like the other
         formats it goes to stdout unless --output is given."""


@dataclass(frozen=True)
class RunLine:
    """One real cycle of the runs table. `salesforce_read` adds up the records read of every
    sObject; `vitally_puts` counts accounts written (one PUT each), `salesforce_writes` the write
    requests sent (a composite request carries up to 200 leads); `applied`, `failed` and
    `parked` count outbox writes."""

    run: int
    started_at: str
    seconds: float | None
    status: str
    accounts_read: int
    salesforce_read: int
    planned: int
    vitally_puts: int
    salesforce_writes: int
    applied: int
    failed: int
    parked: int
    conflicts: int
    record_errors: int
    error: str | None


@dataclass(frozen=True)
class RuleLine:
    """The leads one routing rule sent to Salesforce and how many converted."""

    rule: str
    leads: int
    created: int
    inbound: int
    converted: int
    conversion_rate: float
    target: float
    vs_target: Verdict


@dataclass(frozen=True)
class MemberLine:
    """One pool member's assignments against their fair share (two decimals)."""

    user_id: str
    name: str
    weight: int
    membership: Membership
    assigned: int
    fair_share: float
    deviation: float
    skipped: int
    skip_reason: str | None


@dataclass(frozen=True)
class PoolLine:
    """One pool: what its members were assigned, and what went to its fallback queue."""

    pool: str
    assigned: int
    fallback: int
    members: tuple[MemberLine, ...]


@dataclass(frozen=True)
class Report:
    """The whole report: its sections, each a tuple of lines, and the target rules are held to."""

    conversion_target: float
    runs: tuple[RunLine, ...]
    rules: tuple[RuleLine, ...]
    pools: tuple[PoolLine, ...]

    def as_json(self, sections: Sequence[Section] = SECTIONS) -> dict[str, Any]:
        """The json format's document, with the chosen sections."""
        document: dict[str, Any] = {"conversion_target": self.conversion_target}
        for section in sections:
            document[section] = [asdict(line) for line in getattr(self, section)]
        return document


# -- building ------------------------------------------------------------------------------------


def build_report(config: Config, state: StateDB, limit: int = 20) -> Report:
    """The report over `state` (the last `limit` runs) and the config's target and pools."""
    target = config.conversion_target
    converted = frozenset(status.strip().casefold() for status in config.policy.episodes.converted_statuses)
    return Report(target, _runs(state, limit), _rules(state, target, converted), _pools(config.pools.values(), state))


def _seconds(started: str | None, finished: str | None) -> float | None:
    if not started or not finished:
        return None
    begin = datetime.fromisoformat(started.replace("Z", "+00:00"))
    end = datetime.fromisoformat(finished.replace("Z", "+00:00"))
    return round((end - begin).total_seconds(), 3)


def _runs(state: StateDB, limit: int) -> tuple[RunLine, ...]:
    lines = []
    for row in state.runs(limit):
        if row["mode"] == "dry-run":
            continue
        counts: Mapping[str, int] = row["counts"]
        lines.append(
            RunLine(
                run=row["id"],
                started_at=row["started_at"],
                seconds=_seconds(row["started_at"], row["finished_at"]),
                status=row["status"],
                accounts_read=counts.get("accounts_read", 0),
                salesforce_read=sum(n for key, n in counts.items() if key.startswith("sf_") and key.endswith("_read")),
                planned=counts.get("planned", 0),
                vitally_puts=counts.get("vitally_puts", 0),
                salesforce_writes=counts.get("salesforce_writes", 0),
                applied=counts.get("applied", 0),
                failed=counts.get("failed", 0),
                parked=counts.get("parked", 0),
                conflicts=counts.get("conflicts", 0),
                record_errors=counts.get("record_errors", 0),
                error=row["error"],
            )
        )
    return tuple(lines)


def _converted(lead: Lead, statuses: frozenset[str]) -> bool:
    """Converted: IsConverted, or a converted status (`statuses` casefolded, as the episodes compare)."""
    return lead.is_converted or (lead.status is not None and lead.status.strip().casefold() in statuses)


def _verdict(rate: float, target: float) -> Verdict:
    if math.isclose(rate, target, abs_tol=1e-9):
        return "at"
    return "below" if rate < target else "above"


def _rules(state: StateDB, target: float, converted: frozenset[str] = _CONVERTED) -> tuple[RuleLine, ...]:
    tally: defaultdict[str, Counter[str]] = defaultdict(Counter)
    for _, raw, _ in state.iter_sf("Lead"):
        try:
            lead = parse_lead(json.loads(raw))
        except RecordError:
            continue
        if not lead.routing_rule:
            continue
        counts = tally[lead.routing_rule]
        counts["created" if (lead.sync_key or "").startswith(_CREATED_PREFIX) else "inbound"] += 1
        counts["converted"] += _converted(lead, converted)
    lines = []
    for rule, counts in sorted(tally.items()):
        leads = counts["created"] + counts["inbound"]
        rate = counts["converted"] / leads
        lines.append(
            RuleLine(
                rule=rule,
                leads=leads,
                created=counts["created"],
                inbound=counts["inbound"],
                converted=counts["converted"],
                conversion_rate=round(rate, 4),
                target=target,
                vs_target=_verdict(rate, target),
            )
        )
    return tuple(lines)


def _pools(configured: Iterable[Pool], state: StateDB) -> tuple[PoolLine, ...]:
    by_key = {pool.key: pool for pool in configured}
    drawn: defaultdict[str, list[OwnerChoice]] = defaultdict(list)
    for choice in state.assignments_like(""):  # every owner chosen, newest first
        drawn[choice.pool].append(choice)
    keys = [*by_key, *sorted(set(drawn) - set(by_key))]
    return tuple(_pool(key, by_key.get(key), drawn[key]) for key in keys)


def _pool(key: str, pool: Pool | None, choices: Sequence[OwnerChoice]) -> PoolLine:
    assigned: Counter[str] = Counter()
    names: dict[str, str] = {}
    skipped: Counter[str] = Counter()
    reasons: dict[str, str] = {}
    fallback = 0
    for choice in choices:
        if choice.fallback or choice.user_id is None:  # a draw not from the pool's members
            fallback += 1
        else:
            assigned[choice.user_id] += 1
            names.setdefault(choice.user_id, choice.name)
        for user, why in choice.skipped.items():
            skipped[user] += 1
            reasons.setdefault(user, why)
    members = pool.members if pool is not None else ()
    total = sum(assigned.values())
    weights = sum(member.weight for member in members)

    def line(user_id: str, name: str, weight: int, membership: Membership) -> MemberLine:
        share = total * weight / weights if weights else 0.0
        return MemberLine(
            user_id=user_id,
            name=name,
            weight=weight,
            membership=membership,
            assigned=assigned[user_id],
            fair_share=round(share, 2),
            deviation=round(assigned[user_id] - share, 2),
            skipped=skipped[user_id],
            skip_reason=reasons.get(user_id),
        )

    lines = [line(m.user_id, m.name, m.weight, "active" if m.active else "paused") for m in members]
    listed = {member.user_id for member in members}
    for user_id in sorted((set(assigned) | set(skipped)) - listed):
        lines.append(line(user_id, names.get(user_id, user_id), 0, "removed"))
    return PoolLine(key, total, fallback, tuple(lines))


# -- rendering -----------------------------------------------------------------------------------


def _percent(value: float) -> str:
    return f"{value:.1%}"


def _moment(stamp: str) -> str:
    """An ISO timestamp as people read it (UTC, to the second)."""
    return datetime.fromisoformat(stamp.replace("Z", "+00:00")).strftime("%Y-%m-%d %H:%M:%S")


def _cell(value: Any) -> str:
    return "" if value is None else str(value)


# Columns shown to people (table, html): a header and how to write a line's cell.
_RUN_COLUMNS: tuple[tuple[str, Callable[[RunLine], str]], ...] = (
    ("run", lambda r: str(r.run)),
    ("started (UTC)", lambda r: _moment(r.started_at)),
    ("seconds", lambda r: _cell(r.seconds)),
    ("status", lambda r: r.status),
    ("accounts read", lambda r: str(r.accounts_read)),
    ("salesforce read", lambda r: str(r.salesforce_read)),
    ("planned", lambda r: str(r.planned)),
    ("vitally PUTs", lambda r: str(r.vitally_puts)),
    ("salesforce write calls", lambda r: str(r.salesforce_writes)),
    ("applied", lambda r: str(r.applied)),
    ("failed", lambda r: str(r.failed)),
    ("parked", lambda r: str(r.parked)),
    ("conflicts", lambda r: str(r.conflicts)),
    ("malformed", lambda r: str(r.record_errors)),
    ("error", lambda r: _cell(r.error)),
)
_RULE_COLUMNS: tuple[tuple[str, Callable[[RuleLine], str]], ...] = (
    ("rule", lambda r: r.rule),
    ("leads", lambda r: str(r.leads)),
    ("created", lambda r: str(r.created)),
    ("inbound", lambda r: str(r.inbound)),
    ("converted", lambda r: str(r.converted)),
    ("conversion", lambda r: _percent(r.conversion_rate)),
    ("target", lambda r: _percent(r.target)),
    ("vs target", lambda r: r.vs_target),
)
_MEMBER_COLUMNS: tuple[tuple[str, Callable[[MemberLine], str]], ...] = (
    ("member", lambda m: m.name),
    ("user id", lambda m: m.user_id),
    ("weight", lambda m: str(m.weight)),
    ("membership", lambda m: m.membership),
    ("assigned", lambda m: str(m.assigned)),
    ("fair share", lambda m: f"{m.fair_share:.2f}"),
    ("deviation", lambda m: f"{m.deviation:+.2f}"),
    ("skipped", lambda m: str(m.skipped)),
    ("latest skip reason", lambda m: _cell(m.skip_reason)),
)


def _runs_title(report: Report) -> str:
    return f"Run history (last {len(report.runs)})"


def _rules_title(report: Report) -> str:
    return f"Leads and conversion per routing rule (target {_percent(report.conversion_target)})"


def _pool_title(pool: PoolLine) -> str:
    return f"Round robin {pool.pool}: {pool.assigned} assigned, {pool.fallback} to the fallback queue"


def _rich_table(title: str, columns: Sequence[tuple[str, Callable[[Any], str]]], lines: Sequence[Any]) -> Table:
    from rich.table import Table

    table = Table(title=title)
    for header, _ in columns:
        table.add_column(header, overflow="fold")
    for line in lines:
        table.add_row(*(cell(show(line)) for _, show in columns))  # names are data, never rich markup
    return table


def _render_table(report: Report, sections: Sequence[Section], out: TextIO) -> None:
    from rich.console import Console

    console = Console(file=out, width=max(180, Console(file=out).width))
    if "runs" in sections:
        console.print(_rich_table(_runs_title(report), _RUN_COLUMNS, report.runs))
    if "rules" in sections:
        console.print(_rich_table(_rules_title(report), _RULE_COLUMNS, report.rules))
    if "pools" in sections:
        for pool in report.pools:
            console.print(_rich_table(_pool_title(pool), _MEMBER_COLUMNS, pool.members))


def _csv_rows(report: Report, sections: Sequence[Section]) -> tuple[list[str], list[dict[str, Any]]]:
    """The csv's header (`section`, then each chosen section's columns) and its rows."""
    columns: dict[Section, list[str]] = {
        "runs": [f.name for f in fields(RunLine)],
        "rules": [f.name for f in fields(RuleLine)],
        "pools": ["pool", "pool_assigned", "pool_fallback", *(f.name for f in fields(MemberLine))],
    }
    header = ["section", *(name for section in sections for name in columns[section])]
    rows: list[dict[str, Any]] = []
    for section in sections:
        if section == "pools":
            rows += [
                {
                    "section": section,
                    "pool": p.pool,
                    "pool_assigned": p.assigned,
                    "pool_fallback": p.fallback,
                    **asdict(m),
                }
                for p in report.pools
                for m in p.members
            ]
        else:
            rows += [{"section": section, **asdict(line)} for line in getattr(report, section)]
    return header, rows


def _render_csv(report: Report, sections: Sequence[Section], out: TextIO) -> None:
    header, rows = _csv_rows(report, sections)
    writer = csv.DictWriter(out, fieldnames=header, lineterminator="\n")
    writer.writeheader()
    writer.writerows({key: csv_cell(value) for key, value in row.items()} for row in rows)


_CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: #222; margin: 0;
       background: #fafafa; }
main { max-width: 1100px; margin: 0 auto; padding: 24px; }
h1 { font-size: 24px; margin: 0 0 4px; }
h2 { font-size: 19px; margin: 32px 0 8px; border-bottom: 1px solid #ddd; padding-bottom: 4px; }
h3 { font-size: 15px; margin: 20px 0 6px; }
p.meta, p.note { color: #555; margin: 4px 0 12px; }
figure { margin: 8px 0; overflow-x: auto; }
.scroll { overflow-x: auto; }
table { border-collapse: collapse; font-size: 13px; background: #fff; margin: 6px 0 12px; }
th, td { border: 1px solid #e0e0e0; padding: 4px 8px; text-align: left; white-space: nowrap; }
th { background: #f0f0f0; font-weight: 600; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
td.below { color: #b22222; font-weight: 600; }
td.at, td.above { color: #2e7d32; font-weight: 600; }
"""
_BELOW, _MET = "#d9534f", "#5cb85c"
_ASSIGNED, _SHARE = "#4c78a8", "#b0b0b0"
_NUMERIC = frozenset(
    {
        *("run", "seconds", "accounts read", "salesforce read", "planned", "vitally PUTs", "salesforce write calls"),
        *("applied", "failed", "parked", "conflicts", "malformed"),
        *("leads", "created", "inbound", "converted", "conversion", "target"),
        *("weight", "assigned", "fair share", "deviation", "skipped"),
    }
)  # html columns aligned right


def _html_table(columns: Sequence[tuple[str, Callable[[Any], str]]], lines: Sequence[Any]) -> str:
    head = "".join(f"<th>{escape(header)}</th>" for header, _ in columns)
    body = []
    for line in lines:
        cells = []
        for header, show in columns:
            text = printable(show(line))
            # Numbers align right; a rule's verdict is coloured by its value (below, at, above).
            kind = "num" if header in _NUMERIC else text if header == "vs target" else None
            cells.append(f"<td>{escape(text)}</td>" if kind is None else f'<td class="{kind}">{escape(text)}</td>')
        body.append(f"<tr>{''.join(cells)}</tr>")
    return f'<div class="scroll"><table><thead><tr>{head}</tr></thead><tbody>{"".join(body)}</tbody></table></div>'


def _html_rules(report: Report) -> list[str]:
    target = report.conversion_target
    parts = [f"<h2>{escape(_rules_title(report))}</h2>"]
    if not report.rules:
        return [*parts, '<p class="note">No lead in the Salesforce mirror carries a routing rule yet.</p>']
    bars = [
        Bar(
            printable(rule.rule),
            rule.conversion_rate,
            f"{_percent(rule.conversion_rate)} ({rule.converted}/{rule.leads})",
            _BELOW if rule.vs_target == "below" else _MET,
        )
        for rule in report.rules
    ]
    chart = bar_chart(
        bars,
        title="Conversion per routing rule",
        fmt=lambda tick: f"{tick:.0%}",
        target=target,
        target_label=f"target {_percent(target)}",
    )
    return [*parts, f"<figure>{chart}</figure>", _html_table(_RULE_COLUMNS, report.rules)]


def _html_pools(report: Report) -> list[str]:
    parts = [
        "<h2>Round robin: assigned vs fair share</h2>",
        "<p class=\"note\">Fair share = the pool's total × the member's weight / the sum of the members' "
        "weights, paused members included; <em>skipped</em> counts the draws that passed a member over.</p>",
    ]
    if not report.pools:
        return [*parts, '<p class="note">No round-robin pool is configured, and no owner was drawn.</p>']
    for pool in report.pools:
        names = [printable(member.name) for member in pool.members]
        chart = grouped_bar_chart(
            names,
            [
                Series("assigned", tuple(float(m.assigned) for m in pool.members), _ASSIGNED),
                Series("fair share", tuple(m.fair_share for m in pool.members), _SHARE),
            ],
            title=f"{pool.pool}: assigned vs fair share",
        )
        parts += [f"<h3>{escape(_pool_title(pool))}</h3>", f"<figure>{chart}</figure>"]
        parts.append(_html_table(_MEMBER_COLUMNS, pool.members))
    return parts


def _render_html(report: Report, sections: Sequence[Section], out: TextIO) -> None:
    meta = "No run recorded yet."
    if report.runs:
        meta = f"As of run {report.runs[0].run}, started {_moment(report.runs[0].started_at)} UTC."
    body = ["<h1>crm-sync report</h1>", f'<p class="meta">{escape(meta)}</p>']
    if "runs" in sections:
        body += [f"<h2>{escape(_runs_title(report))}</h2>", _html_table(_RUN_COLUMNS, report.runs)]
    if "rules" in sections:
        body += _html_rules(report)
    if "pools" in sections:
        body += _html_pools(report)
    out.write(
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>crm-sync report</title>\n<style>{_CSS}</style>\n</head>\n<body>\n<main>\n"
        + "\n".join(body)
        + "\n</main>\n</body>\n</html>\n"
    )


def _render_json(report: Report, sections: Sequence[Section], out: TextIO) -> None:
    # One line: parses whole (`json.loads`) and as JSON lines, like every other `--format json`.
    out.write(json_line(report.as_json(sections)) + "\n")


_RENDERERS: Mapping[ReportFormat, Callable[[Report, Sequence[Section], TextIO], None]] = {
    "table": _render_table,
    "json": _render_json,
    "csv": _render_csv,
    "html": _render_html,
}


def render_report(report: Report, fmt: ReportFormat, out: TextIO, sections: Sequence[Section] = SECTIONS) -> None:
    """Write the chosen sections of `report` in `fmt` to `out`."""
    _RENDERERS[fmt](report, sections, out)


def save_report(report: Report, fmt: ReportFormat, path: Path, sections: Sequence[Section] = SECTIONS) -> None:
    """Write the report to `path` whole (rendered first, so a failure leaves no half file),
    readable by its owner only (0600, an existing file's mode tightened too: the report names
    people and their leads); a path that cannot be written is a usage error (`--output: …`,
    exit 2)."""
    text = io.StringIO()
    render_report(report, fmt, text, sections)
    try:
        handle = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(handle, "w", encoding="utf-8") as out:
            if stat.S_ISREG(os.fstat(handle).st_mode):  # not /dev/stdout or a pipe
                os.fchmod(handle, 0o600)
            out.write(text.getvalue())
    except OSError as exc:
        raise ConfigError([f"--output {path}: {exc.strerror or exc}"]) from None
