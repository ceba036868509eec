"""`linked-hit` (CONTRACTS.md §5): a watchlisted person was seen in the `with` of a vehicle's
sighting (the link); for [12 h] after, every later sighting of that vehicle alerts, with the
person's severity and the person in `related`.

An arrival rule, but stateful: a sighting older than the watermark on arrival is skipped
(as a link and as a later sighting); within the lateness, a link that arrives after later
sightings of its vehicle still alerts for them. All stages (Pipeline), a rule set of just
this rule.
"""

from __future__ import annotations

import orjson
import pytest

from rings.engine import Engine
from rings.models import Subject
from rings.state import MemoryKV
from rings.watchlist import Watchlist

from .support import HOUR, MIN, SEC, T0, Driver, entry, sighting, single_rule

RULE = "linked-hit"
CAR = Subject("vehicle", "蒙K3X521")
P = Subject("person", "p-9f2c41")
Q = Subject("person", "p-000002")
WINDOW = 12 * HOUR
FUGITIVE = entry(P, "fugitive", "high", reason="escaped")
DAYS = 3 * 24 * HOUR


@pytest.fixture(scope="module")
def rules():
    return single_rule(RULE)


def run(net, rules, sightings, *entries):
    return Driver(net, rules, *(entries or (FUGITIVE,))).run(sightings)


def link(sid="link", ts=T0, site="CP01", with_=(P,), subject=CAR):
    return sighting(sid, ts, site, subject, "in", with_=with_)


def seen(sid, ts, site="BK01", direction="in", subject=CAR):
    return sighting(sid, ts, site, subject, direction)


# ------------------------------------------------------------------------- positive


def test_a_later_sighting_alerts(net, rules):
    [a] = run(net, rules, [link(), seen("later", T0 + HOUR, "BV02", "out")])
    assert (a.rule, a.severity, a.subject, a.related) == (RULE, "high", CAR, [P])
    assert a.evidence == ["link", "later"]
    assert (a.ts, a.tz) == (T0 + HOUR, 480)
    assert (a.site, a.ring, a.zone, a.dir) == ("BV02", "civic", "core", "out")
    assert a.details == {"linked_by": "link", "listed_severity": "high"}
    assert a.summary == ("vehicle 蒙K3X521, which carried fugitive person p-9f2c41, seen at "
                         "BV02")


def test_every_later_sighting_alerts(net, rules):
    alerts = run(net, rules, [link(), seen("a", T0 + MIN), seen("b", T0 + HOUR, "CP05"),
                              seen("c", T0 + 5 * HOUR, "BA01", None)])
    assert [a.evidence for a in alerts] == [["link", "a"], ["link", "b"], ["link", "c"]]
    assert (alerts[2].ring, alerts[2].zone) == (None, None)


@pytest.mark.parametrize("severity", ["low", "medium", "high", "critical"])
def test_severity_of_the_person(net, rules, severity):
    [a] = run(net, rules, [link(), seen("a", T0 + MIN)], entry(P, "wanted", severity))
    assert a.severity == severity


def test_severity_override(net):
    low = single_rule(RULE, severity="low")
    assert [a.severity for a in run(net, low, [link(), seen("a", T0 + MIN)])] == ["low"]


def test_each_link_alerts(net, rules):
    """Two persons of interest in one sighting are two links; a second sighting with the
    person is a second link. Each alert is one (link, later sighting) pair."""
    alerts = run(net, rules, [link(with_=(P, Q)), seen("a", T0 + MIN)], FUGITIVE,
                 entry(Q, "wanted", "critical"))
    assert sorted((a.related[0].id, a.severity) for a in alerts) == [
        (Q.id, "critical"), (P.id, "high")]
    alerts = run(net, rules, [link("l1"), link("l2", T0 + MIN), seen("a", T0 + 2 * MIN)])
    assert sorted(a.evidence for a in alerts) == [["l1", "a"], ["l1", "l2"], ["l2", "a"]]


# ------------------------------------------------------------------------- window


def test_window_boundary(net, rules):
    """For 12 h after the link: a sighting exactly 12 h later alerts, 1 ms more does not."""
    alerts = run(net, rules, [link(), seen("at", T0 + WINDOW), seen("past", T0 + WINDOW + 1)])
    assert [a.evidence for a in alerts] == [["link", "at"]]


def test_window_parameter(net):
    short = single_rule(RULE, window="30m")
    alerts = run(net, short, [link(), seen("at", T0 + 30 * MIN), seen("past", T0 + 30 * MIN + 1)])
    assert [a.evidence for a in alerts] == [["link", "at"]]


def test_the_link_outlives_the_rest_of_the_subject_state(net, rules):
    """Event time moves on hours past the dedupe window; the link is still remembered."""
    d = Driver(net, rules, FUGITIVE)
    d.process([link()], None, T0)
    d.flush(T0 + 11 * HOUR)
    [a] = d.process([seen("later", T0 + 11 * HOUR + 30 * MIN)], T0 + 11 * HOUR,
                    T0 + 11 * HOUR + 28 * MIN)
    assert a.evidence == ["link", "later"]
    d.flush(T0 + 3 * WINDOW)
    assert d.process([seen("much-later", T0 + 3 * WINDOW + MIN)], None, T0 + 3 * WINDOW) == []


# ------------------------------------------------------------------------- negative


def test_the_link_itself_and_earlier_sightings_do_not_alert(net, rules):
    assert run(net, rules, [seen("before", T0 - MIN), link()]) == []


def test_same_time_as_the_link_is_not_later(net, rules):
    assert run(net, rules, [link(), seen("tie", T0)]) == []
    assert run(net, rules, [seen("tie", T0), link()]) == []


