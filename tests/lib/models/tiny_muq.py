"""A tiny, randomly initialised MuQ-MuLan, saved the way the real weights are downloaded.

The real architecture at toy sizes (a 32-wide, 2-layer MuQ conformer; a 32-wide, 2-layer
XLM-R; 1-layer MuLan towers; the real 512-d latent), written as the three repos under a
models dir exactly as ``navembed models download muq`` lays them out::

    <models_dir>/OpenMuQ--MuQ-MuLan-large/      config.json (names the sub-models by hub id)
                                                pytorch_model.bin (the whole network, as published)
    <models_dir>/OpenMuQ--MuQ-large-msd-iter/   config.json, model.safetensors (MuQ backbone)
    <models_dir>/FacebookAI--xlm-roberta-base/  config.json, model.safetensors, tokenizer.json

The MuLan checkpoint is re-randomised after the sub-models are built, so a loader that kept
the sub-models' own weights instead of the MuLan checkpoint's would give different vectors.

The tokenizer is XLM-R's real class (a SentencePiece-style Unigram model) with a toy vocabulary:
a few English words, single letters (so any lowercase English prompt tokenises) and a few
Chinese characters (欢快的舞曲钢琴悲伤). It exercises the real tokenisation path, padding and
truncation, not the quality of the real 250k-piece vocabulary.
"""

import json
from pathlib import Path

import torch

from navembed_pipeline.lib.models.muq import AUDIO_REPO, MULAN_REPO, TEXT_REPO
from navembed_pipeline.lib.models.weights import local_dir_name

CLIP_SECONDS = 1  # MuLan's clip length in the tiny build (10 s in the real one)
WIDTH = 32
TEXT_MAX_TOKENS = 24  # max_position_embeddings - pad_token_id - 1
CHINESE_CHARACTERS = "欢快的舞曲钢琴悲伤"
ENGLISH_WORDS = ("happy", "piano", "dance", "music", "sad", "rock", "calm", "guitar")


def build_tiny_muq(models_dir: Path, *, seed: int = 0, full_size: bool = False) -> Path:
    """Write the three tiny repos under ``models_dir`` and return ``models_dir``.

    ``full_size`` builds the large sizes instead (for benchmarks; several GB): the muq package's
    defaults for the MuQ-large backbone (12 × 1024 conformer, 16 heads, FFN 4096) and the MuLan
    towers (8 × 768), XLM-R base (12 × 768, 250,002-token embedding table), 10 s clips. The
    tokenizer stays the toy one: only the network sizes matter for speed.
    """
    torch.manual_seed(seed)
    text_dir = _save_text_model(Path(models_dir) / local_dir_name(TEXT_REPO), full_size=full_size)
    audio_dir = _save_backbone(Path(models_dir) / local_dir_name(AUDIO_REPO), full_size=full_size)
    _save_mulan(Path(models_dir) / local_dir_name(MULAN_REPO), audio_dir=audio_dir, text_dir=text_dir,
                full_size=full_size)
    return Path(models_dir)


def mulan_config(*, full_size: bool = False) -> dict:
    """The MuQ-MuLan ``config.json``, naming its sub-models by hub id like the published one."""
    tower = {"dim": WIDTH, "tf_depth": 1, "heads": 2, "dim_head": 16,
             "attn_dropout": 0.0, "ff_dropout": 0.0, "ff_mult": 2}
    if full_size:
        tower = {**tower, "dim": 768, "tf_depth": 8, "heads": 8, "dim_head": 64, "ff_mult": 4}
    return {
        "mulan": {"sr": 24_000, "clip_secs": 10 if full_size else CLIP_SECONDS, "dim_latent": 512,
                  "decoupled_contrastive_learning": True, "hierarchical_contrastive_loss": False,
                  "hierarchical_contrastive_loss_layers": None, "sigmoid_contrastive_loss": False,
                  "rank_contrast": True},
        "audio_model": {"name": AUDIO_REPO, "model_dim": 1024 if full_size else WIDTH, "use_layer_idx": -1},
        "text_model": {"name": "xlm-roberta-base", "model_dim": 768 if full_size else WIDTH, "use_layer_idx": -1},
        "audio_transformer": tower,
        "text_transformer": {**tower, "max_seq_len": 64},
    }


def _save_text_model(directory: Path, *, full_size: bool = False) -> Path:
    from transformers import XLMRobertaConfig, XLMRobertaModel, XLMRobertaTokenizer

    specials = ["<s>", "<pad>", "</s>", "<unk>", "<mask>"]  # XLM-R's ids 0..4
    pieces = ["▁", *"abcdefghijklmnopqrstuvwxyz,.!?", *(f"▁{word}" for word in ENGLISH_WORDS),
              *CHINESE_CHARACTERS]
    vocab = [(token, 0.0) for token in specials] + [(piece, -1.0 - i) for i, piece in enumerate(pieces)]
    tokenizer = XLMRobertaTokenizer(vocab=vocab)
    config = XLMRobertaConfig(vocab_size=len(vocab), hidden_size=WIDTH, num_hidden_layers=2,
                              num_attention_heads=2, intermediate_size=2 * WIDTH,
                              max_position_embeddings=TEXT_MAX_TOKENS + 2, pad_token_id=1)
    if full_size:  # xlm-roberta-base
        config = XLMRobertaConfig(vocab_size=250_002, hidden_size=768, num_hidden_layers=12, num_attention_heads=12,
                                  intermediate_size=3072, max_position_embeddings=514, pad_token_id=1)
    tokenizer.save_pretrained(str(directory))
    (directory / "tokenizer_config.json").unlink()  # the published repo has none either
    XLMRobertaModel(config).save_pretrained(str(directory))
    return directory


def _save_backbone(directory: Path, *, full_size: bool = False) -> Path:
    from muq import MuQ, MuQConfig
    from transformers import Wav2Vec2ConformerConfig

    conformer = Wav2Vec2ConformerConfig(hidden_size=WIDTH, num_attention_heads=2, intermediate_size=2 * WIDTH,
                                        conv_depthwise_kernel_size=3, num_conv_pos_embeddings=16,
                                        num_conv_pos_embedding_groups=4).to_dict()
    conformer = {k: v for k, v in conformer.items() if k not in ("id2label", "label2id")}  # int keys
    config = MuQConfig(encoder_dim=WIDTH, encoder_depth=2, conv_dim=8, w2v2_config=conformer,
                       stat={"melspec_2048_mean": 6.77, "melspec_2048_std": 18.42})
    if full_size:
        conformer = Wav2Vec2ConformerConfig(hidden_size=1024, num_attention_heads=16, intermediate_size=4096).to_dict()
        conformer = {k: v for k, v in conformer.items() if k not in ("id2label", "label2id")}
        config = MuQConfig(w2v2_config=conformer, stat={"melspec_2048_mean": 6.77, "melspec_2048_std": 18.42})
    MuQ(config).save_pretrained(str(directory))
    return directory


def _save_mulan(directory: Path, *, audio_dir: Path, text_dir: Path, full_size: bool = False) -> None:
    from muq import MuQMuLan

    config = mulan_config(full_size=full_size)
    local = {**config, "audio_model": {**config["audio_model"], "name": str(audio_dir)},
             "text_model": {**config["text_model"], "name": str(text_dir)}}
    network = MuQMuLan(local)
    with torch.no_grad():
        for parameter in network.parameters():
            if parameter.ndim >= 2:  # matrices only: random biases would drown the input
                parameter.normal_(0.0, 0.2)
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "config.json").write_text(json.dumps(config, indent=2), encoding="utf-8")
    torch.save(network.state_dict(), directory / "pytorch_model.bin")
