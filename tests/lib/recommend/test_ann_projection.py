"""A wide field's graph is built over its rows' leading directions (``ann.graph_projection``): it finds what
exact search finds, is written with the snapshot and mapped back with its projection, carries over a reload,
and a narrow field (dsp) keeps its graph over the full rows."""

import numpy as np

from navembed_pipeline.lib.recommend import FieldVectors
from navembed_pipeline.lib.recommend.ann import GRAPH_DIMENSIONS, GRAPH_MAX_DIMENSIONS, graph_projection, hnsw_graph
from navembed_pipeline.lib.recommend.snapshot import prefault, read_snapshot, write_snapshot
from tests.lib.recommend.test_ann_carry import exact_of, hnsw  # noqa: F401 - the fixture is used below

COUNT, WIDE, NARROW = 3000, 480, 64


def wide_rows(count: int = COUNT, seed: int = 1) -> np.ndarray:
    """Rows like a deep model's: a strong common direction and a few hundred dimensions of real spread."""
    rng = np.random.default_rng(seed)
    mixing = rng.standard_normal((120, WIDE)) / np.sqrt(120)
    rows = 3.0 + rng.standard_normal((count, 120)) @ mixing + 0.05 * rng.standard_normal((count, WIDE))
    return rows.astype(np.float32)


def build(rows: np.ndarray, ids: list[str] | None = None, previous: FieldVectors | None = None) -> FieldVectors:
    ids = ids or [f"t{i:05d}" for i in range(len(rows))]
    return FieldVectors("musicnn", "embedding", ids, [1] * len(ids), rows, ivf_min_rows=1000, previous=previous)


def test_the_projection_keeps_the_cosines_between_rows():
    rows = wide_rows()
    unit = rows / np.linalg.norm(rows, axis=1, keepdims=True)
    projection = graph_projection(unit)
    assert projection.shape == (WIDE, GRAPH_DIMENSIONS)
    assert np.allclose(projection.T @ projection, np.eye(GRAPH_DIMENSIONS), atol=1e-4)  # orthonormal directions
    a, b = unit[:200], unit[200:400]
    exact, projected = a @ b.T, (a @ projection) @ (b @ projection).T
    assert np.abs(exact - projected).max() < 0.01
    assert exact.std() > 10 * np.abs(exact - projected).max()  # the error is small against the spread it ranks


def test_a_wide_field_searches_a_projected_graph_and_finds_what_exact_search_finds(hnsw):
    field = build(wide_rows())
    assert WIDE > GRAPH_MAX_DIMENSIONS and field.ann.projected and field.ann.kind == "hnsw"
    assert hnsw_graph(field.ann.index).d == GRAPH_DIMENSIONS
    assert field.ann.summary.endswith(f"on {GRAPH_DIMENSIONS} of {WIDE} dimensions")
    exact = exact_of(field)
    for track in range(0, COUNT, 150):
        query = np.asarray(field.rows[track])
        found = field.candidates(query, 40)
        assert track in set(found.tolist())
        assert set(found.tolist()) == set(exact.candidates(query, 40).tolist())


def test_a_narrow_field_keeps_its_graph_over_the_full_rows(hnsw):
    rows = np.random.default_rng(3).standard_normal((COUNT, NARROW)).astype(np.float32)
    field = FieldVectors("dsp", "embedding", [f"t{i:05d}" for i in range(COUNT)], [1] * COUNT, rows, ivf_min_rows=1000)
    assert not field.ann.projected and type(field.ann.index).__name__ == "IndexHNSWFlat"


def test_a_projected_graph_is_mapped_from_the_snapshot_and_carried_over_a_reload(hnsw, tmp_path, caplog):
    built = build(wide_rows())
    write_snapshot(tmp_path, ("c", COUNT, "g"), built)
    mapped = read_snapshot(tmp_path, "musicnn", "embedding", ("c", COUNT, "g"))
    assert mapped.ann.projected and hnsw_graph(mapped.ann.index).d == GRAPH_DIMENSIONS
    queries = np.asarray(mapped.rows[:6])
    assert np.array_equal(mapped.ann.search(queries, 25), built.ann.search(queries, 25))
    with caplog.at_level("WARNING", logger="navembed.recommend"):
        prefault(mapped)
    assert not [r for r in caplog.records if "prefault" in r.getMessage()]
    assert np.array_equal(mapped.ann.search(queries, 25), built.ann.search(queries, 25))

    rows = np.array(mapped.rows)  # a run re-embedded 20 tracks
    fresh = wide_rows(20, seed=9)
    rows[100:120] = fresh / np.linalg.norm(fresh, axis=1, keepdims=True)
    reloaded = build(rows, list(mapped.track_ids), previous=mapped)
    assert reloaded.ann.index is mapped.ann.index and reloaded.ann.projected  # carried, not rebuilt
    assert sorted(reloaded.ann.extra.tolist()) == list(range(100, 120))
    kept = reloaded.ann.labels >= 0
    graph = hnsw_graph(reloaded.ann.index).reconstruct_n(0, reloaded.ann.entries)  # the projected rows it holds
    projection = graph_projection(np.asarray(built.rows))
    assert np.abs(graph[kept] - np.asarray(reloaded.rows)[reloaded.ann.labels[kept]] @ projection).max() < 1e-4
    exact = exact_of(reloaded)
    for track in (100, 105, 119, 7, 2500):
        query = np.asarray(reloaded.rows[track])
        assert set(reloaded.candidates(query, 30).tolist()) == set(exact.candidates(query, 30).tolist())
