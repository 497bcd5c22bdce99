"""MusiCNN's tag vocabularies, in the checkpoints' output order (torch-free: the API reads them).

Copied from the ``musicnn`` 0.1.0 wheel's ``configuration.py`` (ISC licence).
"""

from navembed_pipeline.lib.errors import ConfigError

DEFAULT_VARIANT = "MSD_musicnn"
MSD_LABELS = ("rock", "pop", "alternative", "indie", "electronic", "female vocalists", "dance", "00s",
              "alternative rock", "jazz", "beautiful", "metal", "chillout", "male vocalists", "classic rock",
              "soul", "indie rock", "Mellow", "electronica", "80s", "folk", "90s", "chill", "instrumental",
              "punk", "oldies", "blues", "hard rock", "ambient", "acoustic", "experimental", "female vocalist",
              "guitar", "Hip-Hop", "70s", "party", "country", "easy listening", "sexy", "catchy", "funk",
              "electro", "heavy metal", "Progressive rock", "60s", "rnb", "indie pop", "sad", "House", "happy")
MTT_LABELS = ("guitar", "classical", "slow", "techno", "strings", "drums", "electronic", "rock", "fast", "piano",
              "ambient", "beat", "violin", "vocal", "synth", "female", "indian", "opera", "male", "singing",
              "vocals", "no vocals", "harpsichord", "loud", "quiet", "flute", "woman", "male vocal", "no vocal",
              "pop", "soft", "sitar", "solo", "man", "classic", "choir", "voice", "new age", "dance", "male voice",
              "female vocal", "beats", "harp", "cello", "no voice", "weird", "country", "metal", "female voice",
              "choral")
_LABELS = {"MSD_musicnn": MSD_LABELS, "MTT_musicnn": MTT_LABELS}


def tag_names(variant: str = DEFAULT_VARIANT) -> tuple[str, ...]:
    """The 50 tags of ``variant`` in the order of the stored ``tags`` vector."""
    if variant not in _LABELS:
        raise ConfigError(f"unknown MusiCNN variant {variant!r}; choose one of {', '.join(_LABELS)}")
    return _LABELS[variant]
