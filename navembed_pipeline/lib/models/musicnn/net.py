"""MusiCNN's network (Pons & Serra 2019) in PyTorch, layer by layer as ``musicnn/models.py`` builds it
(``build_musicnn`` with 64 mid-end filters and 200 back-end units: ``MSD_musicnn`` and ``MTT_musicnn``).

Input: log-mel patches ``(B, 187, 96)`` (time, mel band). Layout inside: ``(B, channels, time)``.
- front end: batch norm of the input; two timbral convolutions (7 × 38 and 7 × 67 mel bands, 204
  filters, time padded by 3) and three temporal ones (128, 64 and 32 frames × 1 band, 51 filters,
  TensorFlow ``same`` padding), each ReLU → batch norm → max over the mel axis; concatenated: 561.
- mid end: three 7-frame convolutions of 64 filters (ReLU → batch norm), the 2nd and 3rd residual;
  the front end and the three outputs are concatenated: 753 features per frame.
- back end: max and mean over time (753 each), interleaved per feature as TensorFlow flattens
  ``concat([max, mean], axis=2)``: 1506 → batch norm → dense 200 + ReLU → batch norm (the
  "penultimate" layer) → dense 50 (logits; the taggram is their sigmoid).
Batch norm runs in inference mode (moving statistics, epsilon 0.001 as ``tf.layers`` uses).
Dropout is an identity at inference and is left out.
"""

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

N_MELS = 96
BN_EPSILON = 1e-3
TIMBRAL_FILTERS = 204  # int(1.6 * 128)
TEMPORAL_FILTERS = 51  # int(1.6 * 32)
TIMBRAL_BANDS = (38, 67)  # int(0.4 * 96), int(0.7 * 96)
TEMPORAL_FRAMES = (128, 64, 32)
MIDEND_FILTERS = 64
BACKEND_UNITS = 200
NUM_TAGS = 50
FRONTEND_FEATURES = 2 * TIMBRAL_FILTERS + 3 * TEMPORAL_FILTERS  # 561
POOL_FEATURES = FRONTEND_FEATURES + 3 * MIDEND_FILTERS  # 753
LAYER_SIZES: dict[str, int] = {"taggram": NUM_TAGS, "penultimate": BACKEND_UNITS,
                               "max_pool": POOL_FEATURES, "mean_pool": POOL_FEATURES}

# TensorFlow variable scopes in creation order (``models.py``): batch_normalization_<i> and
# conv2d_<i> / dense_<i> are numbered as the graph was built.
_BN = ["input", "timbral0", "timbral1", "temporal0", "temporal1", "temporal2", "mid1", "mid2", "mid3",
       "pool", "dense"]
_CONV = ["timbral0", "timbral1", "temporal0", "temporal1", "temporal2", "mid1", "mid2", "mid3"]


