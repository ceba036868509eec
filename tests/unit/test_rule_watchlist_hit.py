"""`watchlist-hit` (CONTRACTS.md §5) through all stages (Pipeline): the touch-ring alarm on
arrival, late or not, once per sighting and listed subject. The engine-level details (who is
hit, validity, severity, where, alert ids) are in test_watchlist_hit.py.
"""

from __future__ import annotations

import pytest

from rings.models import Subject

from .support import HOUR, MIN, T0, Driver, by_rule, entry, sighting, single_rule

RULE = "watchlist-hit"
CAR = Subject("vehicle", "蒙K3X521")
P = Subject("person", "p-9f2c41")
Q = Subject("person", "p-000002")


@pytest.fixture(scope="module")
def one():
    return single_rule(RULE)


def test_on_arrival_before_any_watermark(net, one):
    d = Driver(net, one, entry(CAR, "wanted", "critical", reason="armed robbery suspect"))
    [a] = d.process([sighting("s1", T0 + 250, "CP01", CAR, "in")])
    assert (a.rule, a.severity, a.subject, a.related, a.evidence) == (
        RULE, "critical", CAR, [], ["s1"])
    assert (a.ts, a.tz, a.site, a.ring, a.zone, a.dir) == (T0 + 250, 480, "CP01", "city",
                                                           "city", "in")
    assert d.watermark < T0                      # nothing waited for event time
    assert d.flush(T0 + HOUR) == []


def test_listed_companion(net, one):
    d = Driver(net, one, entry(P, "fugitive", "high"))
    [a] = d.run([sighting("s1", T0, "BV03", CAR, "out", with_=(Q, P))])
    assert (a.subject, a.related, a.severity) == (P, [CAR, Q], "high")
    assert (a.site, a.ring, a.zone, a.dir) == ("BV03", "civic", "core", "out")


@pytest.mark.parametrize("start,end,fires", [
    (T0, None, True), (T0 + 1, None, False), (None, T0 + 1, True), (None, T0, False)])
def test_validity_boundaries(net, one, start, end, fires):
    alerts = Driver(net, one, entry(CAR, start=start, end=end)).run(
        [sighting("s1", T0, "CP01", CAR)])
    assert len(alerts) == (1 if fires else 0)


def test_a_late_sighting_still_alerts(net, one):
    d = Driver(net, one, entry(CAR))
    d.process([sighting("now", T0 + 5 * HOUR, "CP02", Subject("vehicle", "x"))], None,
              T0 + 5 * HOUR)
    [a] = d.process([sighting("late", T0, "CP01", CAR)])
    assert (a.evidence, a.ts) == (["late"], T0)
    assert d.pipe.stats.late == 1


def test_duplicates_never_alert_twice(net, one):
    d = Driver(net, one, entry(CAR), entry(P))
    s = sighting("s1", T0, "CP01", CAR, with_=(P,))
    assert len(d.process([s, s], None, T0)) == 2             # the car and the person
    assert d.process([s], T0, T0 + 30 * MIN) == []           # after the watermark moved
    assert d.process([s]) == []                              # late, and still a duplicate
    assert d.pipe.stats.duplicates == 3


def test_with_the_shipped_rules_one_pass_is_one_hit(net, rules):
    """Every shipped rule runs, and a listed car's single pass is just the touch-ring alarm,
    also once event time has moved on."""
    d = Driver(net, rules, entry(CAR))
    alerts = d.run([sighting("s1", T0, "BK01", CAR, "in")])
    assert [(a.rule, a.evidence) for a in alerts] == [(RULE, ["s1"])]
    assert by_rule(alerts, RULE)[0].rules_version == rules.version
