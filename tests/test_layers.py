"""The layers the README's architecture section draws, enforced on every import (module level or inside functions).

- ``navembed_pipeline/lib``: plain Python; never imports Dagster, the sample data, the Dagster layer,
  the CLI/stack or the API.
- ``navembed_pipeline/sample_data`` (demo and test scaffolding): imports ``lib`` at most.
- ``navembed_api``: imports ``lib`` from the pipeline package, never Dagster or anything above ``lib``.
- the Dagster layer (the modules directly in ``navembed_pipeline/``): ``lib`` and itself; never the
  CLI/stack, the sample data or the API.

Inside ``lib``, the domains (each package's docstring says the same; ``DOMAIN_RULES`` below):

- the shared leaves (``errors``, ``pids``, ``buckets``, ``stack_status``, ``public``) import nothing else
  of ``lib``; the contracts (``runs``, ``progress``, ``workers``: the run contract; ``settings``: the
  configuration) are read by the layers above and may read ``library`` and ``models`` (model names);
- ``library`` builds on the shared leaves only; ``models`` on ``library``; ``store`` on ``library``;
  ``duplicates`` on ``library`` and ``store``; ``engine`` on all of those and the contracts;
  ``recommend`` on ``library`` and ``store``, and reads vectors only through the store's public names;
- no circles, between domains or between modules;
- the API, the Dagster layer, the CLI/stack and the sample data import a domain's public names from
  its package (``from navembed_pipeline.lib.store import VectorStore``), never its modules.
"""

import ast
from collections.abc import Iterator, Mapping
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


# ── domains inside lib ───────────────────────────────────────────────────────────────────────────
LIB = PIPELINE / "lib"
DOMAINS = ("library", "models", "store", "duplicates", "engine", "recommend")
LEAVES = "shared leaves"  # the other modules directly in lib/
CONTRACTS = "contracts"
CONTRACT_MODULES = ("runs", "progress", "workers", "settings")
DOMAIN_RULES: dict[str, set[str]] = {  # what each part of lib may import (besides itself)
    LEAVES: set(),
    CONTRACTS: {LEAVES, "library", "models"},
    "library": {LEAVES},
    "models": {LEAVES, "library"},
    "store": {LEAVES, "library"},
    "duplicates": {LEAVES, "library", "store"},
    "engine": {LEAVES, CONTRACTS, "library", "models", "store", "duplicates"},
    "recommend": {LEAVES, "library", "store"},
}
PUBLIC_ONLY = {("recommend", "store")}  # (importer, domain): through the package's public names only


def module_name(path: Path, root: Path = ROOT) -> str:
    parts = path.relative_to(root).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def part_of(module: str) -> str | None:
    """The part of lib a module belongs to: a domain, CONTRACTS, LEAVES, or None (not in lib)."""
    parts = module.split(".")
    if parts[:2] != ["navembed_pipeline", "lib"]:
        return None
    if len(parts) > 2 and parts[2] in DOMAINS:
        return parts[2]
    return CONTRACTS if len(parts) > 2 and parts[2] in CONTRACT_MODULES else LEAVES


def lib_modules(root: Path = ROOT) -> dict[str, Path]:
    return {module_name(path, root): path for path in python_files(root / "navembed_pipeline" / "lib")}


def resolved_imports(path: Path, modules: Mapping[str, Path], root: Path = ROOT) -> Iterator[tuple[int, str, str]]:
    """``(line, module, module)`` for each import of a lib module (``from pkg import x`` yields ``pkg``, and
    ``pkg.x`` too when that is a module)."""
    for line, module in imported_modules(path, root):
        if module in modules:
            yield line, module, module


def domain_violations(root: Path = ROOT) -> list[str]:
    modules = lib_modules(root)
    found = []
    for name, path in modules.items():
        mine = part_of(name)
        for line, written, target in resolved_imports(path, modules, root):
            theirs = part_of(target)
            if theirs is None or theirs == mine or target == "navembed_pipeline.lib":
                continue
            where = f"{path.relative_to(root)}:{line} imports {written}"
            if theirs not in DOMAIN_RULES[mine]:
                found.append(f"{where} ({mine} may not import {theirs})")
            elif (mine, theirs) in PUBLIC_ONLY and target != f"navembed_pipeline.lib.{theirs}":
                found.append(f"{where} ({mine} reads {theirs} through its public names only)")
    return found


def import_graph(root: Path = ROOT) -> dict[str, set[str]]:
    """Module → the lib modules it imports (module level or inside functions)."""
    modules = lib_modules(root)
    return {name: {target for _, _, target in resolved_imports(path, modules, root) if target != name}
            for name, path in modules.items()}


