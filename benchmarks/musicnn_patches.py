"""MusiCNN's per-patch layers of real recordings, computed with navembed's port and cached per file.

A file's 3-s patches are the port's (``musicnn.mel.patch_windows``: consecutive, the incomplete
tail dropped; their count here from the header's duration, ``audio.probe``); of those, at most
``patches`` evenly spaced ones (first and last included) are decoded by navembed's own path
(``lib/library/audio.load_audio`` at 16 kHz, each patch's samples reached by seeking, so a long track is not
decoded whole for six patches) and go through the port's log-mel front end and network. A track
shorter than one patch is decoded whole (``patch_windows`` then repeats its frames). Every candidate
layer of each chosen patch is kept (taggram 50, penultimate 200, ``max_pool`` and ``mean_pool`` 753)
in an ``.npz`` under the cache, keyed by the file (path, size, mtime), the weights variant, the patch
budget and a digest of the port's source: a rerun computes only what changed.
"""

from collections.abc import Callable
from pathlib import Path

import numpy as np

from benchmarks.quality_methods import file_key, source_digest

PORT_MODULES = ("navembed_pipeline.lib.models.musicnn.model", "navembed_pipeline.lib.models.musicnn.mel",
                "navembed_pipeline.lib.models.musicnn.net", "navembed_pipeline.lib.library.audio")


def evenly_spaced(count: int, budget: int) -> np.ndarray:
    """Indices of at most ``budget`` of ``count`` patches, spread evenly, first and last included."""
    if budget <= 0 or budget >= count:
        return np.arange(count)
    return np.unique(np.linspace(0, count - 1, budget).round().astype(int))


class MusicnnPatches:
    """The port's layers per patch for audio files, through a per-file cache."""

    def __init__(self, cache_dir: Path, models_dir: Path | None, *, variant: str = "MSD_musicnn",
                 patches: int = 6) -> None:
        import navembed_pipeline.lib.library.audio  # noqa: F401  (digested below)
        import navembed_pipeline.lib.models.musicnn.mel  # noqa: F401
        import navembed_pipeline.lib.models.musicnn.net  # noqa: F401
        from navembed_pipeline.lib.models import ModelOptions
        from navembed_pipeline.lib.models.musicnn.model import MusicnnModel
        from navembed_pipeline.lib.models.options import MUSICNN_VARIANT_OPTION

        self.model = MusicnnModel(ModelOptions(device="cpu", models_dir=models_dir,
                                               extra={MUSICNN_VARIANT_OPTION: variant}))
        self.patches = patches
        self.variant = variant
        revision = source_digest(*PORT_MODULES)
        self.cache_dir = cache_dir / "musicnn" / f"{variant}-p{patches}-{revision}"
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        self._frontend = None

    def close(self) -> None:
        self.model.shutdown()

    def layers(self, path: Path) -> dict[str, np.ndarray]:
        """``{layer: (chosen patches, size)}`` for ``path``, plus ``patches_total`` (all its patches)."""
        cached = self.cache_dir / f"{file_key(path)}.npz"
        if cached.exists():
            with np.load(cached) as stored:
                return {name: stored[name] for name in stored.files}
        computed = self._compute(path)
        partial = cached.with_name(f"{cached.stem}.partial.npz")
        np.savez(partial, **computed)
        partial.replace(cached)  # never a half-written file under the final name
        return computed

    def _compute(self, path: Path) -> dict[str, np.ndarray]:
        import torch

        from navembed_pipeline.lib.models.musicnn.mel import SAMPLE_RATE, LogMel, fill_patch

        if self._frontend is None:
            self._frontend = LogMel()
        count, read = patch_reader(path)
        chosen = evenly_spaced(count, self.patches)
        with torch.inference_mode():
            mel = fill_patch(self._frontend(torch.from_numpy(np.stack([read(i) for i in chosen]))))
        layers = self.model.mel_layers(mel.numpy())
        return {**{name: np.asarray(v, np.float32) for name, v in layers.items()},
                "chosen": chosen, "patches_total": np.asarray(count), "sample_rate": np.asarray(SAMPLE_RATE)}


def patch_reader(path: Path) -> tuple[int, Callable[[int], np.ndarray]]:
    """How many patches ``patch_windows`` cuts ``path`` into, and a function decoding patch ``i``'s
    window alone: the samples ``[i·HOP_SAMPLES − 256, … + WINDOW_SAMPLES)`` of the track, zeros
    outside it (``patch_windows`` pads 256 zeros in front; a header duration a little too long
    leaves a last window short, filled with zeros)."""
    from navembed_pipeline.lib.library import load_audio, probe
    from navembed_pipeline.lib.models.musicnn.mel import (
        CENTER_PAD,
        HOP_SAMPLES,
        SAMPLE_RATE,
        WINDOW_SAMPLES,
        patch_windows,
    )

    samples = int(probe(path).duration_seconds * SAMPLE_RATE)
    if samples + 2 * CENTER_PAD < WINDOW_SAMPLES:
        windows = patch_windows(load_audio(path, SAMPLE_RATE))
        return len(windows), windows.__getitem__
    count = 1 + (samples + 2 * CENTER_PAD - WINDOW_SAMPLES) // HOP_SAMPLES

    def read(index: int) -> np.ndarray:
        start = index * HOP_SAMPLES - CENTER_PAD
        lead = max(0, -start)
        wave = load_audio(path, SAMPLE_RATE, offset_seconds=max(start, 0) / SAMPLE_RATE,
                          duration_seconds=(WINDOW_SAMPLES - lead) / SAMPLE_RATE)[: WINDOW_SAMPLES - lead]
        return np.pad(np.asarray(wave, np.float32), (lead, WINDOW_SAMPLES - lead - len(wave)))

    return count, read
