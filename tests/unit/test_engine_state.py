"""The engine's state is bounded by event time: what it keeps per subject expires, and what
it holds in memory besides the store is bounded by its cache."""

from __future__ import annotations

import gc
import time

import orjson

from rings.engine import BUCKET_MS, Engine
from rings.models import Subject, WatchEntry
from rings.state import MemoryKV
from rings.watchlist import Watchlist

from .support import HOUR, MIN, T0, sighting

# What the subject stage keeps besides subjects and its expiry index: its watermark, how far
# its index was swept, and the directory of minutes holding index keys.
BOOKKEEPING = {"~s:wm", "~s:sw", "~s:dir"}


def subject_keys(store: MemoryKV) -> list[str]:
    return [k for k in store.keys() if k.startswith("s:")]


def leftover(store: MemoryKV) -> list[str]:
    """Everything but the bookkeeping keys, and the index directory if it still lists any
    minute (it must be empty once nothing is scheduled)."""
    left = sorted(k for k in store.keys() if k not in BOOKKEEPING)
    raw = store.get("~s:dir")
    if raw is not None and orjson.loads(raw):
        left.append(f"~s:dir={orjson.loads(raw)}")
    return left


# One sighting each of a million distinct subjects, at increasing event time, through the
# subject stage with every shipped rule. The sites vary so that each rule keeps state: ring
# crossings (penetration's chain, loitering's crossings, cloned-plate's last sighting), an
# approach bayonet inbound (a checkpoint-avoidance deadline, which fires: nobody is seen at
# the checkpoint), passes without direction.
N = 1_000_000
STEP = 100          # ms of event time between sightings: N of them span ~28 h, 12 horizons
BATCH = 2000
SITES = [("CP01", "in"), ("BK01", "in"), ("BV01", "out"), ("BA01", "in"), ("DL01", None),
         ("BA02", "out"), ("CP05", "out")]


def test_state_is_bounded_and_expires(net, rules):
    """The store holds the subjects seen within the horizon (and its index), never the
    million; once event time passes the last horizon only bookkeeping keys are left."""
    gc.disable()        # as the drivers run the core (rings.gctune); the fixture turns it on
    started = time.perf_counter()
    store = MemoryKV()
    eng = Engine(net, rules, Watchlist(), store)
    assert eng.horizon >= rules.dedupe_ms
    assert N * STEP > 10 * eng.horizon              # expiry is exercised many times over
    # The most the store may hold at once: subjects seen within the horizon (plus the
    # lateness and a second of slack per side), and one index key per second of that span.
    window = (eng.horizon + rules.lateness_ms + 2 * BUCKET_MS) // STEP
    index = (eng.horizon + rules.lateness_ms) // BUCKET_MS + 2
    peak = cached = indexed = 0
    max_ts = None
    avoidance = 0
    for start in range(0, N, BATCH):
        batch = []
        for i in range(start, start + BATCH):
            site, direction = SITES[i % len(SITES)]
            kind = "person" if i % 5 == 0 else "vehicle"
            batch.append(sighting(f"s{i}", T0 + i * STEP, site, Subject(kind, f"X{i:07d}"),
                                  direction))
        before = None if max_ts is None else max_ts - rules.lateness_ms
        max_ts = batch[-1].ts
        alerts = eng.process(batch, before, max_ts - rules.lateness_ms)
        assert {a.rule for a in alerts} <= {"checkpoint-avoidance"}
        avoidance += len(alerts)
        peak = max(peak, len(store))
        # What the table keeps in memory between batches (decoded entities, index seconds)
        # is bounded by its cache and the batch, not by the subjects within the horizon.
        cached = max(cached, len(eng.table.cache))
        indexed = max(indexed, sum(len(keys) for keys in eng.table.index.values()))
    assert eng.stats.processed == N and eng.stats.late == 0
    assert cached <= eng.table.cache_limit + 2 * BATCH, cached
    assert indexed <= 5 * BATCH < window // 5, (indexed, window)
    assert peak <= window + index + len(BOOKKEEPING), (peak, window, index)
    # ...and it is that bound, not much less: subjects are kept as long as the horizon.
    assert peak > eng.horizon // STEP, (peak, eng.horizon // STEP)
    assert eng.stats.expired > N - window - BATCH
    # Event time passes the horizon of the last sighting: everything goes.
    alerts = eng.advance(max_ts + eng.horizon + 2 * BUCKET_MS)
    avoidance += len(alerts)
    # Every inbound approach-bayonet pass fired once, at its deadline.
    assert avoidance == sum(1 for i in range(N) if SITES[i % len(SITES)] == ("BA01", "in"))
    assert eng.stats.by_rule == {"checkpoint-avoidance": avoidance}
    assert eng.stats.expired == N
    assert subject_keys(store) == []
    assert leftover(store) == [] and set(store.keys()) <= BOOKKEEPING
    print(f"\n{N:,} subjects: peak {peak:,} keys (bound {window + index:,}), "
          f"{time.perf_counter() - started:.1f} s")


