"""Text prompts into the joint text-audio space, with the most recent prompts remembered.

The text tower (MuQ-MuLan's) costs more than a whole playlist search, and listeners repeat
prompts ("calm piano", "no vocals"), so the last ``capacity`` prompt vectors are kept.
"""

import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence

import numpy as np

from navembed_pipeline.lib.recommend.errors import InvalidRequestError

EmbedText = Callable[[Sequence[str]], np.ndarray]
CAPACITY = 512


class PromptVectors:
    """``embed_text`` (e.g. ``MuQModel.embed_text``; None = no text model) behind a small LRU cache."""

    def __init__(self, embed_text: EmbedText | None, *, capacity: int = CAPACITY) -> None:
        self.embed_text = embed_text
        self.capacity = capacity
        self._cache: OrderedDict[str, np.ndarray] = OrderedDict()
        self._lock = threading.Lock()

    def __call__(self, prompts: Sequence[str]) -> dict[str, np.ndarray]:
        """Each prompt's vector; the text model embeds only the prompts not seen recently."""
        if not prompts:
            return {}
        if self.embed_text is None:
            raise InvalidRequestError("text prompts are not available here (no text model is loaded)")
        with self._lock:
            missing = [p for p in dict.fromkeys(prompts) if p not in self._cache]
        fresh = dict(zip(missing, np.asarray(self.embed_text(missing), dtype=np.float32), strict=True)) \
            if missing else {}
        with self._lock:
            self._cache.update(fresh)
            found = {p: fresh[p] if p in fresh else self._cache[p] for p in prompts}
            for prompt in found:
                self._cache.move_to_end(prompt)
            while len(self._cache) > self.capacity:
                self._cache.popitem(last=False)
        return found
