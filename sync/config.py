"""Typed configuration: read once, validated once, every problem reported together.

Every setting is declared once, with its default, a one-line doc and its limits
(`core.settings.setting`), on the frozen dataclass that uses it:

    [vitally]        connectors.vitally.VitallySettings
    [salesforce]     connectors.salesforce.SalesforceSettings
    [state] [sync] [daemon] [report]      StateSettings, SyncSettings, DaemonSettings, ReportSettings (here)
    [rules.*]        rules.policy (one dataclass per table; `order`, `countries`, `owner_roles` in [rules])
    [territories]    rules.policy.Territories
    [[pools]], [[rules.custom]]           PoolSettings, MemberSettings, CustomTriggerSettings (here)

One generic reader (`_Reader.section`) reads each table from its declaration: the field's type,
its limits, its pattern. Every number must be finite and within its limits, every key must be
declared (a typo anywhere is an error, with a suggestion), and every problem becomes one
`path: message` line of the one `ConfigError` this module raises. The rules that tie settings
together (a fallback among the owner options, a pool's region among the territories, a custom
trigger's expression) are checked after that, in the functions below. `sync.example` writes the
example config from the same declarations.

Secrets are never read from the TOML file: only from the environment or from a file that only
its owner can read. Against a loopback sandbox a missing secret falls back to a placeholder,
because the sandbox accepts any non-empty credential.
"""

from __future__ import annotations

import difflib
import functools
import math
import os
import re
import stat
import tomllib
from collections import abc
from collections.abc import Iterable, Mapping
from dataclasses import Field, dataclass, field, is_dataclass, replace
from pathlib import Path
from types import UnionType
from typing import Any, Literal, TypeVar, Union, get_args, get_origin, get_type_hints
from urllib.parse import urlparse

from connectors.llm import LLMSettings
from connectors.salesforce import FIELD_OBJECTS, SalesforceSettings
from connectors.slack import AnnounceSettings
from connectors.vitally import VitallySettings
from connectors.zendesk import ZendeskSettings
from core.countries import normalise_country
from core.errors import ConfigError
from core.records import DEFAULT_OWNER_FIELDS, DEFAULT_TRAIT_KEYS
from core.settings import REQUIRED, Secret, Setting, declared, default_of, section, setting
from core.sfid import case_safe_id
from rules import ALL_RULE_IDS
from rules.base import Team
from rules.demo import CLASSIFIERS
from rules.expressions import CompiledTrigger, CustomTrigger, ExpressionError, compile_trigger
from rules.policy import ROUTING_RULE_IDS, Policy, Territories
from rules.round_robin import Member, Pool
from sync.event_settings import EventSettings
from sync.notify import AlertSettings

__all__ = [
    "Config",
    "CustomTriggerSettings",
    "DaemonSettings",
    "MemberSettings",
    "OnConflict",
    "OnFirstSight",
    "PoolSettings",
    "ReportSettings",
    "StateSettings",
    "SyncSettings",
    "load_config",
    "packaged_example",
    "parse_config",
    "with_rules_from",
]

OnConflict = Literal["report", "overwrite"]
OnFirstSight = Literal["respect", "adopt"]
LoopbackHost = Literal["127.0.0.1", "localhost", "::1"]
# Every interface: only where the network around the process is private (a Kubernetes pod).
HealthHost = Literal["127.0.0.1", "localhost", "::1", "0.0.0.0", "::"]
S = TypeVar("S")

_LOOPBACK = set(get_args(LoopbackHost))


def _hints(cls: type) -> dict[str, Any]:
    """The field types of `cls`, resolved once (the loader asks for them at every table)."""
    return _resolved(cls)


@functools.cache
def _resolved(cls: type) -> dict[str, Any]:
    return get_type_hints(cls)


_PLACEHOLDER_SECRET = "sandbox-placeholder"
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")
_SHOWN = 60  # characters of a bad value quoted in a problem


# -- sync's own settings ---------------------------------------------------------------------------


@dataclass(frozen=True)
class StateSettings:
    """Where crm-sync keeps what it knows."""

    path: Path = setting(Path("crm-sync.db"), "The SQLite file holding the mirror, cursors, outbox and run history.")


@dataclass(frozen=True)
class SyncSettings:
    """What a cycle does about people's changes."""

    on_conflict: OnConflict = setting(
        "report", 'A value a person changed since crm-sync last wrote it: "report" (leave it) or "overwrite".'
    )
    on_first_sight: OnFirstSight = setting(
        "respect",
        'A value in a field crm-sync never wrote: "respect" (a conflict, left alone) or "adopt" (take it over).',
    )


@dataclass(frozen=True)
class DaemonSettings:
    """How often the daemon runs a cycle, and its /healthz and /metrics."""

    interval_seconds: float = setting(900, "Seconds between cycles.", minimum=1, maximum=86_400)
    health_host: HealthHost = setting(
        "127.0.0.1",
        '/healthz, /livez and /metrics while the daemon runs, on loopback ("0.0.0.0": every interface, '
        "only inside a private network such as a Kubernetes pod) ...",
    )
    health_port: int = setting(9465, "... on this port; 0 turns them off.", minimum=0, maximum=65_535)
    healthy_within_seconds: float | None = setting(
        None,
        "Between cycles /healthz answers 503 once the last successful cycle is older than this; unset: 3 intervals.",
        minimum=1,
        maximum=604_800,
        example=2700,
    )
    stalled_after_seconds: float = setting(
        900,
        "While a cycle runs, /healthz and /livez answer 503 once it has acknowledged no work for this long "
        "(a request's retries can take max_attempts x (timeout_seconds + max_wait_seconds) = 450 s by default).",
        minimum=1,
        maximum=86_400,
    )
    progress_log_seconds: float = setting(
        30,
        "Seconds between two `cycle_progress` log lines of a running cycle (each phase also logs its end).",
        minimum=1,
        maximum=3_600,
    )

    @property
    def healthy_within(self) -> float:
        """`healthy_within_seconds`, or three intervals when unset."""
        if self.healthy_within_seconds is None:
            return 3 * self.interval_seconds
        return self.healthy_within_seconds


