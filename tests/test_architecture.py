"""The tree shows the data flow: packages per stage, in layers, with no import circles.

Every import counts, wherever it is written (module top, inside a function, under
`TYPE_CHECKING`): a circle through a type hint is still two modules that cannot be read,
tested or moved apart. docs/architecture.md explains the layers; `LAYERS` is its rule.
"""

from __future__ import annotations

import ast
import re
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "src" / "voxloop"

# Lowest first. A package may import its own modules and those of lower layers, never a
# higher one. The last layer holds the entry points, which may import anything.
LAYERS: list[set[str]] = [
    {"errors", "clock"},
    {"config"},
    {"audio", "telemetry", "protocol"},
    {"providers"},
    {"store"},
    {"memory"},
    {"hearing"},
    {"reply"},
    {"turns"},
    {"session"},
    {"server"},
    {"client", "testing", "bench", "app", "cli", "__main__"},
]
TOP_LEVEL_MODULES = {"__init__", "__main__", "app", "cli", "clock", "errors"}


def modules(root: Path) -> dict[str, Path]:
    """Dotted name → file, for every module and package under `root` (a package dir)."""
    found = {}
    for path in root.rglob("*.py"):
        parts = [root.name, *path.relative_to(root).with_suffix("").parts]
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


def import_graph(root: Path) -> dict[str, set[str]]:
    """Module → the modules of the same package tree it imports (all imports, anywhere)."""
    mods = modules(root)

    def known(name: str) -> str | None:
        while name and name not in mods:
            name = name.rpartition(".")[0]
        return name or None

    graph: dict[str, set[str]] = defaultdict(set)
    for name, path in mods.items():
        is_pkg = path.name == "__init__.py"
        here = name if is_pkg else name.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            targets: list[str | None] = []
            if isinstance(node, ast.Import):
                targets = [known(a.name) for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    up = here.split(".")[: len(here.split(".")) - (node.level - 1)]
                    base = ".".join([*up, *([base] if base else [])])
                for a in node.names:
                    sub = f"{base}.{a.name}"
                    targets.append(sub if sub in mods else known(base))
            graph[name].update(t for t in targets if t and t != name)
    return graph


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected groups of more than one module (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                found.append(sorted(group))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def layer_breaches(graph: dict[str, set[str]], layers: list[set[str]]) -> list[str]:
    """Imports from a package into a higher layer's package ("a -> b")."""
    rank = {name: i for i, layer in enumerate(layers) for name in layer}

    def part(module: str) -> str | None:
        parts = module.split(".")
        return parts[1] if len(parts) > 1 else None  # None: the package's own __init__

    breaches = []
    for src, targets in sorted(graph.items()):
        for dst in sorted(targets):
            a, b = part(src), part(dst)
            if a is None or b is None or a == b:
                continue
            if a not in rank or b not in rank:
                breaches.append(f"{src} -> {dst} (a package LAYERS does not place)")
            elif rank[b] > rank[a]:
                breaches.append(f"{src} -> {dst}")
    return breaches


# -- the rules, on voxloop itself ------------------------------------------------------------


def test_no_module_imports_a_module_that_imports_it_back():
    assert circles(import_graph(PACKAGE)) == []


def test_each_package_imports_only_its_own_layer_and_lower_ones():
    assert layer_breaches(import_graph(PACKAGE), LAYERS) == []


def test_the_top_level_holds_packages_and_a_handful_of_modules():
    top = {p.stem for p in PACKAGE.glob("*.py")}
    assert top <= TOP_LEVEL_MODULES, f"new top-level modules: {sorted(top - TOP_LEVEL_MODULES)}"
    packages = {p.name for p in PACKAGE.iterdir() if (p / "__init__.py").exists()}
    placed = set().union(*LAYERS)
    assert packages <= placed, f"packages LAYERS does not place: {sorted(packages - placed)}"


def test_architecture_doc_names_every_package_and_no_other():
    """docs/architecture.md has a line `- **name/**` for each package and subpackage."""
    doc = (ROOT / "docs" / "architecture.md").read_text()
    named = set(re.findall(r"^\s*- \*\*`?([a-z_/]+)/`?\*\*", doc, flags=re.M))
    packages = {
        str(p.parent.relative_to(PACKAGE))
        for p in PACKAGE.rglob("__init__.py")
        if p.parent != PACKAGE
    }
    assert named == packages, (
        f"in the tree, not the doc: {sorted(packages - named)}; "
        f"in the doc, not the tree: {sorted(named - packages)}"
    )


def test_the_public_entry_points_still_import():
    from voxloop.app import app_from_env, create_app
    from voxloop.cli import main

    assert callable(create_app) and callable(app_from_env) and callable(main)


# -- the checker finds what it is for ---------------------------------------------------------


def _tree(tmp_path: Path, files: dict[str, str]) -> Path:
    root = tmp_path / "pkg"
    for name, text in {"__init__.py": "", **files}.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


def test_a_circle_through_a_type_hint_or_a_function_is_found(tmp_path):
    root = _tree(
        tmp_path,
        {
            "low/__init__.py": "",
            "low/a.py": "from typing import TYPE_CHECKING\n"
            "if TYPE_CHECKING:\n    from pkg.high.b import B\n",
            "high/__init__.py": "",
            "high/b.py": "def f():\n    from pkg.low import a\n",
            "high/c.py": "from . import b\n",
        },
    )
    graph = import_graph(root)
    assert circles(graph) == [["pkg.high.b", "pkg.low.a"]]
    assert graph["pkg.high.c"] == {"pkg.high.b"}  # relative imports resolve


def test_an_import_into_a_higher_layer_is_a_breach(tmp_path):
    root = _tree(
        tmp_path,
        {
            "low/__init__.py": "",
            "low/a.py": "import pkg.high.b\n",
            "high/__init__.py": "",
            "high/b.py": "from pkg.low.a import x\n",
            "stray/__init__.py": "",
            "stray/s.py": "from pkg.low import a\n",
        },
    )
    breaches = layer_breaches(import_graph(root), [{"low"}, {"high"}])
    assert breaches == [
        "pkg.low.a -> pkg.high.b",
        "pkg.stray.s -> pkg.low.a (a package LAYERS does not place)",
    ]
