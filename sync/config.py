"""Typed configuration: read once, validated once, every problem reported together.

Secrets are never read from the TOML file: only from the environment or from a file that only
its owner can read. Against a loopback sandbox a missing secret falls back to a placeholder,
because the sandbox accepts any non-empty credential.
"""

from __future__ import annotations

import os
import stat
import tomllib
from collections import abc
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from types import UnionType
from typing import Any, Literal, TypeVar, Union, get_args, get_origin, get_type_hints
from urllib.parse import urlparse

from core.countries import normalise_country
from core.errors import ConfigError
from core.records import DEFAULT_TRAIT_KEYS
from rules.expressions import CompiledTrigger, CustomTrigger, ExpressionError, compile_trigger
from rules.policy import DEFAULT_REGIONS, ROUTING_RULE_IDS, Policy, Territories
from rules.round_robin import Member, Pool

__all__ = [
    "Config",
    "SalesforceConfig",
    "VitallyConfig",
    "load_config",
    "load_section",
    "packaged_example",
    "with_rules_from",
]

OnConflict = Literal["report", "overwrite"]
T = TypeVar("T")

_LOOPBACK = {"127.0.0.1", "localhost", "::1"}
_PLACEHOLDER_SECRET = "sandbox-placeholder"


@dataclass(frozen=True)
class VitallyConfig:
    base_url: str
    api_key: str = field(repr=False)
    timeout_seconds: float = 10
    max_attempts: int = 5
    max_wait_seconds: float = 60
    write_workers: int = 4
    trait_keys: Mapping[str, str] = field(default_factory=lambda: dict(DEFAULT_TRAIT_KEYS))
    segment_traits: Mapping[str, str] = field(default_factory=dict)
    written_traits: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class SalesforceConfig:
    instance_url: str
    token: str | None = field(default=None, repr=False)
    client_id: str | None = field(default=None, repr=False)
    client_secret: str | None = field(default=None, repr=False)
    api_version: str = "59.0"
    timeout_seconds: float = 30
    max_attempts: int = 5
    max_wait_seconds: float = 60
    budget_share: float = 0.8
    lookback_seconds: int = 300


@dataclass(frozen=True)
class Config:
    vitally: VitallyConfig
    salesforce: SalesforceConfig
    state_path: Path
    policy: Policy
    on_conflict: OnConflict = "report"
    interval_seconds: float = 900
    # The daemon's /healthz and /metrics on loopback (port 0: off); /healthz fails once the last
    # successful cycle is older than `healthy_within_seconds`.
    health_host: str = "127.0.0.1"
    health_port: int = 9465
    healthy_within_seconds: float = 2700
    # `report`: the conversion rate each routing rule is measured against.
    conversion_target: float = 0.20
    source: Path | None = None
    custom_triggers: tuple[CompiledTrigger, ...] = ()
    # (team, region) -> pool; region "*" is a team's catch-all pool.
    pools: Mapping[tuple[str, str], Pool] = field(default_factory=dict)

    def pool_for(self, team: str, region: str) -> Pool | None:
        return self.pools.get((team, region)) or self.pools.get((team, "*"))


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


