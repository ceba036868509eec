"""`watchlist-hit`, the touch-ring alarm, through the engine (CONTRACTS.md §4, §5).

Run with a rule set of just this rule (the shipped engine settings): the other shipped rules
also fire on these sightings (linked-hit on a listed person in `with`, the ordered rules once
event time moves) and are tested in their own modules (test_rule_*.py).
"""

from __future__ import annotations

import re

import pytest

from rings.engine import Engine
from rings.models import Subject, WatchEntry
from rings.state import MemoryKV
from rings.timefmt import format_ts, parse_ts
from rings.watchlist import Watchlist

from .support import HOUR, MIN, T0, rules_from_text, sighting, single_rule, validator

ALERT_SCHEMA = validator("alert.schema.json")
CAR = Subject("vehicle", "蒙K3X521")
OTHER_CAR = Subject("vehicle", "蒙A00001")
P1 = Subject("person", "p-9f2c41")
P2 = Subject("person", "p-000002")


@pytest.fixture(scope="module")
def rules():
    return single_rule("watchlist-hit")


def entry(subject: Subject, lst: str = "wanted", severity: str = "critical",
          start: int | None = None, end: int | None = None, **kw) -> WatchEntry:
    return WatchEntry(subject, lst, severity, kw.pop("reason", None), start, end, **kw)


def make(net, rules, *entries: WatchEntry, store: MemoryKV | None = None) -> Engine:
    return Engine(net, rules, Watchlist(entries), store if store is not None else MemoryKV())


def check_schema(alerts) -> None:
    for a in alerts:
        d = a.to_json(format_ts(T0 + 41, 480))
        errors = [e.message for e in ALERT_SCHEMA.iter_errors(d)]
        assert not errors, (d, errors)


# ------------------------------------------------------------------------- who is hit


def test_hit_on_the_subject(net, rules):
    eng = make(net, rules, entry(CAR, reason="armed robbery suspect"))
    s = sighting("CP01-1", T0 + 250, "CP01", CAR, "in", attrs={"confidence": 0.97})
    [a] = eng.process([s])
    assert a.rule == "watchlist-hit"
    assert a.severity == "critical"
    assert a.subject == CAR and a.related == []
    assert a.evidence == ["CP01-1"]
    assert (a.ts, a.tz) == (T0 + 250, 480)
    assert (a.site, a.ring, a.zone, a.dir) == ("CP01", "city", "city", "in")
    assert a.plan is None
    assert a.summary == "wanted vehicle 蒙K3X521 entered the City ring at CP01"
    assert a.details == {"list": "wanted", "listed_severity": "critical",
                         "reason": "armed robbery suspect"}
    d = a.to_json("2026-11-29T08:00:00.291+08:00")
    assert d["ts"] == "2026-11-29T08:00:00.250+08:00"
    assert d["emitted"] == "2026-11-29T08:00:00.291+08:00"
    assert re.fullmatch(r"[0-9a-f]{16}", d["alert_id"])
    assert d["rules_version"] == rules.version
    check_schema([a])
    assert eng.stats.alerts == 1 and eng.stats.by_rule == {"watchlist-hit": 1}


def test_no_hit_for_unlisted_subjects(net, rules):
    eng = make(net, rules, entry(OTHER_CAR))
    assert eng.process([sighting("CP01-1", T0, "CP01", CAR, "in", with_=(P1,))]) == []
    assert eng.stats.processed == 1 and eng.stats.alerts == 0


def test_hit_on_a_with_subject(net, rules):
    eng = make(net, rules, entry(P1, "fugitive", "high"))
    [a] = eng.process([sighting("CP02-1", T0, "CP02", CAR, "in", with_=(P2, P1))])
    assert a.subject == P1
    assert a.related == [CAR, P2]
    assert a.severity == "high"
    assert a.evidence == ["CP02-1"]
    assert "fugitive person p-9f2c41 with vehicle 蒙K3X521" in a.summary
    check_schema([a])


