"""`report`: the run history, for people (table) and programs (json, csv)."""

from __future__ import annotations

import csv
import json
from datetime import datetime
from typing import TextIO

from rich.console import Console
from rich.table import Table

from state import StateDB

__all__ = ["run_history"]

_COUNTS = ("accounts_read", "planned", "applied", "failed", "parked", "conflicts", "record_errors")


def _seconds(started: str | None, finished: str | None) -> float | None:
    if not started or not finished:
        return None
    begin = datetime.fromisoformat(started.replace("Z", "+00:00"))
    end = datetime.fromisoformat(finished.replace("Z", "+00:00"))
    return round((end - begin).total_seconds(), 3)


def run_history(state: StateDB, fmt: str, limit: int, out: TextIO) -> None:
    runs = [r for r in state.runs(limit) if r["mode"] != "dry-run"]
    rows = [
        {
            "run": r["id"],
            "started_at": r["started_at"],
            "seconds": _seconds(r["started_at"], r["finished_at"]),
            "status": r["status"],
            **{name: r["counts"].get(name, 0) for name in _COUNTS},
            "error": r["error"],
        }
        for r in runs
    ]
    if fmt == "json":
        for row in rows:
            out.write(json.dumps(row) + "\n")
        return
    columns = ["run", "started_at", "seconds", "status", *_COUNTS, "error"]
    if fmt == "csv":
        writer = csv.DictWriter(out, fieldnames=columns, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
        return
    table = Table(title=f"Last {len(rows)} run(s)")
    for column in columns:
        table.add_column(column)
    for row in rows:
        table.add_row(*("" if row[c] is None else str(row[c]) for c in columns))
    Console(file=out, width=160).print(table)
