"""Privacy on the real broker (issue 8): with a pseudonymisation key, raw identifiers never
reach state or alerts; with or without it, no identifier is in a metric or an info log."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import orjson
import pytest

from rings.pseudonym import Pseudonymizer

from .harness import ROOT, Kafka, wait_until

KEY = b"a-test-key-of-32-bytes-----------"
WANTED = {"type": "vehicle", "id": "蒙K3X521"}
FUGITIVE = {"type": "person", "id": "p-9f2c41"}
PASSENGER = {"type": "person", "id": "p-77aa01"}
CARRIER = {"type": "vehicle", "id": "蒙B12345"}
RAW_IDS = [WANTED["id"], FUGITIVE["id"], PASSENGER["id"], CARRIER["id"]]
TOPICS_THAT_KEEP_STATE = ("rings-by-subject", "rings-by-site", "rings-by-pair",
                          "rings-subject-state-changelog", "rings-site-state-changelog",
                          "rings-pair-state-changelog", "rings-watchlist",
                          "rings-plan-inbox", "rings-plan-state-changelog", "alerts",
                          "plan-status", "plan-orders", "plan-audit")


def sightings() -> list[dict]:
    return [
        {"id": "s1", "ts": "2026-11-29T12:10:00+08:00", "site": "BK01", "dir": "in",
         "subject": WANTED},
        {"id": "s2", "ts": "2026-11-29T12:20:00+08:00", "site": "BV01", "dir": "in",
         "subject": WANTED},                       # penetration to the civic centre
        {"id": "s3", "ts": "2026-11-29T12:12:00+08:00", "site": "CP01", "dir": "in",
         "subject": CARRIER, "with": [FUGITIVE, PASSENGER]},
        {"id": "s4", "ts": "2026-11-29T12:40:00+08:00", "site": "CP02", "dir": "in",
         "subject": CARRIER},                      # linked-hit
    ]


def watchlist() -> list[dict]:
    return [{"subject": WANTED, "list": "wanted", "severity": "critical",
             "reason": "armed robbery"},
            {"subject": FUGITIVE, "list": "fugitive", "severity": "high"}]


def contains_raw(data: bytes) -> list[str]:
    return [i for i in RAW_IDS if i.encode() in data]


@pytest.fixture
def key_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    f = tmp_path / "pseudonym.key"
    f.write_bytes(KEY + b"\n")
    monkeypatch.setenv("RINGS_PSEUDONYM_KEY_FILE", str(f))
    return f


def run_day(kafka: Kafka, worker) -> list[dict]:
    kafka.send_json("watchlist", watchlist())
    kafka.barrier(worker)
    kafka.send_json("sightings", sightings())
    kafka.send("sightings", [(WANTED["id"].encode(), b'{"id": "bad", "subject": '
                              + orjson.dumps(WANTED) + b"}")])        # a dead letter
    kafka.barrier(worker, ts="2026-11-29T14:00:00+08:00", judged="2026-11-29T13:00:00+08:00")
    return [a for a in kafka.alerts(include_sentinels=True)
            if a["evidence"][0] in {"s1", "s2", "s3", "s4"}]


def test_pseudonymised_ids_never_reach_state_or_alerts(kafka: Kafka, start_worker,
                                                        key_file: Path, tmp_path: Path) -> None:
    worker = start_worker()
    alerts = run_day(kafka, worker)
    pz = Pseudonymizer(KEY)
    rules = {a["rule"] for a in alerts}
    assert rules == {"watchlist-hit", "penetration", "linked-hit"}, alerts
    pen = next(a for a in alerts if a["rule"] == "penetration")
    assert pen["subject"] == {"type": "vehicle", "id": pz.key("vehicle:蒙K3X521")[8:]}
    assert pen["plan"] == "local-link"             # a critical subject, pseudonym or not
    linked = next(a for a in alerts if a["rule"] == "linked-hit")
    assert linked["related"] == [{"type": "person", "id": pz.key("person:p-9f2c41")[7:]}]

    # Nothing the engine keeps or sends holds a raw id: no internal topic, no changelog,
    # no alert, no plan record (the input topics and the dead letters do, as they came).
    wait_until(lambda: any(m.key for m in kafka.read_all("plan-status")), 60,
               "the rule-triggered plan activation")
    for topic in TOPICS_THAT_KEEP_STATE:
        for m in kafka.read_all(topic):
            found = contains_raw((m.key or b"") + (m.value or b""))
            assert not found, f"{topic} holds {found}"
    assert contains_raw(b"".join(m.value for m in kafka.read_all("sightings-dlq")))
    assert not contains_raw(worker.metrics().encode())
    assert not contains_raw(worker.log_path.read_bytes())

    # Replay with the same key gives the same alerts (the watchlist file holds raw ids).
    day, wl = tmp_path / "day.jsonl", tmp_path / "wl.jsonl"
    day.write_bytes(b"".join(orjson.dumps(s) + b"\n" for s in sightings()))
    wl.write_bytes(b"".join(orjson.dumps(e) + b"\n" for e in watchlist()))
    out = subprocess.run([sys.executable, "-m", "rings.cli", "replay", str(day), "--watchlist",
                          str(wl), "--flush"], cwd=ROOT, check=True, stdout=subprocess.PIPE
                         ).stdout
    replayed = [orjson.loads(x) for x in out.splitlines()]

    def canon(xs: list[dict]) -> list[tuple]:
        return sorted((a["alert_id"], a["rule"], a["subject"]["id"]) for a in xs)
    assert canon(replayed) == canon(alerts)
    # ...and `rings pseudonym` tells a key holder which alerts are about whom.
    shown = subprocess.run([sys.executable, "-m", "rings.cli", "pseudonym", "vehicle:蒙K3X521"],
                           cwd=ROOT, check=True, stdout=subprocess.PIPE).stdout.decode()
    assert shown.split()[1] == f"vehicle:{pen['subject']['id']}"


def test_no_identifier_in_metrics_or_info_logs(kafka: Kafka, start_worker) -> None:
    worker = start_worker()                           # no key: alerts name the subjects
    alerts = run_day(kafka, worker)
    assert {a["subject"]["id"] for a in alerts} >= {WANTED["id"], CARRIER["id"]}
    wait_until(lambda: any(m.key for m in kafka.read_all("plan-status")), 60,
               "the rule-triggered plan activation")
    metrics = worker.metrics()
    assert "rings_alerts_total" in metrics and not contains_raw(metrics.encode())
    log = worker.log_path.read_bytes()
    assert b"[INFO]" in log and not contains_raw(log), contains_raw(log)


def test_per_subject_state_expires(kafka: Kafka, start_worker) -> None:
    """A subject's state is kept for its rules' windows after its last sighting (2.4 h with
    the shipped rules), then deleted: its changelog key ends in a tombstone."""
    worker = start_worker()
    ids = [f"蒙E{n:05d}" for n in range(20)]
    kafka.send_json("sightings", [
        {"id": f"e{n}", "ts": "2026-11-29T12:00:00+08:00", "site": "CP01", "dir": "in",
         "subject": {"type": "vehicle", "id": i}} for n, i in enumerate(ids)])
    keys = {f"s:vehicle:{i}".encode() for i in ids}

    def last_values() -> dict[bytes, bytes | None]:
        out: dict[bytes, bytes | None] = {}
        for m in kafka.read_all("rings-subject-state-changelog"):
            if m.key in keys:
                out[m.key] = m.value
        return out
    kafka.barrier(worker, ts="2026-11-29T13:00:00+08:00", judged="2026-11-29T12:50:00+08:00")
    kept = wait_until(lambda: (lambda v: v if len(v) == len(keys) else None)(last_values()),
                      60, "the subjects' state in the changelog")
    assert all(v is not None for v in kept.values())         # within the horizon: kept
    # Event time moves past the horizon (other traffic): the state goes, key by key.
    kafka.barrier(worker, ts="2026-11-29T15:30:00+08:00", judged="2026-11-29T15:20:00+08:00")
    wait_until(lambda: all(v is None for v in last_values().values()), 60,
               "every subject's state to be deleted (a tombstone in its changelog)")
