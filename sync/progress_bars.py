"""The progress bars `sync.progress.terminal_progress` draws on a terminal (rich): their columns
and the hook that moves them. A module of its own so that a run whose stderr is not a terminal
(a service, a cron job, a pipe) never imports rich: 25-30 ms of every CLI start."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TextIO

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    SpinnerColumn,
    Task,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)
from rich.text import Text

from sync.vocabulary import Progress as ProgressHook  # `sync.progress.ProgressHook`, the same type

__all__ = ["RateColumn", "RemainingColumn", "bar_hook", "bars"]


def _clock(seconds: float) -> str:
    whole = max(0, round(seconds))
    hours, rest = divmod(whole, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}"


class RemainingColumn(ProgressColumn):
    """`eta 0:12:04` at the phase's average rate since it began; `done` once it has ended; blank
    while the total is unknown (Vitally does not say how many accounts it holds)."""

    def render(self, task: Task) -> Text:
        if task.finished or task.stop_time is not None:
            return Text("done", style="green")
        elapsed = task.elapsed
        if task.total is None or not task.completed or not elapsed:
            return Text("")
        rate = task.completed / elapsed
        return Text(f"eta {_clock((task.total - task.completed) / rate)}", style="cyan")


class RateColumn(ProgressColumn):
    """Items a second, averaged over the phase (frozen once it has ended)."""

    def render(self, task: Task) -> Text:
        elapsed = task.elapsed
        if not task.completed or not elapsed:
            return Text("")
        return Text(f"{task.completed / elapsed:,.1f}/s", style="magenta")


def bar_hook(progress: Progress) -> ProgressHook:
    """A hook `(phase, done, total)` drawing one bar per phase on `progress`: the previous phase's
    bar stops when a new phase begins, a bar stops when its count reaches its total, and a call for
    a phase that has ended changes nothing."""
    bars: dict[str, TaskID] = {}
    counted: dict[TaskID, int] = {}
    ended: set[TaskID] = set()

    def end(task: TaskID) -> None:
        if task not in ended:
            ended.add(task)
            # Counted to the end: a phase whose total was unknown is complete at its count.
            progress.update(task, total=counted.get(task, 0))
            progress.stop_task(task)

    def hook(phase: str, done: int, total: int | None) -> None:
        if phase not in bars:
            for earlier in bars.values():
                end(earlier)  # the next phase has begun
            bars[phase] = progress.add_task(phase, total=total)
        task = bars[phase]
        if task in ended:
            return  # a late call does not restart its clock
        counted[task] = done
        progress.update(task, completed=done, total=total)
        if total is not None and done >= total:
            end(task)

    return hook


@contextmanager
def bars(err: TextIO) -> Iterator[ProgressHook]:
    """A `bar_hook` drawing on the terminal `err`."""
    with Progress(
        SpinnerColumn(finished_text="✓"),
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        RateColumn(),
        TimeElapsedColumn(),
        RemainingColumn(),
        console=Console(file=err),
        transient=True,
    ) as progress:
        yield bar_hook(progress)
