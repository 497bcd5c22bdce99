"""MusiCNN's tag vocabularies (50 tags per variant, in the checkpoints' output order). Plain data:
the API imports this without torch.

Copied from ``musicnn/configuration.py`` of the ``musicnn`` 0.1.0 wheel (ISC licence,
Copyright (c) Music Technology Group, Universitat Pompeu Fabra 2019): ``MSD_LABELS`` were learnt
from the Million Song Dataset's Last.fm tags, ``MTT_LABELS`` from MagnaTagATune.
"""

from navembed_pipeline.lib.errors import ConfigError

DEFAULT_VARIANT = "MSD_musicnn"

MSD_TAGS: tuple[str, ...] = (
    "rock", "pop", "alternative", "indie", "electronic", "female vocalists", "dance", "00s",
    "alternative rock", "jazz", "beautiful", "metal", "chillout", "male vocalists", "classic rock", "soul",
    "indie rock", "Mellow", "electronica", "80s", "folk", "90s", "chill", "instrumental", "punk", "oldies",
    "blues", "hard rock", "ambient", "acoustic", "experimental", "female vocalist", "guitar", "Hip-Hop",
    "70s", "party", "country", "easy listening", "sexy", "catchy", "funk", "electro", "heavy metal",
    "Progressive rock", "60s", "rnb", "indie pop", "sad", "House", "happy",
)

MTT_TAGS: tuple[str, ...] = (
    "guitar", "classical", "slow", "techno", "strings", "drums", "electronic", "rock", "fast", "piano",
    "ambient", "beat", "violin", "vocal", "synth", "female", "indian", "opera", "male", "singing", "vocals",
    "no vocals", "harpsichord", "loud", "quiet", "flute", "woman", "male vocal", "no vocal", "pop", "soft",
    "sitar", "solo", "man", "classic", "choir", "voice", "new age", "dance", "male voice", "female vocal",
    "beats", "harp", "cello", "no voice", "weird", "country", "metal", "female voice", "choral",
)

TAGS: dict[str, tuple[str, ...]] = {"MSD_musicnn": MSD_TAGS, "MTT_musicnn": MTT_TAGS}
VARIANTS: tuple[str, ...] = tuple(TAGS)


def check_variant(variant: str) -> str:
    """``variant`` itself, or ``ConfigError`` listing the known variants."""
    if variant not in TAGS:
        raise ConfigError(f"unknown MusiCNN variant {variant!r}; known: {', '.join(VARIANTS)}")
    return variant


def tag_names(variant: str = DEFAULT_VARIANT) -> tuple[str, ...]:
    """The 50 tag names of ``variant``, in the order of the model's outputs (the ``tags`` vector)."""
    return TAGS[check_variant(variant)]
