"""Importing the API loads neither the orchestrator nor a deep-learning framework (they load when used)."""

import json
import subprocess
import sys

HEAVY = ("dagster", "torch", "torchaudio", "transformers")


def imported_after(statement: str) -> list[str]:
    code = f"import sys, json\n{statement}\nprint(json.dumps(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120)
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_importing_the_api_leaves_dagster_torch_and_transformers_unimported() -> None:
    modules = imported_after("import navembed_api.main")
    assert "navembed_api.main" in modules
    assert [m for m in modules if m.split(".")[0] in HEAVY] == []


def test_the_run_contract_and_the_model_registry_are_light() -> None:
    modules = imported_after("import navembed_pipeline.lib.runs, navembed_pipeline.lib.models, "
                             "navembed_pipeline.lib.settings")
    assert [m for m in modules if m.split(".")[0] in HEAVY] == []


def test_the_registry_names_the_weights_each_model_class_declares() -> None:
    from navembed_pipeline.lib.models import MODEL_NAMES, WEIGHTS_REPOS, model_class

    assert {name: model_class(name).weights_repos for name in MODEL_NAMES} == WEIGHTS_REPOS


def test_loading_the_definitions_leaves_the_recommender_unimported() -> None:
    """Every run worker loads the definitions; only the mixes run needs ``lib.recommend`` (~0.09 s of imports)."""
    modules = imported_after("import navembed_pipeline.definitions")
    assert "navembed_pipeline.definitions" in modules and "navembed_pipeline.mixes" in modules
    assert [m for m in modules if m.startswith("navembed_pipeline.lib.recommend")] == []