class _Reader:
    """Typed access to a TOML document that records every problem instead of stopping."""

    def __init__(self, data: Mapping[str, Any]) -> None:
        self.data = data
        self.problems: list[str] = []

    def table(self, path: str) -> Mapping[str, Any]:
        node: Any = self.data
        for part in path.split("."):
            node = node.get(part, {}) if isinstance(node, Mapping) else None
            if not isinstance(node, Mapping):
                self.problems.append(f"{path}: expected a table")
                return {}
        table: Mapping[str, Any] = node
        return table

    def get(self, path: str, kind: type | tuple[type, ...], default: Any) -> Any:
        section, _, key = path.rpartition(".")
        table = self.table(section) if section else self.data
        if key not in table:
            return default
        value = table[key]
        if isinstance(value, bool) and kind in (int, float, (int, float)):
            self.problems.append(f"{path}: expected a number, got {value!r}")
            return default
        if not isinstance(value, kind):
            names = kind.__name__ if isinstance(kind, type) else " or ".join(k.__name__ for k in kind)
            self.problems.append(f"{path}: expected {names}, got {type(value).__name__} {value!r}")
            return default
        return value

    def number(self, path: str, default: float, *, minimum: float | None = None, maximum: float | None = None) -> float:
        value = float(self.get(path, (int, float), default))
        if minimum is not None and value < minimum:
            self.problems.append(f"{path}: must be ≥ {minimum:g}, got {value:g}")
        if maximum is not None and value > maximum:
            self.problems.append(f"{path}: must be ≤ {maximum:g}, got {value:g}")
        return value

    def whole(self, path: str, default: int, *, minimum: int = 0) -> int:
        value = self.get(path, int, default)
        if value < minimum:
            self.problems.append(f"{path}: must be ≥ {minimum}, got {value}")
        return int(value)

    def text(self, path: str, default: str) -> str:
        value = self.get(path, str, default)
        return str(value)

    def strings(self, path: str, default: tuple[str, ...]) -> tuple[str, ...]:
        value = self.get(path, list, list(default))
        bad = [v for v in value if not isinstance(v, str)]
        if bad:
            self.problems.append(f"{path}: expected a list of strings, got {bad[0]!r}")
            return default
        return tuple(value)

    def mapping(self, path: str, default: Mapping[str, str]) -> dict[str, str]:
        section = self.table(path)
        result = dict(default)
        for key, value in section.items():
            if not isinstance(value, str):
                self.problems.append(f"{path}.{key}: expected a string, got {value!r}")
            else:
                result[key] = value
        return result

    def countries(self, path: str, default: tuple[str, ...]) -> tuple[str, ...]:
        codes = []
        for name in self.strings(path, default):
            code = normalise_country(name)
            if code is None:
                self.problems.append(f"{path}: unknown country {name!r}")
            else:
                codes.append(code)
        return tuple(codes)

    def url(self, path: str, default: str) -> str:
        value = self.text(path, default)
        parsed = urlparse(value)
        if parsed.scheme not in {"http", "https"} or not parsed.netloc:
            self.problems.append(f"{path}: expected an http(s) URL, got {value!r}")
        return value.rstrip("/")

    def secret(self, path: str, url: str, *, required: bool) -> str | None:
        """Resolve `<path>_env` / `<path>_file`; never read a secret from the TOML itself."""
        section, _, key = path.rpartition(".")
        table = self.table(section)
        if key in table:
            self.problems.append(f"{path}: secrets are not read from the config file; use {key}_env or {key}_file")
        env_name = table.get(f"{key}_env")
        file_name = table.get(f"{key}_file")
        if env_name is not None and not isinstance(env_name, str):
            self.problems.append(f"{path}_env: expected the name of an environment variable")
            env_name = None
        if isinstance(env_name, str) and os.environ.get(env_name):
            return os.environ[env_name]
        if isinstance(file_name, str):
            return self._secret_file(f"{path}_file", Path(file_name).expanduser())
        if not required:
            return None
        if urlparse(url).hostname in _LOOPBACK:
            return _PLACEHOLDER_SECRET
        where = f"environment variable {env_name}" if env_name else f"{key}_env or {key}_file"
        self.problems.append(f"{path}: no secret found (set {where})")
        return None

    def _secret_file(self, path: str, file: Path) -> str | None:
        try:
            info = file.stat()
        except OSError as exc:
            self.problems.append(f"{path}: cannot read {file}: {exc.strerror}")
            return None
        if info.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
            self.problems.append(f"{path}: {file} must be readable by its owner only (chmod 600)")
            return None
        value = file.read_text(encoding="utf-8").strip()
        if not value:
            self.problems.append(f"{path}: {file} is empty")
            return None
        return value


