"""Every command has help with an example, and the README documents every command."""

from __future__ import annotations

import io
import re
from pathlib import Path

import pytest

from sync.cli import _parser, main

README = (Path(__file__).resolve().parent.parent / "README.md").read_text()


def commands() -> list[str]:
    parser = _parser()
    action = next(a for a in parser._actions if a.dest == "command")
    assert action.choices is not None
    return sorted(action.choices)


def test_cli_commands_are_those_of_cli_md() -> None:
    assert commands() == sorted(
        [
            "run",
            "check",
            "apply",
            "resync",
            "daemon",
            "explain",
            "report",
            "sandbox",
            "demo",
            "failed",
            "errors",
            "retry",
            "init",
        ]
    )


@pytest.mark.parametrize("command", commands())
def test_cli_every_command_has_help_with_an_example(command: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main([command, "--help"])
    assert exited.value.code == 0
    text = capsys.readouterr().out
    assert "example:" in text
    assert f"python -m sync {command}" in text


@pytest.mark.parametrize("command", commands())
def test_readme_documents_every_command(command: str) -> None:
    assert re.search(rf"\| `{command}\b", README), f"README has no row for `{command}`"


def test_readme_opens_with_the_two_commands() -> None:
    first_block = README.split("```")[1]
    assert "make demo" in first_block and "make test" in first_block


def test_cli_without_command_prints_help_and_exits_2() -> None:
    out = io.StringIO()
    assert main([], out=out) == 2
    assert "COMMAND" in out.getvalue()


def test_readme_seed_example_loads_into_the_sandbox() -> None:
    import json

    import requests

    from sandbox import Sandbox

    block = README.split("**Seed file**")[1].split("```json")[1].split("```")[0]
    seed = json.loads(block)
    with Sandbox(seed) as sb:
        account = requests.get(f"{sb.url}/resources/accounts/acc_1", auth=("k", ""), timeout=5).json()
        assert account["segments"] == [{"id": "seg_am_referral", "name": "AM referral"}]
        leads = requests.get(
            f"{sb.url}/services/data/v59.0/query/",
            params={"q": "SELECT Id, Company FROM Lead"},
            headers={"Authorization": "Bearer t"},
            timeout=5,
        ).json()
        assert [lead["Company"] for lead in leads["records"]] == ["Acme"]
