"""deploy/ stays in step with the code: the unit and the container run the daemon with the config,
the environment example names exactly the secrets the example config reads, the image carries
every package, and its health check asks the configured port."""

from __future__ import annotations

import configparser
import re
import tomllib
from pathlib import Path

from sync.config import load_config, packaged_example

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"


def _unit() -> configparser.ConfigParser:
    unit = configparser.ConfigParser(strict=False, interpolation=None)
    unit.optionxform = str  # type: ignore[assignment,method-assign]
    unit.read_string((DEPLOY / "crm-sync.service").read_text(encoding="utf-8"))
    return unit


def _secret_variables(config_text: str) -> set[str]:
    """Every environment variable the config names for a secret, commented-out ones included."""
    return set(re.findall(r'^#?\s*\w+_env\s*=\s*"(\w+)"', config_text, flags=re.MULTILINE))


def test_the_unit_runs_the_daemon_as_its_own_user_and_never_restarts_on_config_lock_or_state_errors() -> None:
    service = _unit()["Service"]
    assert service["ExecStart"].endswith("-m sync --config /etc/crm-sync/config.toml daemon")
    assert service["User"] == "crm-sync" and service["KillSignal"] == "SIGTERM"
    # cli.md exit statuses: configuration error, another instance, an unusable state file
    assert set(service["RestartPreventExitStatus"].split()) == {"2", "4", "5"}
    assert service["ReadWritePaths"] == "/var/lib/crm-sync" and service["UMask"] == "0077"
    assert service["EnvironmentFile"] == "/etc/crm-sync/crm-sync.env"


def test_the_environment_example_names_every_secret_the_config_reads_and_holds_none() -> None:
    example = (DEPLOY / "crm-sync.env.example").read_text(encoding="utf-8")
    assigned = dict(re.findall(r"^#?\s*([A-Z_]+)=(.*)$", example, flags=re.MULTILINE))
    wanted = _secret_variables((ROOT / "config.example.toml").read_text(encoding="utf-8"))
    assert wanted and wanted <= set(assigned)
    assert all(assigned[name] == "" for name in wanted)  # placeholders only, never a value


def test_the_readme_documents_every_secret_variable_of_the_environment_example() -> None:
    example = (DEPLOY / "crm-sync.env.example").read_text(encoding="utf-8")
    variables = set(re.findall(r"^#?\s*([A-Z_]+)=", example, flags=re.MULTILINE))
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    undocumented = {name for name in variables if name not in readme and not name.startswith("SALESFORCE_")}
    assert {"CRM_SYNC_SLACK_BOT_TOKEN", "CRM_SYNC_ZENDESK_API_TOKEN", "CRM_SYNC_LLM_API_KEY"} <= variables
    assert not undocumented  # the Salesforce ones are documented together, as SALESFORCE_*


def test_the_container_installs_every_package_and_checks_the_configured_health_port() -> None:
    containerfile = (DEPLOY / "Containerfile").read_text(encoding="utf-8")
    packages = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["tool"]["setuptools"]["packages"]
    for top in {name.split(".")[0] for name in packages}:
        assert f"COPY {top} ./{top}" in containerfile
    config = load_config(packaged_example())
    assert f"http://127.0.0.1:{config.health_port}/healthz" in containerfile
    assert 'ENTRYPOINT ["python", "-m", "sync", "--config", "/etc/crm-sync/config.toml"]' in containerfile
    assert re.search(r"^USER crm-sync$", containerfile, flags=re.MULTILINE)
