"""`permit-violation` (CONTRACTS.md §5): a vehicle on the `permit` list is sighted at a site
not on its route, or outside its permit's time window; high.

An arrival rule: judged when the sighting arrives, late or not. All stages (Pipeline), a rule
set of just this rule. The permit: route CP03 → BK02 → BV01, 06:00 to 18:00 (T0 is 08:00).
"""

from __future__ import annotations

import pytest

from rings.models import Subject
from rings.timefmt import parse_ts

from .support import HOUR, MIN, T0, Driver, entry, permit_entry, sighting, single_rule

RULE = "permit-violation"
TRUCK = Subject("vehicle", "蒙K88888")
ROUTE = ("CP03", "BK02", "BV01")
START = parse_ts("2026-11-29T06:00:00+08:00")[0]
END = parse_ts("2026-11-29T18:00:00+08:00")[0]
PERMIT = permit_entry(TRUCK, ROUTE, START, END)


@pytest.fixture(scope="module")
def rules():
    return single_rule(RULE)


def run(net, rules, sightings, *entries):
    return Driver(net, rules, *(entries or (PERMIT,))).run(sightings)


def at(sid, ts, site, direction="in", subject=TRUCK):
    return sighting(sid, ts, site, subject, direction)


# ------------------------------------------------------------------------- route


def test_on_route_in_the_window(net, rules):
    assert run(net, rules, [at("a", T0, "CP03"), at("b", T0 + 20 * MIN, "BK02"),
                            at("c", T0 + 30 * MIN, "BV01", "out")]) == []


def test_off_route(net, rules):
    [a] = run(net, rules, [at("a", T0, "CP03"), at("b", T0 + 20 * MIN, "CP05", "out")])
    assert (a.rule, a.severity, a.subject, a.related) == (RULE, "high", TRUCK, [])
    assert a.evidence == ["b"]
    assert (a.ts, a.tz) == (T0 + 20 * MIN, 480)
    assert (a.site, a.ring, a.zone, a.dir) == ("CP05", "city", "outside", "out")
    assert a.details == {"violation": "off-route", "route": list(ROUTE)}
    assert a.summary == "permitted vehicle 蒙K88888 seen at CP05, which is not on its route"


def test_every_off_route_sighting(net, rules):
    alerts = run(net, rules, [at("a", T0, "BA03"), at("b", T0 + MIN, "BK02", None),
                              at("c", T0 + 2 * MIN, "BV02")])
    assert [(a.evidence, a.zone) for a in alerts] == [(["a"], "outside"), (["c"], "civic")]


def test_off_route_and_outside_the_window_is_off_route(net, rules):
    [a] = run(net, rules, [at("a", END + HOUR, "CP05")])
    assert a.details["violation"] == "off-route"


# ------------------------------------------------------------------------- time window


@pytest.mark.parametrize("ts,fires", [
    (START - 1, True), (START, False), (END - 1, False), (END, True), (END + 5 * HOUR, True)])
def test_window_from_inclusive_until_exclusive(net, rules, ts, fires):
    alerts = run(net, rules, [at("a", ts, "BK02")])
    assert [a.details["violation"] for a in alerts] == (["outside-window"] if fires else [])
    if fires:
        assert alerts[0].summary == ("permitted vehicle 蒙K88888 seen at BK02 outside its "
                                     "permit's time window")
        assert alerts[0].ts == ts


def test_open_ended_window(net, rules):
    only_start = permit_entry(TRUCK, ROUTE, START, None)
    assert run(net, rules, [at("a", END + 30 * HOUR, "CP03")], only_start) == []
    assert len(run(net, rules, [at("a", START - 1, "CP03")], only_start)) == 1
    no_window = permit_entry(TRUCK, ROUTE)
    assert run(net, rules, [at("a", START - 30 * HOUR, "CP03")], no_window) == []
    assert len(run(net, rules, [at("a", T0, "CP04")], no_window)) == 1


# ------------------------------------------------------------------------- the entry


def test_entry_validity_from_inclusive_until_exclusive(net, rules):
    """Outside the entry's own validity (`from`/`until`) the vehicle has no permit at all,
    so nothing is a violation."""
    valid = permit_entry(TRUCK, ROUTE, START, END, valid_from=T0, valid_until=T0 + HOUR)
    fired = [a.evidence[0] for a in run(net, rules, [
        at("before", T0 - 1, "CP05"), at("from", T0, "CP05"), at("last", T0 + HOUR - 1, "CP05"),
        at("until", T0 + HOUR, "CP05")], valid)]
    assert fired == ["from", "last"]


def test_entry_severity_is_not_used(net, rules):
    low = permit_entry(TRUCK, ROUTE, START, END, severity="low")
    assert [a.severity for a in run(net, rules, [at("a", T0, "CP05")], low)] == ["high"]


def test_severity_override(net):
    med = single_rule(RULE, severity="medium")
    assert [a.severity for a in run(net, med, [at("a", T0, "CP05")])] == ["medium"]


def test_not_on_the_permit_list(net, rules):
    assert run(net, rules, [at("a", T0, "CP05")], entry(TRUCK, "wanted", "critical")) == []
    assert run(net, rules, [at("a", T0, "CP05")], permit_entry(Subject("vehicle", "x"),
                                                               ROUTE)) == []


def test_vehicles_only(net, rules):
    p = Subject("person", "p-1")
    assert run(net, rules, [at("a", T0, "CP05", subject=p)], permit_entry(p, ROUTE)) == []


# ------------------------------------------------------------------------- arrival


def test_judged_on_arrival(net, rules):
    d = Driver(net, rules, PERMIT)
    [a] = d.process([at("a", T0, "CP05")])          # no watermark at all
    assert a.evidence == ["a"]


def test_late_sighting_still_judged(net, rules):
    d = Driver(net, rules, PERMIT)
    d.process([at("a", T0 + 5 * HOUR, "CP03")], None, T0 + 5 * HOUR)
    [a] = d.process([at("late", T0, "CP05")])
    assert a.evidence == ["late"] and d.pipe.stats.late == 1


def test_duplicates_never_alert_twice(net, rules):
    d = Driver(net, rules, PERMIT)
    s = at("a", T0, "CP05")
    assert len(d.process([s, s])) == 1
    assert d.process([s], None, T0 + HOUR) == []
    assert d.process([s]) == []                     # late, and still a duplicate
