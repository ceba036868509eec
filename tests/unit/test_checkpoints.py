"""The simulated checkpoints (rings/checkpoints.py): deterministic, proportioned answers."""

from __future__ import annotations

import pytest

from rings.checkpoints import LATE_ACK, LATE_CLOSE, NEVER, ON_TIME, Checkpoints
from rings.timefmt import format_ts

MIN = 60_000
T0 = 1_800_000_000_000
RESPOND, CLOSE = 5 * MIN, 10 * MIN


def order(aid: str = "a1", site: str = "CP01", action: str = "close",
          issued: int = T0) -> dict:
    return {"activation": aid, "plan": "city-lockdown", "site": site, "action": action,
            "respond_by": format_ts(issued + RESPOND), "close_by": format_ts(issued + CLOSE),
            "issued": format_ts(issued)}


def many(n: int = 2000) -> list[dict]:
    return [order(f"act-{i // 21}", f"CP{i % 21 + 1:02d}") for i in range(n)]


def test_the_same_order_always_gets_the_same_answer():
    a, b = Checkpoints(seed=7), Checkpoints(seed=7)
    orders = many(300)
    first = [a.answers(o) for o in orders]
    # another instance, the orders in reverse: the answers do not depend on what came before
    second = [b.answers(o) for o in reversed(orders)][::-1]
    assert first == second
    assert first == [a.answers(o) for o in orders]
    # another seed answers differently
    other = [Checkpoints(seed=8).answers(o) for o in orders]
    assert other != first


def test_the_fractions_roughly_hold():
    cp = Checkpoints(seed=3, late_fraction=0.15, never_fraction=0.05)
    orders = many()
    kinds = [cp.kind(o["activation"], o["site"]) for o in orders]
    n = len(orders)
    assert abs(kinds.count(NEVER) / n - 0.05) < 0.02
    late = kinds.count(LATE_ACK) + kinds.count(LATE_CLOSE)
    assert abs(late / n - 0.15) < 0.03
    assert kinds.count(LATE_ACK) > 0.3 * late and kinds.count(LATE_CLOSE) > 0.3 * late
    # and the deadlines say the same: late sites miss one, silent ones send nothing
    missed = silent = 0
    for o in orders:
        ans = cp.answers(o)
        if not ans:
            silent += 1
            continue
        ack, close = ans
        assert ack.ack["state"] == "acknowledged" and close.ack["state"] == "closed"
        assert ack.ack["by"] == f"{o['site']}-duty" and "ts" not in ack.ack
        assert ack.ack["activation"] == o["activation"] and ack.ack["site"] == o["site"]
        assert MIN <= ack.delay_ms <= 8 * MIN
        assert ack.delay_ms + 2 * MIN <= close.delay_ms <= 13 * MIN
        missed += ack.delay_ms > RESPOND or close.delay_ms > CLOSE
    assert silent == kinds.count(NEVER)
    assert missed == late


def test_on_time_sites_keep_both_deadlines():
    cp = Checkpoints(seed=1)
    for o in many(500):
        if cp.kind(o["activation"], o["site"]) == ON_TIME:
            ack, close = cp.answers(o)
            assert MIN <= ack.delay_ms <= 4 * MIN
            assert 2 * MIN <= close.delay_ms - ack.delay_ms <= 5 * MIN
            assert close.delay_ms <= 9 * MIN


@pytest.mark.parametrize("late,never", [(0.0, 0.0), (0.0, 1.0), (1.0, 0.0), (0.3, 0.2)])
def test_the_fractions_are_parameters(late, never):
    cp = Checkpoints(seed=5, late_fraction=late, never_fraction=never)
    kinds = [cp.kind(o["activation"], o["site"]) for o in many(1000)]
    assert abs(kinds.count(NEVER) / 1000 - never) < 0.04
    assert abs((kinds.count(LATE_ACK) + kinds.count(LATE_CLOSE)) / 1000 - late) < 0.04


def test_bad_parameters_are_refused():
    for kw in ({"late_fraction": -0.1}, {"never_fraction": 1.5},
               {"late_fraction": 0.6, "never_fraction": 0.6}, {"time_scale": 0}):
        with pytest.raises(ValueError):
            Checkpoints(**kw)


def test_time_scale_divides_every_delay():
    slow, fast = Checkpoints(seed=2), Checkpoints(seed=2, time_scale=10)
    for o in many(200):
        s, f = slow.answers(o), fast.answers(o)
        assert [a.ack for a in s] == [a.ack for a in f]
        for a, b in zip(s, f):
            assert abs(b.delay_ms - a.delay_ms / 10) <= 1