@dataclass(frozen=True)
class ReportSettings:
    """The `report` command."""

    conversion_target: float = setting(
        0.2, "Each routing rule's lead conversion rate is shown against this target (0.2 = 20 %).", minimum=0, maximum=1
    )


@dataclass(frozen=True)
class MemberSettings:
    """One person of a `[[pools]]` entry's `members`."""

    user_id: str = setting(
        REQUIRED,
        "The Salesforce user id (15 or 18 characters; kept in its 18-character form, as Salesforce answers it).",
        pattern=r"005[A-Za-z0-9]{12}(?:[A-Za-z0-9]{3})?",
        hint="a Salesforce user id (005…, 15 or 18 characters)",
    )
    name: str = setting(REQUIRED, "The person's name.", pattern=r"(?s).*\S.*", hint="the person's name")
    weight: int = setting(1, "Their share of the pool's leads, relative to the others'.", minimum=1, maximum=1000)
    active: bool = setting(True, "false: paused (e.g. on leave); they keep their credit.")
    capacity: int | None = setting(
        None,
        "A soft cap of managed accounts (segment AM Managed, their email in the TAM key role); unset: the pool's.",
        minimum=0,
        maximum=1_000_000,
    )
    email: str | None = setting(None, "Their email, as in the TAM key role (counts their managed accounts).")


@dataclass(frozen=True)
class PoolSettings:
    """One `[[pools]]` entry: who receives leads for a team in a region."""

    team: Team = setting(
        REQUIRED, 'The team whose leads this pool receives: "TAE", "TAM", "CSM", "BDR" or "Onboarding".'
    )
    region: str = setting(REQUIRED, 'A region of [territories], or "*": the team\'s leads from regions without a pool.')
    fallback_owner: str | None = setting(
        None,
        "Required: the Salesforce queue (00G…) or user (005…) that gets the lead when nobody is eligible "
        "(without one, Salesforce would give it to the integration user).",
        pattern=r"(00G|005)[A-Za-z0-9]{12}(?:[A-Za-z0-9]{3})?",
        hint="a Salesforce queue (00G…) or user (005…) id, 15 or 18 characters",
        example="00G000000000001AAA",
    )
    fallback_queue: str | None = setting(
        None,
        "The older name of fallback_owner, for a queue.",
        pattern=r"00G[A-Za-z0-9]{12}(?:[A-Za-z0-9]{3})?",
        hint="a Salesforce queue id (00G…, 15 or 18 characters)",
    )
    capacity: int | None = setting(
        None, "Each member's capacity unless they set their own.", minimum=0, maximum=1_000_000
    )
    members: tuple[MemberSettings, ...] = setting((), "The people of the pool, in the order that breaks ties.")


@dataclass(frozen=True)
class CustomTriggerSettings:
    """One `[[rules.custom]]` entry: a routing rule written in the config."""

    id: str = setting(
        REQUIRED,
        "A new rule id, shown in plans, leads and reports.",
        pattern=r"[^\x00-\x1f\x7f]*\S[^\x00-\x1f\x7f]*",
        hint="one line of text",
    )
    team: Team = setting(REQUIRED, 'The team the rule routes to: "TAE", "TAM", "CSM", "BDR" or "Onboarding".')
    when: str = setting(REQUIRED, "A condition over the account.", pattern=r"(?s).*\S.*", hint="non-empty text")
    reason: str = setting(
        REQUIRED, "The decision's reason, with {variable} placeholders.", pattern=r"(?s).*\S.*", hint="non-empty text"
    )


