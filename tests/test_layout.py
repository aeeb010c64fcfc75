"""The layout README's "How it works" describes: layers, one-way imports, public faces, one error root."""

from __future__ import annotations

import ast
import importlib
import inspect
import pkgutil
import runpy
import subprocess
import sys
from pathlib import Path

import automc
from automc.errors import AutomcError

ROOT = Path(__file__).resolve().parents[1]
GRAPH = runpy.run_path(str(ROOT / "docs" / "import_graph.py"))


def _functions_imports():
    """(file, line, module) of every automc import inside a function."""
    for f in sorted((ROOT / "automc").rglob("*.py")):
        tree = ast.parse(f.read_text())
        for fn in ast.walk(tree):
            if isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
                for node in ast.walk(fn):
                    if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("automc"):
                        yield f, node.lineno, node.module


def test_the_drawing_in_docs_and_readme_is_the_code_and_every_arrow_points_down():
    done = subprocess.run([sys.executable, str(ROOT / "docs" / "import_graph.py"), "--check"],
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr + done.stdout


def test_no_import_circle_between_modules():
    assert not GRAPH["circles"](GRAPH["module_arrows"](GRAPH["modules"]()))


def test_an_automc_import_inside_a_function_says_which_heavy_import_it_defers():
    for f, line, module in _functions_imports():
        text = f.read_text().splitlines()[line - 1]
        assert "# defers" in text, f"{f.relative_to(ROOT)}:{line}: from {module} import ... inside a function"


def test_no_module_imports_another_packages_private_module():
    for f in sorted((ROOT / "automc").rglob("*.py")):
        parts = f.relative_to(ROOT).with_suffix("").parts
        me = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        for node in ast.walk(ast.parse(f.read_text())):
            if isinstance(node, ast.ImportFrom) and node.level == 0 and (node.module or "").startswith("automc"):
                names = node.module.split(".")
                private = next((i for i, p in enumerate(names) if p.startswith("_") and not p.startswith("__")), None)
                if private is not None:
                    owner = ".".join(names[:private])
                    assert me == owner or me.startswith(owner + "."), f"{me} imports {node.module}"


def test_every_exception_automc_defines_derives_from_automc_error():
    for info in pkgutil.walk_packages(automc.__path__, "automc."):
        module = importlib.import_module(info.name)
        for _, cls in inspect.getmembers(module, inspect.isclass):
            if cls.__module__ == info.name and issubclass(cls, BaseException):
                assert issubclass(cls, AutomcError), f"{info.name}.{cls.__name__}"


def test_strategy_and_warm_start_names_come_from_their_registries():
    from automc.config import SearchConfig
    from automc.search.strategies import STRATEGIES, WARM_STARTS

    fields = SearchConfig.model_fields
    assert fields["strategy"].annotation is str and fields["strategy"].json_schema_extra["registry"] == STRATEGIES.names()
    assert fields["warm_start"].json_schema_extra["registry"] == WARM_STARTS.names()
