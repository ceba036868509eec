"""The worker on the real broker: watchlist hits, dead letters, duplicates, tombstones."""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import jsonschema
import orjson
import pytest
from referencing import Registry, Resource

from rings.decode import KEEP_BYTES
from rings.timefmt import format_ts

from .harness import ROOT, Kafka, wait_until

SCHEMAS = Path(__file__).resolve().parents[2] / "rings" / "schemas"
T0 = "2026-11-29T08:30:00.250+08:00"


def _validator(name: str) -> jsonschema.Validator:
    reg = Registry()
    for f in SCHEMAS.glob("*.json"):
        s = json.loads(f.read_text())
        reg = reg.with_resource(s["$id"], Resource.from_contents(s))
        reg = reg.with_resource(f.name, Resource.from_contents(s))
    schema = json.loads((SCHEMAS / name).read_text())
    return jsonschema.Draft202012Validator(schema, registry=reg)


def sighting(sid: str, subject: tuple[str, str], site: str = "BK01", dir: str | None = "in",
             ts: str = T0, with_: list[tuple[str, str]] | None = None) -> dict:
    d: dict = {"id": sid, "ts": ts, "site": site, "subject": {"type": subject[0], "id": subject[1]}}
    if dir:
        d["dir"] = dir
    if with_:
        d["with"] = [{"type": t, "id": i} for t, i in with_]
    return d


def entry(subject: tuple[str, str], lst: str, sev: str, **kw: object) -> dict:
    return {"subject": {"type": subject[0], "id": subject[1]}, "list": lst, "severity": sev, **kw}


WANTED = ("vehicle", "蒙K3X521")
FUGITIVE = ("person", "p-9f2c41")
EXPIRED = ("vehicle", "蒙K00001")
PERMIT = ("vehicle", "蒙K88888")
CARRIER = ("vehicle", "蒙B12345")