def _territories(reader: _Reader) -> Territories:
    table = reader.table("territories")
    default_region = reader.text("territories.default_region", "EU")
    regions = dict(DEFAULT_REGIONS)
    for region, countries in table.items():
        if region == "default_region":
            continue
        for code in reader.countries(f"territories.{region}", ()):
            regions[code] = region
        if not isinstance(countries, list):
            continue
    return Territories(regions=regions, default_region=default_region)


_BAD = object()


def _coerce(reader: _Reader, path: str, kind: Any, value: Any) -> Any:
    """A TOML value as the dataclass field's type, or _BAD after recording the problem."""
    origin, args = get_origin(kind), get_args(kind)
    if origin in (Union, UnionType):
        options = [a for a in args if a is not type(None)]
        return _coerce(reader, path, options[0], value) if len(options) == 1 else value
    if origin is Literal:
        if value not in args:
            reader.problems.append(f"{path}: expected one of {', '.join(map(repr, args))}, got {value!r}")
            return _BAD
        return value
    if kind is bool:
        if not isinstance(value, bool):
            reader.problems.append(f"{path}: expected true or false, got {value!r}")
            return _BAD
        return value
    if kind in (int, float):
        if isinstance(value, bool) or not isinstance(value, int | float) or (kind is int and isinstance(value, float)):
            reader.problems.append(f"{path}: expected {'a whole number' if kind is int else 'a number'}, got {value!r}")
            return _BAD
        return kind(value)
    if kind is str:
        if not isinstance(value, str):
            reader.problems.append(f"{path}: expected a string, got {value!r}")
            return _BAD
        return value
    if origin is tuple:
        if not isinstance(value, list):
            reader.problems.append(f"{path}: expected a list, got {value!r}")
            return _BAD
        if len(args) == 2 and args[1] is Ellipsis:
            items = [_coerce(reader, f"{path}[{i}]", args[0], v) for i, v in enumerate(value)]
        elif len(args) != len(value):
            reader.problems.append(f"{path}: expected {len(args)} items, got {value!r}")
            return _BAD
        else:
            items = [_coerce(reader, f"{path}[{i}]", a, v) for i, (a, v) in enumerate(zip(args, value, strict=True))]
        return _BAD if any(i is _BAD for i in items) else tuple(items)
    if origin in (Mapping, dict, abc.Mapping):
        if not isinstance(value, Mapping):
            reader.problems.append(f"{path}: expected a table, got {value!r}")
            return _BAD
        entries = {str(k): _coerce(reader, f"{path}.{k}", args[1] if args else Any, v) for k, v in value.items()}
        return _BAD if _BAD in entries.values() else entries
    return value


def load_section(reader: _Reader, path: str, default: T) -> T:
    """Override a frozen policy dataclass's defaults from the TOML table at `path`, by field type.

    Unknown keys and values of the wrong type are problems; absent keys keep their default.
    """
    table = reader.table(path)
    hints = get_type_hints(type(default))
    names = {f.name for f in fields(default)}  # type: ignore[arg-type]
    for key in table:
        if key not in names:
            reader.problems.append(f"{path}.{key}: unknown setting (known: {', '.join(sorted(names))})")
    changes = {}
    for name in names & set(table):
        value = _coerce(reader, f"{path}.{name}", hints[name], table[name])
        if value is not _BAD:
            changes[name] = value
    return replace(default, **changes)  # type: ignore[type-var]


# Policy field -> the TOML table that tunes it.
_POLICY_SECTIONS = {
    "allocation": "rules.allocation",
    "product_led": "rules.product_led",
    "guards": "rules.guards",
    "routing": "rules.routing",
    "scoring": "rules.scoring",
    "demo": "rules.demo",
    "onboarding": "rules.onboarding",
    "lifecycle": "rules.lifecycle",
    "qualification": "rules.qualification",
}


