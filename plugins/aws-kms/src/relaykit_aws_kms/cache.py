"""A bounded, expiring, thread-safe cache of unwrapped data keys.

Opening one integration's credentials again and again (each operation, each verification)
would otherwise call KMS Decrypt each time. Entries are keyed by a SHA-256 of the key id,
the wrapped data key and the associated data, so only the very same wrap under the very same
context hits; they live at most ``seconds`` and at most ``size`` of them are kept (the least
recently used goes first). The data keys themselves are in memory either way while a row is
open; the cache keeps them there for up to ``seconds`` more.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections import OrderedDict
from collections.abc import Callable


def cache_key(key_id: str, wrapped: bytes, associated_data: bytes) -> bytes:
    """The digest an unwrap is cached under (length-prefixed parts: no two inputs collide)."""
    digest = hashlib.sha256()
    for part in (key_id.encode(), wrapped, associated_data):
        digest.update(len(part).to_bytes(8, "big"))
        digest.update(part)
    return digest.digest()


class UnwrapCache:
    """LRU of at most ``size`` entries, each valid for ``seconds`` (either 0: no caching)."""

    def __init__(
        self, size: int, seconds: float, *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.size = size
        self.seconds = seconds
        self._clock = clock
        self._entries: OrderedDict[bytes, tuple[float, bytes]] = OrderedDict()
        self._lock = threading.Lock()

    @property
    def enabled(self) -> bool:
        return self.size > 0 and self.seconds > 0

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)

    def get(self, key: bytes) -> bytes | None:
        if not self.enabled:
            return None
        now = self._clock()
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                return None
            expires, value = entry
            if now >= expires:
                del self._entries[key]
                return None
            self._entries.move_to_end(key)
            return value

    def put(self, key: bytes, value: bytes) -> None:
        if not self.enabled:
            return
        expires = self._clock() + self.seconds
        with self._lock:
            self._entries[key] = (expires, value)
            self._entries.move_to_end(key)
            while len(self._entries) > self.size:
                self._entries.popitem(last=False)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
