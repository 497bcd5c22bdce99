"""One upload request from Navidrome: check the paths, split a CUE album, embed, find duplicates, store.

The request and answer are the original socket server's (``music_file``, ``name``, ``cue_file``,
``settings`` → ``status``, ``duplicates``, ``renamedFile``, ``allDuplicates``, ``splitFiles``).
Duplicates are searched before anything is written, and nothing is ever deleted: an upload whose
every file duplicates a stored track is reported and not stored; split tracks are written to a
new directory beside the album. Files are read only from the music root or the upload directory.
"""

import hashlib
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from navembed_api.errors import ApiError, Unprocessable, validation_message
from navembed_api.model_pool import ModelPool
from navembed_api.rename import Renamer, RenameRequest, read_tags, tag_name
from navembed_pipeline.lib.audio import load_audio, probe
from navembed_pipeline.lib.buckets import bucket_of
from navembed_pipeline.lib.cue import cue_segments, read_cue_file, split_cue
from navembed_pipeline.lib.models import DEEP_MODEL_NAMES
from navembed_pipeline.lib.store import VectorRow, VectorStore

LOGGER = logging.getLogger("navembed.api.uploads")
UPLOAD_ID_PREFIX = "upload:"
DUPLICATE_CANDIDATES = 5
SPLIT_SUFFIX = ".flac"  # lossless, whatever the album's format


class UploadRejected(ApiError):
    """The request cannot be served (bad JSON fields, a path outside the allowed roots, a missing file)."""


class UploadSettings(BaseModel):
    """The original request's ``settings`` (camelCase on the wire)."""

    model_config = ConfigDict(populate_by_name=True, extra="ignore")

    rename_enabled: bool = Field(False, alias="renameEnabled")
    renaming_prompt: str = Field("", alias="renamingPrompt")
    openai_endpoint: str = Field("", alias="openAiEndpoint")
    openai_model: str = Field("", alias="openAiModel")
    use_metadata: bool = Field(True, alias="useMetadata")
    similarity_search_enabled: bool = Field(False, alias="similaritySearchEnabled")
    dedup_threshold: float = Field(0.85, ge=0.0, le=1.0, alias="dedupThreshold")
    reasoning_level: str = Field("default", alias="reasoningLevel")

    def rename_request(self) -> RenameRequest:
        return RenameRequest(enabled=self.rename_enabled, use_metadata=self.use_metadata,
                             endpoint=self.openai_endpoint, model=self.openai_model,
                             prompt=self.renaming_prompt, reasoning_level=self.reasoning_level)


class UploadRequest(BaseModel):
    """``{"music_file", "name", "cue_file", "settings"}``."""

    model_config = ConfigDict(extra="ignore")

    music_file: str = Field(min_length=1)
    name: str | None = None
    cue_file: str | None = None
    settings: UploadSettings = Field(default_factory=UploadSettings)

    @field_validator("settings", mode="before")
    @classmethod
    def _null_settings(cls, value: Any) -> Any:
        return {} if value is None else value


@dataclass(frozen=True)
class UploadedFile:
    """One file to embed: the upload itself, or one track split from it."""

    path: Path
    name: str
    split: dict[str, Any] | None = None  # the splitFiles entry when it came from a CUE split