class MusicnnNet(nn.Module):
    """The inference graph of ``build_musicnn``; ``forward`` returns every candidate layer."""

    def __init__(self) -> None:
        super().__init__()
        self.bn = nn.ModuleDict({name: nn.BatchNorm1d(size, eps=BN_EPSILON) for name, size in zip(
            _BN, [1, *(2 * [TIMBRAL_FILTERS]), *(3 * [TEMPORAL_FILTERS]), *(3 * [MIDEND_FILTERS]),
                  2 * POOL_FEATURES, BACKEND_UNITS], strict=True)})
        self.conv = nn.ModuleDict({
            **{f"timbral{i}": nn.Conv2d(1, TIMBRAL_FILTERS, (7, bands)) for i, bands in enumerate(TIMBRAL_BANDS)},
            **{f"temporal{i}": nn.Conv2d(1, TEMPORAL_FILTERS, (frames, 1))
               for i, frames in enumerate(TEMPORAL_FRAMES)},
            "mid1": nn.Conv1d(FRONTEND_FEATURES, MIDEND_FILTERS, 7, padding=3),
            "mid2": nn.Conv1d(MIDEND_FILTERS, MIDEND_FILTERS, 7, padding=3),
            "mid3": nn.Conv1d(MIDEND_FILTERS, MIDEND_FILTERS, 7, padding=3),
        })
        self.dense = nn.Linear(2 * POOL_FEATURES, BACKEND_UNITS)
        self.logits = nn.Linear(BACKEND_UNITS, NUM_TAGS)

    def forward(self, mel: torch.Tensor) -> dict[str, torch.Tensor]:
        """``mel`` ``(B, time, 96)`` → ``taggram`` (B, 50), ``penultimate`` (B, 200), ``max_pool`` and
        ``mean_pool`` (B, 753)."""
        batch, frames, _ = mel.shape
        x = self.bn["input"](mel.reshape(batch, 1, frames * N_MELS)).reshape(batch, 1, frames, N_MELS)
        timbral_input = F.pad(x, (0, 0, 3, 3))
        branches = [self._frontend_branch(f"timbral{i}", timbral_input) for i in range(len(TIMBRAL_BANDS))]
        for i, size in enumerate(TEMPORAL_FRAMES):
            before = (size - 1) // 2  # TensorFlow "same": the extra row of padding goes after
            branches.append(self._frontend_branch(f"temporal{i}", F.pad(x, (0, 0, before, size - 1 - before))))
        front = torch.cat(branches, dim=1)  # (B, 561, T)
        mid1 = self.bn["mid1"](F.relu(self.conv["mid1"](front)))
        mid2 = self.bn["mid2"](F.relu(self.conv["mid2"](mid1))) + mid1
        mid3 = self.bn["mid3"](F.relu(self.conv["mid3"](mid2))) + mid2
        features = torch.cat([front, mid1, mid2, mid3], dim=1)  # (B, 753, T)
        max_pool, mean_pool = features.amax(dim=2), features.mean(dim=2)
        pooled = torch.stack([max_pool, mean_pool], dim=2).reshape(batch, 2 * POOL_FEATURES)
        penultimate = self.bn["dense"](F.relu(self.dense(self.bn["pool"](pooled))))
        taggram = torch.sigmoid(self.logits(penultimate))
        return {"taggram": taggram, "penultimate": penultimate, "max_pool": max_pool, "mean_pool": mean_pool}

    def _frontend_branch(self, name: str, padded: torch.Tensor) -> torch.Tensor:
        """conv → ReLU → batch norm → max over the mel axis, computed in the cheaper order with the same
        result: ReLU and a channel's batch norm are monotonic, so the max over the bands can be taken
        first, of the raw convolution, and only the reduced ``(B, filters, T)`` is rectified and normed.
        Where a channel's batch-norm scale is negative the norm reverses the order and the original's
        max is the norm of the *minimum*: that channel's kernel and bias are negated (exact in floating
        point), its max taken and negated back. Bit-identical to the literal order (tested)."""
        norm, conv = self.bn[name], self.conv[name]
        sign = torch.where(norm.weight < 0, -1.0, 1.0).to(padded.dtype)
        raw = F.conv2d(padded, conv.weight * sign[:, None, None, None], conv.bias * sign)  # (B, filters, T, bands)
        return norm(F.relu(raw.amax(dim=3) * sign[:, None]))

    def literal_frontend_branch(self, name: str, padded: torch.Tensor) -> torch.Tensor:
        """The original's order (conv → ReLU → batch norm over every band → max over the bands): the
        reference ``_frontend_branch`` is tested against."""
        conv = F.relu(self.conv[name](padded))  # (B, filters, T, bands left)
        batch, filters, frames, bands = conv.shape
        normed = self.bn[name](conv.reshape(batch, filters, frames * bands)).reshape(conv.shape)
        return normed.amax(dim=3)



def state_dict_from_tf(tensors: dict[str, np.ndarray]) -> dict[str, torch.Tensor]:
    """``MusicnnNet``'s state dict from the TensorFlow checkpoint's variables (optimiser slots ignored).

    Raises ``KeyError`` naming a missing variable; shapes are checked by ``load_state_dict``.
    """
    out: dict[str, np.ndarray] = {}
    for index, name in enumerate(_BN):
        scope = "batch_normalization" + (f"_{index}" if index else "")
        out[f"bn.{name}.weight"] = tensors[f"{scope}/gamma"]
        out[f"bn.{name}.bias"] = tensors[f"{scope}/beta"]
        out[f"bn.{name}.running_mean"] = tensors[f"{scope}/moving_mean"]
        out[f"bn.{name}.running_var"] = tensors[f"{scope}/moving_variance"]
    for index, name in enumerate(_CONV):
        scope = "conv2d" + (f"_{index}" if index else "")
        kernel = tensors[f"{scope}/kernel"]  # (height, width, in, out)
        if name.startswith("mid"):  # a full-width 2-D kernel over a 1-channel image is a 1-D conv
            out[f"conv.{name}.weight"] = kernel[:, :, 0, :].transpose(2, 1, 0)
        else:
            out[f"conv.{name}.weight"] = kernel.transpose(3, 2, 0, 1)
        out[f"conv.{name}.bias"] = tensors[f"{scope}/bias"]
    for module, scope in (("dense", "dense"), ("logits", "dense_1")):
        out[f"{module}.weight"] = tensors[f"{scope}/kernel"].T
        out[f"{module}.bias"] = tensors[f"{scope}/bias"]
    return {key: torch.from_numpy(np.ascontiguousarray(value, dtype=np.float32)) for key, value in out.items()}


def build_network(state: dict[str, torch.Tensor]) -> MusicnnNet:
    """A ``MusicnnNet`` in eval mode holding exactly ``state`` (every key, right shapes, nothing extra)."""
    network = MusicnnNet()
    full = dict(state)
    for name in _BN:  # torch's own counter, not a weight
        full.setdefault(f"bn.{name}.num_batches_tracked", torch.tensor(0))
    network.load_state_dict(full, strict=True)
    return network.eval()
