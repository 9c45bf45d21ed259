"""Shared fixtures: a live sandbox on an ephemeral port, seed builders, and the real clients.

`sandbox` is a started `Sandbox` holding `small_seed()`; tests that need more data add it with
`sandbox.load(seed.build())` or start their own with `make_sandbox(...)`. Clients are the real
ones the connectors use: `requests` for Vitally, simple-salesforce for Salesforce (through
`PlainHttpAdapter`, because simple-salesforce always builds `https://` URLs).
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import requests
import responses
from requests.adapters import HTTPAdapter
from simple_salesforce.api import Salesforce, SFType
from simple_salesforce.exceptions import SalesforceError

from sandbox.salesforce import case_safe_id
from sandbox.server import Sandbox, SandboxConfig

T0 = datetime(2026, 11, 22, 10, 0, tzinfo=UTC)
VITALLY_KEY = "test-key"
ROOT = Path(__file__).resolve().parent.parent
REAL_FIXTURES = Path(__file__).resolve().parent / "fixtures" / "real"


def pytest_configure(config: pytest.Config) -> None:
    """Refuse to test a compiled build older than its sources (`sync.compiled`): the tests would
    run the compiled modules, not the code under test."""
    from sync.compiled import stale

    problems = stale()
    if problems:
        lines = "\n".join(f"  - {problem}" for problem in problems)
        pytest.exit(f"the compiled build does not match its sources:\n{lines}\nrun `make compiled` or `make pure`", 2)


def real_fixture(name: str) -> Any:
    """A payload of `tests/fixtures/real/` (JSON parsed, anything else as text); where each one
    comes from is in that directory's SOURCES.md."""
    text = (REAL_FIXTURES / name).read_text(encoding="utf-8")
    return json.loads(text) if name.endswith(".json") else text


