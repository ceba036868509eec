"""`cloned-plate` (CONTRACTS.md §5): two sightings of the same vehicle, consecutive in event
time, at sites at least [5 km] apart (great-circle) imply a speed above [250 km/h]; high.

The boundaries are checked on a small net on the equator whose sites E0 and E5 are exactly
5.0 km apart in the engine's own great-circle arithmetic (and E4 one float step less), so
that 5 km in 72 s is exactly 250 km/h. The rest uses the sample net. All stages (Pipeline),
a rule set of just this rule.
"""

from __future__ import annotations

import pytest

from rings.geo import haversine_km
from rings.models import Subject
from rings.net import load_net_text

from .support import HOUR, MIN, SEC, T0, Driver, entry, sighting, single_rule

RULE = "cloned-plate"
CAR = Subject("vehicle", "蒙K3X521")

LAT_5KM = 0.0449660181862269            # haversine(0, 110; LAT_5KM, 110) == 5.0 exactly
LAT_UNDER = 0.04496601818622689         # one float step less: 4.999999999999999 km
EQUATOR_NET = f"""
net: equator
rings:
  - {{id: town}}
sites:
  - {{id: E0, type: checkpoint, ring: town, lat: 0.0, lon: 110.0}}
  - {{id: E5, type: checkpoint, ring: town, lat: {LAT_5KM!r}, lon: 110.0}}
  - {{id: E4, type: bayonet, ring: town, lat: {LAT_UNDER!r}, lon: 110.0}}
"""


@pytest.fixture(scope="module")
def rules():
    return single_rule(RULE)


@pytest.fixture(scope="module")
def equator():
    net = load_net_text(EQUATOR_NET)
    assert net.distance_km("E0", "E5") == 5.0
    assert net.distance_km("E0", "E4") < 5.0
    assert 5.0 / (72_000 / 3_600_000) == 250.0
    return net


def run(net, rules, sightings, *entries):
    return Driver(net, rules, *entries).run(sightings)


def passes(*steps, subject=CAR):
    return [sighting(f"p{i}", T0 + dt, site, subject, d) for i, (dt, site, d) in enumerate(steps)]


# ------------------------------------------------------------------------- positive


def test_too_fast_between_far_sites(net, rules):
    km = net.distance_km("CP01", "CP05")
    assert 229 < km < 230
    [a] = run(net, rules, passes((0, "CP01", "in"), (30 * MIN, "CP05", "out")))
    assert (a.rule, a.severity, a.subject, a.related) == (RULE, "high", CAR, [])
    assert a.evidence == ["p0", "p1"]
    assert (a.ts, a.tz) == (T0 + 30 * MIN, 480)
    assert (a.site, a.ring, a.zone, a.dir) == ("CP05", "city", "outside", "out")
    assert a.details == {"from_site": "CP01", "km": round(km, 1), "kmh": round(km * 2)}
    assert a.summary == ("vehicle 蒙K3X521 seen at CP01 and at CP05, 229 km apart, 30.0 min "
                         "apart (459 km/h): a cloned plate?")


def test_watchlist_plays_no_part(net, rules):
    steps = ((0, "CP01", "in"), (30 * MIN, "CP05", "out"))
    assert [a.severity for a in run(net, rules, passes(*steps), entry(CAR, severity="low"))] \
        == ["high"]


def test_at_the_same_time(net, rules):
    [a] = run(net, rules, passes((0, "CP01", "in"), (0, "CP05", None)))
    assert a.details["kmh"] is None and "at the same time" in a.summary
    assert (a.zone, a.dir) == (None, None)


def test_every_consecutive_pair_is_judged(net, rules):
    alerts = run(net, rules, passes((0, "CP01", "in"), (10 * MIN, "CP05", "in"),
                                    (20 * MIN, "CP01", "out")))
    assert [a.evidence for a in alerts] == [["p0", "p1"], ["p1", "p2"]]


def test_only_consecutive_sightings_are_compared(net, rules):
    """CP01 at 0 and 50 min, CP05 at 60 min: CP01(50) → CP05(60) is impossible; CP01(0) →
    CP05(60) alone would not be."""
    [a] = run(net, rules, passes((0, "CP01", "in"), (50 * MIN, "CP01", "out"),
                                 (60 * MIN, "CP05", "in")))
    assert a.evidence == ["p1", "p2"]
    # A far sighting in between breaks an impossible pair into two possible ones.
    assert net.distance_km("CP01", "CP03") + net.distance_km("CP03", "CP05") > 229
    assert run(net, rules, passes((0, "CP01", "in"), (40 * MIN, "CP03", "in"),
                                  (HOUR + 20 * MIN, "CP05", "in"))) == []


