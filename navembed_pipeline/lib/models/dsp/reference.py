"""The reference centre and scale of every raw `dsp` v2 dimension, measured on real recordings.

``reference.json`` (beside this module) holds, per raw dimension, the median, the scale (the
robust spread IQR / 1.349, floored) and whether it is centred (the blocks ``dsp.CENTRED_BLOCKS``)
over the real recordings of ``benchmarks/recordings.py``; it is
written by ``python -m benchmarks.quality --fit-reference`` and is part of the model's version:
change it and bump ``dsp.VERSION``. Without the file every dimension is left as it is.
"""

import json
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import numpy as np

from navembed_pipeline.lib.models.dsp.pooling import RAW_DIMENSION  # the file must match the model

REFERENCE_FILE = Path(__file__).with_name("reference.json")


@dataclass(frozen=True, eq=False)
class Reference:
    """Per-dimension median, scale (> 0) and whether the dimension is centred, of the raw dsp vector."""

    centre: np.ndarray
    scale: np.ndarray
    centred: np.ndarray
    source: str


def fit_reference(raw: np.ndarray, *, centred: np.ndarray, source: str, floor_share: float = 0.05) -> Reference:
    """Per dimension of ``raw`` rows ``(N, D)``: the median, the robust spread (IQR / 1.349, floored
    at ``floor_share`` of the typical one) as scale, and the ``centred`` mask (see ``dsp.weighted_vector``)."""
    raw = np.asarray(raw, dtype=np.float64)
    q75, q50, q25 = np.percentile(raw, [75.0, 50.0, 25.0], axis=0)
    spread = (q75 - q25) / 1.349
    floor = max(floor_share * float(np.sqrt(np.mean(spread ** 2))), 1e-9)
    return Reference(centre=q50, scale=np.maximum(spread, floor), centred=np.asarray(centred, bool), source=source)


def save_reference(ref: Reference, path: Path = REFERENCE_FILE) -> None:
    """Write ``ref`` as JSON (rounded to 6 significant digits)."""
    path.write_text(json.dumps({"source": ref.source,
                                "centre": [float(f"{v:.6g}") for v in ref.centre],
                                "scale": [float(f"{v:.6g}") for v in ref.scale],
                                "centred": [int(v) for v in ref.centred]}, indent=None) + "\n")


@cache
def reference(path: Path = REFERENCE_FILE) -> Reference:
    """The shipped reference (identity when the file does not exist)."""
    if not path.exists():
        return Reference(centre=np.zeros(RAW_DIMENSION), scale=np.ones(RAW_DIMENSION),
                         centred=np.ones(RAW_DIMENSION, bool), source="identity")
    data = json.loads(path.read_text())
    centre, scale = np.asarray(data["centre"], np.float64), np.asarray(data["scale"], np.float64)
    centred = np.asarray(data["centred"], bool)
    if {centre.shape, scale.shape, centred.shape} != {(RAW_DIMENSION,)} or not np.all(scale > 0):
        raise ValueError(f"{path} does not fit dsp's {RAW_DIMENSION} raw dimensions")
    return Reference(centre=centre, scale=scale, centred=centred, source=str(data.get("source", "")))
