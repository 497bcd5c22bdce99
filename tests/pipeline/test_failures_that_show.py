"""Failures that used to vanish are recorded like any failed track, with the reason, and show in the three
places an operator looks: the failure log (the table ``retry_failed_tracks_job`` reads), the
``tracks_embedded_or_failed`` asset check of the track's bucket, and ``/batch/progress``.

A real Dagster run over the sample library with two extra faults: an album whose embedded CUE sheet
cannot be read (it used to become one long track), and a fingerprint database that fails to store one
track's fingerprint (the save used to be fire-and-forget; then it reached the log but not the check or
``/batch/progress``).
"""

from pathlib import Path

import dagster as dg
import pytest

from navembed_pipeline.assets import embedding_assets, library_tracks
from navembed_pipeline.checks import TRACKS_CHECK
from navembed_pipeline.lib.buckets import bucket_of
from navembed_pipeline.lib.duplicates.fingerprint_store import FingerprintStore
from navembed_pipeline.lib.engine.fingerprinter import FINGERPRINT_FAILURES
from navembed_pipeline.lib.library.navidrome import NavidromeLibrary
from navembed_pipeline.lib.runs import embed_run_config
from navembed_pipeline.lib.store.failure_log import FailureLog
from navembed_pipeline.partitions import range_tags
from navembed_pipeline.resources import ModelsResource, NavidromeResource, VectorStoreResource
from navembed_pipeline.sample_data.navidrome_fixture import FixtureTrack, add_tracks
from tests.api.app_fixtures import ADMIN, api_settings, running_app
from tests.lib.library.test_embedded_cue_failures import FLAC_PICTURE, SHEET, flac_with_block

DSP = dg.AssetKey("dsp_embeddings")
CUE_REASON = "embedded CUE sheet that cannot be read"
DISK_ERROR = "disk I/O error (the test's fault)"


def run(library, uri: str, data: Path, instance: dg.DagsterInstance, *,
        check_only: bool = False) -> dg.ExecuteInProcessResult:
    """An embedding run of dsp over every bucket (``check_only``: its tracks check alone, nothing embedded)."""
    resources = {"navidrome": NavidromeResource(db_path=str(library.db_path)),
                 "vector_store": VectorStoreResource(uri=uri, failures_db=str(data / "failures.sqlite"),
                                                     fingerprints_db=str(data / "fingerprints.sqlite")),
                 "models": ModelsResource(device="cpu", decode_workers=1)}
    if check_only:
        return dg.materialize([library_tracks, *embedding_assets], instance=instance, resources=resources,
                              selection=dg.AssetSelection.checks(dg.AssetCheckKey(DSP, TRACKS_CHECK)),
                              tags=range_tags("00", "ff"))
    return dg.materialize([library_tracks, *embedding_assets], instance=instance, selection=[DSP],
                          resources=resources, tags=range_tags("00", "ff"), run_config=embed_run_config(["dsp"]))


def test_cue_and_fingerprint_failures_show_in_the_log_the_check_and_batch_progress(
        sample_library, milvus_uri, instance, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    music = Path(sample_library.root) / "music"
    flac_with_block(music / "Broken Cue" / "album.flac", FLAC_PICTURE, tags={"CUESHEET": SHEET})
    (cue_id,) = add_tracks(sample_library.db_path, [FixtureTrack(path="Broken Cue/album.flac", title="Broken Cue",
                                                                  artist="Band", album="Broken Cue", duration=3.0)])
    tracks = {t.id: t for t in NavidromeLibrary(sample_library.db_path).tracks()}
    unprinted = next(t.id for t in tracks.values() if t.path.suffix == ".flac" and t.id != cue_id
                     and bucket_of(t.id) != bucket_of(cue_id))
    real_put = FingerprintStore.put

    def failing_put(self, owner, version, segments):
        if owner == unprinted:
            raise OSError(DISK_ERROR)  # not a NavembedError: once dropped without a trace
        return real_put(self, owner, version, segments)

    monkeypatch.setattr(FingerprintStore, "put", failing_put)
    data = tmp_path / "data"
    result = run(sample_library, milvus_uri, data, instance)

    # 1. the failure log
    log = FailureLog(data / "failures.sqlite")
    assert CUE_REASON in log.failed("dsp")[cue_id]
    assert DISK_ERROR in log.failed(FINGERPRINT_FAILURES)[unprinted]

    # 2. the asset check of each track's bucket
    checks = {e.partition: e for e in result.get_asset_check_evaluations()
              if e.asset_key == DSP and e.check_name == TRACKS_CHECK}
    cue = checks[bucket_of(cue_id)]
    assert not cue.passed and cue.severity == dg.AssetCheckSeverity.WARN
    assert CUE_REASON in cue.metadata["failed_tracks"].value and "Broken Cue" in cue.description
    printless = checks[bucket_of(unprinted)]
    assert not printless.passed and printless.severity == dg.AssetCheckSeverity.WARN
    assert printless.metadata["fingerprint_failures"].value == 1
    assert DISK_ERROR in printless.metadata["fingerprint_failed_tracks"].value
    assert "without a stored fingerprint" in printless.description
    assert tracks[unprinted].display_name in printless.description

    # 3. /batch/progress
    from navembed_api.batch import BatchControl
    from tests.api.test_dagster_client_mock_transport import RUN_B, FakeWebserver, raw_run, runs

    web = FakeWebserver({"Runs": runs(raw_run(RUN_B, "SUCCESS", job="__ASSET_JOB", assets=("library_tracks",)))})
    with running_app(api_settings(tmp_path, milvus_uri=milvus_uri, data_dir=data)) as client:
        client.app.state.services.batch = BatchControl(web.client())
        body = client.get("/batch/progress", headers=ADMIN).json()
    failed = body["failure_log"]["failed"]
    assert body["failure_log"]["ok"]
    assert any(f["track_id"] == cue_id and CUE_REASON in f["error"] for f in failed["dsp"]["latest"]), failed
    assert failed[FINGERPRINT_FAILURES]["count"] == 1
    assert DISK_ERROR in failed[FINGERPRINT_FAILURES]["latest"][0]["error"]

    # Fixed: the next run stores the fingerprint (its backfill of tracks without one), the record goes and
    # the check passes again for that bucket.
    monkeypatch.setattr(FingerprintStore, "put", real_put)
    run(sample_library, milvus_uri, data, instance)
    assert log.failed(FINGERPRINT_FAILURES) == {}
    assert unprinted in FingerprintStore(data / "fingerprints.sqlite").versions([unprinted])
    rerun = {e.partition: e for e in run(sample_library, milvus_uri, data, instance,
                                         check_only=True).get_asset_check_evaluations()
             if e.asset_key == DSP and e.check_name == TRACKS_CHECK}
    assert rerun[bucket_of(unprinted)].passed
