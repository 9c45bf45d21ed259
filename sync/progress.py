"""Progress bars for interactive runs (rich, drawn by `sync.progress_bars`), on stderr and only on a
terminal: piped or logged output stays exactly the plan and the summary.

One bar per phase, with its count, its rate and, where the total is known, the time left at the
phase's rate so far. A phase ends when its count reaches its total or when the next phase begins:
its bar then stops (its clock and rate freeze) and shows the time it took."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TextIO

__all__ = ["ProgressHook", "terminal_progress"]

ProgressHook = Callable[[str, int, int | None], None]


def _quiet(phase: str, done: int, total: int | None) -> None:
    """Not on a terminal: say nothing."""


@contextmanager
def terminal_progress(err: TextIO) -> Iterator[ProgressHook]:
    """A `bar_hook` for `run_cycle(progress=...)` drawn on `err` (a counter where the total is not
    known, as for Vitally, which does not say how many accounts there are). When `err` is not a
    terminal the hook does nothing."""
    if not err.isatty():
        yield _quiet
        return
    from sync.progress_bars import bars  # rich, only for a terminal

    with bars(err) as hook:
        yield hook
