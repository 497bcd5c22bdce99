"""The Postgres instance file and the multi-machine recipe, checked without a cluster.

``deploy/dagster-postgres.yaml`` is exactly what navembed writes when the Postgres URL is set, and
``deploy/scale-out.env.example`` (the README's scale-out recipe) loads the real definitions, points
every component at the shared store and audio, and yields worker runs whose config the real job accepts.
"""

import re
import shlex
from pathlib import Path

import dagster as dg
import pytest
from dagster._core.instance.ref import InstanceRef

from navembed_pipeline.cli import build_parser
from navembed_pipeline.definitions import build_definitions
from navembed_pipeline.cli.fanout_worker import plan_workers, run_config
from navembed_pipeline.instance import POSTGRES_URL_ENV, environment, instance_yaml, prepare_dagster_home
from navembed_pipeline.lib.errors import ConfigError
from navembed_pipeline.lib.runs import PARTITION_RANGE_END_TAG, PARTITION_RANGE_START_TAG, REEMBED_JOB
from navembed_pipeline.lib.settings import Settings
from navembed_pipeline.lib.workers import JOB_TAG, LANE_TAG, check_job_id

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
URL = "postgresql+psycopg2://dagster:secret@127.0.0.1:5432/dagster"


def recipe_env() -> dict[str, str]:
    lines = (DEPLOY / "scale-out.env.example").read_text().splitlines()
    return dict(line.split("=", 1) for line in lines if line and not line.startswith("#"))


def test_the_deploy_file_is_what_navembed_writes_for_postgres() -> None:
    assert (DEPLOY / "dagster-postgres.yaml").read_text() == instance_yaml(postgres=True)


def test_the_postgres_flavour_is_a_valid_postgres_instance(tmp_path: Path) -> None:
    home = prepare_dagster_home(tmp_path / "home", postgres=True)
    with environment({POSTGRES_URL_ENV: URL}):
        ref = InstanceRef.from_dir(str(home))
    assert ref.storage_data.class_name == "DagsterPostgresStorage"
    assert ref.run_coordinator_data.class_name == "QuickQueuedRunCoordinator"  # Dagster's queue, looked at twice a second
    limits = ref.settings["concurrency"]["runs"]["tag_concurrency_limits"]
    assert limits == [{"key": LANE_TAG, "value": {"applyLimitPerUniqueValue": True}, "limit": 1}]


def test_navembeds_own_file_follows_the_setting_and_a_users_file_is_kept(tmp_path: Path) -> None:
    home = prepare_dagster_home(tmp_path / "home")
    assert (home / "dagster.yaml").read_text() == instance_yaml(postgres=False)
    prepare_dagster_home(home, postgres=True)
    assert (home / "dagster.yaml").read_text() == instance_yaml(postgres=True)
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    prepare_dagster_home(home, postgres=False)
    assert (home / "dagster.yaml").read_text() == "telemetry:\n  enabled: false\n"


def test_a_file_an_earlier_navembed_wrote_is_upgraded(tmp_path: Path) -> None:
    earlier = """# The embedded Dagster instance (SQLite storage under $DAGSTER_HOME). navembed copies this file into
# <data_dir>/dagster/ on first start. For Postgres, see README "Production deployment".
telemetry:
  enabled: false
concurrency:
  runs:
    max_concurrent_runs: 4
    # One embedding run at a time: they share the GPU and the CPU decode workers.
    tag_concurrency_limits:
      - key: navembed/kind
        value: embedding
        limit: 1
  pools:
    # The only pool is "gpu": one deep-model step at a time.
    default_limit: 1
nux:
  enabled: false
"""
    (tmp_path / "dagster.yaml").write_text(earlier)
    prepare_dagster_home(tmp_path)
    assert (tmp_path / "dagster.yaml").read_text() == instance_yaml(postgres=False)


def test_the_recipe_loads_the_definitions_against_the_shared_store_and_audio(monkeypatch) -> None:
    for key, value in recipe_env().items():
        monkeypatch.setenv(key, value)
    settings = Settings()
    assert settings.postgres_url == recipe_env()["NAVEMBED_DAGSTER_POSTGRES_URL"]
    definitions = build_definitions(settings)
    definitions.validate_loadable(definitions)
    resources = definitions.resources
    assert resources["vector_store"].uri == "http://milvus.lan:19530"
    assert resources["navidrome"].path_map == "/music=/mnt/nas/music"


def test_two_machines_split_the_buckets_into_runs_the_job_accepts(monkeypatch) -> None:
    for key, value in recipe_env().items():
        monkeypatch.setenv(key, value)
    settings = Settings()
    job = build_definitions(settings).resolve_job_def(REEMBED_JOB)
    models = settings.enabled_models()
    machines = [plan_workers(models, workers=2, first=a, last=b, job="nightly-1") for a, b in (("00", "7f"),
                                                                                               ("80", "ff"))]
    specs = [spec for machine in machines for spec in machine]
    ranges = [(s.tags[PARTITION_RANGE_START_TAG], s.tags[PARTITION_RANGE_END_TAG]) for s in specs]
    assert ranges == [("00", "3f"), ("40", "7f"), ("80", "bf"), ("c0", "ff")]
    assert {s.tags[JOB_TAG] for s in specs} == {"nightly-1"} and len({s.run_id for s in specs}) == 4
    for spec in specs:
        assert spec.models == ("dsp", "muq")
        selected = job.get_subset(asset_selection={dg.AssetKey(f"{m}_embeddings") for m in spec.models})
        checked = dg.validate_run_config(selected, run_config(spec))
        assert set(checked["ops"]) == {"shared_decode_embeddings", "muq_embeddings"}  # dsp's step is shared


def test_a_job_id_must_be_a_plain_word() -> None:
    assert check_job_id("nightly-1") == "nightly-1"
    for bad in ("", "has space", "x" * 64, "a/b"):
        with pytest.raises(ConfigError):
            check_job_id(bad)


def test_the_readme_machine_commands_parse_to_the_tested_split() -> None:
    readme = (DEPLOY.parent / "README.md").read_text()
    section = readme[readme.index("## Scale-out"):readme.index("## GPU install")]
    block = section.split("```bash")[1].split("```")[0]
    commands = [c.strip() for line in block.splitlines() if not line.lstrip().startswith("#")
                for c in re.split(r"\s{2,}", line.strip()) if c.strip().startswith("navembed ")]
    parsed = [build_parser().parse_args(shlex.split(c)[1:]) for c in commands]
    assert [(p.buckets, p.job, p.workers) for p in parsed] == [(("00", "7f"), "nightly-1", 1),
                                                               (("80", "ff"), "nightly-1", 1)]
