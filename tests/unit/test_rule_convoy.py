"""`convoy` (CONTRACTS.md §5): companions of a subject of interest (伴随). A vehicle passes at
least [3] distinct sites, each time within [120 s] of a watchlisted vehicle, all within
[60 min]; severity of the watchlisted partner's entry; `subject` is the companion, `related`
the watchlisted partner (both watchlisted: one alert per pair, subject the key that sorts
first); one alert per pair per window. `all_pairs` widens it to every pair of vehicles.

Convoy runs in its own stages (site stage → pair stage), so every test drives the whole
Pipeline, with a rule set of just this rule. A co-pass's time is the later of its two passes.
"""

from __future__ import annotations

import pytest

from rings.models import Subject

from .support import HOUR, MIN, SEC, T0, Driver, entry, sighting, single_rule

RULE = "convoy"
WANTED = Subject("vehicle", "蒙K3X521")
COMPANION = Subject("vehicle", "蒙K00042")
OTHER = Subject("vehicle", "蒙A12345")
assert WANTED.key > COMPANION.key > OTHER.key


@pytest.fixture(scope="module")
def rules():
    return single_rule(RULE)


def listed(subject=WANTED, lst="wanted", severity="high", **kw):
    return entry(subject, lst, severity, **kw)


def run(net, rules, sightings, *entries):
    if not entries:
        entries = (listed(),)
    return Driver(net, rules, *entries).run(sightings)


def co(n, t, site, gap=30 * SEC, lead=WANTED, follow=COMPANION):
    """`lead` at `site` at T0 + t - gap, `follow` at T0 + t: a co-pass at T0 + t.
    Sighting ids: l<n> and f<n>."""
    return [sighting(f"l{n}", T0 + t - gap, site, lead, "in"),
            sighting(f"f{n}", T0 + t, site, follow, "in")]


def copasses(*steps, **kw):
    """(offset, site) or (offset, site, gap) steps: the sightings of co-passes 0, 1, ..."""
    out = []
    for n, step in enumerate(steps):
        t, site, *gap = step
        out += co(n, t, site, *gap, **kw)
    return sorted(out, key=lambda s: (s.ts, s.id))


THREE = ((0, "CP01"), (10 * MIN, "BK01"), (20 * MIN, "BV01"))


def with_other(sights, steps=THREE):
    """A third vehicle, OTHER, 20 s after the follower at each step."""
    others = [sighting(f"o{n}", T0 + t + 20 * SEC, site, OTHER, "out")
              for n, (t, site) in enumerate(steps)]
    return sorted(sights + others, key=lambda s: (s.ts, s.id))


# ------------------------------------------------------------------------- positive


def test_three_sites(net, rules):
    [a] = run(net, rules, copasses(*THREE), listed(reason="armed robbery"))
    assert (a.rule, a.severity, a.subject, a.related) == (RULE, "high", COMPANION, [WANTED])
    assert a.evidence == ["l0", "f0", "l1", "f1", "l2", "f2"]
    assert (a.ts, a.tz) == (T0 + 20 * MIN, 480)
    assert (a.site, a.ring, a.zone, a.dir) == ("BV01", "civic", None, None)
    assert a.details == {"sites": ["BK01", "BV01", "CP01"], "listed_severity": "high"}
    assert a.summary == ("vehicle 蒙K00042 travelled with wanted vehicle 蒙K3X521 past 3 sites "
                         "(BK01, BV01, CP01) in 20 min")


@pytest.mark.parametrize("severity", ["low", "medium", "high", "critical"])
def test_severity_of_the_watchlisted_partner(net, rules, severity):
    [a] = run(net, rules, copasses(*THREE), listed(severity=severity))
    assert a.severity == severity


def test_companion_ahead_or_behind(net, rules):
    """Who passes first does not matter; the companion is the subject either way."""
    sights = copasses(*THREE, lead=COMPANION, follow=WANTED)
    [a] = run(net, rules, sights)
    assert (a.subject, a.related) == (COMPANION, [WANTED])
    assert a.evidence == ["l0", "f0", "l1", "f1", "l2", "f2"]


