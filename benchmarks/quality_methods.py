"""The methods the quality harness compares, and a per-file cache of what each computed.

Every method turns an audio file into a representation: a vector (dsp v1, dsp v2 raw, bliss-audio's
23 features) or a raw Chromaprint fingerprint. Results are cached per file (path, size, mtime)
and per method revision under the cache directory, so a rerun costs only what changed.
"""

import hashlib
import json
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from navembed_pipeline.lib.library import load_audio


def source_digest(*modules: str) -> str:
    """A digest of the source files of ``modules``: the cache key changes whenever the code does."""
    digest = hashlib.sha1()
    for module in modules:
        digest.update(Path(sys.modules[module].__file__).read_bytes())
    return digest.hexdigest()[:12]


def file_key(path: Path) -> str:
    """A cache name for one version of a file (its resolved path, size and modification time)."""
    stat = path.stat()
    return hashlib.sha1(f"{path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}".encode()).hexdigest()[:20]


@dataclass(frozen=True)
class Computed:
    """What one file gave: ``{method: vector or fingerprint}``; failures by method."""

    values: dict[str, np.ndarray]
    failures: dict[str, str]


class Methods:
    """dsp v1, dsp v2 (raw pooled vector), bliss-audio and Chromaprint on one decoded wave per file."""

    def __init__(self, cache_dir: Path, only: Sequence[str] | None = None) -> None:
        """``only``: compute just these methods (default: every one)."""
        import navembed_pipeline.lib.duplicates.chromaprint as fingerprints
        import navembed_pipeline.lib.models.dsp.features  # noqa: F401  (digested below)
        import navembed_pipeline.lib.models.dsp.pooling  # noqa: F401
        from navembed_pipeline.lib.models import ModelOptions
        from navembed_pipeline.lib.models.dsp import DspModel
        from navembed_pipeline.lib.models.dsp import DspV1Model

        self._fingerprints = fingerprints
        self.v1 = DspV1Model(ModelOptions(device="cpu"))
        self.v2 = DspModel(ModelOptions(device="cpu"))
        self.revisions = {
            "dsp_v1": source_digest("navembed_pipeline.lib.models.dsp.v1"),
            "dsp_v2_raw": source_digest("navembed_pipeline.lib.models.dsp.features",
                                         "navembed_pipeline.lib.models.dsp.pooling", "navembed_pipeline.lib.models.dsp.model"),
            "chromaprint": source_digest("navembed_pipeline.lib.duplicates.chromaprint"),
            "bliss": _bliss_version(),
        }
        if only is not None:
            self.revisions = {m: rev for m, rev in self.revisions.items() if m in only}
        # The frames kept are those the model analyses: its excerpts of a long track (``DspModel.excerpts``).
        self._frames_rev = source_digest("navembed_pipeline.lib.models.dsp.features") + (
            "" if self.v2.excerpts is None else
            f"-x{self.v2.excerpts.count}x{self.v2.excerpts.seconds:g}over{self.v2.excerpts.above_seconds:g}")
        self.cache_dir = cache_dir / "computed"
        self.cache_dir.mkdir(parents=True, exist_ok=True)

    def close(self) -> None:
        self.v1.shutdown()
        self.v2.shutdown()

    def compute(self, path: Path) -> Computed:
        """Every method's result for ``path`` (from the cache where the file and code are unchanged)."""
        cached = self._load(path)
        missing = [m for m, rev in self.revisions.items() if cached.get(m, {}).get("rev") != rev]
        if missing:
            cached.update(self._run(path, missing))
            self._save(path, cached)
        values = {m: np.asarray(e["value"], dtype=np.uint32 if m == "chromaprint" else np.float32)
                  for m, e in cached.items() if m in self.revisions and "value" in e}
        failures = {m: e["error"] for m, e in cached.items() if m in self.revisions and "error" in e}
        return Computed(values, failures)

    def _run(self, path: Path, methods: Sequence[str]) -> dict[str, dict]:
        out: dict[str, dict] = {}
        decoded: list[np.ndarray] = []

        def wave() -> np.ndarray:  # decoded once, only when a method needs it
            if not decoded:
                decoded.append(load_audio(path, self.v2.sample_rate))
            return decoded[0]

        steps: dict[str, Callable[[], np.ndarray]] = {
            "dsp_v1": lambda: self.v1.embed([wave()])[0].embedding,
            "dsp_v2_raw": lambda: self._v2_raw(path, wave),
            "chromaprint": lambda: self._fingerprints.fingerprint_pcm(wave(), self.v2.sample_rate),
            "bliss": lambda: _bliss(path),
        }
        for method in methods:
            try:
                out[method] = {"rev": self.revisions[method], "value": np.asarray(steps[method]()).tolist()}
            except Exception as exc:  # recorded per method and file, reported in the table
                out[method] = {"rev": self.revisions[method], "error": f"{type(exc).__name__}: {exc}"[:300]}
        return out

    def _v2_raw(self, path: Path, wave: Callable[[], np.ndarray]) -> np.ndarray:
        """dsp v2's pooled vector; its frame features are kept (float16) so pooling can be re-tuned."""
        import torch

        from navembed_pipeline.lib.models.dsp import raw_vector

        frames_file = self.cache_dir.parent / "frames" / f"{self._key(path).stem}-{self._frames_rev}.npz"
        if frames_file.exists():
            with np.load(frames_file) as stored:
                frames = [stored[f"w{i}"].astype(np.float32) for i in range(len(stored.files))]
        else:
            with torch.inference_mode():
                frames = self.v2.window_features([np.asarray(wave(), np.float32)])[0]
            frames_file.parent.mkdir(parents=True, exist_ok=True)
            partial = frames_file.with_suffix(".partial.npz")
            np.savez(partial, **{f"w{i}": f.astype(np.float16) for i, f in enumerate(frames)})
            partial.replace(frames_file)  # never a half-written file under the final name
        return raw_vector(frames)

    def frames(self, path: Path) -> list[np.ndarray] | None:
        """The cached dsp v2 frame features of ``path`` (after ``compute``), if kept."""
        frames_file = self.cache_dir.parent / "frames" / f"{self._key(path).stem}-{self._frames_rev}.npz"
        if not frames_file.exists():
            return None
        with np.load(frames_file) as stored:
            return [stored[f"w{i}"].astype(np.float32) for i in range(len(stored.files))]

    def _key(self, path: Path) -> Path:
        return self.cache_dir / f"{file_key(path)}.json"

    def _load(self, path: Path) -> dict:
        key = self._key(path)
        return json.loads(key.read_text()) if key.exists() else {}

    def _save(self, path: Path, data: dict) -> None:
        key = self._key(path)
        tmp = key.with_suffix(".tmp")
        tmp.write_text(json.dumps(data))
        tmp.replace(key)