@dataclass(frozen=True)
class Config:
    """Everything a command needs: one section of settings per table of the config file."""

    vitally: VitallySettings = section(VitallySettings, "The Vitally REST API.", toml="vitally")
    salesforce: SalesforceSettings = section(SalesforceSettings, "The Salesforce org.", toml="salesforce")
    state: StateSettings = section(StateSettings, "The state database.", toml="state")
    sync: SyncSettings = section(SyncSettings, "A cycle.", toml="sync")
    daemon: DaemonSettings = section(DaemonSettings, "The daemon.", toml="daemon")
    report: ReportSettings = section(ReportSettings, "The report.", toml="report")
    alerts: AlertSettings = section(AlertSettings, "Alerts from the daemon.", toml="alerts")
    events: EventSettings = section(EventSettings, "Webhooks that route a record within seconds.", toml="events")
    announcements: AnnounceSettings = section(AnnounceSettings, "New leads announced in Slack.", toml="announcements")
    zendesk: ZendeskSettings = section(ZendeskSettings, "Zendesk tickets for support requests.", toml="zendesk")
    llm: LLMSettings = section(LLMSettings, "The LLM triage of demo-form submissions.", toml="triage.llm")
    policy: Policy = section(Policy, "Every tunable of the rules.", toml="rules")
    source: Path | None = None
    custom_triggers: tuple[CompiledTrigger, ...] = ()
    # (team, region) -> pool; region "*" is a team's catch-all pool.
    pools: Mapping[tuple[str, str], Pool] = field(default_factory=dict)

    def pool_for(self, team: str, region: str) -> Pool | None:
        return self.pools.get((team, region)) or self.pools.get((team, "*"))

    # Shorthands for the settings most callers read.
    @property
    def state_path(self) -> Path:
        """`[state] path`."""
        return self.state.path

    @property
    def max_waits(self) -> dict[str, float]:
        """Each service's `max_wait_seconds`, by system: what caps the apply step's pause before it
        looks again after a write's lost answer."""
        return {"vitally": self.vitally.max_wait_seconds, "salesforce": self.salesforce.max_wait_seconds}

    @property
    def on_conflict(self) -> OnConflict:
        """`[sync] on_conflict`."""
        return self.sync.on_conflict

    @property
    def on_first_sight(self) -> OnFirstSight:
        """`[sync] on_first_sight`."""
        return self.sync.on_first_sight

    @property
    def interval_seconds(self) -> float:
        """`[daemon] interval_seconds`."""
        return self.daemon.interval_seconds

    @property
    def health_host(self) -> str:
        """`[daemon] health_host`."""
        return self.daemon.health_host

    @property
    def health_port(self) -> int:
        """`[daemon] health_port`."""
        return self.daemon.health_port

    @property
    def healthy_within_seconds(self) -> float:
        """`[daemon] healthy_within_seconds`, or three intervals when unset."""
        return self.daemon.healthy_within

    @property
    def stalled_after_seconds(self) -> float:
        """`[daemon] stalled_after_seconds`."""
        return self.daemon.stalled_after_seconds

    @property
    def conversion_target(self) -> float:
        """`[report] conversion_target`."""
        return self.report.conversion_target

    def with_state(self, path: Path) -> Config:
        """This config with the state database at `path` (`--state`, the demo's temporary copy)."""
        return replace(self, state=replace(self.state, path=path))


def _sections() -> dict[str, tuple[str, type]]:
    """Config field -> (TOML table, settings class) for every section read as it is declared."""
    hints = _hints(Config)
    return {f.name: (str(d.toml), hints[f.name]) for f, d in declared(Config) if f.name != "policy"}


def _policy_sections() -> dict[str, tuple[str, type]]:
    """Policy field -> (TOML table, policy class) for every `[rules.*]` table."""
    hints = _hints(Policy)
    return {f.name: (str(d.toml), hints[f.name]) for f, d in declared(Policy) if is_dataclass(hints[f.name])}


SECTIONS = _sections()
# Policy field -> the TOML table that tunes it ([territories] has a shape of its own).
_POLICY_SECTIONS = {name: path for name, (path, _) in _policy_sections().items() if name != "territories"}
_TOP_LEVEL = {*(path.split(".")[0] for path, _ in SECTIONS.values()), "rules", "territories", "pools"}


def packaged_example() -> Path:
    """The example config shipped inside the package (used when ./config.toml is absent)."""
    return Path(__file__).with_name("config.example.toml")


def example_against(url: str) -> Config:
    """The packaged example config with both services at `url` (a sandbox's address)."""
    base = load_config(packaged_example())
    return replace(
        base,
        vitally=replace(base.vitally, base_url=url),
        salesforce=replace(base.salesforce, instance_url=url),
    )


# -- reading ---------------------------------------------------------------------------------------

_BAD: Any = object()  # a value that could not be read; its problem is recorded
_ABSENT: Any = object()  # a key the file does not set: the declared default applies
_COUNTRY_LIST = Setting("The countries of a region (ISO codes or names).", countries=True)
_ARRAY_OF_TABLES = Setting("An array of tables.")


def _key(path: str, key: object) -> str:
    """`path.key`, quoting a key that is not a bare TOML key so that a problem stays one line."""
    text = str(key)
    shown = text if _BARE_KEY.fullmatch(text) else repr(text)[:_SHOWN]
    return f"{path}.{shown}" if path else shown


def _show(value: object) -> str:
    """A bad value as quoted in a problem: its repr, shortened."""
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) >= 10**15:
        return f"{'-' if value < 0 else ''}a {len(str(abs(value)))}-digit number"
    text = repr(value)
    return text if len(text) <= _SHOWN else text[: _SHOWN - 1] + "…"


def _printable(text: str) -> str:
    """A name from the file (a file name, a key) as shown in a problem: quoted if it holds
    anything a terminal would not print as it is."""
    return text if text.isprintable() else repr(text)[:_SHOWN]


def _one_line(problem: str) -> str:
    # A message built from text the file holds (a rule's expression error) must stay one line.
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in problem)


def _limit(value: float) -> str:
    return str(int(value)) if float(value).is_integer() and abs(value) < 1e15 else f"{value:g}"


def _choices(options: Iterable[object]) -> str:
    shown = [repr(option) for option in options]
    if len(shown) == 1:
        return shown[0]
    if len(shown) == 2:
        return f"{shown[0]} or {shown[1]}"
    return f"one of {', '.join(shown[:-1])} or {shown[-1]}"


def _optional(kind: Any) -> Any:
    """The X of `X | None`; `kind` itself when it is not optional."""
    if get_origin(kind) in (Union, UnionType):
        options = [a for a in get_args(kind) if a is not type(None)]
        if len(options) == 1:
            return options[0]
    return kind


def _declaration(owner: type, name: str) -> tuple[Field[Any], Setting]:
    return next((f, d) for f, d in declared(owner) if f.name == name)


