"""`checkpoint-avoidance` (CONTRACTS.md §5): a subject passes, inbound, a bayonet whose
`approaches` names a checkpoint, and is not seen at that checkpoint within the next [15 min]
of event time; fires when event time passes the deadline; medium, high if watchlisted.

Sample net: BAnn approaches CPnn (the approach bayonets are off the rings, in zone
`outside`). All stages (Pipeline), a rule set of just this rule.
"""

from __future__ import annotations

import pytest

from rings.models import Subject

from .support import HOUR, MIN, SEC, T0, Driver, entry, sighting, single_rule

RULE = "checkpoint-avoidance"
CAR = Subject("vehicle", "蒙K3X521")
WITHIN = 15 * MIN


@pytest.fixture(scope="module")
def rules():
    return single_rule(RULE)


def run(net, rules, sightings, *entries):
    return Driver(net, rules, *entries).run(sightings)


def passes(*steps, subject=CAR):
    return [sighting(f"p{i}", T0 + dt, site, subject, d) for i, (dt, site, d) in enumerate(steps)]


# ------------------------------------------------------------------------- positive


def test_not_seen_at_the_checkpoint(net, rules):
    [a] = run(net, rules, passes((0, "BA01", "in")))
    assert (a.rule, a.severity, a.subject, a.related) == (RULE, "medium", CAR, [])
    assert a.evidence == ["p0"]
    assert (a.ts, a.tz) == (T0 + WITHIN, 480)           # the deadline
    assert (a.site, a.ring, a.zone, a.dir) == ("BA01", None, "outside", "in")
    assert a.details == {"checkpoint": "CP01"}
    assert a.summary == ("vehicle 蒙K3X521 passed BA01 towards checkpoint CP01 and was not "
                         "seen there within 15 min")


def test_watchlisted_is_high(net, rules):
    [a] = run(net, rules, passes((0, "BA07", "in")), entry(CAR, "stolen", "low"))
    assert (a.severity, a.details) == ("high", {"checkpoint": "CP07"})
    assert a.summary.startswith("stolen vehicle 蒙K3X521 passed BA07")


def test_watchlisted_is_judged_at_the_bayonet_pass(net, rules):
    """The entry must be active when the subject passes the bayonet; a permit is not a
    watchlist entry."""
    assert run(net, rules, passes((0, "BA01", "in")), entry(CAR, end=T0))[0].severity == "medium"
    assert run(net, rules, passes((0, "BA01", "in")), entry(CAR, start=T0))[0].severity == "high"
    assert run(net, rules, passes((0, "BA01", "in")),
               entry(CAR, "permit", "high"))[0].severity == "medium"


def test_any_subject_type(net, rules):
    p = Subject("person", "p-1")
    [a] = run(net, rules, passes((0, "BA03", "in"), subject=p))
    assert a.subject == p


def test_seen_at_another_checkpoint_does_not_count(net, rules):
    [a] = run(net, rules, passes((0, "BA01", "in"), (5 * MIN, "CP02", "in"),
                                 (6 * MIN, "BA02", "in"), (7 * MIN, "CP02", "in")))
    assert a.evidence == ["p0"]


def test_seen_at_the_checkpoint_before_does_not_count(net, rules):
    [a] = run(net, rules, passes((0, "CP01", "in"), (MIN, "BA01", "in")))
    assert (a.evidence, a.ts) == (["p1"], T0 + MIN + WITHIN)


def test_each_bayonet_pass_has_its_own_deadline(net, rules):
    """Passes at 0 and 5 min, the checkpoint at 17 min: the first deadline (15 min) has
    passed, the second (20 min) is met."""
    [a] = run(net, rules, passes((0, "BA01", "in"), (5 * MIN, "BA01", "in"),
                                 (17 * MIN, "CP01", "in")))
    assert (a.evidence, a.ts) == (["p0"], T0 + WITHIN)


# ------------------------------------------------------------------------- negative


@pytest.mark.parametrize("direction", ["in", "out", None])
def test_seen_at_the_checkpoint_in_time(net, rules, direction):
    """Seen at the checkpoint, in whatever direction."""
    assert run(net, rules, passes((0, "BA01", "in"), (3 * MIN, "CP01", direction))) == []


