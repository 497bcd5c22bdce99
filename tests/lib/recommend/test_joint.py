"""Fused candidates from one search over the models' rows side by side (``lib/recommend/joint.py``): the
joined search finds the tracks with the best fused score, which each model's shortlist misses; it is exact
on a small library, nearly so through the projected graph, carried over a reload, written with the
snapshots and mapped by a restart, and a partly embedded library still finds the tracks only one model has.
The cache joins the fields it serves from a real Milvus Lite server, and joins them again after a run."""

import threading

import numpy as np
import pytest

import navembed_pipeline.lib.recommend.ann as ann_module
import navembed_pipeline.lib.recommend.joint as joint_module
from navembed_pipeline.lib.recommend import FieldVectors, PlaylistRules, Recommender, RecommendRequest, StaticVectors
from navembed_pipeline.lib.recommend.joint import JointKeeper, build_joint, load_joint, save_joint
from navembed_pipeline.lib.recommend.snapshot import SnapshotDamaged, manifest_path
from navembed_pipeline.lib.store import VectorRow, VectorStore
from tests.lib.recommend.helpers import catalog_of, track
from tests.lib.recommend.test_index import Clock

DIMS = {"dsp": 12, "musicnn": 40}
LATENT = 6


def library(count: int, seed: int = 4, noise: float = 0.35) -> dict[str, dict[str, np.ndarray]]:
    """``count`` tracks whose two models agree loosely, as real ones do: each model's vector is a shared
    low-rank part seen through its own mixing, plus the model's own noise."""
    rng = np.random.default_rng(seed)
    shared = rng.standard_normal((count, LATENT))
    out = {}
    for model, dim in DIMS.items():
        mixing = rng.standard_normal((LATENT, dim))
        values = shared @ mixing + noise * np.sqrt(LATENT) * rng.standard_normal((count, dim))
        out[model] = {f"t{i:05d}": values[i].astype(np.float32) for i in range(count)}
    return out


def fields_of(vectors: dict[str, dict[str, np.ndarray]], *, ivf_min_rows: int = 1 << 62,
              previous: dict[str, FieldVectors] | None = None) -> list[FieldVectors]:
    return [FieldVectors(model, "embedding", list(rows), [1] * len(rows), np.stack(list(rows.values())),
                         ivf_min_rows=ivf_min_rows, previous=(previous or {}).get(model))
            for model, rows in vectors.items()]


def catalog(fields: list[FieldVectors]):
    """Every track of the fields in the catalog, each its own artist and album."""
    return catalog_of([track(t) for t in dict.fromkeys(t for f in fields for t in f.track_ids)])


def fused_order(fields: list[FieldVectors], track: str, coefficients: list[float]) -> list[str]:
    """Every track of the first field, best first by ``sum_m c_m * cos_m`` to ``track``: numpy, no index."""
    ids = list(fields[0].track_ids)
    score = np.zeros(len(ids))
    for field, c in zip(fields, coefficients, strict=True):
        rows = np.asarray(field.rows)[field.local_indices(ids)]
        score += c * (rows @ field.vectors_of(track)[0])
    return [ids[i] for i in np.argsort(-score, kind="stable")]


def joined_candidates(joint, fields: list[FieldVectors], track: str, coefficients: list[float], k: int) -> list[str]:
    query = joint.query([c * f.vectors_of(track)[0] for f, c in zip(fields, coefficients, strict=True)])
    return joint.candidates(query, k)


@pytest.fixture
def hnsw(monkeypatch):
    monkeypatch.setattr(ann_module, "INDEX_KIND", "hnsw")


def test_a_small_joined_search_is_the_exact_fused_order_for_any_weights():
    fields = fields_of(library(1500))
    joint = build_joint(fields)
    assert joint.projection is None and joint.vectors.ann is None and joint.complete
    assert joint.vectors.dimension == sum(DIMS.values())
    for track, coefficients in (("t00007", [1.0, 1.0]), ("t00400", [0.3, 1.0]), ("t01234", [2.0, 0.5])):
        want = fused_order(fields, track, coefficients)[:40]
        assert set(joined_candidates(joint, fields, track, coefficients, 40)) == set(want)


def test_a_projected_joined_graph_finds_the_fused_nearest(hnsw):
    fields = fields_of(library(3000), ivf_min_rows=500)
    joint = build_joint(fields, ivf_min_rows=500)
    assert joint.projection is not None and joint.vectors.ann is not None
    assert joint.projection.shape == (sum(DIMS.values()), min(joint_module.JOINT_DIMENSIONS, sum(DIMS.values())))
    recalls = []
    for track in ("t00011", "t00999", "t02500"):
        want = set(fused_order(fields, track, [0.4, 1.0])[:50])
        recalls.append(len(want & set(joined_candidates(joint, fields, track, [0.4, 1.0], 50))) / 50)
    assert min(recalls) >= 0.95, recalls


