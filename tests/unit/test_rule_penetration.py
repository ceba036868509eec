"""`penetration` (CONTRACTS.md §5): a watchlisted subject crossing rings inward, each into a
child ring of the ring it last entered, at least [2] times within [60 min]; critical when it
reaches a zone with no child rings, else high; one alert per chain.

Sample net: city ⊃ core ⊃ civic, and seven banner rings (leaves) under city. Every test runs
all stages (Pipeline) with a rule set of just this rule, and moves event time on far enough
for the ordered rule to have judged.
"""

from __future__ import annotations

import pytest

from rings.models import Subject
from rings.net import load_net_text

from .support import (HOUR, MIN, SEC, T0, Driver, entry, sighting, single_rule)

RULE = "penetration"
CAR = Subject("vehicle", "蒙K3X521")
PERSON = Subject("person", "p-9f2c41")


@pytest.fixture(scope="module")
def rules():
    return single_rule(RULE)


def run(net, rules, sightings, *entries):
    if not entries:
        entries = (entry(CAR, "wanted", "critical"),)
    return Driver(net, rules, *entries).run(sightings)


def passes(*steps, subject=CAR, t0=T0):
    """Sightings from (offset ms, site, dir) steps, ids p0, p1, ..."""
    return [sighting(f"p{i}", t0 + dt, site, subject, d) for i, (dt, site, d) in enumerate(steps)]


# ------------------------------------------------------------------------- positive


def test_city_then_core_is_high(net, rules):
    [a] = run(net, rules, passes((0, "CP01", "in"), (10 * MIN, "BK01", "in")))
    assert (a.rule, a.severity, a.subject, a.related) == (RULE, "high", CAR, [])
    assert a.evidence == ["p0", "p1"]
    assert (a.ts, a.tz) == (T0 + 10 * MIN, 480)
    assert (a.site, a.ring, a.zone, a.dir) == ("BK01", "core", "core", "in")
    assert a.details == {"chain": ["city", "core"], "depth": 2, "innermost": False,
                         "list": "wanted", "listed_severity": "critical"}
    assert "wanted vehicle 蒙K3X521 crossed 2 rings inward in 10 min (city → core)" in a.summary


def test_into_a_leaf_is_critical(net, rules):
    """A banner ring has no children: the first chain that reaches it is critical."""
    [a] = run(net, rules, passes((0, "CP02", "in"), (25 * MIN, "DL01", "in")))
    assert (a.severity, a.evidence, a.site, a.ring, a.zone) == (
        "critical", ["p0", "p1"], "DL01", "banner-dalad", "banner-dalad")
    assert a.details["innermost"] is True and a.details["depth"] == 2


def test_high_then_critical_escalates_once(net, rules):
    """city → core (high), → civic (critical): two alerts for the chain, and then no more,
    whatever else it does."""
    alerts = run(net, rules, passes((0, "CP01", "in"), (5 * MIN, "BK01", "in"),
                                    (9 * MIN, "BV01", "in"), (12 * MIN, "BV02", "in"),
                                    (14 * MIN, "BV03", None)))
    assert [(a.severity, a.evidence, a.site) for a in alerts] == [
        ("high", ["p0", "p1"], "BK01"),
        ("critical", ["p0", "p1", "p2"], "BV01"),
    ]
    assert alerts[1].details["chain"] == ["city", "core", "civic"]
    assert alerts[1].details["depth"] == 3


DEEP_NET = """
net: deep
rings:
  - {id: r1}
  - {id: r2, parent: r1}
  - {id: r3, parent: r2}
  - {id: r4, parent: r3}
sites:
  - {id: S1, type: checkpoint, ring: r1, lat: 40.0, lon: 110.0}
  - {id: S2, type: bayonet, ring: r2, lat: 40.01, lon: 110.0}
  - {id: S3, type: bayonet, ring: r3, lat: 40.02, lon: 110.0}
  - {id: S4, type: bayonet, ring: r4, lat: 40.03, lon: 110.0}
"""


