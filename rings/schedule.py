"""Keyed state with event-time scheduling, on the core's key-value store.

Every stage of the engine keeps state per entity (a subject, a site, a pair of vehicles) and
must act on it at points of event time: judge queued sightings once the watermark has passed
them, fire an absence deadline, forget the entity when its windows are over. This module
holds that mechanism once for all stages.

Each entity's state carries `nx`, the event time of its next action. The entity is indexed
under that second (`~<ns>w:<second>` lists entity keys), and the seconds in use are listed
per minute in a small directory (`~<ns>dir`), so a sweep visits only seconds that hold work,
however far event time jumps. An index entry goes stale when the entity's next action
moves; the sweep checks `xb` (the second it was last indexed under) and skips stale ones.

Reads and writes are coalesced: an entity is loaded once per batch and written once at
`commit()`, which is what keeps a changelog-backed store cheap.
"""

from __future__ import annotations

from typing import Any, Iterator

import orjson

from .state import KV

NEVER = 2**62
NO_TIME = -(2**62)
SECOND = 1000


class EntityTable:
    def __init__(self, store: KV, prefix: str) -> None:
        self.store = store
        self.prefix = prefix                 # e.g. "s:" for subjects, "t:convoy:" for sites
        self.meta = "~" + prefix             # bookkeeping keys: "~" + namespace + name
        self.cache: dict[str, dict[str, Any]] = {}
        self.dirty: set[str] = set()
        self.deleted: set[str] = set()
        raw = store.get(self.meta + "sw")
        self.swept: int | None = orjson.loads(raw) if raw is not None else None
        raw = store.get(self.meta + "dir")
        self.dir: set[int] = set(orjson.loads(raw)) if raw is not None else set()
        self._dir_changed = False
        self._swept_changed = False

    # ------------------------------------------------------------------ state

    def get(self, key: str) -> dict[str, Any] | None:
        st = self.cache.get(key)
        if st is None and key not in self.deleted:
            raw = self.store.get(self.prefix + key)
            if raw is not None:
                st = orjson.loads(raw)
                self.cache[key] = st
        return st

    def put(self, key: str, st: dict[str, Any]) -> None:
        self.cache[key] = st
        self.dirty.add(key)
        self.deleted.discard(key)

    def delete(self, key: str) -> None:
        self.cache.pop(key, None)
        self.dirty.discard(key)
        self.deleted.add(key)

    def commit(self) -> None:
        """Write every changed entity once, and index it under its next action."""
        index_add: dict[int, list[str]] = {}
        floor = self.swept
        for key in self.dirty:
            st = self.cache[key]
            nx = st.get("nx", NEVER)
            if nx >= NEVER:
                raise AssertionError("an entity with no next action must be deleted")
            sec = nx // SECOND
            if floor is not None and sec < floor:
                sec = floor             # already swept past: handle at the next sweep
            if st.get("xb") != sec:
                st["xb"] = sec
                index_add.setdefault(sec, []).append(key)
            self.store.put(self.prefix + key, orjson.dumps(st))
        for key in self.deleted:
            self.store.delete(self.prefix + key)
        for sec, keys in index_add.items():
            ikey = f"{self.meta}w:{sec}"
            raw = self.store.get(ikey)
            self.store.put(ikey, orjson.dumps((orjson.loads(raw) if raw else []) + keys))
            minute = sec // 60
            if minute not in self.dir:
                self.dir.add(minute)
                self._dir_changed = True
        if self._dir_changed:
            self.store.put(self.meta + "dir", orjson.dumps(sorted(self.dir)))
            self._dir_changed = False
        if self._swept_changed:
            self.store.put(self.meta + "sw", orjson.dumps(self.swept))
            self._swept_changed = False
        self.cache.clear()
        self.dirty.clear()
        self.deleted.clear()

    # ------------------------------------------------------------------ time

    def due(self, upto_ms: int) -> Iterator[str]:
        """Entity keys with an action before `upto_ms`, each once, oldest second first.

        Only whole seconds are swept (an action at 12.4 s waits until the watermark passes
        13 s), so a second's index key is read and removed exactly once.
        """
        upto = upto_ms // SECOND
        start = self.swept
        if start is not None and upto <= start:
            return
        seen: set[str] = set()
        for minute in sorted(m for m in self.dir if m * 60 < upto):
            lo = minute * 60 if start is None else max(minute * 60, start)
            hi = min(minute * 60 + 60, upto)
            for sec in range(lo, hi):
                ikey = f"{self.meta}w:{sec}"
                raw = self.store.get(ikey)
                if raw is None:
                    continue
                self.store.delete(ikey)
                for key in orjson.loads(raw):
                    if key in seen:
                        continue
                    st = self.get(key)
                    if st is not None and st.get("xb") == sec:
                        seen.add(key)
                        yield key
            if minute * 60 + 60 <= upto:
                self.dir.discard(minute)
                self._dir_changed = True
        self.swept = upto
        self._swept_changed = True
