"""The architecture, checked: imports run one way through the layers and never in a circle.

Every import counts, including the lazy ones inside functions (they are imports all the same).
"""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src" / "mnistlab"

# Higher layers may import lower (or equal) ones, never higher. runs/checkpoint.py is the file
# format every reader shares (predict, evaluate, the estimator), so it sits just above models.
LAYERS = {
    "mnistlab": 0, "allocator": 0, "config": 0, "cpus": 0, "device": 0, "errors": 0, "fileio": 0,
    "data": 1, "models": 1,
    "runs.checkpoint": 1.5,
    "training": 2, "reporting": 2,
    "evaluation": 3,
    "runs": 4,
    "lessons": 5, "bench": 5, "estimator": 5, "serve": 5, "export": 5, "sweep": 5,
    "cli": 6, "__main__": 7,
}


def _modules() -> dict[str, Path]:
    out = {}
    for path in SRC.rglob("*.py"):
        parts = list(path.relative_to(SRC.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


def _graph() -> dict[str, set[str]]:
    modules = _modules()

    def resolve(name: str) -> str:
        while name not in modules and "." in name:
            name = name.rsplit(".", 1)[0]
        return name

    graph: dict[str, set[str]] = {m: set() for m in modules}
    for mod, path in modules.items():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                targets = [f"{node.module}.{a.name}" if f"{node.module}.{a.name}" in modules else node.module
                           for a in node.names]
            else:
                continue
            assert not (isinstance(node, ast.ImportFrom) and node.level), f"{path}: relative import"
            graph[mod] |= {resolve(t) for t in targets if t.split(".")[0] == "mnistlab"} - {mod}
    return graph


def _layer(module: str) -> float:
    parts = module.split(".")[1:]
    for depth in (2, 1):
        key = ".".join(parts[:depth]) if len(parts) >= depth else None
        if key in LAYERS:
            return LAYERS[key]
    return LAYERS["mnistlab"] if not parts else LAYERS[parts[0]]


def test_every_top_level_part_has_a_layer():
    tops = {m.split(".")[1] for m in _modules() if "." in m}
    assert tops <= set(LAYERS), f"add a layer for {sorted(tops - set(LAYERS))}"


def test_imports_never_run_upwards():
    upward = [f"{a} ({_layer(a)}) imports {b} ({_layer(b)})" for a, targets in _graph().items() for b in targets
              if _layer(b) > _layer(a)]
    assert not upward, "\n".join(sorted(upward))


def test_no_import_circles():
    graph = _graph()
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []

    def visit(v: str) -> None:  # Tarjan's strongly connected components
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for v in graph:
        if v not in index:
            visit(v)
    assert not cycles, f"import circles: {cycles}"


def test_every_package_says_what_lives_there():
    for init in SRC.rglob("__init__.py"):
        doc = ast.get_docstring(ast.parse(init.read_text(encoding="utf-8")))
        assert doc and len(doc) > 20, f"{init} needs a docstring saying what lives in its folder"
