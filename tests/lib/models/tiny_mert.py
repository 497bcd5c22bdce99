"""A tiny random-initialised MERT checkpoint in the real ``m-a-p/MERT-v1-330M`` format.

What "the real format" means here (from the published files, see the MERT report):
- ``config.json`` is a MERTConfig dump: ``model_type: mert_model``, ``architectures:
  [MERTModel]``, an ``auto_map`` to the remote code, MERT-only keys (``attention_relax: 32``,
  ``deepnorm``, ``feature_extractor_cqt``, ``sample_rate``, fairseq ``mask_channel_*``) and the
  330M layout: stable (pre-)layer norm, a group-norm conv feature encoder with the wav2vec2
  kernels/strides (320 samples per frame = 75 frames/s at 24 kHz), 128-tap positional conv;
- ``preprocessor_config.json`` is a plain ``Wav2Vec2FeatureExtractor`` at 24 kHz;
- ``pytorch_model.bin`` is a pickled state dict saved by transformers 4.24 from ``MERTModel``:
  un-prefixed keys (``feature_extractor.*``, ``feature_projection.*``, ``encoder.*``,
  ``masked_spec_embed``) and the legacy weight-norm names ``encoder.pos_conv_embed.conv.weight_g``
  / ``weight_v`` (today's transformers calls them ``parametrizations.weight.original0/1``).

Only the sizes shrink (32 wide, 2 layers, 8 conv channels), so the test weights are ~100 KB.
"""

import json
from pathlib import Path

import torch
from transformers import HubertConfig, HubertModel

from navembed_pipeline.lib.models.weights import local_dir_name

REPO_ID = "m-a-p/MERT-v1-330M"
HIDDEN_SIZE = 32
NUM_LAYERS = 2
CONV_KERNELS = [10, 3, 3, 3, 3, 2, 2]
CONV_STRIDES = [5, 2, 2, 2, 2, 2, 2]
LEGACY_WEIGHT_NORM = {
    "parametrizations.weight.original0": "weight_g",
    "parametrizations.weight.original1": "weight_v",
}

# The shape of the published MERT-v1-330M config.json, sizes shrunk (real: 1024 / 4096 / 24 / 16 / 512).
TINY_MERT_CONFIG: dict = {
    "_name_or_path": REPO_ID,
    "activation_dropout": 0.0,
    "apply_spec_augment": True,
    "architectures": ["MERTModel"],
    "attention_dropout": 0.0,
    "attention_relax": 32.0,
    "auto_map": {
        "AutoConfig": "configuration_MERT.MERTConfig",
        "AutoModel": "modeling_MERT.MERTModel",
    },
    "bos_token_id": 1,
    "classifier_proj_size": 256,
    "conv_bias": False,
    "conv_dim": [8] * 7,
    "conv_kernel": CONV_KERNELS,
    "conv_stride": CONV_STRIDES,
    "ctc_loss_reduction": "sum",
    "ctc_zero_infinity": False,
    "deepnorm": False,
    "do_stable_layer_norm": True,
    "eos_token_id": 2,
    "feat_extract_activation": "gelu",
    "feat_extract_dropout": 0.0,
    "feat_extract_norm": "group",
    "feat_proj_dropout": 0.0,
    "feat_proj_layer_norm": True,
    "feature_extractor_cqt": False,
    "feature_extractor_cqt_bins": 336,
    "final_dropout": 0.0,
    "gradient_checkpointing": False,
    "hidden_act": "gelu",
    "hidden_dropout": 0.0,
    "hidden_size": HIDDEN_SIZE,
    "initializer_range": 0.02,
    "intermediate_size": 64,
    "layer_norm_eps": 1e-05,
    "layerdrop": 0.0,
    "mask_channel_length": 10,
    "mask_channel_min_space": 1,
    "mask_channel_other": 0.0,
    "mask_channel_prob": 0.0,
    "mask_channel_selection": "static",
    "mask_feature_length": 10,
    "mask_feature_min_masks": 0,
    "mask_feature_prob": 0.0,
    "mask_time_length": 10,
    "mask_time_min_masks": 2,
    "mask_time_min_space": 1,
    "mask_time_other": 0.0,
    "mask_time_prob": 0.075,
    "mask_time_selection": "static",
    "model_type": "mert_model",
    "num_attention_heads": 2,
    "num_conv_pos_embedding_groups": 16,
    "num_conv_pos_embeddings": 128,
    "num_feat_extract_layers": 7,
    "num_hidden_layers": NUM_LAYERS,
    "pad_token_id": 0,
    "sample_rate": 24000,
    "tokenizer_class": "Wav2Vec2CTCTokenizer",
    "torch_dtype": "float32",
    "transformers_version": "4.24.0",
    "use_weighted_layer_sum": False,
    "vocab_size": 32,
}

PREPROCESSOR_CONFIG: dict = {
    "do_normalize": False,
    "feature_extractor_type": "Wav2Vec2FeatureExtractor",
    "feature_size": 1,
    "padding_side": "right",
    "padding_value": 0,
    "return_attention_mask": True,
    "sampling_rate": 24000,
}

MERT_ONLY_KEYS = ("auto_map", "architectures", "model_type")


# The published MERT-v1-330M sizes, for benchmarks with the real-size architecture (random weights).
FULL_SIZE_OVERRIDES: dict = {"hidden_size": 1024, "intermediate_size": 4096, "num_hidden_layers": 24,
                             "num_attention_heads": 16, "conv_dim": [512] * 7}


def tiny_state_dict(*, seed: int = 0, config: dict | None = None) -> dict[str, torch.Tensor]:
    """Random weights for the tiny config (or ``config``), keyed exactly as the real checkpoint keys them."""
    torch.manual_seed(seed)
    config = HubertConfig(**{k: v for k, v in (config or TINY_MERT_CONFIG).items() if k not in MERT_ONLY_KEYS})
    network = HubertModel(config)
    with torch.no_grad():  # default init leaves layer norms at 1/0; randomise so every weight matters
        for name, parameter in network.named_parameters():
            if "norm" in name:
                parameter.add_(0.1 * torch.randn_like(parameter))
    return {_legacy_name(name): tensor.clone() for name, tensor in network.state_dict().items()}


def write_tiny_mert(models_dir: Path, *, do_normalize: bool = False, seed: int = 0,
                    drop_keys: tuple[str, ...] = (), extra_keys: tuple[str, ...] = (),
                    config_overrides: dict | None = None) -> Path:
    """Write the tiny checkpoint to ``<models_dir>/m-a-p--MERT-v1-330M`` and return that directory.

    ``drop_keys`` / ``extra_keys`` corrupt the checkpoint (missing / unexpected weights);
    ``config_overrides`` edit ``config.json``.
    """
    target = Path(models_dir) / local_dir_name(REPO_ID)
    target.mkdir(parents=True, exist_ok=True)
    config = {**TINY_MERT_CONFIG, **(config_overrides or {})}
    (target / "config.json").write_text(json.dumps(config, indent=2))
    (target / "preprocessor_config.json").write_text(
        json.dumps({**PREPROCESSOR_CONFIG, "do_normalize": do_normalize}, indent=2))
    state = tiny_state_dict(seed=seed, config=config)
    for key in drop_keys:
        del state[key]
    for key in extra_keys:
        state[key] = torch.zeros(config["hidden_size"])
    torch.save(state, target / "pytorch_model.bin")
    return target


def _legacy_name(name: str) -> str:
    for modern, legacy in LEGACY_WEIGHT_NORM.items():
        if name.endswith(modern):
            return name[: -len(modern)] + legacy
    return name
