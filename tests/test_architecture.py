"""The layering of docs/architecture.md, checked from the source: who may import whom, where SQL lives, no cycles."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "ragrec_django"

#: Layers below delivery: they never import the API, the Celery tasks or a management command.
BELOW_DELIVERY = (
    "ragrec_django.ml",
    "ragrec_django.ranking",
    "ragrec_django.generation",
    "ragrec_django.storage",
    "ragrec_django.services",
    "ragrec_django.ingest",
    "ragrec_django.evaluation",
)
DELIVERY_ONLY = (
    "ragrec_django.api",
    "ragrec_django.tasks",
    "ragrec_django.management",
    "ragrec_django.admin",
    "ragrec_django.templatetags",
    "ragrec_django.views",
)
#: Pure layers: no Django at all.
PURE = ("ragrec_django.ml", "ragrec_django.ranking", "ragrec_django.generation")
#: Plain-Python modules outside those folders that the pure layers may share.
PURE_SHARED = ("ragrec_django.limits", "ragrec_django.evaluation.metrics")
SQL = re.compile(r"\.cursor\(\)|\.raw\(|connection\.execute|\bexecute\(")


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules() -> dict[str, Path]:
    return {_module_name(path): path for path in sorted(PACKAGE.rglob("*.py")) if "migrations" not in path.parts}


MODULES = _modules()


def _imports(name: str, path: Path, *, top_level_only: bool) -> set[str]:
    """Package modules that ``name`` imports (relative imports resolved; ``from X import y`` counts X.y if a module)."""
    tree = ast.parse(path.read_text())
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    nodes = tree.body if top_level_only else ast.walk(tree)
    found = set()
    for node in nodes:
        if isinstance(node, ast.If) and top_level_only:  # `if TYPE_CHECKING:` blocks are not imports at run time
            continue
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            found.add(target)
            found.update("%s.%s" % (target, alias.name) for alias in node.names)
    return {module for module in found if module in MODULES and module != name}


def _in(module: str, prefixes) -> bool:
    return any(module == prefix or module.startswith(prefix + ".") for prefix in prefixes)


@pytest.mark.parametrize("name", [n for n in MODULES if _in(n, BELOW_DELIVERY)])
def test_layers_below_delivery_import_no_delivery_module(name):
    offending = {m for m in _imports(name, MODULES[name], top_level_only=False) if _in(m, DELIVERY_ONLY)}
    assert not offending, "%s imports delivery modules %s" % (name, sorted(offending))


@pytest.mark.parametrize("name", [n for n in MODULES if _in(n, PURE)])
def test_pure_layers_import_no_django(name):
    tree = ast.parse(MODULES[name].read_text())
    django = [
        node.lineno
        for node in ast.walk(tree)
        if isinstance(node, ast.Import)
        and any(a.name.split(".")[0] == "django" for a in node.names)
        or isinstance(node, ast.ImportFrom)
        and not node.level
        and (node.module or "").split(".")[0] == "django"
    ]
    assert not django, "%s imports Django on lines %s" % (name, django)
    outside = {m for m in _imports(name, MODULES[name], top_level_only=False) if not _in(m, PURE + PURE_SHARED)}
    assert not outside, "%s imports %s (outside ml/ranking/generation)" % (name, sorted(outside))


@pytest.mark.parametrize("name", [n for n in MODULES if not _in(n, ("ragrec_django.storage",))])
def test_sql_lives_in_storage(name):
    lines = [i for i, line in enumerate(MODULES[name].read_text().splitlines(), 1) if SQL.search(line)]
    assert not lines, "%s runs SQL on lines %s: move it to ragrec_django/storage/" % (name, lines)


@pytest.mark.parametrize("name", PURE_SHARED)
def test_shared_pure_modules_import_nothing_but_the_standard_library_and_numpy(name):
    tree = ast.parse(MODULES[name].read_text())
    roots = {
        alias.name.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names
    }
    roots |= {
        (node.module or "").split(".")[0]
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom) and not node.level
    }
    assert not roots & {"django", "ragrec_django", "rest_framework", "celery"}, roots


def test_no_import_cycles_among_package_modules():
    """Counting imports inside functions too: a lazy import that closes a loop is still a cycle."""
    graph = {name: _imports(name, path, top_level_only=False) for name, path in MODULES.items()}
    # A package's __init__ re-exporting its own submodules is not a cycle through the package.
    for name in graph:
        graph[name] = {m for m in graph[name] if not (MODULES[name].name == "__init__.py" and m.startswith(name + "."))}
    cycles, state, stack = [], {}, []

    def visit(node):
        state[node] = "open"
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == "open":
                cycles.append(stack[stack.index(nxt) :] + [nxt])
            elif nxt not in state:
                visit(nxt)
        stack.pop()
        state[node] = "done"

    for node in sorted(graph):
        if node not in state:
            visit(node)
    assert not cycles, "import cycles: %s" % ["  ->  ".join(cycle) for cycle in cycles]


def test_the_optional_api_package_is_a_leaf():
    importers = {
        name
        for name, path in MODULES.items()
        if not _in(name, ("ragrec_django.api",))
        and any(_in(m, ("ragrec_django.api",)) for m in _imports(name, path, top_level_only=False))
    }
    assert not importers, "%s import ragrec_django.api" % sorted(importers)
