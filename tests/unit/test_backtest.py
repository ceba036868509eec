"""Backtests (`rings replay --summary`, `--diff OTHER_RULES_DIR`) on a small simulated day
with every rule's pattern planted: the counts must be exactly what the simulator's truth
file implies (the planted day scores perfectly), per rule, per severity where the rule
fixes it, per hour and per subject; and a changed rule set must show exactly the change."""

from __future__ import annotations

import io
import sys
from collections import Counter

import orjson
import pytest

from rings.backtest import (HOUR, compare, comparison_text, summarize, summary_text, table,
                            width)
from rings.cli import main
from rings.decode import watch_entry_from_obj
from rings.models import Alert, Subject
from rings.replay import replay_lines
from rings.ruleset import build_rules
from rings.scenarios import RULES
from rings.sim import SimConfig, Simulator
from rings.timefmt import parse_ts
from rings.watchlist import Watchlist
from rings.yamlsrc import load_yaml_text

from .support import RULES_DIR, T0

SHIPPED = (RULES_DIR / "rules.yaml").read_text(encoding="utf-8")
# Loitering off, penetration's severity overridden: the same traffic, a known change.
CHANGED = SHIPPED.replace("  - id: loitering\n", "  - id: loitering\n    enabled: false\n") \
    .replace("  - id: penetration\n", "  - id: penetration\n    severity: low\n")
PLANS = (RULES_DIR / "plans.yaml").read_text(encoding="utf-8")


@pytest.fixture(scope="module")
def day(net):
    sim = Simulator(net, SimConfig(rate=0.3, duration_s=86_400.0, seed=7, watch_fraction=0.01,
                                   plant=RULES, cases=2))
    lines = [orjson.dumps(r) for r in sim.sightings()]
    wl_entries = sim.watchlist()
    wl = Watchlist(watch_entry_from_obj(e, net.sites) for e in wl_entries)
    return sim, lines, wl, sim.truth(), wl_entries


@pytest.fixture(scope="module")
def base(net, rules, day):
    _, lines, wl, _, _ = day
    return list(replay_lines(lines, net, rules, wl))


def with_plans(text: str):
    """A rule set from rules text and the shipped plans, as a rules directory gives it."""
    return build_rules([("<changed>/rules.yaml", load_yaml_text(text)),
                        ("<changed>/plans.yaml", load_yaml_text(PLANS))])


def test_the_planted_day_scores_perfectly(base, day):
    """The premise of every number below: replay's alerts are the truth file's."""
    truth = day[3]
    got = Counter((a.rule, a.subject.key, a.ts) for a in base)
    want = Counter((t["rule"], f"{t['subject']['type']}:{t['subject']['id']}",
                    parse_ts(t["ts"])[0]) for t in truth)
    assert got == want
    assert len(base) > 150


def test_alerts_per_rule_and_severity(base, day, rules):
    _, _, _, truth, wl_entries = day
    s = summarize(base, [d.rule_id for d in rules.detectors])
    per_rule = Counter(t["rule"] for t in truth)
    assert s.alerts == len(truth)
    for r in RULES:
        assert per_rule[r] >= 2, r                   # every rule's cases were planted
        assert s.rule_total(r) == per_rule[r], r
    # Severities the rules fix.
    assert s.by_rule["cloned-plate"] == Counter(high=per_rule["cloned-plate"])
    assert s.by_rule["loitering"] == Counter(low=per_rule["loitering"])
    assert s.by_rule["permit-violation"] == Counter(high=per_rule["permit-violation"])
    # watchlist-hit: the severity of the listed subject's entry, from the simulator's list.
    sev = {f"{e['subject']['type']}:{e['subject']['id']}": e["severity"] for e in wl_entries}
    want = Counter(sev[f"{t['subject']['type']}:{t['subject']['id']}"] for t in truth
                   if t["rule"] == "watchlist-hit")
    assert s.by_rule["watchlist-hit"] == want
    text = summary_text(s)
    assert text.startswith(f"{len(truth)} alerts, event time 2026-11-29T")
    total = [line for line in text.splitlines() if line.startswith("total")][0].split()
    assert total[-1] == str(len(truth))
    assert sum(map(int, total[1:5])) == len(truth)
    row = next(line for line in text.splitlines() if line.startswith("cloned-plate "))
    assert row.split() == ["cloned-plate", "0", str(per_rule["cloned-plate"]), "0", "0",
                           str(per_rule["cloned-plate"])]