def test_hits_dead_letters_and_duplicates(kafka: Kafka, start_worker) -> None:
    worker = start_worker()
    kafka.send_json("watchlist", [
        entry(WANTED, "wanted", "critical", reason="armed robbery suspect",
              **{"from": "2026-11-01T00:00:00+08:00", "until": "2026-12-31T00:00:00+08:00"}),
        entry(FUGITIVE, "fugitive", "high"),
        entry(EXPIRED, "stolen", "high", until="2026-11-29T00:00:00+08:00"),
        entry(PERMIT, "permit", "high", permit={"route": ["CP03"]}),
    ])
    kafka.barrier(worker)

    good = [
        sighting("s-wanted", WANTED, "BK01", "in"),
        sighting("s-carrier", CARRIER, "CP01", "in", with_=[FUGITIVE, ("person", "p-other")]),
        sighting("s-expired", EXPIRED, "BK02", "in"),
        sighting("s-permit", PERMIT, "BK03", "out"),
        sighting("s-wanted", WANTED, "BK01", "in"),            # a duplicate id
    ]
    garbage = [
        (b"nokey", b"this is not json", "bad-json"),
        (None, b"\xff\xfe\x00binary", "bad-json"),
        (None, b"[1, 2, 3]", "not-an-object"),
        (None, orjson.dumps({"id": "g1", "site": "CP01", "subject": {"type": "vehicle", "id": "X"}}),
         "missing-field"),
        (None, orjson.dumps(sighting("g2", WANTED, "NOPE")), "unknown-site"),
        (None, orjson.dumps({**sighting("g3", WANTED), "ts": "yesterday"}), "bad-ts"),
        (None, orjson.dumps({**sighting("g4", WANTED), "dir": "sideways"}), "bad-field"),
        (None, b"[" * 100_000, "too-large"),
        # Bad input that once could stop or mislead the worker (issue 8): none may.
        (None, orjson.dumps({**sighting("g5", WANTED), "ts": future(2 * DAY_MS)}),
         "future-ts"),                               # beyond the default max_skew (1 day)
        (None, orjson.dumps({**sighting("g6", WANTED), "ts": "9999-12-31T23:59:59Z"}),
         "future-ts"),                               # would drag event time to year 9999
        (None, orjson.dumps(sighting("g7", WANTED))[:-1] + b', "attrs": {"x": NaN}}',
         "bad-json"),
        (None, orjson.dumps(sighting("g8", WANTED))[:-1] + b', "attrs": {"x": 1e400}}',
         "bad-json"),
        # Parsed fine, but orjson writes only 254 levels: the ingest's envelope of it
        # failed, and so did every retry of its batch (a poison pill that stalled ingest).
        (None, orjson.dumps(sighting("g9", WANTED))[:-1] + b', "attrs": {"x": '
         + b"[" * 300 + b"]" * 300 + b"}}", "too-deep"),
        (None, b"[" * 5000 + b"]" * 5000, "bad-json"),  # beyond the parser's 1024 levels
    ]
    kafka.send("sightings", [(None, orjson.dumps(s)) for s in good[:3]]
               + [(k, v) for k, v, _ in garbage] + [(None, orjson.dumps(s)) for s in good[3:]])
    kafka.barrier(worker)

    alerts = kafka.alerts()
    got = sorted((a["rule"], a["subject"]["id"], tuple(a["evidence"])) for a in alerts)
    assert got == [("permit-violation", PERMIT[1], ("s-permit",)),     # BK03: off route
                   ("watchlist-hit", FUGITIVE[1], ("s-carrier",)),
                   ("watchlist-hit", WANTED[1], ("s-wanted",))]
    by_subject = {a["subject"]["id"]: a for a in alerts if a["rule"] == "watchlist-hit"}
    w = by_subject[WANTED[1]]
    assert (w["severity"], w["site"], w["ring"], w["zone"], w["dir"]) == \
        ("critical", "BK01", "core", "core", "in")
    assert w["ts"] == T0 and w["related"] == []
    f = by_subject[FUGITIVE[1]]
    assert f["severity"] == "high" and (f["ring"], f["zone"]) == ("city", "city")
    assert {r["id"] for r in f["related"]} == {CARRIER[1], "p-other"}
    v = _validator("alert.schema.json")
    for a in alerts:
        v.validate(a)

    dlq = kafka.dlq()
    assert len(dlq) == len(garbage)
    dv = _validator("dead-letter.schema.json")
    # A dead letter keeps the first 64 KiB of a larger record, and its size.
    expected = {raw[:KEEP_BYTES]: (reason, len(raw) if len(raw) > KEEP_BYTES else None)
                for _, raw, reason in garbage}
    for msg, rec in dlq:
        dv.validate(rec)
        original = rec["original"].encode() if "original" in rec else \
            __import__("base64").b64decode(rec["original_b64"])
        assert original in expected, original[:60]
        assert (rec["reason"], rec.get("original_size")) == expected[original]
        assert dict(msg.headers)["rings-reason"] == rec["reason"].encode()
        assert WANTED[1] not in rec["detail"]
    assert worker.alive
    # The ingest process reports its counters to the worker every 0.1 s: wait for them.
    want = ('rings_dlq_total{reason="bad-json"} 5.0', 'rings_dlq_total{reason="future-ts"} 2.0',
            "rings_duplicates_total 1.0")

    def counted() -> str | None:
        m = worker.metrics()
        return m if all(w in m for w in want) else None
    metrics = wait_until(counted, 15, f"the worker's /metrics to count {want}")
    assert WANTED[1] not in metrics and FUGITIVE[1] not in metrics


DAY_MS = 86_400_000


def future(ms: int) -> str:
    return format_ts(int(time.time() * 1000) + ms, 480)