def test_expiry_driven_by_later_sightings(net, rules):
    store = MemoryKV()
    eng = Engine(net, rules, Watchlist(), store)
    early = [sighting(f"e{i}", T0 + i, "CP01", Subject("person", f"p{i}")) for i in range(500)]
    eng.process(early, None, T0)
    assert len(subject_keys(store)) == 500
    late_ts = T0 + eng.horizon + rules.lateness_ms + 3 * BUCKET_MS
    eng.process([sighting("later", late_ts, "CP02", Subject("vehicle", "V"))],
                None, late_ts - rules.lateness_ms)
    assert subject_keys(store) == ["s:vehicle:V"]
    assert eng.stats.expired == 500


def test_state_of_a_subject_seen_again_is_kept(net, rules):
    store = MemoryKV()
    eng = Engine(net, rules, Watchlist(), store)
    car = Subject("vehicle", "V")
    eng.process([sighting("a", T0, "CP01", car)], None, T0)
    t1 = T0 + eng.horizon - 10 * MIN
    eng.process([sighting("b", t1, "CP02", car)], None, t1)
    eng.advance(T0 + eng.horizon + 5 * BUCKET_MS)       # past the first sighting's horizon
    assert subject_keys(store) == ["s:vehicle:V"]
    # ...and its memory of sighting ids still refuses a duplicate.
    assert eng.process([sighting("b", t1, "CP02", car)]) == []
    assert eng.stats.duplicates == 1
    eng.advance(t1 + eng.horizon + 2 * BUCKET_MS)
    assert subject_keys(store) == []


def test_expiry_continues_after_restart(net, rules):
    store = MemoryKV()
    eng = Engine(net, rules, Watchlist(), store)
    eng.process([sighting(f"s{i}", T0 + i * MIN, "CP01", Subject("vehicle", f"V{i}"))
                 for i in range(30)], None, T0 + 29 * MIN)
    assert len(subject_keys(store)) == 30
    restarted = Engine(net, rules, Watchlist(), store)
    assert restarted.watermark == T0 + 29 * MIN
    restarted.advance(T0 + 30 * MIN + restarted.horizon + 2 * BUCKET_MS)
    assert subject_keys(store) == []
    assert restarted.stats.expired == 30


def test_late_sightings_are_counted_and_still_alert(net, rules):
    wanted = Subject("vehicle", "蒙K3X521")
    store = MemoryKV()
    eng = Engine(net, rules, Watchlist([WatchEntry(wanted, "wanted", "critical")]), store)
    eng.process([sighting("now", T0 + HOUR, "CP01", Subject("vehicle", "other"))],
                None, T0 + HOUR)
    assert eng.watermark == T0 + HOUR
    alerts = eng.process([sighting("late", T0, "CP02", wanted, "in")])
    assert eng.stats.late == 1
    assert [(a.rule, a.evidence) for a in alerts] == [("watchlist-hit", ["late"])]
    # A late duplicate is still a duplicate.
    assert eng.process([sighting("late", T0, "CP02", wanted, "in")]) == []
    assert eng.stats.duplicates == 1