def test_alerts_per_hour_of_event_time(base, day):
    truth = day[3]
    s = summarize(base)
    assert s.offset_min == 480                        # the simulator's sites write +08:00
    want: Counter[str] = Counter(t["ts"][:13].replace("T", " ") + ":00" for t in truth)
    got = {s.hour_label(h): sum(c.values()) for h, c in s.by_hour.items()}
    assert got == dict(want)
    assert sum(sum(c.values()) for c in s.by_hour_sev.values()) == len(truth)
    lines = summary_text(s).splitlines()
    start = lines.index("alerts per hour of event time (+08:00)")
    rows = lines[start + 3:start + 3 + 24]
    assert [r[:16] for r in rows] == [f"2026-11-29 {h:02d}:00" for h in range(24)]
    for r in rows:
        assert int(r.split()[2]) == want.get(r[:16], 0)


def test_top_subjects(base, day):
    truth = day[3]
    s = summarize(base)
    want = Counter(f"{t['subject']['type']}:{t['subject']['id']}" for t in truth)
    assert s.subjects == want
    lines = summary_text(s).splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("subjects with the most"))
    assert lines[start] == f"subjects with the most alerts (10 of {len(want)})"
    rows = lines[start + 3:]
    ranked = sorted(want.items(), key=lambda kv: (-kv[1], kv[0]))[:10]
    assert [(int(r.split()[0]), r.split()[1]) for r in rows] == [(n, k) for k, n in ranked]


def test_same_rules_no_difference(net, rules, base, day):
    _, lines, wl, _, _ = day
    c = compare(base, replay_lines(lines, net, rules, wl))
    assert not c.only_base and not c.only_other
    assert comparison_text(c, "a", "b").endswith(
        "no difference: both rule sets raise the same alerts")


def test_diff_shows_exactly_the_change(net, rules, base, day):
    _, lines, wl, truth, _ = day
    other = with_plans(CHANGED)
    c = compare(base, replay_lines(lines, net, other, wl), [d.rule_id for d in rules.detectors])
    per_rule = Counter(t["rule"] for t in truth)
    rows = {r[0]: r[1:] for r in c.per_rule()}
    n_loit, n_pen = per_rule["loitering"], per_rule["penetration"]
    assert rows["loitering"] == (n_loit, 0, n_loit, 0)
    assert rows["penetration"] == (n_pen, n_pen, n_pen, n_pen)      # same alerts, other severity
    for r in RULES:
        if r not in ("loitering", "penetration"):
            assert rows[r] == (per_rule[r], per_rule[r], 0, 0), r
    text = comparison_text(c, "shipped", "changed", examples=1).splitlines()
    assert text[:2] == ["base:  shipped", "other: changed"]
    row = next(line for line in text if line.startswith("loitering "))
    assert row.split() == ["loitering", str(n_loit), "0", f"-{n_loit}", str(n_loit), "0"]
    total = next(line for line in text if line.startswith("total "))
    assert total.split()[3] == f"-{n_loit}"
    i = text.index(f"loitering: {n_loit} only in base (-), 0 only in other (+)")
    assert text[i + 1].startswith("  - 2026-11-29T") and " low " in text[i + 1]
    assert text[i + 2] == f"  - ... {n_loit - 1} more"
    i = text.index(f"penetration: {n_pen} only in base (-), {n_pen} only in other (+)")
    assert " critical " in text[i + 1] or " high " in text[i + 1]
    assert text[i + 3].startswith("  + ") and " low " in text[i + 3]


# ------------------------------------------------------------------------- small cases

def alert(ts: int, tz: int, rule: str = "loitering", sev: str = "low",
          subject: str = "vehicle:蒙A12345") -> Alert:
    return Alert(rule, sev, Subject.from_key(subject), ts, tz, [f"e{ts}"], "s")


def test_hours_in_the_offset_most_alerts_carry():
    """+05:30: hours start at :30 UTC; the odd alert in UTC is counted in those hours too."""
    t = parse_ts("2026-11-29T08:10:00+05:30")[0]
    s = summarize([alert(t, 330), alert(t + 40 * 60_000, 330), alert(t + 70 * 60_000, 0)])
    assert s.offset_min == 330
    assert {s.hour_label(h): sum(c.values()) for h, c in s.by_hour.items()} == {
        "2026-11-29 08:00": 2, "2026-11-29 09:00": 1}
    text = summary_text(s)
    assert "alerts per hour of event time (+05:30)" in text