def test_the_recommender_finds_what_scoring_every_track_finds_where_shortlists_miss():
    fields = fields_of(library(3000, noise=1.0))
    size = len(fields[0])
    rules = PlaylistRules(size=5, collapse_duplicates=False)
    truth = Recommender(StaticVectors(fields, joined=False), catalog(fields), default_models=tuple(DIMS),
                        min_candidates=size)
    joined = Recommender(StaticVectors(fields), catalog(fields), default_models=tuple(DIMS), min_candidates=5)
    shortlists = Recommender(StaticVectors(fields, joined=False), catalog(fields), default_models=tuple(DIMS),
                             min_candidates=5)
    missed = 0
    for seed in ("t00003", "t00150", "t01777", "t02999"):
        request = RecommendRequest("similar", seeds=(seed,), rules=rules)
        want = truth.ranked_ids(request)[0]
        assert len(want) == rules.size
        assert joined.ranked_ids(request)[0] == want
        missed += len(set(want) - set(shortlists.ranked_ids(request)[0]))
    assert missed > 0  # the case is one where each model's shortlist alone loses tracks


def test_a_partly_embedded_library_still_finds_the_tracks_one_model_has():
    vectors = library(1200)
    only_dsp = {f"x{i:03d}": vectors["dsp"]["t00042"] + 0.01 * i for i in range(3)}  # near t00042, dsp only
    vectors["dsp"].update(only_dsp)
    fields = fields_of(vectors)
    joint = build_joint(fields)
    assert not joint.complete and len(joint.vectors) == 1200
    engine = Recommender(StaticVectors(fields), catalog(fields), default_models=tuple(DIMS), min_candidates=20)
    found = engine.ranked_ids(RecommendRequest("similar", seeds=("t00042",), rules=PlaylistRules(
        size=10, collapse_duplicates=False)))[0]
    assert set(only_dsp) <= set(found)


def test_a_reload_carries_the_joined_graph_and_finds_the_re_embedded_tracks(hnsw):
    vectors = library(3000)
    fields = fields_of(vectors, ivf_min_rows=500)
    joint = build_joint(fields, ivf_min_rows=500)
    rng = np.random.default_rng(8)
    changed = ["t00100", "t02000"]
    after = {m: dict(rows) for m, rows in vectors.items()}
    for track in changed:
        after["dsp"][track] = rng.standard_normal(DIMS["dsp"]).astype(np.float32)
    new = fields_of(after, ivf_min_rows=500, previous={f.model: f for f in fields})
    carried = build_joint(new, previous=joint, ivf_min_rows=500)
    assert carried.serves(new) and not joint.serves(new)
    assert carried.projection is joint.projection and carried.vectors.ann.index is joint.vectors.ann.index
    outside = sorted(carried.vectors.track_ids[carried.vectors.row_track[r]] for r in carried.vectors.ann.extra)
    assert outside == changed
    # every joined row, copied (unchanged tracks) or projected again (the re-embedded ones), is its track's now
    ids = list(carried.vectors.track_ids)
    joined = np.concatenate([np.asarray(f.rows)[f.local_indices(ids)] for f in new], axis=1) @ carried.projection
    joined /= np.linalg.norm(joined, axis=1, keepdims=True)
    assert np.allclose(np.asarray(carried.vectors.rows), joined, atol=1e-5)
    for track in changed:
        assert joined_candidates(carried, new, track, [1.0, 1.0], 1) == [track]


def test_joined_rows_are_written_with_the_snapshots_and_mapped_by_a_restart(hnsw, tmp_path, monkeypatch):
    fields = fields_of(library(2000), ivf_min_rows=500)
    signatures = [("c-dsp", 2000, "g1"), ("c-musicnn", 2000, "g7")]
    keeper = JointKeeper(background=False, snapshot_dir=tmp_path, ivf_min_rows=500)
    joint = keeper.get(fields, signatures)
    assert joint is not None and manifest_path(tmp_path, "dsp+musicnn", "joint").exists()

    def rebuilt(*_args, **_kwargs):
        raise AssertionError("joined again instead of mapped from the snapshot")

    monkeypatch.setattr(joint_module, "build_joint", rebuilt)
    again = JointKeeper(background=False, snapshot_dir=tmp_path, ivf_min_rows=500).get(fields, signatures)
    assert isinstance(again.vectors.rows, np.memmap) and again.serves(fields)
    assert np.array_equal(again.projection, joint.projection)
    query = joint.query([f.vectors_of("t00123")[0] for f in fields])
    assert again.candidates(query, 20) == joint.candidates(query, 20)
    assert load_joint(tmp_path, fields, [signatures[0], ("c-musicnn", 2001, "g8")]) is None  # the store moved on


