"""Helpers for the upload tests: an embedded sample library, the upload service, a served socket."""

import asyncio
import json
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from navembed_api.model_pool import ModelPool
from navembed_api.rename import Renamer
from navembed_api.socket_server import UploadSocketServer
from navembed_api.uploads import UploadService
from navembed_pipeline.lib.duplicates.fingerprint_store import FingerprintStore
from navembed_pipeline.lib.engine.fingerprinter import TrackFingerprinter
from navembed_pipeline.lib.engine.run import EmbeddingRun, RunOptions, group_by_bucket
from navembed_pipeline.lib.library.navidrome import NavidromeLibrary
from navembed_pipeline.lib.models.base import ModelOptions
from navembed_pipeline.lib.store import VectorStore
from navembed_pipeline.sample_data.sample_library import SampleLibrary, write_sample_library

SETTINGS_ON = {"similaritySearchEnabled": True, "dedupThreshold": 0.85}


@dataclass(frozen=True)
class EmbeddedLibrary:
    """The sample library, its upload directory, and a store holding its dsp vectors."""

    sample: SampleLibrary
    upload_dir: Path
    store: VectorStore

    @property
    def music(self) -> Path:
        return self.sample.root / "music"

    @property
    def fingerprints_db(self) -> Path:
        return self.upload_dir.parent / "fingerprints.sqlite"


def embed_library(root: Path, store: VectorStore, models: ModelPool, *, seconds: float = 4,
                  fingerprint: bool = False) -> EmbeddedLibrary:
    """Write the sample library (4 s tracks) and embed it with dsp the way the pipeline does.

    ``fingerprint``: also fingerprint it into the library's fingerprint database, as the pipeline does.
    """
    sample = write_sample_library(root / "library", seconds=seconds)
    upload_dir = root / "uploads"
    upload_dir.mkdir()
    library = EmbeddedLibrary(sample, upload_dir, store)
    fingerprinter = TrackFingerprinter(FingerprintStore(library.fingerprints_db)) if fingerprint else None
    tracks = list(NavidromeLibrary(sample.db_path).tracks())
    for _ in EmbeddingRun(model=models.get("dsp"), store=store, options=RunOptions(decode_workers=1),
                          fingerprinter=fingerprinter).run(group_by_bucket(tracks)):
        pass
    return library


def upload_service(library: EmbeddedLibrary, models: ModelPool, *, renamer: Renamer | None = None) -> UploadService:
    return UploadService(roots=[library.sample.root, library.upload_dir], models=models, model_names=["dsp"],
                         store=lambda: library.store, renamer=renamer or Renamer(timeout=5.0),
                         fingerprints=FingerprintStore(library.fingerprints_db))


def dsp_pool() -> ModelPool:
    return ModelPool(ModelOptions(device="cpu"))


@contextmanager
def serving(server: UploadSocketServer) -> Iterator[UploadSocketServer]:
    """Run ``server`` on an event loop in a background thread for the duration."""
    loop = asyncio.new_event_loop()
    started = threading.Event()
    failure: list[BaseException] = []

    def run() -> None:
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(server.start())
        except BaseException as exc:  # reported to the test below
            failure.append(exc)
            started.set()
            return
        started.set()
        loop.run_forever()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    started.wait(30)
    if failure:
        thread.join(30)
        loop.close()
        raise failure[0]
    try:
        yield server
    finally:
        asyncio.run_coroutine_threadsafe(server.stop(), loop).result(30)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(30)
        loop.close()


def ask(path: Path, payload: bytes | dict[str, Any], *, half_close: bool = True, timeout: float = 60.0) -> dict:
    """Send one request the way Navidrome's Go client does (JSON line, half-close) and read the answer."""
    data = payload if isinstance(payload, bytes) else json.dumps(payload).encode() + b"\n"
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as client:
        client.settimeout(timeout)
        client.connect(str(path))
        client.sendall(data)
        if half_close:
            client.shutdown(socket.SHUT_WR)
        return json.loads(read_line(client))


def read_line(client: socket.socket) -> bytes:
    chunks = b""
    while not chunks.endswith(b"\n"):
        chunk = client.recv(65536)
        if not chunk:
            break
        chunks += chunk
    return chunks
