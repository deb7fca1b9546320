"""The package imports only what ``pip install pvarchiver`` installs: a module of the test
extras imported by ``src/`` works in the test venv and fails in a user's (the container
scenario found ``httpx`` that way, late). Every import in ``src/`` is checked against the
runtime dependencies in ``pyproject.toml``."""

from __future__ import annotations

import ast
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
#: the module a distribution provides, where the names differ
PROVIDES = {"protobuf": "google"}


def runtime_modules() -> set[str]:
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    names = set()
    for d in deps:
        dist = d.split(";")[0].split("[")[0]
        for sep in "<>=!~ ":
            dist = dist.split(sep)[0]
        names.add(PROVIDES.get(dist.lower(), dist.lower().replace("-", "_")))
    return names


def imported_modules() -> dict[str, set[str]]:
    found: dict[str, set[str]] = {}
    for path in (ROOT / "src" / "pvarchiver").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            for name in names:
                top = name.split(".")[0]
                if top not in sys.stdlib_module_names and top != "pvarchiver":
                    found.setdefault(top, set()).add(str(path.relative_to(ROOT)))
    return found


def test_src_imports_only_runtime_dependencies() -> None:
    allowed = runtime_modules()
    extra = {m: sorted(p) for m, p in imported_modules().items() if m not in allowed}
    assert extra == {}, f"imported by src/ but not a runtime dependency: {extra}"