def _policy(reader: _Reader) -> Policy:
    defaults = Policy()
    sections = {name: load_section(reader, path, getattr(defaults, name)) for name, path in _POLICY_SECTIONS.items()}
    allocation = sections["allocation"]
    for choice, fallback in allocation.fallbacks.items():
        if fallback not in allocation.owner_options:
            reader.problems.append(f"rules.allocation.fallbacks.{choice}: {fallback!r} is not one of owner_options")
    product_led = sections["product_led"]
    if product_led.mrr_min > product_led.mrr_max:
        reader.problems.append("rules.product_led: mrr_min must not exceed mrr_max")
    tier1 = reader.countries("rules.countries.tier1", defaults.tier1_countries)
    tier2 = reader.countries("rules.countries.tier2", defaults.tier2_countries)
    # The score's country tiers are the ICP tiers unless [rules.scoring] names its own (names or codes).
    scoring_table = reader.table("rules.scoring")
    sections["scoring"] = replace(
        sections["scoring"],
        tier1_countries=reader.countries("rules.scoring.tier1_countries", tier1)
        if "tier1_countries" in scoring_table
        else tier1,
        tier2_countries=reader.countries("rules.scoring.tier2_countries", tier2)
        if "tier2_countries" in scoring_table
        else tier2,
    )
    return replace(
        defaults,
        **sections,
        territories=_territories(reader),
        tier1_countries=tier1,
        tier2_countries=tier2,
    )


def _custom_triggers(reader: _Reader, policy: Policy) -> tuple[CompiledTrigger, ...]:
    """`[[rules.custom]]` triggers, compiled once; a bad expression names the rule and position."""
    rules_table = reader.table("rules")
    entries = rules_table.get("custom", [])
    if not isinstance(entries, list):
        reader.problems.append("rules.custom: expected an array of tables ([[rules.custom]])")
        return ()
    compiled: list[CompiledTrigger] = []
    seen: set[str] = set(ROUTING_RULE_IDS)
    for index, entry in enumerate(entries):
        path = f"rules.custom[{index}]"
        if not isinstance(entry, dict):
            reader.problems.append(f"{path}: expected a table")
            continue
        values = {key: entry.get(key) for key in ("id", "team", "when", "reason")}
        missing = [key for key, value in values.items() if not isinstance(value, str) or not value.strip()]
        unknown = sorted(set(entry) - set(values))
        if unknown:
            reader.problems.append(f"{path}: unknown setting(s) {', '.join(unknown)}")
        if missing:
            reader.problems.append(f"{path}: {', '.join(missing)} must be non-empty text")
            continue
        if values["id"] in seen:
            reader.problems.append(f"{path}.id: {values['id']!r} is already a rule id")
            continue
        seen.add(str(values["id"]))
        try:
            compiled.append(compile_trigger(CustomTrigger(**{k: str(v) for k, v in values.items()}), policy=policy))
        except ExpressionError as exc:
            reader.problems.append(f"{path}: {exc}")
    return tuple(compiled)


_TEAMS = ("TAE", "TAM", "CSM", "BDR", "Onboarding")


