"""The optional compiled build: the rules and the planner compiled to C extension modules with
mypyc, for a cold or `--full` cycle at less CPU (README, "The compiled build").

`python -m sync.compiled build` (`make compiled`) compiles `MODULES` in place: each gets a
`<module>.cpython-311-<platform>.so` beside its `.py`, which Python imports instead of the source.
It needs a C compiler, the Python headers and mypy (`pip install -e '.[compiled]'`). `python -m
sync.compiled clean` (`make pure`) removes them; the pure-Python tree is the default and what
`make test` tests.

An extension module is imported instead of its source even after the source is edited: a person
tuning a rule would see the old rule run. So a build records the SHA-256 of every source it
compiled (`STAMP`), and `stale()` compares them with the sources: `sync.cli` refuses to start
(exit 2) and the test suite refuses to run while a compiled module is older than its source, or
an extension module is there that the stamp does not name.

This module is never compiled itself, and imports nothing of crm-sync: it must run before any
compiled module does.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import sysconfig
from collections.abc import Sequence
from pathlib import Path

__all__ = ["MODULES", "STAMP", "build", "clean", "extensions", "stale"]

ROOT = Path(__file__).resolve().parent.parent

# What a cold cycle spends its CPU in, and mypyc compiles as it is (each module type-checks under
# mypy --strict). Left out: `rules.base` and `rules.context` (their classes are built in ways a
# compiled class refuses: `Decision.__new__` sets `__class__`, `AccountContext` caches properties
# in its `__dict__`); `core.records`, the parsers of outside data (a compiled function checks its
# arguments' declared types where Python lets an int pass for a float, so its errors on hostile
# records would differ); every package's `__init__` (a compiled package's files, such as the
# triage model's training data, are looked for beside the shared library, not in the package);
# `rules.clock` (a few calls an account, outside a watch a context variable's lookup each); and
# everything that waits on the network or SQLite rather than the CPU.
MODULES: tuple[str, ...] = (
    "rules/allocation.py",
    "rules/bdr.py",
    "rules/demo.py",
    "rules/episodes.py",
    "rules/evaluation.py",
    "rules/guards.py",
    "rules/lifecycle.py",
    "rules/new_business.py",
    "rules/onboarding.py",
    "rules/product_led.py",
    "rules/qualification.py",
    "rules/routing.py",
    "rules/scoring.py",
    "rules/signals.py",
    "rules/triage_model.py",
    "rules/triage_rules.py",
    "sync/accounts.py",
    "sync/decider.py",
    "sync/plan.py",
    "sync/wire.py",
)

# The build's record: the sources compiled and their SHA-256, the Python and mypy it was built with.
_STAMP_NAME = ".compiled.json"
STAMP = ROOT / _STAMP_NAME

# The packages an extension module may sit in, and the top level (mypyc's shared library).
_PLACES = ("", "core", "rules", "sync", "state", "connectors")


def extensions(root: Path | None = None) -> list[Path]:
    """The extension modules in the tree (`*.so` / `*.pyd` in the packages and at the top)."""
    root = root or ROOT
    found: list[Path] = []
    for place in _PLACES:
        folder = root / place if place else root
        if folder.is_dir():
            found.extend(p for p in folder.iterdir() if p.is_file() and p.suffix in (".so", ".pyd"))
    return sorted(found)


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def stale(root: Path | None = None) -> list[str]:
    """Why the compiled modules in `root` (this tree) cannot be trusted to be its sources, one line
    each; [] for a pure-Python tree and for a build that matches its sources."""
    root = root or ROOT
    found = extensions(root)
    if not found:
        return []
    stamp = root / _STAMP_NAME
    if not stamp.is_file():
        return [f"{len(found)} compiled module(s) ({found[0].name}, ...) but no {stamp.name}: not built by this tree"]
    try:
        record = json.loads(stamp.read_text())
        sources: dict[str, str] = dict(record["sources"])
    except (OSError, ValueError, KeyError, TypeError):
        return [f"{stamp.name} is unreadable"]
    problems = []
    for source, digest in sorted(sources.items()):
        path = root / source
        if not path.is_file():
            problems.append(f"{source}: compiled, but the source is gone")
        elif _digest(path) != digest:
            problems.append(f"{source}: changed since it was compiled")
    compiled = {_module_of(source) for source in sources}
    for path in found:
        relative = path.relative_to(root)
        module = _module_of("/".join((*relative.parts[:-1], path.name.split(".", 1)[0] + ".py")))
        if module not in compiled and "__mypyc" not in path.name:
            problems.append(f"{relative}: a compiled module the build did not make")
    return problems


def _module_of(source: str) -> str:
    parts = source.removesuffix(".py").split("/")
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def clean(root: Path | None = None) -> list[Path]:
    """Remove the compiled modules, mypyc's build folder and the stamp; returns what was removed."""
    root = root or ROOT
    removed = extensions(root)
    for path in removed:
        path.unlink()
    stamp = root / _STAMP_NAME
    if stamp.exists():
        stamp.unlink()
        removed.append(stamp)
    build_dir = root / "build"
    if build_dir.is_dir():
        shutil.rmtree(build_dir)
        removed.append(build_dir)
    return removed


