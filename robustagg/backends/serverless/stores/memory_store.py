"""An in-process store (a dict behind a lock), for unit tests and the in-process handler."""
from __future__ import annotations

import threading

from .base import Store, check_key


class MemoryStore(Store):
    def __init__(self):
        self._data: dict[str, bytes] = {}
        self._lock = threading.Lock()

    def put(self, key, data, if_absent=True):
        check_key(key)
        with self._lock:
            if if_absent and key in self._data:
                return False
            self._data[key] = bytes(data)
            return True

    def get(self, key):
        with self._lock:
            return self._data.get(check_key(key))

    def get_many(self, keys):
        with self._lock:
            return {k: self._data[k] for k in keys if k in self._data}

    def delete_prefix(self, prefix):
        with self._lock:
            doomed = [k for k in self._data if k.startswith(prefix)]
            for k in doomed:
                del self._data[k]
            return len(doomed)

    def keys(self) -> list[str]:
        with self._lock:
            return sorted(self._data)
