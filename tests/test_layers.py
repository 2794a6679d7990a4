"""The layering rules, checked by reading every chathub module's imports (nothing is run).

Dependencies point down: protocols -> hub -> storage, auth -> storage, and everyone ->
the leaf modules (plain data and names). So:

- no import cycle between chathub modules (imports under ``if TYPE_CHECKING:`` do not
  run, so they cannot make a cycle, and are left out of that check only);
- ``chathub/protocols/`` never imports ``chathub.store`` (protocols see the hub, and the
  hub's ``HubError`` codes for storage failures);
- ``chathub/store/`` imports neither ``chathub.hub`` nor ``chathub.auth``;
- ``chathub/hub/`` imports neither ``chathub.protocols`` nor ``chathub.auth``;
- the leaf modules import no chathub module but other leaves.
"""
from __future__ import annotations

import ast
from pathlib import Path
from typing import Iterator, NamedTuple

import pytest

from tests.support import REPO

PACKAGE = "chathub"

#: plain data and rules every layer may use; they use nothing but each other
LEAVES = frozenset(
    {"chathub.events", "chathub.names", "chathub.records", "chathub.text", "chathub.interfaces", "chathub.counters"}
)

#: (importer prefix, imported prefix, why it is wrong)
FORBIDDEN = [
    ("chathub.protocols", "chathub.store", "protocols never import the store: storage failures reach them as HubError codes"),
    ("chathub.store", "chathub.hub", "the store knows nothing of the hub"),
    ("chathub.store", "chathub.auth", "the store knows nothing of auth"),
    ("chathub.hub", "chathub.protocols", "the hub knows no wire format"),
    ("chathub.hub", "chathub.auth", "the hub knows no credentials: auth builds on the hub"),
    ("chathub.hub", "chathub.cluster", "the hub knows the backplane only as IBackplane: replication builds on the hub"),
    ("chathub.store", "chathub.cluster", "the store knows nothing of replication"),
    ("chathub.protocols", "chathub.cluster", "protocols talk to the hub, never to other nodes"),
]


class Import(NamedTuple):
    """One import of a chathub module by another, where it is written."""

    importer: str
    imported: str
    where: str  # path:line, from the top of the tree
    type_checking: bool  # under ``if TYPE_CHECKING:``: never runs

    def __str__(self) -> str:
        return f"{self.where}: {self.importer} imports {self.imported}"


