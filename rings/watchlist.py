"""The watchlist as the detectors see it: subject key -> entry, active in event time.

Drivers differ in where entries live (a file loaded by replay, a Faust GlobalTable fed by the
compacted `watchlist` topic in the worker), so detectors only see this small interface.
"""

from __future__ import annotations

from typing import Callable, Iterable, Iterator, Protocol

from .decode import decode_watch_entry
from .errors import InvalidRecord
from .models import WatchEntry


class WatchlistView(Protocol):
    def get(self, key: str) -> WatchEntry | None: ...


class Watchlist:
    """An in-memory watchlist (replay, tests): the last entry for a key wins, None removes it."""

    def __init__(self, entries: Iterable[WatchEntry] = ()) -> None:
        self._entries: dict[str, WatchEntry] = {}
        # get() is the dict's own (the detectors look up every sighting's subject).
        self.get = self._entries.get           # type: ignore[method-assign]
        for e in entries:
            self.put(e)

    def put(self, entry: WatchEntry) -> None:
        self._entries[entry.subject.key] = entry

    def remove(self, key: str) -> None:
        self._entries.pop(key, None)

    def get(self, key: str) -> WatchEntry | None:
        return self._entries.get(key)

    def __len__(self) -> int:
        return len(self._entries)

    def __iter__(self) -> Iterator[WatchEntry]:
        return iter(self._entries.values())


_UNKNOWN = object()


class RawWatchlist:
    """A watchlist over a mapping of key -> raw JSON bytes (the worker's GlobalTable).

    Decoding is cached by the raw value, so an entry is parsed once however often it is hit,
    and a changed entry (new bytes) is parsed again. Invalid entries count as absent and are
    reported once through `on_invalid`.
    """

    def __init__(self, raw: "Callable[[str], bytes | None]",
                 sites: dict | None = None,
                 on_invalid: "Callable[[str, InvalidRecord], None] | None" = None,
                 cache_size: int = 65536) -> None:
        self._raw = raw
        self._sites = sites
        self._on_invalid = on_invalid
        self._cache: dict[bytes, WatchEntry | None] = {}
        self._cache_size = cache_size
        # Answers by key, absent ones included (most lookups are of unlisted subjects). Only
        # valid while the owner calls `changed` for every key the mapping changes.
        self._by_key: dict[str, WatchEntry | None] = {}
        self._by_key_size = 4 * cache_size

    def changed(self, key: str) -> None:
        """The mapping changed this key: forget the answer kept for it."""
        self._by_key.pop(key, None)

    def forget(self) -> None:
        self._by_key.clear()

    def get(self, key: str) -> WatchEntry | None:
        # Without a KeyError: most lookups are of a subject not asked about before, and a
        # raised and caught exception was 3% of the worker's time.
        entry = self._by_key.get(key, _UNKNOWN)
        if entry is not _UNKNOWN:
            return entry            # type: ignore[return-value]
        entry = self._lookup(key)
        if entry is None and getattr(self._raw, "filtered", False):
            # The source answers absence from memory (the worker's WatchReader keeps the
            # set of listed keys): keeping the answer too only grew a dict of every subject
            # seen, whose lookups then missed the CPU's caches (3% of the worker's time).
            return None
        if len(self._by_key) >= self._by_key_size:
            self._by_key.clear()
        self._by_key[key] = entry
        return entry

    def _lookup(self, key: str) -> WatchEntry | None:
        raw = self._raw(key)
        if raw is None:
            return None
        try:
            return self._cache[raw]
        except KeyError:
            pass
        try:
            entry: WatchEntry | None = decode_watch_entry(raw, self._sites)
            if entry is not None and entry.subject.key != key:
                raise InvalidRecord("key-mismatch", "the message key is not the entry's subject key")
        except InvalidRecord as e:
            entry = None
            if self._on_invalid is not None:
                self._on_invalid(key, e)
        if len(self._cache) >= self._cache_size:
            self._cache.clear()
        self._cache[raw] = entry
        return entry


def load_watchlist(path: str, sites: dict | None = None) -> Watchlist:
    """Load a JSONL watchlist file; a bad line is an error naming its line number."""
    with open(path, "rb") as f:
        return load_watchlist_lines(f, sites, path)


def load_watchlist_lines(lines: Iterable[bytes], sites: dict | None = None,
                         source: str = "<watchlist>") -> Watchlist:
    from .errors import SourceError

    wl = Watchlist()
    for n, line in enumerate(lines, 1):
        line = line.strip()
        if not line or line.startswith(b"#"):
            continue
        try:
            wl.put(decode_watch_entry(line, sites))
        except InvalidRecord as e:
            raise SourceError(f"invalid watchlist entry: {e}", source, n) from None
    return wl