def test_consecutive_in_event_time_not_arrival(net, rules):
    """Arriving in the order CP05, CP01 (within the lateness) they are still judged in event
    time: CP01 then CP05."""
    d = Driver(net, rules)
    far = sighting("far", T0 + MIN, "CP05", CAR, "in")
    near = sighting("near", T0, "CP01", CAR, "in")
    d.process([far], None, far.ts - 2 * MIN)
    d.process([near], far.ts - 2 * MIN, far.ts - 2 * MIN)
    [a] = d.flush(T0 + HOUR)
    assert (a.evidence, a.site, a.details["from_site"]) == (["near", "far"], "CP05", "CP01")


def test_ties_in_event_time_go_by_sighting_id(net, rules):
    a_, b_ = (sighting("b", T0, "CP05", CAR, "in"), sighting("a", T0, "CP01", CAR, "in"))
    [a] = run(net, rules, [a_, b_])
    assert a.evidence == ["a", "b"]


# ------------------------------------------------------------------------- boundaries


def test_exactly_5_km_at_exactly_250_kmh_is_possible(equator, rules):
    assert run(equator, rules, passes((0, "E0", "in"), (72 * SEC, "E5", "in"))) == []


def test_exactly_5_km_just_above_250_kmh(equator, rules):
    [a] = run(equator, rules, passes((0, "E0", "in"), (72 * SEC - 1, "E5", "in")))
    assert a.details == {"from_site": "E0", "km": 5.0, "kmh": 250}
    assert (a.ts, a.evidence) == (T0 + 72 * SEC - 1, ["p0", "p1"])


def test_exactly_5_km_is_far_enough(equator, rules):
    [a] = run(equator, rules, passes((0, "E0", "in"), (0, "E5", "in")))
    assert a.details["km"] == 5.0 and a.details["kmh"] is None


def test_just_under_5_km_is_never_too_far(equator, rules):
    assert haversine_km(0.0, 110.0, LAT_UNDER, 110.0) < 5.0
    assert run(equator, rules, passes((0, "E0", "in"), (0, "E4", "in"))) == []


def test_sample_net_sites_under_5_km_apart(net, rules):
    assert net.distance_km("CP01", "BA01") < 5
    assert run(net, rules, passes((0, "BA01", "in"), (0, "CP01", "in"))) == []


def test_parameters(equator, net):
    assert run(equator, single_rule(RULE, min_km=5.000001),
               passes((0, "E0", "in"), (0, "E5", "in"))) == []
    assert len(run(equator, single_rule(RULE, min_km=4.9),
                   passes((0, "E0", "in"), (0, "E4", "in")))) == 1
    steps = passes((0, "CP01", "in"), (30 * MIN, "CP05", "out"))          # ~459 km/h
    assert run(net, single_rule(RULE, max_kmh=460), steps) == []
    assert len(run(net, single_rule(RULE, max_kmh=458), steps)) == 1


# ------------------------------------------------------------------------- negative


def test_same_site(net, rules):
    assert run(net, rules, passes((0, "CP01", "in"), (0, "CP01", "out"))) == []


def test_possible_speed(net, rules):
    assert run(net, rules, passes((0, "CP01", "in"), (HOUR, "CP05", "out"))) == []


def test_vehicles_only(net, rules):
    p = Subject("person", "p-1")
    assert run(net, rules, passes((0, "CP01", "in"), (MIN, "CP05", "in"), subject=p)) == []


def test_two_vehicles(net, rules):
    assert run(net, rules, [sighting("a", T0, "CP01", CAR, "in"),
                            sighting("b", T0, "CP05", Subject("vehicle", "other"), "in")]) == []


def test_late_sighting_is_skipped(net, rules):
    d = Driver(net, rules)
    d.process([sighting("a", T0 + 10 * MIN, "CP01", CAR, "in")], None, T0 + 8 * MIN)
    d.process([sighting("b", T0 + 5 * MIN, "CP05", CAR, "in")])     # 3 min late
    assert d.flush(T0 + HOUR) == [] and d.pipe.stats.late == 1