def _keys(cls: type, path: str) -> dict[str, str]:
    """Field name -> its key in the table at `path`, for the fields that live there."""
    keys = {}
    for f, d in declared(cls):
        if d.toml is None:
            keys[f.name] = f.name
        elif d.toml.rpartition(".")[0] == path:
            keys[f.name] = d.toml.rpartition(".")[2]
    return keys


def _known_keys(cls: type, path: str) -> set[str]:
    """Every key the table at `path` may hold: a secret's `_env` and `_file` included (its own
    name too, so that it is refused as a secret rather than as a typo)."""
    known = set(_keys(cls, path).values())
    for f, d in declared(cls):
        if isinstance(d, Secret):
            known |= {f"{f.name}_env", f"{f.name}_file"}
    return known


class _Reader:
    """Typed access to a TOML document that records every problem instead of stopping."""

    def __init__(self, data: Mapping[str, Any]) -> None:
        self.data = data
        self.problems: list[str] = []

    def problem(self, path: str, message: str) -> None:
        self.problems.append(f"{path}: {message}")

    def table(self, path: str) -> Mapping[str, Any]:
        """The table at dotted `path` ({} when absent; a problem when it is not a table)."""
        node: Any = self.data
        for part in path.split("."):
            node = node.get(part, {}) if isinstance(node, Mapping) else None
            if not isinstance(node, Mapping):
                self.problem(path, f"expected a table, got {_show(node)}")
                return {}
        table: Mapping[str, Any] = node
        return table

    def unknown(self, path: str, table: Mapping[str, Any], known: Iterable[str], *, what: str = "setting") -> None:
        """A problem for every key of `table` that is not `known`, naming the closest known key."""
        names = sorted(known)
        for key in table:
            if key in names:
                continue
            close = difflib.get_close_matches(str(key), names, n=1)
            hint = f" (did you mean {close[0]}?)" if close else ""
            self.problem(_key(path, key), f"unknown {what}{hint}")

    # -- a table, as its dataclass declares it ----------------------------------------------------

    def section(self, path: str, cls: type[S], table: Mapping[str, Any] | None = None) -> S | None:
        """The settings dataclass `cls` read from the table at `path` (or `table`, an element of an
        array): each declared key by its type and limits, an absent key at its declared default.
        None when a required key is missing or bad (the problem is recorded)."""
        if table is None:
            table = self.table(path)
        self.unknown(path, table, _known_keys(cls, path))
        hints = _hints(cls)
        keys = _keys(cls, path)
        values: dict[str, Any] = {}
        complete = True
        for f, d in declared(cls):
            if isinstance(d, Secret):
                value = self._secret(path, table, f.name)
            elif f.name in keys:
                value = self._entry(path, table, keys[f.name], f, d, hints[f.name])
            else:
                continue  # it lives elsewhere in the file (`Setting.toml`)
            if value is _BAD:
                complete = complete and default_of(f) is not REQUIRED
            elif value is not _ABSENT:
                values[f.name] = value
        return cls(**values) if complete else None

    def _entry(self, path: str, table: Mapping[str, Any], key: str, f: Field[Any], d: Setting, kind: Any) -> Any:
        if key not in table:
            if default_of(f) is REQUIRED:
                self.problem(_key(path, key), f"missing ({d.doc})")
                return _BAD
            return _ABSENT
        value = self.value(_key(path, key), kind, d, table[key])
        if d.merge and isinstance(value, Mapping):
            return {**default_of(f), **value}
        return value

    def at(self, path: str, owner: type, name: str) -> Any:
        """The declared field `name` of `owner`, read from dotted `path`; its default when absent."""
        parent, _, key = path.rpartition(".")
        table = self.table(parent) if parent else self.data
        f, d = _declaration(owner, name)
        if key not in table:
            return default_of(f)
        value = self.value(path, _hints(owner)[name], d, table[key])
        return default_of(f) if value is _BAD else value

    def tables(self, path: str, value: Any, cls: type[S]) -> list[tuple[str, S]]:
        """An array of tables (`[[path]]`), each element read as `cls`; the elements that could
        not be read are left out (their problems are recorded)."""
        if not isinstance(value, list):
            self.problem(path, f"expected an array of tables ([[{path}]]), got {_show(value)}")
            return []
        found = []
        for index, entry in enumerate(value):
            where = f"{path}[{index}]"
            item = self.value(where, cls, _ARRAY_OF_TABLES, entry)
            if item is not _BAD:
                found.append((where, item))
        return found

    # -- a value, by its type ---------------------------------------------------------------------

    def value(self, path: str, kind: Any, d: Setting, value: Any) -> Any:
        """`value` as the type `kind`, within the limits of `d`; `_BAD` after recording why not."""
        kind = _optional(kind)
        origin = get_origin(kind)
        if origin is Literal:
            return self._choice(path, get_args(kind), value)
        if kind in (bool, int, float):
            return self._number(path, kind, d, value) if kind is not bool else self._bool(path, value)
        if kind is str:
            return self._text(path, d, value)
        if kind is Path:
            return self._path(path, value)
        if origin is tuple:
            return self._tuple(path, get_args(kind), d, value)
        if origin in (abc.Mapping, dict):
            return self._mapping(path, get_args(kind), d, value)
        if isinstance(kind, type) and is_dataclass(kind):
            return self._table(path, kind, value)
        raise TypeError(f"{path}: no reader for settings of type {kind!r}")  # a mistake in a declaration

    def _choice(self, path: str, options: tuple[Any, ...], value: Any) -> Any:
        if not any(type(value) is type(option) and value == option for option in options):
            self.problem(path, f"expected {_choices(options)}, got {_show(value)}")
            return _BAD
        return value

    def _bool(self, path: str, value: Any) -> Any:
        if not isinstance(value, bool):
            self.problem(path, f"expected true or false, got {_show(value)}")
            return _BAD
        return value

    def _number(self, path: str, kind: type, d: Setting, value: Any) -> Any:
        whole = kind is int
        if isinstance(value, bool) or not isinstance(value, int | float) or (whole and isinstance(value, float)):
            self.problem(path, f"expected {'a whole number' if whole else 'a number'}, got {_show(value)}")
            return _BAD
        if isinstance(value, float) and not math.isfinite(value):
            self.problem(path, f"expected a finite number, got {_show(value)}")
            return _BAD
        # Compared before any conversion: an int too large for a float is just out of range.
        if d.minimum is not None and value < d.minimum:
            self.problem(path, f"must be ≥ {_limit(d.minimum)}, got {_show(value)}")
            return _BAD
        if d.maximum is not None and value > d.maximum:
            self.problem(path, f"must be ≤ {_limit(d.maximum)}, got {_show(value)}")
            return _BAD
        try:
            return kind(value)
        except OverflowError:
            self.problem(path, f"expected a finite number, got {_show(value)}")
            return _BAD

    def _text(self, path: str, d: Setting, value: Any) -> Any:
        if not isinstance(value, str):
            self.problem(path, f"expected a string, got {_show(value)}")
            return _BAD
        if d.countries:
            code = normalise_country(value)
            if code is None:
                self.problem(path.rpartition("[")[0] or path, f"unknown country {_show(value)}")
                return _BAD
            return code
        if d.pattern is not None and not re.fullmatch(d.pattern, value):
            self.problem(path, f"expected {d.hint or 'text matching ' + d.pattern}, got {_show(value)}")
            return _BAD
        return value

    def _path(self, path: str, value: Any) -> Any:
        if not isinstance(value, str) or not value or "\0" in value:
            self.problem(path, f"expected a file name, got {_show(value)}")
            return _BAD
        try:
            return Path(value).expanduser()
        except RuntimeError:  # "~someone" whose home directory is unknown
            self.problem(path, f"cannot expand {_show(value)}")
            return _BAD

    def _tuple(self, path: str, args: tuple[Any, ...], d: Setting, value: Any) -> Any:
        if not isinstance(value, list):
            self.problem(path, f"expected a list, got {_show(value)}")
            return _BAD
        if len(args) == 2 and args[1] is Ellipsis:
            kinds = [args[0]] * len(value)
        elif len(args) == len(value):
            kinds = list(args)
        else:
            self.problem(path, f"expected {len(args)} items, got {_show(value)}")
            return _BAD
        items = [self.value(f"{path}[{i}]", k, d, v) for i, (k, v) in enumerate(zip(kinds, value, strict=True))]
        return _BAD if any(item is _BAD for item in items) else tuple(items)

    def _mapping(self, path: str, args: tuple[Any, ...], d: Setting, value: Any) -> Any:
        if not isinstance(value, Mapping):
            self.problem(path, f"expected a table, got {_show(value)}")
            return _BAD
        entries = {str(k): self.value(_key(path, k), args[1], d, v) for k, v in value.items()}
        return _BAD if any(v is _BAD for v in entries.values()) else entries

    def _table(self, path: str, cls: type, value: Any) -> Any:
        if not isinstance(value, Mapping):
            self.problem(path, f"expected a table, got {_show(value)}")
            return _BAD
        found = self.section(path, cls, value)
        return _BAD if found is None else found

    # -- secrets ----------------------------------------------------------------------------------

    def _secret(self, path: str, table: Mapping[str, Any], key: str) -> Any:
        """The secret `key` from the variable named by `<key>_env` or the file named by
        `<key>_file`; `_ABSENT` when neither gives one. Never from the config file itself."""
        if key in table:
            self.problem(_key(path, key), f"secrets are not read from the config file; use {key}_env or {key}_file")
        env_name = self.env_name(path, table, key)
        if env_name is not None and os.environ.get(env_name):
            # Stripped as a file's is (a secret made from a file often ends in a line break).
            return self._clean_secret(_key(path, f"{key}_env"), os.environ[env_name].strip())
        file_name = table.get(f"{key}_file")
        if file_name is None:
            return _ABSENT
        if not isinstance(file_name, str) or not file_name or "\0" in file_name:
            self.problem(_key(path, f"{key}_file"), f"expected the name of a file, got {_show(file_name)}")
            return _ABSENT
        found = self._secret_file(_key(path, f"{key}_file"), file_name)
        return _ABSENT if found is None else found

    def env_name(self, path: str, table: Mapping[str, Any], key: str) -> str | None:
        """The environment variable `<key>_env` names, if it is a valid name."""
        name = table.get(f"{key}_env")
        if name is None:
            return None
        if not isinstance(name, str) or not _ENV_NAME.fullmatch(name):
            self.problem(_key(path, f"{key}_env"), f"expected the name of an environment variable, got {_show(name)}")
            return None
        return name

    def _clean_secret(self, path: str, value: str) -> Any:
        """`value`, or `_ABSENT` with a problem when it is empty or holds a control character
        (a line break inside it): no HTTP header could carry it. The value is never shown."""
        if not value:
            self.problem(path, "the secret is empty (only whitespace)")
            return _ABSENT
        if any(ord(c) < 32 or ord(c) == 127 for c in value):
            self.problem(path, "the secret holds a line break or another control character")
            return _ABSENT
        return value

    def _secret_file(self, path: str, name: str) -> str | None:
        try:
            file = Path(name).expanduser()
            info = file.stat()
            if info.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
                self.problem(path, f"{_printable(str(file))} must be readable by its owner only (chmod 600)")
                return None
            value = file.read_text(encoding="utf-8").strip()
        except RuntimeError:
            self.problem(path, f"cannot expand {_show(name)}")
            return None
        except OSError as exc:
            self.problem(path, f"cannot read {_printable(name)}: {exc.strerror or type(exc).__name__}")
            return None
        except UnicodeDecodeError:
            self.problem(path, f"{_printable(name)} is not UTF-8 text")
            return None
        if not value:
            self.problem(path, f"{_printable(name)} is empty")
            return None
        cleaned = self._clean_secret(path, value)
        return None if cleaned is _ABSENT else str(cleaned)