def build(root: Path | None = None, modules: Sequence[str] = MODULES) -> int:
    """Compile `modules` in place with mypyc (replacing an earlier build) and write the stamp;
    returns mypyc's exit status (the stamp is written only on success)."""
    root = root or ROOT
    clean(root)
    try:
        import mypy.version
    except ImportError:
        print("the compiled build needs mypy: pip install -e '.[compiled]'", file=sys.stderr)
        return 2
    digests = {source: _digest(root / source) for source in modules}
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(root), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep),
    }
    argv = [sys.executable, "-m", "sync.compiled", "_setup", *modules]
    done = subprocess.run(argv, cwd=root, env=env, check=False)
    if done.returncode != 0:
        clean(root)
        return done.returncode
    if any(_digest(root / source) != digest for source, digest in digests.items()):
        clean(root)  # a source was edited while it compiled: the build may not be it
        print("a source changed during the build: run it again", file=sys.stderr)
        return 1
    record = {
        "python": sys.version.split()[0],
        "platform": sysconfig.get_platform(),
        "mypy": mypy.version.__version__,
        "sources": digests,
    }
    (root / _STAMP_NAME).write_text(json.dumps(record, indent=2, sort_keys=True) + "\n")
    return 0


# mypyc's shared library (the code of every compiled module: they call each other directly) is a
# module of the `sync` package, whose `__init__` is never compiled: at the top level it would be
# found only with the tree's root on the path, which an installed `crm-sync` command does not have.
_GROUP = "sync._compiled"


def _setup(modules: Sequence[str]) -> int:
    """mypyc's build of `modules` into extension modules beside their sources (the current
    directory is the tree's root): what `build` runs in a process of its own."""
    from mypyc.build import mypycify
    from setuptools import setup  # type: ignore[import-untyped]  # no stubs; only this build uses it

    setup(
        name="crm-sync-compiled",
        ext_modules=mypycify(list(modules), opt_level="3", group_name=_GROUP),
        script_args=["--quiet", "build_ext", "--inplace"],
    )
    return 0


def _main(argv: Sequence[str]) -> int:
    command = argv[0] if argv else ""
    if command == "_setup":
        return _setup(argv[1:])
    if command == "build":
        status = build()
        if status == 0:
            print(f"compiled {len(MODULES)} modules; `make pure` (python -m sync.compiled clean) goes back")
        return status
    if command == "clean":
        removed = clean()
        print(f"removed {len(removed)} compiled file(s)" if removed else "nothing compiled: the tree is pure Python")
        return 0
    if command == "check":
        problems = stale()
        for problem in problems:
            print(problem, file=sys.stderr)
        if not problems:
            print("compiled build matches its sources" if extensions() else "pure Python: nothing compiled")
        return 2 if problems else 0
    print("usage: python -m sync.compiled build | clean | check", file=sys.stderr)
    return 2


if __name__ == "__main__":
    raise SystemExit(_main(sys.argv[1:]))
