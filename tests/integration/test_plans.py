"""Lockdown plans on the real broker (CONTRACTS.md §6): activation by command and by rule,
idempotence, stand-down, overdue escalation, a restart mid-activation, and bad input.

Deadlines are real wall-clock time, so these tests run the worker on a copy of the shipped
rules whose plans answer in seconds (`quick`); every wait is on a condition with a deadline.
"""

from __future__ import annotations

import shutil
import signal
import time
from pathlib import Path
from typing import Any, Callable

import orjson
import pytest

from rings.lockdown import activation_id
from rings.net import load_net
from rings.ruleset import load_rules

from .harness import ROOT, Kafka, Worker, wait_until

CITY = [s.id for s in load_net(str(ROOT / "rules" / "net.yaml")).checkpoints()]
QUICK_PLANS = """
plans:
  - id: local-link
    scope: {within_km: 30, at_least: 3}
    respond: 5m
    close: 10m
  - id: city-lockdown
    scope: {rings: root}
    respond: 5m
    close: 10m
  - id: quick
    description: three checkpoints, deadlines in seconds
    scope: {sites: [CP01, CP02, CP03]}
    respond: 6s
    close: 12s
    escalate: critical
"""


@pytest.fixture
def rules_dir(tmp_path: Path) -> Path:
    d = tmp_path / "rules"
    d.mkdir()
    shutil.copy(ROOT / "rules" / "rules.yaml", d / "rules.yaml")
    (d / "plans.yaml").write_text(QUICK_PLANS)
    load_rules(str(d))          # the test's own rules must be valid
    return d


# ---------------------------------------------------------------------------- helpers

def command(kafka: Kafka, **cmd: Any) -> None:
    kafka.send("plan-commands", [(None, orjson.dumps(cmd))])


def ack(kafka: Kafka, aid: str, site: str, state: str, ts: Any = None, by: str = "duty") -> None:
    a = {"activation": aid, "site": site, "state": state,
         "ts": ts if ts is not None else int(time.time() * 1000), "by": by}
    kafka.send("plan-acks", [(aid.encode(), orjson.dumps(a))])


def records(kafka: Kafka, topic: str) -> list[Any]:
    return [orjson.loads(m.value) for m in kafka.read_all(topic)]


def statuses(kafka: Kafka, aid: str) -> list[dict]:
    return [s for s in records(kafka, "plan-status") if s["activation"] == aid]


def wait_status(kafka: Kafka, worker: Worker, aid: str, pred: Callable[[dict], bool],
                what: str, timeout: float = 60) -> dict:
    def found() -> dict | None:
        if not worker.alive:
            raise AssertionError("worker died:\n" + worker.log_tail())
        ss = statuses(kafka, aid)
        return ss[-1] if ss and pred(ss[-1]) else None
    return wait_until(found, timeout, what, every=0.3)


def wait_dlq(kafka: Kafka, n: int, timeout: float = 60) -> list[dict]:
    return wait_until(lambda: (lambda d: d if len(d) >= n else None)(records(kafka, "plan-dlq")),
                      timeout, f"{n} plan dead letters", every=0.3)


def cmd_id(plan: str, cid: str) -> str:
    return activation_id("command", plan, cid)


# ---------------------------------------------------------------------------- tests

