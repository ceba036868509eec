"""The subject stage's held state on one partition, and what its bookkeeping must say.

At full speed a subject's arrival and its judgement (`lateness` of event time later, under a
second of wall time) were two writes of its state: two encodings, two RocksDB puts, two
changelog records, for a state the second write replaces. So the subject stage holds what
it would write at arrival (`rings.schedule.EntityTable.holding`): an entity with sightings
queued for judgement stays in memory until it is judged, and is written then, once.

What is held is not in the store, so the partition's bookkeeping must not claim it: at
each flush the partition writes, as its last applied envelope (`~off`), its stage
watermark (`~s:wm`) and its upstream clock (`~src`), their values after the last envelope
*before* the oldest held change (a snapshot taken after every envelope). A worker killed
then restores the state of the flush and applies again, from the stage's own topic, every
envelope from there on, on that watermark and clock, exactly as they were applied the
first time: entities written since see their sightings as duplicates (their state already
holds them), held ones are made again. Judging happens at the same points of event time
or later, never earlier, and judging later gives the same alerts (the ordered rules take a
subject's sightings and deadlines in event-time order whatever the batches).

The hold is bounded: changes held longer than `RINGS_STATE_HOLD_MS` (default 2,000 ms)
of wall time are written at the next flush, so that a steady rate (a subject judged
minutes after it arrived) writes as before, a crash applies again at most that much, and
what is held stays small. Everything held is written when the partition is let go, the
worker stops, or a rule set is pushed.
"""

from __future__ import annotations

import time
from collections import deque
from typing import Any, Callable

import orjson

from .changelog import PartitionKV
from .config import env_int

HOLD_MS = 2000
KEYS = ("~off", "~s:wm", "~src")


def hold_ms_from_env(env: dict[str, str] | None = None) -> int:
    """RINGS_STATE_HOLD_MS: how long the subject stage may hold a subject's state (0: not
    at all, every change written at the next flush)."""
    return env_int("RINGS_STATE_HOLD_MS", HOLD_MS, env, high=60_000)


class HeldState:
    """One subject partition: its table's held entities and the snapshots of its
    bookkeeping since the oldest of them."""

    def __init__(self, kv: PartitionKV, table: Any, values: Callable[[int], dict[str, Any]],
                 hold_ms: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.kv = kv
        self.table = table
        self.values = values            # offset -> the bookkeeping after that envelope
        self.hold_s = hold_ms / 1000
        self.clock = clock
        table.holding = hold_ms > 0
        raw = kv.get("~off")
        # (batch, when, bookkeeping): after the envelope of that batch (its commit); the
        # first is the base the store holds now, as of the last batch before the table's.
        self.snaps: deque[tuple[int, float, dict[str, Any]]] = deque(
            [(table.batch - 1, clock(), self.values(int(raw) if raw is not None else -1))])

    def applied(self, offset: int) -> None:
        """After each envelope applied (its batch committed)."""
        self.snaps.append((self.table.batch - 1, self.clock(), self.values(offset)))

    def due(self) -> bool:
        """Something has been held longer than the bound."""
        return bool(self.table.held) and len(self.snaps) > 1 and \
            self.clock() - self.snaps[1][1] >= self.hold_s

    def before_flush(self, force: bool = False) -> None:
        """Write what has been held too long (`force`: all of it), and the bookkeeping of
        the last envelope whose changes are all in the store."""
        table, snaps = self.table, self.snaps
        if force:
            table.release()
        elif table.held:
            cutoff = self.clock() - self.hold_s
            recent = next((b for b, at, _ in snaps if at >= cutoff), None)
            table.release(recent)      # (None: all held are older than the bound)
        oldest = table.oldest_held()
        while len(snaps) > 1 and (oldest is None or snaps[1][0] < oldest):
            snaps.popleft()
        self._write(snaps[0][2])

    def release_all(self, offset: int) -> None:
        """Before the stage is dropped between two flushes (a rule set pushed, perhaps
        while an envelope awaits its alerts' delivery): everything held into the store,
        with the bookkeeping as it stands, after the envelope at `offset`."""
        self.table.release()
        self.snaps = deque([(self.table.batch - 1, self.clock(), self.values(offset))])
        self._write(self.snaps[0][2])

    def rewind(self) -> int:
        """The held state was lost (a batch failed half-way): make the store's
        bookkeeping that of the last envelope wholly in it, for the stage to be made again
        from the store and the envelopes since applied again. Returns that offset."""
        base = self.snaps[0][2]
        self.snaps = deque([self.snaps[0]])
        self._write(base)
        return int(base["~off"])

    def _write(self, values: dict[str, Any]) -> None:
        kv = self.kv
        for key in KEYS:
            v = values.get(key)
            if v is None:
                kv.delete(key)
            else:
                kv.put(key, v)


def bookkeeping(offset: int, watermark: int, clock: Any) -> dict[str, Any]:
    """The subject partition's bookkeeping after the envelope at `offset`, encoded as the
    stage (`~s:wm`), its source clock (`~src`) and the agent (`~off`) write it."""
    return {"~off": str(offset).encode() if offset >= 0 else None,
            "~s:wm": orjson.dumps(watermark),
            "~src": clock.encoded()}
