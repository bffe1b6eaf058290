"""The package's import graph (module-level and deferred imports alike) has no cycles."""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "colorjax"

# (module, function) whose imports are left out of the graph, each with the reason and the
# change that removes it. Keep this list shrinking: an entry that no longer matches an import
# fails the test, so it is deleted together with the code it excused.
KNOWN: dict[tuple[str, str], str] = {}


def module_name(path: Path) -> str:
    """Dotted module name of a file under the package ('colorjax.train' for its __init__)."""
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _resolve(target: str, modules: set[str]) -> str | None:
    """The colorjax module an imported name lives in: the longest known dotted prefix."""
    while target and target not in modules:
        target = target.rpartition(".")[0]
    return target or None


def import_edges(modules: dict[str, Path]) -> tuple[dict[str, set[str]], set[tuple[str, str]]]:
    """(module -> modules it imports, the KNOWN entries used); imports of a package's own
    submodules from its __init__ count, the implicit import of parent packages does not."""
    graph: dict[str, set[str]] = {name: set() for name in modules}
    used: set[tuple[str, str]] = set()
    names = set(modules)
    for name, path in modules.items():
        tree = ast.parse(path.read_text(), str(path))
        is_package = path.name == "__init__.py"
        # Map every import node to its enclosing top-level function (or "" at module level).
        owner: dict[int, str] = {}
        for node in tree.body:
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                for inner in ast.walk(node):
                    owner[id(inner)] = node.name
        # Imports under `if TYPE_CHECKING:` never run, so they cannot form a runtime cycle.
        type_only = {
            id(inner)
            for node in ast.walk(tree)
            if isinstance(node, ast.If) and ast.unparse(node.test).endswith("TYPE_CHECKING")
            for inner in ast.walk(node)
        }
        for node in ast.walk(tree):
            if id(node) in type_only:
                continue
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    package = name if is_package else name.rpartition(".")[0]
                    for _ in range(node.level - 1):
                        package = package.rpartition(".")[0]
                    base = f"{package}.{base}".rstrip(".")
                targets = [f"{base}.{alias.name}" for alias in node.names]
            else:
                continue
            key = (name, owner.get(id(node), ""))
            if key in KNOWN:
                used.add(key)
                continue
            for target in targets:
                found = _resolve(target, names)
                if found is not None and found != name:
                    graph[name].add(found)
    return graph, used


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of the directed graph as a list of nodes (first repeated at the end), or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: finished
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return path[path.index(nxt) :] + [nxt]
            if nxt not in state:
                found = visit(nxt)
                if found:
                    return found
        path.pop()
        state[node] = 2
        return None

    for start in sorted(graph):
        if start not in state:
            found = visit(start)
            if found:
                return found
    return None


def package_modules() -> dict[str, Path]:
    """Every module of the colorjax package by dotted name."""
    return {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def test_find_cycle_finds_cycles_and_only_cycles():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": set()}) is None
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b", "d"}, "b": set(), "d": {"d2"}, "d2": {"d"}}) == ["d", "d2", "d"]


def test_import_edges_see_deferred_and_relative_imports(tmp_path, monkeypatch):
    pkg = tmp_path / "colorjax"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("def f():\n    from colorjax.sub import b\n")
    (pkg / "sub" / "__init__.py").write_text("from .b import g\n")
    (pkg / "sub" / "b.py").write_text("import colorjax.a\n\ndef g():\n    pass\n")
    monkeypatch.setattr(__import__(__name__), "PACKAGE", pkg)
    graph, _ = import_edges(package_modules())
    assert graph["colorjax.a"] == {"colorjax.sub.b"}
    assert graph["colorjax.sub"] == {"colorjax.sub.b"}
    assert graph["colorjax.sub.b"] == {"colorjax.a"}
    assert find_cycle(graph) == ["colorjax.a", "colorjax.sub.b", "colorjax.a"]


def test_colorjax_has_no_import_cycle():
    graph, used = import_edges(package_modules())
    cycle = find_cycle(graph)
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])
    stale = sorted(set(KNOWN) - used)
    assert not stale, f"KNOWN entries that no longer import anything, delete them: {stale}"


def test_checkpoint_does_not_import_training():
    # Checkpoints store whatever state they are given; the training code depends on them,
    # never the other way round.
    graph, _ = import_edges(package_modules())
    assert not {m for m in graph["colorjax.checkpoint"] if m.startswith("colorjax.train")}


