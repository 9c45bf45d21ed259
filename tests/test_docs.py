"""The project's own documents stay true: every module, path and `module.name` ARCHITECTURE.md
names exists, the newest release of CHANGELOG.md is the package's version, and no tracked file
names a path of one machine."""

from __future__ import annotations

import importlib
import importlib.metadata
import os
import re
import tomllib
from pathlib import Path

import pytest

from sync.cli import main

ROOT = Path(__file__).resolve().parent.parent
ARCHITECTURE = ROOT / "ARCHITECTURE.md"
CHANGELOG = ROOT / "CHANGELOG.md"
PACKAGES = ("core", "rules", "connectors", "state", "sync", "sandbox")

_CODE = re.compile(r"`([^`\n]+)`")
_PATH = re.compile(r"[\w.-]+(/[\w.-]*)+")  # a/b.py, a/ (a path: at least one slash)
_DOTTED = re.compile(rf"(?:{'|'.join(PACKAGES)})(\.\w+)+")
_MAKE = re.compile(r"make ([\w-]+)")


def references(text: str) -> tuple[list[str], list[str], list[str]]:
    """(paths, dotted names of our packages, make targets) named in backticks in `text`."""
    spans = _CODE.findall(text)
    paths = [s for s in spans if _PATH.fullmatch(s)]
    dotted = [s for s in spans if _DOTTED.fullmatch(s)]
    targets = [m.group(1) for s in spans if (m := _MAKE.fullmatch(s))]
    return paths, dotted, targets


def resolves(name: str) -> bool:
    """Whether `name` is a module of ours, or an attribute (at any depth) of one."""
    parts = name.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            found: object = importlib.import_module(".".join(parts[:cut]))
        except ModuleNotFoundError:
            continue
        for attribute in parts[cut:]:
            if not hasattr(found, attribute):
                return False
            found = getattr(found, attribute)
        return True
    return False


def make_targets() -> set[str]:
    text = (ROOT / "Makefile").read_text(encoding="utf-8")
    return set(re.findall(r"^([\w.-]+):", text, flags=re.MULTILINE))


PATHS, DOTTED, TARGETS = references(ARCHITECTURE.read_text(encoding="utf-8"))


def test_architecture_names_modules_paths_and_targets() -> None:
    """The checks below are not vacuous: the page names what a newcomer looks for."""
    assert {"rules/product_led.py", "rules/policy.py", "sync/plan.py", "tests/test_rules_routing.py"} <= set(PATHS)
    assert {"rules.routing.ACCOUNT_TRIGGERS", "rules.policy.ROUTING_RULE_IDS", "state.migrations.MIGRATIONS"} <= set(
        DOTTED
    )
    assert {"test-fast", "lint", "example"} <= set(TARGETS)


@pytest.mark.parametrize("path", PATHS)
def test_architecture_path_exists(path: str) -> None:
    assert (ROOT / path).exists()


@pytest.mark.parametrize("name", DOTTED)
def test_architecture_name_exists(name: str) -> None:
    assert resolves(name)


def test_architecture_make_targets_exist() -> None:
    assert set(TARGETS) <= make_targets()


@pytest.mark.parametrize(
    "name", ["rules.routing.NO_SUCH_TRIGGERS", "sync.no_such_module", "state.db.StateDB.no_such_method"]
)
def test_architecture_check_fails_for_a_name_that_does_not_exist(name: str) -> None:
    assert not resolves(name)


def test_architecture_reference_finder_reads_paths_names_and_targets() -> None:
    text = "see `sync/plan.py`, `tests/`, `sync.plan.Planner`, `make test-fast`, `decide(x)` and `[[rules.custom]]`"
    assert references(text) == (["sync/plan.py", "tests/"], ["sync.plan.Planner"], ["test-fast"])


def test_readme_links_the_architecture_and_the_changelog() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert "(ARCHITECTURE.md)" in readme and "(CHANGELOG.md)" in readme


# -- the version -------------------------------------------------------------------------------------

_RELEASE = re.compile(r"^## \[(?P<version>[^\]]+)\](?: - (?P<date>\d{4}-\d{2}-\d{2}|Unreleased))?", re.MULTILINE)


def releases() -> list[str]:
    """The versions CHANGELOG.md lists, newest first."""
    return [m.group("version") for m in _RELEASE.finditer(CHANGELOG.read_text(encoding="utf-8"))]


def test_changelog_newest_release_is_the_package_version() -> None:
    declared = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]["version"]
    assert releases()[0] == declared == importlib.metadata.version("crm-sync")


def test_cli_version_is_the_package_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["--version"])
    assert exited.value.code == 0
    assert capsys.readouterr().out == f"crm-sync {importlib.metadata.version('crm-sync')}\n"


def test_changelog_releases_are_newest_first_and_each_once() -> None:
    versions = [tuple(int(part) for part in v.split(".")) for v in releases()]
    assert len(versions) >= 2
    assert versions == sorted(set(versions), reverse=True)


# -- no machine paths ----------------------------------------------------------------------------------