def test_state_of_very_late_sightings_expires_too(net, rules):
    """A sighting older than the horizon (a gateway's backlog) must not leave state forever."""
    store = MemoryKV()
    eng = Engine(net, rules, Watchlist(), store)
    now = T0 + 10 * HOUR
    eng.process([sighting("now", now, "CP01", Subject("vehicle", "A"))], None, now)
    eng.process([sighting("old", T0, "CP02", Subject("vehicle", "B"))])     # 10 h late
    assert eng.stats.late == 1
    eng.advance(now + eng.horizon + 3 * BUCKET_MS)
    left = leftover(store)
    assert left == [], f"state kept past the horizon: {left}"
    assert eng.stats.expired == 2


def test_state_of_an_out_of_order_first_batch_expires(net, rules):
    """On a cold start the first batch may hold sightings far older than its newest one."""
    store = MemoryKV()
    eng = Engine(net, rules, Watchlist(), store)
    newest = T0 + 6 * HOUR
    eng.process([sighting("new", newest, "CP01", Subject("vehicle", "A")),
                 sighting("old", T0, "CP02", Subject("vehicle", "B"))],
                None, newest - rules.lateness_ms)
    eng.advance(newest + eng.horizon + 3 * BUCKET_MS)
    left = leftover(store)
    assert left == [], f"state kept past the horizon: {left}"


class BudgetKV(MemoryKV):
    """A MemoryKV that refuses to be read more than `budget` times (so a runaway loop fails
    fast instead of hanging the suite)."""

    def __init__(self, budget: int) -> None:
        super().__init__()
        self.budget = budget
        self.reads = 0

    def get(self, key: str) -> bytes | None:
        self.reads += 1
        if self.reads > self.budget:
            raise AssertionError(f"more than {self.budget} store reads")
        return super().get(key)


def test_a_far_jump_of_event_time_does_not_stall_the_engine(net, rules):
    """One sighting stamped in year 9999 (a valid ts) moves the watermark ~8000 years ahead.
    advance() then probes the store for every minute in between (~4e9 reads, minutes of
    stall for the worker or replay); it should cost in proportion to the state, not the jump.
    """
    store = BudgetKV(budget=100_000)
    eng = Engine(net, rules, Watchlist(), store)
    eng.process([sighting("a", T0, "CP01", Subject("vehicle", "A"))], None, T0)
    far = 253402300799999 - 10 * HOUR          # 9999-12-31, the last year parse_ts accepts
    try:
        eng.process([sighting("b", far, "CP02", Subject("vehicle", "B"))], None,
                    far - rules.lateness_ms)
    except AssertionError as e:
        raise AssertionError(
            f"Engine.advance reads one key per minute of event time skipped ({e} for a jump "
            f"to year 9999); a single far-future sighting stalls the engine") from None
    assert subject_keys(store) == ["s:vehicle:B"]


def test_alerts_are_counted_once(net, rules):
    """Stats (the drivers' metrics) count each alert once, whether it comes out on arrival,
    from the advance inside process(), or from advance() itself."""
    wanted = Subject("vehicle", "蒙K3X521")
    eng = Engine(net, rules, Watchlist([WatchEntry(wanted, "wanted", "critical")]), MemoryKV())
    out = eng.process([sighting("a", T0, "BA01", wanted, "in")], None, T0)      # hit
    out += eng.process([sighting("b", T0 + 20 * MIN, "CP09", Subject("vehicle", "x"))],
                       None, T0 + 18 * MIN)                 # avoidance, released by process
    out += eng.process([sighting("c", T0 + 30 * MIN, "BA02", wanted, "in")], None,
                       T0 + 30 * MIN)                       # hit
    out += eng.advance(T0 + HOUR)                            # avoidance, released by advance
    assert sorted(a.rule for a in out) == ["checkpoint-avoidance"] * 2 + ["watchlist-hit"] * 2
    assert eng.stats.alerts == 4
    assert eng.stats.by_rule == {"watchlist-hit": 2, "checkpoint-avoidance": 2}
    assert all(a.rules_version == rules.version for a in out)