def test_command_activation_to_closure_and_stand_down(kafka: Kafka, start_worker) -> None:
    worker = start_worker()
    command(kafka, cmd="activate", plan="city-lockdown", site="CP07", by="duty-officer-12",
            reason="armed robbery, suspects fleeing", id="cmd-1")
    aid = cmd_id("city-lockdown", "cmd-1")
    first = wait_status(kafka, worker, aid, lambda s: True, "the first status")
    assert first["state"] == "ordering" and first["triggered_by"] == "command"
    assert first["by"] == "duty-officer-12" and first["reason"].startswith("armed robbery")
    assert sorted(first["sites"]) == sorted(CITY) and set(first["sites"].values()) == {"ordered"}

    orders = [o for o in records(kafka, "plan-orders") if o["activation"] == aid]
    assert sorted(o["site"] for o in orders) == sorted(CITY)          # one per checkpoint
    assert {o["action"] for o in orders} == {"close"}
    assert {o["respond_by"] for o in orders} == {first["respond_by"]}

    # Every checkpoint acknowledges, then closes.
    for site in CITY:
        ack(kafka, aid, site, "acknowledged")
    responded = wait_status(kafka, worker, aid, lambda s: s["state"] == "responded",
                            "state responded")
    assert responded["time_to_respond_s"] is not None and responded["time_to_close_s"] is None
    assert 0 <= responded["time_to_respond_s"] < 120
    for site in CITY:
        ack(kafka, aid, site, "closed")
    closed = wait_status(kafka, worker, aid, lambda s: s["state"] == "closed", "state closed")
    assert set(closed["sites"].values()) == {"closed"} and closed["overdue"] == []
    assert closed["time_to_close_s"] >= closed["time_to_respond_s"]
    m = worker.metrics()
    assert 'rings_plan_activations_total{plan="city-lockdown",trigger="command"} 1.0' in m
    assert 'rings_plan_time_to_close_seconds_count{plan="city-lockdown"} 1.0' in m

    # Stand-down: orders to stand down, the status, and the audit trail with who and why.
    command(kafka, cmd="stand-down", activation=aid, by="duty-officer-12",
            reason="suspects caught at CP07")
    down = wait_status(kafka, worker, aid, lambda s: s["state"] == "stood-down", "stand-down")
    assert down["stood_down"]["by"] == "duty-officer-12"
    downs = [o for o in records(kafka, "plan-orders")
             if o["activation"] == aid and o["action"] == "stand-down"]
    assert sorted(o["site"] for o in downs) == sorted(CITY)
    audit = {m.key.decode(): orjson.loads(m.value) for m in kafka.read_all("plan-audit")}
    assert audit[f"{aid}:activate"]["by"] == "duty-officer-12"
    assert audit[f"{aid}:activate"]["reason"] == "armed robbery, suspects fleeing"
    assert audit[f"{aid}:stand-down"]["reason"] == "suspects caught at CP07"
    assert records(kafka, "plan-dlq") == []

    # After a stand-down the plan can be activated again: a new activation.
    command(kafka, cmd="activate", plan="city-lockdown", by="duty-officer-12",
            reason="second incident", id="cmd-2")
    wait_status(kafka, worker, cmd_id("city-lockdown", "cmd-2"),
                lambda s: s["state"] == "ordering", "a second activation")


def test_repeats_are_idempotent(kafka: Kafka, start_worker) -> None:
    start_worker()
    cmd = dict(cmd="activate", plan="city-lockdown", by="officer", reason="drill", id="same")
    command(kafka, **cmd)
    command(kafka, **cmd)                                  # a client retrying: the same id
    command(kafka, **{**cmd, "id": "other"})               # another officer, same plan
    aid = cmd_id("city-lockdown", "same")
    [dead] = wait_dlq(kafka, 1)
    assert dead["reason"] == "already-active" and aid in dead["detail"]
    ack(kafka, aid, CITY[0], "acknowledged")
    ack(kafka, aid, CITY[0], "acknowledged")               # the site sends it twice
    wait_dlq(kafka, 2)
    orders = [o for o in records(kafka, "plan-orders")]
    assert len(orders) == len(CITY)                        # one activation only
    assert {o["activation"] for o in orders} == {aid}
    assert [d["reason"] for d in records(kafka, "plan-dlq")] == ["already-active",
                                                                 "duplicate-ack"]
    last = statuses(kafka, aid)[-1]
    assert last["sites"][CITY[0]] == "acknowledged"
    assert sum(1 for v in last["sites"].values() if v == "acknowledged") == 1