@contextlib.contextmanager
def child_process(command: list[str], *, deadline_s: float = 60) -> Iterator[subprocess.Popen[str]]:
    """`command` running from the repository root with its stdout piped (text), killed if it is
    still running when the block ends or after `deadline_s`: a child that ignores its stop fails
    the test instead of hanging the suite (`Popen`'s own `with` waits for it without a limit)."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True, cwd=ROOT, env=env)
    watchdog = threading.Timer(deadline_s, process.kill)
    watchdog.start()
    try:
        yield process
    finally:
        watchdog.cancel()
        if process.poll() is None:
            process.kill()
        process.wait()
        if process.stdout is not None:
            process.stdout.close()


class PlainHttpAdapter(HTTPAdapter):
    """Rewrites `https://` to `http://` (the sandbox is plain HTTP) and applies a default timeout.

    Neither requests nor simple-salesforce sets a timeout, so a hung sandbox would hang the suite.
    """

    def __init__(self, timeout: float = 10.0) -> None:
        super().__init__()
        self.timeout = timeout

    def send(  # type: ignore[override]
        self, request: requests.PreparedRequest, timeout: Any = None, **kwargs: Any
    ) -> requests.Response:
        if request.url and request.url.startswith("https://"):
            request.url = "http://" + request.url[len("https://") :]
        return super().send(request, timeout=self.timeout if timeout is None else timeout, **kwargs)


def plain_http_session(timeout: float = 10.0) -> requests.Session:
    """A session whose every request goes over plain HTTP with a default timeout."""
    session = requests.Session()
    adapter = PlainHttpAdapter(timeout)
    session.mount("https://", adapter)
    session.mount("http://", adapter)
    return session


def salesforce_client(url: str, token: str = "tok", timeout: float = 10.0) -> Salesforce:
    """simple-salesforce pointed at the sandbox with a bare session id."""
    return Salesforce(instance_url=url, session_id=token, session=plain_http_session(timeout))


def sobject(sf: Salesforce, name: str) -> SFType:
    """`sf.<name>` (e.g. `sf.Lead`), typed: simple-salesforce's `__getattr__` is declared to return
    its bulk handlers too, which only `bulk` and `bulk2` do."""
    found = getattr(sf, name)
    assert isinstance(found, SFType)
    return found


def sf_errors(error: SalesforceError) -> list[dict[str, Any]]:
    """The error array of a refused request. simple-salesforce hands the exception the decoded JSON
    body as `content` (declared `bytes`, which it is only when the body is not JSON)."""
    content: object = error.content
    assert isinstance(content, list), content
    return content


def sf_collection(
    sf: Salesforce, path: str, method: str, body: dict[str, Any], headers: dict[str, str] | None = None
) -> list[dict[str, Any]]:
    """The per-record results of an sObject Collections request (`composite/sobjects…`)."""
    answer = sf.restful(path, method=method, json=body, headers=headers or {})
    assert isinstance(answer, list), answer
    return answer


def sf_id(prefix: str, n: int) -> str:
    """A predictable 18-character Salesforce id for seed records."""
    return case_safe_id(f"{prefix}TEST{n:08d}")


class SeedBuilder:
    """Builds a seed in the services' own shapes with predictable ids and timestamps.

    Account i: id `acc_i`, externalId `org_i`, updatedAt T0 - i minutes (so newest-first
    order is acc_0, acc_1, ...). Salesforce user i: `sf_id("005", i)`; lead i: `sf_id("00Q", i)`.
    """

    def __init__(self) -> None:
        self.accounts_: list[dict[str, Any]] = []
        self.users_: list[dict[str, Any]] = []
        self.sf: dict[str, list[dict[str, Any]]] = {"Lead": [], "User": [], "Opportunity": [], "Account": []}

    def account(
        self,
        i: int,
        *,
        updated_at: datetime | None = None,
        traits: dict[str, Any] | None = None,
        segments: list[str] | None = None,
        churned: bool = False,
        mrr: float = 100.0,
    ) -> dict[str, Any]:
        updated = updated_at or T0 - timedelta(minutes=i)
        record = {
            "id": f"acc_{i}",
            "externalId": f"org_{i}",
            "name": f"Account {i}",
            "createdAt": (T0 - timedelta(days=400, minutes=i)).isoformat(),
            "updatedAt": updated.isoformat(),
            "mrr": mrr,
            "traits": dict(traits or {}),
            "accountOwnerId": None,
            "usersCount": 0,
            "churnedAt": (T0 - timedelta(days=3)).isoformat() if churned else None,
            "keyRoles": [],
            "segments": [{"id": f"seg_hand_{n}", "name": n} for n in segments or []],
        }
        self.accounts_.append(record)
        return record

    def accounts(self, n: int, start: int = 0) -> SeedBuilder:
        for i in range(start, start + n):
            self.account(i)
        return self

    def user(self, i: int, account_ids: list[str]) -> dict[str, Any]:
        record = {
            "id": f"usr_{i}",
            "externalId": f"person_{i}",
            "name": f"User {i}",
            "email": f"user{i}@example.com",
            "accountIds": account_ids,
            "createdAt": (T0 - timedelta(days=10)).isoformat(),
            "updatedAt": (T0 - timedelta(hours=i)).isoformat(),
            "traits": {},
        }
        self.users_.append(record)
        return record

    def sf_user(self, i: int, *, active: bool = True) -> str:
        self.sf["User"].append(
            {
                "Id": sf_id("005", i),
                "FirstName": "Rep",
                "LastName": str(i),
                "Email": f"rep{i}@corp.example",
                "IsActive": active,
            }
        )
        return sf_id("005", i)

    def lead(self, i: int, **fields: Any) -> dict[str, Any]:
        record = {
            "Id": sf_id("00Q", i),
            "FirstName": "Lee",
            "LastName": f"Lead{i}",
            "Company": f"Company {i}",
            "Email": f"lead{i}@company{i}.example",
            "Status": "Open - Not Contacted",
            "IsConverted": False,
            "CreatedDate": "2026-11-01T00:00:00.000+0000",
            "SystemModstamp": "2026-11-01T00:00:00.000+0000",
        }
        record.update(fields)
        self.sf["Lead"].append(record)
        return record

    def leads(self, n: int, start: int = 0) -> SeedBuilder:
        for i in range(start, start + n):
            self.lead(i)
        return self

    def build(self) -> dict[str, Any]:
        return {"vitally": {"accounts": self.accounts_, "users": self.users_}, "salesforce": self.sf}


def small_seed() -> dict[str, Any]:
    """5 accounts (acc_3 churned, acc_4 hand-set in "AM referral"), 3 users, 3 reps (rep 2
    inactive), 5 leads (lead 4 converted)."""
    b = SeedBuilder()
    b.accounts(3)
    b.account(3, churned=True)
    b.account(4, segments=["AM referral"])
    b.user(0, ["acc_0"])
    b.user(1, ["acc_0", "acc_1"])
    b.user(2, ["acc_2"])
    for i in range(3):
        b.sf_user(i, active=i != 2)
    b.leads(4)
    b.lead(4, IsConverted=True)
    return b.build()


@pytest.fixture
def rsps() -> Iterator[responses.RequestsMock]:
    """`responses` for an adapter unit test: every registered response must have been requested."""
    with responses.RequestsMock(assert_all_requests_are_fired=True) as mock:
        yield mock


@pytest.fixture
def sleeps() -> list[float]:
    """What an adapter handed to its `sleep`: pass `sleeps.append` and nothing really sleeps."""
    return []


@pytest.fixture
def seed() -> SeedBuilder:
    return SeedBuilder()


@pytest.fixture
def make_sandbox() -> Iterator[Callable[..., Sandbox]]:
    """Factory: `make_sandbox(seed, config=..., now=..., **config_settings)` → a started Sandbox."""
    started: list[Sandbox] = []

    def make(
        seed: dict[str, Any] | None = None,
        *,
        config: SandboxConfig | None = None,
        now: datetime | None = None,
        **settings: Any,
    ) -> Sandbox:
        sandbox = Sandbox(seed, config=(config or SandboxConfig()).updated(settings), now=now)
        started.append(sandbox.start())
        return sandbox

    yield make
    for sandbox in started:
        sandbox.stop()


@pytest.fixture
def sandbox(make_sandbox: Callable[..., Sandbox]) -> Sandbox:
    return make_sandbox(small_seed())


@pytest.fixture
def vitally(sandbox: Sandbox) -> requests.Session:
    """A requests session with Vitally's Basic auth (the key as user name)."""
    session = plain_http_session()
    session.auth = (VITALLY_KEY, "")
    return session


@pytest.fixture
def sf(sandbox: Sandbox) -> Salesforce:
    return salesforce_client(sandbox.url)