def test_one_high_per_chain_on_a_deeper_net():
    """Four nested rings: r1 → r2 (high), → r3 (still high: no second alert), → r4 (leaf:
    critical)."""
    net = load_net_text(DEEP_NET)
    rules = single_rule(RULE)
    alerts = run(net, rules, passes((0, "S1", "in"), (MIN, "S2", "in"), (2 * MIN, "S3", "in"),
                                    (3 * MIN, "S4", "in")))
    assert [(a.severity, a.evidence) for a in alerts] == [
        ("high", ["p0", "p1"]), ("critical", ["p0", "p1", "p2", "p3"])]


def test_a_watchlisted_person_too(net, rules):
    """Any subject type, not only vehicles; severity is the rule's, not the entry's."""
    [a] = run(net, rules, passes((0, "CP03", "in"), (MIN, "JG01", "in"), subject=PERSON),
              entry(PERSON, "fugitive", "low"))
    assert (a.subject, a.severity, a.details["list"]) == (PERSON, "critical", "fugitive")


def test_min_crossings_parameter(net):
    three = single_rule(RULE, min_crossings=3)
    assert run(net, three, passes((0, "CP01", "in"), (MIN, "BK01", "in"))) == []
    [a] = run(net, three, passes((0, "CP01", "in"), (MIN, "BK01", "in"),
                                 (2 * MIN, "BV04", "in")))
    assert (a.severity, a.evidence) == ("critical", ["p0", "p1", "p2"])


def test_severity_override(net):
    low = single_rule(RULE, severity="low")
    alerts = run(net, low, passes((0, "CP01", "in"), (MIN, "BK01", "in"), (2 * MIN, "BV01", "in")))
    assert [a.severity for a in alerts] == ["low", "low"]


# ------------------------------------------------------------------------- negative


def test_not_watchlisted_nothing(net, rules):
    chain = passes((0, "CP01", "in"), (MIN, "BK01", "in"), (2 * MIN, "BV01", "in"))
    assert run(net, rules, chain, entry(Subject("vehicle", "someone else"))) == []


def test_permit_list_or_inactive_entry_nothing(net, rules):
    chain = passes((0, "CP01", "in"), (MIN, "BK01", "in"))
    assert run(net, rules, chain, entry(CAR, "permit", "high")) == []
    assert run(net, rules, chain, entry(CAR, end=T0 + MIN)) == []         # until: exclusive
    [a] = run(net, rules, chain, entry(CAR, start=T0 + MIN))               # from: inclusive
    assert a.severity == "high"


def test_a_single_crossing_nothing(net, rules):
    assert run(net, rules, passes((0, "BK01", "in"))) == []


def test_outward_crossing_breaks_the_chain(net, rules):
    assert run(net, rules, passes((0, "CP01", "in"), (MIN, "BC01", "out"),
                                  (2 * MIN, "BK01", "in"))) == []
    # ...and a new chain starts from the next inward crossing (and may alert again).
    alerts = run(net, rules, passes((0, "CP01", "in"), (MIN, "BK02", "in"),
                                    (2 * MIN, "BK02", "out"), (3 * MIN, "BK03", "in"),
                                    (4 * MIN, "BV01", "in")))
    assert [(a.severity, a.evidence) for a in alerts] == [("high", ["p0", "p1"]),
                                                          ("critical", ["p3", "p4"])]
    alerts = run(net, rules, passes((0, "CP01", "in"), (MIN, "BC01", "out"),
                                    (2 * MIN, "BK03", "in"), (3 * MIN, "BV01", "in")))
    assert [(a.severity, a.evidence) for a in alerts] == [("critical", ["p2", "p3"])]


def test_non_child_crossing_restarts_the_chain(net, rules):
    """A crossing into a ring that is not a child of the last one starts a new chain from
    it: city, city again, core is a chain of the second city crossing and core."""
    [a] = run(net, rules, passes((0, "CP01", "in"), (MIN, "CP02", "in"), (2 * MIN, "BK01", "in")))
    assert (a.severity, a.evidence) == ("high", ["p1", "p2"])
    # core → a banner ring (a child of city, not of core): new chain, nothing yet...
    alerts = run(net, rules, passes((0, "CP01", "in"), (MIN, "BK01", "in"),
                                    (2 * MIN, "DL01", "in")))
    assert [(a.severity, a.evidence) for a in alerts] == [("high", ["p0", "p1"])]


