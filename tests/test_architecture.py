"""The package's rooms and their import rules, measured from the code's own imports.

Every ``import`` and ``from ... import`` counts, also those inside functions and under
``TYPE_CHECKING``: a deferred import still is a dependency, and the day someone hoists it a loop
becomes an import-time failure. The rooms (DEVELOPING.md, "Layout"), lowest first:

- ``contract``: what every side agrees on (card, preprocess, messages, metrics, operating_point);
- ``plugins``: ``backends/``, ``sources/``, ``publishers/``, ``parts`` and ``inference`` (the card +
  a backend);
- ``lineops``: line operations beside the frame path;
- ``config``: ``config.py`` (it embeds the plug-ins' and line operations' config sections);
- ``runtime``: the daemon's frame path;
- ``toolchain``: data, models, evaluation, export, training (it may use the runtime's pure parts,
  e.g. ``runtime.decision`` to evaluate a fusion rule offline exactly as the daemon fuses);
- ``faces``: the CLI, its commands, the console, the docs generator, model deployment.

A room may import its own room and the rooms its rule lists, nothing else: the runtime never reaches
the toolchain (the daemon needs no torch), line operations never reach the runtime that drives them.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "edge_inspector"

# module (or package prefix) -> room; the longest matching prefix wins
ROOM_OF = {
    "edge_inspector": "contract",
    "edge_inspector.card": "contract",
    "edge_inspector.preprocess": "contract",
    "edge_inspector.messages": "contract",
    "edge_inspector.metrics": "contract",
    "edge_inspector.operating_point": "contract",
    "edge_inspector.errors": "contract",
    "edge_inspector.registry": "contract",
    "edge_inspector.backends": "plugins",
    "edge_inspector.sources": "plugins",
    "edge_inspector.publishers": "plugins",
    "edge_inspector.parts": "plugins",
    "edge_inspector.inference": "plugins",
    "edge_inspector.lineops": "lineops",
    "edge_inspector.config": "config",
    "edge_inspector.runtime": "runtime",
    "edge_inspector.data": "toolchain",
    "edge_inspector.models": "toolchain",
    "edge_inspector.evaluate": "toolchain",
    "edge_inspector.export": "toolchain",
    "edge_inspector.toolchain": "toolchain",
    "edge_inspector.commands": "faces",
    "edge_inspector.cli": "faces",
    "edge_inspector.__main__": "faces",
    "edge_inspector.console": "faces",
    "edge_inspector.docsgen": "faces",
    "edge_inspector.deploy_model": "faces",
}

# room -> the rooms it may import (besides itself)
MAY_IMPORT = {
    "contract": set(),
    "plugins": {"contract"},
    "lineops": {"contract", "plugins"},
    "config": {"contract", "plugins", "lineops"},
    "runtime": {"contract", "plugins", "lineops", "config"},
    "toolchain": {"contract", "plugins", "lineops", "config", "runtime"},
    "faces": {"contract", "plugins", "lineops", "config", "runtime", "toolchain"},
}


def _modules() -> dict[str, Path]:
    found = {}
    for path in PACKAGE.rglob("*.py"):
        if "__pycache__" in path.parts or "migrations" in path.parts:
            continue
        parts = path.relative_to(ROOT).with_suffix("").parts
        found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


def _resolve(name: str, path: Path, level: int, module: str | None) -> str:
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    base = package.split(".")
    if level > 1:
        base = base[: len(base) - level + 1]
    return ".".join(base + ([module] if module else []))


def import_graph() -> dict[str, set[str]]:
    """module -> the package's modules it imports (``from pkg import name`` counts as pkg, or as
    pkg.name where that is a module)."""
    modules = _modules()
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        targets: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                wanted = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = _resolve(name, path, node.level, node.module) if node.level else (node.module or "")
                # `from pkg import mod` names pkg.mod; `from pkg.mod import name` names pkg.mod
                wanted = [f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base for a in node.names]
            else:
                continue
            for target in wanted:
                while target and target not in modules:
                    target = target.rpartition(".")[0]
                if target and target != name:
                    targets.add(target)
        graph[name] = targets
    return graph


def room(module: str) -> str:
    """The room of a module: its own entry or its package's (the package face ``edge_inspector`` itself
    places nothing: a new top-level module must be given its room here, and DEVELOPING.md's layout)."""
    parts = module.split(".")
    for n in range(len(parts), 1, -1):
        if ".".join(parts[:n]) in ROOM_OF:
            return ROOM_OF[".".join(parts[:n])]
    if module == "edge_inspector":
        return ROOM_OF[module]
    raise AssertionError(f"{module}: in no room; add it to ROOM_OF in tests/test_architecture.py")


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = 0
    for start in graph:
        if start in index:
            continue
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = counter
        counter += 1
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph.get(child, ())))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


def test_the_walker_sees_a_cycle_and_an_upward_import() -> None:
    """The checks below can fail: a made-up graph with a loop and a runtime -> toolchain arrow."""
    fake = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}
    assert cycles(fake) == [["a", "b", "c"]]
    assert "toolchain" not in MAY_IMPORT[room("edge_inspector.runtime.pipeline")]
    assert room("edge_inspector.models.feature_memory") == "toolchain"
    with pytest.raises(AssertionError, match="in no room"):
        room("edge_inspector.newly_added")
    graph = import_graph()
    assert "edge_inspector.lineops.coordinator" in graph["edge_inspector.runtime.daemon"]  # deferred imports count


def test_every_module_has_a_room() -> None:
    for module in import_graph():
        room(module)


def test_no_import_cycle() -> None:
    found = cycles(import_graph())
    assert not found, f"import cycles (every import counts, deferred ones too): {found}"


def test_no_import_between_rooms_against_their_rules() -> None:
    wrong = []
    for module, targets in sorted(import_graph().items()):
        here = room(module)
        for target in sorted(targets):
            there = room(target)
            if there != here and there not in MAY_IMPORT[here]:
                wrong.append(f"{module} ({here}) imports {target} ({there})")
    assert not wrong, "imports against the rooms' rules:\n" + "\n".join(wrong)


def test_runtime_rooms_import_without_torch() -> None:
    """The daemon's rooms import with torch made unimportable (the runtime image has no torch)."""
    rooms = ("contract", "plugins", "lineops", "config", "runtime")
    names = sorted(m for m in import_graph() if room(m) in rooms)
    code = ("import importlib, sys\n"
            "for blocked in ('torch', 'torchvision', 'timm'): sys.modules[blocked] = None\n"
            f"for name in {names!r}: importlib.import_module(name)\n"
            "print(len([m for m in sys.modules if m.startswith('edge_inspector')]))")
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert int(proc.stdout.strip()) >= len(names)
