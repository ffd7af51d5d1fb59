"""The package's import graph, read from the source (every import statement, those inside functions too):
no cycles, and no module imports one in a higher layer than its own (LAYERS, lowest first)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"
PACKAGE = "deepfake_core"

# Lowest first: one subpackage = one layer. A module may import modules of its own layer or a lower one.
# "x.*": the subpackage x (its __init__ and every module in it); a bare name: a module at the package root, which
# keeps only the basics, so a new root module fails test_every_module_has_a_layer until it is given a layer here.
LAYERS: list[tuple[str, set[str]]] = [
    ("root: errors, settings, limits, process", {"version", "errors", "offline", "process", "settings", "limits"}),
    ("media", {"media.*"}),
    ("models", {"models.*"}),
    ("faces", {"faces.*"}),
    ("analysis", {"analysis.*"}),
    ("training", {"train.*"}),
    ("scan", {"scan.*"}),
    ("front ends", {"", "__main__", "cli.*", "api.*", "webapp.*"}),
]
STANDALONE = {"models.registry", "version", "errors", "offline"}  # import nothing from the package at all


def module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


MODULES = {module_name(p): p for p in sorted((SRC / PACKAGE).rglob("*.py"))}


def resolve(importer: str, node: ast.AST) -> list[str]:
    """The package modules an import statement of `importer` names (a package's __init__ by its name)."""
    is_package = MODULES[importer].name == "__init__.py"
    if isinstance(node, ast.Import):
        names = [alias.name for alias in node.names]
    else:
        if node.level:
            base = importer.split(".")
            base = base[:len(base) - node.level + (1 if is_package else 0)]
            prefix = ".".join(base + ([node.module] if node.module else []))
        else:
            prefix = node.module or ""
        # `from pkg import name`: the submodule pkg.name when there is one, else pkg itself
        names = [f"{prefix}.{a.name}" if f"{prefix}.{a.name}" in MODULES else prefix for a in node.names]
    out = []
    for name in names:
        while name and name not in MODULES:  # `import deepfake_core.x.y` imports the module it names
            name = name.rpartition(".")[0]
        if name.startswith(PACKAGE) and name != importer:
            out.append(name)
    return out


def graph() -> dict[str, set[str]]:
    edges: dict[str, set[str]] = {}
    for name, path in MODULES.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
        edges[name] = {target for node in ast.walk(tree) if isinstance(node, (ast.Import, ast.ImportFrom))
                       for target in resolve(name, node)}
    return edges


def layer_of(module: str) -> int:
    short = module[len(PACKAGE) + 1:] if module != PACKAGE else ""
    for index, (_, members) in enumerate(LAYERS):
        for member in members:
            if short == member or (member.endswith(".*") and (short == member[:-2] or short.startswith(member[:-1]))):
                return index
    raise AssertionError(f"{module} is in no layer: add it to LAYERS in tests/test_import_graph.py")


def find_cycle(edges: dict[str, set[str]]) -> list[str] | None:
    """One import cycle as a path [a, b, ..., a], or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for target in sorted(edges.get(node, ())):
            if state.get(target) == 1:
                return stack[stack.index(target):] + [target]
            if target not in state and (cycle := visit(target)):
                return cycle
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(edges):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


EDGES = graph()


def test_the_graph_is_read():
    """The control: known edges are seen, a function-level import too (load imports the pipeline inside
    load_detector), and `from . import registry` names the module."""
    assert "deepfake_core.analysis.pipeline" in EDGES["deepfake_core.analysis.load"]
    assert "deepfake_core.models.registry" in EDGES["deepfake_core.cli.weights"]
    assert "deepfake_core.errors" in EDGES["deepfake_core.settings"]
    assert "deepfake_core.cli.analyze" in EDGES["deepfake_core.cli"]


def test_every_module_has_a_layer():
    for module in MODULES:
        layer_of(module)


def test_no_import_cycles():
    assert find_cycle(EDGES) is None, " -> ".join(find_cycle(EDGES))


def test_the_cycle_finder_finds_a_cycle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_no_module_imports_a_higher_layer():
    upward = [f"{a} ({LAYERS[layer_of(a)][0]}) imports {b} ({LAYERS[layer_of(b)][0]})"
              for a, targets in sorted(EDGES.items()) for b in sorted(targets) if layer_of(b) > layer_of(a)]
    assert not upward, "\n".join(upward)


@pytest.mark.parametrize("module", sorted(STANDALONE))
def test_the_bottom_modules_import_nothing_from_the_package(module):
    assert EDGES[f"{PACKAGE}.{module}"] == set()


def test_subcommand_modules_never_import_the_cli_package():
    """cli/__init__ imports each subcommand module by name; they share cli/common.py, never cli/__init__."""
    subcommands = [m for m in MODULES if m.startswith(f"{PACKAGE}.cli.")]
    assert subcommands
    for module in subcommands:
        assert f"{PACKAGE}.cli" not in EDGES[module], module


CLI_IMPORTERS_LEFT: set[str] = set()  # none: ray_scan's command-line half is in cli/scan.py


def test_only_the_command_line_imports_the_cli():
    """The library owns the policy (settings, loading, media files): no module outside cli/ borrows from the
    command line, except the entry point that runs it."""
    entry_points = {PACKAGE, f"{PACKAGE}.__main__"}
    borrowers = sorted(a for a, targets in EDGES.items()
                       if not (a == f"{PACKAGE}.cli" or a.startswith(f"{PACKAGE}.cli."))
                       and any(b == f"{PACKAGE}.cli" or b.startswith(f"{PACKAGE}.cli.") for b in targets))
    assert set(borrowers) - entry_points - CLI_IMPORTERS_LEFT == set(), borrowers
    assert f"{PACKAGE}.__main__" in borrowers  # the control: an import of cli is seen


def test_importing_the_package_has_no_side_effects_and_the_command_sets_the_policy():
    """`import deepfake_core` leaves the environment and the SIGTERM handler alone; the command's main sets the
    OpenMP policy and the hubs offline (process.configure_process) before anything imports torch, and puts the
    SIGTERM handler back. `__version__` is the installed one."""
    import json
    import subprocess
    import sys

    probe = ("import json, os, signal, sys\n"
             "before = dict(os.environ)\n"
             "import deepfake_core\n"
             "from importlib import metadata\n"
             "same = dict(os.environ) == before and signal.getsignal(signal.SIGTERM) == signal.SIG_DFL\n"
             "from deepfake_core.cli import main\n"
             "code = main(['weights', 'path'])\n"
             "same = same and signal.getsignal(signal.SIGTERM) == signal.SIG_DFL  # main's handler is gone\n"
             "print(json.dumps({'same': same, 'omp': os.environ.get('OMP_WAIT_POLICY'), 'code': code,\n"
             "                  'hub': os.environ.get('HF_HUB_OFFLINE'), 'torch': 'torch' in sys.modules,\n"
             "                  'version': deepfake_core.__version__ == metadata.version('deepfake-detector')}))\n")
    env = {k: v for k, v in __import__("os").environ.items() if k not in ("OMP_WAIT_POLICY", "HF_HUB_OFFLINE")}
    env["PYTHONPATH"] = str(SRC)
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result == {"same": True, "omp": "PASSIVE", "code": 0, "hub": "1", "torch": False, "version": True}