def module_files(root: Path = REPO) -> dict[str, Path]:
    """Every module of the package by dotted name (a package by its ``__init__``)."""
    found = {}
    for path in sorted((root / PACKAGE).rglob("*.py")):
        parts = list(path.relative_to(root).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _walk(node: ast.AST, type_checking: bool = False) -> Iterator[tuple[ast.AST, bool]]:
    """Every import node under ``node`` (functions included), with whether it sits under
    ``if TYPE_CHECKING:``."""
    for child in ast.iter_child_nodes(node):
        if isinstance(child, (ast.Import, ast.ImportFrom)):
            yield child, type_checking
        elif isinstance(child, ast.If) and _is_type_checking(child.test):
            for stmt in child.body:
                yield from _walk(ast.Module(body=[stmt], type_ignores=[]), True)
            for stmt in child.orelse:
                yield from _walk(ast.Module(body=[stmt], type_ignores=[]), type_checking)
        else:
            yield from _walk(child, type_checking)


def imports_of(name: str, path: Path, modules: dict[str, Path], root: Path = REPO) -> list[Import]:
    """The chathub modules ``name`` imports: ``from a import b`` counts as an import of the
    module ``a.b`` when there is one, else of ``a``."""
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    is_package = path.name == "__init__.py"
    found = []
    for node, type_checking in _walk(tree):
        targets: list[str] = []
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        else:
            assert isinstance(node, ast.ImportFrom)
            base = node.module or ""
            if node.level:
                here = name.split(".") if is_package else name.split(".")[:-1]
                here = here[: len(here) - (node.level - 1)]
                base = ".".join(here + ([base] if base else []))
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                targets.append(sub if sub in modules else base)
        resolved = []
        for target in targets:
            if target == PACKAGE or target.startswith(PACKAGE + "."):
                # ``import chathub.a.b`` of a name that is not a module: its nearest module
                while target not in modules and "." in target:
                    target = target.rsplit(".", 1)[0]
                if target != name and target not in resolved:
                    resolved.append(target)
        where = f"{path.relative_to(root)}:{node.lineno}"
        found += [Import(name, target, where, type_checking) for target in resolved]
    return found


def all_imports(root: Path = REPO) -> list[Import]:
    """Every import between chathub modules under ``root``."""
    modules = module_files(root)
    return [imp for name, path in modules.items() for imp in imports_of(name, path, modules, root)]


def _within(module: str, prefix: str) -> bool:
    return module == prefix or module.startswith(prefix + ".")


def forbidden_imports(imports: list[Import]) -> list[str]:
    """Each import that breaks a layering rule, with the rule."""
    broken = []
    for imp in imports:
        for importer, imported, why in FORBIDDEN:
            if _within(imp.importer, importer) and _within(imp.imported, imported):
                broken.append(f"{imp} ({why})")
        if imp.importer in LEAVES and imp.imported not in LEAVES:
            broken.append(f"{imp} (a leaf module imports only other leaves)")
    return broken


def import_cycles(imports: list[Import]) -> list[list[str]]:
    """Groups of modules that import each other, directly or not, at run time (Tarjan's
    strongly connected components, iterative so a long chain cannot exhaust the stack)."""
    graph: dict[str, set[str]] = {}
    for imp in imports:
        if not imp.type_checking:
            graph.setdefault(imp.importer, set()).add(imp.imported)
            graph.setdefault(imp.imported, set())
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles = []
    for start in sorted(graph):
        if start in index:
            continue
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
            if low[node] == index[node]:
                group = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    group.append(member)
                    if member == node:
                        break
                if len(group) > 1:
                    cycles.append(sorted(group))
    return sorted(cycles)


def cycle_edges(imports: list[Import], group: list[str]) -> list[str]:
    """The imports that hold one cycle together, for the failure message."""
    members = set(group)
    return [str(i) for i in imports if not i.type_checking and i.importer in members and i.imported in members]


# -- the rules, on this tree ---------------------------------------------------------------


@pytest.fixture(scope="module")
def imports() -> list[Import]:
    return all_imports()


def test_no_import_cycles(imports):
    cycles = import_cycles(imports)
    assert not cycles, "import cycles:\n" + "\n\n".join("\n".join(cycle_edges(imports, c)) for c in cycles)


def test_dependencies_point_down(imports):
    broken = forbidden_imports(imports)
    assert not broken, "imports against the layering:\n" + "\n".join(broken)


# -- the checker itself, on small trees it must judge right ---------------------------------


def _tree(tmp_path: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return tmp_path


def test_checker_finds_cycles_through_functions_but_not_type_checking(tmp_path):
    root = _tree(
        tmp_path,
        {
            "chathub/__init__.py": "",
            "chathub/a.py": "from chathub import b\n",
            "chathub/b.py": "def f():\n    from chathub.c import x\n",
            "chathub/c.py": "import chathub.a\n",
            "chathub/d.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from chathub import e\n",
            "chathub/e.py": "from . import d\n",
        },
    )
    imports = all_imports(root)
    assert import_cycles(imports) == [["chathub.a", "chathub.b", "chathub.c"]]
    assert any(i.importer == "chathub.e" and i.imported == "chathub.d" for i in imports)  # relative


def test_checker_finds_forbidden_imports(tmp_path):
    root = _tree(
        tmp_path,
        {
            "chathub/__init__.py": "",
            "chathub/events.py": "from chathub.hub import rooms\n",
            "chathub/hub/__init__.py": "",
            "chathub/hub/rooms.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from chathub.auth.realm import R\n",
            "chathub/auth/__init__.py": "",
            "chathub/auth/realm.py": "from chathub.store.interfaces import IStore\n",
            "chathub/store/__init__.py": "",
            "chathub/store/interfaces.py": "import chathub.hub.rooms\n",
            "chathub/protocols/__init__.py": "",
            "chathub/protocols/line.py": "from ..store import interfaces\n",
        },
    )
    broken = forbidden_imports(all_imports(root))
    assert [b.split(": ", 1)[1].split(" (")[0] for b in broken] == [
        "chathub.events imports chathub.hub.rooms",
        "chathub.hub.rooms imports chathub.auth.realm",  # a type-only import is a dependency too
        "chathub.protocols.line imports chathub.store.interfaces",
        "chathub.store.interfaces imports chathub.hub.rooms",
    ]
