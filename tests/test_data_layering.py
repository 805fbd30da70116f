"""The data/ package's imports, read from the source (every import, lazy ones inside functions too).

data/ sits low in the layers: it may import itself and the base modules (config, device, errors,
fileio) and nothing above them, with no circle among its own modules. The NumPy-only parts (splits,
the registry, the IDX loader, the cache) must not pull in the torch loader.
"""

from __future__ import annotations

import ast
from pathlib import Path

import mnistlab.data

PACKAGE = "mnistlab.data"
DATA_DIR = Path(mnistlab.data.__file__).parent
SRC_ROOT = DATA_DIR.parents[1]  # the folder holding mnistlab/
BASE = {"mnistlab.config", "mnistlab.device", "mnistlab.errors", "mnistlab.fileio"}


def _module_name(path: Path) -> str:
    parts = path.relative_to(SRC_ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _is_module(name: str) -> bool:
    path = SRC_ROOT.joinpath(*name.split("."))
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


def _imports(path: Path) -> set[str]:
    """Every module `path` imports, anywhere in the file; `from a import b` counts as a.b when b is a module."""
    here = _module_name(path)
    package = here if path.name == "__init__.py" else here.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: resolve against this module's package
                base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1])
                module = f"{base}.{node.module}" if node.module else base
            else:
                module = node.module or ""
            for alias in node.names:
                sub = f"{module}.{alias.name}"
                found.add(sub if _is_module(sub) else module)
    return found


def _graph() -> dict[str, set[str]]:
    return {_module_name(p): _imports(p) for p in sorted(DATA_DIR.glob("*.py"))}


def _closure(graph: dict[str, set[str]], start: str) -> set[str]:
    seen, todo = set(), [start]
    while todo:
        for dep in graph.get(todo.pop(), set()):
            if dep not in seen:
                seen.add(dep)
                todo.append(dep)
    return seen


def test_the_scan_sees_the_package():
    graph = _graph()
    assert {"mnistlab.data", "mnistlab.data.raw", "mnistlab.data.cache", "mnistlab.data.splits",
            "mnistlab.data.generated", "mnistlab.data.loader"} <= set(graph)
    assert "mnistlab.data.cache" in graph["mnistlab.data.raw"]  # from-imports resolve to modules
    assert "mnistlab.data.raw" in graph["mnistlab.data.loader"]  # lazy imports inside functions count


def test_data_imports_nothing_above_it():
    bad = {
        f"{module} imports {dep}"
        for module, deps in _graph().items() for dep in deps
        if dep.split(".")[0] == "mnistlab" and not (dep == PACKAGE or dep.startswith(PACKAGE + ".") or dep in BASE)
    }
    assert not bad, sorted(bad)


def test_data_has_no_import_circles():
    graph = {m: {d for d in deps if d == PACKAGE or d.startswith(PACKAGE + ".")} for m, deps in _graph().items()}
    circles = sorted(m for m in graph if m in _closure(graph, m))
    assert not circles, f"modules on an import circle: {circles}"


def test_numpy_parts_do_not_import_the_torch_loader():
    graph = _graph()
    for module in ("mnistlab.data.splits", "mnistlab.data.raw", "mnistlab.data.sources", "mnistlab.data.cache",
                   "mnistlab.data.generated", "mnistlab.data.custom"):
        reached = _closure(graph, module) | {module}
        assert "mnistlab.data.loader" not in reached, module
        assert not {d for m in reached for d in graph.get(m, set()) if d.split(".")[0] == "torch"}, module


def test_no_module_special_cases_a_data_set_name():
    """Only the registrations (sources.py, generated.py) and multimnist's own MNIST source name data sets."""
    names = {"multimnist", "synthetic", "mnist", "fashion-mnist", "kmnist"}
    allowed = {"sources.py", "generated.py", "__init__.py"}
    for path in DATA_DIR.glob("*.py"):
        if path.name in allowed:
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Compare):
                constants = {c.value for c in ast.walk(node) if isinstance(c, ast.Constant)}
                assert not constants & names, f"{path.name}:{node.lineno} compares with a data set name"