# -- what ties settings together ---------------------------------------------------------------------


def _credentials(reader: _Reader, path: str, settings: S, url: str) -> S:
    """`settings` with each required secret that was not found replaced by the sandbox's
    placeholder when `url` is on loopback, or a problem naming where it was looked for."""
    table = reader.table(path)
    found = {}
    for f, d in declared(type(settings)):
        if not isinstance(d, Secret) or not d.required or getattr(settings, f.name):
            continue
        if d.unless is not None and getattr(settings, d.unless):
            continue
        if urlparse(url).hostname in _LOOPBACK:
            found[f.name] = _PLACEHOLDER_SECRET
            continue
        env_name = table.get(f"{f.name}_env")
        where = f"environment variable {env_name}" if isinstance(env_name, str) else f"{f.name}_env or {f.name}_file"
        reader.problem(_key(path, f.name), f"no secret found (set {where})")
    return replace(settings, **found)  # type: ignore[type-var]


def _services(reader: _Reader, sections: dict[str, Any]) -> None:
    vitally, salesforce = sections["vitally"], sections["salesforce"]
    if (salesforce.client_id is None) != (salesforce.client_secret is None):
        reader.problem("salesforce", "client_id and client_secret go together")
    sections["vitally"] = _credentials(reader, "vitally", vitally, vitally.base_url)
    sections["salesforce"] = _credentials(reader, "salesforce", salesforce, salesforce.instance_url)
    for canonical in set(vitally.trait_keys) - set(DEFAULT_TRAIT_KEYS):
        reader.problem(_key("vitally.traits", canonical), "not a field of the data model")
    for attribute in sorted(set(vitally.owner_fields) - set(DEFAULT_OWNER_FIELDS)):
        known = ", ".join(DEFAULT_OWNER_FIELDS)
        reader.problem(_key("vitally.owner_fields", attribute), f"not an owner attribute of Vitally ({known})")
    _field_names(reader, salesforce.fields)


