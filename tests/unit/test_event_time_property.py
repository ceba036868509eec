"""Event time (CONTRACTS.md §5): within the allowed lateness the result is the same as in
order, and duplicates never produce a second alert.

Hypothesis draws traffic on the sample net that can trigger every shipped rule: inward chains
through city → core → civic (sometimes broken by an outward crossing), approach bayonets
followed by their checkpoint or not, far-apart sites close in time, repeated crossings of a
ring, co-passes of a watchlisted vehicle and a companion at several sites, a permitted truck
on and off its route and window, watchlisted persons in vehicles' `with`. Times sit on and
next to the rules' boundaries (15 min, 60 min, 120 s, 12 h, ...) and often tie.

The same sightings are fed through all stages (Pipeline) in event-time order and in an order
shuffled only within the lateness (each sighting delayed by 0..lateness, then sorted by
ts + delay: no sighting arrives after one more than `lateness` newer than it), in random
batches, with the replay driver's watermark (newest ts so far − lateness, before and after
each batch); then event time moves on until every rule has judged. The alerts must be the
same: id, rule, subject, evidence, ts and severity.
"""

from __future__ import annotations

import random
from collections import Counter
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rings.clock import Watermark
from rings.decode import decode_sighting
from rings.models import Sighting, Subject
from rings.pipeline import Pipeline
from rings.watchlist import Watchlist

from .support import (DAY, HOUR, MIN, SEC, T0, brief, check_alerts, entry, permit_entry,
                      sighting)

# ------------------------------------------------------------------------- the cast

V0, V1, V2, V3 = (f"vehicle:蒙K{i:05d}" for i in range(4))
P0, P1 = "person:p-0", "person:p-1"
TRUCK = "vehicle:蒙K88888"
VEHICLES = [V0, V1, V2, V3]
ANYONE = VEHICLES + [P0, P1]
ROUTE = ("CP03", "BK02", "BV01")

WATCHLIST = [
    entry(V0, "wanted", "critical"),
    entry(V1, "stolen", "high", start=T0 + HOUR),          # listed only from T0 + 1 h
    entry(P0, "fugitive", "high"),
    entry(P1, "suspect", "medium", end=T0 + 2 * HOUR),     # listed only until T0 + 2 h
    permit_entry(TRUCK, ROUTE, T0 + HOUR, T0 + 3 * HOUR),
]

CITY = ["CP01", "CP02", "CP03", "BC01", "BC02"]
CORE = ["BK01", "BK02", "BK03"]
CIVIC = ["BV01", "BV02"]
BANNER = ["DL01", "EJ02"]
FAR = ["CP01", "CP05", "CP10", "CP15"]        # 160-460 km apart from one another
CONVOY_SITES = ["CP01", "BK01", "BV01", "DL01", "CP03"]

Row = tuple[int, str, str, Any, tuple[str, ...]]   # (ts, site, subject key, dir, with)

# ------------------------------------------------------------------------- episodes

start = st.integers(0, 4 * HOUR) | st.sampled_from([0, HOUR, 2 * HOUR])
direction = st.sampled_from(["in", "out", None])


def near(*values: int, up_to: int) -> st.SearchStrategy[int]:
    """A boundary value, one ms past it, or anything up to `up_to`."""
    edges = [x for v in values for x in (v, v + 1)]
    return st.sampled_from(edges) | st.integers(0, up_to)


@st.composite
def chain(draw) -> list[Row]:
    who = draw(st.sampled_from(ANYONE))
    t = draw(start)
    steps = [(draw(st.sampled_from(CITY)), "in")]
    if draw(st.booleans()):
        steps.append((draw(st.sampled_from(CITY + CORE)), draw(direction)))
    steps.append((draw(st.sampled_from(CORE + BANNER)), "in"))
    if draw(st.booleans()):
        steps.append((draw(st.sampled_from(CIVIC)), "in"))
    rows = []
    for site, d in steps:
        rows.append((t, site, who, d, ()))
        t += draw(near(30 * MIN, 60 * MIN, up_to=40 * MIN))
    return rows


@st.composite
def approach(draw) -> list[Row]:
    who = draw(st.sampled_from(ANYONE))
    t = draw(start)
    k = draw(st.sampled_from([1, 2, 7]))
    rows = [(t, f"BA{k:02d}", who, draw(st.sampled_from(["in", "in", "out"])), ())]
    seen = draw(st.none() | near(15 * MIN, up_to=20 * MIN))
    if seen is not None:
        rows.append((t + seen, f"CP{k:02d}", who, draw(direction), ()))
    return rows


