"""A run over damaged state files: the failure log, the fingerprint database and the missing-file log, each a
truncated copy. The run does not fail and does not run without fingerprints (the issue's symptom): each
file is set aside (``<name>.corrupt-<time>``) and rebuilt, every readable track is fingerprinted again and
the unreadable one is recorded in the new failure log."""

from pathlib import Path

import dagster as dg

from navembed_pipeline.assets import embedding_assets, library_tracks
from navembed_pipeline.lib.duplicates.fingerprint_store import FingerprintStore
from navembed_pipeline.lib.runs import embed_run_config
from navembed_pipeline.lib.store.failure_log import FailureLog
from navembed_pipeline.lib.store.state_files import damage, set_aside_files
from navembed_pipeline.partitions import range_tags
from navembed_pipeline.resources import ModelsResource, NavidromeResource, VectorStoreResource
from tests.api.test_state_file_damage import FILES, truncated

DSP = dg.AssetKey("dsp_embeddings")


def test_a_run_over_damaged_state_files_sets_them_aside_and_rebuilds_them(sample_library, vector_store, milvus_uri,
                                                                          instance, tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    raw = {name: truncated(data / name, fill) for name, fill in FILES.items()}
    resources = {"navidrome": NavidromeResource(db_path=str(sample_library.db_path)),
                 "vector_store": VectorStoreResource(uri=milvus_uri, failures_db=str(data / "failures.sqlite"),
                                                     fingerprints_db=str(data / "fingerprints.sqlite")),
                 "models": ModelsResource(device="cpu", decode_workers=1)}
    result = dg.materialize([library_tracks, *embedding_assets], instance=instance, selection=[DSP],
                            resources=resources, tags=range_tags("00", "ff"), run_config=embed_run_config(["dsp"]))
    assert result.success
    stored = vector_store.all_track_ids("dsp")
    assert len(stored) == 11  # 12 tracks, one unreadable
    assert set(FingerprintStore(data / "fingerprints.sqlite").versions(stored)) == stored  # fingerprinted again
    (reason,) = FailureLog(data / "failures.sqlite").failed("dsp").values()  # recorded in the rebuilt log
    assert "not a readable audio file" in reason
    aside = set_aside_files(data)
    assert sorted(n.split(".corrupt-")[0] for n in aside) == sorted(FILES)
    for name in aside:  # kept byte for byte for recovery (upload records live in fingerprints.sqlite)
        assert (data / name).read_bytes() == raw[name.split(".corrupt-")[0]]
    assert all(damage(data / name) is None for name in FILES)  # rebuilt, sound
