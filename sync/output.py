"""Rendering plans for people (table) and for programs (json lines, csv), per cli.md.

Every value comes from the services and is printed through `sync.safe`: the table shows it as
plain text (never markup) with control characters escaped, a CSV cell never runs as a formula, and
every JSON line is valid JSON."""

from __future__ import annotations

import csv
from collections.abc import Iterable
from typing import Any, Literal, TextIO

from rich.console import Console
from rich.table import Table

from state import PlannedWrite
from sync.safe import cell, csv_cell, json_line

__all__ = ["CSV_COLUMNS", "Format", "render_plan"]

Format = Literal["table", "json", "csv"]
CSV_COLUMNS = ("system", "op", "record", "account", "fields", "previous", "rule", "reason", "owner")


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, dict | list):
        return json_line(value, sort_keys=True)
    return str(value)


def _short(text: str, width: int = 48) -> str:
    """Long trait values (a routing reason) are cut in the table; json and csv keep them whole."""
    return text if len(text) <= width else text[: width - 1] + "…"


def render_plan(plan: Iterable[PlannedWrite], fmt: Format, out: TextIO) -> None:
    """Write one line per planned write (json, csv) or a table."""
    if fmt == "json":
        for write in plan:
            out.write(json_line(write.as_json()) + "\n")
        return
    if fmt == "csv":
        writer = csv.DictWriter(out, fieldnames=CSV_COLUMNS, lineterminator="\n")
        writer.writeheader()
        for write in plan:
            line = write.as_json()
            writer.writerow({column: csv_cell(_cell(line.get(column))) for column in CSV_COLUMNS})
        return
    writes = list(plan)
    table = Table(title=f"Plan: {len(writes)} change(s)", show_lines=False, expand=False)
    for column in ("system", "op", "record", "fields", "rule", "reason"):
        table.add_column(column, overflow="fold")
    for write in writes:
        line = write.as_json()
        fields = line["fields"]
        if "previous" in line:
            shown = ", ".join(
                f"{k}: {_short(_cell(line['previous'].get(k))) or '∅'} → {_short(_cell(v)) or '∅'}"
                for k, v in fields.items()
            )
        else:
            shown = _cell(fields)
        table.add_row(*map(cell, (write.system, write.op, write.record, shown, write.rule, write.reason)))
    Console(file=out, width=max(160, Console(file=out).width), soft_wrap=False).print(table)
