"""The subject stage's held state (streams.held): fewer writes, and the same alerts after a
crash at any point.

A worker drives the subject stage here as the stage agent does, on a store whose writes
wait for a flush (as a partition's do): envelopes applied in order, the last one applied
noted with the state, flushes now and then. A crash drops what was not flushed and what
was held; the stage is made again from the store and the envelopes since its `~off` are
applied again. Whatever the crash points, the alerts are the uninterrupted run's (at least
once: a repeat is the same alert), which is what the SIGKILL tests check on the real
broker for two crash points.
"""

from __future__ import annotations

import random
from typing import Any

import orjson
import pytest

from rings.clock import SourceClock, Watermark
from rings.decode import Limits, decode_sightings
from rings.engine import Engine
from rings.sim import SimConfig, Simulator
from rings.state import MemoryKV
from rings.watchlist import load_watchlist_lines
from streams.held import HeldState, bookkeeping


class FlushedKV(MemoryKV):
    """Writes wait in `pending` until `flush`, which first asks the held state what to
    write (as ChangelogWriter.flush does); a crash loses them."""

    def __init__(self) -> None:
        super().__init__()
        self.pending: dict[str, bytes | None] = {}
        self.holds: Any = None
        self.entity_writes = 0

    def get(self, key: str) -> bytes | None:
        if key in self.pending:
            return self.pending[key]
        return self.data.get(key)

    def put(self, key: str, value: bytes) -> None:
        self.pending[key] = value

    def delete(self, key: str) -> None:
        self.pending[key] = None

    def flush(self, force: bool = False) -> None:
        if self.holds is not None:
            self.holds.before_flush(force)
        for k, v in self.pending.items():
            self.entity_writes += k.startswith("s:") and v is not None
            if v is None:
                self.data.pop(k, None)
            else:
                self.data[k] = v
        self.pending.clear()

    def crash(self) -> None:
        self.pending.clear()


class Clock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def envelopes(net: Any, rules: Any) -> tuple[list[tuple[list[Any], dict[int, int]]], Any]:
    """A planted day as the ingest would send it to one subject partition: batches of
    sightings rows, each with its source watermark."""
    sim = Simulator(net, SimConfig(rate=0.4, duration_s=6 * 3600, seed=5,
                                   plant=tuple(sorted(d.kind for d in rules.detectors
                                                      if d.mode != "stage")), cases=2))
    lines = [orjson.dumps(r) for r in sim.sightings()]
    wl = load_watchlist_lines([orjson.dumps(e) for e in sim.watchlist()], net.sites)
    ok, _ = decode_sightings(lines, net.sites, Limits())
    sightings = [s for _, s in ok]
    # Shuffled a little within each batch (late arrivals within the lateness).
    rng = random.Random(3)
    wm = Watermark(rules.lateness_ms, idle_s=float("inf"))
    out = []
    i = 0
    while i < len(sightings):
        n = rng.randint(1, 60)
        batch = sightings[i:i + n]
        rng.shuffle(batch)
        for s in batch:
            wm.observe(0, s.ts)
        out.append(([s.to_row() for s in batch], {0: wm.value()}))
        i += n
    out.append(([], {0: sightings[-1].ts + 10 * rules.lateness_ms + 4 * 3_600_000}))
    return out, wl


class Driver:
    """The stage agent's part: per envelope, apply, note `~off`, snapshot; flush."""

    def __init__(self, net: Any, rules: Any, wl: Any, kv: FlushedKV, hold_ms: int,
                 clock: Clock) -> None:
        self.net, self.rules, self.wl, self.kv = net, rules, wl, kv
        self.hold_ms, self.clock = hold_ms, clock
        self.alerts: list[bytes] = []
        self.start()

    def start(self) -> None:
        kv = self.kv
        self.eng = Engine(self.net, self.rules, self.wl, kv)
        self.src = SourceClock(kv, "~src", 1)
        kv.holds = HeldState(kv, self.eng.table,
                             lambda off: bookkeeping(off, self.eng.watermark, self.src),
                             self.hold_ms, self.clock) if self.hold_ms else None
        raw = kv.get("~off")
        self.last = int(raw) if raw is not None else -1

    def apply(self, off: int, env: tuple[list[Any], dict[int, int]]) -> None:
        from rings.models import Sighting
        rows, src = env
        found = self.eng.process([Sighting.from_row(r) for r in rows], None,
                                 self.src.update(src))
        self.alerts.extend(orjson.dumps(a.to_json("")) for a in found)
        self.kv.put("~off", str(off).encode())
        self.last = off
        if self.kv.holds is not None:
            self.kv.holds.applied(off)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_held_state_gives_the_same_alerts_after_crashes_at_any_point(net, rules, seed):
    envs, wl = envelopes(net, rules)
    clock = Clock()
    reference = Driver(net, rules, wl, FlushedKV(), 0, clock)
    for off, env in enumerate(envs):
        reference.apply(off, env)
        if off % 7 == 0:
            reference.kv.flush()
    reference.kv.flush()
    want = set(reference.alerts)
    assert {orjson.loads(a)["rule"] for a in want} >= {"watchlist-hit", "penetration",
                                                       "checkpoint-avoidance", "cloned-plate"}

    rng = random.Random(seed)
    kv = FlushedKV()
    held = Driver(net, rules, wl, kv, 2000, clock)
    crashes = 0
    off = 0
    while off < len(envs):
        clock.t += rng.choice((0.01, 0.05, 0.3, 1.5))
        held.apply(off, envs[off])
        off += 1
        if rng.random() < 0.15:
            kv.flush()
        if rng.random() < 0.03:
            # Killed: what waited for a flush, and what was held, are gone.
            kv.crash()
            alerts = held.alerts
            held = Driver(net, rules, wl, kv, 2000, clock)
            held.alerts = alerts
            off = held.last + 1        # the stage's topic, read again from there
            crashes += 1
    kv.flush(force=True)
    assert crashes >= 3
    # At least once: every alert of the uninterrupted run, and nothing else.
    assert set(held.alerts) == want


