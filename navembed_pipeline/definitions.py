"""Assembles the Dagster Definitions; nothing else."""

import dagster as dg

from navembed_pipeline.assets import embedding_assets, library_tracks
from navembed_pipeline.catalog import for_deployment, store_location
from navembed_pipeline.jobs import reembed_job, retry_failed_tracks_job
from navembed_pipeline.lib.settings import Settings
from navembed_pipeline.mixes import MixesResource, sonic_mixes, sonic_mixes_after_runs, sonic_mixes_job
from navembed_pipeline.resources import ModelsResource, NavidromeResource, VectorStoreResource
from navembed_pipeline.schedules import build_nightly_reconcile_schedule
from navembed_pipeline.sensors import build_library_change_sensor


def build_definitions(settings: Settings) -> dg.Definitions:
    """Definitions wired to ``settings`` (tests pass their own)."""
    models = settings.enabled_models()
    return dg.Definitions(
        assets=[library_tracks, *for_deployment(embedding_assets, reconcile_cron=settings.reconcile_cron,
                                                uri=store_location(settings.milvus_uri, settings.milvus_data_dir)),
                sonic_mixes],
        jobs=[reembed_job, retry_failed_tracks_job, sonic_mixes_job],
        sensors=[build_library_change_sensor(models, interval_seconds=settings.sensor_interval_seconds),
                 sonic_mixes_after_runs],
        schedules=[build_nightly_reconcile_schedule(models, cron=settings.reconcile_cron)],
        resources=resources_for(settings),
    )


def resources_for(settings: Settings) -> dict[str, dg.ConfigurableResource]:
    return {
        "navidrome": NavidromeResource(db_path=str(settings.navidrome_db or ""), path_map=settings.path_map),
        "vector_store": VectorStoreResource(uri=settings.milvus_uri, token=settings.milvus_token,
                                            data_dir=str(settings.milvus_data_dir),
                                            fingerprints_db=str(settings.fingerprints_db),
                                            failures_db=str(settings.failures_db),
                                            missing_db=str(settings.missing_db),
                                            deletion_grace_hours=settings.deletion_grace_hours,
                                            deletion_max_share=settings.deletion_max_share),
        "models": ModelsResource(device=settings.models_device, dtype=settings.models_dtype,
                                 batch_size=settings.models_batch_size,
                                 idle_unload_seconds=settings.models_idle_unload_seconds,
                                 models_dir=str(settings.weights_dir),
                                 decode_workers=settings.decode_workers, decode_processes=settings.decode_processes,
                                 nice=settings.nice,
                                 mert_layers=settings.mert_layers, musicnn_variant=settings.musicnn_variant),
        "mixes": MixesResource(playlists_dir=str(settings.mixes_dir), models=",".join(settings.enabled_models()),
                               size=settings.mix_size, musicnn_variant=settings.musicnn_variant),
    }


@dg.definitions
def defs() -> dg.Definitions:
    """Loaded by `dagster dev` / the webserver through workspace.yaml; reads the environment once."""
    return build_definitions(Settings())
