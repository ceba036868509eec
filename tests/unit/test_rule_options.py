"""Options every rule takes: `exceptions` (subjects and sites the rule ignores) and `tags`
(carried on its alerts); `enabled` and `severity` are in test_plans.py and the rule tests.

An excepted alert is dropped where alerts are finalised (the subject stage, the pair stage),
so replay and the worker drop the same ones; the other rules are not affected. Each case
runs on both kinds of store: objects (replay) and JSON bytes (the worker's).
"""

from __future__ import annotations

import pytest

from rings.models import Subject
from rings.pipeline import Pipeline
from rings.ruleset import build_rules
from rings.state import MemoryKV, ObjectKV
from rings.yamlsrc import load_yaml_text

from .support import MIN, SEC, T0, Driver, by_rule, entry, rule_set, sighting

CAR = Subject("vehicle", "蒙K3X521")
EXEMPT = Subject("vehicle", "蒙K00001")         # an unmarked police car, say
PERSON = Subject("person", "p-9f2c41")
CITY = ["CP01", "CP02", "BC01", "CP03", "BC02", "CP04", "CP05", "CP06"]


def run(net, rules, sightings, *entries, store=ObjectKV):
    d = Driver(net, rules, *entries)
    d.pipe = Pipeline(net, rules, d.watchlist, store)
    return d.run(sightings), d.pipe


def both_stores(net, rules, sightings, *entries):
    """The alerts (checked against the alert schema), the same from both stores."""
    (a, pa), (b, pb) = (run(net, rules, sightings, *entries, store=s)
                        for s in (ObjectKV, MemoryKV))
    assert [x.to_json("") for x in a] == [x.to_json("") for x in b]
    return a, pa


# ------------------------------------------------------------------------- exceptions


def test_an_excepted_subject_gives_no_alert_for_that_rule_only(net):
    rules = rule_set({"id": "watchlist-hit", "exceptions": {"subjects": [EXEMPT.key]}},
                     {"id": "all-hits", "kind": "watchlist-hit"})
    sights = [sighting("s1", T0, "CP01", EXEMPT), sighting("s2", T0 + MIN, "CP02", CAR),
              sighting("s3", T0 + 2 * MIN, "CP03", CAR, with_=(PERSON,))]
    alerts, pipe = both_stores(net, rules, sights, entry(EXEMPT), entry(CAR), entry(PERSON))
    assert [(a.subject, a.evidence) for a in by_rule(alerts, "watchlist-hit")] == [
        (CAR, ["s2"]), (CAR, ["s3"]), (PERSON, ["s3"])]
    assert [(a.subject, a.evidence) for a in by_rule(alerts, "all-hits")] == [
        (EXEMPT, ["s1"]), (CAR, ["s2"]), (CAR, ["s3"]), (PERSON, ["s3"])]
    assert pipe.stats.excepted == 1
    assert pipe.stats.by_rule == {"watchlist-hit": 3, "all-hits": 4}


def test_an_excepted_subject_seen_as_a_companion(net):
    """The subject of a watchlist-hit on a `with` subject is that subject."""
    rules = rule_set({"id": "watchlist-hit", "exceptions": {"subjects": [PERSON.key]}})
    alerts, _ = both_stores(net, rules, [sighting("s1", T0, "CP01", CAR, with_=(PERSON,))],
                            entry(CAR), entry(PERSON))
    assert [a.subject for a in alerts] == [CAR]


def crossings(*offsets, sites=CITY, subject=CAR):
    return [sighting(f"x{i}", T0 + t, sites[i % len(sites)], subject,
                     "in" if i % 2 == 0 else "out") for i, t in enumerate(offsets)]


def test_an_excepted_site_gives_no_alert_for_that_rule_only(net):
    """loitering (an ordered rule): the fourth crossing, at CP03, is the alert's site."""
    rules = rule_set({"id": "loitering", "exceptions": {"sites": ["CP03"]}},
                     {"id": "loitering-too", "kind": "loitering"})
    sights = crossings(0, 10 * MIN, 20 * MIN, 30 * MIN)
    assert sights[3].site == "CP03"
    alerts, pipe = both_stores(net, rules, sights)
    assert [(a.rule, a.site) for a in alerts] == [("loitering-too", "CP03")]
    assert pipe.stats.excepted == 1
    # elsewhere it fires
    other = crossings(0, 10 * MIN, 20 * MIN, 30 * MIN, sites=CITY[4:])
    alerts, _ = both_stores(net, rules, other)
    assert sorted((a.rule, a.site) for a in alerts) == [("loitering", "CP06"),
                                                        ("loitering-too", "CP06")]


