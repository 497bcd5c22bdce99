"""The vector snapshot: a restart maps rows, index and calibration from disk (nothing refitted); a damaged
snapshot or calibration file is set aside and rebuilt from the store; a cache whose checks against the store
fail says so (``VectorCache.status``) and turns stale after the setting. Against a real Milvus Lite server."""

import json

import numpy as np
import pytest

import navembed_pipeline.lib.recommend.vectors as vectors_module
from navembed_pipeline.lib.recommend import VectorCache
from navembed_pipeline.lib.recommend.calibration import load_calibration
from navembed_pipeline.lib.store import VectorStore
from tests.api.app_fixtures import nowhere_url
from tests.lib.recommend.test_index import DIM, Clock, rows

TRACKS = 300


@pytest.fixture
def filled(vector_store: VectorStore) -> VectorStore:
    rng = np.random.default_rng(3)
    vector_store.ensure_collection("dsp", {"embedding": DIM})
    vector_store.upsert("dsp", rows({f"t{i:03d}": rng.standard_normal(DIM).astype(np.float32)
                                     for i in range(TRACKS)}))
    vector_store.publish_writes()
    return vector_store


def new_cache(store, tmp_path, **options) -> VectorCache:
    return VectorCache(store, background=False, clock=options.pop("clock", Clock()), snapshot_dir=tmp_path / "snap",
                       ivf_min_rows=100, **options)


@pytest.mark.parametrize("kind", ["ivf", "hnsw"])
def test_a_restart_maps_rows_and_index_and_reads_the_calibration_instead_of_fitting_it(
        filled: VectorStore, tmp_path, monkeypatch, kind):
    import navembed_pipeline.lib.recommend.ann as ann_module

    monkeypatch.setattr(ann_module, "INDEX_KIND", kind)
    first = new_cache(filled, tmp_path).field("dsp")
    assert first.ann is not None and first.calibration is not None

    def refit(*_args, **_kwargs):
        raise AssertionError("fitted again instead of read from the snapshot")

    monkeypatch.setattr(vectors_module, "_calibrate", refit)
    monkeypatch.setattr(vectors_module, "build_ann", refit)
    cache = new_cache(filled, tmp_path)
    again = cache.field("dsp")
    assert isinstance(again.rows, np.memmap)  # mapped from disk, not read whole
    assert again.track_ids == first.track_ids and np.array_equal(again.rows, first.rows)
    assert np.array_equal(again.calibration.scores.quantiles, first.calibration.scores.quantiles)
    query = first.rows[17]
    assert set(again.candidates(query, 10).tolist()) == set(first.candidates(query, 10).tolist())
    assert type(again.ann.index).__name__ == ("IndexHNSWFlat" if kind == "hnsw" else "IndexIVFScalarQuantizer")
    (status,) = cache.status()
    assert status["source"] == "snapshot" and status["rows"] == TRACKS and status["last_error"] is None
    assert status["generation"] == filled.generations(["dsp"])["dsp"]


def damage_manifest(snap):
    (snap / "dsp.embedding.json").write_text("{not json")


def damage_rows(snap):
    (path,) = snap.glob("dsp.embedding.*/rows.npy")
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def damage_calibration(snap):
    (path,) = snap.glob("dsp.embedding.*/calibration.json")
    data = json.loads(path.read_text())
    data["scores"]["quantiles"] = data["scores"]["quantiles"][::-1]
    path.write_text(json.dumps(data))


@pytest.mark.parametrize("damage", [damage_manifest, damage_rows, damage_calibration])
def test_a_damaged_snapshot_is_set_aside_named_and_rebuilt_from_the_store(filled: VectorStore, tmp_path, damage):
    new_cache(filled, tmp_path).field("dsp")
    snap = tmp_path / "snap"
    damage(snap)
    cache = new_cache(filled, tmp_path)
    assert len(cache.field("dsp")) == TRACKS  # served from the store: no crash, no refusal
    (status,) = cache.status()
    assert status["source"] == "store"
    aside = status["set_aside"]
    assert "damaged" in aside["error"] and aside["rebuilding"] is False  # the rebuilt snapshot is written
    assert aside["files"] and all((snap / name).exists() and ".corrupt-" in name for name in aside["files"])
    restarted = new_cache(filled, tmp_path)
    assert len(restarted.field("dsp")) == TRACKS and restarted.status()[0]["source"] == "snapshot"


def test_a_damaged_calibration_file_is_set_aside_and_rewritten(filled: VectorStore, tmp_path):
    calibration = tmp_path / "calibration"
    calibration.mkdir()
    (calibration / "dsp.embedding.json").write_text('{"format": 1, "model": "dsp", "trunc')
    cache = VectorCache(filled, background=False, clock=Clock(), calibration_dir=calibration)
    cache.field("dsp")
    assert load_calibration(calibration, "dsp", "embedding") is not None
    (status,) = cache.status()
    (name,) = status["set_aside"]["files"]
    assert name.startswith("dsp.embedding.json.corrupt-") and (calibration / name).exists()


def test_failing_checks_are_recorded_and_turn_the_cache_stale_after_the_setting(filled: VectorStore, tmp_path):
    dead = VectorStore(nowhere_url(), connect_timeout=2.0)
    up = [True]
    clock = Clock()
    cache = VectorCache(lambda: filled if up[0] else dead, background=False, clock=clock, check_interval_s=10.0,
                        stale_after_s=100.0)
    served = cache.field("dsp")
    up[0] = False
    clock.now = 11.0
    assert cache.field("dsp") is served  # the last copy keeps serving
    (status,) = cache.status()
    assert status["last_error"] and status["failures"] == 1 and not status["stale"]
    clock.now = 150.0
    cache.field("dsp")
    (status,) = cache.status()
    assert status["stale"] and status["failing_s"] == pytest.approx(139.0) and status["failures"] == 2
    up[0] = True
    clock.now = 200.0
    cache.field("dsp")
    (status,) = cache.status()
    assert status["last_error"] is None and not status["stale"]
    dead.close()


def test_a_first_load_that_fails_is_recorded(tmp_path):
    dead = VectorStore(nowhere_url(), connect_timeout=2.0)
    cache = VectorCache(dead, background=False, clock=Clock())
    with pytest.raises(Exception):
        cache.field("dsp")
    (status,) = cache.status()
    assert not status["loaded"] and status["last_error"]
    dead.close()


def test_a_store_scan_reports_its_progress_while_it_runs(filled: VectorStore, tmp_path, monkeypatch):
    import navembed_pipeline.lib.recommend.index as index_module

    cache = new_cache(filled, tmp_path)
    seen = []
    scan = index_module._scan

    def watched(*args, **kwargs):
        found = scan(*args, **kwargs)
        seen.append(cache.status())  # still inside the load: what /health shows meanwhile
        return found

    monkeypatch.setattr(index_module, "_scan", watched)
    cache.field("dsp")
    (during,) = seen[0]
    assert during["scan"]["rows_read"] == TRACKS and during["scan"]["rows_expected"] == TRACKS
    assert not during["loaded"]
    (after,) = cache.status()
    assert "scan" not in after and after["loaded"] and after["source"] == "store"