def _field_names(reader: _Reader, fields: Mapping[str, str]) -> None:
    """`[salesforce.fields]`: only crm-sync's custom fields, and no two on one object under one name."""
    taken: dict[tuple[str, str], str] = {}
    for canonical, name in fields.items():
        entry = FIELD_OBJECTS.get(canonical)
        if entry is None:
            reader.problem(_key("salesforce.fields", canonical), "not a field crm-sync reads or writes")
            continue
        other = taken.setdefault((entry[0], name.lower()), canonical)
        if other != canonical:
            reader.problem(_key("salesforce.fields", canonical), f"{entry[0]}.{name} is already {other}'s")


def _alerts(reader: _Reader, alerts: AlertSettings) -> None:
    """Each webhook URL must be https (http only to loopback, e.g. the sandbox's receiver). The
    problem never shows the URL: it is a secret."""
    for name in ("slack_webhook_url", "webhook_url"):
        url = getattr(alerts, name)
        if url is None:
            continue
        parts = urlparse(url)
        local = parts.scheme == "http" and parts.hostname in _LOOPBACK | {"localhost"}
        if not parts.hostname or not (parts.scheme == "https" or local):
            reader.problem(_key("alerts", name), "expected an https:// URL (http:// only on loopback); not shown")


_URL_SAFE = re.compile(r"[A-Za-z0-9._~-]{24,}")


def _events(reader: _Reader, events: EventSettings) -> None:
    """Each webhook secret: long enough, and spelled so it can sit in a URL's path as it is (the
    problem never shows it); Salesforce's needs the org id its messages must carry."""
    for name in ("vitally_secret", "salesforce_secret"):
        value = getattr(events, name)
        if value is not None and not _URL_SAFE.fullmatch(value):
            reader.problem(
                _key("events", name), "expected at least 24 letters, digits, '.', '_', '~' or '-' (not shown)"
            )
    if events.salesforce_secret is not None and events.salesforce_org_id is None:
        reader.problem("events.salesforce_org_id", "required with salesforce_secret (the org whose messages count)")


def _https(reader: _Reader, path: str, url: str | None, *, secret: bool) -> None:
    """`url` must be https (http only to loopback: the sandbox). A secret URL is never shown."""
    if url is None:
        return
    parts = urlparse(url)
    local = parts.scheme == "http" and parts.hostname in _LOOPBACK | {"localhost"}
    if not parts.hostname or not (parts.scheme == "https" or local):
        reader.problem(path, "expected an https:// URL (http:// only on loopback)" + ("; not shown" if secret else ""))