def test_an_excepted_alert_still_counts_for_the_rule_s_own_state(net):
    """Dropped after the rule judged it: loitering's cooldown runs from the excepted alert,
    as it would from a sent one, so the next crossing (at CP04) does not alert either."""
    rules = rule_set({"id": "loitering", "exceptions": {"sites": ["CP03"]}})
    alerts, _ = both_stores(net, rules, crossings(0, 10 * MIN, 20 * MIN, 30 * MIN, 40 * MIN))
    assert alerts == []


CONVOY_STEPS = ((0, "CP01"), (10 * MIN, "BK01"), (20 * MIN, "BV01"))


def convoy_sightings(follow):
    out = []
    for n, (t, site) in enumerate(CONVOY_STEPS):
        out += [sighting(f"l{n}", T0 + t - 30 * SEC, site, CAR, "in"),
                sighting(f"f{n}", T0 + t, site, follow, "in")]
    return sorted(out, key=lambda s: (s.ts, s.id))


@pytest.mark.parametrize("exceptions", [{"subjects": [EXEMPT.key]}, {"sites": ["BV01"]}])
def test_convoy_exceptions_in_the_pair_stage(net, exceptions):
    rules = rule_set({"id": "convoy", "exceptions": exceptions, "tags": ["companions"]},
                     {"id": "convoy-too", "kind": "convoy"})
    alerts, pipe = both_stores(net, rules, convoy_sightings(EXEMPT), entry(CAR))
    assert [(a.rule, a.subject, a.site) for a in alerts] == [("convoy-too", EXEMPT, "BV01")]
    assert [s.stats.excepted for s in pipe.stages()] == [0, 0, 1, 0, 0]
    # another companion: the rule fires, with its tags (unless the site is excepted)
    other = Subject("vehicle", "蒙K00042")
    alerts, _ = both_stores(net, rules, convoy_sightings(other), entry(CAR))
    got = sorted((a.rule, a.subject, a.tags) for a in alerts)
    mine = [] if "sites" in exceptions else [("convoy", other, ("companions",))]
    assert got == mine + [("convoy-too", other, None)]


def test_a_rule_without_exceptions_or_tags_costs_nothing_more(net, rules):
    """Only rules with activate, tags or exceptions are looked at when alerts are made."""
    assert set(Pipeline(net, rules, Driver(net, rules).watchlist).engine._finishing) == {
        "penetration"}


def test_exceptions_are_part_of_the_version():
    a = rule_set({"id": "loitering"})
    b = rule_set({"id": "loitering", "exceptions": {"sites": ["CP03"]}})
    c = rule_set({"id": "loitering", "tags": ["x"]})
    assert len({a.version, b.version, c.version}) == 3


def test_empty_exceptions_except_nothing():
    rs = build_rules([("r.yaml", load_yaml_text(
        "rules:\n  - id: loitering\n    exceptions: {subjects: [], sites: []}\n", "r.yaml"))])
    assert rs.detectors[0].exceptions is None


# ------------------------------------------------------------------------- tags


def test_tags_are_carried_on_the_alerts_of_their_rule_only(net):
    rules = rule_set({"id": "watchlist-hit", "tags": ["touch-ring", "触线"]},
                     {"id": "untagged", "kind": "watchlist-hit"},
                     {"id": "loitering", "tags": ["circling"]})
    sights = [sighting("s1", T0, "CP01", CAR)] + crossings(
        MIN, 10 * MIN, 20 * MIN, 30 * MIN, subject=Subject("vehicle", "蒙K00042"))
    alerts, _ = both_stores(net, rules, sights, entry(CAR))
    got = {a.rule: a.to_json("") for a in alerts}
    assert got["watchlist-hit"]["tags"] == ["touch-ring", "触线"]
    assert "tags" not in got["untagged"]
    assert got["loitering"]["tags"] == ["circling"]