def test_person_not_watchlisted_or_not_active(net, rules):
    assert run(net, rules, [link(), seen("a", T0 + MIN)], entry(Q)) == []
    assert run(net, rules, [link(), seen("a", T0 + MIN)], entry(P, end=T0)) == []
    assert run(net, rules, [link(), seen("a", T0 + MIN)], entry(P, "permit", "high")) == []
    # Active at the link is what counts, not at the later sighting.
    [a] = run(net, rules, [link(), seen("a", T0 + 2 * HOUR)], entry(P, end=T0 + HOUR))
    assert a.evidence == ["link", "a"]


def test_only_persons_link_and_only_vehicles_alert(net, rules):
    item = Subject("item", "crate-1")
    assert run(net, rules, [link(with_=(item,)), seen("a", T0 + MIN)], entry(item)) == []
    other = Subject("vehicle", "蒙A00001")
    assert run(net, rules, [link(with_=(other,)), seen("a", T0 + MIN)], entry(other)) == []
    walker = Subject("person", "p-walker")
    assert run(net, rules, [link(subject=walker), seen("a", T0 + MIN, subject=walker)]) == []


def test_other_vehicles_do_not_alert(net, rules):
    assert run(net, rules, [link(), seen("a", T0 + MIN, subject=Subject("vehicle", "x"))]) == []


# ------------------------------------------------------------------------- event time


def test_link_arriving_after_later_sightings_within_lateness(net, rules):
    """The later sightings arrive first (within the lateness): the link still alerts for
    each of them, with their own times."""
    d = Driver(net, rules, FUGITIVE)
    later = [seen("a", T0 + 30 * SEC), seen("b", T0 + 90 * SEC, "CP02")]
    wm = T0 + 90 * SEC - rules.lateness_ms
    assert d.process(later, None, wm) == []
    alerts = d.process([link()], wm, wm)
    assert sorted((a.evidence[1], a.ts, a.site) for a in alerts) == [
        ("a", T0 + 30 * SEC, "BK01"), ("b", T0 + 90 * SEC, "CP02")]
    assert all(a.evidence[0] == "link" for a in alerts)
    assert d.flush(T0 + DAYS) == []


def test_a_late_link_is_ignored(net, rules):
    """A link older than the watermark on arrival is skipped, and later sightings do not
    alert for it."""
    d = Driver(net, rules, FUGITIVE)
    d.process([seen("x", T0 + 10 * MIN)], None, T0 + 8 * MIN)
    assert d.process([link()]) == []                # 8 min older than the watermark
    assert d.process([seen("a", T0 + 20 * MIN)], T0 + 8 * MIN, T0 + 18 * MIN) == []
    assert d.pipe.stats.late == 1


def test_a_late_sighting_after_a_link_is_skipped(net, rules):
    d = Driver(net, rules, FUGITIVE)
    d.process([link()], None, T0)
    d.process([seen("x", T0 + HOUR)], T0, T0 + HOUR - 2 * MIN)
    assert [a.evidence for a in d.alerts] == [["link", "x"]]
    assert d.process([seen("late", T0 + 30 * MIN)]) == []      # older than the watermark


def test_duplicates_never_alert_twice(net, rules):
    d = Driver(net, rules, FUGITIVE)
    d.process([link(), link()], None, T0)
    [a] = d.process([seen("a", T0 + MIN), seen("a", T0 + MIN)], T0, T0)
    assert a.evidence == ["link", "a"]
    assert d.process([link(), seen("a", T0 + MIN)]) == []


def test_a_vehicle_keeps_no_history_of_its_own(net, rules):
    """The subject's queue serves a late link (above); the rule keeps only links, and no
    state at all without one. A state written before (a history `h` beside the queue) loses
    its history at the next sighting."""
    store = MemoryKV()
    eng = Engine(net, rules, Watchlist([FUGITIVE]), store)
    eng.process([seen("a", T0)], None, T0 - MIN)
    state = orjson.loads(store.data[f"s:{CAR.key}"])
    assert "r" not in state and [r[1] for r in state["q"]] == ["a"]
    state["r"] = {RULE: {"h": [[T0, "a", 480, "BK01", "in"]]}}
    store.data[f"s:{CAR.key}"] = orjson.dumps(state)
    eng = Engine(net, rules, Watchlist([FUGITIVE]), store)
    eng.process([seen("b", T0 + SEC)], None, T0 - MIN)
    assert orjson.loads(store.data[f"s:{CAR.key}"])["r"].get(RULE, {}) == {}


def test_rules_that_need_company_do_nothing_alone(net):
    """The engine skips an arrival rule marked `needs_company` for a sighting without `with`
    while the rule keeps nothing for its subject. That is only right if the rule, called,
    would keep nothing and alert nothing, whatever the subject's queue holds."""
    from rings.detectors import REGISTRY
    from rings.detectors.base import Context

    marked = [cls for cls in REGISTRY.values() if cls.needs_company]
    assert [cls.kind for cls in marked] == [RULE]
    for cls in marked:
        [d] = single_rule(cls.kind).detectors
        d.setup(net)
        ctx = Context(net, Watchlist([FUGITIVE, entry(CAR, "stolen", "high")]))
        ctx.queue = [[T0 + i * MIN, f"q{i}", "BK01", "in", 480] for i in range(3)]
        for s in (seen("a", T0 - MIN), seen("b", T0 + HOUR, "CP01"),
                  link(with_=())):
            state: dict = {}
            assert d.on_arrival(s, ctx, state, T0 - 2 * MIN) == []
            assert state == {}
        # ...and with company it does act (the skip must not cover that).
        state = {}
        assert d.on_arrival(link(ts=T0 - MIN), ctx, state, T0 - 2 * MIN)
        assert state
