"""Audio I/O: decode to mono float32 at a requested rate, segments, sliding windows, CUE sheets."""

import numpy as np


def sliding_windows(
    wave: np.ndarray, sample_rate: int, *, window_seconds: float, hop_seconds: float
) -> list[np.ndarray]:
    """Cut ``wave`` into windows of ``window_seconds`` every ``hop_seconds`` (views, no copies).

    Semantics (the original system's, made explicit):
    - a track no longer than one window is one window: the whole track, unpadded;
    - otherwise windows start at 0, hop, 2*hop, ... while they fit entirely;
    - if the last full window stops short of the end, one more window ending exactly at the
      end covers the tail, so no audio is ever ignored.
    """
    window = int(round(window_seconds * sample_rate))
    hop = int(round(hop_seconds * sample_rate))
    if window <= 0 or hop <= 0:
        raise ValueError("window_seconds and hop_seconds must be positive")
    n = len(wave)
    if n <= window:
        return [wave]
    starts = list(range(0, n - window + 1, hop))
    if starts[-1] + window < n:
        starts.append(n - window)
    return [wave[s : s + window] for s in starts]
