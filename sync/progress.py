"""Progress bars for interactive runs (rich), on stderr and only on a terminal: piped or logged
output stays exactly the plan and the summary."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TextIO

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TaskID, TextColumn, TimeElapsedColumn

__all__ = ["ProgressHook", "terminal_progress"]

ProgressHook = Callable[[str, int, int | None], None]


def _quiet(phase: str, done: int, total: int | None) -> None:
    """Not on a terminal: say nothing."""


@contextmanager
def terminal_progress(err: TextIO) -> Iterator[ProgressHook]:
    """A hook `(phase, done, total)` for `run_cycle(progress=...)`: one bar per phase (a counter when
    the total is not known, as for Vitally, which does not say how many accounts there are).
    When `err` is not a terminal the hook does nothing."""
    if not err.isatty():
        yield _quiet
        return
    bars: dict[str, TaskID] = {}
    with Progress(
        SpinnerColumn(),
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=Console(file=err),
        transient=True,
    ) as progress:

        def hook(phase: str, done: int, total: int | None) -> None:
            if phase not in bars:
                bars[phase] = progress.add_task(phase, total=total)
            progress.update(bars[phase], completed=done, total=total)

        yield hook
