"""Where the core keeps per-subject state: a tiny key-value interface.

The worker backs it with a Faust table (RocksDB through rocksdict, changelog in Kafka);
replay and tests back it with a dict. Values are bytes so that both behave the same, and
so that what replay keeps is exactly what the worker would write to its changelog.
"""

from __future__ import annotations

from typing import Iterator, Protocol


class KV(Protocol):
    def get(self, key: str) -> bytes | None: ...
    def put(self, key: str, value: bytes) -> None: ...
    def delete(self, key: str) -> None: ...


class MemoryKV:
    """A dict-backed store for replay and tests."""

    def __init__(self) -> None:
        self.data: dict[str, bytes] = {}

    def get(self, key: str) -> bytes | None:
        return self.data.get(key)

    def put(self, key: str, value: bytes) -> None:
        self.data[key] = value

    def delete(self, key: str) -> None:
        self.data.pop(key, None)

    def __len__(self) -> int:
        return len(self.data)

    def keys(self) -> Iterator[str]:
        return iter(self.data)