class UploadService:
    """Serves upload requests; thread-safe (the socket server runs several at once)."""

    def __init__(self, *, roots: Sequence[Path], models: ModelPool, model_names: Sequence[str],
                 store: Callable[[], VectorStore], renamer: Renamer) -> None:
        self.roots = tuple(Path(r).resolve() for r in roots)
        self.models = models
        self.model_names = list(model_names)
        self.store = store
        self.renamer = renamer

    def handle(self, payload: object) -> dict[str, Any]:
        """Process one decoded JSON request and return the answer (errors raise)."""
        try:
            request = UploadRequest.model_validate(payload)
        except ValidationError as exc:
            raise UploadRejected(validation_message(exc.errors())) from None
        music = self.confine(request.music_file, "music_file")
        cue = self.confine(request.cue_file, "cue_file") if request.cue_file else None
        name = request.name or music.name
        files = self._split(music, cue) if cue else [UploadedFile(music, stored_name(music, name))]
        vectors = {model: self._embed(model, files) for model in self.model_names}
        matches = self._duplicates(files, vectors, request.settings)
        duplicates = [f.name for f in files if matches.get(f.name)]
        all_duplicates = bool(files) and len(duplicates) >= len(files)
        renamed = self.renamer.rename(name, request.settings.rename_request(), music_file=music)
        if not all_duplicates:
            for model, per_file in vectors.items():
                self._store(model, files, per_file)
        answer: dict[str, Any] = {"status": "ok", "duplicates": duplicates, "renamedFile": renamed.name,
                                  "allDuplicates": all_duplicates}
        if cue:
            answer["splitFiles"] = [f.split for f in files]
        answer["duplicateMatches"] = [{"name": n, "matches": m} for n, m in matches.items() if m]
        answer["models"] = self.model_names
        answer["stored"] = not all_duplicates
        if renamed.error:
            answer["renameError"] = renamed.error
        return answer

    # ----- paths ---------------------------------------------------------------------------------
    def confine(self, raw: str, field: str) -> Path:
        """``raw`` resolved (symlinks followed), if it is an existing file under an allowed root."""
        if not self.roots:
            raise UploadRejected("no music root or upload directory is configured "
                                 "(NAVEMBED_MUSIC_ROOT / NAVEMBED_UPLOAD_DIR): every path is refused")
        if "\x00" in raw:
            raise UploadRejected(f"{field} contains a NUL byte")
        path = Path(raw).expanduser()
        if not path.is_absolute():
            raise UploadRejected(f"{field} must be an absolute path, got {raw!r}")
        resolved = path.resolve()
        if not any(resolved.is_relative_to(root) for root in self.roots):
            raise UploadRejected(f"{field} {raw!r} is outside the music root and the upload directory")
        if not resolved.is_file():
            raise UploadRejected(f"{field} not found: {raw}")
        return resolved

    # ----- steps ---------------------------------------------------------------------------------
    def _split(self, music: Path, cue: Path) -> list[UploadedFile]:
        """Split the album into per-track files in a new directory beside it."""
        sheet = read_cue_file(cue)
        segments = cue_segments(sheet, probe(music).duration_seconds, file_name=music.name)
        written = split_cue(music, sheet, fresh_directory(music.parent / f"{music.stem} (tracks)"),
                            suffix=SPLIT_SUFFIX)
        files = []
        for segment, path in zip(segments, written, strict=True):
            performer = segment.performer or sheet.performer
            title = f"{performer} - {segment.title}" if performer else segment.title
            files.append(UploadedFile(path, title, {
                "index": segment.index, "title": segment.title, "performer": performer, "file": str(path),
                "offset_seconds": segment.offset_seconds, "duration_seconds": segment.duration_seconds}))
        return files

    def _embed(self, model_name: str, files: list[UploadedFile]) -> list[dict]:
        model = self.models.get(model_name)
        waves = [load_audio(f.path, model.sample_rate) for f in files]
        return [v.vectors for v in model.embed(waves)]

    def _duplicates(self, files: list[UploadedFile], vectors: dict[str, list[dict]],
                    settings: UploadSettings) -> dict[str, list[dict[str, Any]]]:
        """Stored tracks at or above the threshold, per uploaded file (searched before any write)."""
        if not settings.similarity_search_enabled or not files:
            return {}
        model = dedup_model(self.model_names)
        store = self.store()
        if store.count(model) == 0:
            return {}
        queries = [v["embedding"] for v in vectors[model]]
        found: dict[str, list[dict[str, Any]]] = {}
        for file, hits in zip(files, store.search_many(model, queries, limit=DUPLICATE_CANDIDATES), strict=True):
            own = upload_id(file.path)
            found[file.name] = [{"track_id": h.track_id, "name": h.name, "similarity": round(h.score, 4),
                                 "model": model}
                                for h in hits if h.score >= settings.dedup_threshold and h.track_id != own]
        return found

    def _store(self, model_name: str, files: list[UploadedFile], per_file: list[dict]) -> None:
        model = self.models.get(model_name)
        store = self.store()
        store.ensure_collection(model_name, model.vector_fields)
        rows = []
        for file, file_vectors in zip(files, per_file, strict=True):
            track_id = upload_id(file.path)
            stat = file.path.stat()
            rows.append(VectorRow(
                track_id=track_id, segment=1, name=file.name, offset_seconds=0.0,
                duration_seconds=probe(file.path).duration_seconds, model_id=model_name,
                model_version=model.version, fingerprint=_digest(f"{file.path}|{stat.st_size}|{stat.st_mtime_ns}"),
                bucket=bucket_of(track_id), vectors=file_vectors))
        store.upsert(model_name, rows)


def dedup_model(model_names: Sequence[str]) -> str:
    """The model duplicates are judged by: the first deep model enabled (MuQ first), else dsp."""
    for name in DEEP_MODEL_NAMES:
        if name in model_names:
            return name
    if not model_names:
        raise Unprocessable("no embedding model is enabled")
    return model_names[0]


def upload_id(path: Path) -> str:
    """The store id of an uploaded file until Navidrome scans it (the pipeline then keys it by track id)."""
    return UPLOAD_ID_PREFIX + _digest(str(path))


def stored_name(path: Path, name: str) -> str:
    """``Artist - Title`` from the tags, else the uploaded name without its extension."""
    return tag_name(read_tags(path)) or Path(name).stem or path.stem


def fresh_directory(wanted: Path) -> Path:
    """``wanted``, or ``wanted (2)``, ``(3)``... : split tracks never overwrite existing files."""
    candidate, number = wanted, 2
    while candidate.exists():
        candidate = wanted.with_name(f"{wanted.name} ({number})")
        number += 1
    candidate.mkdir(parents=True)
    return candidate


def _digest(text: str) -> str:
    return hashlib.sha1(text.encode("utf-8")).hexdigest()[:16]
