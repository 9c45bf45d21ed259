"""Cursor pagination as an object: a token, a finished flag, and loop detection."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TypeVar

from core.errors import ContractError

__all__ = ["CursorPaginator"]

T = TypeVar("T")


class CursorPaginator:
    """Follows an opaque "next page" cursor until the service says there is none.

    `token` is the cursor for the next request (None for the first page), `finished` turns true
    once a page came back without a next cursor. A cursor seen before means the service would
    send us round in circles: `advance` raises `ContractError` instead of looping forever.
    """

    def __init__(self, start_token: str | None = None, *, system: str = "") -> None:
        self.token: str | None = start_token
        self.finished = False
        self.pages_read = 0
        self._system = system
        self._seen: set[str] = set() if start_token is None else {start_token}

    def advance(self, next_token: str | None) -> None:
        """Record the cursor returned with the page just read (None or "" = that was the last)."""
        if self.finished:
            raise ContractError("paginator advanced after the last page", system=self._system)
        self.pages_read += 1
        if not next_token:
            self.finished = True
            self.token = None
            return
        if next_token in self._seen:
            # Cursors are opaque and may be long: report where, not the value.
            raise ContractError(
                f"pagination loop: page {self.pages_read} returned a cursor already followed",
                system=self._system,
            )
        self._seen.add(next_token)
        self.token = next_token

    def pages(
        self, fetch: Callable[[str | None], tuple[Sequence[T], str | None]], *, ahead: bool = False
    ) -> Iterator[Sequence[T]]:
        """Lazily yield pages: `fetch(token)` returns one page's items and the next cursor.

        The next page is requested only when the consumer asks for it, so stopping early
        (an incremental read reaching its watermark) costs no extra request.

        With `ahead`, for a consumer that reads every page (a full read): the next page is
        requested, in a thread of its own, as soon as its cursor is known, while the consumer
        handles the page just yielded; the service prepares it and the answer travels meanwhile.
        The same requests in the same order, one at a time; a failure (the fetch's own error, or
        a cursor loop) surfaces where the consumer asks for that page, as without `ahead`. A
        consumer that stops early has cost at most the one page requested ahead, awaited before
        the generator closes, so no request outlives it.
        """
        if ahead:
            yield from self._pages_ahead(fetch)
            return
        while not self.finished:
            items, next_token = fetch(self.token)
            self.advance(next_token)
            yield items

    def _pages_ahead(self, fetch: Callable[[str | None], tuple[Sequence[T], str | None]]) -> Iterator[Sequence[T]]:
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="page-ahead") as fetcher:
            pending: Future[tuple[Sequence[T], str | None]] | None = None
            try:
                while not self.finished:
                    page = pending.result() if pending is not None else fetch(self.token)
                    pending = None
                    items, next_token = page
                    self.advance(next_token)
                    if not self.finished:
                        started = threading.Event()
                        pending = fetcher.submit(_signalled, started, fetch, self.token)
                        # Let the fetcher take the interpreter until its request is on the wire
                        # (it waits on the socket then): otherwise it waits for the consumer's
                        # next pause, and the service prepares nothing while the consumer works.
                        started.wait()
                    yield items
            finally:
                if pending is not None:
                    pending.cancel()  # not started yet: never sent; else the pool's exit awaits it


def _signalled(started: threading.Event, fetch: Callable[[str | None], T], token: str | None) -> T:
    started.set()
    return fetch(token)
