"""Plans in YAML: parsing with file:line errors, scopes on a net, and rules that activate."""

from __future__ import annotations

from pathlib import Path

import pytest

from rings.errors import SourceErrors
from rings.models import Alert, Subject
from rings.net import load_net
from rings.ruleset import build_rules, load_rules
from rings.yamlsrc import load_yaml_text

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def net():
    return load_net(str(ROOT / "rules" / "net.yaml"))


def rules_of(text: str, name: str = "plans.yaml"):
    return build_rules([(name, load_yaml_text(text, name))])


def errors_of(text: str, net=None) -> list[str]:
    with pytest.raises(SourceErrors) as e:
        rs = rules_of(text)
        if net is not None:
            rs.check_against(net)
    return [str(x) for x in e.value.errors]


def test_shipped_plans(net) -> None:
    rs = load_rules(str(ROOT / "rules"))
    rs.check_against(net)
    city = rs.plans["city-lockdown"]
    assert city.sites(net, None) == sorted(s.id for s in net.checkpoints())
    assert (city.respond_ms, city.close_ms, city.escalate) == (300_000, 600_000, "critical")
    link = rs.plans["local-link"]
    assert link.scope.needs_site and link.respond_ms == 300_000 and link.close_ms == 600_000
    assert rs.by_id("penetration").activation.plan == "local-link"


def test_within_km_with_at_least(net) -> None:
    plan = rules_of("plans:\n- {id: p, scope: {within_km: 30}, respond: 1m, close: 2m}\n"
                    ).plans["p"]
    near = plan.sites(net, "JG01")                      # a banner bayonet 21 km from CP02
    assert near == ["CP02"]
    assert all(net.distance_km("JG01", s) <= 30 for s in near)
    assert plan.sites(net, "BV01") == []                # the civic centre: none within 30 km
    more = rules_of("plans:\n- {id: p, scope: {within_km: 30, at_least: 3}, respond: 1m, "
                    "close: 2m}\n").plans["p"]
    got = more.sites(net, "BV01")
    by_km = sorted(net.checkpoints(), key=lambda s: net.distance_km("BV01", s.id))
    assert got == sorted(s.id for s in by_km[:3])


def test_rings_and_sites_scopes(net) -> None:
    rs = rules_of("""
plans:
  - {id: core, scope: {rings: [core]}, types: [bayonet], respond: 1m, close: 2m}
  - {id: listed, scope: {sites: [CP03, CP01]}, respond: 1m, close: 2m}
""")
    assert rs.plans["core"].sites(net, None) == sorted(
        s.id for s in net.sites.values() if s.ring == "core")
    assert rs.plans["listed"].sites(net, "BV01") == ["CP01", "CP03"]


def test_errors_carry_file_and_line() -> None:
    errs = errors_of("""plans:
  - id: a
    scope: {within_km: -1}
    respond: 5m
    close: 10m
  - id: b
    scope: {rings: root}
    respond: soon
    close: 10m
  - id: c
    scope: {rings: root, sites: [CP01]}
    respond: 5m
    close: 10m
  - id: d
    scope: {rings: root}
    respond: 10m
    close: 5m
    colour: red
  - id: a
    scope: {rings: root}
    respond: 5m
    close: 10m
  - id: e
    scope: {rings: root}
    close: 10m
    escalate: urgent
""")
    assert errs == [
        "plans.yaml:3:24: `within_km` must be a number of kilometres above 0",
        "plans.yaml:8:14: `respond`: bad duration 'soon': use a number with s, m, h or d, "
        "like 15m",
        "plans.yaml:11:12: `scope` must have exactly one of within_km, rings, sites",
        "plans.yaml:18:5: unknown plan key 'colour' (expected: id, description, scope, types, "
        "action, respond, close, lasts, escalate)",
        "plans.yaml:17:12: plan 'd': `close` (5m) comes before `respond` (10m); a site cannot "
        "close before it has responded",
        "plans.yaml:19:9: duplicate plan id 'a' (first at plans.yaml:2)",
        "plans.yaml:23:5: plan 'e' needs `respond` (a deadline like 5m)",
        "plans.yaml:26:15: `escalate` must be one of low, medium, high, critical",
    ]


def test_unknown_rings_and_sites_at_their_line(net) -> None:
    errs = errors_of("""plans:
  - id: a
    scope:
      rings: [city, moon]
    respond: 5m
    close: 10m
  - id: b
    scope:
      sites:
        - CP01
        - XX99
    respond: 5m
    close: 10m
""", net)
    assert errs[0].startswith("plans.yaml:4:21: plan 'a': unknown ring 'moon'")
    assert errs[1] == "plans.yaml:11:11: plan 'b': unknown site 'XX99'"


def test_a_rule_must_activate_a_known_plan() -> None:
    errs = errors_of("""rules:
  - id: penetration
    activate: {plan: nowhere}
  - id: loitering
    activate: {plan: city, min_listed: urgent}
plans:
  - {id: city, scope: {rings: root}, respond: 5m, close: 10m}
""")
    assert errs == [
        "plans.yaml:5:40: `min_listed` must be one of low, medium, high, critical",
        "plans.yaml:3:22: rule 'penetration' activates unknown plan 'nowhere' (known: city)",
    ]


def alert(net, severity: str = "critical", zone: str = "civic", listed: str | None = "critical"
          ) -> Alert:
    return Alert(rule="penetration", severity=severity, subject=Subject("vehicle", "X"), ts=0,
                 tz=0, evidence=["e"], summary="", site="BV01", zone=zone,
                 details={"listed_severity": listed} if listed else {})


def test_activation_conditions(net) -> None:
    rs = rules_of("""rules:
  - id: penetration
    activate: {plan: city, min_listed: critical, innermost: true}
  - id: loitering
    severity: high
    activate: {plan: city, min_severity: high}
plans:
  - {id: city, scope: {rings: root}, respond: 5m, close: 10m}
""")
    pen, loit = rs.by_id("penetration"), rs.by_id("loitering")
    assert pen.plan_for(alert(net), net) == "city"
    assert pen.plan_for(alert(net, listed="high"), net) is None     # not a critical subject
    assert pen.plan_for(alert(net, listed=None), net) is None
    assert pen.plan_for(alert(net, zone="core"), net) is None       # core has child rings
    assert loit.plan_for(alert(net, severity="medium"), net) is None
    assert loit.plan_for(alert(net, severity="high", zone="core", listed=None), net) == "city"


def test_plans_change_the_rules_version() -> None:
    base = "rules:\n  - id: watchlist-hit\n"
    a = rules_of(base + "plans:\n- {id: p, scope: {rings: root}, respond: 5m, close: 10m}\n")
    b = rules_of(base + "plans:\n- {id: p, scope: {rings: root}, respond: 4m, close: 10m}\n")
    assert a.version != b.version


def test_utc_offset_of_plan_times() -> None:
    assert rules_of("engine:\n  utc_offset: '+08:00'\n").utc_offset_min == 480
    assert rules_of("engine:\n  utc_offset: '-03:30'\n").utc_offset_min == -210
    assert rules_of("rules: []\n").utc_offset_min == 0
    assert errors_of("engine:\n  utc_offset: '+8'\n") == [
        "plans.yaml:2:15: utc_offset must be a UTC offset like +08:00 or Z"]
