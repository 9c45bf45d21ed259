"""The optional compiled build's guard (`sync.compiled`): a compiled module that is not its source
any more must never run. The build itself is exercised by `make test-compiled` (CI), which
compiles `MODULES` with mypyc and runs the end-to-end and rules tests against them."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from sync import cli, compiled

_SO = ".cpython-311-x86_64-linux-gnu.so"


def _tree(root: Path, sources: dict[str, str]) -> Path:
    for source, text in sources.items():
        path = root / source
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


def _built(root: Path, sources: list[str]) -> None:
    """What `compiled.build` leaves: an extension beside each source, mypyc's shared library at the
    top, and the stamp of the sources' digests (the compiler itself is not run here)."""
    for source in sources:
        stem = source.removesuffix(".py")
        (root / f"{stem}{_SO}").write_bytes(b"\x7fELF")
    (root / f"0123abcd__mypyc{_SO}").write_bytes(b"\x7fELF")
    digests = {source: compiled._digest(root / source) for source in sources}
    (root / ".compiled.json").write_text(json.dumps({"sources": digests}))


def test_a_pure_tree_and_a_build_that_matches_its_sources_are_trusted(tmp_path: Path) -> None:
    root = _tree(tmp_path, {"rules/routing.py": "A = 1\n", "rules/__init__.py": "", "sync/plan.py": "B = 2\n"})
    assert compiled.stale(root) == []
    _built(root, ["rules/routing.py", "rules/__init__.py", "sync/plan.py"])
    assert compiled.stale(root) == []
    assert len(compiled.extensions(root)) == 4


def test_an_edited_source_makes_its_compiled_module_stale(tmp_path: Path) -> None:
    root = _tree(tmp_path, {"rules/routing.py": "A = 1\n", "sync/plan.py": "B = 2\n"})
    _built(root, ["rules/routing.py", "sync/plan.py"])
    (root / "rules/routing.py").write_text("A = 3  # a person tuned the rule\n")
    assert compiled.stale(root) == ["rules/routing.py: changed since it was compiled"]
    (root / "sync/plan.py").unlink()
    assert compiled.stale(root) == [
        "rules/routing.py: changed since it was compiled",
        "sync/plan.py: compiled, but the source is gone",
    ]


def test_compiled_modules_without_the_build_record_or_beyond_it_are_stale(tmp_path: Path) -> None:
    root = _tree(tmp_path, {"rules/routing.py": "A = 1\n", "rules/scoring.py": "S = 1\n"})
    (root / f"rules/routing{_SO}").write_bytes(b"\x7fELF")
    [problem] = compiled.stale(root)
    assert "no .compiled.json" in problem
    _built(root, ["rules/routing.py"])
    (root / f"rules/scoring{_SO}").write_bytes(b"\x7fELF")  # left by an older build, say
    assert compiled.stale(root) == [f"rules/scoring{_SO}: a compiled module the build did not make"]
    (root / ".compiled.json").write_text("{not json")
    assert compiled.stale(root) == [".compiled.json is unreadable"]


def test_clean_removes_the_build_and_leaves_the_sources(tmp_path: Path) -> None:
    root = _tree(tmp_path, {"rules/routing.py": "A = 1\n"})
    _built(root, ["rules/routing.py"])
    (root / "build" / "temp").mkdir(parents=True)
    removed = compiled.clean(root)
    assert {p.name for p in removed} == {f"routing{_SO}", f"0123abcd__mypyc{_SO}", ".compiled.json", "build"}
    assert compiled.extensions(root) == [] and compiled.stale(root) == []
    assert (root / "rules/routing.py").read_text() == "A = 1\n"


def test_the_cli_refuses_to_run_a_stale_build(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = _tree(tmp_path, {"rules/routing.py": "A = 1\n"})
    _built(root, ["rules/routing.py"])
    (root / "rules/routing.py").write_text("A = 2\n")
    monkeypatch.setattr(compiled, "ROOT", root)
    out, err = io.StringIO(), io.StringIO()
    assert cli.main(["run", "--dry-run", "--config", str(root / "absent.toml")], out=out, err=err) == 2
    assert out.getvalue() == ""
    assert "rules/routing.py: changed since it was compiled" in err.getvalue()
    assert "make compiled" in err.getvalue() and "make pure" in err.getvalue()


def test_the_modules_compiled_exist_and_leave_out_what_mypyc_cannot_compile() -> None:
    root = compiled.ROOT
    assert all((root / source).is_file() for source in compiled.MODULES)
    assert "rules/base.py" not in compiled.MODULES and "rules/context.py" not in compiled.MODULES
    assert not [source for source in compiled.MODULES if source.endswith("__init__.py")]  # data files found
    assert "core/records.py" not in compiled.MODULES  # the parsers of outside data stay Python
    assert "sync/compiled.py" not in compiled.MODULES  # the guard must run before any compiled module