def _outlets(reader: _Reader, sections: dict[str, Any], policy: Policy) -> None:
    """Slack, Zendesk and the LLM: what each needs once it is used. Against a loopback URL (the
    sandbox) a missing credential is the sandbox's placeholder, as for the CRM services."""
    announce: AnnounceSettings = sections["announcements"]
    _https(reader, "announcements.webhook_url", announce.webhook_url, secret=True)
    _https(reader, "announcements.api_url", announce.api_url, secret=False)
    if announce.bot_token and not announce.channel:
        reader.problem("announcements.channel", "missing: chat.postMessage needs the channel's id")
    zendesk: ZendeskSettings = sections["zendesk"]
    if zendesk.url is not None:
        _https(reader, "zendesk.base_url", zendesk.url, secret=False)
        if not zendesk.email:
            reader.problem("zendesk.email", "missing: the agent whose API token crm-sync uses")
        if not zendesk.api_token and urlparse(zendesk.url).hostname in _LOOPBACK:
            sections["zendesk"] = replace(zendesk, api_token=_PLACEHOLDER_SECRET)
        elif not zendesk.api_token:
            reader.problem("zendesk.api_token", "no secret found (set api_token_env or api_token_file)")
    llm: LLMSettings = sections["llm"]
    if policy.demo.classifier == "llm":
        _https(reader, "triage.llm.base_url", llm.base_url, secret=False)
        if not llm.api_key and urlparse(llm.base_url).hostname not in _LOOPBACK:
            reader.problem("triage.llm.api_key", "no secret found (set api_key_env or api_key_file)")
    reader.unknown("triage", reader.table("triage"), {"llm"})


def _policy_section(reader: _Reader, path: str, cls: type[S]) -> S:
    """One `[rules.*]` table, with its fields that live elsewhere in the file (`Setting.toml`)."""
    found = reader.section(path, cls) or cls()
    moved = {
        f.name: reader.at(str(d.toml), cls, f.name)
        for f, d in declared(cls)
        if d.toml is not None and d.toml.rpartition(".")[0] != path
    }
    return replace(found, **moved)  # type: ignore[type-var]


def _territories(reader: _Reader) -> Territories:
    """[territories]: `default_region` and one list of countries per region, added to the built-in lists."""
    table = reader.table("territories")
    regions_field, _ = _declaration(Territories, "regions")
    regions = dict(default_of(regions_field))
    for region, countries in table.items():
        if region == "default_region":
            continue
        codes = reader.value(_key("territories", region), tuple[str, ...], _COUNTRY_LIST, countries)
        if codes is not _BAD:
            regions.update({code: str(region) for code in codes})
    return Territories(
        regions=regions, default_region=reader.at("territories.default_region", Territories, "default_region")
    )


def _policy(reader: _Reader) -> Policy:
    rules = reader.table("rules")
    tables = _policy_sections()
    own = {str(d.toml).split(".")[1] for f, d in declared(Policy) if f.name not in tables}
    subtables = {path.split(".")[1] for path in _POLICY_SECTIONS.values()}
    reader.unknown("rules", rules, {"custom", "order", *own, *subtables})
    reader.unknown("rules.countries", reader.table("rules.countries"), {"tier1", "tier2"})
    sections: dict[str, Any] = {
        name: _policy_section(reader, path, cls) for name, (path, cls) in tables.items() if name != "territories"
    }
    settings = {f.name: reader.at(str(d.toml), Policy, f.name) for f, d in declared(Policy) if f.name not in tables}
    # The score's country tiers are the ICP tiers unless [rules.scoring] names its own.
    scoring_table = reader.table("rules.scoring")
    scoring = sections["scoring"]
    sections["scoring"] = replace(
        scoring,
        tier1_countries=scoring.tier1_countries if "tier1_countries" in scoring_table else settings["tier1_countries"],
        tier2_countries=scoring.tier2_countries if "tier2_countries" in scoring_table else settings["tier2_countries"],
    )
    policy = Policy(**sections, **settings, territories=_territories(reader))
    _check_policy(reader, policy)
    return policy


def _check_policy(reader: _Reader, policy: Policy) -> None:
    allocation = policy.allocation
    for choice, fallback in allocation.fallbacks.items():
        if fallback not in allocation.owner_options:
            reader.problem(_key("rules.allocation.fallbacks", choice), f"{fallback!r} is not one of owner_options")
    if policy.product_led.mrr_min > policy.product_led.mrr_max:
        reader.problem("rules.product_led", "mrr_min must not exceed mrr_max")
    for rule_id in policy.routing.order:
        if rule_id not in ROUTING_RULE_IDS:
            known = ", ".join(ROUTING_RULE_IDS)
            reader.problem("rules.order", f"unknown routing rule {_show(rule_id)} (known: {known})")
    if policy.demo.classifier not in CLASSIFIERS:
        wanted = _choices(CLASSIFIERS)
        reader.problem("rules.demo.classifier", f"expected {wanted}, got {_show(policy.demo.classifier)}")


def _check_enabled(reader: _Reader, policy: Policy, custom: Iterable[CompiledTrigger]) -> None:
    """Every key of `[rules.enabled]` is a rule id: a typo must not leave a rule on unnoticed."""
    known = [*ALL_RULE_IDS, *(trigger.id for trigger in custom)]
    for rule in policy.enabled:
        if rule not in known:
            close = difflib.get_close_matches(rule, known, n=1)
            hint = f" (did you mean {close[0]}?)" if close else " (docs/rules.md lists every id)"
            reader.problem(_key("rules.enabled", rule), f"unknown rule{hint}")


