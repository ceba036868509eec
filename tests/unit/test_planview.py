"""`rings plan` tables, rendered from the status records a real Desk writes (no Kafka)."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from rings.lockdown import Desk, Source, activation_id
from rings.net import Net
from rings.planview import (activated_summary, activation_detail, activations_table,
                            find_activation, fmt_seconds, latest_by_activation,
                            plan_site_count, plans_table, refusal, stood_down_summary, table)
from rings.ruleset import RuleSet
from rings.state import MemoryKV
from rings.timefmt import format_ts, parse_ts

T0 = parse_ts("2026-11-29T08:00:00Z")[0]
SEC = 1000
MIN = 60 * SEC


class Run:
    """A desk over the sample net and plans, and every status record it wrote, in order."""

    def __init__(self, net: Net, rules: RuleSet) -> None:
        self.desk = Desk(net, rules.plans, MemoryKV())
        self.statuses: list[dict[str, Any]] = []
        self.dead: list[dict[str, Any]] = []
        self.offset = 0

    def _src(self, topic: str, at: int) -> Source:
        self.offset += 1
        return Source(topic, 0, self.offset, at)

    def _keep(self, out: Any) -> None:
        # through JSON, as the CLI reads them from plan-status
        self.statuses += [orjson.loads(orjson.dumps(s)) for s in out.statuses]
        self.dead += [d.to_json() for d in out.dead]

    def activate(self, plan: str, at: int, site: str | None = None, cid: str = "c1") -> str:
        cmd = {"cmd": "activate", "plan": plan, "site": site, "by": "duty-officer-12",
               "reason": "armed suspect heading for the ring road", "id": cid}
        self._keep(self.desk.command(orjson.dumps(cmd), self._src("plan-commands", at), at))
        return activation_id("command", plan, cid)

    def ack(self, aid: str, site: str, state: str, at: int) -> None:
        a = {"activation": aid, "site": site, "state": state, "ts": format_ts(at, 480),
             "by": f"officer-{site}"}
        self._keep(self.desk.ack(orjson.dumps(a), self._src("plan-acks", at), at))

    def stand_down(self, aid: str, at: int) -> None:
        cmd = {"cmd": "stand-down", "activation": aid, "by": "duty-officer-7",
               "reason": "suspect arrested", "id": "s1"}
        self._keep(self.desk.command(orjson.dumps(cmd), self._src("plan-commands", at), at))

    def tick(self, at: int) -> None:
        self._keep(self.desk.tick(at))


@pytest.fixture()
def run(net: Net, rules: RuleSet) -> Run:
    return Run(net, rules)


def _rows(text: str) -> dict[str, str]:
    """Table lines by their first cell."""
    return {ln.split()[0]: ln for ln in text.splitlines() if ln.strip()}


# ---------------------------------------------------------------------------- durations

@pytest.mark.parametrize("s, shown", [
    (None, "-"), (0, "0.0s"), (0.4, "0.4s"), (9.94, "9.9s"), (42, "42s"), (59.6, "1m"),
    (252, "4m 12s"), (300, "5m"), (3725, "1h 2m"), (3600, "1h"), (90_061, "1d 1h"),
])
def test_seconds_read_like_4m_12s(s: float | None, shown: str) -> None:
    assert fmt_seconds(s) == shown


def test_table_pads_columns_and_marks_missing_values() -> None:
    out = table(("a", "bb"), [("xxx", None), ("y", "")]).splitlines()
    assert out[0] == "a    bb"
    assert out[1] == "---  --"
    assert out[2] == "xxx  -"             # None: missing
    assert out[3] == "y"                  # "": blank (no mark), trailing space stripped


# ---------------------------------------------------------------------------- status

def test_latest_record_per_activation_wins(run: Run) -> None:
    aid = run.activate("city-lockdown", T0)
    run.ack(aid, "CP01", "acknowledged", T0 + 30 * SEC)
    run.ack(aid, "CP01", "closed", T0 + 90 * SEC)
    assert len(run.statuses) == 3
    latest = latest_by_activation(run.statuses + [{"no": "activation"}])
    assert list(latest) == [aid]
    assert latest[aid]["sites"]["CP01"] == "closed"
    assert find_activation(latest, aid[:6]) == (latest[aid], [])
    assert find_activation(latest, "zz") == (None, [])


def test_ambiguous_prefix_lists_the_candidates() -> None:
    latest = {"ab1": {"activation": "ab1"}, "ab2": {"activation": "ab2"}}
    assert find_activation(latest, "ab") == (None, ["ab1", "ab2"])
    assert find_activation(latest, "")[0] is None


def test_overview_counts_closed_and_overdue_and_hides_stood_down(run: Run) -> None:
    city = run.activate("city-lockdown", T0, site="CP07", cid="c1")
    local = run.activate("local-link", T0 + MIN, site="CP01", cid="c2")
    local_sites = sorted(run.statuses[-1]["sites"])
    assert len(local_sites) == 3
    for s in local_sites:                                   # all answer within 4m 12s
        run.ack(local, s, "acknowledged", T0 + MIN + 2 * MIN)
        run.ack(local, s, "closed", T0 + MIN + 252 * SEC)
    run.ack(city, "CP01", "closed", T0 + 2 * MIN)
    run.tick(T0 + 5 * MIN)                                  # city: respond deadline passes
    latest = latest_by_activation(run.statuses)
    assert latest[city]["state"] == "overdue" and latest[local]["state"] == "closed"

    rows = _rows(activations_table(latest))
    assert set(rows) == {"activation", "-" * 16, city, local}
    c = rows[city].split()
    assert c[1:5] == ["city-lockdown", "overdue", "CP07", "2026-11-29T08:00:00.000+00:00"]
    assert c[5:8] == ["command", "1/21", "20"]              # 1 of 21 closed, 20 overdue
    assert rows[local].split()[6:] == ["3/3", "0", "2m", "4m", "12s"]

    run.stand_down(local, T0 + 6 * MIN)
    latest = latest_by_activation(run.statuses)
    assert local not in activations_table(latest)
    assert "stood-down" in _rows(activations_table(latest, include_stood_down=True))[local]
    # oldest first
    lines = activations_table(latest, include_stood_down=True).splitlines()
    assert lines[2].startswith(city) and lines[3].startswith(local)


def test_detail_marks_overdue_and_late_sites(run: Run) -> None:
    aid = run.activate("city-lockdown", T0, site="CP07")
    for s in ("CP01", "CP02", "CP03"):
        run.ack(aid, s, "acknowledged", T0 + MIN)
    run.ack(aid, "CP01", "closed", T0 + 3 * MIN)
    run.tick(T0 + 5 * MIN)                                  # respond deadline
    run.ack(aid, "CP04", "acknowledged", T0 + 6 * MIN)      # answers, but late
    latest = latest_by_activation(run.statuses)
    st = latest[aid]
    assert st["late"] == ["CP04"]
    text = activation_detail(st)
    head = dict(ln.split(None, 1) for ln in text.split("\n\n")[0].splitlines())
    assert head["plan"] == "city-lockdown"
    assert head["state"] == "overdue"
    assert head["activated"] == "2026-11-29T08:00:00.000+00:00"
    assert head["respond_by"] == "2026-11-29T08:05:00.000+00:00"
    assert head["close_by"] == "2026-11-29T08:10:00.000+00:00"
    assert head["triggered_by"] == "command"
    assert head["by"] == "duty-officer-12"
    assert head["reason"] == "armed suspect heading for the ring road"
    assert head["time_to_respond_s"] == "-" and head["stood_down"] == "-"
    assert "21 sites: 1 closed, 17 overdue, 1 late" in text
    rows = _rows(text.split("\n\n")[1])
    assert rows["CP01"].split() == ["CP01", "closed", "2026-11-29T08:01:00.000+00:00",
                                    "2026-11-29T08:03:00.000+00:00", "officer-CP01"]
    assert rows["CP02"].split()[1:] == ["acknowledged", "2026-11-29T08:01:00.000+00:00",
                                        "-", "officer-CP02"]
    assert rows["CP04"].split()[-1] == "late"
    assert rows["CP05"].split() == ["CP05", "ordered", "-", "-", "-", "OVERDUE"]
    assert sum("OVERDUE" in ln for ln in rows.values()) == 17


def test_detail_of_a_closed_then_stood_down_activation(run: Run, net: Net) -> None:
    aid = run.activate("local-link", T0, site="CP01")
    sites = sorted(run.statuses[-1]["sites"])
    for s in sites:
        run.ack(aid, s, "closed", T0 + 252 * SEC)          # closing answers the order too
    run.stand_down(aid, T0 + 20 * MIN)
    st = latest_by_activation(run.statuses)[aid]
    text = activation_detail(st)
    head = dict(ln.split(None, 1) for ln in text.split("\n\n")[0].splitlines())
    assert head["state"] == "stood-down"
    assert head["time_to_respond_s"] == "252 (4m 12s)"
    assert head["time_to_close_s"] == "252 (4m 12s)"
    assert head["stood_down"] == ("2026-11-29T08:20:00.000+00:00 by duty-officer-7: "
                                  "suspect arrested")
    assert "3 sites: 3 closed, 0 overdue, 0 late" in text
    assert [ln.split()[-1] for ln in text.splitlines()[-3:]] == \
        ["officer-CP01", "officer-CP02", "officer-CP21"]        # no mark on any site
    assert stood_down_summary(st) == (f"activation {aid}: plan local-link stood down at "
                                      "2026-11-29T08:20:00.000+00:00; 3 sites told to stand "
                                      "down (3/3 had closed)")


def test_summaries_of_the_first_status_and_of_a_refusal(run: Run) -> None:
    aid = run.activate("city-lockdown", T0, cid="x")
    assert activated_summary(run.statuses[0]).splitlines() == [
        f"activation {aid}: plan city-lockdown, 21 sites ordered to close",
        "  respond by 2026-11-29T08:05:00.000+00:00",
        "  close by   2026-11-29T08:10:00.000+00:00"]
    run.activate("city-lockdown", T0 + MIN, cid="y")        # one city lockdown at a time
    assert len(run.dead) == 1 and '"id":"y"' in run.dead[0]["original"]
    assert refusal(run.dead[0]) == (f"refused by the worker: already-active: activation {aid} "
                                    "of plan city-lockdown is still active; stand it down "
                                    "first")


def test_detail_of_a_rule_triggered_activation_names_rule_subject_and_alerts(run: Run
                                                                           ) -> None:
    def alert(aid: str, ts: int) -> dict[str, Any]:
        return {"alert_id": aid, "rule": "penetration", "severity": "critical",
                "subject": {"type": "vehicle", "id": "蒙K3X521"}, "site": "CP03",
                "ts": format_ts(ts), "summary": "deep inside", "plan": "local-link"}

    for n, a in enumerate((alert("a1", T0), alert("a2", T0 + MIN))):   # the second folds in
        out = run.desk.trigger(a, orjson.dumps(a), Source("alerts", -1, -1, T0 + n * MIN),
                               T0 + n * MIN)
        run._keep(out)
    latest = latest_by_activation(run.statuses)
    assert len(latest) == 1
    st = next(iter(latest.values()))
    head = dict(ln.split(None, 1) for ln in activation_detail(st).split("\n\n")[0]
                .splitlines())
    assert head["triggered_by"] == "alert:a1 (penetration on vehicle:蒙K3X521), 2 alerts"
    assert head["by"] == "rule:penetration" and head["site"] == "CP03"
    assert "alert:a1" in _rows(activations_table(latest))[st["activation"]]


# ---------------------------------------------------------------------------- plans

def test_plans_table(net: Net, rules: RuleSet) -> None:
    text = plans_table(rules.plans, net)
    rows = _rows(text)
    city = rows["city-lockdown"]
    assert "on the root rings (city)" in city
    assert city.split()[-4:] == ["21", "5m", "10m", "critical"]
    local = rows["local-link"]
    assert "within 30 km of the site (at least the nearest 3)" in local
    assert "depends on the site (3-3)" in local
    assert local.split()[-3:] == ["5m", "10m", "high"]
    assert "city-lockdown: City-wide closure" in text       # descriptions follow


def test_site_count_of_a_distance_plan_ranges_over_the_net(net: Net, rules: RuleSet) -> None:
    from dataclasses import replace

    from rings.plans import Scope

    wide = replace(rules.plans["local-link"], scope=Scope(within_km=60))
    counts = [len(wide.sites(net, s)) for s in net.sites]
    assert min(counts) < max(counts)                         # the range means something
    assert plan_site_count(wide, net) == f"depends on the site ({min(counts)}-{max(counts)})"