def _bliss_version() -> str:
    from importlib.metadata import version

    return version("bliss-audio")


def _bliss(path: Path) -> np.ndarray:
    """bliss-audio's features (20 in 0.1.x, 23 in 0.2); its Rust core panics (a BaseException) on undecodable files."""
    import bliss_audio

    try:
        return np.asarray(bliss_audio.Song(str(path)).analysis, dtype=np.float32)
    except BaseException as exc:  # PanicException derives from BaseException
        if isinstance(exc, (KeyboardInterrupt, SystemExit)):
            raise
        raise RuntimeError(f"bliss-audio failed: {exc}") from None


def fit_dsp_reference(recordings: Sequence, methods: Methods) -> None:
    """Write ``lib/models/dsp/reference.json`` from the raw dsp v2 vectors of ``recordings``."""
    from navembed_pipeline.lib.models.dsp import centred_mask
    from navembed_pipeline.lib.models.dsp.reference import fit_reference, reference, save_reference

    raw = [methods.compute(r.path).values.get("dsp_v2_raw") for r in recordings]
    raw = np.stack([v for v in raw if v is not None])
    save_reference(fit_reference(raw, centred=centred_mask(), source=f"{len(raw)} recordings of benchmarks/recordings.py "
                                              f"({', '.join(sorted({r.album for r in recordings}))})"))
    reference.cache_clear()
    print(f"dsp v2 reference refitted on {len(raw)} recordings", flush=True)