def test_answers_are_scheduled_from_the_order_and_sent_once():
    cp = Checkpoints(seed=4, late_fraction=0, never_fraction=0, time_scale=10)
    o = order("a1", "CP03", issued=T0)
    ack, close = cp.receive(o, T0 + 500)
    assert cp.pending == 2 and cp.next_due() == T0 + ack.delay_ms
    assert cp.due(T0 + ack.delay_ms - 1) == []
    assert cp.due(T0 + ack.delay_ms) == [ack]
    assert cp.receive(o, T0 + 1000) == []          # a repeated order is not answered again
    assert cp.pending == 1
    assert cp.due(T0 + 10**9) == [close]
    assert cp.due(T0 + 10**9) == [] and cp.next_due() is None and cp.pending == 0


def test_an_old_order_is_answered_at_once():
    cp = Checkpoints(seed=4, late_fraction=0, never_fraction=0)
    cp.receive(order("old", "CP01", issued=T0), T0 + 3600_000)
    assert [a.ack["state"] for a in cp.due(T0 + 3600_000)] == ["acknowledged", "closed"]


def test_stand_down_cancels_the_pending_answers_of_that_activation():
    cp = Checkpoints(seed=6, late_fraction=0, never_fraction=0)
    for s in ("CP01", "CP02", "CP03"):
        cp.receive(order("a1", s), T0)
        cp.receive(order("a2", s), T0)
    assert cp.pending == 12
    first = min(a.delay_ms for a in cp.answers(order("a1", "CP01")))
    sent = cp.due(T0 + first)
    assert sent
    assert cp.answers(order("a1", "CP01", action="stand-down")) == []
    assert cp.receive(order("a1", "CP01", action="stand-down"), T0 + first) == []
    left = cp.due(T0 + 10**9)
    assert {a.ack["activation"] for a in left} == {"a2"}
    assert len(left) + sum(a.ack["activation"] == "a2" for a in sent) == 6
    # an order of a stood-down activation that arrives late is not answered
    assert cp.receive(order("a1", "CP09"), T0 + first) == [] and cp.pending == 0


def test_an_order_without_activation_or_site_is_refused():
    from rings.errors import InvalidRecord
    cp = Checkpoints()
    with pytest.raises(InvalidRecord):
        cp.receive({"site": "CP01"}, T0)
    with pytest.raises(InvalidRecord):
        cp.receive({"activation": "a1", "site": 3}, T0)


def _run_desk(cp: Checkpoints, until_ms: int) -> list[dict]:
    """Activate city-lockdown on a Desk and let `cp` answer its orders, second by second."""
    import orjson

    from rings.lockdown import Desk, Source
    from rings.net import load_net
    from rings.ruleset import load_rules
    from rings.state import MemoryKV

    from .support import ROOT

    net = load_net(str(ROOT / "rules" / "net.yaml"))
    desk = Desk(net, load_rules(str(ROOT / "rules")).plans, MemoryKV())
    cmd = {"cmd": "activate", "plan": "city-lockdown", "by": "duty-officer", "reason": "test"}
    out = desk.command(orjson.dumps(cmd), Source("plan-commands", 0, 0, T0), T0)
    statuses = list(out.statuses)
    for o in out.orders:
        cp.receive(o, T0)
    off = 0
    for now in range(T0, T0 + until_ms, 1000):
        for a in cp.due(now):
            off += 1
            ack = {**a.ack, "ts": format_ts(now)}
            res = desk.ack(orjson.dumps(ack), Source("plan-acks", 0, off, now), now)
            assert not res.dead, res.dead
            statuses += res.statuses
        statuses += desk.tick(now).statuses
    return statuses


def test_a_desk_answered_on_time_closes_without_overdue_sites():
    last = _run_desk(Checkpoints(seed=1, late_fraction=0, never_fraction=0), 15 * MIN)[-1]
    assert last["state"] == "closed" and last["overdue"] == [] and last["late"] == []
    assert 60 <= last["time_to_respond_s"] <= 240
    assert last["time_to_close_s"] <= 540


def test_a_desk_with_a_silent_site_ends_overdue():
    cp = Checkpoints(seed=1, late_fraction=0, never_fraction=0.1)
    statuses = _run_desk(cp, 15 * MIN)
    silent = sorted(s for s in statuses[0]["sites"]
                    if cp.kind(statuses[0]["activation"], s) == NEVER)
    assert silent, "seed 1 should leave a site silent"
    states = [s["state"] for s in statuses]
    assert states[0] == "ordering" and states[-1] == "overdue"
    assert statuses[-1]["overdue"] == silent and statuses[-1]["time_to_close_s"] is None