def test_every_module_is_small_and_says_its_job():
    for name, path in package_modules().items():
        text = path.read_text()
        assert len(text.splitlines()) <= 500, f"{name} has grown past 500 lines; split it"
        if text.strip():
            assert ast.get_docstring(ast.parse(text)), f"{name} has no opening docstring"


def test_library_modules_hold_no_argparse_and_no_main():
    # Argument parsing belongs to colorjax/cli/<command>.py; the library is called with values.
    for name, path in package_modules().items():
        if name == "colorjax.cli" or name.startswith("colorjax.cli."):
            continue
        tree = ast.parse(path.read_text(), str(path))
        imported = {
            alias.name.split(".")[0]
            for node in ast.walk(tree)
            if isinstance(node, ast.Import)
            for alias in node.names
        } | {
            (node.module or "").split(".")[0]
            for node in ast.walk(tree)
            if isinstance(node, ast.ImportFrom)
        }
        assert "argparse" not in imported, f"{name} imports argparse; move it to colorjax/cli"
        functions = {
            node.name
            for node in tree.body
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
        }
        assert "main" not in functions, f"{name} defines main(); move it to colorjax/cli"


def test_import_colorjax_loads_no_input_pipeline_and_no_torch():
    # A fresh interpreter: this one has imported half the package already.
    code = (
        "import json, sys\n"
        "import colorjax\n"
        "heavy = ('grain', 'tensorflow_datasets', 'tensorflow', 'torch')\n"
        "print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in heavy)))\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["PYTHONPATH"] = str(PACKAGE.parent)
    proc = subprocess.run(
        [sys.executable, "-c", code],
        cwd=PACKAGE.parent,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout.strip().splitlines()[-1]) == []


def test_no_module_probes_a_model_for_attributes():
    # Callers learn what a model needs from its declared contract (models.model_contract),
    # never by getattr on the module: a new family is one file plus its registration.
    offenders = []
    for name, path in package_modules().items():
        for node in ast.walk(ast.parse(path.read_text())):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Name)
                and node.func.id in ("getattr", "hasattr")
                and node.args
                and "model" in ast.unparse(node.args[0])
                and "type(model)" not in ast.unparse(node.args[0])
            ):
                offenders.append(f"{name}: {ast.unparse(node)}")
    assert not offenders, offenders


# The layers of ../DESIGN.md, bottom to top: a module imports from its own layer or below
# (deferred imports inside functions included), and no package imports one that imports it.
LAYERS: tuple[tuple[str, ...], ...] = (
    ("errors", "fileio", "color", "parallel", "hostmem", "table"),
    ("data", "gamut", "losses", "metrics", "config", "configs"),
    ("models",),
    ("checkpoint", "weights"),
    ("train", "inference", "evaluate", "exported"),
    ("bench", "serve"),
    ("cli",),
)


def unit_of(module: str) -> str:
    """The package or top-level module of a colorjax module ('train' for colorjax.train.x)."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def package_graph(graph: dict[str, set[str]]) -> dict[str, set[str]]:
    """The module graph folded onto packages and top-level modules (self-edges dropped)."""
    folded: dict[str, set[str]] = {}
    for source, targets in graph.items():
        unit = unit_of(source)
        if not unit:  # colorjax/__init__.py: the lazy public API, resolved on attribute access
            continue
        folded.setdefault(unit, set()).update(t for t in map(unit_of, targets) if t and t != unit)
    return folded


def test_packages_point_one_way_down_the_layers():
    folded = package_graph(import_edges(package_modules())[0])
    layer = {unit: i for i, units in enumerate(LAYERS) for unit in units}
    unplaced = sorted(set(folded) - set(layer))
    assert not unplaced, f"place these in LAYERS (and DESIGN.md's layer list): {unplaced}"
    cycle = find_cycle(folded)
    assert cycle is None, "package cycle: " + " -> ".join(cycle or [])
    upward = sorted(
        f"{unit} (layer {layer[unit]}) imports {target} (layer {layer[target]})"
        for unit, targets in folded.items()
        for target in targets
        if layer[target] > layer[unit]
    )
    assert not upward, upward


def test_package_graph_folds_modules_and_sees_upward_imports():
    graph = {
        "colorjax.weights.loader": {"colorjax.train.state", "colorjax.weights.fit"},
        "colorjax.train.state": {"colorjax.models.registry"},
        "colorjax": {"colorjax.cli"},
    }
    assert package_graph(graph) == {"weights": {"train"}, "train": {"models"}}
