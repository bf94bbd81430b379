"""A bounded cache of encoded prompt sides, so a recurring negative prompt costs no forward pass.

Inference traffic repeats one side far more than the other: a service sends the same negative
prompt ("lowres, bad anatomy", EasyNegative at -1) with prompt after prompt. AUTOMATIC1111 keeps
the last negative conditioning for this reason and ComfyUI reuses an unchanged encode node.
Here one side of one text encoder is the unit: its chunks (token ids, every position's written
weight, where each embedding's vectors go, their digests and |weight|), the layer read, and a
fingerprint of the encoder's state (as for ``z_empty``: its parameters, and every PEFT adapter's
active set and scale) make the key, so an in-place change to the encoder (a fused LoRA) or an
unfused LoRA switched or rescaled is never answered from here.

A hit gives the same bits a miss computes: ``encode`` runs each side through the encoder on its
own, never batched with the other side, because float results may depend on the batch's shape.
Cached tensors are never written; ``encode`` copies out of them.

Size: ``PSEUDOWORD_CONDITIONING_CACHE`` in MiB (default 64; 0 turns it off). One SD 1.x chunk is
about 0.23 MiB in float32, an SDXL chunk about 0.6 MiB.
"""

from __future__ import annotations

import threading
import weakref
from collections import OrderedDict
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import Any

import torch

from pseudoword.runtime.settings import conditioning_cache_mib


@dataclass(frozen=True)
class EncodedSide:
    """One side's hidden states ``[chunks, 77, D]`` and, for a pooled encoder, ``[chunks, P]``."""

    hidden: torch.Tensor
    pooled: torch.Tensor | None

    @property
    def nbytes(self) -> int:
        size = self.hidden.numel() * self.hidden.element_size()
        if self.pooled is not None:
            size += self.pooled.numel() * self.pooled.element_size()
        return size


@dataclass(frozen=True)
class _Entry:
    encoder: weakref.ReferenceType[Any]  # guards against a new encoder reusing a dead one's id()
    value: EncodedSide


class ConditioningCache:
    """Thread-safe LRU of ``EncodedSide`` values, at most ``max_bytes`` in all (0: off)."""

    _max_bytes: int | None

    @property
    def max_bytes(self) -> int:
        if self._max_bytes is None:
            self._max_bytes = max(0, conditioning_cache_mib() * 1024 * 1024)
        return self._max_bytes

    def __init__(self, max_bytes: int | None = None) -> None:
        # None: PSEUDOWORD_CONDITIONING_CACHE, read on first use (the process-wide cache below is
        # made at import, when the settings need not be final yet).
        self._max_bytes = None if max_bytes is None else max(0, max_bytes)
        self._items: OrderedDict[Hashable, _Entry] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    @property
    def enabled(self) -> bool:
        return self.max_bytes > 0

    def __len__(self) -> int:
        return len(self._items)

    @property
    def nbytes(self) -> int:
        return self._bytes

    def get_or_encode(self, encoder: Any, key: Hashable | None,
                      compute: Callable[[], EncodedSide]) -> EncodedSide:
        """The cached side for ``(encoder, key)``, else ``compute()`` (run without the lock;
        two threads missing together both compute the same bits, one is kept).
        ``key=None`` means "not cacheable": always computed."""
        if not self.enabled or key is None:
            return compute()
        full_key = (id(encoder), key)
        with self._lock:
            entry = self._items.get(full_key)
            if entry is not None and entry.encoder() is encoder:
                self._items.move_to_end(full_key)
                self.hits += 1
                return entry.value
            self.misses += 1
        value = compute()
        if value.nbytes > self.max_bytes:
            return value
        with self._lock:
            old = self._items.pop(full_key, None)
            if old is not None:
                self._bytes -= old.value.nbytes
            self._items[full_key] = _Entry(weakref.ref(encoder), value)
            self._bytes += value.nbytes
            while self._bytes > self.max_bytes:
                _, evicted = self._items.popitem(last=False)
                self._bytes -= evicted.value.nbytes
        return value

    def clear(self) -> None:
        with self._lock:
            self._items.clear()
            self._bytes = 0


#: The process-wide cache ``encode`` uses unless given another.
DEFAULT_CONDITIONING_CACHE = ConditioningCache()
