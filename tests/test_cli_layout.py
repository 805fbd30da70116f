"""The CLI's shape: one module per command, registered explicitly; only mnistlab.cli prints; the
library never imports the CLI; library warnings reach the terminal as `mnistlab: warning: ...`."""

from __future__ import annotations

import argparse
import ast
import importlib
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import mnistlab
from mnistlab import cli

PACKAGE = Path(mnistlab.__file__).resolve().parent
CLI_DIR = PACKAGE / "cli"
# The order `mnistlab --help` has always listed them in.
EXPECTED = ["train", "evaluate", "predict", "serve", "export", "sweep", "models", "datasets", "report", "experiment", "bench", "lm",
            "tabular"]


def _subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(action.choices)  # insertion order: the order of --help


def _funcs(parser: argparse.ArgumentParser) -> list:
    """The `func` defaults of a command's parser and of its own subcommands (`lm train`, `lm sample`)."""
    found = [parser.get_default("func")] if parser.get_default("func") else []
    if any(isinstance(a, argparse._SubParsersAction) for a in parser._actions):
        for child in _subparsers(parser).values():
            found += _funcs(child)
    return found


def _library_files() -> list[Path]:
    return sorted(p for p in PACKAGE.rglob("*.py") if CLI_DIR not in p.parents)


def _name(path: Path) -> str:
    return path.relative_to(PACKAGE.parent).as_posix()


# ----------------------------------------------------------------------------- one module per command


def test_every_command_has_its_own_module():
    commands = _subparsers(cli.build_parser())
    assert list(commands) == EXPECTED
    assert [m.__name__ for m in cli.COMMANDS] == [f"mnistlab.cli.{name}" for name in EXPECTED]
    for name, parser in commands.items():
        module = importlib.import_module(f"mnistlab.cli.{name}")
        assert callable(module.register), name
        funcs = _funcs(parser)
        assert funcs, f"{name} sets no func"
        for func in funcs:  # the command runs code of its own module, named cmd_*
            assert func.__module__ == module.__name__ and func.__name__.startswith("cmd_"), (name, func)
            assert getattr(module, func.__name__) is func


def test_python_m_mnistlab_help_lists_every_command_in_order():
    env = {**os.environ, "PYTHONPATH": str(PACKAGE.parent), "COLUMNS": "80"}
    proc = subprocess.run([sys.executable, "-m", "mnistlab", "--help"], capture_output=True, text=True, env=env,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
    listed = re.findall(r"^ {4}([a-z]+)\b", proc.stdout, flags=re.M)  # wrapped help lines are indented further
    assert listed == EXPECTED


def test_a_command_module_that_fails_to_import_is_an_error_not_a_missing_command():
    # sys.modules[name] = None makes `import name` raise ImportError, as a broken module would.
    code = "import sys; sys.modules['mnistlab.cli.report'] = None; from mnistlab.cli import main; main(['--help'])"
    env = {**os.environ, "PYTHONPATH": str(PACKAGE.parent)}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode != 0
    assert re.search(r"(ImportError|ModuleNotFoundError): .*mnistlab\.cli\.report", proc.stderr), proc.stderr
    assert "usage:" not in proc.stdout  # no --help without the command


# ----------------------------------------------------------------------------- only the CLI prints


def _flush_only_loops(tree: ast.AST) -> set[int]:
    """Lines of `for s in (sys.stdout, sys.stderr): ... s.flush()` loops that do nothing else with the
    streams: flushing before a fork or an exit writes nothing of its own."""
    lines = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.For) and isinstance(node.target, ast.Name):
            uses = [n for n in ast.walk(ast.Module(body=node.body, type_ignores=[]))
                    if isinstance(n, ast.Name) and n.id == node.target.id]
            flushes = [n for n in ast.walk(ast.Module(body=node.body, type_ignores=[]))
                       if isinstance(n, ast.Attribute) and n.attr == "flush" and isinstance(n.value, ast.Name)
                       and n.value.id == node.target.id]
            if uses and len(uses) == len(flushes):
                lines.add(node.lineno)
    return lines


def test_no_module_outside_the_cli_prints():
    offenders = []
    for path in _library_files():
        tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
        allowed = _flush_only_loops(tree)
        for node in ast.walk(tree):
            if isinstance(node, ast.Name) and node.id == "print":  # a call, or print passed as a callback
                offenders.append(f"{_name(path)}:{node.lineno}: print")
            elif (isinstance(node, ast.Attribute) and node.attr in ("stdout", "stderr")
                  and isinstance(node.value, ast.Name) and node.value.id == "sys" and node.lineno not in allowed):
                offenders.append(f"{_name(path)}:{node.lineno}: sys.{node.attr}")
    assert not offenders, "only mnistlab.cli prints:\n" + "\n".join(offenders)


def _imported_modules(source: str, package: str) -> set[str]:
    """Every module an import statement in `source` names, at any depth (function-level imports too);
    `package` is the package the module lives in, for relative imports."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                base = f"{parent}.{base}" if base else parent
            names.add(base)
            names |= {f"{base}.{a.name}" for a in node.names}  # `from mnistlab import cli`
    return names


def _names_cli(names: set[str]) -> bool:
    return any(n == "mnistlab.cli" or n.startswith("mnistlab.cli.") for n in names)


def _imports_cli(path: Path) -> bool:
    package = ".".join(path.relative_to(PACKAGE.parent).parent.parts)
    return _names_cli(_imported_modules(path.read_text(encoding="utf-8"), package))


def test_the_import_scan_sees_function_level_package_and_relative_imports():
    def caught(source: str, package: str = "mnistlab.lessons") -> bool:
        return _names_cli(_imported_modules(source, package))

    assert caught("def f():\n    from mnistlab.cli.train import config_from_args\n")
    assert caught("def f():\n    from mnistlab import cli\n")
    assert caught("def f():\n    import mnistlab.cli\n")
    assert caught("from .. import cli\n")
    assert caught("from . import _common\n", package="mnistlab.cli")
    assert not caught("from mnistlab.config import Config\nimport mnistlab.client\nfrom . import tabular\n")
    assert _imports_cli(PACKAGE / "cli" / "bench.py")  # a real module that imports it is caught


def test_bench_does_not_import_the_cli():
    files = sorted((PACKAGE / "bench").rglob("*.py"))
    assert len(files) >= 5  # the package, its worker, peers and the ports
    assert not [p for p in files if _imports_cli(p)]


def test_no_library_module_imports_the_cli():
    entry = PACKAGE / "__main__.py"  # `python -m mnistlab` is the command itself
    offenders = [_name(p) for p in _library_files() if p != entry and _imports_cli(p)]
    assert not offenders


# ----------------------------------------------------------------------------- library warnings reach the user


def test_unreadable_images_are_one_warning_line_from_the_cli(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))  # the decode cache stays in tmp_path
    rng = np.random.default_rng(0)
    for kind in ("a", "b"):
        folder = tmp_path / "shapes" / kind
        folder.mkdir(parents=True)
        for i in range(8):
            Image.fromarray(rng.integers(0, 256, (28, 28), dtype=np.uint8)).save(folder / f"{i}.png")
    (tmp_path / "shapes" / "a" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    code = cli.main(["train", "--dataset", f"folder:{tmp_path / 'shapes'}", "--model", "softmax", "--val-size", "0",
                     "--test-size", "0.25", "--steps", "1", "--no-save-run", "-q"])
    assert code == 0
    err = capsys.readouterr().err
    assert re.search(r"^mnistlab: warning: skipped 1 unreadable image \(first: .*broken\.png", err, flags=re.M), err
