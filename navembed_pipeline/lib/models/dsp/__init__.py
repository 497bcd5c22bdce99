"""The ``dsp`` model: hand-made audio features on torch (``features``), pooled per track (``pooling``),
standardised against a reference measured on real recordings (``reference`` + ``reference.json``) and
weighted per block (``model``); ``v1`` is the previous version, kept for side-by-side measurements.
"""

from navembed_pipeline.lib.public import lazy_names

_PUBLIC = {
    "DspModel": "model", "centred_mask": "model", "raw_vector": "model", "weighted_vector": "model",
    "DspV1Model": "v1",
    "RAW_DIMENSION": "pooling",
    "fit_reference": "reference", "save_reference": "reference",  # ``reference()``: from ``dsp.reference``
}
__getattr__ = lazy_names(__name__, _PUBLIC)
__all__ = sorted(_PUBLIC)