def _pools(reader: _Reader, regions: set[str]) -> dict[tuple[str, str], Pool]:
    """`[[pools]]`: who receives leads for a (team, region), with weights, pauses and caps."""
    entries = reader.data.get("pools", [])
    if not isinstance(entries, list):
        reader.problems.append("pools: expected an array of tables ([[pools]])")
        return {}
    pools: dict[tuple[str, str], Pool] = {}
    for index, entry in enumerate(entries):
        path = f"pools[{index}]"
        if not isinstance(entry, dict):
            reader.problems.append(f"{path}: expected a table")
            continue
        for key in sorted(set(entry) - {"team", "region", "fallback_queue", "capacity", "members"}):
            reader.problems.append(f"{path}.{key}: unknown setting")
        team, region = entry.get("team"), entry.get("region")
        if team not in _TEAMS:
            reader.problems.append(f"{path}.team: expected one of {', '.join(_TEAMS)}, got {team!r}")
            continue
        if region != "*" and region not in regions:
            known = ", ".join(sorted(regions))
            reader.problems.append(f"{path}.region: expected one of {known} or '*', got {region!r}")
            continue
        queue = entry.get("fallback_queue")
        if queue is not None and not (isinstance(queue, str) and queue.startswith("00G")):
            reader.problems.append(f"{path}.fallback_queue: expected a Salesforce queue id (00G…), got {queue!r}")
            queue = None
        default_capacity = entry.get("capacity")
        members: list[Member] = []
        seen: set[str] = set()
        for m_index, raw in enumerate(entry.get("members", [])):
            m_path = f"{path}.members[{m_index}]"
            if not isinstance(raw, dict):
                reader.problems.append(f"{m_path}: expected a table")
                continue
            for key in sorted(set(raw) - {"user_id", "name", "weight", "active", "capacity", "email"}):
                reader.problems.append(f"{m_path}.{key}: unknown setting")
            user_id, name = raw.get("user_id"), raw.get("name")
            weight, active = raw.get("weight", 1), raw.get("active", True)
            capacity = raw.get("capacity", default_capacity)
            if not (isinstance(user_id, str) and user_id.startswith("005")):
                reader.problems.append(f"{m_path}.user_id: expected a Salesforce user id (005…), got {user_id!r}")
                continue
            if user_id in seen:
                reader.problems.append(f"{m_path}.user_id: {user_id} is already in this pool")
                continue
            seen.add(user_id)
            if not isinstance(name, str) or not name:
                reader.problems.append(f"{m_path}.name: expected the person's name")
                continue
            if isinstance(weight, bool) or not isinstance(weight, int) or weight < 1:
                reader.problems.append(f"{m_path}.weight: expected a whole number ≥ 1, got {weight!r}")
                continue
            if not isinstance(active, bool):
                reader.problems.append(f"{m_path}.active: expected true or false, got {active!r}")
                continue
            if capacity is not None and (isinstance(capacity, bool) or not isinstance(capacity, int) or capacity < 0):
                reader.problems.append(f"{m_path}.capacity: expected a whole number ≥ 0, got {capacity!r}")
                continue
            email = raw.get("email")
            members.append(
                Member(user_id, name, weight, active, capacity, email.casefold() if isinstance(email, str) else None)
            )
        if (team, region) in pools:
            reader.problems.append(f"{path}: a pool for {team}/{region} is already defined")
            continue
        pools[(team, region)] = Pool(team, region, tuple(members), queue)
    return pools


