"""Running the real Dagster assets in-process against a real store, for the pipeline tests."""

from collections.abc import Iterator
from contextlib import contextmanager

import dagster as dg
import yaml

from navembed_pipeline.assets import embedding_assets, library_tracks
from navembed_pipeline.instance import EVENT_BATCH_SIZE_ENV, environment, instance_yaml
from navembed_pipeline.jobs import embed_run_config
from navembed_pipeline.partitions import range_tags
from navembed_pipeline.resources import ModelsResource, NavidromeResource, VectorStoreResource
from navembed_pipeline.sample_data.sample_library import SampleLibrary
from tests.lib.store.milvus_fixture import session_failures_db


@contextmanager
def navembed_instance() -> Iterator[dg.DagsterInstance]:
    """A temporary Dagster instance configured as navembed configures its own: its dagster.yaml (the
    batching SQLite event log, concurrency, pools) and event batching on, as ``open_instance`` sets it."""
    overrides = yaml.safe_load(instance_yaml(postgres=False))
    with environment(EVENT_BATCH_SIZE_ENV), dg.instance_for_test(overrides=overrides) as instance:
        yield instance


def pipeline_resources(library: SampleLibrary, uri: str, **models: object) -> dict:
    return {
        "navidrome": NavidromeResource(db_path=str(library.db_path)),
        "vector_store": VectorStoreResource(uri=uri, failures_db=str(session_failures_db() or "")),
        "models": ModelsResource(device="cpu", decode_workers=1, **models),
    }


def embed(library: SampleLibrary, uri: str, instance: dg.DagsterInstance, *, models: tuple[str, ...] = ("dsp",),
          first: str = "00", last: str = "ff", raise_on_error: bool = True, job_config: dict | None = None,
          **config: bool) -> dg.ExecuteInProcessResult:
    """Materialize the models' embedding assets over buckets first..last in one run."""
    return dg.materialize(
        [library_tracks, *embedding_assets], instance=instance,
        selection=[dg.AssetKey(f"{m}_embeddings") for m in models],
        resources=pipeline_resources(library, uri, **(job_config or {})), tags=range_tags(first, last),
        run_config=embed_run_config(list(models), **config), raise_on_error=raise_on_error)


def bucket_materializations(result: dg.ExecuteInProcessResult, model: str = "dsp") -> dict[str, dict]:
    """Per-bucket materialization metadata (plain values) of ``model``'s asset in ``result``."""
    out = {}
    for event in result.get_asset_materialization_events():
        mat = event.materialization
        if mat.asset_key == dg.AssetKey(f"{model}_embeddings"):
            out[mat.partition] = {k: v.value for k, v in mat.metadata.items()}
    return out


def write_bulk_library(root, *, tracks: int, seconds: float) -> SampleLibrary:
    """``tracks`` generated WAV files of ``seconds`` each plus a navidrome.db (for runs long enough to interrupt)."""
    from pathlib import Path

    from navembed_pipeline.lib.library.encode import write_audio
    from navembed_pipeline.sample_data.navidrome_fixture import FixtureLibrary, FixtureTrack, create_navidrome_db
    from navembed_pipeline.sample_data.synth import STYLES, render

    root = Path(root)
    music = root / "music"
    music.mkdir(parents=True)
    fixtures = []
    for i in range(tracks):
        style = STYLES[i % len(STYLES)]
        relative = f"Bulk/{style}/{i:03d} {style}.wav"
        (music / relative).parent.mkdir(parents=True, exist_ok=True)
        write_audio(music / relative, render(style, seconds=seconds, sample_rate=22050, seed=i), 22050)
        fixtures.append(FixtureTrack(path=relative, title=f"{style} {i}", artist="Bulk", album=style,
                                     duration=seconds))
    db = root / "navidrome.db"
    create_navidrome_db(db, libraries=[FixtureLibrary(1, "Bulk", str(music))], tracks=fixtures)
    return SampleLibrary(root, db, tracks, ".wav", music, music, (music, music))
