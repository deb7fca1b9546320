"""The package imports only what ``pip install pvarchiver`` installs: a module of the test
extras imported by ``src/`` works in the test venv and fails in a user's (the container
scenario found ``httpx`` that way, late). Every import in ``src/`` is checked against the
runtime dependencies in ``pyproject.toml``.

One exception, kept narrow: a module of an optional extra that a user asks for (``postgres``:
psycopg for a ``postgresql://`` registry; ``parquet``: pyarrow) may be imported only where
``import pvarchiver...`` never reaches it: inside a function, or at the top of a module that
the rest of the package itself imports only inside functions (or for type checking), such as
``storage/parquet_store.py``; and only if the extra that provides it is declared. The test
extras are not such an extra: they are for tests, never for ``src/``."""

from __future__ import annotations

import ast
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
#: the module a distribution provides, where the names differ
PROVIDES = {"protobuf": "google"}
#: extras whose modules are not for src/ at all
NOT_FOR_SRC = {"test"}


def _module_names(deps: list[str]) -> set[str]:
    names = set()
    for d in deps:
        dist = d.split(";")[0].split("[")[0]
        for sep in "<>=!~ ":
            dist = dist.split(sep)[0]
        names.add(PROVIDES.get(dist.lower(), dist.lower().replace("-", "_")))
    return names


def _project() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]


def runtime_modules() -> set[str]:
    return _module_names(_project()["dependencies"])


def optional_modules() -> set[str]:
    """Modules of the optional extras a user installs for a feature (not the test extras)."""
    extras = _project().get("optional-dependencies", {})
    return _module_names(
        [d for name, deps in extras.items() if name not in NOT_FOR_SRC for d in deps]
    )


def _imports(tree: ast.AST, inside_function: bool = False):
    """(top-level module, inside a function?) of every absolute import under ``tree``."""
    for node in ast.iter_child_nodes(tree):
        in_fn = inside_function or isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
        if isinstance(node, ast.Import):
            for a in node.names:
                yield a.name.split(".")[0], inside_function
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            yield node.module.split(".")[0], inside_function
        yield from _imports(node, in_fn)


def imported_modules() -> dict[str, set[tuple[str, bool]]]:
    """Third-party module -> {(file, imported inside a function)}."""
    found: dict[str, set[tuple[str, bool]]] = {}
    for path in (ROOT / "src" / "pvarchiver").rglob("*.py"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for top, in_fn in _imports(tree):
            if top not in sys.stdlib_module_names and top != "pvarchiver":
                found.setdefault(top, set()).add((str(path.relative_to(ROOT)), in_fn))
    return found


def _dotted(path: Path) -> str:
    rel = path.relative_to(ROOT / "src").with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _internal_imports(path: Path) -> list[tuple[str, bool]]:
    """(pvarchiver module, lazily?) for each import of the package by the module at ``path``;
    lazily: inside a function or under ``if TYPE_CHECKING:``."""
    here = _dotted(path)
    package = here if path.name == "__init__.py" else here.rpartition(".")[0]
    out: list[tuple[str, bool]] = []

    def walk(tree: ast.AST, lazy: bool) -> None:
        for node in ast.iter_child_nodes(tree):
            inner = lazy or isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
            if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
                inner = True
            if isinstance(node, ast.ImportFrom):
                if node.level:
                    base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                    mod = ".".join(base + ([node.module] if node.module else []))
                else:
                    mod = node.module or ""
                if mod.startswith("pvarchiver"):
                    out.append((mod, lazy))
                    out.extend((f"{mod}.{a.name}", lazy) for a in node.names)
            elif isinstance(node, ast.Import):
                out.extend((a.name, lazy) for a in node.names if a.name.startswith("pvarchiver"))
            walk(node, inner)

    walk(ast.parse(path.read_text(encoding="utf-8")), False)
    return out


#: what every user's process loads: the package, its CLI and the whole served appliance (what
#: ``build_appliance`` and ``serve`` import in their bodies on every start, too)
ROOTS = (
    "pvarchiver",
    "pvarchiver.__main__",
    "pvarchiver.cli.main",
    "pvarchiver.cli.serve",
    "pvarchiver.appliance",
    "pvarchiver.web.app",
    "pvarchiver.web.server",
)


def eagerly_loaded_files() -> set[str]:
    """Files (relative to the root) of the modules that loading :data:`ROOTS` loads: their
    module-level imports, followed, with every package ``__init__`` on the way."""
    files = {_dotted(p): p for p in (ROOT / "src" / "pvarchiver").rglob("*.py")}
    seen: set[str] = set()
    todo = [r for r in ROOTS if r in files]
    while todo:
        mod = todo.pop()
        if mod in seen:
            continue
        seen.add(mod)
        parts = mod.split(".")
        todo += [".".join(parts[:i]) for i in range(1, len(parts)) if ".".join(parts[:i]) in files]
        todo += [t for t, lazy in _internal_imports(files[mod]) if not lazy and t in files]
    return {str(files[m].relative_to(ROOT)) for m in seen}


def violations(
    found: dict[str, set[tuple[str, bool]]], eager: set[str] | None = None
) -> dict[str, list[str]]:
    allowed, optional = runtime_modules(), optional_modules()
    eager = eager if eager is not None else eagerly_loaded_files()
    out: dict[str, list[str]] = {}
    for mod, uses in found.items():
        if mod in allowed:
            continue
        bad = [p for p, in_fn in uses if not (mod in optional and (in_fn or p not in eager))]
        if bad:
            out[mod] = sorted(bad)
    return out


def test_src_imports_only_runtime_dependencies() -> None:
    extra = violations(imported_modules())
    assert extra == {}, (
        "imported by src/ but not a runtime dependency (a declared optional extra's module "
        f"may be imported inside a function only): {extra}"
    )


def test_the_optional_extra_rule_is_strict() -> None:
    """The checker itself: an extra's module at module level, or a test-only module inside a
    function, is still refused; the postgres extra's psycopg inside a function is not."""
    assert "psycopg" in optional_modules() and "psycopg" not in runtime_modules()
    assert "httpx" not in optional_modules()
    src = "import psycopg\n\ndef f():\n    import psycopg\n    import httpx\n"
    uses: dict[str, set[tuple[str, bool]]] = {}
    for top, in_fn in _imports(ast.parse(src)):
        uses.setdefault(top, set()).add((f"x.py:{'fn' if in_fn else 'module'}", in_fn))
    eager = {"x.py:module", "x.py:fn"}
    assert violations(uses, eager) == {"psycopg": ["x.py:module"], "httpx": ["x.py:fn"]}
    # and the one real use is inside a function
    real = imported_modules().get("psycopg", set())
    assert real and all(in_fn for _p, in_fn in real), real


def test_pyarrow_is_reached_only_through_lazily_loaded_modules() -> None:
    """The parquet extra: pyarrow at the top of the Parquet modules is fine because neither
    the package, nor its CLI, nor the served appliance loads those modules at import; one
    eager import of them would make every user need pyarrow."""
    assert "pyarrow" in optional_modules() and "pyarrow" not in runtime_modules()
    eager = eagerly_loaded_files()
    uses = imported_modules().get("pyarrow", set())
    assert uses and all(in_fn or p not in eager for p, in_fn in uses), (uses, eager)
    # the checker is not vacuous: the serve path is followed into storage and the web app
    assert {"src/pvarchiver/storage/store.py", "src/pvarchiver/web/app.py"} <= eager
