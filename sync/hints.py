"""What a person should do when a service cannot be reached or refuses the credentials.

The connectors' errors are short and secret-free (`vitally: network error (ConnectionError)`,
`salesforce query: HTTP 401 INVALID_SESSION_ID`): right for a log line, not enough for someone at
a terminal. `explain_failure` turns one into what happened, where (the configured URL), which
setting or secret is involved (by the name of its environment variable or file, never its value)
and the likely fix. `RetryNotes` says the same about a request being retried while it happens.
"""

from __future__ import annotations

import logging
import os
import socket
import ssl
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

from core.errors import AuthError, FatalError, SyncError, UnreachableError
from sync.config import Config

__all__ = ["RetryNotes", "cause_of", "explain_failure", "secret_source"]

_SERVICES = {"vitally": "Vitally", "salesforce": "Salesforce"}
_LOOPBACK = {"127.0.0.1", "localhost", "::1"}


def _chain(error: BaseException) -> Iterator[BaseException]:
    """`error` and everything it was raised from: causes, contexts, wrapped exceptions (urllib3
    keeps the socket's error in `reason` and `args`)."""
    seen: set[int] = set()
    todo = [error]
    while todo:
        current = todo.pop(0)
        if id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        linked = [current.__cause__, current.__context__, getattr(current, "reason", None), *current.args]
        todo += [item for item in linked if isinstance(item, BaseException)]


def cause_of(error: BaseException) -> str | None:
    """The network failure behind `error`, in words ("connection refused", "host name not
    found", …), or None when it was not a network failure we recognise."""
    for link in _chain(error):
        if isinstance(link, ConnectionRefusedError):
            return "connection refused"
        if isinstance(link, socket.gaierror):
            return "host name not found"
        if isinstance(link, ssl.SSLError):
            return "TLS handshake failed"
        if isinstance(link, ConnectionResetError):
            return "connection reset"
        if isinstance(link, TimeoutError) or type(link).__name__.endswith("Timeout"):
            return "no answer in time"
    return None


def _url(config: Config, system: str) -> str:
    return config.vitally.base_url if system == "vitally" else config.salesforce.instance_url


def _where(config: Config) -> str:
    return f" in {config.source}" if config.source is not None else ""


@dataclass(frozen=True)
class _Secret:
    """Where a secret was looked for: the name of its variable or file (never its value)."""

    key: str
    env: str | None
    file: str | None

    def found_in(self) -> str:
        if self.env and os.environ.get(self.env):
            return f"the environment variable {self.env}"
        if self.file:
            return f"the file {self.file}"
        if self.env:
            return f"nowhere: {self.env} is not set (the sandbox placeholder was sent)"
        return f"nowhere ({self.key}_env / {self.key}_file unset)"


def secret_source(config: Config, system: str, key: str) -> str:
    """Where the secret `key` of `[system]` came from, in words: the environment variable or the
    file the config names (never the value)."""
    table = _table(config, system)
    env, file = table.get(f"{key}_env"), table.get(f"{key}_file")
    return _Secret(key, env if isinstance(env, str) else None, file if isinstance(file, str) else None).found_in()