def test_a_long_span_lists_only_hours_with_alerts():
    s = summarize([alert(T0, 480), alert(T0 + 30 * 24 * HOUR, 480)])
    text = summary_text(s)
    assert "(only hours with alerts)" in text
    assert len([line for line in text.splitlines() if line.startswith("2026-")]) == 2


def test_no_alerts():
    assert summary_text(summarize([])) == "no alerts"


def test_tables_align_wide_characters():
    assert width("蒙A1") == 4
    lines = table(["n", "subject", "x"], [["1", "vehicle:蒙A1", "a"], ["10", "vehicle:AB12", "b"]],
                  "rll")
    assert lines == [" n  subject       x",
                     "--  ------------  -",
                     " 1  vehicle:蒙A1  a",
                     "10  vehicle:AB12  b"]


# ------------------------------------------------------------------------- command line

def files(tmp_path, net):
    sightings = tmp_path / "s.jsonl"
    car = {"type": "vehicle", "id": "蒙K3X521"}
    recs = [{"id": f"x{i}", "ts": f"2026-11-29T{8 + i // 2:02d}:{30 * (i % 2):02d}:00+08:00",
             "site": "CP01",
             "dir": "in" if i % 2 == 0 else "out", "subject": car} for i in range(4)]
    sightings.write_bytes(b"\n".join(orjson.dumps(r) for r in recs) + b"\n")
    wl = tmp_path / "wl.jsonl"
    wl.write_bytes(orjson.dumps({"subject": car, "list": "wanted", "severity": "critical"}))
    return sightings, wl


def row(out: str, name: str) -> list[str]:
    """The cells of the first table row named `name`."""
    return next(line.split()[1:] for line in out.splitlines() if line.split()[:1] == [name])


def test_cli_summary_prints_the_summary_only(tmp_path, net, capsys):
    s, wl = files(tmp_path, net)
    assert main(["replay", str(s), "--watchlist", str(wl), "--summary", "--flush"]) == 0
    out, err = capsys.readouterr()
    assert out.startswith("5 alerts, event time 2026-11-29T08:00:00.000+08:00 to "
                          "2026-11-29T09:30:00.000+08:00\n")
    assert "{" not in out                            # no alert JSON
    assert row(out, "watchlist-hit") == ["4", "0", "0", "0", "4"]
    assert row(out, "loitering") == ["0", "0", "0", "1", "1"]
    assert "2026-11-29 09:00      3         2     0       0    1  watchlist-hit 2, loitering 1" \
        in out
    assert "     5  vehicle:蒙K3X521  watchlist-hit 4, loitering 1" in out
    assert err == "rings replay: 4 sightings, 0 bad, 5 alerts\n"


def test_cli_diff_exit_code_and_stdin(tmp_path, net, capsys, monkeypatch):
    s, wl = files(tmp_path, net)
    other = tmp_path / "other"
    other.mkdir()
    (other / "rules.yaml").write_text("rules:\n  - id: watchlist-hit\n", encoding="utf-8")
    assert main(["replay", str(s), "--watchlist", str(wl), "--flush", "--diff",
                 str(RULES_DIR)]) == 0
    assert capsys.readouterr().out.endswith("no difference: both rule sets raise the same "
                                            "alerts\n")
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(s.read_bytes())))
    assert main(["replay", "-", "--watchlist", str(wl), "--flush", "--diff", str(other)]) == 1
    out, err = capsys.readouterr()
    assert row(out, "loitering") == ["1", "0", "-1", "1", "0"]
    assert "loitering: 1 only in base (-), 0 only in other (+)" in out
    assert err.endswith("5 alerts under " + str(RULES_DIR) + f", 4 under {other}\n")


def test_cli_summary_and_diff_exclusive(tmp_path, net):
    s, _ = files(tmp_path, net)
    with pytest.raises(SystemExit) as e:
        main(["replay", str(s), "--summary", "--diff", str(RULES_DIR)])
    assert e.value.code == 2


def test_replay_without_the_flags_is_unchanged(tmp_path, net, capsys):
    s, wl = files(tmp_path, net)
    assert main(["replay", str(s), "--watchlist", str(wl)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert len(out) == 4 and all(orjson.loads(line)["alert_id"] for line in out)
