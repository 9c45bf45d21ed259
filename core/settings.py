"""One home per setting: each configuration field is declared once, on the frozen dataclass that
uses it, with its default, a one-line doc and its limits.

    arr_threshold: float = setting(20_000, "Accounts at or above this ARR need a TAM or CSM.", minimum=0)

`setting` returns a `dataclasses.field` whose metadata holds a `Setting`; `declared` lists a
class's declarations. `sync.config` reads every section of the config file from them (type,
limits, doc) and `sync.example` writes the commented example config from them, so the default,
the check and the documentation cannot drift apart. Pure: no I/O, nothing of crm-sync imported.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable
from dataclasses import MISSING, Field, dataclass
from typing import Any, Final

__all__ = [
    "HTTP_URL",
    "REQUIRED",
    "Secret",
    "Setting",
    "declared",
    "default_of",
    "describe_limits",
    "secret",
    "section",
    "setting",
]

_KEY: Final = "crm_sync.setting"

HTTP_URL: Final = r"https?://[^\s/?#]+(?:[/?#]\S*)?"
"""The `pattern` of a service's URL: http or https, a host, no spaces."""

REQUIRED: Final[Any] = MISSING
"""The default of a setting that has none: the file must give it (e.g. a pool member's user id)."""


@dataclass(frozen=True)
class Setting:
    """How one configuration field is read, checked and documented.

    `doc`: one line, shown above the setting in the example config. `minimum`/`maximum`: inclusive
    limits for every number in the value (a list's items, a table's values, a band's pairs).
    `pattern`: a regular expression a text must match in full, described to the user as `hint`.
    `toml`: where the value lives in the file when not under its own name in its section's table
    (a dotted path from the top of the file). `merge`: a table whose entries add to (or replace
    single entries of) the default instead of replacing it whole. `countries`: a list of
    country names or ISO codes, kept as ISO codes. `example`: what the example config shows,
    commented out, for a setting whose default is None (unset).
    """

    doc: str
    minimum: float | None = None
    maximum: float | None = None
    pattern: str | None = None
    hint: str | None = None
    toml: str | None = None
    merge: bool = False
    countries: bool = False
    example: object = None


@dataclass(frozen=True)
class Secret(Setting):
    """A secret: never read from the file itself, only from the environment variable named by
    `<key>_env` or the owner-only file named by `<key>_file`. `env`/`file` are what the example
    config suggests; `required`: the service cannot be used without it, unless the secret named
    by `unless` is given."""

    env: str | None = None
    file: str | None = None
    required: bool = False
    unless: str | None = None


def setting(
    default: Any,
    doc: str,
    *,
    minimum: float | None = None,
    maximum: float | None = None,
    pattern: str | None = None,
    hint: str | None = None,
    toml: str | None = None,
    merge: bool = False,
    countries: bool = False,
    example: object = None,
) -> Any:
    """A dataclass field declaring one setting (see `Setting`). A dict default is copied for each
    instance; `REQUIRED` means the field has no default."""
    declaration = Setting(doc, minimum, maximum, pattern, hint, toml, merge, countries, example)
    metadata = {_KEY: declaration}
    if isinstance(default, dict):
        frozen = dict(default)
        return dataclasses.field(default_factory=lambda: dict(frozen), metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


def section(factory: Callable[[], Any], doc: str, *, toml: str) -> Any:
    """A dataclass field holding a whole section of settings (a settings dataclass, made by
    `factory`), read from the TOML table at `toml`."""
    return dataclasses.field(default_factory=factory, metadata={_KEY: Setting(doc, toml=toml)})


def secret(
    doc: str, *, env: str | None = None, file: str | None = None, required: bool = False, unless: str | None = None
) -> Any:
    """A dataclass field declaring a secret (see `Secret`): None until resolved, never in a repr."""
    declaration = Secret(doc, env=env, file=file, required=required, unless=unless)
    return dataclasses.field(default=None, repr=False, metadata={_KEY: declaration})


def declared(cls: type) -> tuple[tuple[Field[Any], Setting], ...]:
    """Every field of the dataclass `cls` declared with `setting` or `secret`, in field order."""
    return _declared(cls)


@functools.cache
def _declared(cls: type) -> tuple[tuple[Field[Any], Setting], ...]:
    return tuple((f, f.metadata[_KEY]) for f in dataclasses.fields(cls) if isinstance(f.metadata.get(_KEY), Setting))


def default_of(f: Field[Any]) -> Any:
    """The field's default value (a fresh one for a default factory); `REQUIRED` when it has none."""
    if f.default is not MISSING:
        return f.default
    if f.default_factory is not MISSING:
        return f.default_factory()
    return REQUIRED


def _number(value: float) -> str:
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e15:
        value = int(value)
    return f"{value:,}" if isinstance(value, int) else f"{value:g}"


def describe_limits(declaration: Setting) -> str:
    """The declared limits in words ("1 to 86,400", "at least 0"); empty when there are none."""
    low, high = declaration.minimum, declaration.maximum
    if low is not None and high is not None:
        return f"{_number(low)} to {_number(high)}"
    if low is not None:
        return f"at least {_number(low)}"
    if high is not None:
        return f"at most {_number(high)}"
    return ""
