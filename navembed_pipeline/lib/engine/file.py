"""Embed one file outside the library (CLI `embed`, the upload socket): whole, a segment, or per CUE track."""

from pathlib import Path
from typing import Any

from navembed_pipeline.lib.library.audio import load_audio, probe
from navembed_pipeline.lib.library.cue import cue_segments, read_cue_file
from navembed_pipeline.lib.library.segments import TrackSegment, find_cue_sheet
from navembed_pipeline.lib.models.base import EmbeddingModel


def file_segments(path: Path, *, segment: tuple[float, float | None] | None = None,
                  cue_path: Path | None = None, title: str | None = None) -> list[TrackSegment]:
    """Segments of ``path``: the explicit one, else its CUE tracks, else the whole file."""
    duration = probe(path).duration_seconds
    name = title or path.stem
    if segment is not None:
        start, length = segment
        return [TrackSegment(1, name, start, length if length is not None else max(duration - start, 0.0))]
    sheet = read_cue_file(cue_path) if cue_path else find_cue_sheet(path)
    if sheet is None:
        return [TrackSegment(1, name, 0.0, duration)]
    return [TrackSegment(s.index, s.title, s.offset_seconds, s.duration_seconds)
            for s in cue_segments(sheet, duration, file_name=path.name)]


def embed_file(model: EmbeddingModel, path: Path, *, segment: tuple[float, float | None] | None = None,
               cue_path: Path | None = None, title: str | None = None) -> dict[str, Any]:
    """``{"model", "dimension", "segments": [{"index","title","offset_seconds","duration_seconds","embedding"}]}``."""
    segments = file_segments(Path(path), segment=segment, cue_path=cue_path, title=title)
    waves = [load_audio(path, model.sample_rate, offset_seconds=s.offset_seconds,
                        duration_seconds=s.duration_seconds) for s in segments]
    vectors = model.embed(waves)
    return {
        "model": model.name,
        "dimension": model.dimension,
        "segments": [{"index": s.index, "title": s.title, "offset_seconds": s.offset_seconds,
                      "duration_seconds": s.duration_seconds,
                      "embedding": [float(x) for x in v.embedding]}
                     for s, v in zip(segments, vectors, strict=True)],
    }