def test_overdue_escalation(kafka: Kafka, start_worker, rules_dir: Path) -> None:
    worker = start_worker("w1", "--rules", str(rules_dir))
    command(kafka, cmd="activate", plan="quick", by="officer", reason="test", id="q1")
    aid = cmd_id("quick", "q1")
    wait_status(kafka, worker, aid, lambda s: True, "the first status")
    ack(kafka, aid, "CP01", "acknowledged")
    ack(kafka, aid, "CP01", "closed")
    ack(kafka, aid, "CP02", "acknowledged")
    over = wait_status(kafka, worker, aid, lambda s: s["state"] == "overdue",
                       "state overdue after the respond deadline", timeout=30)
    assert over["overdue"] == ["CP03"]                     # CP02 answered, CP03 did not

    def escalations() -> list[dict]:
        return [a for a in kafka.alerts() if a["rule"] == "plan-overdue"]
    [esc] = wait_until(lambda: escalations() or None, 30, "a plan-overdue alert")
    assert esc["severity"] == "critical" and esc["plan"] == "quick"
    assert esc["subject"] == {"type": "activation", "id": aid}
    assert esc["details"]["deadline"] == "respond" and esc["details"]["missing"] == ["CP03"]

    # The close deadline: CP02 and CP03 have not closed.
    both = wait_until(lambda: (lambda e: e if len(e) == 2 else None)(escalations()), 30,
                      "the close-deadline alert")
    assert both[1]["details"] == {"activation": aid, "deadline": "close",
                                  "missing": ["CP02", "CP03"], "ordered": 3}
    last = statuses(kafka, aid)[-1]
    assert last["state"] == "overdue" and last["overdue"] == ["CP02", "CP03"]
    assert 'rings_plan_overdue_sites{plan="quick"} 2.0' in worker.metrics()

    # A late closure still counts, and is shown as late.
    ack(kafka, aid, "CP02", "closed")
    ack(kafka, aid, "CP03", "closed")
    done = wait_status(kafka, worker, aid, lambda s: s["state"] == "closed", "late closure")
    assert done["late"] == ["CP02", "CP03"] and done["time_to_close_s"] > 12
    assert len(escalations()) == 2                         # each deadline alerts once


def test_restart_mid_activation(kafka: Kafka, start_worker, rules_dir: Path,
                                tmp_path: Path) -> None:
    w1 = start_worker("w1", "--rules", str(rules_dir))
    command(kafka, cmd="activate", plan="quick", by="officer", reason="test", id="r1")
    aid = cmd_id("quick", "r1")
    wait_status(kafka, w1, aid, lambda s: True, "the first status")
    ack(kafka, aid, "CP01", "acknowledged")
    wait_status(kafka, w1, aid, lambda s: s["sites"]["CP01"] == "acknowledged", "CP01's ack")
    w1.stop(signal.SIGKILL)

    # A new worker on an empty disk: the activation comes back from the changelog, acks go
    # on, and the deadlines that passed while no worker ran still fire, once each.
    w2 = start_worker("w2", "--rules", str(rules_dir))
    ack(kafka, aid, "CP02", "acknowledged")
    ack(kafka, aid, "CP01", "acknowledged")               # already had it: a duplicate

    def escalations() -> dict[str, dict] | None:
        esc = [a for a in kafka.alerts() if a["rule"] == "plan-overdue"]
        by_deadline = {a["details"]["deadline"]: a for a in esc}
        # a repeat after the kill would carry the same alert id
        assert len({a["alert_id"] for a in esc}) == len(by_deadline)
        return by_deadline if len(by_deadline) == 2 else None
    esc = wait_until(escalations, 60, "both deadlines to escalate after the restart")
    assert esc["respond"]["details"]["missing"] == ["CP02", "CP03"]   # CP02 acked too late
    assert esc["close"]["details"]["missing"] == ["CP01", "CP02", "CP03"]
    over = wait_status(kafka, w2, aid, lambda s: s["sites"]["CP02"] == "acknowledged",
                       "CP02's ack after the restart")
    assert over["state"] == "overdue" and over["sites"]["CP01"] == "acknowledged"
    assert over["overdue"] == ["CP01", "CP02", "CP03"]
    wait_dlq(kafka, 1)
    assert [d["reason"] for d in records(kafka, "plan-dlq")] == ["duplicate-ack"]
    # Exactly one activation, ordered once: the restart did not activate it again.
    assert len([o for o in records(kafka, "plan-orders") if o["action"] == "close"]) == 3


