"""When the clock alone may change a verdict: the day a cycle must judge an account again.

A rule reads the clock only as the rules' day (`now.date()`, or `now`'s month): it counts the
days or months from a date of the record to that day (or from that day to a date ahead) and
compares the count with a threshold of the policy. Each such comparison says here, as it is made,
the first day on which its outcome can differ (`changes_when_days_reach`,
`changes_when_months_reach`, `changes_on`). One count steps at an instant rather than at midnight:
a custom trigger's `days_since_created` (whole days of `now - created_at`), for which the trigger
says the instants between which its outcome holds (`holds_between`: the last and the next time the
count reaches a value its `when` compares it with, `rules.expressions.CompiledTrigger.clock_steps`).
A reason's text may count days too, but a plan writes a reason trait only when its rule or
recommendation changes (`rules.base.reason_gist`), so a text says nothing here. `watching(now)`
collects the earliest of them over one account's evaluation: `sync.incremental.Book` keeps the
account's judgement until that day and instant (or for good, when nothing was said), instead of
until the next midnight.

Outside `watching` every call here is a no-op (a lookup of a context variable): `explain`, the
rule set's bench and the tests judge without collecting anything. A comparison whose outcome can
no longer change (the count only grows, and is past the threshold) need not say anything, and one
that says a day too early only costs a judgement: the claim `tests/test_incremental.py` checks
is the other way, that nothing a plan reads changes before the day collected.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import date, datetime, timedelta

from rules.base import add_months

__all__ = [
    "Horizon",
    "changes_on",
    "changes_on_month",
    "changes_when_days_reach",
    "changes_when_month_shift_reaches",
    "changes_when_months_reach",
    "holds_between",
    "unwatched",
    "watching",
]


class Horizon:
    """What the clock alone may change of the verdicts watched since the last `clear`: the earliest
    day after `today` on which one may change (`day`; None: none depends on the rules' day), and the
    instants around `now` between which those reading a count that steps at an instant hold
    (`since`, `until`; None: no such bound)."""

    __slots__ = ("day", "now", "since", "today", "until")

    def __init__(self, now: datetime) -> None:
        self.now = now
        self.today = now.date()
        self.day: date | None = None
        self.since: datetime | None = None
        self.until: datetime | None = None

    def clear(self) -> None:
        """Start collecting afresh (for the next record a watch's caller judges)."""
        self.day = self.since = self.until = None

    def __repr__(self) -> str:
        return f"Horizon(now={self.now.isoformat()}, day={self.day}, since={self.since}, until={self.until})"


_WATCHED: ContextVar[Horizon | None] = ContextVar("rules_clock_horizon", default=None)


@contextmanager
def watching(now: datetime) -> Iterator[Horizon]:
    """Collect, over the rules run inside, the first day (in `now`'s zone) on which the clock alone
    may change one of their verdicts. Per context (a thread, an event's mini-cycle): nested or
    concurrent evaluations each collect their own."""
    horizon = Horizon(now)
    token = _WATCHED.set(horizon)
    try:
        yield horizon
    finally:
        _WATCHED.reset(token)


@contextmanager
def unwatched() -> Iterator[None]:
    """Run what is inside without collecting (a custom trigger's reason template: its text may read
    a date, and a text is no change to plan, `rules.base.reason_gist`); the watch goes on after."""
    token = _WATCHED.set(None)
    try:
        yield
    finally:
        _WATCHED.reset(token)


def changes_on(day: date) -> None:
    """A verdict being made may change when the rules' day reaches `day` (a day not after today
    is passed already: it says nothing)."""
    horizon = _WATCHED.get()
    if horizon is not None and day > horizon.today and (horizon.day is None or day < horizon.day):
        horizon.day = day


def changes_on_month(month: int) -> None:
    """A verdict may change on the first day of `month`, counted as `year * 12 + month` (`now.year *
    12 + now.month`: a count of whole months compared with a threshold)."""
    horizon = _WATCHED.get()
    if horizon is None:
        return
    year, index = divmod(month - 1, 12)
    if 1 <= year <= 9999:
        changes_on(date(year, index + 1, 1))


def holds_between(since: datetime | None, until: datetime | None) -> None:
    """A verdict being made reads a count that steps at instants (not at midnight): it holds from
    `since`, the last instant at or before now at which it could have changed, to `until`, the next
    one after now (None: no such instant). An instant that cannot be compared with `now` (one naive,
    the other aware) leaves no window at all: the verdict is judged again at every cycle."""
    horizon = _WATCHED.get()
    if horizon is None:
        return
    now = horizon.now
    for moment in (since, until):
        if moment is not None and (moment.tzinfo is None) != (now.tzinfo is None):
            horizon.since = horizon.until = now
            return
    if since is not None and since <= now and (horizon.since is None or since > horizon.since):
        horizon.since = since
    if until is not None and until > now and (horizon.until is None or until < horizon.until):
        horizon.until = until


def changes_when_days_reach(since: date, *counts: int) -> None:
    """A verdict compares the whole days from `since` to the rules' day (`(today - since).days`,
    negative while `since` is ahead) with thresholds: it may change on each day that count
    becomes one of `counts` (`days < 30` and `days >= 30` differ when it becomes 30; `days <= 14`
    when it becomes 15)."""
    horizon = _WATCHED.get()
    if horizon is None:
        return
    for count in counts:
        try:
            changes_on(since + timedelta(days=count))
        except OverflowError:  # beyond the calendar: never reached
            continue


def changes_when_months_reach(start: date, *counts: int) -> None:
    """A verdict compares the whole calendar months from `start` to the rules' day
    (`rules.base.months_between`) with thresholds: it may change on each day that count becomes
    one of `counts`, `add_months(start, count)` (the most months `n` with `add_months(start, n)` on
    or before the day: the count becomes `n` on that very day)."""
    horizon = _WATCHED.get()
    if horizon is None:
        return
    for count in counts:
        day = _add_months(start, count)
        if day is not None:
            changes_on(day)


def changes_when_month_shift_reaches(day: date, months: int) -> None:
    """A verdict compares `day` with the day `months` calendar months from the rules' day
    (`add_months(today, months)`, months ahead or, negative, ago): it may change on the first day
    `d` with `add_months(d, months) >= day`, from when `day <= add_months(d, months)` holds (and
    `day > add_months(d, months)` no longer does). A window's far end `add_months(today, -6) <= c`
    stops holding the day `add_months(d, -6) >= c + 1 day`."""
    horizon = _WATCHED.get()
    if horizon is None:
        return
    first = _add_months(day, -months)
    if first is None:
        return
    # add_months clamps to a month's last day, so the month shift of `first` may fall a few days
    # short of `day`; it never falls after it (the shift of a day is not after the day shifted).
    for _ in range(4):
        shifted = _add_months(first, months)
        if shifted is None or shifted >= day:
            break
        first += timedelta(days=1)
    changes_on(first)


def _add_months(day: date, months: int) -> date | None:
    """`rules.base.add_months`, None beyond the calendar (years 1 to 9999)."""
    year = (day.year * 12 + day.month - 1 + months) // 12
    return add_months(day, months) if 1 <= year <= 9999 else None
