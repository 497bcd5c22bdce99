"""The `navembed` CLI as a new user runs it: sample-library, embed, models, --help."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from navembed_pipeline.cli import build_parser, main
from navembed_pipeline.lib.library.navidrome import NavidromeLibrary


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "navembed_pipeline.cli", *args],
                          capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def library(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("cli") / "lib"
    done = run_cli("sample-library", str(root), "--seconds", "4")
    assert done.returncode == 0, done.stderr
    return root


def test_sample_library_writes_every_format_a_cue_album_and_a_navidrome_db(library: Path) -> None:
    suffixes = {p.suffix for p in library.rglob("*") if p.is_file()}
    assert {".flac", ".mp3", ".ogg", ".opus", ".wav", ".m4a", ".cue"} <= suffixes
    tracks = list(NavidromeLibrary(library / "navidrome.db").tracks())
    assert len(tracks) == 12 and all(Path(t.path).is_file() for t in tracks)
    assert {t.library_name for t in tracks} == {"Music", "Field Recordings"}


def test_embed_json_prints_each_cue_track_as_a_segment(library: Path) -> None:
    album = next(library.rglob("Live Set.flac"))
    done = run_cli("embed", str(album), "--model", "dsp", "--json")
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["model"] == "dsp" and result["dimension"] == 273
    assert [s["title"] for s in result["segments"]] == ["Opening Keys", "Drum Break", "Closing Pads"]
    assert [s["index"] for s in result["segments"]] == [1, 2, 3]
    for segment in result["segments"]:
        assert len(segment["embedding"]) == 273
        assert np.linalg.norm(segment["embedding"]) == pytest.approx(1.0, abs=1e-5)


def test_embed_a_segment(library: Path, capsys) -> None:
    track = next(library.rglob("01 Breakbeat.wav"))
    assert main(["embed", str(track), "--segment", "1:3", "--json"]) == 0
    segment = json.loads(capsys.readouterr().out)["segments"][0]
    assert (segment["offset_seconds"], segment["duration_seconds"]) == (1.0, 2.0)


def test_embed_errors_are_one_line_and_non_zero(library: Path, capsys) -> None:
    assert main(["embed", str(next(library.rglob("01 Damaged.mp3")))]) == 1
    assert main(["embed", str(library / "nope.flac")]) == 1
    assert main(["embed", str(next(library.rglob("01 Breakbeat.wav"))), "--segment", "5:2"]) == 1
    errors = capsys.readouterr().err.strip().splitlines()
    assert len(errors) == 3 and all(line.startswith("navembed: error: ") for line in errors)


def test_deep_model_without_weights_names_the_download_command(library: Path, tmp_path, capsys) -> None:
    track = next(library.rglob("01 Breakbeat.wav"))
    assert main(["embed", str(track), "--model", "mert", "--models-dir", str(tmp_path)]) == 1
    assert "navembed models download mert" in capsys.readouterr().err


def test_every_command_has_help() -> None:
    parser = build_parser()
    commands = parser._subparsers._group_actions[0].choices  # noqa: SLF001 - walking argparse's tree
    for name, sub in commands.items():
        assert sub.format_help().strip(), name
        assert sub.description or sub.format_usage(), name
