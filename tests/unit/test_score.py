"""`rings score`: alerts matched to truth lines on rule, subject and instant."""

from __future__ import annotations

import io

import orjson
import pytest

from rings.cli import main
from rings.errors import InvalidRecord
from rings.score import key_of, read_jsonl, score, to_json, to_text

V1 = {"type": "vehicle", "id": "蒙K3X521"}
V2 = {"type": "vehicle", "id": "蒙ZAAAAA"}
P1 = {"type": "person", "id": "蒙K3X521"}        # same id, other type: another subject


def truth(rule: str, subject: dict, ts: str, case: str = "c1") -> dict:
    return {"rule": rule, "subject": subject, "ts": ts, "case": case}


def alert(rule: str, subject: dict, ts: str, **extra) -> dict:
    return {"alert_id": "x", "rule": rule, "severity": "high", "subject": subject,
            "related": [], "ts": ts, **extra}


T1 = "2026-11-29T08:30:00.250+08:00"
T1_UTC = "2026-11-29T00:30:00.250Z"
T2 = "2026-11-29T09:00:00.000+08:00"


def test_matching_on_rule_subject_and_instant():
    s = score([alert("penetration", V1, T1_UTC)], [truth("penetration", V1, T1)])
    assert s.perfect
    p = s.rules["penetration"]
    assert (p.expected, p.found, p.missed, p.false_alarms) == (1, 1, 0, 0)
    assert p.recall == p.precision == 1.0


def test_an_alert_twice_counts_once_and_a_truth_line_twice_too():
    t = truth("watchlist-hit", V1, T1)
    s = score([alert("watchlist-hit", V1, T1)] * 3, [t, t])
    r = s.rules["watchlist-hit"]
    assert (r.expected, r.found, r.missed, r.false_alarms) == (1, 1, 0, 0)
    assert s.perfect


def test_truth_lines_without_alerts_are_misses():
    s = score([alert("convoy", V1, T1)],
              [truth("convoy", V1, T1, "convoy-01"), truth("convoy", V2, T2, "convoy-02")])
    r = s.rules["convoy"]
    assert (r.expected, r.found, r.missed, r.false_alarms) == (2, 1, 1, 0)
    assert r.recall == 0.5 and r.precision == 1.0
    assert r.missed_cases == ["convoy-02"]
    assert not s.perfect


def test_alerts_of_a_rule_without_truth_lines_are_false_alarms():
    s = score([alert("loitering", V1, T1)], [truth("watchlist-hit", V1, T1)])
    lo = s.rules["loitering"]
    assert (lo.expected, lo.found, lo.false_alarms) == (0, 0, 1)
    assert lo.recall is None and lo.precision == 0.0
    assert s.rules["watchlist-hit"].missed == 1
    assert not s.perfect


@pytest.mark.parametrize("other", [
    alert("watchlist-hit", P1, T1),                                   # other subject type
    alert("watchlist-hit", V2, T1),                                   # other subject
    alert("watchlist-hit", V1, "2026-11-29T08:30:00.251+08:00"),     # 1 ms later
    alert("linked-hit", V1, T1),                                      # other rule
])
def test_anything_else_differing_is_a_miss_and_a_false_alarm(other):
    s = score([other], [truth("watchlist-hit", V1, T1)])
    assert s.total.missed == 1 and s.total.false_alarms == 1
    assert s.total.recall == 0.0 and s.total.precision == 0.0


def test_integer_milliseconds_match_rfc3339():
    ms = key_of(truth("cloned-plate", V1, T1))[3]
    assert score([alert("cloned-plate", V1, ms)], [truth("cloned-plate", V1, T1)]).perfect


def test_totals_and_rule_order():
    s = score([alert("linked-hit", V1, T1), alert("penetration", V2, T2),
               alert("custom-rule", V1, T2)],
              [truth("penetration", V2, T2), truth("linked-hit", V1, T1),
               truth("watchlist-hit", V1, T2)])
    assert list(s.rules) == ["watchlist-hit", "penetration", "linked-hit", "custom-rule"]
    t = s.total
    assert (t.expected, t.found, t.missed, t.false_alarms) == (3, 2, 1, 1)
    d = to_json(s)
    assert d["ok"] is False and d["total"]["expected"] == 3
    assert d["rules"]["custom-rule"]["false_examples"] == [f"vehicle:蒙K3X521 at {T2}"]
    assert d["rules"]["watchlist-hit"]["missed_cases"] == ["c1"]
    text = to_text(s)
    assert "NOT OK" in text and "custom-rule" in text and "(case c1)" in text


def test_empty_inputs_are_perfect():
    s = score([], [])
    assert s.perfect and s.rules == {} and s.total.recall is None


def test_bad_lines_are_reported_with_their_number():
    good = orjson.dumps(truth("convoy", V1, T1))
    with pytest.raises(InvalidRecord, match="t.jsonl:3"):
        read_jsonl(io.BytesIO(good + b"\n\n" + b'{"rule": "convoy"}\n'), "t.jsonl")
    with pytest.raises(InvalidRecord, match="t.jsonl:1"):
        read_jsonl(io.BytesIO(b"nope\n"), "t.jsonl")
    assert len(read_jsonl(io.BytesIO(good + b"\n\n" + good), "t.jsonl")) == 2


def write(path, recs) -> str:
    path.write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in recs))
    return str(path)


def test_cli_exit_codes_and_json(tmp_path, capsys):
    t = write(tmp_path / "t.jsonl", [truth("convoy", V1, T1), truth("watchlist-hit", V2, T2)])
    ok = write(tmp_path / "ok.jsonl", [alert("convoy", V1, T1_UTC), alert("watchlist-hit",
                                                                           V2, T2)] * 2)
    assert main(["score", ok, "--truth", t]) == 0
    out = capsys.readouterr().out
    assert "ok: every expected alert found" in out
    missing = write(tmp_path / "m.jsonl", [alert("convoy", V1, T1)])
    assert main(["score", missing, "--truth", t, "--json"]) == 1
    d = orjson.loads(capsys.readouterr().out)
    assert d["ok"] is False and d["rules"]["watchlist-hit"]["missed"] == 1
    assert d["rules"]["convoy"]["recall"] == 1.0
    extra = write(tmp_path / "x.jsonl", [alert("convoy", V1, T1), alert("watchlist-hit", V2,
                                                                        T2),
                                         alert("loitering", V2, T2)])
    assert main(["score", extra, "--truth", t]) == 1
    bad = tmp_path / "bad.jsonl"
    bad.write_bytes(b"{}\n")
    with pytest.raises(SystemExit) as e:
        main(["score", str(bad), "--truth", t])
    assert e.value.code == 2
    assert "bad.jsonl:1" in capsys.readouterr().err
