"""The layers the README's architecture section draws, enforced on every import (module level or inside functions).

- ``navembed_pipeline/lib``: plain Python; never imports Dagster, the sample data, the Dagster layer,
  the CLI/stack or the API.
- ``navembed_pipeline/sample_data`` (demo and test scaffolding): imports ``lib`` at most.
- ``navembed_api``: imports ``lib`` from the pipeline package, never Dagster or anything above ``lib``.
- the Dagster layer (the modules directly in ``navembed_pipeline/``): ``lib`` and itself; never the
  CLI/stack, the sample data or the API.
"""

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PIPELINE = ROOT / "navembed_pipeline"
UPPER_PACKAGES = ("cli", "stack")  # what only a person or the stack process runs


def imported_modules(path: Path, root: Path = ROOT) -> Iterator[tuple[int, str]]:
    """Every module ``path`` (under ``root``) imports, absolute (relative imports resolved), with its line."""
    package = ".".join(path.relative_to(root).with_suffix("").parts[:-1])
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            yield from ((node.lineno, alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*parts, base] if base else parts)
            yield node.lineno, base
            # `from navembed_pipeline import cli` names a module too
            yield from ((node.lineno, f"{base}.{alias.name}") for alias in node.names)


def layer_of(module: str) -> str:
    """The layer a module name belongs to ("third-party" for anything outside the project)."""
    parts = module.split(".")
    if parts[0] == "dagster" or parts[0].startswith("dagster_"):
        return "dagster"
    if parts[0] == "navembed_api":
        return "api"
    if parts[0] in ("tests", "benchmarks"):
        return parts[0]
    if parts[0] != "navembed_pipeline":
        return "third-party"
    if len(parts) == 1:
        return "pipeline-package"
    if parts[1] == "lib":
        return "lib"
    if parts[1] == "sample_data":
        return "sample_data"
    if parts[1] in UPPER_PACKAGES:
        return "cli"
    return "dagster-layer"


def violations(files: list[Path], allowed: set[str], root: Path = ROOT) -> list[str]:
    """``file:line imports module (layer)`` for every import outside ``allowed`` layers."""
    found = []
    for path in files:
        for line, module in imported_modules(path, root):
            layer = layer_of(module)
            if layer not in allowed:
                found.append(f"{path.relative_to(root)}:{line} imports {module} ({layer})")
    return found


def python_files(folder: Path) -> list[Path]:
    return sorted(folder.rglob("*.py"))


def dagster_layer_files() -> list[Path]:
    return sorted(p for p in PIPELINE.glob("*.py") if p.name != "__init__.py")


def test_the_walk_sees_imports_inside_functions(tmp_path: Path) -> None:
    # The check is only worth something if a lazy or relative import cannot hide from it.
    path = tmp_path / "navembed_pipeline" / "lib" / "x.py"
    path.parent.mkdir(parents=True)
    path.write_text("def f():\n    import dagster\n    from ..sample_data import synth\n")
    modules = {module for _, module in imported_modules(path, tmp_path)}
    assert "dagster" in modules
    assert "navembed_pipeline.sample_data.synth" in modules


def test_lib_is_plain_python() -> None:
    files = python_files(PIPELINE / "lib")
    assert len(files) > 20
    assert violations(files, {"lib", "third-party"}) == []


def test_sample_data_builds_on_lib_only() -> None:
    files = python_files(PIPELINE / "sample_data")
    assert files
    assert violations(files, {"lib", "sample_data", "third-party"}) == []


def test_api_imports_lib_not_dagster_or_the_layers_above() -> None:
    files = python_files(ROOT / "navembed_api")
    assert len(files) > 10
    assert violations(files, {"lib", "api", "third-party"}) == []


def test_dagster_layer_does_not_reach_up() -> None:
    files = dagster_layer_files()
    assert {p.name for p in files} >= {"assets.py", "definitions.py", "jobs.py", "sensors.py"}
    assert violations(files, {"lib", "dagster", "dagster-layer", "pipeline-package", "third-party"}) == []


@pytest.mark.parametrize("module", ["dagster", "dagster_webserver.cli", "navembed_api.main",
                                    "navembed_pipeline.sample_data.synth", "navembed_pipeline.assets",
                                    "navembed_pipeline.cli.main"])
def test_a_forbidden_import_would_be_reported(module: str, tmp_path: Path) -> None:
    bad = tmp_path / "bad.py"
    bad.write_text(f"def f():\n    import {module}\n")
    assert violations([bad], {"lib", "third-party"}, tmp_path) == [f"bad.py:2 imports {module} ({layer_of(module)})"]