def test_each_companion_its_own_alert(net, rules):
    sights = with_other(copasses(*THREE))
    alerts = run(net, rules, sights)
    assert sorted((a.subject.id, a.related[0].id) for a in alerts) == sorted([
        (COMPANION.id, WANTED.id), (OTHER.id, WANTED.id)])
    # The two companions pass close to each other too, but neither is watchlisted.
    assert all(a.related == [WANTED] for a in alerts)


def test_both_watchlisted_one_alert_per_pair(net, rules):
    """Subject: the key that sorts first; related: the other; severity: the related one's
    entry (the partner of interest)."""
    alerts = run(net, rules, copasses(*THREE), listed(WANTED, "wanted", "critical"),
                 listed(COMPANION, "stolen", "medium"))
    [a] = alerts
    assert COMPANION.key < WANTED.key
    assert (a.subject, a.related, a.severity) == (COMPANION, [WANTED], "critical")
    alerts = run(net, rules, copasses(*THREE, follow=OTHER), listed(WANTED, "wanted", "low"),
                 listed(OTHER, "stolen", "high"))
    [a] = alerts
    assert (a.subject, a.related, a.severity) == (OTHER, [WANTED], "low")


def test_all_pairs(net):
    """With all_pairs, every two vehicles: three co-travellers make three pairs; severity is
    low when neither is listed."""
    everyone = single_rule(RULE, all_pairs=True)
    sights = with_other(copasses(*THREE))
    alerts = run(net, everyone, sights, listed(Subject("vehicle", "nobody")))
    pairs = sorted((a.subject.id, a.related[0].id, a.severity) for a in alerts)
    assert pairs == sorted([(COMPANION.id, WANTED.id, "low"), (OTHER.id, COMPANION.id, "low"),
                            (OTHER.id, WANTED.id, "low")])
    # A listed partner still gives its severity and is still the related one.
    alerts = run(net, everyone, copasses(*THREE), listed(COMPANION, severity="critical"))
    [a] = alerts
    assert (a.subject, a.related, a.severity) == (WANTED, [COMPANION], "critical")


def test_parameters(net):
    two = single_rule(RULE, sites=2)
    [a] = run(net, two, copasses(*THREE[:2]))
    assert a.evidence == ["l0", "f0", "l1", "f1"]
    wide = single_rule(RULE, gap="5m")
    assert len(run(net, wide, copasses(*((t, s, 5 * MIN) for t, s in THREE)))) == 1
    short = single_rule(RULE, window="15m")
    assert run(net, short, copasses(*THREE)) == []


# ------------------------------------------------------------------------- boundaries


def test_gap_boundary(net, rules):
    """Within 120 s: exactly 120 s apart is a co-pass, 121 s is not (and the pair is left
    with two sites)."""
    at = [(t, s, 120 * SEC) for t, s in THREE]
    assert len(run(net, rules, copasses(*at))) == 1
    at[1] = (10 * MIN, "BK01", 121 * SEC)
    assert run(net, rules, copasses(*at)) == []
    at[1] = (10 * MIN, "BK01", 120 * SEC + 1)
    assert run(net, rules, copasses(*at)) == []


def test_sites_boundary(net, rules):
    assert run(net, rules, copasses(*THREE[:2])) == []
    assert run(net, rules, copasses((0, "CP01"), (10 * MIN, "BK01"), (20 * MIN, "CP01"),
                                    (30 * MIN, "BK01"))) == []
    [a] = run(net, rules, copasses((0, "CP01"), (10 * MIN, "BK01"), (20 * MIN, "CP01"),
                                   (30 * MIN, "DL01")))
    assert a.details["sites"] == ["BK01", "CP01", "DL01"] and len(a.evidence) == 8


def test_window_boundary(net, rules):
    """All co-passes within 60 min: the third exactly 60 min after the first counts, 1 ms
    later does not."""
    [a] = run(net, rules, copasses((0, "CP01"), (30 * MIN, "BK01"), (HOUR, "BV01")))
    assert a.ts == T0 + HOUR and a.summary.endswith("in 60 min")
    assert run(net, rules, copasses((0, "CP01"), (30 * MIN, "BK01"), (HOUR + 1, "BV01"))) == []


