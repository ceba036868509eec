"""`rings replay`: alerts on stdout as JSON lines, bad lines on stderr with their line number."""

from __future__ import annotations

import json
import re

import orjson

from rings.cli import main
from rings.timefmt import format_ts

from .support import T0, validator

ALERT_SCHEMA = validator("alert.schema.json")
WANTED = {"type": "vehicle", "id": "蒙K3X521"}
FUGITIVE = {"type": "person", "id": "p-9f2c41"}


def rec(sid: str, ts: int, site: str, subject: dict, direction: str | None = "in",
        **extra) -> bytes:
    d = {"id": sid, "ts": format_ts(ts, 480), "site": site, "subject": subject, **extra}
    if direction is not None:
        d["dir"] = direction
    return orjson.dumps(d)


def write_inputs(tmp_path):
    """2,600 lines (more than two replay batches) with bad lines scattered through them."""
    lines: list[bytes] = []
    bad: dict[int, str] = {}
    expected_evidence: list[str] = []
    for i in range(2600):
        n = len(lines) + 1
        ts = T0 + i * 1000
        if i == 0:
            lines.append(b'{"id": "x", "ts": ')
            bad[n] = "bad-json"
        elif i == 5:
            lines.append(b"")                       # blank: skipped, not counted
        elif i == 7:
            lines.append(rec("u7", ts, "NOPE", WANTED))
            bad[n] = "unknown-site"
        elif i == 1200:
            lines.append(rec("t1200", ts, "CP01", WANTED).replace(b'"ts":"', b'"ts":"x'))
            bad[n] = "bad-ts"
        elif i == 2599:
            lines.append(b"[1, 2]")
            bad[n] = "not-an-object"
        elif i == 1800:
            lines.append(b'{"id": "m", "site": "CP01", "subject": {"type": "vehicle", "id": "v"}}')
            bad[n] = "missing-field"
        elif i % 500 == 3:
            sid = f"w{i}"
            lines.append(rec(sid, ts, "BK01", WANTED, "in", attrs={"confidence": 0.9}))
            expected_evidence.append(sid)
        elif i % 700 == 11:
            sid = f"c{i}"
            lines.append(rec(sid, ts, "CP02", {"type": "vehicle", "id": f"car{i}"}, "in",
                             **{"with": [FUGITIVE]}))
            expected_evidence.append(sid)
        else:
            lines.append(rec(f"n{i}", ts, "CP03", {"type": "vehicle", "id": f"V{i}"}, "out"))
    # A repeat of an alerting sighting, much later in the file: never a second alert.
    lines.append(rec("w3", T0 + 3000, "BK01", WANTED, "in", attrs={"confidence": 0.9}))
    sightings = tmp_path / "sightings.jsonl"
    sightings.write_bytes(b"\n".join(lines) + b"\n")
    n_lines = sum(1 for x in lines if x)
    return sightings, write_watchlist(tmp_path), bad, expected_evidence, n_lines


def write_watchlist(tmp_path):
    watchlist = tmp_path / "watchlist.jsonl"
    watchlist.write_bytes(b"\n".join([
        orjson.dumps({"subject": WANTED, "list": "wanted", "severity": "critical"}),
        b"# comments and blank lines are allowed",
        b"",
        orjson.dumps({"subject": FUGITIVE, "list": "fugitive", "severity": "high",
                      "from": format_ts(T0, 480)}),
    ]) + b"\n")
    return watchlist


def run(capsys, *args: str) -> tuple[int, list[dict], list[str]]:
    code = main(["replay", *args])
    out, err = capsys.readouterr()
    alerts = [json.loads(x) for x in out.splitlines()]
    return code, alerts, err.splitlines()


def test_replay_alerts_and_bad_lines(tmp_path, capsys):
    sightings, watchlist, bad, expected, n_lines = write_inputs(tmp_path)
    code, alerts, err = run(capsys, str(sightings), "--watchlist", str(watchlist))
    assert code == 0
    assert sorted(a["evidence"][0] for a in alerts) == sorted(expected)
    for a in alerts:
        assert ALERT_SCHEMA.is_valid(a), list(ALERT_SCHEMA.iter_errors(a))
        assert a["rule"] == "watchlist-hit"
    by_ev = {a["evidence"][0]: a for a in alerts}
    w = by_ev["w3"]
    assert (w["subject"], w["severity"], w["ring"], w["zone"]) == (WANTED, "critical", "core",
                                                                  "core")
    assert w["ts"] == format_ts(T0 + 3000, 480)
    c = by_ev["c11"]
    assert (c["subject"], c["severity"], c["related"]) == (
        FUGITIVE, "high", [{"type": "vehicle", "id": "car11"}])

    reports = [x for x in err if not x.startswith("rings replay:")]
    got = {}
    for line in reports:
        m = re.fullmatch(rf"{re.escape(str(sightings))}:(\d+): ([a-z-]+): (.+)", line)
        assert m, line
        got[int(m.group(1))] = m.group(2)
    assert got == bad
    assert err[-1] == (f"rings replay: {n_lines} sightings, {len(bad)} bad, "
                       f"{len(expected)} alerts")


def test_replay_twice_gives_the_same_alerts(tmp_path, capsys):
    sightings, watchlist, *_ = write_inputs(tmp_path)
    _, first, _ = run(capsys, str(sightings), "--watchlist", str(watchlist))
    _, second, _ = run(capsys, str(sightings), "--watchlist", str(watchlist))
    assert first
    for a in first + second:
        del a["emitted"]
    assert first == second


def test_replay_without_watchlist_has_no_alerts(tmp_path, capsys):
    sightings, *_ = write_inputs(tmp_path)
    code, alerts, err = run(capsys, str(sightings))
    assert code == 0 and alerts == []
    assert err[-1].endswith(" 0 alerts")


def test_replay_with_a_bad_watchlist_names_its_line(tmp_path, capsys):
    sightings, *_ = write_inputs(tmp_path)
    wl = tmp_path / "wl.jsonl"
    wl.write_bytes(orjson.dumps({"subject": WANTED, "list": "wanted", "severity": "critical"})
                   + b"\n\n" + orjson.dumps({"subject": WANTED, "list": "wanted"}) + b"\n")
    code, alerts, err = run(capsys, str(sightings), "--watchlist", str(wl))
    assert code == 1 and alerts == []
    assert err[0].startswith(f"{wl}:3: invalid watchlist entry: bad-field")


def test_replay_out_of_order(tmp_path, capsys):
    """Out of order (across a replay batch, within the lateness and beyond it), a stateless
    rule gives the same alerts as in order: a late wanted car is still a wanted car."""
    ordered = [rec(f"s{i}", T0 + i * 20_000, "BK02", WANTED if i % 50 == 0 else
                   {"type": "vehicle", "id": f"V{i}"}) for i in range(1200)]
    shuffled = list(ordered)
    shuffled[999], shuffled[1000] = shuffled[1000], shuffled[999]       # 20 s apart
    shuffled.insert(1100, shuffled.pop(950))    # wanted, and late: in the next batch
    watchlist = write_watchlist(tmp_path)
    results = []
    for name, lines in (("a", ordered), ("b", shuffled)):
        p = tmp_path / f"{name}.jsonl"
        p.write_bytes(b"\n".join(lines))
        _, alerts, _ = run(capsys, str(p), "--watchlist", str(watchlist))
        for a in alerts:
            del a["emitted"]
        results.append(sorted(alerts, key=lambda a: a["alert_id"]))
    assert len(results[0]) == 24
    assert results[0] == results[1]
