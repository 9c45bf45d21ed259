"""bench/scenarios.py's `measure`, which every bench's peak RSS comes from: the memory of the
command and of every process it starts, summed (a cycle may classify demo requests in a worker
process: its memory is the command's too)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from support import bench_module

pytestmark = pytest.mark.slow  # starts Python processes and waits for them

# A process holding ~`mib` MiB for a moment (its pages touched, so resident).
_HOLD = "import time; block = bytearray({mib} * 1024 * 1024); time.sleep(0.6)"


def _script(tmp_path: Path, text: str) -> list[str]:
    path = tmp_path / "child.py"
    path.write_text(text)
    return [sys.executable, str(path)]


def test_measure_counts_the_processes_a_command_starts(tmp_path: Path) -> None:
    scenarios = bench_module("scenarios")
    alone = scenarios.measure(_script(tmp_path, _HOLD.format(mib=60)), cwd=tmp_path)
    # The same command, and a child of its own holding as much more: both are the command's.
    with_child = scenarios.measure(
        _script(
            tmp_path,
            "import subprocess, sys\n"
            f"child = subprocess.Popen([sys.executable, '-c', {_HOLD.format(mib=60)!r}])\n"
            + _HOLD.format(mib=60).replace("; ", "\n")
            + "\nchild.wait()\n",
        ),
        cwd=tmp_path,
    )
    assert alone.exit_code == with_child.exit_code == 0
    assert 60 <= alone.peak_rss_mib < 100, alone
    # The parent's ~60 MiB and the child's ~60 MiB, each with its own interpreter.
    assert with_child.peak_rss_mib >= alone.peak_rss_mib + 55, (alone, with_child)


def test_descendants_lists_children_and_grandchildren(tmp_path: Path) -> None:
    scenarios = bench_module("scenarios")
    grandchild = "import time; time.sleep(5)"
    child = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import subprocess, sys, time\n"
            f"p = subprocess.Popen([sys.executable, '-c', {grandchild!r}])\n"
            "print(p.pid, flush=True)\n"
            "p.wait()\n",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert child.stdout is not None
        grandchild_pid = int(child.stdout.readline())
        assert scenarios._descendants(child.pid) == [grandchild_pid]
    finally:
        subprocess.run(["pkill", "-P", str(child.pid)], check=False)
        child.wait(timeout=10)