def test_a_restarted_chain_alerts_again(net, rules):
    alerts = run(net, rules, passes((0, "CP01", "in"), (MIN, "BK01", "in"),
                                    (2 * MIN, "BC01", "in"), (3 * MIN, "BK02", "in")))
    assert [(a.severity, a.evidence) for a in alerts] == [("high", ["p0", "p1"]),
                                                          ("high", ["p2", "p3"])]


def test_passes_that_are_not_crossings_are_ignored(net, rules):
    """No direction, or an approach bayonet off the rings: neither extends nor breaks."""
    [a] = run(net, rules, passes((0, "CP01", "in"), (MIN, "BK05", None), (2 * MIN, "BA03", "in"),
                                 (3 * MIN, "BA03", "out"), (4 * MIN, "BK01", "in")))
    assert a.evidence == ["p0", "p4"]


# ------------------------------------------------------------------------- window


def test_window_boundary(net, rules):
    """The chain's crossings lie within 60 min: exactly 60 min is in, 1 ms more is not."""
    [a] = run(net, rules, passes((0, "CP01", "in"), (HOUR, "BK01", "in")))
    assert (a.ts, a.evidence) == (T0 + HOUR, ["p0", "p1"])
    assert run(net, rules, passes((0, "CP01", "in"), (HOUR + 1, "BK01", "in"))) == []


def test_window_drops_the_oldest_crossing(net, rules):
    """city at 0, core at 50 min (high), civic at 70 min: city is out of the window, but
    core → civic is still a chain of 2, reaching a leaf: critical."""
    alerts = run(net, rules, passes((0, "CP01", "in"), (50 * MIN, "BK01", "in"),
                                    (70 * MIN, "BV01", "in")))
    assert [(a.severity, a.evidence) for a in alerts] == [("high", ["p0", "p1"]),
                                                          ("critical", ["p1", "p2"])]


def test_window_parameter(net):
    ten = single_rule(RULE, window="10m")
    assert run(net, ten, passes((0, "CP01", "in"), (10 * MIN + 1, "BK01", "in"))) == []
    assert len(run(net, ten, passes((0, "CP01", "in"), (10 * MIN, "BK01", "in")))) == 1


# ------------------------------------------------------------------------- event time


def test_judged_once_the_watermark_passes(net, rules):
    """Ordered: nothing on arrival; the alert comes when the watermark passes the completing
    crossing's second."""
    d = Driver(net, rules, entry(CAR))
    ts = T0 + 10 * MIN + 250
    assert d.process(passes((0, "CP01", "in"), (10 * MIN + 250, "BK01", "in")), None, ts) == []
    assert d.flush(ts + 749) == []           # the watermark is in the same second
    [a] = d.flush(ts + 750)                  # the next whole second: judged
    assert a.ts == ts


def test_out_of_order_within_lateness_same_alerts(net, rules):
    chain = passes((0, "CP01", "in"), (30 * SEC, "BK01", "in"), (60 * SEC, "BV01", "in"))
    """The civic crossing arrives first, then city and core (all within the lateness)."""
    d = Driver(net, rules, entry(CAR))
    wm = chain[2].ts - rules.lateness_ms
    d.process([chain[2]], None, wm)
    d.process([chain[1], chain[0]], wm, wm)
    d.flush(T0 + HOUR)
    expected = [(a.severity, a.evidence) for a in run(net, rules, chain)]
    assert expected == [("high", ["p0", "p1"]), ("critical", ["p0", "p1", "p2"])]
    assert [(a.severity, a.evidence) for a in d.alerts] == expected


def test_late_crossing_is_skipped(net, rules):
    """A crossing older than the watermark on arrival is not judged by the ordered rule."""
    d = Driver(net, rules, entry(CAR))
    d.process(passes((0, "CP01", "in")), None, T0)
    d.process([sighting("other", T0 + 30 * MIN, "CP05", Subject("vehicle", "X"), "in")],
              T0, T0 + 30 * MIN - rules.lateness_ms)
    d.process([sighting("late", T0 + 10 * MIN, "BK01", CAR, "in")])     # 18 min late
    d.flush(T0 + 2 * HOUR)
    assert d.alerts == []
    assert d.pipe.stats.late == 1
