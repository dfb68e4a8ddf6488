"""dvc.yaml lists exactly what each stage reads: its script, every project module the
script imports (directly or through another module), and the params sections it loads."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
import yaml

from mnist_pipeline import paths

from .helpers import PROJECT_ROOT

DVC_YAML = yaml.safe_load((PROJECT_ROOT / "dvc.yaml").read_text())
PIPELINE = DVC_YAML["stages"]
PACKAGE = "mnist_pipeline"


def project_imports(source: Path) -> set[str]:
    """Project modules that `source` imports at run time (not under `if TYPE_CHECKING`)."""
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and getattr(node.test, "id", None) == "TYPE_CHECKING":
            return
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith(PACKAGE):
            if node.module == PACKAGE:  # from mnist_pipeline import download
                found.update(f"{PACKAGE}.{alias.name}" for alias in node.names)
            else:
                found.add(node.module)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith(f"{PACKAGE}."))
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(ast.parse(source.read_text()))
    return found


def module_closure(script: Path) -> set[str]:
    """Files of every project module `script` runs, following imports between modules."""
    pending, seen = [script], set()
    while pending:
        for module in project_imports(pending.pop()):
            file = f"{module.replace('.', '/')}.py"
            if file not in seen:
                seen.add(file)
                pending.append(PROJECT_ROOT / file)
    return seen


def code_deps(stage: dict) -> set[str]:
    return {d for d in stage["deps"] if d.endswith(".py")}


@pytest.mark.parametrize("name", list(PIPELINE))
def test_stage_code_deps_are_exactly_its_script_and_the_modules_it_imports(name):
    script = f"stages/{name}.py"
    stage = PIPELINE[name]
    assert stage["cmd"] == f"python {script}"
    assert code_deps(stage) == {script} | module_closure(PROJECT_ROOT / script)


def test_package_init_holds_no_code_so_no_stage_needs_it_as_a_dep():
    tree = ast.parse((PROJECT_ROOT / PACKAGE / "__init__.py").read_text())
    assert len(tree.body) == 1 and isinstance(tree.body[0].value, ast.Constant)  # the docstring


def loaded_sections(script: Path) -> set[str]:
    calls = [
        node
        for node in ast.walk(ast.parse(script.read_text()))
        if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "load_params"
    ]
    return {arg.value for call in calls for arg in call.args}


@pytest.mark.parametrize("name", list(PIPELINE))
def test_stage_params_are_exactly_the_sections_its_script_loads(name):
    assert set(PIPELINE[name].get("params", [])) == loaded_sections(
        PROJECT_ROOT / f"stages/{name}.py"
    )


def out_paths(stage: dict) -> set[str]:
    entries = stage.get("outs", []) + stage.get("metrics", []) + stage.get("plots", [])
    return {next(iter(e)) if isinstance(e, dict) else e for e in entries}


def test_outputs_and_data_deps_are_the_paths_the_code_uses():
    test_files = {str(p) for p in paths.split_files("test")}
    fit_files = {str(p) for split in ("train", "val") for p in paths.split_files(split)}
    assert out_paths(PIPELINE["fetch"]) == {str(paths.RAW_DIR)}
    assert out_paths(PIPELINE["preprocess"]) == {
        str(paths.PROCESSED_DIR), str(paths.DATASET_STATS_FILE), str(paths.SAMPLE_GRID_FILE)
    }  # fmt: skip
    assert out_paths(PIPELINE["train"]) == {
        str(paths.MODEL_FILE), str(paths.TRAINING_METRICS_FILE), str(paths.TRAINING_LOG_DIR / "plots")
    }  # fmt: skip
    assert out_paths(PIPELINE["export"]) == {str(paths.SAVED_MODEL_DIR), str(paths.ONNX_FILE)}
    assert out_paths(PIPELINE["evaluate"]) == {
        str(paths.METRICS_FILE), str(paths.PREDICTIONS_FILE), str(paths.MISCLASSIFIED_GRID_FILE)
    }  # fmt: skip

    def data_deps(name: str) -> set[str]:
        return set(PIPELINE[name]["deps"]) - code_deps(PIPELINE[name])

    assert data_deps("fetch") == set()
    assert data_deps("preprocess") == {str(paths.RAW_DIR)}
    assert data_deps("train") == fit_files
    assert data_deps("evaluate") == test_files | {str(paths.MODEL_FILE)}
    assert data_deps("export") == {str(paths.MODEL_FILE), str(paths.split_files("val")[0])}


def test_test_metrics_are_committed_to_git_and_leave_the_run_cache_on():
    (metrics,) = PIPELINE["evaluate"]["metrics"]
    assert metrics == {str(paths.METRICS_FILE): {"cache": False}}  # persist: no run-cache


def test_outputs_kept_in_git_are_metrics_or_plots_so_the_run_cache_saves_every_stage():
    for name, stage in PIPELINE.items():
        for entry in stage.get("outs", []):
            path, options = next(iter(entry.items())) if isinstance(entry, dict) else (entry, {})
            assert options.get("cache", True), f"{name}: {path} is an uncached plain output"


def is_stage_output(path: str) -> bool:
    outs = {out for stage in PIPELINE.values() for out in out_paths(stage)}
    return any(path == out or path.startswith(f"{out}/") for out in outs)


def test_every_top_level_metric_and_plot_is_a_stage_output():
    plot_files = []
    for plot in DVC_YAML["plots"]:
        if isinstance(plot, str):
            plot_files.append(plot)
        else:
            (definition,) = plot.values()
            plot_files += list(definition["y"])
    assert len(plot_files) == 9
    for path in DVC_YAML["metrics"] + plot_files:
        assert is_stage_output(path), path
