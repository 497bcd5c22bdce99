"""A model whose weights are there but cannot be read fails its run loudly *and* records each track it was
given, with the reason: the failure table, the bucket's asset check and ``/batch/progress`` read that record
(before, a damaged weights cache ended an in-process run with nothing recorded against any track)."""

import json
from pathlib import Path

import pytest

from navembed_pipeline.lib.engine.run import EmbeddingRun, RunOptions, group_by_bucket
from navembed_pipeline.lib.errors import ModelLoadError
from navembed_pipeline.lib.models.musicnn.model import MusicnnModel
from navembed_pipeline.lib.models.musicnn.tags import tag_names
from navembed_pipeline.lib.models.options import DEFAULT_MUSICNN_VARIANT, ModelOptions
from tests.lib.engine.test_run import GOOD_SECONDS, write_library


def damaged_musicnn_weights(models_dir: Path) -> None:
    """A MusiCNN weights folder as a broken download leaves it: the manifest, and a weights file of garbage."""
    variant = DEFAULT_MUSICNN_VARIANT
    folder = models_dir / "musicnn-0.1.0"
    folder.mkdir(parents=True)
    (folder / f"{variant}.json").write_text(json.dumps(
        {"variant": variant, "tags": list(tag_names(variant)), "safetensors_sha256": "0" * 64}))
    (folder / f"{variant}.safetensors").write_bytes(b"half a download")


@pytest.mark.parametrize("processes", [False, True], ids=["in-process", "in-workers"])
def test_weights_that_cannot_be_read_record_every_track_of_the_batch_with_the_reason(tmp_path, vector_store,
                                                                                     processes) -> None:
    """In the step's process, and in the decode workers that embed MusiCNN themselves: the run stops and every
    track of the batch is recorded with the reason (never a run that ends with nothing recorded)."""
    damaged_musicnn_weights(tmp_path / "models")
    tracks = write_library(tmp_path / "library", [GOOD_SECONDS] * 3)
    model = MusicnnModel(ModelOptions(device="cpu", models_dir=tmp_path / "models"))
    engine = EmbeddingRun(models=[model], store=vector_store,
                          options=RunOptions(decode_workers=1, decode_processes=processes))
    try:
        with pytest.raises(ModelLoadError, match="unreadable or corrupt"):
            list(engine.run(group_by_bucket(tracks)))
    finally:
        model.shutdown()
    assert not model.is_loaded

    failed = vector_store.failed_tracks("musicnn")
    assert failed, "no track was recorded as failed"
    assert set(failed) <= {t.id for t in tracks}
    for reason in failed.values():
        assert reason.startswith("model could not load:") and "re-download them with" in reason
