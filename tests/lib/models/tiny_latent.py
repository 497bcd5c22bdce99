"""A tiny random-initialised Music2Latent checkpoint in the real ``music2latent.pt`` format.

The real file (``SonyCSLParis/music2latent`` on the Hugging Face hub, 233 MB) is
``torch.save({"gen_state_dict": UNet().state_dict()})`` of the package's ``UNet``. The package
reads its architecture from module constants (``music2latent.hparams``, star-imported into
``music2latent.models``), so the tiny build narrows the widths there, inside
``tiny_architecture()`` only. Everything that fixes the latent's shape and timing stays real:
44.1 kHz, STFT hop 512, the frequency/time downsampling plan and the 64 bottleneck channels,
so the frames come at the real ~10.77/s and are 64 wide. Checkpoint: ~2 MB.
"""

from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from pathlib import Path
from unittest import mock

import music2latent.models
import torch

from navembed_pipeline.lib.models.weights import local_dir_name

REPO_ID = "SonyCSLParis/music2latent"
CHECKPOINT_FILE = "music2latent.pt"
# Real: 64 / 512 / 4 / 256 / [2, 2, 2, 2, 2]. Widths only; no time or frequency geometry.
TINY_HPARAMS = {
    "base_channels": 4,
    "bottleneck_base_channels": 32,
    "num_bottleneck_layers": 2,
    "cond_channels": 16,
    "layers_list": [1, 1, 1, 1, 1],
}


@contextmanager
def tiny_architecture() -> Iterator[None]:
    """While active, ``music2latent.models.UNet()`` / ``Encoder()`` build the tiny widths."""
    with mock.patch.multiple(music2latent.models, **TINY_HPARAMS):
        yield


def write_tiny_checkpoint(models_dir: Path, *, seed: int = 0, full_size: bool = False) -> Path:
    """Save a tiny random ``music2latent.pt`` under ``<models_dir>/SonyCSLParis--music2latent/``.

    The package zero-initialises the last conv of every residual block and every attention
    output; those get small random values too, so every layer shapes the latent. ``full_size``
    keeps the package's real widths (~233 MB; for benchmarks).
    """
    torch.manual_seed(seed)
    with tiny_architecture() if not full_size else nullcontext():
        generator = music2latent.models.UNet()
    with torch.no_grad():
        for parameter in generator.parameters():
            if not parameter.any():
                parameter.normal_(0.0, 0.05)
    path = Path(models_dir) / local_dir_name(REPO_ID) / CHECKPOINT_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"gen_state_dict": generator.state_dict()}, path)
    return path