def test_two_listed_subjects_give_two_alerts(net, rules):
    eng = make(net, rules, entry(CAR, "stolen", "high"), entry(P2, "wanted", "critical"))
    alerts = eng.process([sighting("CP03-1", T0, "CP03", CAR, "in", with_=(P1, P2))])
    assert len(alerts) == 2
    by_subject = {a.subject: a for a in alerts}
    assert by_subject[CAR].related == [P1, P2] and by_subject[CAR].severity == "high"
    assert by_subject[P2].related == [CAR, P1] and by_subject[P2].severity == "critical"
    assert by_subject[CAR].alert_id != by_subject[P2].alert_id
    check_schema(alerts)


def test_subject_listed_twice_in_one_sighting_alerts_once(net, rules):
    eng = make(net, rules, entry(P1))
    alerts = eng.process([sighting("CP03-1", T0, "CP03", CAR, "in", with_=(P1, P1))])
    assert [a.subject for a in alerts] == [P1]


def test_permit_list_never_fires(net, rules):
    permit = entry(CAR, "permit", "high")
    eng = make(net, rules, permit, entry(P1, "permit", "critical"))
    batch = [sighting(f"s{i}", T0 + i * MIN, site, CAR, d, with_=(P1,))
             for i, (site, d) in enumerate([("CP03", "in"), ("BK01", "in"), ("BA05", None)])]
    assert eng.process(batch) == []
    # Not even when a rule author names the permit list explicitly.
    named = rules_from_text("rules:\n  - id: watchlist-hit\n    lists: [permit, wanted]\n")
    assert make(net, named, permit).process([sighting("x", T0, "CP01", CAR)]) == []


def test_lists_parameter_filters_entries(net):
    only_stolen = rules_from_text("rules:\n  - id: watchlist-hit\n    lists: [stolen]\n")
    eng = make(net, only_stolen, entry(CAR, "wanted"), entry(OTHER_CAR, "stolen", "high"))
    alerts = eng.process([sighting("a", T0, "CP01", CAR), sighting("b", T0, "CP01", OTHER_CAR)])
    assert [a.subject for a in alerts] == [OTHER_CAR]


# ------------------------------------------------------------------------- validity


def test_validity_from_inclusive_until_exclusive(net, rules):
    start, end = T0, T0 + 2 * HOUR
    eng = make(net, rules, entry(CAR, start=start, end=end))
    times = {"before": start - 1, "at-from": start, "inside": start + HOUR,
             "last-ms": end - 1, "at-until": end, "after": end + HOUR}
    fired = set()
    for name, ts in times.items():
        for a in eng.process([sighting(name, ts, "CP01", CAR)]):
            fired.add(a.evidence[0])
    assert fired == {"at-from", "inside", "last-ms"}


def test_validity_is_judged_in_event_time(net, rules):
    # Entries valid only in the past or only in the far future, far from the wall clock.
    past = (parse_ts("2020-01-01T00:00:00Z")[0], parse_ts("2020-01-02T00:00:00Z")[0])
    future = (parse_ts("2090-01-01T00:00:00Z")[0], parse_ts("2090-01-02T00:00:00Z")[0])
    eng = make(net, rules, entry(CAR, start=past[0], end=past[1]),
               entry(OTHER_CAR, start=future[0], end=future[1]))
    fired = [a.evidence[0] for a in eng.process([
        sighting("car-2020", past[0] + HOUR, "CP01", CAR),
        sighting("car-2026", T0, "CP01", CAR),
        sighting("other-2026", T0, "CP01", OTHER_CAR),
        sighting("other-2090", future[0] + HOUR, "CP01", OTHER_CAR),
    ])]
    assert sorted(fired) == ["car-2020", "other-2090"]


# ------------------------------------------------------------------------- severity


@pytest.mark.parametrize("severity", ["low", "medium", "high", "critical"])
def test_severity_from_the_entry(net, rules, severity):
    [a] = make(net, rules, entry(CAR, severity=severity)).process([sighting("a", T0, "CP01", CAR)])
    assert a.severity == severity


