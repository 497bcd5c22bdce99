"""MusiCNN embeds inside the decode worker processes (one per core, one torch thread each), as dsp does:
the vectors and tags a dsp + musicnn run stores with worker processes are those of a run whose musicnn
embeds in the run's own process (decode threads), and the run's own musicnn model is never loaded (damaged
weights in the workers: ``test_model_load_failures.py``).

Real weights (converted from the real ``musicnn`` wheel) and a real recording (the MIT-licensed
excerpt beside MusiCNN's golden fixtures) plus generated songs, in a real Navidrome-schema library."""

import shutil
from pathlib import Path

import numpy as np

from navembed_pipeline.lib.engine.run import EmbeddingRun, RunOptions, group_by_bucket
from navembed_pipeline.lib.library.navidrome import NavidromeLibrary, Track
from navembed_pipeline.lib.models.dsp import DspModel
from navembed_pipeline.lib.models.musicnn.model import TAGS_FIELD, MusicnnModel
from navembed_pipeline.lib.models.options import ModelOptions
from navembed_pipeline.sample_data.navidrome_fixture import FixtureLibrary, FixtureTrack, create_navidrome_db
from tests.lib.engine.test_run import write_library
from tests.lib.models.musicnn_fixtures import FIXTURES, musicnn_models_dir, musicnn_wheel  # noqa: F401 - fixtures
from tests.lib.models.musicnn_goldens import EXCERPT_FILE


def real_library(root: Path, copies: int) -> list[Track]:
    """``copies`` copies of the real recording (6.2 s, 16 kHz FLAC) as a library's tracks."""
    music = root / "music"
    music.mkdir(parents=True)
    fixtures = []
    for i in range(copies):
        relative = f"{i:03d} sectoid.flac"
        shutil.copyfile(FIXTURES / EXCERPT_FILE, music / relative)
        fixtures.append(FixtureTrack(path=relative, title=f"Metal madness {i}", artist="Sectoid", album="Real",
                                     duration=6.2))
    create_navidrome_db(root / "navidrome.db", libraries=[FixtureLibrary(1, "Real", str(music))], tracks=fixtures)
    return list(NavidromeLibrary(root / "navidrome.db").tracks())


def stored(store, tracks: list[Track]) -> dict[str, dict[str, np.ndarray]]:
    rows = store.rows_in_buckets("musicnn", sorted(group_by_bucket(tracks)), ["track_id", "embedding", TAGS_FIELD])
    return {row["track_id"]: {f: np.asarray(row[f]) for f in ("embedding", TAGS_FIELD)} for row in rows}


def test_musicnn_embeds_in_the_worker_processes_with_the_vectors_it_gets_in_process(
        tmp_path, vector_store, musicnn_models_dir) -> None:
    tracks = real_library(tmp_path / "real", 3) + write_library(tmp_path / "generated", [8.0, 7.0])
    results, loaded, worker_cpu = {}, {}, {}
    for processes in (False, True):
        options = ModelOptions(device="cpu", models_dir=musicnn_models_dir)
        models = [DspModel(options), MusicnnModel(options)]
        try:
            engine = EmbeddingRun(models=models, store=vector_store,
                                  options=RunOptions(force=True, decode_workers=2, decode_processes=processes))
            reports = list(engine.run(group_by_bucket(tracks)))
            assert sum(r.embedded for r in reports if r.model == "musicnn") == len(tracks)
            loaded[processes] = models[1].is_loaded
            worker_cpu[processes] = engine.stage_seconds["worker_model_cpu"]
        finally:
            for model in models:
                model.shutdown()
        results[processes] = stored(vector_store, tracks)
    assert loaded == {False: True, True: False}  # with processes, the run's own musicnn never loads
    assert worker_cpu[False] == 0.0 and worker_cpu[True] > 0.0
    assert set(results[True]) == {t.id for t in tracks}
    for tid, fields in results[False].items():
        for field, vector in fields.items():
            np.testing.assert_allclose(results[True][tid][field], vector, rtol=0, atol=1e-5, err_msg=field)
    copies = [results[True][t.id]["embedding"] for t in tracks[:3]]  # the same recording thrice: one vector
    np.testing.assert_allclose(copies[1], copies[0], rtol=0, atol=1e-6)
