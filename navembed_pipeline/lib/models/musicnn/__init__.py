"""`musicnn`: MusiCNN (Pons & Serra 2019, PyPI ``musicnn`` 0.1.0, ISC) ported to PyTorch.

A track at 16 kHz is cut into consecutive 3-s patches (187 frames, the original's
``input_overlap=False``: the incomplete tail is dropped; a track shorter than one patch repeats its
frames) whose log-mel spectrogram (``mel``) runs through the network (``net``). Each patch yields
every candidate layer: the taggram (50 sigmoid tag scores), the penultimate dense layer (200),
``max_pool`` and ``mean_pool`` (753 each). A track stores two vectors (``model``):
- ``embedding``: ``similarity_vector`` of its patches' layers, the one place that says which layer and
  pooling make the similarity vector (set by measurement; bump ``SIMILARITY_VERSION`` on change);
- ``tags``: the mean taggram over patches, 50 raw scores in 0..1, named by ``tags.tag_names``.
Weights: ``MSD_musicnn`` (default) or ``MTT_musicnn`` (``ModelOptions.extra["musicnn_variant"]``,
``NAVEMBED_MUSICNN_VARIANT``), converted from the wheel by ``navembed models download musicnn``
(``weights``, with ``models.tf_checkpoint``). Fidelity to the TensorFlow original:
``tests/lib/models/test_musicnn.py``. This ``__init__`` imports nothing heavy: ``tag_names`` is torch-free.
"""

from navembed_pipeline.lib.public import lazy_names

_PUBLIC = {
    "MusicnnModel": "model", "similarity_vector": "model", "split_layers": "model", "tag_scores": "model",
    "TAGS_FIELD": "model", "SIMILARITY_LAYER": "model",
    "LAYER_SIZES": "net",
    "tag_names": "tags", "VARIANTS": "tags", "DEFAULT_VARIANT": "tags", "check_variant": "tags",
    "install": "weights", "load_variant": "weights",
}
__getattr__ = lazy_names(__name__, _PUBLIC)
__all__ = sorted(_PUBLIC)
