"""Each package names its public surface in `__all__`, and exports exactly that."""

from __future__ import annotations

import importlib
import inspect

import pytest

PACKAGES = ["core", "connectors", "sandbox", "rules", "state", "sync"]


@pytest.mark.parametrize("name", PACKAGES)
def test_package_all_names_exist(name: str) -> None:
    package = importlib.import_module(name)
    missing = [n for n in package.__all__ if not hasattr(package, n)]
    assert missing == []


@pytest.mark.parametrize("name", PACKAGES)
def test_package_exports_exactly_its_all(name: str) -> None:
    package = importlib.import_module(name)
    public = {
        n
        for n, obj in vars(package).items()
        if not n.startswith("_")
        and not inspect.ismodule(obj)
        and (inspect.isclass(obj) or inspect.isroutine(obj))  # a compiled function is a builtin (`make compiled`)
        and getattr(obj, "__module__", "").split(".")[0] == name.split(".")[0]
    }
    assert public == set(package.__all__) - {n for n in package.__all__ if not callable(getattr(package, n))}
