"""One upload request from Navidrome: check the paths, split a CUE album, embed, find duplicates, store.

The request and answer are the original socket server's (``music_file``, ``name``, ``cue_file``,
``settings`` → ``status``, ``duplicates``, ``renamedFile``, ``allDuplicates``, ``splitFiles``).
Duplicates (``duplicates.py``: Chromaprint fingerprint first, embeddings as fallback) are searched
in the library and earlier uploads before anything is written, and nothing is ever deleted: an
upload whose every file duplicates a stored track is reported and not stored; uploads are stored
in their own store (``duplicates.uploads``: records and fingerprints in SQLite, vectors in their own
collections), never in the library collections; split tracks are written to a
new directory beside the album. Files are read only from the music root or the upload directory.
"""

import hashlib
import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, StrictBool, ValidationError, field_validator

from navembed_api.duplicates import DuplicateFinder
from navembed_api.errors import ApiError, Unprocessable, short, validation_message
from navembed_api.model_pool import ModelPool
from navembed_api.rename import Renamer, RenameRequest, read_tags, tag_name
from navembed_pipeline.lib.buckets import bucket_of
from navembed_pipeline.lib.duplicates import (FingerprintStore, UploadRecord, UploadStore, fingerprint_pcm,
                                              migrate_library_uploads, upload_collection)
from navembed_pipeline.lib.engine import BACKFILL_RATE
from navembed_pipeline.lib.errors import NavembedError
from navembed_pipeline.lib.library import (cue_segments, load_audio, probe, read_cue_file, safe_file_name, split_cue,
                                           upload_id)
from navembed_pipeline.lib.models import DEEP_MODEL_NAMES
from navembed_pipeline.lib.recommend import COPY_SIMILARITY, TAGS_FIELD, TAGS_MODEL, as_json, top_tags
from navembed_pipeline.lib.store import VectorRow, VectorStore

LOGGER = logging.getLogger("navembed.api.uploads")
DUPLICATE_CANDIDATES = 5
SPLIT_SUFFIX = ".flac"  # lossless, whatever the album's format


class UploadRejected(ApiError):
    """The request cannot be served (bad JSON fields, a path outside the allowed roots, a missing file)."""


