"""The one file-name sanitiser: every name navembed writes, or hands back to be written, goes through it.

A client's ``name`` (``../../etc/cron.d/evil.wav``), a CUE title or a chat model's answer becomes a
single path component: the last component only (no ``/`` or ``\\``), no NUL or other control
characters, none of ``<>:"|?*``, not ``.``/``..`` nor hidden (no leading dot), no lone surrogates,
at most ``MAX_NAME_BYTES`` of UTF-8 with the extension kept. Nothing is left: ``fallback`` (which the
caller gives as a safe name).
"""

import re

MAX_NAME_BYTES = 200  # below the 255 bytes of common file systems, with room for " (2)" and the like
MAX_SUFFIX_CHARS = 16
_SEPARATORS = re.compile(r"[/\\]")
_UNSAFE = re.compile(r'[\x00-\x1f\x7f<>:"|?*]+')
_SUFFIX = re.compile(r"\.[A-Za-z0-9]{1,%d}$" % MAX_SUFFIX_CHARS)


def safe_file_name(name: str, *, fallback: str = "track", max_bytes: int = MAX_NAME_BYTES,
                   is_title: bool = False) -> str:
    """``name`` made a safe single file name (see the module doc); ``fallback`` when nothing is left.

    A client's name may be a path: its last component is taken. A title (``is_title``: a CUE
    track, tags, a chat model's answer) may hold "/" as text ("AC/DC"): it becomes "_".
    """
    last = _SEPARATORS.sub("_", name) if is_title else _SEPARATORS.split(name)[-1]
    valid = last.encode("utf-8", "replace").decode("utf-8")  # a lone surrogate becomes "?", then "_"
    cleaned = _UNSAFE.sub("_", valid.replace("\ufffd", "_")).strip(" .")
    if not cleaned.strip("_. "):
        return fallback
    return _cap(cleaned, max_bytes)


def _cap(name: str, max_bytes: int) -> str:
    """At most ``max_bytes`` of UTF-8, cut at a character boundary, keeping the extension."""
    if len(name.encode("utf-8")) <= max_bytes:
        return name
    match = _SUFFIX.search(name)
    suffix = match.group(0) if match else ""
    stem = name[: len(name) - len(suffix)]
    budget = max_bytes - len(suffix.encode("utf-8"))
    cut = stem.encode("utf-8")[:budget].decode("utf-8", "ignore").rstrip(" .")
    return (cut or "track") + suffix