def test_activation_by_rule(kafka: Kafka, start_worker) -> None:
    worker = start_worker()
    wanted = [("vehicle", "蒙K3X521"), ("vehicle", "蒙K77777")]
    kafka.send_json("watchlist", [
        {"subject": {"type": t, "id": i}, "list": "wanted", "severity": "critical"}
        for t, i in wanted] + [
        {"subject": {"type": "vehicle", "id": "蒙K00002"}, "list": "stolen", "severity": "high"}])
    kafka.barrier(worker)           # its sentinels are at 12:00: event time is past that

    def penetrate(subject: tuple[str, str], n: int) -> list[dict]:
        # into the core ring, then into the civic centre (a ring with no children)
        return [{"id": f"pen-{n}-1", "ts": f"2026-11-29T12:{10 + n:02d}:00+08:00",
                 "site": "BK01", "dir": "in", "subject": {"type": subject[0], "id": subject[1]}},
                {"id": f"pen-{n}-2", "ts": f"2026-11-29T12:{20 + n:02d}:00+08:00",
                 "site": "BV01", "dir": "in", "subject": {"type": subject[0], "id": subject[1]}}]
    kafka.send_json("sightings", penetrate(wanted[0], 0) + penetrate(wanted[1], 1)
                    + penetrate(("vehicle", "蒙K00002"), 2))
    kafka.barrier(worker, ts="2026-11-29T13:00:00+08:00", judged="2026-11-29T12:40:00+08:00")

    pens = sorted((a for a in kafka.alerts() if a["rule"] == "penetration"),
                  key=lambda a: a["ts"])
    assert [(a["subject"]["id"], a["severity"], a["plan"]) for a in pens] == [
        ("蒙K3X521", "critical", "local-link"), ("蒙K77777", "critical", "local-link"),
        ("蒙K00002", "critical", None)]          # listed high: not a critical subject
    # The two alerts reach the plans in either order: the first starts the activation,
    # the second (same plan, same site) is folded into it.
    first, second = (pens[0], pens[1]) if any(
        s["activation"] == activation_id("alert", "local-link", pens[0]["alert_id"])
        for s in wait_until(lambda: records(kafka, "plan-status") or None, 60,
                            "a rule-triggered activation")) else (pens[1], pens[0])
    aid = activation_id("alert", "local-link", first["alert_id"])
    st = wait_status(kafka, worker, aid, lambda s: s["triggers"] == 2,
                     "the second alert folded into the activation")
    assert st["triggered_by"] == f"alert:{first['alert_id']}" and st["site"] == "BV01"
    assert st["by"] == "rule:penetration"
    expected = load_rules(str(ROOT / "rules")).plans["local-link"].sites(
        load_net(str(ROOT / "rules" / "net.yaml")), "BV01")
    assert sorted(st["sites"]) == expected and len(expected) == 3
    orders = records(kafka, "plan-orders")
    assert sorted(o["site"] for o in orders) == expected       # one activation, not two
    audit = {m.key.decode() for m in kafka.read_all("plan-audit")}
    assert audit == {f"{aid}:activate", f"{aid}:trigger:{second['alert_id']}"}
    assert 'rings_plan_activations_total{plan="local-link",trigger="rule"} 1.0' \
        in worker.metrics()