def test_event_time_bounds_from_the_rules_file(kafka: Kafka, start_worker,
                                               tmp_path: Path) -> None:
    """`engine: max_skew / max_age` in the rules file bound event time around the worker's
    clock; what is refused goes to the DLQ and moves nothing, and the worker carries on."""
    rules = tmp_path / "rules"
    shutil.copytree(ROOT / "rules", rules, ignore=shutil.ignore_patterns("tests", "net.yaml"))
    text = (rules / "rules.yaml").read_text()
    assert "  lateness: 2m" in text
    (rules / "rules.yaml").write_text(text.replace(
        "  lateness: 2m", "  max_skew: 1h\n  max_age: 3650d\n  lateness: 2m", 1))
    worker = start_worker("w1", "--rules", str(rules))
    kafka.send_json("watchlist", [entry(WANTED, "wanted", "critical")])
    kafka.barrier(worker)
    kafka.send_json("sightings", [
        sighting("ahead-2h", WANTED, ts=future(2 * 3_600_000)),       # > max_skew
        sighting("old", WANTED, ts="2000-01-01T00:00:00+08:00"),      # > max_age
        sighting("ahead-30m", WANTED, ts=future(30 * 60_000)),       # within max_skew
        sighting("today", WANTED),
    ])
    kafka.barrier(worker)
    assert sorted(a["evidence"][0] for a in kafka.alerts()) == ["ahead-30m", "today"]
    reasons = sorted((orjson.loads(rec["original"])["id"], rec["reason"])
                     for _, rec in kafka.dlq())
    assert reasons == [("ahead-2h", "future-ts"), ("old", "too-old")]
    # (The ingest process reports its counts to the worker every 0.1 s.)
    wait_until(lambda: 'rings_dlq_total{reason="too-old"} 1.0' in worker.metrics(), 10,
               "the refusal counted in /metrics")
    assert worker.alive


def test_a_burst_of_the_largest_sightings_passes(kafka: Kafka, start_worker) -> None:
    """Sightings just under the 64 KiB limit, many of one subject (one partition) read in one
    fetch: the ingest's envelopes of them must still reach the stages."""
    worker = start_worker()
    kafka.send_json("watchlist", [entry(WANTED, "wanted", "critical")])
    kafka.barrier(worker)
    pad = "x" * (60 * 1024)
    kafka.send_json("sightings", [{**sighting(f"big-{i}", WANTED), "attrs": {"pad": pad}}
                                  for i in range(40)])
    kafka.barrier(worker)
    assert len(kafka.alerts()) == 40
    assert kafka.dlq() == [] and worker.alive


def test_the_largest_garbage_goes_to_the_dlq(kafka: Kafka, start_worker) -> None:
    """Records near the broker's message size limit (1 MiB by default), whose dead letters
    would be larger still if they kept every byte (escaped, or in base64)."""
    worker = start_worker()
    kafka.send_json("watchlist", [entry(WANTED, "wanted", "critical")])
    kafka.barrier(worker)
    huge = [b"\x01" * 1_000_000, b"\xff" * 1_000_000, b'"' * 1_000_000]
    kafka.send("sightings", [(None, raw) for raw in huge])
    kafka.send_json("sightings", [sighting("after-huge", WANTED)])
    kafka.barrier(worker)
    assert [a["evidence"] for a in kafka.alerts()] == [["after-huge"]]
    dlq = kafka.dlq()
    assert [(rec["reason"], rec["original_size"]) for _, rec in dlq] == \
        [("too-large", 1_000_000)] * 3
    assert worker.alive


def test_tombstone_removes_an_entry(kafka: Kafka, start_worker) -> None:
    worker = start_worker()
    kafka.send_json("watchlist", [entry(WANTED, "wanted", "critical")])
    kafka.barrier(worker)
    kafka.send_json("sightings", [sighting("before", WANTED)])
    kafka.barrier(worker)
    assert [a["evidence"] for a in kafka.alerts()] == [["before"]]

    kafka.send("watchlist", [(f"{WANTED[0]}:{WANTED[1]}".encode(), None)])
    kafka.barrier(worker)       # the tombstone precedes the barrier's entries
    kafka.send_json("sightings", [sighting("after", WANTED)])
    kafka.barrier(worker)
    assert [a["evidence"] for a in kafka.alerts()] == [["before"]]


@pytest.mark.parametrize("restart", [True])
def test_duplicate_after_restart_does_not_alert_again(kafka: Kafka, start_worker,
                                                      restart: bool) -> None:
    w1 = start_worker("a")
    kafka.send_json("watchlist", [entry(WANTED, "wanted", "critical")])
    kafka.barrier(w1)
    kafka.send_json("sightings", [sighting("once", WANTED)])
    kafka.barrier(w1)
    assert w1.stop() == 0
    w2 = start_worker("a")      # same data dir: RocksDB state and changelog both survive
    kafka.send_json("sightings", [sighting("once", WANTED)])
    kafka.barrier(w2)
    assert [a["evidence"] for a in kafka.alerts()] == [["once"]]
