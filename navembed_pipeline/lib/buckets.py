"""Stable hash buckets of track ids: the unit of partitioning (256 buckets, ``00``..``ff``).

Per-track Dagster partitions cost ~36 ms of bookkeeping each (see DESIGN.md); 256 static buckets
keep a full run's overhead near 8 s whatever the library size.
"""

import hashlib

BUCKET_COUNT = 256
BUCKETS: tuple[str, ...] = tuple(f"{i:02x}" for i in range(BUCKET_COUNT))


def bucket_of(track_id: str) -> str:
    """The bucket of ``track_id``: first byte of its BLAKE2b hash, as two hex digits."""
    return hashlib.blake2b(track_id.encode("utf-8"), digest_size=1).hexdigest()


def bucket_range(first: str, last: str) -> list[str]:
    """Buckets from ``first`` to ``last`` inclusive (Dagster partition ranges are inclusive)."""
    start, end = BUCKETS.index(first), BUCKETS.index(last)
    return list(BUCKETS[start : end + 1])


def contiguous_ranges(buckets: set[str], *, max_gap: int = 0) -> list[tuple[str, str]]:
    """Group buckets into inclusive ``(first, last)`` ranges, bridging gaps of ≤ ``max_gap`` buckets."""
    indexes = sorted(BUCKETS.index(b) for b in buckets)
    ranges: list[tuple[int, int]] = []
    for index in indexes:
        if ranges and index - ranges[-1][1] - 1 <= max_gap:
            ranges[-1] = (ranges[-1][0], index)
        else:
            ranges.append((index, index))
    return [(BUCKETS[a], BUCKETS[b]) for a, b in ranges]
