"""A small bounded LRU of embedding vectors already on the pipeline's device and dtype.

An inference worker sees the same few embeddings (EasyNegative, badhandv4...) in request after
request; keeping their tensors where the text encoder is means a repeat costs no file read, no
parse and no host-to-device copy. Keys carry the identity of the content (the canonical digest,
or a local file's path + mtime + size) and the device and dtype, so a different pipeline
precision gets its own copy. Values are never written after insertion, so readers on other
threads can use them without holding the lock.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from dataclasses import dataclass

import torch

from pseudoword.runtime.settings import vector_cache_entries


@dataclass(frozen=True)
class DeviceVectors:
    """An embedding's vectors on one device/dtype, plus what placement needs to know."""

    vectors: dict[str, torch.Tensor]  # "emb_params" or "clip_l" + "clip_g", each [n, d]
    architecture: str
    num_vectors: int
    name: str | None = None  # the name stored in the file (an alias of its trigger)
    sha256: str | None = None  # of the file read (local files; registry entries have the record's)


class VectorCache:
    """Thread-safe LRU of ``DeviceVectors`` (at most ``max_entries``)."""

    _max_entries: int | None

    @property
    def max_entries(self) -> int:
        if self._max_entries is None:
            self._max_entries = vector_cache_entries()
        return self._max_entries

    def __init__(self, max_entries: int | None = None) -> None:
        # None: PSEUDOWORD_VECTOR_CACHE, read on first use (DEFAULT_CACHE is made at import).
        self._max_entries = None if max_entries is None else max(1, max_entries)
        self._items: OrderedDict[Hashable, DeviceVectors] = OrderedDict()
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def __len__(self) -> int:
        return len(self._items)

    def get_or_load(self, key: Hashable, load: Callable[[], DeviceVectors]) -> DeviceVectors:
        """The cached value for ``key``, else ``load()`` (run without the lock, so one slow read
        does not stall other requests; two threads missing together both load, one wins)."""
        with self._lock:
            value = self._items.get(key)
            if value is not None:
                self._items.move_to_end(key)
                self.hits += 1
                return value
            self.misses += 1
        value = load()
        with self._lock:
            existing = self._items.get(key)
            if existing is not None:
                return existing
            self._items[key] = value
            while len(self._items) > self.max_entries:
                self._items.popitem(last=False)
        return value

    def clear(self) -> None:
        with self._lock:
            self._items.clear()


def to_device(vectors: dict[str, torch.Tensor], device: torch.device, dtype: torch.dtype) -> dict[str, torch.Tensor]:
    return {key: value.detach().to(device=device, dtype=dtype).contiguous() for key, value in vectors.items()}


#: The process-wide cache ``encode`` uses unless given another.
DEFAULT_CACHE = VectorCache()
