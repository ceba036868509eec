"""Where the core keeps per-subject state: a tiny key-value interface.

The worker backs it with a Faust table (RocksDB through rocksdict, changelog in Kafka);
replay backs it with a dict of objects (`ObjectKV`), tests often with a dict of bytes
(`MemoryKV`). A byte store gets JSON, so the core keeps only JSON values in its state (lists,
not tuples; string keys): then an object store and a byte store behave the same, which the
unit tests check by running the planted day on both.
"""

from __future__ import annotations

from typing import Any, Iterator, Protocol


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


class ObjectKV(MemoryKV):
    """A dict that keeps the core's decoded state objects as they are: replay's store.

    The worker must encode state for its changelog; replay need not, and saves the JSON
    round trip of every entity on every batch (most of its time, measured)."""

    holds_objects = True

    def __init__(self) -> None:
        super().__init__()
        # The dict's own methods, bound in place of the ones above: the core calls them a
        # few times per entity (subclasses overriding get or put would have to undo this).
        self.get = self.data.get               # type: ignore[method-assign]
        self.put = self.data.__setitem__       # type: ignore[method-assign]
        self.spaces: dict[str, dict[str, Any]] = {}

    def space(self, prefix: str) -> dict[str, Any]:
        """The dict that holds the keys under `prefix` (without it): an entity table's
        own, so that it looks entities up by their keys as they come. `get`, `put` and
        `delete` do not see these keys; `items()` lists them with the others."""
        return self.spaces.setdefault(prefix, {})

    def items(self) -> Iterator[tuple[str, Any]]:
        """Every key (a space's with its prefix) and value."""
        yield from self.data.items()
        for prefix, space in self.spaces.items():
            for key, value in space.items():
                yield prefix + key, value

    def __len__(self) -> int:
        return len(self.data) + sum(len(s) for s in self.spaces.values())

    def keys(self) -> Iterator[str]:
        return (key for key, _ in self.items())