def test_a_damaged_joined_snapshot_is_set_aside_and_joined_again(hnsw, tmp_path):
    fields = fields_of(library(2000), ivf_min_rows=500)
    signatures = [("c", 2000, "g"), ("c", 2000, "g")]
    assert save_joint(tmp_path, build_joint(fields, ivf_min_rows=500), signatures)
    folder = next(p for p in tmp_path.iterdir() if p.is_dir())
    (folder / "projection.npy").write_bytes(b"not an array")
    with pytest.raises(SnapshotDamaged):
        load_joint(tmp_path, fields, signatures)
    assert not manifest_path(tmp_path, "dsp+musicnn", "joint").exists()
    joint = JointKeeper(background=False, snapshot_dir=tmp_path, ivf_min_rows=500).get(fields, signatures)
    assert joint is not None and joint.serves(fields)


def joined_threads() -> None:
    for thread in threading.enumerate():
        if thread.name.startswith("navembed-joint-"):
            thread.join(60)


def test_a_large_library_is_joined_and_mapped_on_a_thread_while_shortlists_serve(hnsw, tmp_path, monkeypatch):
    fields = fields_of(library(2000), ivf_min_rows=500)
    signatures = [("c", 2000, "g"), ("c", 2000, "g")]
    keeper = JointKeeper(background=True, snapshot_dir=tmp_path, ivf_min_rows=500)
    first = keeper.get(fields, signatures)
    joined_threads()
    joint = keeper.get(fields, signatures)
    assert first is None and joint is not None and joint.serves(fields)
    assert keeper.status() == [{"models": ["dsp", "musicnn"], "tracks": 2000, "complete": True,
                                "index": joint.vectors.ann.summary, "building": False, "error": None}]

    def rebuilt(*_args, **_kwargs):
        raise AssertionError("joined again instead of mapped from the snapshot")

    monkeypatch.setattr(joint_module, "build_joint", rebuilt)
    restarted = JointKeeper(background=True, snapshot_dir=tmp_path, ivf_min_rows=500)
    assert restarted.get(fields, signatures) is None  # mapping the files is not a request's to wait for
    joined_threads()
    mapped = restarted.get(fields, signatures)
    assert isinstance(mapped.vectors.rows, np.memmap) and mapped.serves(fields)
    assert restarted.status()[0]["building"] is False


def rows_of(model: str, vectors: dict[str, np.ndarray]) -> list[VectorRow]:
    return [VectorRow(track_id=t, segment=1, name=f"A - {t}", offset_seconds=0.0, duration_seconds=30.0,
                      model_id=model, model_version="1", fingerprint="fp", bucket="00", vectors={"embedding": v})
            for t, v in vectors.items()]


def test_the_cache_joins_the_fields_it_serves_and_joins_them_again_after_a_run(vector_store: VectorStore, tmp_path):
    from navembed_pipeline.lib.recommend import VectorCache

    vectors = library(300)
    for model, rows in vectors.items():
        vector_store.ensure_collection(model, {"embedding": DIMS[model]})
        vector_store.upsert(model, rows_of(model, rows))
    vector_store.publish_writes()
    cache = VectorCache(vector_store, background=False, clock=Clock(), snapshot_dir=tmp_path / "snap")
    fields = [cache.field(m) for m in DIMS]
    joint = cache.joint(fields)
    assert joint is not None and joint.serves(fields) and len(joint.vectors) == 300
    assert cache.joint(fields) is joint  # kept while the fields are the same copies
    changed = {"t00005": np.random.default_rng(1).standard_normal(DIMS["dsp"]).astype(np.float32)}
    vector_store.upsert("dsp", rows_of("dsp", changed))
    vector_store.publish_writes()
    assert cache.sync("dsp") == [("dsp", "embedding")]
    now = [cache.field(m) for m in DIMS]
    again = cache.joint(now)
    assert again is not joint and again.serves(now)
    assert joined_candidates(again, now, "t00005", [1.0, 1.0], 1) == ["t00005"]
    assert cache.joint_status()[0]["tracks"] == 300


def test_at_most_two_model_sets_are_kept_joined():
    base = library(600)
    vectors = {**base, "muq": {t: v[:8] * 2.0 + 1.0 for t, v in base["musicnn"].items()}}
    fields = {m: FieldVectors(m, "embedding", list(r), [1] * len(r), np.stack(list(r.values())))
              for m, r in vectors.items()}
    keeper = JointKeeper(background=False)
    for models in (("dsp", "musicnn"), ("dsp", "muq"), ("dsp", "musicnn"), ("musicnn", "muq")):
        assert keeper.get([fields[m] for m in models]).models == models
    assert [s["models"] for s in keeper.status()] == [["dsp", "musicnn"], ["musicnn", "muq"]]
