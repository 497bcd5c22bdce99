"""The music library as files and Navidrome sees it: the Navidrome database reader and its schema, CUE
sheets, audio decode and encode, safe file names, a track's segments and file version, upload ids.

May import: the shared leaves (``errors``) only; every other domain builds on this one.
"""

from navembed_pipeline.lib.public import lazy_names

_PUBLIC = {
    "NavidromeLibrary": "navidrome", "Track": "navidrome", "parse_path_map": "navidrome",
    "AudioInfo": "audio", "DecodedAudio": "audio", "decode_audio": "audio", "load_audio": "audio", "probe": "audio",
    "write_audio": "encode",
    "CueSheet": "cue", "CueTrack": "cue", "cue_segments": "cue", "format_cue": "cue", "read_cue_file": "cue",
    "split_cue": "cue",
    "safe_file_name": "filenames",
    "TrackSegment": "segments", "find_cue_sheet": "segments", "segments_for": "segments",
    "track_fingerprint": "segments",
    "UPLOAD_PREFIX": "upload_ids", "is_upload_id": "upload_ids", "upload_id": "upload_ids",
}
__getattr__ = lazy_names(__name__, _PUBLIC)
__all__ = sorted(_PUBLIC)