@pytest.mark.parametrize("direction", ["out", None])
def test_only_inbound_passes_at_the_bayonet(net, rules, direction):
    assert run(net, rules, passes((0, "BA01", direction))) == []


def test_other_sites_never(net, rules):
    assert run(net, rules, passes((0, "CP01", "in"), (MIN, "BK01", "in"), (2 * MIN, "BC01", "in"),
                                  (3 * MIN, "DL01", "out"))) == []


# ------------------------------------------------------------------------- boundaries


def test_seen_exactly_at_the_deadline_counts(net, rules):
    assert run(net, rules, passes((0, "BA01", "in"), (WITHIN, "CP01", "in"))) == []


def test_seen_one_ms_after_the_deadline_is_too_late(net, rules):
    [a] = run(net, rules, passes((0, "BA01", "in"), (WITHIN + 1, "CP01", "in")))
    assert (a.evidence, a.ts) == (["p0"], T0 + WITHIN)


def test_within_parameter(net):
    five = single_rule(RULE, within="5m")
    assert run(net, five, passes((0, "BA01", "in"), (5 * MIN, "CP01", "in"))) == []
    [a] = run(net, five, passes((0, "BA01", "in"), (5 * MIN + 1, "CP01", "in")))
    assert a.ts == T0 + 5 * MIN and "within 5 min" in a.summary


def test_severity_override(net):
    crit = single_rule(RULE, severity="critical")
    assert run(net, crit, passes((0, "BA01", "in")))[0].severity == "critical"


# ------------------------------------------------------------------------- event time


def test_fires_when_event_time_passes_the_deadline(net, rules):
    """The deadline is judged in whole seconds of the watermark: a watermark at the deadline,
    or within its second, is not past it yet."""
    d = Driver(net, rules)
    t = T0 + 400                                 # the bayonet pass, 400 ms into a second
    deadline = t + WITHIN
    assert d.process([sighting("b", t, "BA01", CAR, "in")], None, t) == []
    assert d.flush(deadline) == []
    assert d.flush(deadline + 599) == []         # still the deadline's second
    [a] = d.flush(deadline + 600)                # the next second
    assert (a.ts, a.evidence) == (deadline, ["b"])
    assert d.flush(deadline + HOUR) == []        # once


def test_checkpoint_pass_arriving_out_of_order_within_lateness(net, rules):
    """The checkpoint pass arrives before the bayonet pass (both within the lateness)."""
    d = Driver(net, rules)
    cp = sighting("c", T0 + 2 * MIN, "CP01", CAR, "in")
    ba = sighting("b", T0, "BA01", CAR, "in")
    d.process([cp], None, cp.ts - 2 * MIN)
    d.process([ba], cp.ts - 2 * MIN, cp.ts - 2 * MIN)
    assert d.flush(T0 + HOUR) == []


def test_late_checkpoint_pass_is_skipped(net, rules):
    """A checkpoint pass older than the watermark on arrival is not judged (ordered rules
    skip late sightings), so the deadline fires although the subject was seen."""
    d = Driver(net, rules)
    d.process([sighting("b", T0, "BA01", CAR, "in")], None, T0)
    d.flush(T0 + 10 * MIN)
    d.process([sighting("c", T0 + 5 * MIN, "CP01", CAR, "in")])    # 5 min late
    [a] = d.flush(T0 + HOUR)
    assert a.evidence == ["b"]
    assert d.pipe.stats.late == 1


def test_late_bayonet_pass_is_skipped(net, rules):
    d = Driver(net, rules)
    d.process([sighting("x", T0 + HOUR, "CP09", Subject("vehicle", "X"))], None,
              T0 + HOUR - 2 * MIN)
    d.process([sighting("b", T0, "BA01", CAR, "in")])               # ~1 h late
    assert d.flush(T0 + 3 * HOUR) == []


def test_duplicate_bayonet_pass_fires_once(net, rules):
    s = sighting("b", T0, "BA01", CAR, "in")
    d = Driver(net, rules)
    d.process([s, s], None, T0)
    d.process([s], T0, T0 + 30 * SEC)
    [a] = d.flush(T0 + HOUR)
    assert a.evidence == ["b"]
