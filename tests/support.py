"""Helpers shared by the test modules: the real CLI in a subprocess, the example config pointed at
a sandbox, and what `responses` recorded of a request."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import requests

from core.decoding import Unreadable

ROOT = Path(__file__).resolve().parent.parent
SANDBOX_DEFAULT_URL = "http://127.0.0.1:8765"
HEALTH_DEFAULT = "health_port = 9465"
# Credentials and settings the CLI would otherwise pick up from the developer's environment.
_OUTER_PREFIXES = ("VITALLY_", "SALESFORCE_", "CRM_SYNC_")


def run_cli(
    config: Path, state: Path, *args: str, env: Mapping[str, str] | None = None, timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    """`python -m sync --config CONFIG --state STATE ARGS…`, with no credentials or crm-sync
    settings from the outer environment except those in `env`."""
    environment = {k: v for k, v in os.environ.items() if not k.startswith(_OUTER_PREFIXES)}
    environment.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "sync", "--config", str(config), "--state", str(state), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=ROOT,
        env=environment,
    )


def example_config_for(url: str, path: Path, replacements: Mapping[str, str] | None = None) -> Path:
    """Write config.example.toml pointed at the sandbox at `url` (plus text replacements) to `path`."""
    text = (ROOT / "config.example.toml").read_text().replace(SANDBOX_DEFAULT_URL, url)
    replacements = dict(replacements or {})
    # No /healthz and /metrics unless a test asks for them: daemons of other tests (or one a
    # developer runs) may hold the default port.
    replacements.setdefault(HEALTH_DEFAULT, "health_port = 0")
    for old, new in replacements.items():
        text = text.replace(old, new)
    path.write_text(text)
    return path


def request_kwargs(request: requests.PreparedRequest) -> dict[str, Any]:
    """The keyword arguments a request was sent with (`timeout`…), as `responses` records them on
    the request it saw (`req_kwargs`, set at run time, so not part of requests' types)."""
    recorded: dict[str, Any] = vars(request)["req_kwargs"]
    return recorded


def sent_json(request: requests.PreparedRequest) -> Any:
    """The JSON body a request was sent with."""
    assert request.body is not None
    return json.loads(request.body)


def decoded(record: dict[str, Any] | Unreadable) -> dict[str, Any]:
    """A record a connector yielded, which the test expects to have decoded within the limits."""
    assert isinstance(record, dict), f"not decoded: {record}"
    return record
