"""The ``sonic_mixes`` asset in real Dagster after a real embedding run of the sample library (whose
navidrome.db has four users, three with listening history), and the sensor that asks for it."""

import dagster as dg

from navembed_pipeline.lib.library.m3u import MARKER
from navembed_pipeline.lib.library.navidrome import NavidromeLibrary
from navembed_pipeline.mixes import MixesResource, sonic_mixes, sonic_mixes_after_runs
from tests.lib.library.test_m3u import navidrome_import
from tests.pipeline.helpers import embed, pipeline_resources


def test_the_asset_writes_the_mixes_after_a_run_with_metadata(sample_library, milvus_uri, instance, tmp_path) -> None:
    assert embed(sample_library, milvus_uri, instance).success
    folder = sample_library.root / "music" / "navembed"  # inside the library, as PlaylistsPath wants it
    foreign = folder / "Road Trip.m3u8"
    folder.mkdir()
    foreign.write_text("#EXTM3U\n../Static/Rooms/01 White Room.mp3\n", encoding="utf-8")
    resources = {**pipeline_resources(sample_library, milvus_uri),
                 "mixes": MixesResource(playlists_dir=str(folder), models="dsp", size=5)}
    result = dg.materialize([sonic_mixes], instance=instance, resources=resources)
    assert result.success
    (event,) = result.get_asset_materialization_events()
    metadata = {k: v.value for k, v in event.materialization.metadata.items()}
    assert metadata["users"] == 4 and metadata["users_with_history"] == 3
    assert metadata["for_you_mixes"] == 3 and metadata["sound_mixes"] >= 2, metadata["preview"]
    assert metadata["mixes"] == sum(metadata[f"{k}_mixes"] for k in ("sound", "for_you", "rediscover", "radio"))
    assert metadata["tracks"] >= metadata["distinct_tracks"] > 0 and metadata["named_by"] == "artists"
    assert "For you · alice" in metadata["preview"] and "navembed-for-you-bob.m3u8" in metadata["preview"]
    assert "for-you-dave" not in metadata["preview"]  # no history: library-wide mixes only
    assert metadata["playlists_dir"] == str(folder) and metadata["foreign_left_alone"] == 0

    written = sorted(p for p in folder.glob("navembed-*.m3u8"))
    assert len(written) == metadata["mixes"]
    present = {t.id for t in NavidromeLibrary(sample_library.db_path).tracks()}
    for playlist in written:
        assert MARKER in playlist.read_text(encoding="utf-8")
        name, ids = navidrome_import(playlist, sample_library.db_path)
        assert name.startswith("navembed · ") and ids and set(ids) <= present
    bob = navidrome_import(folder / "navembed-for-you-bob.m3u8", sample_library.db_path)[1]
    library_two = {t.id for t in NavidromeLibrary(sample_library.db_path).tracks(library_ids=[2])}
    assert not set(bob) & library_two  # bob only sees the main library
    assert foreign.read_text(encoding="utf-8") == "#EXTM3U\n../Static/Rooms/01 White Room.mp3\n"

    again = dg.materialize([sonic_mixes], instance=instance, resources=resources)
    assert again.success and sorted(folder.glob("navembed-*.m3u8")) == written and foreign.exists()


def test_the_sensor_asks_for_the_mixes_after_an_embedding_run_only(sample_library, milvus_uri, instance) -> None:
    result = embed(sample_library, milvus_uri, instance)
    context = dg.build_run_status_sensor_context(
        sensor_name="sonic_mixes_after_runs", dagster_instance=instance, dagster_run=result.dagster_run,
        dagster_event=result.get_run_success_event())
    request = sonic_mixes_after_runs(context)
    assert isinstance(request, dg.RunRequest) and request.run_key == f"after-{result.dagster_run.run_id}"

    resources = {**pipeline_resources(sample_library, milvus_uri),
                 "mixes": MixesResource(playlists_dir=str(sample_library.root / "out"), size=5)}
    mixes_run = dg.materialize([sonic_mixes], instance=instance, resources=resources)
    context = dg.build_run_status_sensor_context(
        sensor_name="sonic_mixes_after_runs", dagster_instance=instance, dagster_run=mixes_run.dagster_run,
        dagster_event=mixes_run.get_run_success_event())
    assert isinstance(sonic_mixes_after_runs(context), dg.SkipReason)


def test_the_playlists_folder_setting(monkeypatch, tmp_path) -> None:
    from navembed_pipeline.definitions import resources_for
    from navembed_pipeline.lib.settings import Settings

    monkeypatch.setenv("NAVEMBED_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("NAVEMBED_PLAYLISTS_DIR", "")  # how the stack passes an unset setting on
    assert Settings().mixes_dir == tmp_path / "data" / "playlists"
    monkeypatch.setenv("NAVEMBED_PLAYLISTS_DIR", str(tmp_path / "music" / "navembed"))
    monkeypatch.setenv("NAVEMBED_MIX_SIZE", "7")
    mixes = resources_for(Settings())["mixes"]
    assert (mixes.playlists_dir, mixes.size) == (str(tmp_path / "music" / "navembed"), 7)