@st.composite
def far_apart(draw) -> list[Row]:
    who = draw(st.sampled_from(VEHICLES))
    t = draw(start)
    a, b = draw(st.lists(st.sampled_from(FAR), min_size=2, max_size=2, unique=True))
    dt = draw(near(0, SEC, 40 * MIN, up_to=2 * HOUR))
    return [(t, a, who, draw(direction), ()), (t + dt, b, who, draw(direction), ())]


@st.composite
def loiter(draw) -> list[Row]:
    who = draw(st.sampled_from(ANYONE))
    t = draw(start)
    sites = draw(st.sampled_from([CITY, CORE]))
    rows = []
    for i in range(draw(st.integers(3, 6))):
        rows.append((t, draw(st.sampled_from(sites)), who, "in" if i % 2 == 0 else "out", ()))
        t += draw(near(40 * MIN, up_to=50 * MIN))
    return rows


@st.composite
def convoy(draw) -> list[Row]:
    lead = draw(st.sampled_from([V0, V0, V1]))
    mate = draw(st.sampled_from([v for v in VEHICLES if v != lead]))
    t = draw(start)
    rows = []
    for site in draw(st.lists(st.sampled_from(CONVOY_SITES), min_size=2, max_size=4)):
        gap = draw(st.sampled_from([120 * SEC, 121 * SEC, -120 * SEC, 0])
                   | st.integers(-150 * SEC, 150 * SEC))
        rows.append((t, site, lead, "in", ()))
        rows.append((t + gap, site, mate, "in", ()))
        t += draw(near(30 * MIN, up_to=35 * MIN))
    return rows


@st.composite
def permit(draw) -> list[Row]:
    t = draw(start)
    rows = []
    for _ in range(draw(st.integers(1, 4))):
        site = draw(st.sampled_from(list(ROUTE) + ["CP05", "BK01"]))
        rows.append((t, site, TRUCK, draw(direction), ()))
        t += draw(near(HOUR, up_to=HOUR))
    return rows


@st.composite
def linked(draw) -> list[Row]:
    car = draw(st.sampled_from(VEHICLES))
    who = draw(st.sampled_from([P0, P1]))
    t = draw(start)
    rows = [(t, draw(st.sampled_from(CITY + CORE)), car, draw(direction), (who,))]
    for _ in range(draw(st.integers(1, 4))):
        dt = draw(near(0, 12 * HOUR, up_to=13 * HOUR) | st.integers(-3 * MIN, 3 * MIN))
        rows.append((t + dt, draw(st.sampled_from(CITY + CIVIC)), car, draw(direction), ()))
    return rows


episode = st.one_of(chain(), approach(), far_apart(), loiter(), convoy(), permit(), linked())
scenario = st.lists(episode, min_size=1, max_size=12)


def sightings_of(episodes: list[list[Row]]) -> list[Sighting]:
    """Number the sightings in the order drawn (ids break ties in event time)."""
    out = []
    for rows in episodes:
        for ts, site, who, d, with_ in rows:
            out.append(sighting(f"s{len(out):04d}", T0 + ts, site, who, d,
                                tuple(Subject.from_key(w) for w in with_)))
    return out


# ------------------------------------------------------------------------- driving


def feed(net, rules, arrivals: list[Sighting], rnd: random.Random | None) -> list:
    """Feed sightings in this arrival order, in batches (random sizes, or one by one), with
    the replay driver's watermark; then move event time on until every rule has judged."""
    pipe = Pipeline(net, rules, Watchlist(WATCHLIST))
    wm = Watermark(rules.lateness_ms, idle_s=float("inf"))
    alerts = []
    i = 0
    while i < len(arrivals):
        n = rnd.randint(1, 12) if rnd else 1
        batch = arrivals[i:i + n]
        i += n
        before = wm.value()
        for s in batch:
            wm.observe(0, s.ts)
        alerts += pipe.process(batch, before, wm.value())
    newest = max(s.ts for s in arrivals)
    alerts += pipe.process([], None, newest + 2 * DAY)
    check_alerts(alerts)
    return alerts


def in_order(sightings: list[Sighting]) -> list[Sighting]:
    return sorted(sightings, key=lambda s: (s.ts, s.id))


def shuffled_within(sightings: list[Sighting], lateness: int, rnd: random.Random
                    ) -> list[Sighting]:
    """Delay each sighting by 0..lateness (often exactly 0 or the lateness) and sort by the
    delayed time: a sighting never arrives after one more than `lateness` newer than it."""
    def delay() -> int:
        return rnd.choice((0, lateness, rnd.randint(0, lateness)))
    keyed = [(s.ts + delay(), rnd.random(), s) for s in sightings]
    return [s for *_, s in sorted(keyed, key=lambda k: (k[0], k[1]))]


