"""The embedding asset fingerprints tracks from the audio it decodes: once per file version, CUE per segment."""

import sqlite3
from datetime import UTC, datetime
from pathlib import Path

import dagster as dg

from navembed_pipeline.assets import embedding_assets, library_tracks
from navembed_pipeline.jobs import embed_run_config
from navembed_pipeline.lib.duplicates.fingerprint_store import FingerprintStore
from navembed_pipeline.lib.library.navidrome import NavidromeLibrary
from navembed_pipeline.lib.library.segments import track_fingerprint
from navembed_pipeline.partitions import range_tags
from navembed_pipeline.resources import VectorStoreResource
from navembed_pipeline.sample_data.navidrome_fixture import touch_track
from navembed_pipeline.sample_data.sample_library import SampleLibrary
from tests.lib.store.milvus_fixture import session_failures_db
from tests.pipeline.helpers import pipeline_resources


def run(library: SampleLibrary, uri: str, instance: dg.DagsterInstance, db: Path, **config: bool) -> None:
    resources = pipeline_resources(library, uri)
    resources["vector_store"] = VectorStoreResource(uri=uri, failures_db=str(session_failures_db() or ""),
                                                    fingerprints_db=str(db))
    dg.materialize([library_tracks, *embedding_assets], instance=instance, selection=[dg.AssetKey("dsp_embeddings")],
                   resources=resources, tags=range_tags("00", "ff"), run_config=embed_run_config(["dsp"], **config))


def computed_at(db: Path) -> dict[tuple[str, int], float]:
    with sqlite3.connect(db) as conn:
        return {(owner, segment): updated for owner, segment, updated in conn.execute(
            "SELECT owner, segment, updated FROM prints")}


def test_every_readable_track_is_fingerprinted_and_a_cue_album_per_segment(
        sample_library, vector_store, milvus_uri, instance, tmp_path) -> None:
    db = tmp_path / "fingerprints.sqlite"
    run(sample_library, milvus_uri, instance, db)
    tracks = list(NavidromeLibrary(sample_library.db_path).tracks())
    store = FingerprintStore(db)
    readable = [t for t in tracks if t.path != sample_library.corrupt_path]
    assert store.versions(t.id for t in tracks) == {t.id: track_fingerprint(t) for t in readable}
    [album] = [t for t in tracks if t.path == sample_library.cue_album_path]
    assert [p.name for p in store.prints(album.id)] == ["Various - Opening Keys", "Various - Drum Break",
                                                         "Various - Closing Pads"]


def test_a_forced_re_embed_does_not_fingerprint_again_but_a_changed_file_is(
        sample_library, vector_store, milvus_uri, instance, tmp_path) -> None:
    db = tmp_path / "fingerprints.sqlite"
    run(sample_library, milvus_uri, instance, db)
    first = computed_at(db)
    run(sample_library, milvus_uri, instance, db, force=True)
    assert computed_at(db) == first
    track = next(t for t in NavidromeLibrary(sample_library.db_path).tracks() if t.path.name == "02 Cold Pads.flac")
    touch_track(sample_library.db_path, track.id, updated_at=datetime(2026, 6, 1, tzinfo=UTC))
    run(sample_library, milvus_uri, instance, db)
    after = computed_at(db)
    assert after[(track.id, 1)] > first[(track.id, 1)]
    assert {k: v for k, v in after.items() if k[0] != track.id} == {k: v for k, v in first.items() if k[0] != track.id}


def test_a_library_embedded_before_fingerprints_existed_is_fingerprinted_once(
        sample_library, vector_store, milvus_uri, instance, tmp_path) -> None:
    run(sample_library, milvus_uri, instance, tmp_path / "unused.sqlite")  # vectors now current
    db = tmp_path / "fingerprints.sqlite"
    run(sample_library, milvus_uri, instance, db)  # embeds nothing, fingerprints everything once
    tracks = list(NavidromeLibrary(sample_library.db_path).tracks())
    assert len(FingerprintStore(db).versions(t.id for t in tracks)) == len(tracks) - 1  # all but the corrupt one
