"""The fewest API requests a sync cycle can make, by kind, and the call counters sorted into those kinds.

A cycle's requests fall into these kinds:

- `vitally_read`: pages of `GET /resources/accounts`, 100 accounts a page (Vitally's maximum),
  for the cycle's read and for the last looks before writing (below);
- `vitally_write`: `PUT /resources/accounts/:id`, one per account whose traits change, all its
  trait changes in one body (a PUT merges traits, so nothing forces a second one);
- `vitally_task`: `POST /resources/tasks`, one per task created (Vitally has no bulk endpoint);
- `sf_read`: SOQL pages (`query`, then `query/:locator`), up to 2,000 records a page, for the
  cycle's read and for the last looks before writing (below);
- `sf_write`: sObject Collections (`composite/sobjects...`), up to 200 records a request;
- `auth`: the Salesforce OAuth token request;
- `slack_post`: `POST chat.postMessage` or the incoming webhook, one per lead announced;
- `slack_read`: `conversations.history` pages, only after a post whose answer was lost;
- `zendesk_ticket`: `POST /api/v2/tickets`, one per support request;
- `zendesk_read`: `GET /api/v2/tickets?external_id=`, only after a create whose answer was lost;
- `other`: anything else, which a cycle never needs (its minimum is 0).

The minimum assumes the APIs as they are (apis.md): Vitally has no "updated since" filter, so an
incremental reader pages newest-first until it sees an account it already holds; a Salesforce
query always costs one request, even when it returns nothing, because that is how the reader
learns that nothing changed.

It includes, on purpose, the last looks that keep crm-sync from undoing a person's change made
after the cycle's read (`sync.freshness`): one page of Vitally's accounts list before every
`RECHECK_EVERY` (50) account PUTs (it holds the previous 50 PUTs' echoes: one page), or one before
the tasks of a step that writes no trait (a task on an account a person churned since the read is
not created), and one SOQL query before each collection of up to 200 lead updates. That is 2 % more Vitally requests and
one Salesforce read per update collection. Pure functions only: no I/O, no clock.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from math import ceil
from typing import Literal, get_args

__all__ = [
    "KINDS",
    "RECHECK_EVERY",
    "SF_COLLECTION_SIZE",
    "SF_PAGE_SIZE",
    "VITALLY_PAGE_SIZE",
    "Kind",
    "Workload",
    "batches",
    "by_kind",
    "classify",
    "incremental_accounts_read",
    "minimum",
    "pages",
]

Kind = Literal[
    "vitally_read",
    "vitally_write",
    "vitally_task",
    "sf_read",
    "sf_write",
    "auth",
    "slack_post",
    "slack_read",
    "zendesk_ticket",
    "zendesk_read",
    "other",
]
KINDS: tuple[Kind, ...] = get_args(Kind)

VITALLY_PAGE_SIZE = 100  # Vitally's largest `limit`
SF_PAGE_SIZE = 2000  # records per SOQL page
SF_COLLECTION_SIZE = 200  # records per sObject Collections request
RECHECK_EVERY = 50  # Vitally account PUTs between two last looks at the accounts list

# `/services/data/v59.0/query/:locator` → `query/:locator`: the API version does not change the kind.
_SF_DATA = re.compile(r"/services/data/v[0-9.]+/(?P<rest>.*)\Z")


@dataclass(frozen=True)
class Workload:
    """What one cycle must move, counted in records, not requests.

    `accounts_read`: the Vitally accounts the reader must see (every account on a cold read;
    see `incremental_accounts_read` otherwise). `sf_read`: per polled Salesforce object, the
    records its query must return (0 for an object with no change: it still costs one query).
    `accounts_changed`: Vitally accounts whose traits change. `tasks`: Vitally tasks created.
    `sf_upserts` / `sf_updates`: Salesforce records created by upsert on an external id, and
    records updated by Id; `sf_upserts_unowned`: those of the upserts that carry no owner (their
    team has no pool for their region). `login`: the run logs in with OAuth client credentials (a one-off
    process does; a long-lived daemon's later cycles do not). `posts`: leads announced in Slack;
    `tickets`: Zendesk tickets created.
    """

    accounts_read: int
    sf_read: Mapping[str, int] = field(default_factory=dict)
    accounts_changed: int = 0
    tasks: int = 0
    sf_upserts: int = 0
    sf_updates: int = 0
    sf_upserts_unowned: int = 0
    login: bool = False
    posts: int = 0
    tickets: int = 0


def pages(records: int, page_size: int) -> int:
    """Requests to read `records` records in pages of `page_size`: at least one, because reading an
    empty (or unchanged) source still takes the request that says so."""
    return max(1, ceil(records / page_size))


def batches(records: int, batch_size: int) -> int:
    """Requests to write `records` records in batches of `batch_size`: none when nothing changes."""
    return ceil(records / batch_size)


def incremental_accounts_read(changed: int, total: int) -> int:
    """Accounts an incremental Vitally reader must see: every account changed since its last read,
    plus the first unchanged one, which is how it learns it reached its watermark (Vitally cannot
    filter by `updatedAt`). Never more than the `total` accounts listed."""
    return min(total, changed + 1)


def minimum(workload: Workload) -> dict[Kind, int]:
    """The fewest requests of each kind that carry `workload`.

    - `vitally_read`: ceil(accounts_read / 100), at least 1, + one last look per started run of
      50 changed accounts, or one for the tasks when no account changes;
    - `sf_read`: per object ceil(records / 2,000), at least 1 per object, + one last look per
      collection of lead updates;
    - `vitally_write`: one PUT per changed account; `vitally_task`: one POST per task;
    - `sf_write`: ceil(owned upserts / 200) + ceil(unowned upserts / 200) + ceil(updates / 200):
      upserts and updates are different endpoints, and `Sforce-Auto-Assign` holds for a whole
      request: a new lead with an owner needs FALSE (the assignment rule must not replace it), one
      without must go without it (with FALSE Salesforce gives it to the integration user);
    - `auth`: 1 when the run logs in, else 0; `slack_post`: one per post; `zendesk_ticket`: one per
      ticket; `slack_read`, `zendesk_read` and `other`: 0 (the look-ups follow only a lost answer).
    """
    return {
        "vitally_read": pages(workload.accounts_read, VITALLY_PAGE_SIZE)
        + max(batches(workload.accounts_changed, RECHECK_EVERY), min(workload.tasks, 1)),
        "vitally_write": workload.accounts_changed,
        "vitally_task": workload.tasks,
        "sf_read": sum(pages(records, SF_PAGE_SIZE) for records in workload.sf_read.values())
        + batches(workload.sf_updates, SF_COLLECTION_SIZE),
        "sf_write": batches(workload.sf_upserts - workload.sf_upserts_unowned, SF_COLLECTION_SIZE)
        + batches(workload.sf_upserts_unowned, SF_COLLECTION_SIZE)
        + batches(workload.sf_updates, SF_COLLECTION_SIZE),
        "auth": 1 if workload.login else 0,
        "slack_post": workload.posts,
        "slack_read": 0,
        "zendesk_ticket": workload.tickets,
        "zendesk_read": 0,
        "other": 0,
    }


def classify(system: str, route: str) -> Kind:
    """The kind of one counter route: `system` is `vitally`, `salesforce`, `slack` or `zendesk`, `route` is
    `METHOD path-template` as the sandbox counts it (`GET /resources/accounts`)."""
    method, _, path = route.partition(" ")
    if system == "vitally":
        if method == "GET" and path == "/resources/accounts":
            return "vitally_read"
        if method == "PUT" and path == "/resources/accounts/:id":
            return "vitally_write"
        if method == "POST" and path == "/resources/tasks":
            return "vitally_task"
        return "other"
    if system in ("slack", "zendesk"):
        return _outlet_kind(system, method, path)
    if system == "salesforce":
        if method == "POST" and path.rstrip("/") == "/services/oauth2/token":
            return "auth"
        match = _SF_DATA.match(path)
        rest = match.group("rest").rstrip("/") if match else ""
        if method == "GET" and rest in ("query", "query/:locator", "queryAll", "queryAll/:locator"):
            return "sf_read"
        if method in ("POST", "PATCH") and (rest == "composite/sobjects" or rest.startswith("composite/sobjects/")):
            return "sf_write"
    return "other"


def _outlet_kind(system: str, method: str, path: str) -> Kind:
    """Slack's and Zendesk's routes: posts and tickets, and the look-ups after a lost answer."""
    if system == "slack":
        if path.endswith("/conversations.history"):
            return "slack_read"
        return "slack_post" if method == "POST" else "other"
    if path.rstrip("/") == "/api/v2/tickets":
        return "zendesk_ticket" if method == "POST" else "zendesk_read"
    return "other"


def by_kind(counters: Mapping[str, Mapping[str, int]]) -> dict[Kind, int]:
    """Sandbox counters (`{"vitally": {route: n}, "salesforce": {route: n}, ...}`) summed by kind;
    every kind is present, zero when unused."""
    totals: dict[Kind, int] = dict.fromkeys(KINDS, 0)
    for system, routes in counters.items():
        for route, count in routes.items():
            totals[classify(system, route)] += count
    return totals