def _custom_triggers(reader: _Reader, policy: Policy) -> tuple[CompiledTrigger, ...]:
    """`[[rules.custom]]` triggers, compiled once; a bad expression names the rule and position."""
    compiled: list[CompiledTrigger] = []
    seen: set[str] = set(ROUTING_RULE_IDS)
    entries = reader.table("rules").get("custom", [])
    for path, entry in reader.tables("rules.custom", entries, CustomTriggerSettings):
        if entry.id in seen:
            reader.problem(f"{path}.id", f"{_show(entry.id)} is already a rule id")
            continue
        seen.add(entry.id)
        trigger = CustomTrigger(id=entry.id, team=entry.team, when=entry.when, reason=entry.reason)
        try:
            compiled.append(compile_trigger(trigger, policy=policy))
        except ExpressionError as exc:
            reader.problem(path, str(exc))
    return tuple(compiled)


def _pools(reader: _Reader, territories: Territories) -> list[PoolSettings]:
    """`[[pools]]`: who receives leads for a (team, region), with weights, pauses and caps."""
    regions = {*territories.regions.values(), territories.default_region}
    known = f"one of {', '.join(sorted(regions))} or '*'"
    pools: dict[tuple[str, str], PoolSettings] = {}
    for path, pool in reader.tables("pools", reader.data.get("pools", []), PoolSettings):
        if pool.region != "*" and pool.region not in regions:
            reader.problem(f"{path}.region", f"expected {known}, got {_show(pool.region)}")
        elif (pool.team, pool.region) in pools:
            reader.problem(path, f"a pool for {pool.team}/{pool.region} is already defined")
        else:
            pools[(pool.team, pool.region)] = pool
        _fallback(reader, path, pool)
        seen: set[str] = set()
        for index, member in enumerate(pool.members):
            user = case_safe_id(member.user_id)  # its 15- and 18-character forms are one user
            if user in seen:
                reader.problem(f"{path}.members[{index}].user_id", f"{member.user_id} is already in this pool")
            seen.add(user)
    return list(pools.values())


def _fallback(reader: _Reader, path: str, pool: PoolSettings) -> None:
    """Every pool names its fallback owner (once): a lead nobody in the pool can take goes there,
    never silently to the integration user."""
    if pool.fallback_owner is None and pool.fallback_queue is None:
        reader.problem(
            f"{path}.fallback_owner",
            "missing: the queue (00G…) or user (005…) that gets the pool's lead when nobody is eligible",
        )
    elif pool.fallback_owner is not None and pool.fallback_queue is not None:
        reader.problem(f"{path}.fallback_queue", "give fallback_owner or its older name fallback_queue, not both")


def _pool(settings: PoolSettings) -> Pool:
    """The pool, its Salesforce ids in their 18-character form: the mirrored users' ids (whether
    one is active) and the OwnerIds Salesforce answers with are compared with them as text."""
    members = tuple(
        Member(
            case_safe_id(m.user_id),
            m.name,
            m.weight,
            m.active,
            settings.capacity if m.capacity is None else m.capacity,
            None if m.email is None else m.email.casefold(),
        )
        for m in settings.members
    )
    fallback = settings.fallback_owner or settings.fallback_queue
    return Pool(settings.team, settings.region, members, None if fallback is None else case_safe_id(fallback))


def parse_config(data: Mapping[str, Any], source: Path | None = None) -> Config:
    """The `Config` of a parsed TOML document, or `ConfigError` listing every problem."""
    reader = _Reader(data)
    reader.unknown("", data, _TOP_LEVEL, what="section")
    sections: dict[str, Any] = {name: reader.section(path, cls) or cls() for name, (path, cls) in SECTIONS.items()}
    _services(reader, sections)
    _alerts(reader, sections["alerts"])
    _events(reader, sections["events"])
    policy = _policy(reader)
    _outlets(reader, sections, policy)
    custom = _custom_triggers(reader, policy)
    _check_enabled(reader, policy, custom)
    pools = _pools(reader, policy.territories)
    if reader.problems:
        # A table read by several settings reports its own problem once.
        raise ConfigError([_one_line(problem) for problem in dict.fromkeys(reader.problems)])
    return Config(
        **sections,
        policy=policy,
        source=source,
        custom_triggers=custom,
        pools={(p.team, p.region): _pool(p) for p in pools},
    )


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError([f"{path}: no such file"]) from None
    except OSError as exc:
        raise ConfigError([f"{path}: cannot read it: {exc.strerror or type(exc).__name__}"]) from None
    except UnicodeDecodeError:
        raise ConfigError([f"{path}: not UTF-8 text"]) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError([f"{path}: {exc}"]) from None
    except RecursionError:
        raise ConfigError([f"{path}: nested too deeply"]) from None


def with_rules_from(config: Config, other: Path) -> Config:
    """`config` with the rules of another file (its `[rules]` and `[territories]` tables), for
    what-if comparisons; connections and state stay those of `config`."""
    base = _read_toml(config.source) if config.source else {}
    rules = _read_toml(other)
    merged = {
        **base,
        "rules": rules.get("rules", {}),
        "territories": rules.get("territories", base.get("territories", {})),
    }
    try:
        return parse_config(merged, config.source).with_state(config.state_path)
    except ConfigError as exc:
        raise ConfigError([f"{other}: {problem}" for problem in exc.problems]) from None


def load_config(path: Path | None) -> Config:
    """Load `path` (default ./config.toml, else the packaged example) or raise ConfigError."""
    if path is None:
        local = Path("config.toml")
        path = local if local.exists() else packaged_example()
    return parse_config(_read_toml(path), path)