def assert_within_lateness(arrivals: list[Sighting], lateness: int) -> None:
    newest = None
    for s in arrivals:
        assert newest is None or newest <= s.ts + lateness
        newest = s.ts if newest is None else max(newest, s.ts)


def summary(alerts: list) -> list[tuple]:
    ids = Counter(a.alert_id for a in alerts)
    assert all(n == 1 for n in ids.values()), [i for i, n in ids.items() if n > 1]
    return sorted(brief(a) for a in alerts)


PROPERTY = settings(max_examples=200, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


# ------------------------------------------------------------------------- properties


@PROPERTY
@given(scenario, st.randoms(use_true_random=False))
def test_shuffled_within_lateness_gives_the_same_alerts(net, rules, episodes, rnd):
    sightings = sightings_of(episodes)
    expected = summary(feed(net, rules, in_order(sightings), None))
    arrivals = shuffled_within(sightings, rules.lateness_ms, rnd)
    assert_within_lateness(arrivals, rules.lateness_ms)
    assert summary(feed(net, rules, arrivals, rnd)) == expected


@PROPERTY
@given(scenario, st.randoms(use_true_random=False), st.data())
def test_duplicates_give_the_same_alerts(net, rules, episodes, rnd, data):
    """Some sightings twice: a second copy within the lateness, or up to 30 min later (a
    late duplicate), gives the same alerts as the stream without duplicates."""
    sightings = sightings_of(episodes)
    expected = summary(feed(net, rules, in_order(sightings), None))
    twice = data.draw(st.lists(st.sampled_from(sightings), min_size=1, max_size=8))
    lateness = rules.lateness_ms
    keyed = [(s.ts + rnd.randint(0, lateness), rnd.random(), s) for s in sightings]
    keyed += [(s.ts + rnd.choice((0, rnd.randint(0, lateness), rnd.randint(0, 30 * MIN))),
               rnd.random(), s) for s in twice]
    arrivals = [s for *_, s in sorted(keyed, key=lambda k: (k[0], k[1]))]
    assert summary(feed(net, rules, arrivals, rnd)) == expected


# ------------------------------------------------------------------------- the generator


EVERY_RULE = {"watchlist-hit", "penetration", "checkpoint-avoidance", "cloned-plate",
              "loitering", "convoy", "permit-violation", "linked-hit"}


def test_the_generator_can_trigger_every_rule(net, rules):
    """One scenario of each kind of episode, fixed: every shipped rule fires (so the
    properties above compare alerts of every rule, not an empty set)."""
    assert {d.rule_id for d in rules.detectors} == EVERY_RULE
    episodes = [
        [(0, "CP01", V0, "in", ()), (10 * MIN, "BK01", V0, "in", ()),
         (20 * MIN, "BV01", V0, "in", ())],                                    # chain
        [(HOUR, "BA02", P1, "in", ())],                                         # approach
        [(0, "CP05", V2, "in", ()), (10 * MIN, "CP15", V2, "out", ())],          # far apart
        [(i * 10 * MIN, "BK02", V3, "in" if i % 2 == 0 else "out", ()) for i in range(4)],
        [row for i, site in enumerate(CONVOY_SITES[:3])                         # convoy
         for row in ((2 * HOUR + i * 5 * MIN, site, V0, "in", ()),
                     (2 * HOUR + i * 5 * MIN + 60 * SEC, site, V2, "in", ()))],
        [(HOUR + 30 * MIN, "CP05", TRUCK, "in", ())],                           # permit
        [(3 * HOUR, "CP02", V3, "in", (P0,)), (4 * HOUR, "BV02", V3, None, ())],  # linked
    ]
    alerts = feed(net, rules, in_order(sightings_of(episodes)), None)
    assert {a.rule for a in alerts} == EVERY_RULE


@settings(max_examples=30, deadline=None)
@given(scenario)
def test_the_generated_stream_is_valid(net, episodes):
    """Every drawn sighting is one a gateway could send: it survives the decoder intact."""
    for s in sightings_of(episodes):
        assert decode_sighting(orjson.dumps(s.to_json()), net.sites) == s


@pytest.mark.parametrize("seed", range(3))
def test_shuffling_really_reorders(net, rules, seed):
    """The shuffle moves sightings (the property is not vacuous) and stays within the
    lateness."""
    rnd = random.Random(seed)
    sightings = [sighting(f"s{i:03d}", T0 + i * 7 * SEC, "CP01", V0) for i in range(200)]
    arrivals = shuffled_within(sightings, rules.lateness_ms, rnd)
    assert arrivals != sightings
    assert_within_lateness(arrivals, rules.lateness_ms)
    assert max(s.ts for s in arrivals[:100]) - min(s.ts for s in arrivals[100:]) > MIN