def cycles(graph: Mapping[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one node (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for nxt in graph.get(node, ()):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def package_only_violations(files: list[Path], root: Path = ROOT) -> list[str]:
    """Imports of a domain's module (``lib.store.rows``) rather than of the domain (``lib.store``)."""
    modules = lib_modules(root)
    found = []
    for path in files:
        for line, written, target in resolved_imports(path, modules, root):
            if target.count(".") > 2 and part_of(target) in DOMAINS:
                found.append(f"{path.relative_to(root)}:{line} imports {written}")
    return found


def test_every_lib_module_belongs_to_a_known_part() -> None:
    assert {part_of(m) for m in lib_modules()} == {*DOMAINS, CONTRACTS, LEAVES}
    assert {p.name for p in LIB.iterdir() if p.is_dir() and (p / "__init__.py").exists()} == set(DOMAINS)


def test_domains_import_only_what_their_rules_allow() -> None:
    assert domain_violations() == []


def test_each_domain_says_what_it_owns_and_may_import() -> None:
    for domain in DOMAINS:
        doc = ast.get_docstring(ast.parse((LIB / domain / "__init__.py").read_text())) or ""
        assert "May import" in doc, domain
        allowed = DOMAIN_RULES[domain] - {LEAVES, CONTRACTS}
        assert all(f"``{other}``" in doc for other in allowed), (domain, allowed)


def test_lib_has_no_import_circles() -> None:
    assert cycles(import_graph()) == []
    domains = {part: set() for part in DOMAIN_RULES}
    for module, targets in import_graph().items():
        domains[part_of(module)].update(part_of(t) for t in targets if part_of(t) != part_of(module))
    assert cycles(domains) == []


def test_no_file_in_a_folder_begins_with_a_siblings_name_and_an_underscore() -> None:
    # ``run_plan`` beside ``run_planner``, ``store_rows`` beside ``store``: a folder nobody made.
    for folder in [LIB, *(LIB / d for d in DOMAINS)]:
        stems = {p.stem for p in folder.iterdir() if p.is_file() and not p.name.startswith("_")}
        assert {s for s in stems for other in stems if s != other and s.startswith(other + "_")} == set(), folder


def test_the_layers_above_import_a_domains_public_names() -> None:
    files = [*python_files(ROOT / "navembed_api"), *dagster_layer_files(),
             *(f for pkg in (*UPPER_PACKAGES, "sample_data") for f in python_files(PIPELINE / pkg))]
    assert package_only_violations(files) == []


def test_the_domain_rules_catch_what_they_forbid(tmp_path: Path) -> None:
    lib = tmp_path / "navembed_pipeline" / "lib"
    for name, text in {
        "errors.py": "",
        "store/__init__.py": "",
        "store/rows.py": "from navembed_pipeline.lib.engine.run import EmbeddingRun\n",
        "engine/__init__.py": "",
        "engine/run.py": "def f():\n    from navembed_pipeline.lib.store import rows\n",
        "recommend/__init__.py": "",
        "recommend/index.py": "from navembed_pipeline.lib.store.rows import StoreRows\n",
    }.items():
        (lib / name).parent.mkdir(parents=True, exist_ok=True)
        (lib / name).write_text(text)
    assert sorted(domain_violations(tmp_path)) == [
        "navembed_pipeline/lib/recommend/index.py:1 imports navembed_pipeline.lib.store.rows "
        "(recommend reads store through its public names only)",
        "navembed_pipeline/lib/store/rows.py:1 imports navembed_pipeline.lib.engine.run (store may not import engine)",
    ]
    assert cycles(import_graph(tmp_path)) == [["navembed_pipeline.lib.engine.run", "navembed_pipeline.lib.store.rows"]]
    assert package_only_violations([lib / "recommend" / "index.py"], tmp_path) == [
        "navembed_pipeline/lib/recommend/index.py:1 imports navembed_pipeline.lib.store.rows"]


def test_no_public_name_is_also_a_module_of_its_package() -> None:
    # Importing ``pkg.x`` sets the attribute ``pkg.x`` to the module, hiding a lazy public name ``x``.
    for init in LIB.rglob("__init__.py"):
        tree = ast.parse(init.read_text())
        public = next((ast.literal_eval(n.value) for n in tree.body if isinstance(n, ast.Assign)
                       and any(getattr(t, "id", "") == "_PUBLIC" for t in n.targets)), {})
        modules = {p.stem for p in init.parent.iterdir() if p.suffix == ".py" or (p / "__init__.py").exists()}
        assert set(public) & modules == set(), init


def test_the_tests_mirror_the_domains() -> None:
    tests = ROOT / "tests" / "lib"
    assert all((tests / domain / "__init__.py").exists() for domain in DOMAINS)
    top = {p.stem.removeprefix("test_") for p in tests.glob("test_*.py")}
    assert top <= {p.stem for p in LIB.glob("*.py")} | {"network_guard"}, top
