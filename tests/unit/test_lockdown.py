"""The activation state machine (rings.lockdown.Desk), without Kafka: orders, acks, deadlines,
stand-down, repeats, restarts from the store, and every refusal."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest

from rings.lockdown import RETAIN_MS, Desk, Outcome, Source, activation_id
from rings.net import load_net
from rings.ruleset import build_rules
from rings.state import MemoryKV
from rings.yamlsrc import load_yaml_text

ROOT = Path(__file__).resolve().parents[2]
T = 1_790_000_000_000            # wall clock of the tests, ms
MIN = 60_000
PLANS = """
plans:
  - {id: city, scope: {rings: root}, respond: 5m, close: 10m, escalate: critical}
  - {id: local, scope: {within_km: 30, at_least: 3}, respond: 5m, close: 10m, lasts: 1h}
  - {id: three, scope: {sites: [CP01, CP02, CP03]}, respond: 5m, close: 10m}
"""


@pytest.fixture(scope="module")
def net():
    return load_net(str(ROOT / "rules" / "net.yaml"))


@pytest.fixture
def rules():
    return build_rules([("plans.yaml", load_yaml_text(PLANS, "plans.yaml"))])


@pytest.fixture
def store() -> MemoryKV:
    return MemoryKV()


@pytest.fixture
def desk(net, rules, store) -> Desk:
    return Desk(net, rules.plans, store, "v1")


class Inputs:
    """Numbered Kafka positions, so every input looks like a real record."""

    def __init__(self) -> None:
        self.offset = 0

    def src(self, ts: int, topic: str = "plan-commands") -> Source:
        self.offset += 1
        return Source(topic, 0, self.offset, ts)


@pytest.fixture
def inp() -> Inputs:
    return Inputs()


def activate(desk: Desk, inp: Inputs, plan: str = "three", at: int = T, **kw: Any) -> Outcome:
    cmd = {"cmd": "activate", "plan": plan, "by": "officer-7", "reason": "robbery", **kw}
    return desk.command(orjson.dumps(cmd), inp.src(at), at)


def ack(desk: Desk, inp: Inputs, aid: str, site: str, state: str, at: int,
        ts: Any = None, now: int | None = None) -> Outcome:
    a = {"activation": aid, "site": site, "state": state, "by": f"{site}-duty",
         "ts": at if ts is None else ts}
    return desk.ack(orjson.dumps(a), inp.src(at, "plan-acks"), at if now is None else now)


def test_activation_orders_every_site(desk, inp, net) -> None:
    out = activate(desk, inp, "city", id="c1")
    aid = activation_id("command", "city", "c1")
    cps = sorted(s.id for s in net.checkpoints())
    assert [o["site"] for o in out.orders] == cps
    assert {o["activation"] for o in out.orders} == {aid}
    o = out.orders[0]
    assert (o["action"], o["respond_by"], o["close_by"]) == (
        "close", "2026-09-21T14:18:20.000+00:00", "2026-09-21T14:23:20.000+00:00")
    [st] = out.statuses
    assert st["state"] == "ordering" and st["triggered_by"] == "command"
    assert (st["by"], st["reason"]) == ("officer-7", "robbery")
    [(key, audit)] = out.audit
    assert key == f"{aid}:activate" and audit["by"] == "officer-7" and audit["sites"] == cps
    assert out.events == [("activated", "city", "command")]


def test_without_a_command_id_the_kafka_position_names_it(desk, inp) -> None:
    out = activate(desk, inp)
    assert out.orders[0]["activation"] == activation_id("command", "three", "plan-commands",
                                                        "0", "1")


def test_response_and_closure_times(desk, inp) -> None:
    aid = activate(desk, inp).orders[0]["activation"]
    ack(desk, inp, aid, "CP01", "acknowledged", T + 1 * MIN)
    ack(desk, inp, aid, "CP02", "acknowledged", T + 2 * MIN)
    out = ack(desk, inp, aid, "CP03", "closed", T + 3 * MIN)   # closing answers the order too
    st = out.statuses[-1]
    assert st["state"] == "responded" and st["time_to_respond_s"] == 180.0
    assert out.events == [("responded", "three", 180.0)]
    ack(desk, inp, aid, "CP01", "closed", T + 4 * MIN)
    out = ack(desk, inp, aid, "CP02", "closed", T + 7 * MIN)
    st = out.statuses[-1]
    assert st["state"] == "closed" and st["time_to_close_s"] == 420.0
    assert st["sites"] == {"CP01": "closed", "CP02": "closed", "CP03": "closed"}
    assert st["site_times"]["CP02"]["acknowledged"].endswith("14:15:20.000+00:00")
    assert out.events == [("closed", "three", 420.0)]
    assert desk.tick(T + 11 * MIN).alerts == []                 # nobody is overdue


def test_the_record_time_counts_not_the_claimed_ts(desk, inp) -> None:
    aid = activate(desk, inp).orders[0]["activation"]
    # The site claims it answered at once, but its ack reached Kafka after 4 minutes.
    out = ack(desk, inp, aid, "CP01", "acknowledged", T + 4 * MIN, ts=T)
    times = out.statuses[-1]["site_times"]["CP01"]
    assert times["acknowledged"].endswith("14:17:20.000+00:00")
    assert times["reported"] == {"acknowledged": "2026-09-21T14:13:20.000+00:00"}


def test_deadlines_escalate_once_each(desk, inp) -> None:
    aid = activate(desk, inp, "three").orders[0]["activation"]
    ack(desk, inp, aid, "CP01", "acknowledged", T + 1 * MIN)
    assert desk.tick(T + 5 * MIN - 1).statuses == []
    out = desk.tick(T + 5 * MIN)
    [alert] = out.alerts
    assert (alert.rule, alert.severity, alert.subject.key) == ("plan-overdue", "high",
                                                               f"activation:{aid}")
    assert alert.details == {"activation": aid, "deadline": "respond",
                             "missing": ["CP02", "CP03"], "ordered": 3}
    assert alert.ts == T + 5 * MIN and alert.plan == "three" and alert.rules_version == "v1"
    assert out.statuses[0]["state"] == "overdue" and out.statuses[0]["overdue"] == ["CP02",
                                                                                    "CP03"]
    assert desk.overdue_sites_by_plan()["three"] == 2
    assert desk.tick(T + 6 * MIN) == Outcome()                  # fired already
    ack(desk, inp, aid, "CP02", "acknowledged", T + 6 * MIN)    # late, but it came
    st = ack(desk, inp, aid, "CP03", "closed", T + 7 * MIN).statuses[-1]
    assert st["state"] == "responded" and st["late"] == ["CP02", "CP03"]
    out = desk.tick(T + 10 * MIN)
    assert out.alerts[0].details["missing"] == ["CP01", "CP02"]
    assert out.alerts[0].alert_id != alert.alert_id
    assert out.statuses[0]["overdue"] == ["CP01", "CP02"]


def test_state_survives_a_restart(desk, inp, net, rules, store) -> None:
    aid = activate(desk, inp).orders[0]["activation"]
    ack(desk, inp, aid, "CP01", "acknowledged", T + 1 * MIN)
    again = Desk(net, rules.plans, store, "v1")            # a new worker, the same table
    assert again.live == desk.live
    out = again.tick(T + 5 * MIN)                          # the deadline still fires
    assert out.alerts[0].details["missing"] == ["CP02", "CP03"]
    assert ack(again, inp, aid, "CP01", "acknowledged", T + 6 * MIN).dead[0].reason == \
        "duplicate-ack"
    # The same command delivered again after the restart changes nothing.
    repeat = again.command(orjson.dumps({"cmd": "activate", "plan": "three", "by": "officer-7",
                                         "reason": "robbery"}),
                           Source("plan-commands", 0, 1, T), T + 7 * MIN)
    assert repeat == Outcome(ignored=1)


def test_one_activation_per_plan_and_site(desk, inp) -> None:
    activate(desk, inp, "local", site="CP07", id="a")
    out = activate(desk, inp, "local", site="CP07", id="b")
    assert out.dead[0].reason == "already-active"
    assert activate(desk, inp, "local", site="CP01", id="c").orders      # another site
    assert activate(desk, inp, "city", id="d").orders
    # A plan whose scope does not depend on the site: one at a time, wherever asked.
    assert activate(desk, inp, "city", site="CP03", id="e").dead[0].reason == "already-active"


def rule_alert(alert_id: str, site: str = "BV01") -> dict[str, Any]:
    return {"alert_id": alert_id, "rule": "penetration", "severity": "critical",
            "subject": {"type": "vehicle", "id": "蒙K3X521"}, "site": site,
            "ts": "2026-09-21T13:30:00+00:00", "plan": "local",
            "summary": "wanted vehicle reached the civic centre"}


def trigger(desk: Desk, inp: Inputs, a: dict[str, Any], at: int = T) -> Outcome:
    return desk.trigger(a, orjson.dumps(a), inp.src(at, "alerts"), at)


def test_rule_triggers_fold_into_one_activation(desk, inp, net, rules) -> None:
    out = trigger(desk, inp, rule_alert("a1"))
    aid = activation_id("alert", "local", "a1")
    assert [o["site"] for o in out.orders] == rules.plans["local"].sites(net, "BV01")
    st = out.statuses[0]
    assert st["triggered_by"] == "alert:a1" and st["by"] == "rule:penetration"
    assert st["trigger"]["subject"] == {"type": "vehicle", "id": "蒙K3X521"}
    assert out.events == [("activated", "local", "rule")]
    assert trigger(desk, inp, rule_alert("a1")) == Outcome(ignored=1)    # the same alert
    again = trigger(desk, inp, rule_alert("a2"))           # another alert, same plan and site
    assert again.orders == [] and again.statuses[0]["activation"] == aid
    assert again.statuses[0]["triggers"] == 2
    assert again.audit[0][0] == f"{aid}:trigger:a2"
    assert trigger(desk, inp, rule_alert("a2")) == Outcome(ignored=1)
    assert trigger(desk, inp, rule_alert("a3", "CP07")).orders           # another site


def test_stand_down(desk, inp) -> None:
    aid = activate(desk, inp).orders[0]["activation"]
    cmd = {"cmd": "stand-down", "activation": aid, "by": "chief", "reason": "caught"}
    out = desk.command(orjson.dumps(cmd), inp.src(T + MIN), T + MIN)
    assert [(o["site"], o["action"]) for o in out.orders] == [
        ("CP01", "stand-down"), ("CP02", "stand-down"), ("CP03", "stand-down")]
    st = out.statuses[0]
    assert st["state"] == "stood-down" and st["stood_down"]["by"] == "chief"
    assert out.audit[0][0] == f"{aid}:stand-down" and out.audit[0][1]["reason"] == "caught"
    assert desk.tick(T + 10 * MIN) == Outcome()            # no deadline fires any more
    again = desk.command(orjson.dumps(cmd), inp.src(T + 2 * MIN), T + 2 * MIN)
    assert again.dead[0].reason == "already-stood-down"
    assert ack(desk, inp, aid, "CP01", "closed", T + 3 * MIN).dead[0].reason == "stood-down"
    assert activate(desk, inp, id="new").orders             # the plan may start again
    desk.tick(T + MIN + RETAIN_MS)                          # and the old one is forgotten
    assert aid not in desk.live


def test_an_activation_nobody_stands_down_ends_by_itself(desk, inp) -> None:
    aid = activate(desk, inp, "local", site="CP07").orders[0]["activation"]
    out = desk.tick(T + 60 * MIN)
    st = out.statuses[-1]
    assert st["activation"] == aid and st["state"] == "stood-down"
    assert st["stood_down"]["by"] == "rings" and "1h" in st["stood_down"]["reason"]
    assert {o["action"] for o in out.orders} == {"stand-down"}


@pytest.mark.parametrize("cmd,reason", [
    (b"nonsense", "bad-json"),
    (b'"a string"', "not-an-object"),
    (b'{"plan": "city", "by": "x", "reason": "y"}', "missing-field"),
    (b'{"cmd": "launch", "by": "x", "reason": "y"}', "unknown-command"),
    (b'{"cmd": "activate", "plan": "nope", "by": "x", "reason": "y"}', "unknown-plan"),
    (b'{"cmd": "activate", "plan": 7, "by": "x", "reason": "y"}', "bad-field"),
    (b'{"cmd": "activate", "plan": "local", "by": "x", "reason": "y"}', "site-required"),
    (b'{"cmd": "activate", "plan": "local", "site": "XX", "by": "x", "reason": "y"}',
     "unknown-site"),
    (b'{"cmd": "activate", "plan": "city", "reason": "y"}', "missing-field"),
    (b'{"cmd": "activate", "plan": "city", "by": "  ", "reason": "y"}', "bad-field"),
    (b'{"cmd": "activate", "plan": "city", "by": "x", "reason": "y", "id": 5}', "bad-field"),
    (b'{"cmd": "stand-down", "activation": "nope", "by": "x", "reason": "y"}',
     "unknown-activation"),
    (b'{"cmd": "stand-down", "by": "x", "reason": "y"}', "missing-field"),
    (b"[" * 20_000, "too-large"),
])
def test_bad_commands(desk, inp, cmd, reason) -> None:
    out = desk.command(cmd, inp.src(T), T)
    [dead] = out.dead
    assert dead.reason == reason and dead.detail
    assert dead.to_json()["source"] == {"topic": "plan-commands", "partition": 0,
                                        "offset": inp.offset}
    assert (out.orders, out.statuses, out.audit, desk.live) == ([], [], [], {})


def test_bad_acks_change_nothing(desk, inp) -> None:
    aid = activate(desk, inp).orders[0]["activation"]
    ack(desk, inp, aid, "CP01", "closed", T + MIN)
    before = orjson.dumps(desk.live)
    cases = [
        ({"activation": "nope", "site": "CP01", "state": "closed"}, "unknown-activation"),
        ({"activation": aid, "site": "XX", "state": "closed"}, "unknown-site"),
        ({"activation": aid, "site": "CP05", "state": "closed"}, "not-ordered"),
        ({"activation": aid, "site": "CP01", "state": "closed"}, "duplicate-ack"),
        ({"activation": aid, "site": "CP01", "state": "acknowledged"}, "out-of-order"),
        ({"activation": aid, "site": "CP02", "state": "shut"}, "bad-field"),
        ({"activation": aid, "site": "CP02", "state": "closed", "ts": "later"}, "bad-ts"),
        ({"activation": aid, "site": "CP02", "state": "closed", "ts": T - 10 * MIN},
         "out-of-order"),
        ({"activation": aid, "state": "closed"}, "missing-field"),
        ({"activation": aid, "site": "CP02", "state": "closed", "by": None}, "missing-field"),
    ]
    for a, reason in cases:
        raw = orjson.dumps({"ts": T + 2 * MIN, "by": "duty", **a})
        out = desk.ack(raw, inp.src(T + 2 * MIN, "plan-acks"), T + 2 * MIN)
        assert [d.reason for d in out.dead] == [reason], a
        assert out.statuses == []
    assert orjson.dumps(desk.live) == before
    # A closure earlier than the site's own acknowledgement is refused too.
    ack(desk, inp, aid, "CP02", "acknowledged", T + 3 * MIN)
    out = ack(desk, inp, aid, "CP02", "closed", T + 4 * MIN, ts=T + 2 * MIN)
    assert out.dead[0].reason == "out-of-order"


def test_every_record_matches_its_schema(desk, inp) -> None:
    """Commands, acks, orders, statuses, escalations and dead letters of a whole activation,
    checked against the JSON Schemas in rings/schemas (what consumers are promised)."""
    from .support import validator

    v = {n: validator(f"{n}.schema.json") for n in
         ("plan-command", "plan-ack", "plan-order", "plan-status", "plan-dead-letter", "alert")}
    cmd = {"cmd": "activate", "plan": "three", "by": "officer", "reason": "drill", "id": "x"}
    v["plan-command"].validate(cmd)
    outs = [desk.command(orjson.dumps(cmd), inp.src(T), T)]
    aid = outs[0].orders[0]["activation"]
    for i, (site, state) in enumerate([("CP01", "acknowledged"), ("CP01", "closed"),
                                       ("CP01", "closed"), ("CP09", "closed")]):
        a = {"activation": aid, "site": site, "state": state, "ts": "2026-09-21T22:15:00+08:00",
             "by": "duty"}
        v["plan-ack"].validate(a)
        outs.append(desk.ack(orjson.dumps(a), inp.src(T + (i + 2) * MIN, "plan-acks"),
                             T + (i + 2) * MIN))
    outs.append(desk.tick(T + 5 * MIN))
    outs.append(desk.tick(T + 10 * MIN))
    down = {"cmd": "stand-down", "activation": aid, "by": "chief", "reason": "over"}
    v["plan-command"].validate(down)
    outs.append(desk.command(orjson.dumps(down), inp.src(T + 11 * MIN), T + 11 * MIN))
    outs.append(desk.command(b"\xff", inp.src(T + 12 * MIN), T + 12 * MIN))
    total = Outcome()
    for o in outs:
        total += o
    assert len(total.orders) == 6 and len(total.alerts) == 2 and len(total.dead) == 3
    assert {s["state"] for s in total.statuses} == {"ordering", "overdue", "stood-down"}
    for o in total.orders:
        v["plan-order"].validate(o)
    for s in total.statuses:
        v["plan-status"].validate(orjson.loads(orjson.dumps(s)))
    for d in total.dead:
        v["plan-dead-letter"].validate(d.to_json())
    for a in total.alerts:
        v["alert"].validate(a.to_json("2026-09-21T22:30:00.000+08:00"))


def test_times_are_written_at_the_rules_utc_offset(net, rules, inp) -> None:
    desk = Desk(net, rules.plans, MemoryKV(), "v1", tz=480)
    out = activate(desk, inp)
    assert out.orders[0]["respond_by"] == "2026-09-21T22:18:20.000+08:00"
    assert out.statuses[0]["activated"] == "2026-09-21T22:13:20.000+08:00"
