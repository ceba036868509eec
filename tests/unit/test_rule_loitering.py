"""`loitering` (CONTRACTS.md §5): the same subject crosses the same ring (a pass with `dir`
`in` or `out` at a site on it) at least [4] times within [2 h]; low; after an alert, none for
the same subject and ring for the next [2 h].

All stages (Pipeline), a rule set of just this rule.
"""

from __future__ import annotations

import pytest

from rings.models import Subject

from .support import HOUR, MIN, T0, Driver, entry, sighting, single_rule

RULE = "loitering"
CAR = Subject("vehicle", "蒙K3X521")
CITY = ["CP01", "CP02", "BC01", "CP03", "BC02", "CP04", "CP05", "CP06"]


@pytest.fixture(scope="module")
def rules():
    return single_rule(RULE)


def run(net, rules, sightings, *entries):
    return Driver(net, rules, *entries).run(sightings)


def crossings(*offsets, sites=CITY, subject=CAR, first=0):
    """City-ring crossings at these offsets (ms from T0), alternately in and out."""
    return [sighting(f"x{first + i}", T0 + t, sites[i % len(sites)], subject,
                     "in" if i % 2 == 0 else "out") for i, t in enumerate(offsets)]


# ------------------------------------------------------------------------- count


def test_four_crossings(net, rules):
    [a] = run(net, rules, crossings(0, 10 * MIN, 20 * MIN, 30 * MIN))
    assert (a.rule, a.severity, a.subject, a.related) == (RULE, "low", CAR, [])
    assert a.evidence == ["x0", "x1", "x2", "x3"]
    assert (a.ts, a.tz) == (T0 + 30 * MIN, 480)
    assert (a.site, a.ring, a.zone, a.dir) == ("CP03", "city", "outside", "out")
    assert a.details == {"crossings": 4}
    assert a.summary == "vehicle 蒙K3X521 crossed the City ring 4 times in 30 min"


def test_three_crossings_are_not_enough(net, rules):
    assert run(net, rules, crossings(0, 10 * MIN, 20 * MIN)) == []


def test_crossings_parameter(net):
    three = single_rule(RULE, crossings=3)
    [a] = run(net, three, crossings(0, 10 * MIN, 20 * MIN))
    assert a.evidence == ["x0", "x1", "x2"]


def test_any_subject_and_no_watchlist_needed(net, rules):
    p = Subject("person", "p-1")
    [a] = run(net, rules, crossings(0, MIN, 2 * MIN, 3 * MIN, subject=p),
              entry(p, severity="critical"))
    assert (a.subject, a.severity) == (p, "low")


def test_same_site_counts_every_time(net, rules):
    [a] = run(net, rules, crossings(0, MIN, 2 * MIN, 3 * MIN, sites=["BK01"]))
    assert (a.ring, a.site, a.zone) == ("core", "BK01", "city")


# ------------------------------------------------------------------------- what is a crossing


def test_rings_are_counted_apart(net, rules):
    """Two city crossings and two core crossings are not four of one ring."""
    sights = crossings(0, MIN) + crossings(2 * MIN, 3 * MIN, sites=["BK01", "BK02"], first=2)
    assert run(net, rules, sights) == []


def test_passes_without_direction_or_off_the_rings_are_not_crossings(net, rules):
    sights = crossings(0, MIN, 2 * MIN) + [
        sighting("n", T0 + 3 * MIN, "CP07", CAR, None),
        sighting("b1", T0 + 4 * MIN, "BA07", CAR, "in"),
        sighting("b2", T0 + 5 * MIN, "BA07", CAR, "out")]
    assert run(net, rules, sights) == []


# ------------------------------------------------------------------------- window


def test_window_boundary(net, rules):
    """The crossings lie within 2 h: the 4th exactly 2 h after the 1st counts, 1 ms later
    does not."""
    [a] = run(net, rules, crossings(0, 40 * MIN, 80 * MIN, 2 * HOUR))
    assert a.evidence == ["x0", "x1", "x2", "x3"]
    assert run(net, rules, crossings(0, 40 * MIN, 80 * MIN, 2 * HOUR + 1)) == []


def test_window_slides(net, rules):
    """Crossings every 50 min: never four within 2 h... until they come closer."""
    assert run(net, rules, crossings(*(i * 50 * MIN for i in range(8)))) == []
    [a] = run(net, rules, crossings(0, 50 * MIN, 100 * MIN, 150 * MIN, 160 * MIN, 170 * MIN))
    assert a.evidence == ["x1", "x2", "x3", "x4"]       # at 160 min: 0 is out of its window
    assert a.ts == T0 + 160 * MIN                       # (and 170 min is in the cooldown)


def test_window_parameter(net):
    short = single_rule(RULE, window="30m")
    assert run(net, short, crossings(0, 10 * MIN, 20 * MIN, 30 * MIN + 1)) == []
    assert len(run(net, short, crossings(0, 10 * MIN, 20 * MIN, 30 * MIN))) == 1


# ------------------------------------------------------------------------- cooldown


def test_cooldown_boundary(net, rules):
    """Alert at the 4th crossing (30 min); then none for 2 h: a crossing at 30 min + 2 h
    - 1 ms does not alert, one exactly 2 h after does."""
    cd = 30 * MIN + 2 * HOUR
    offsets = [0, 10 * MIN, 20 * MIN, 30 * MIN, 40 * MIN, HOUR, 100 * MIN, cd - 1, cd]
    alerts = run(net, rules, crossings(*offsets))
    assert [(a.ts, a.evidence[-1], len(a.evidence)) for a in alerts] == [
        (T0 + 30 * MIN, "x3", 4),
        (T0 + cd, "x8", 6),         # 40 min .. cd: the crossings within 2 h of cd
    ]


def test_cooldown_is_per_ring(net, rules):
    city = crossings(0, MIN, 2 * MIN, 3 * MIN)
    core = crossings(4 * MIN, 5 * MIN, 6 * MIN, 7 * MIN, sites=["BK01"], first=4)
    alerts = run(net, rules, city + core)
    assert [(a.ring, a.evidence) for a in alerts] == [
        ("city", ["x0", "x1", "x2", "x3"]), ("core", ["x4", "x5", "x6", "x7"])]


def test_cooldown_parameter(net):
    none = single_rule(RULE, cooldown="0s")
    alerts = run(net, none, crossings(0, MIN, 2 * MIN, 3 * MIN, 4 * MIN))
    assert [len(a.evidence) for a in alerts] == [4, 5]
    short = single_rule(RULE, cooldown="10m")
    alerts = run(net, short, crossings(0, MIN, 2 * MIN, 3 * MIN, 12 * MIN, 13 * MIN))
    assert [a.evidence[-1] for a in alerts] == ["x3", "x5"]


# ------------------------------------------------------------------------- event time


def test_late_crossing_is_skipped(net, rules):
    d = Driver(net, rules)
    d.process(crossings(0, MIN, 10 * MIN), None, T0 + 8 * MIN)
    d.process(crossings(5 * MIN, first=3))                  # older than the watermark
    assert d.flush(T0 + HOUR) == []
    assert d.pipe.stats.late == 1


def test_duplicates_are_not_crossings(net, rules):
    s = crossings(0, MIN, 2 * MIN)
    assert run(net, rules, s + s) == []
