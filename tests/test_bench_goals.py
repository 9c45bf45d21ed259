"""bench/goals.py's running of another tree: the rule-set row (bench/rule_set.py) and the bytecode
each tree starts with.

The row once compared the baseline's script run over this tree's rules: a script's own directory
comes first on the path, so the baseline's `import rules` found this tree's editable install.
goals.py now runs this tree's script with the measured tree's packages first (PYTHONPATH); these
tests hold it to evaluating that tree's code, in both of the script's modes. Every CLI child the
benches time starts from its tree's bytecode, written as `pip install` writes it.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from support import bench_module, run_bench

pytestmark = pytest.mark.slow  # child processes that generate and evaluate a book


@pytest.mark.parametrize("context", ["mirror", "empty"])
def test_goals_reads_the_cpu_time_the_rule_set_bench_prints(context: str) -> None:
    printed = run_bench("rule_set.py", "--accounts", "300", "--repeat", "1", "--context", context, timeout=120)
    found = bench_module("goals")._EVALUATE.search(printed)
    assert found is not None, printed
    assert float(found.group(1)) >= 0.0
    skipped = int(printed.split("malformed skipped: ")[1].split()[0].replace(",", ""))
    # The empty mode keeps 5f2d409's book, malformed records and all; the mirror mode has none.
    assert (skipped > 0) == (context == "empty")


@pytest.mark.parametrize("context", ["mirror", "empty"])
def test_goals_times_the_rules_of_the_tree_it_is_given(tmp_path: Path, context: str) -> None:
    goals = bench_module("goals")
    tree = goals.export("HEAD", tmp_path / "tree")
    assert tree is not None
    rules = tree / "rules" / "evaluation.py"  # where `rules.evaluate_account` is defined
    source = rules.read_text()
    marker = "def evaluate_account("
    assert marker in source
    # A tree whose account rules refuse to run: timing it must fail, as timing this tree's rules
    # instead (the old bug) would not.
    rules.write_text(
        source + "\n\ndef _refuse(*args: object, **kwargs: object) -> None:\n"
        "    raise SystemExit('the measured tree ran')\n\n\nevaluate_account = _refuse\n"
    )
    with pytest.raises(subprocess.CalledProcessError) as failed:
        goals.rule_set_seconds(tree, 50, 1, context)
    assert "the measured tree ran" in failed.value.stderr
    rules.write_text(source)
    assert goals.rule_set_seconds(tree, 50, 1, context) >= 0.0


def test_the_benches_start_each_tree_with_the_bytecode_an_installed_crm_sync_has(tmp_path: Path) -> None:
    goals = bench_module("goals")  # imports bench/scenarios.py too
    tree = goals.export("HEAD", tmp_path / "tree")
    assert tree is not None
    assert not list(tree.rglob("*.pyc"))
    compiled = goals.compile_bytecode(tree)
    assert compiled == ["core", "rules", "connectors", "state", "sync", "sandbox"]
    for package in compiled:
        sources = {path.stem for path in (tree / package).glob("*.py")}
        cached = {path.name.split(".")[0] for path in (tree / package / "__pycache__").glob("*.pyc")}
        assert sources and sources <= cached, package


def test_goals_gives_each_new_figure_as_a_share_of_todays_measured_in_the_same_run() -> None:
    """The column that compares runs on different hours: the same tree's figures moved 39-60 %
    within a day on one machine, their ratio far less."""
    goals = bench_module("goals")
    assert goals._share(1.08, 33.66) == "3.2 %"
    assert goals._share(30.3, 48.3) == "62.7 %"
    assert goals._share(float("nan"), 33.66) == "–"  # a tree whose scenario bench failed
    assert goals._share(1.0, 0.0) == "–"