class UploadSettings(BaseModel):
    """The original request's ``settings`` (camelCase on the wire)."""

    model_config = ConfigDict(populate_by_name=True, extra="ignore")

    rename_enabled: StrictBool = Field(False, alias="renameEnabled")
    renaming_prompt: str = Field("", alias="renamingPrompt")
    openai_endpoint: str = Field("", alias="openAiEndpoint")
    openai_model: str = Field("", alias="openAiModel")
    use_metadata: StrictBool = Field(True, alias="useMetadata")
    similarity_search_enabled: StrictBool = Field(False, alias="similaritySearchEnabled")
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
                 store: Callable[[], VectorStore], renamer: Renamer,
                 fingerprints: FingerprintStore | None = None, tag_names: Sequence[str] = ()) -> None:
        """``tag_names``: the musicnn model's tags (its variant's), to show an upload's strongest ones."""
        self.roots = tuple(Path(r).resolve() for r in roots)
        self.models = models
        self.model_names = list(model_names)
        self.store = store
        self.renamer = renamer
        self.tag_names = tuple(tag_names)
        self.fingerprints = fingerprints
        self.uploads = UploadStore(fingerprints) if fingerprints is not None else None
        self.finder = DuplicateFinder(fingerprints=fingerprints, store=store)
        self._migrated = False
        self._migrating = threading.Lock()
        self._deciding = threading.Lock()  # duplicate check + store of one upload at a time

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
        self.migrate()
        vectors = {model: self._embed(model, files) for model in self.model_names}
        prints = [self._fingerprint(f) for f in files]
        # Check, then store, as one step: of concurrent uploads of one recording exactly one stores it and
        # the others find it (embedding and fingerprinting above stay concurrent).
        with self._deciding:
            matches = self._duplicates(files, vectors, prints, request.settings)
            duplicates = [f.name for f in files if matches.get(f.name)]
            all_duplicates = bool(files) and len(duplicates) >= len(files)
            if not all_duplicates:
                for model, per_file in vectors.items():
                    self._store(model, files, per_file)
                self._record(files, prints)
        renamed = self.renamer.rename(name, request.settings.rename_request(), music_file=music)
        answer: dict[str, Any] = {"status": "ok", "duplicates": duplicates, "renamedFile": renamed.name,
                                  "allDuplicates": all_duplicates}
        if cue:
            answer["splitFiles"] = [f.split for f in files]
        answer["duplicateMatches"] = [{"name": n, "matches": m} for n, m in matches.items() if m]
        answer["models"] = self.model_names
        if self.tag_names and TAGS_MODEL in vectors:
            answer["tags"] = [{"name": f.name, "tags": as_json(top_tags(v[TAGS_FIELD], self.tag_names))}
                              for f, v in zip(files, vectors[TAGS_MODEL], strict=True) if TAGS_FIELD in v]
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
            raise UploadRejected(f"{field} must be an absolute path, got {short(raw, 200)}")
        resolved = path.resolve()
        if not any(resolved.is_relative_to(root) for root in self.roots):
            raise UploadRejected(f"{field} {short(raw, 200)} is outside the music root and the upload directory")
        if not resolved.is_file():
            raise UploadRejected(f"{field} not found: {short(raw, 200, quote=False)}")
        return resolved

    # ----- steps ---------------------------------------------------------------------------------
    def _split(self, music: Path, cue: Path) -> list[UploadedFile]:
        """Split the album into per-track files in a new directory beside it."""
        sheet = read_cue_file(cue)
        segments = cue_segments(sheet, probe(music).duration_seconds, file_name=music.name)
        written = split_cue(music, sheet, fresh_directory(music.parent / safe_file_name(f"{music.stem} (tracks)")),
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

    def _fingerprint(self, file: UploadedFile):
        """The file's Chromaprint fingerprint, or None when Chromaprint is unavailable (embeddings decide)."""
        if self.fingerprints is None:
            return None
        try:
            return fingerprint_pcm(load_audio(file.path, BACKFILL_RATE), BACKFILL_RATE)
        except NavembedError as exc:
            LOGGER.warning("no fingerprint for %s: %s", file.path, exc)
            return None

    def _duplicates(self, files: list[UploadedFile], vectors: dict[str, list[dict]], prints: list,
                    settings: UploadSettings) -> dict[str, list[dict[str, Any]]]:
        """Stored tracks and uploads each uploaded file duplicates (searched before any write)."""
        if not settings.similarity_search_enabled or not files:
            return {}
        model = dedup_model(self.model_names)
        found: dict[str, list[dict[str, Any]]] = {}
        for file, words, file_vectors in zip(files, prints, vectors[model], strict=True):
            claims = self.finder.find(words, file_vectors["embedding"], model=model,
                                      requested_threshold=settings.dedup_threshold)
            found[file.name] = [c.to_json() for c in claims]
        return found

    def migrate(self) -> None:
        """Once per process: move ``upload:`` rows an older navembed kept in the library collections."""
        if self._migrated or self.uploads is None:
            return
        with self._migrating:
            if not self._migrated:
                moved = migrate_library_uploads(self.store(), self.uploads, self.model_names)
                if moved:
                    LOGGER.info("uploads moved out of the library collections: %s", moved)
                self._migrated = True

    def _record(self, files: list[UploadedFile], prints: list) -> None:
        """The uploads' records and fingerprints, in their own store."""
        if self.uploads is None or self.fingerprints is None:
            return
        for file, words in zip(files, prints, strict=True):
            uid = upload_id(file.path)
            version = _file_version(file.path)
            self.uploads.put(UploadRecord(uid, str(file.path), file.name, version,
                                          probe(file.path).duration_seconds, time.time()))
            if words is not None and len(words):
                self.fingerprints.put(uid, version, [(1, file.name, words)])

    def _store(self, model_name: str, files: list[UploadedFile], per_file: list[dict]) -> None:
        model = self.models.get(model_name)
        store = self.store()
        key = upload_collection(model_name)  # the uploads' own collection: the pipeline never touches it
        store.ensure_collection(key, model.vector_fields)
        rows = []
        for file, file_vectors in zip(files, per_file, strict=True):
            track_id = upload_id(file.path)
            rows.append(VectorRow(
                track_id=track_id, segment=1, name=file.name, offset_seconds=0.0,
                duration_seconds=probe(file.path).duration_seconds, model_id=model_name,
                model_version=model.version, fingerprint=_file_version(file.path),
                bucket=bucket_of(track_id), vectors=file_vectors))
        store.upsert(key, rows)


def dedup_model(model_names: Sequence[str]) -> str:
    """The model duplicates are judged by, after the fingerprint: the first enabled model with a copy
    threshold measured on real copies (``COPY_SIMILARITY``: dsp today; a model without one would claim
    nothing by its vectors), else the first deep model enabled (MuQ first; not MusiCNN), else the first."""
    if not model_names:
        raise Unprocessable("no embedding model is enabled")
    for name in model_names:
        if name in COPY_SIMILARITY:
            return name
    for name in DEEP_MODEL_NAMES:
        if name in model_names and name != "musicnn":
            return name
    return model_names[0]


def stored_name(path: Path, name: str) -> str:
    """``Artist - Title`` from the tags, else the uploaded name without its extension."""
    return tag_name(read_tags(path)) or Path(safe_file_name(name, fallback=path.name)).stem or path.stem


def fresh_directory(wanted: Path) -> Path:
    """``wanted``, or ``wanted (2)``, ``(3)``... created now: split tracks never overwrite existing files.

    Atomic: ``mkdir`` itself is the check, so concurrent uploads of one album each get their own
    directory instead of one of them failing (a check-then-create would race).
    """
    wanted.parent.mkdir(parents=True, exist_ok=True)
    candidate, number = wanted, 2
    while True:
        try:
            candidate.mkdir()
            return candidate
        except FileExistsError:
            candidate = wanted.with_name(f"{wanted.name} ({number})")
            number += 1


def _file_version(path: Path) -> str:
    """path, size and mtime of the file, like a library track's version."""
    stat = path.stat()
    return hashlib.sha1(f"{path}|{stat.st_size}|{stat.st_mtime_ns}".encode("utf-8")).hexdigest()[:16]
