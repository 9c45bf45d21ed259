"""`rules/` and `core/` are pure: no network, no database (STYLE.md)."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

FORBIDDEN = {
    "requests",
    "simple_salesforce",
    "sqlite_utils",
    "sqlite3",
    "connectors",
    "state",
    "sync",
    "sandbox",
    "socket",
    "urllib",
}
ROOT = Path(__file__).resolve().parent.parent
PURE = [ROOT / "rules", ROOT / "core"]


def test_rules_sources_import_nothing_impure() -> None:
    offenders = []
    for path in (p for folder in PURE for p in folder.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            offenders += [f"{path.name}: {n}" for n in names if n.split(".")[0] in FORBIDDEN]
    assert offenders == []


@pytest.mark.slow
def test_importing_rules_loads_no_io_library() -> None:
    code = (
        "import sys, rules, core; "
        "bad = sorted(m for m in ('requests', 'simple_salesforce', 'sqlite_utils') if m in sys.modules); "
        "print(','.join(bad))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == ""