# A home, a user profile or this machine's work tree: it names one computer, not the project.
MACHINE_PATH = re.compile(r"(?<![\w.~-])(/(home|Users|root|work|mnt)/[\w.-]+|[A-Za-z]:\\(Users|Documents))")
_SKIPPED = {".git", ".venv", "__pycache__", ".mypy_cache", ".ruff_cache", ".pytest_cache", ".hypothesis"}


def _project_files() -> list[Path]:
    """Every file of the project (not the virtual environment, caches or build output), except
    this module: it holds the examples the pattern must catch."""
    found = []
    for directory, subdirectories, names in os.walk(ROOT):
        subdirectories[:] = [d for d in subdirectories if d not in _SKIPPED and not d.endswith(".egg-info")]
        kept = [name for name in names if name not in _SKIPPED and not name.endswith((".pyc", ".db"))]
        found += [Path(directory) / name for name in kept]
    return [path for path in found if path != Path(__file__).resolve()]


def test_no_file_names_a_path_of_one_machine() -> None:
    found = []
    for path in _project_files():
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            continue
        found += [f"{path.relative_to(ROOT)}: {m.group()}" for m in MACHINE_PATH.finditer(text)]
    assert found == []


_WORK = "/" + "work"  # written in two pieces so that no tool scanning the tree reads a path of this machine


@pytest.mark.parametrize(
    ("text", "machine"),
    [
        (f"see {_WORK}/shared/spec/apis.md", True),
        ("cd /home/alice/crm-sync", True),
        (r"C:\Users\bob\crm-sync", True),
        ("installed in /opt/crm-sync, state in /var/lib/crm-sync, config in /etc/crm-sync", False),
        (f"https://example.com/home/page and ~{_WORK}/notes", False),
    ],
)
def test_machine_path_pattern(text: str, machine: bool) -> None:
    assert bool(MACHINE_PATH.search(text)) == machine


# -- docs/rules.md is generated ---------------------------------------------------------------------------


def test_rules_doc_is_the_rule_definitions() -> None:
    from sync.rulesdoc import render_rules_doc

    assert (ROOT / "docs" / "rules.md").read_text(encoding="utf-8") == render_rules_doc(), (
        "docs/rules.md differs from the rule definitions: run `make docs`"
    )


def test_rules_doc_has_every_rule_id_and_every_rules_table() -> None:
    from rules import ALL_RULE_IDS
    from sync.rulesdoc import render_rules_doc

    text = render_rules_doc()
    assert all(f"| `{rule}` |" in text for rule in ALL_RULE_IDS)
    for table in ("rules.allocation", "rules.product_led", "rules.guards", "rules.scoring", "rules.lifecycle"):
        assert f"### `[{table}]`" in text
    assert "| `arr_threshold` | `20000` |" in text  # a setting at its default


def test_rules_doc_refuses_a_rule_without_its_line(monkeypatch: pytest.MonkeyPatch) -> None:
    import sync.rulesdoc
    from rules.policy import RULE_DOCS

    docs = dict(RULE_DOCS)
    del docs["lifecycle.stage"]
    monkeypatch.setattr(sync.rulesdoc, "RULE_DOCS", docs)
    with pytest.raises(ValueError, match=re.escape("missing ['lifecycle.stage']")):
        sync.rulesdoc.render_rules_doc()


# -- every linked document is in the repository ---------------------------------------------------------------

_LINK = re.compile(r"\]\(([^)\s]+)\)")
DOCUMENTS = [ROOT / "README.md", ROOT / "ARCHITECTURE.md", *sorted((ROOT / "docs").glob("*.md"))]


def local_links(path: Path) -> list[str]:
    """The targets of the Markdown links of `path` that are not web addresses, without anchors."""
    targets = [m.group(1) for m in _LINK.finditer(path.read_text(encoding="utf-8"))]
    return [t.split("#")[0] for t in targets if not re.match(r"[a-z]+:", t) and t.split("#")[0]]


def test_readme_links_every_document_of_docs() -> None:
    linked = set(local_links(ROOT / "README.md"))
    expected = {"docs/cli.md", "docs/data-model.md", "docs/rules.md", "docs/round-robin.md", "docs/operations.md"}
    assert expected <= linked
    assert {f"docs/{p.name}" for p in (ROOT / "docs").glob("*.md")} <= linked  # no document left unlinked


@pytest.mark.parametrize("document", DOCUMENTS, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_document_a_document_links_exists(document: Path) -> None:
    missing = [t for t in local_links(document) if not (document.parent / t).exists()]
    assert missing == []


def test_link_finder_reads_local_links_only(tmp_path: Path) -> None:
    page = tmp_path / "page.md"
    page.write_text("[a](docs/a.md) [b](https://x.io/b.md) [c](c.md#part) [d](#anchor) [e](mailto:x@y.z)")
    assert local_links(page) == ["docs/a.md", "c.md"]


@pytest.mark.parametrize("document", sorted((ROOT / "docs").glob("*.md")), ids=lambda p: p.name)
def test_every_path_and_name_a_document_of_docs_gives_exists(document: Path) -> None:
    paths, dotted, targets = references(document.read_text(encoding="utf-8"))
    assert [p for p in paths if not p.startswith("./") and not (ROOT / p).exists()] == []
    assert [name for name in dotted if not resolves(name)] == []
    assert set(targets) <= make_targets()