def _table(config: Config, system: str) -> dict[str, object]:
    """The `[system]` table of the config file as written (to name its secrets' variables)."""
    import tomllib

    if config.source is None:
        return {}
    try:
        data = tomllib.loads(Path(config.source).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    table = data.get(system, {})
    return table if isinstance(table, dict) else {}


def _unreachable(error: SyncError, config: Config, system: str) -> str:
    url = _url(config, system)
    name = _SERVICES.get(system, system)
    cause = cause_of(error) or "network error"
    key = "base_url" if system == "vitally" else "instance_url"
    settings = config.vitally if system == "vitally" else config.salesforce
    lines = [
        f"error: cannot reach {name} at {url}: {cause} (gave up after {settings.max_attempts} attempt(s)).",
        f"  - is the address right? [{system}] {key}{_where(config)}",
    ]
    host = urlparse(url).hostname
    if host in _LOOPBACK:
        port = urlparse(url).port or 80
        lines.append(f"  - is the local sandbox running? start it with: python -m sync sandbox --port {port}")
    elif cause == "host name not found":
        lines.append(f"  - {host} does not resolve: check the spelling, and DNS from this machine")
    elif cause == "TLS handshake failed":
        lines.append("  - the certificate was refused: is a proxy intercepting TLS? (REQUESTS_CA_BUNDLE names its CA)")
    else:
        lines.append(f"  - does it answer from this machine? try: curl -sI {url}")
        lines.append("  - a proxy or firewall in between? (HTTPS_PROXY, NO_PROXY)")
    return "\n".join(lines) + "\n"


def _vitally_refused(error: SyncError, config: Config) -> str:
    source = secret_source(config, "vitally", "api_key")
    return (
        f"error: Vitally refused the API key at {config.vitally.base_url} ({error}).\n"
        f"  - the key came from {source} ([vitally] api_key_env / api_key_file{_where(config)})\n"
        "  - a Vitally key belongs to one workspace and region: Settings > Integrations > REST API;\n"
        "    a US workspace's key is refused by rest.vitally-eu.io and the other way round\n"
    )


def _salesforce_refused(error: SyncError, config: Config) -> str:
    settings = config.salesforce
    where = _where(config)
    lines = [f"error: Salesforce refused the credentials at {settings.instance_url} ({error})."]
    if settings.client_id is not None:
        client_id, client_secret = (secret_source(config, "salesforce", key) for key in ("client_id", "client_secret"))
        lines.append(
            f"  - the client id came from {client_id} and the secret from {client_secret} "
            f"([salesforce] client_id_env / client_secret_env{where})"
        )
        lines.append("  - the connected app must allow the client credentials flow, run as the integration user")
    else:
        token = secret_source(config, "salesforce", "token")
        lines.append(f"  - the access token came from {token} ([salesforce] token_env / token_file{where})")
        lines.append(
            "  - access tokens expire: get a new one, or use client credentials (client_id_env, "
            "client_secret_env) so crm-sync logs in again by itself"
        )
    if getattr(error, "status", None) == 403:
        lines.append("  - HTTP 403: a permission is missing (API Enabled, Lead read/edit): docs/data-model.md")
    return "\n".join(lines) + "\n"


def explain_failure(error: FatalError, config: Config | None) -> str:
    """What to print for an error that stopped a command (exit 3): the connector's message, and,
    when the config is known, the URL, the setting or secret involved and the likely fix."""
    system = error.system
    if config is None or system not in _SERVICES:
        return f"error: {error}\n"
    if isinstance(error, UnreachableError):
        return _unreachable(error, config, system)
    if isinstance(error, AuthError):
        return _vitally_refused(error, config) if system == "vitally" else _salesforce_refused(error, config)
    return f"error: {error} ({_SERVICES[system]} at {_url(config, system)})\n"


class RetryNotes(logging.Handler):
    """Shows the retry policy's warnings (`connectors.http`: "attempt N failed …; retrying in S
    s") on the terminal with the service's URL and the cause in words, so a person waiting on a
    service that does not answer knows which one, and why, while it is retried."""

    def __init__(self, config: Config, stream: object) -> None:
        super().__init__(logging.WARNING)
        self.config = config
        self.stream = stream

    def emit(self, record: logging.LogRecord) -> None:
        args = record.args if isinstance(record.args, tuple) else ()
        if len(args) != 3:
            return
        attempt, error, wait = args
        if not isinstance(error, SyncError) or not isinstance(wait, int | float):
            return
        system = getattr(error, "system", "")
        if system not in _SERVICES:
            return
        settings = self.config.vitally if system == "vitally" else self.config.salesforce
        cause = cause_of(error) or str(error)
        line = (
            f"{_SERVICES[system]} ({_url(self.config, system)}): attempt {attempt} of {settings.max_attempts} "
            f"failed: {cause}; retrying in {float(wait):.1f} s\n"
        )
        write = getattr(self.stream, "write", None)
        if callable(write):
            write(line)