def test_cooldown_one_alert_per_pair_per_window(net, rules):
    """Alert at the 3rd co-pass (10 min); none for the pair until 70 min, however many sites
    they pass together; at exactly 70 min again (with the co-passes of its window)."""
    steps = [(0, "CP01"), (5 * MIN, "BK01"), (10 * MIN, "BV01"), (20 * MIN, "DL01"),
             (30 * MIN, "CP02"), (40 * MIN, "BK02"), (70 * MIN - 1, "BV02"), (70 * MIN, "CP03")]
    alerts = run(net, rules, copasses(*steps))
    assert [(a.ts, a.evidence[0], a.evidence[-1]) for a in alerts] == [
        (T0 + 10 * MIN, "l0", "f2"),
        (T0 + 70 * MIN, "l2", "f7"),             # the co-pass at 10 min is 60 min before
    ]


# ------------------------------------------------------------------------- negative


def test_nobody_watchlisted(net, rules):
    assert run(net, rules, copasses(*THREE), listed(Subject("vehicle", "nobody"))) == []


def test_permit_list_and_inactive_entries_are_not_watchlisted(net, rules):
    assert run(net, rules, copasses(*THREE), listed(lst="permit")) == []
    # Listed only from the second co-pass on: the first does not count.
    assert run(net, rules, copasses(*THREE), listed(start=T0 + 5 * MIN)) == []
    assert len(run(net, rules, copasses(*THREE), listed(start=T0 - 30 * SEC))) == 1


def test_vehicles_only(net, rules):
    p = Subject("person", "p-1")
    assert run(net, rules, copasses(*THREE, follow=p)) == []
    assert run(net, rules, copasses(*THREE, lead=p, follow=WANTED), listed(p)) == []


def test_a_vehicle_with_itself_is_no_convoy(net, rules):
    assert run(net, rules, copasses(*THREE, follow=WANTED)) == []


# ------------------------------------------------------------------------- event time


def test_judged_once_the_watermark_passes(net, rules):
    d = Driver(net, rules, listed())
    sights = copasses(*THREE)
    last = sights[-1].ts
    assert d.process(sights, None, last) == []
    assert d.flush(last + 999) == []
    [a] = d.flush(last + SEC)
    assert a.ts == last


def test_out_of_order_within_lateness(net, rules):
    """All six passes within 100 s, so any arrival order is within the 2 min lateness."""
    sights = copasses((0, "CP01", 10 * SEC), (40 * SEC, "BK01", 10 * SEC),
                      (90 * SEC, "BV01", 10 * SEC))
    expected = [(a.alert_id, a.evidence) for a in run(net, rules, sights)]
    assert len(expected) == 1
    d = Driver(net, rules, listed())
    newest = max(s.ts for s in sights)
    wm = newest - rules.lateness_ms
    assert all(s.ts >= wm for s in sights)
    d.process(list(reversed(sights[3:])), None, wm)
    d.process(list(reversed(sights[:3])), wm, wm)
    d.flush(newest + HOUR)
    assert [(a.alert_id, a.evidence) for a in d.alerts] == expected


def test_duplicates_never_alert_twice(net, rules):
    sights = copasses(*THREE)
    d = Driver(net, rules, listed())
    d.run(sights + sights[:4], flush=None)
    d.process(sights[4:] * 2)
    d.flush(T0 + 3 * HOUR)
    [a] = d.alerts
    assert a.evidence == ["l0", "f0", "l1", "f1", "l2", "f2"]


def test_a_late_pass_is_skipped(net, rules):
    sights = copasses(*THREE)
    d = Driver(net, rules, listed())
    d.run(sights[:-1], flush=None)
    d.flush(sights[-1].ts + 10 * SEC)
    d.process(sights[-1:])                              # older than the watermark
    assert d.flush(T0 + 3 * HOUR) == []
