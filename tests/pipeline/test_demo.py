"""`make demo`'s entry point, in its quick form, so the demo cannot silently rot."""

from navembed_pipeline.cli import main
from navembed_pipeline.lib.milvus_server import running_uri


def test_demo_embeds_the_sample_library_and_prints_similar_tracks(tmp_path, capsys) -> None:
    assert main(["demo", "--dir", str(tmp_path / "demo"), "--seconds", "3"]) == 0
    out = capsys.readouterr().out
    assert "embedded 11" in out and "failed 1" in out  # the deliberately corrupt file
    assert "tracks most similar to 'Piano Trio - Morning Keys'" in out
    assert "near-duplicate: the MP3 re-encode" in out
    assert "==> demo finished" in out
    assert running_uri(tmp_path / "demo" / "data" / "milvus") is None  # the demo stops its Milvus server