def test_held_state_writes_a_subject_judged_soon_once(net, rules):
    envs, wl = envelopes(net, rules)
    writes = {}
    for hold_ms in (0, 2000):
        clock = Clock()
        kv = FlushedKV()
        d = Driver(net, rules, wl, kv, hold_ms, clock)
        for off, env in enumerate(envs):
            clock.t += 0.001            # full speed: judged well within the bound
            d.apply(off, env)
            kv.flush()                  # (a subject's arrival and judgement: apart)
        kv.flush(force=True)
        writes[hold_ms] = kv.entity_writes
        assert not kv.holds or not d.eng.table.held
    # Every subject's arrival and judgement were two writes; held, one.
    assert writes[2000] < 0.7 * writes[0], writes


def test_held_state_is_written_once_held_longer_than_the_bound(net, rules):
    """At a steady rate a subject is judged `lateness` after it arrived, minutes of wall
    time: it is held no longer than RINGS_STATE_HOLD_MS, then written as before."""
    envs, wl = envelopes(net, rules)
    clock = Clock()
    kv = FlushedKV()
    d = Driver(net, rules, wl, kv, 2000, clock)
    most = 0
    for off, env in enumerate(envs[:400]):
        clock.t += 0.5
        d.apply(off, env)
        kv.flush()
        oldest = d.eng.table.oldest_held()
        if oldest is not None:
            most = max(most, d.eng.table.batch - oldest)
        # Nothing held beyond the bound's envelopes (2 s at 0.5 s an envelope).
        assert most <= 5
    assert most > 0


def test_a_failed_batch_that_loses_held_state_rewinds_to_the_store(net, rules, monkeypatch):
    """A batch that fails half-way (a bug) loses what was held (its objects may hold half
    of the batch): the partition's bookkeeping goes back to the last envelope wholly in the
    store, the stage is made again from it, and the envelopes since are applied again, the
    failed one skipped, as the stage agent does (streams.app, `rewind`). The alerts are then
    those of a run without that envelope."""
    envs, wl = envelopes(net, rules)
    bad = len(envs) // 2
    clock = Clock()
    reference = Driver(net, rules, wl, FlushedKV(), 0, clock)
    for off, env in enumerate(envs):
        if off != bad:
            reference.apply(off, env)
    want = set(reference.alerts)

    kv = FlushedKV()
    d = Driver(net, rules, wl, kv, 2000, clock)
    real_arrive = Engine._arrive
    boom = {envs[bad][0][len(envs[bad][0]) // 2][0]}       # a sighting id mid-batch

    def arrive(self: Engine, s: Any, wm: int, out: list[Any]) -> None:
        if s.id in boom:
            raise RuntimeError("a bug")
        real_arrive(self, s, wm, out)
    monkeypatch.setattr(Engine, "_arrive", arrive)
    off, rewinds = 0, 0
    while off < len(envs):
        clock.t += 0.01
        if off == bad and rewinds:
            d.last, off = off, off + 1              # skipped: it failed before
            d.kv.put("~off", str(bad).encode())
            if kv.holds is not None:
                kv.holds.applied(bad)
            continue
        try:
            d.apply(off, envs[off])
        except RuntimeError:
            assert d.eng.table.lost_held
            base = kv.holds.rewind()
            assert base < bad
            alerts = d.alerts
            d = Driver(net, rules, wl, kv, 2000, clock)
            d.alerts = alerts
            assert d.last == base
            off = base + 1
            rewinds += 1
            continue
        off += 1
        if off % 5 == 0:
            kv.flush()
    assert rewinds == 1
    assert set(d.alerts) == want
