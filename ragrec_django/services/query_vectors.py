"""Text queries as vectors, in the web process: one encoder pass per new query, then a per-process LRU cache.

Search embeds its query with each space's own encoder (the CLIP text tower for "image"); the cache is keyed by
space, encoder version and text, and holds ``RAGREC["QUERY_CACHE_SIZE"]`` entries.
"""

from __future__ import annotations

import threading
from collections import OrderedDict

import numpy as np

from .. import registry
from ..conf import ragrec_settings


class _QueryCache:
    """Per-process LRU cache of query embeddings (text search runs in the web process)."""

    def __init__(self):
        self._entries: OrderedDict = OrderedDict()
        self._lock = threading.Lock()

    def get(self, space: str, text: str) -> np.ndarray:
        key = (space, registry.get_space(space).encoder.version, text)
        with self._lock:
            if key in self._entries:
                self._entries.move_to_end(key)
                return self._entries[key]
        vector = registry.get_space(space).encoder.encode_texts([text])[0]
        with self._lock:
            self._entries[key] = vector
            while len(self._entries) > int(ragrec_settings.QUERY_CACHE_SIZE):
                self._entries.popitem(last=False)
        return vector


query_cache = _QueryCache()


def text_query_vector(space: str, text: str) -> np.ndarray:
    """Embed a text query for ``space``: its own encoder's text side (the CLIP text tower for "image")."""
    return query_cache.get(space, text)