def test_bad_input_is_refused_with_a_reason(kafka: Kafka, start_worker) -> None:
    worker = start_worker()
    command(kafka, cmd="activate", plan="city-lockdown", by="officer", reason="drill", id="b1")
    aid = cmd_id("city-lockdown", "b1")
    wait_status(kafka, worker, aid, lambda s: True, "the first status")
    ack(kafka, aid, "CP01", "closed")
    wait_status(kafka, worker, aid, lambda s: s["sites"]["CP01"] == "closed", "CP01 closed")
    before = statuses(kafka, aid)[-1]

    bad_commands = [
        (b"not json at all", "bad-json"),
        (b"\xff\xfe binary", "bad-json"),
        (b"[1, 2]", "not-an-object"),
        (orjson.dumps({"plan": "city-lockdown", "by": "x", "reason": "y"}), "missing-field"),
        (orjson.dumps({"cmd": "explode", "by": "x", "reason": "y"}), "unknown-command"),
        (orjson.dumps({"cmd": "activate", "plan": "no-such-plan", "by": "x", "reason": "y"}),
         "unknown-plan"),
        (orjson.dumps({"cmd": "activate", "plan": "local-link", "site": "NOPE", "by": "x",
                       "reason": "y"}), "unknown-site"),
        (orjson.dumps({"cmd": "activate", "plan": "local-link", "by": "x", "reason": "y"}),
         "site-required"),
        (orjson.dumps({"cmd": "activate", "plan": "local-link", "site": "CP01",
                       "reason": "y"}), "missing-field"),
        (orjson.dumps({"cmd": "activate", "plan": "local-link", "site": "CP01", "by": "",
                       "reason": "y"}), "bad-field"),
        (orjson.dumps({"cmd": "stand-down", "activation": "feedfacefeedface", "by": "x",
                       "reason": "y"}), "unknown-activation"),
        (b"{" * 20_000, "too-large"),
    ]
    now = int(time.time() * 1000)
    bad_acks = [
        ({"activation": "feedfacefeedface", "site": "CP01", "state": "closed"},
         "unknown-activation"),
        ({"activation": aid, "site": "NOPE", "state": "closed"}, "unknown-site"),
        ({"activation": aid, "site": "BK01", "state": "closed"}, "not-ordered"),
        ({"activation": aid, "site": "CP01", "state": "closed"}, "duplicate-ack"),
        ({"activation": aid, "site": "CP01", "state": "acknowledged"}, "out-of-order"),
        ({"activation": aid, "site": "CP02", "state": "open"}, "bad-field"),
        ({"activation": aid, "site": "CP02", "state": "closed", "ts": "soon"}, "bad-ts"),
        ({"activation": aid, "site": "CP02", "state": "closed", "ts": now - 3_600_000},
         "out-of-order"),
        ({"activation": aid, "site": "CP02"}, "missing-field"),
    ]
    kafka.send("plan-commands", [(None, raw) for raw, _ in bad_commands])
    kafka.send("plan-acks", [(None, orjson.dumps({"ts": now, "by": "duty", **a}))
                             for a, _ in bad_acks])
    dead = wait_dlq(kafka, len(bad_commands) + len(bad_acks))
    assert len(dead) == len(bad_commands) + len(bad_acks)
    from_commands = [d for d in dead if d["source"]["topic"] == kafka.t("plan-commands")]
    from_acks = [d for d in dead if d["source"]["topic"] == kafka.t("plan-acks")]
    # each refused with its reason, in the order sent (commands and acks meet in any order)
    assert [d["reason"] for d in from_commands] == [r for _, r in bad_commands]
    assert [d["reason"] for d in from_acks] == [r for _, r in bad_acks]
    assert all(d["detail"] for d in dead)
    assert from_commands[1]["original_b64"]                # the bytes, kept exactly
    assert from_commands[0]["original"] == "not json at all"
    assert worker.alive
    # None of it changed the activation: no new status, no new activation, no new order.
    assert statuses(kafka, aid)[-1] == before
    assert {s["activation"] for s in records(kafka, "plan-status")} == {aid}
    assert len(records(kafka, "plan-orders")) == len(CITY)
    assert 'rings_dlq_total{reason="duplicate-ack"} 1.0' in worker.metrics()


def test_the_plan_command_line(kafka: Kafka, start_worker, broker: str, prefix: str) -> None:
    """`rings plan activate / status / stand-down` as an officer would use them, and the
    exit codes a script relies on."""
    from .test_cli_kafka import rings

    def plan(*args: str) -> Any:
        return rings("plan", *args, broker=broker, prefix=prefix)

    bad = plan("activate", "local-link", "--by", "me", "--reason", "x")   # no --site
    assert bad.returncode == 2 and b"--site" in bad.stderr
    none = plan("activate", "city-lockdown", "--by", "me", "--reason", "x", "--wait", "3")
    assert none.returncode == 3 and b"rings worker" in none.stderr    # no worker ever ran

    worker = start_worker()
    first = plan("activate", "city-lockdown", "--by", "duty-officer-12", "--reason", "robbery")
    assert first.returncode == 0, first.stderr
    aid = first.stdout.decode().split()[1].rstrip(":")
    assert b"21 sites ordered" in first.stdout
    twice = plan("activate", "city-lockdown", "--by", "duty-officer-7", "--reason", "robbery")
    assert twice.returncode == 1 and b"already-active" in twice.stderr and \
        aid.encode() in twice.stderr
    for site in CITY[:2]:
        ack(kafka, aid, site, "closed")
    wait_status(kafka, worker, aid, lambda s: list(s["sites"].values()).count("closed") == 2,
                "two closures")
    shown = plan("status", aid)
    assert shown.returncode == 0
    out = shown.stdout.decode()
    assert "city-lockdown" in out and "21 sites: 2 closed" in out
    assert all(site in out for site in CITY)
    listed = plan("status")
    assert aid in listed.stdout.decode()
    down = plan("stand-down", aid, "--by", "duty-officer-12", "--reason", "caught")
    assert down.returncode == 0 and b"stood down" in down.stdout, down.stderr
    again = plan("stand-down", aid, "--by", "duty-officer-12", "--reason", "caught")
    assert again.returncode == 1 and b"already-stood-down" in again.stderr
    assert aid not in plan("status").stdout.decode()          # only active ones by default
    assert aid in plan("status", "--all").stdout.decode()