def test_severity_override_from_the_rule(net):
    low = rules_from_text("rules:\n  - id: watchlist-hit\n    severity: low\n")
    [a] = make(net, low, entry(CAR, severity="critical")).process([sighting("a", T0, "CP01", CAR)])
    assert a.severity == "low"


# ------------------------------------------------------------------------- where


@pytest.mark.parametrize("site,direction,ring,zone", [
    ("BK01", "in", "core", "core"),             # inbound at a core ring bayonet
    ("BK01", "out", "core", "city"),            # outbound: back into the city zone
    ("BV02", "in", "civic", "civic"),
    ("BV02", "out", "civic", "core"),
    ("CP05", "in", "city", "city"),
    ("CP05", "out", "city", "outside"),
    ("DL01", "in", "banner-dalad", "banner-dalad"),
    ("BA01", "in", None, "outside"),            # approach bayonet: off the rings
    ("BA01", "out", None, "outside"),
    ("BK01", None, "core", None),               # no direction: nothing said of the zone
])
def test_where_in_the_alert(net, rules, site, direction, ring, zone):
    [a] = make(net, rules, entry(CAR)).process([sighting("a", T0, site, CAR, direction)])
    assert (a.site, a.ring, a.zone, a.dir) == (site, ring, zone, direction)
    d = a.to_json("2026-11-29T08:00:00.000+08:00")
    assert (d["site"], d["ring"], d["zone"], d["dir"]) == (site, ring, zone, direction)
    check_schema([a])


# ------------------------------------------------------------------------- identity


def _batch():
    return [sighting(f"CP{i:02d}-{i}", T0 + i * MIN, f"CP{i:02d}", CAR, "in", with_=(P1,))
            for i in range(1, 6)]


def test_alert_id_is_deterministic_across_engines(net, rules):
    entries = (entry(CAR), entry(P1, "suspect", "medium"))
    a1 = make(net, rules, *entries).process(_batch())
    a2 = make(net, rules, *entries).process(list(reversed(_batch())))
    assert len(a1) == 10
    assert sorted(a.alert_id for a in a1) == sorted(a.alert_id for a in a2)
    assert len({a.alert_id for a in a1}) == 10
    # Same rule, subject and evidence: same id, whatever else differs.
    b = make(net, rules, entry(CAR, severity="low")).process(
        [sighting("CP01-1", T0 + 5 * HOUR, "BK01", CAR, "out")])
    assert b[0].alert_id == next(a.alert_id for a in a1
                                 if a.subject == CAR and a.evidence == ["CP01-1"])


def test_duplicate_in_one_batch_and_across_batches(net, rules):
    eng = make(net, rules, entry(CAR))
    s = sighting("CP01-1", T0, "CP01", CAR)
    assert len(eng.process([s, s])) == 1
    assert eng.process([s]) == []
    # A later repeat of the id, even at another time and site, is still the same sighting.
    assert eng.process([sighting("CP01-1", T0 + 30 * MIN, "CP02", CAR)]) == []
    assert eng.stats.duplicates == 3 and eng.stats.processed == 1
    assert len(eng.process([sighting("CP01-2", T0 + MIN, "CP01", CAR)])) == 1


def test_duplicate_after_restart_on_the_same_store(net, rules):
    store = MemoryKV()
    first = make(net, rules, entry(CAR), store=store).process(_batch()[:3], advance_to=T0)
    assert len(first) == 3
    restarted = make(net, rules, entry(CAR), store=store)
    again = restarted.process(_batch())
    assert [a.evidence for a in again] == [["CP04-4"], ["CP05-5"]]
    assert restarted.stats.duplicates == 3


def test_duplicate_with_listed_companion_only(net, rules):
    eng = make(net, rules, entry(P1))
    s = sighting("CP01-1", T0, "CP01", CAR, with_=(P1,))
    assert len(eng.process([s])) == 1
    assert eng.process([s]) == []
