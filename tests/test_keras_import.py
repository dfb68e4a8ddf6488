"""Keras is imported in one place, mnist_pipeline/backend.py, once the backend is chosen:
no other module, stage or benchmark imports it itself, and loading a stage's script
imports none of it (train chooses its backend from params.yaml first)."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

from .helpers import PROJECT_ROOT

CODE = sorted(
    path
    for folder in ("mnist_pipeline", "stages", "bench")
    for path in (PROJECT_ROOT / folder).glob("*.py")
    if path.name != "backend.py"
)


def keras_imports(path: Path) -> list[int]:
    """The lines of `path` that import keras, outside `if TYPE_CHECKING:` blocks."""
    tree = ast.parse(path.read_text())
    typing_only = {
        id(inner)
        for node in ast.walk(tree)
        if isinstance(node, ast.If) and ast.unparse(node.test) == "TYPE_CHECKING"
        for statement in node.body
        for inner in ast.walk(statement)
    }
    lines = []
    for node in ast.walk(tree):
        if id(node) in typing_only:
            continue
        if isinstance(node, ast.Import):
            modules = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            modules = [node.module or ""]
        else:
            continue
        if any(module.split(".")[0] == "keras" for module in modules):
            lines.append(node.lineno)
    return lines


@pytest.mark.parametrize("path", CODE, ids=[str(p.relative_to(PROJECT_ROOT)) for p in CODE])
def test_no_module_but_the_backend_module_imports_keras(path):
    assert not keras_imports(path), f"{path.name} imports keras: use import_keras()"


@pytest.mark.parametrize("stage", ["train", "evaluate", "export"])
def test_loading_a_stage_script_imports_no_keras(stage):
    loaded = subprocess.run(
        [
            sys.executable,
            "-c",
            f"import runpy, sys; runpy.run_path('stages/{stage}.py'); print('keras' in sys.modules)",
        ],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    assert loaded.stdout.strip() == "False"