def _build(data: Mapping[str, Any], source: Path | None) -> Config:
    reader = _Reader(data)
    for section in data:
        if section not in {
            "vitally",
            "salesforce",
            "state",
            "sync",
            "daemon",
            "report",
            "rules",
            "territories",
            "pools",
        }:
            reader.problems.append(f"{section}: unknown section")

    vitally_url = reader.url("vitally.base_url", "http://127.0.0.1:8765")
    vitally_key = reader.secret("vitally.api_key", vitally_url, required=True)
    segment_traits = reader.mapping(
        "vitally.segment_traits",
        {
            "TAM/CSM Candidate": "segment_tam_csm_candidate",
            "Product-led lead": "segment_product_led_lead",
            "Account review": "segment_account_review",
            "Onboarding": "segment_onboarding",
            "Nurture": "segment_nurture",
        },
    )
    written_traits = reader.mapping(
        "vitally.written_traits",
        {
            "new_owner": "new_owner",
            "routing_reason": "routing_reason",
            "lifecycle_stage": "lifecycle_stage",
            "onboarding_specialist": "onboarding_specialist",
        },
    )
    trait_keys = reader.mapping("vitally.traits", DEFAULT_TRAIT_KEYS)
    for canonical in set(trait_keys) - set(DEFAULT_TRAIT_KEYS):
        reader.problems.append(f"vitally.traits.{canonical}: not a field of the data model")
    vitally = VitallyConfig(
        base_url=vitally_url,
        api_key=vitally_key or "",
        timeout_seconds=reader.number("vitally.timeout_seconds", 10, minimum=0.1),
        max_attempts=reader.whole("vitally.max_attempts", 5, minimum=1),
        max_wait_seconds=reader.number("vitally.max_wait_seconds", 60, minimum=0),
        write_workers=reader.whole("vitally.write_workers", 4, minimum=1),
        trait_keys=trait_keys,
        segment_traits=segment_traits,
        written_traits=written_traits,
    )

    sf_url = reader.url("salesforce.instance_url", "http://127.0.0.1:8765")
    client_id = reader.secret("salesforce.client_id", sf_url, required=False)
    client_secret = reader.secret("salesforce.client_secret", sf_url, required=False)
    if (client_id is None) != (client_secret is None):
        reader.problems.append("salesforce: client_id and client_secret go together")
    token = reader.secret("salesforce.token", sf_url, required=client_id is None)
    version = reader.text("salesforce.api_version", "59.0")
    if not version.replace(".", "").isdigit():
        reader.problems.append(f"salesforce.api_version: expected a version like 59.0, got {version!r}")
    salesforce = SalesforceConfig(
        instance_url=sf_url,
        token=token,
        client_id=client_id,
        client_secret=client_secret,
        api_version=version,
        timeout_seconds=reader.number("salesforce.timeout_seconds", 30, minimum=0.1),
        max_attempts=reader.whole("salesforce.max_attempts", 5, minimum=1),
        max_wait_seconds=reader.number("salesforce.max_wait_seconds", 60, minimum=0),
        budget_share=reader.number("salesforce.budget_share", 0.8, minimum=0.01, maximum=1),
        lookback_seconds=reader.whole("salesforce.lookback_seconds", 300),
    )

    on_conflict = reader.text("sync.on_conflict", "report")
    if on_conflict not in ("report", "overwrite"):
        reader.problems.append(f"sync.on_conflict: expected 'report' or 'overwrite', got {on_conflict!r}")
        on_conflict = "report"
    policy = _policy(reader)
    order = reader.strings("rules.order", ROUTING_RULE_IDS)
    for rule_id in order:
        if rule_id not in ROUTING_RULE_IDS:
            reader.problems.append(
                f"rules.order: unknown routing rule {rule_id!r} (known: {', '.join(ROUTING_RULE_IDS)})"
            )
    policy = replace(policy, routing=replace(policy.routing, order=order))
    custom = _custom_triggers(reader, policy)
    regions = {*policy.territories.regions.values(), policy.territories.default_region}
    pools = _pools(reader, regions)
    state_path = Path(reader.text("state.path", "crm-sync.db")).expanduser()
    interval = reader.number("daemon.interval_seconds", 900, minimum=1)
    health_host = reader.text("daemon.health_host", "127.0.0.1")
    if health_host not in _LOOPBACK:
        reader.problems.append(f"daemon.health_host: must be a loopback address ({', '.join(sorted(_LOOPBACK))})")
    health_port = reader.whole("daemon.health_port", 9465)
    if health_port > 65535:
        reader.problems.append(f"daemon.health_port: must be ≤ 65535, got {health_port}")
    healthy_within = reader.number("daemon.healthy_within_seconds", 3 * interval, minimum=1)
    conversion_target = reader.number("report.conversion_target", 0.20, minimum=0, maximum=1)
    if reader.problems:
        raise ConfigError(reader.problems)
    return Config(
        vitally=vitally,
        salesforce=salesforce,
        state_path=state_path,
        policy=policy,
        on_conflict="overwrite" if on_conflict == "overwrite" else "report",
        interval_seconds=interval,
        health_host=health_host,
        health_port=health_port,
        healthy_within_seconds=healthy_within,
        conversion_target=conversion_target,
        source=source,
        custom_triggers=custom,
        pools=pools,
    )


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError([f"{path}: no such file"]) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError([f"{path}: {exc}"]) from None


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
        return replace(_build(merged, config.source), state_path=config.state_path)
    except ConfigError as exc:
        raise ConfigError([f"{other}: {problem}" for problem in exc.problems]) from None


def load_config(path: Path | None) -> Config:
    """Load `path` (default ./config.toml, else the packaged example) or raise ConfigError."""
    if path is None:
        local = Path("config.toml")
        path = local if local.exists() else packaged_example()
    return _build(_read_toml(path), path)
