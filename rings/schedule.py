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
`commit()`, which is what keeps a changelog-backed store cheap. An object store (replay) holds
the very objects the stages change, so there `put` writes through and nothing is cached.

A byte store's table may *hold* entities (`holding`, set by the worker for the subject
stage): an entity with sightings queued for judgement is kept in memory, not written, since
its judgement will change it again soon (at full speed, a subject's arrival and its
judgement were two writes, encodings and changelog records). What it holds is not in the
store: a crash loses it, and the driver must make the store's bookkeeping say so (see
`oldest_held`; the worker applies the envelopes since again).

Entities are indexed before a sweep and at commit, each pass over the entities put since
the last one only (`_unindexed`). During a sweep an entity keeps the second it was listed
under, so that the sweep still meets it there even when another entity's judgement changed
it first (a site's `hot` passes, in the site stage).
"""

from __future__ import annotations

from itertools import islice
from typing import Any, Iterable, Iterator

import orjson

from .state import KV

NEVER = 2**62
NO_TIME = -(2**62)
SECOND = 1000
CACHE_LIMIT = 50_000        # decoded entities kept per table between batches (byte stores)


class EntityTable:
    def __init__(self, store: KV, prefix: str, cache_limit: int | None = None) -> None:
        self.store = store
        self.prefix = prefix                 # e.g. "s:" for subjects, "t:convoy:" for sites
        self.meta = "~" + prefix             # bookkeeping keys: "~" + namespace + name
        # An object store (replay) keeps the decoded state itself; a byte store (the
        # worker's table) gets JSON, and a bounded cache of decoded entities spares most
        # reads from decoding again what the last batches wrote.
        self.objects = bool(getattr(store, "holds_objects", False))
        self.cache_limit = cache_limit if cache_limit is not None else CACHE_LIMIT
        self.cache: dict[str, dict[str, Any]] = {}
        self.index: dict[int, list[str]] = {}    # cached index seconds
        self.index_dirty: set[int] = set()         # index seconds changed since commit
        # Byte stores: written at commit, in the order put. Not a set: encoding in hash order
        # visits the entities' objects all over the heap, and measured 3.6 times slower per
        # entity than in the order they were made (memory locality).
        self.dirty: dict[str, dict[str, Any]] = {}
        self.deleted: set[str] = set()
        raw = store.get(self.meta + "sw")
        self.swept: int | None = self._decode(raw) if raw is not None else None
        self._unindexed: dict[str, dict[str, Any]] = {}   # put since the last indexing
        self._sweep_to: int | None = None     # while due() runs: the second it sweeps to
        raw = store.get(self.meta + "dir")
        self.dir: set[int] = set(self._decode(raw)) if raw is not None else set()
        self._dir_changed = False
        self._swept_changed = False
        # The store's methods, resolved once (called several times per entity).
        self._sget, self._sput, self._sdel = store.get, store.put, store.delete
        # An object store gives the table a dict of its own (ObjectKV.space): an entity is
        # then looked up by its key as it came (its hash already computed once), not by a
        # new string `prefix + key`, made and hashed again at every visit of every entity
        # (measured: the core 6 to 9% faster, head to head).
        self._objs: dict[str, Any] = \
            store.space(prefix) if self.objects else {}  # type: ignore[attr-defined]
        # Holding (byte stores only): key -> the batch since which its changes are held, in
        # the order held (the first is the oldest). `batch` counts commits: one a batch.
        self.holding = False
        self.held: dict[str, int] = {}
        self.batch = 0
        self.lost_held = False

    def _decode(self, raw: Any) -> Any:
        return raw if self.objects else orjson.loads(raw)

    def _encode(self, value: Any) -> Any:
        return value if self.objects else orjson.dumps(value)

    # ------------------------------------------------------------------ state

    def get(self, key: str) -> dict[str, Any] | None:
        if self.objects:
            return self._objs.get(key)
        st = self.cache.get(key)
        if st is None and key not in self.deleted:
            raw = self._sget(self.prefix + key)
            if raw is not None:
                st = self.cache[key] = orjson.loads(raw)
        return st

    def put(self, key: str, st: dict[str, Any]) -> None:
        """Keep the entity, to be written at commit (an object store: now) and indexed
        under its next action (`nx`) at the next index_pending().

        An object store already holds every entity that was indexed (`xb`) and not deleted
        since: the objects are the store's own, changed in place. Only the others are
        written to it (new entities: most puts are of entities loaded and changed)."""
        self._unindexed[key] = st
        if self.objects:
            if "xb" not in st or key in self.deleted:
                self._objs[key] = st
        else:
            self.cache[key] = st
            self.dirty[key] = st
            self.deleted.discard(key)

    def delete(self, key: str) -> None:
        self._unindexed.pop(key, None)
        if self.objects:
            self._objs.pop(key, None)
            self.deleted.add(key)       # (put again, it must be written again)
            return
        self.cache.pop(key, None)
        self.dirty.pop(key, None)
        self.held.pop(key, None)
        self.deleted.add(key)

    def discard(self) -> None:
        """Forget what was not committed (a batch that failed half-way): the cache must not
        keep changes the store never got. (An object store holds the objects themselves and
        is written through, so there a failed batch's changes stay; replay stops on one
        anyway.)"""
        self.cache.clear()
        self.index.clear()
        self.index_dirty.clear()
        self.dirty.clear()
        self.deleted.clear()
        self._unindexed.clear()
        self._sweep_to = None
        # What was held is lost with the cache (its objects may hold half of the failed
        # batch): the driver, seeing `lost_held`, applies the batches since again.
        self.lost_held = bool(self.held)
        self.held.clear()

    def index_pending(self, seal: bool = False) -> None:
        """Index every entity put since the last call under its next action (in memory;
        written at commit). With `seal`, also encode each of them now (see `seal`)."""
        self._list(self._unindexed.items(), seal)
        self._unindexed.clear()

    def seal(self, key: str, st: dict[str, Any]) -> None:
        """Index and encode an entity now, which its stage will not change again before
        commit: encoded while its objects are still in the CPU's caches, rather than at
        commit after the whole sweep (measured: a state encoded cold costs several times
        as much, and encoding was a fifth of the worker's time)."""
        if self._unindexed.pop(key, None) is not None:      # (None: deleted, or not put)
            self._list(((key, st),), True)

    def _list(self, entities: Iterable[tuple[str, dict[str, Any]]], seal: bool) -> None:
        # One loop for many entities: it runs for every entity put.
        floor = self.swept if self._sweep_to is None else self._sweep_to
        index, index_get, index_dirty, dirs = self.index, self._index_get, self.index_dirty, \
            self.dir
        dirty = self.dirty if seal and not self.objects else None
        holding = self.holding
        for key, st in entities:
            nx = st.get("nx", NEVER)
            if nx >= NEVER:
                raise AssertionError("an entity with no next action must be deleted")
            sec = nx // SECOND
            if floor is not None and sec < floor:
                sec = floor             # already swept past: handle at the next sweep
            if st.get("xb") != sec:
                # Listed under another second before: that entry goes stale (due() skips it).
                st["xb"] = sec
                listed = index.get(sec)
                if listed is None:
                    listed = index_get(sec)
                if listed is not None:
                    listed.append(key)
                else:
                    index[sec] = [key]
                    minute = sec // 60          # (a listed second's minute is in `dir`)
                    if minute not in dirs:
                        dirs.add(minute)
                        self._dir_changed = True
                index_dirty.add(sec)
            if dirty is not None and key in dirty:
                if holding and self._hold(key, st):
                    del dirty[key]                  # judged soon: written then
                    continue
                dirty[key] = orjson.dumps(st)       # type: ignore[assignment]

    def commit(self) -> None:
        """Write every changed entity once, and index it under its next action."""
        self.index_pending()
        store, prefix, meta, encode = self.store, self.prefix, self.meta, self._encode
        if not self.objects:
            put, dumps = self._sput, orjson.dumps
            holding = self.holding
            for key, st in self.dirty.items():
                if type(st) is not bytes:
                    if holding and self._hold(key, st):
                        continue
                    st = dumps(st)              # (bytes: sealed, _hold decided then)
                put(prefix + key, st)
            for key in self.deleted:
                store.delete(prefix + key)
        for sec in self.index_dirty:
            listed = self.index.get(sec)
            if listed is not None:
                store.put(f"{meta}w:{sec}", encode(listed))
        if not self.objects and len(self.index) > len(self.index_dirty):
            # Keep only the seconds this batch wrote (the next batch appends to the same
            # ones): the others wait in the store until they are swept, up to the horizon
            # ahead. Kept here, they held every live entity's key in memory.
            index = self.index
            self.index = {sec: index[sec] for sec in self.index_dirty if sec in index}
        self.index_dirty.clear()
        if self._dir_changed:
            store.put(meta + "dir", encode(sorted(self.dir)))
            self._dir_changed = False
        if self._swept_changed:
            store.put(meta + "sw", encode(self.swept))
            self._swept_changed = False
        self.dirty.clear()
        self.deleted.clear()
        self.batch += 1
        if self.objects:
            self.index.clear()
        elif len(self.cache) - len(self.held) > self.cache_limit:
            # Oldest loaded first: entities touched again (judged, rescheduled) are the
            # likeliest to be touched soon, and usually were loaded later. Held entities
            # stay: they are nowhere else.
            cache, held = self.cache, self.held
            drop = len(cache) - len(held) - self.cache_limit // 2
            for key in [k for k in islice(cache, drop + len(held)) if k not in held][:drop]:
                del cache[key]

    # ------------------------------------------------------------------ holding

    def _hold(self, key: str, st: Any) -> bool:
        """Whether a changed entity is held rather than written: it has sightings queued
        for judgement, which will change it again soon. One that is written is no longer
        held."""
        if st.get("q"):
            self.held.setdefault(key, self.batch)
            return True
        self.held.pop(key, None)
        return False

    def oldest_held(self) -> int | None:
        """The batch since which the oldest held entity's changes wait (every batch
        before it is wholly in the store); None when nothing is held."""
        return next(iter(self.held.values()), None)

    def release(self, before: int | None = None) -> int:
        """Write held entities now: those held since a batch before `before`, or all.
        Between batches only. Returns how many."""
        held = self.held
        keys = list(held) if before is None else \
            [k for k, since in held.items() if since < before]
        put, dumps, cache, prefix = self._sput, orjson.dumps, self.cache, self.prefix
        for key in keys:
            del held[key]
            put(prefix + key, dumps(cache[key]))
        return len(keys)

    def _index_get(self, sec: int) -> list[str] | None:
        listed = self.index.get(sec)
        if listed is None:
            raw = self._sget(f"{self.meta}w:{sec}")
            if raw is not None:
                listed = self.index[sec] = self._decode(raw)
        return listed

    # ------------------------------------------------------------------ time

    def due(self, upto_ms: int) -> Iterator[tuple[str, dict[str, Any]]]:
        """Entities with an action before `upto_ms`, as (key, state), each once, oldest
        second first.

        Only whole seconds are swept (an action at 12.4 s waits until the watermark passes
        13 s), so a second's index key is read and removed exactly once. Entities put while
        the sweep runs are indexed at commit, from `upto` on: for the next sweep.
        """
        upto = upto_ms // SECOND
        start = self.swept
        if start is not None and upto <= start:
            return
        # get(), inlined for an object store (it runs for every entity swept).
        get = self._objs.get if self.objects else self.get
        seen: set[str] = set()
        self._sweep_to = upto
        for minute in sorted(m for m in self.dir if m * 60 < upto):
            lo = minute * 60 if start is None else max(minute * 60, start)
            hi = min(minute * 60 + 60, upto)
            for sec in range(lo, hi):
                listed = self._index_get(sec)
                if listed is None:
                    continue
                self.index.pop(sec, None)
                self.index_dirty.discard(sec)
                self._sdel(f"{self.meta}w:{sec}")
                for key in listed:
                    if key in seen:
                        continue
                    st = get(key)
                    if st is not None and st.get("xb") == sec:
                        seen.add(key)
                        yield key, st
            if minute * 60 + 60 <= upto:
                self.dir.discard(minute)
                self._dir_changed = True
        self._sweep_to = None
        self.swept = upto
        self._swept_changed = True
