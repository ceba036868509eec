"""Hot reload on the real broker: `rings rules push` changes a threshold in a running worker,
the next matching input is judged by the new value, an invalid set is refused, and a
restarted worker keeps the pushed set."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import orjson

from rings.ruleset import load_rules

from .harness import ROOT, Kafka, wait_until
from .test_cli_kafka import rings

# CP01 and CP02 are 51.5 km apart: 15 minutes between them is 206 km/h, under the shipped
# cloned-plate limit (250 km/h) and over the pushed one (150 km/h).
RULES = ROOT / "rules"


def drive(vehicle: str, start: str, end: str) -> list[dict]:
    return [{"id": f"{vehicle}-{site}", "ts": ts, "site": site, "dir": "in",
             "subject": {"type": "vehicle", "id": vehicle}}
            for site, ts in (("CP01", start), ("CP02", end))]


def rules_copy(tmp: Path, name: str, edit: tuple[str, str]) -> Path:
    d = tmp / name
    shutil.copytree(RULES, d, ignore=shutil.ignore_patterns("tests", "net.yaml"))
    text = (d / "rules.yaml").read_text()
    assert edit[0] in text
    (d / "rules.yaml").write_text(text.replace(edit[0], edit[1], 1))
    return d


def version_of(worker) -> str | None:
    m = re.search(r'rings_rules_version_info\{version="([0-9a-f]+)"\} 1\.0', worker.metrics())
    return m.group(1) if m else None


def test_push_changes_a_threshold_in_a_running_worker(kafka: Kafka, start_worker, broker: str,
                                                       prefix: str, tmp_path: Path) -> None:
    worker = start_worker()
    shipped = load_rules(str(RULES)).version
    assert version_of(worker) == shipped

    # Judged by the shipped limit: 206 km/h is no cloned plate.
    kafka.send_json("sightings", drive("蒙A00001", "2026-11-29T12:10:00+08:00",
                                       "2026-11-29T12:25:00+08:00"))
    kafka.barrier(worker, ts="2026-11-29T13:00:00+08:00", judged="2026-11-29T12:30:00+08:00")
    assert [a for a in kafka.alerts() if a["rule"] == "cloned-plate"] == []

    # An invalid set is refused before it reaches the topic, with the error at its line.
    broken = rules_copy(tmp_path, "broken", ("max_kmh: 250", "max_kmh: fast"))
    bad = rings("rules", "push", str(broken), "--by", "author", "--reason", "typo",
                broker=broker, prefix=prefix)
    assert bad.returncode == 1
    assert re.search(rf"{re.escape(str(broken))}/rules.yaml:\d+:\d+: max_kmh must be a number",
                     bad.stderr.decode()), bad.stderr

    # A lower limit, pushed.
    stricter = rules_copy(tmp_path, "stricter", ("max_kmh: 250", "max_kmh: 150"))
    new = load_rules(str(stricter)).version
    ok = rings("rules", "push", str(stricter), "--by", "rule-author-3",
               "--reason", "tighter cloned-plate limit", broker=broker, prefix=prefix)
    assert ok.returncode == 0 and new.encode() in ok.stdout, ok.stderr
    wait_until(lambda: version_of(worker) == new, 30, "the worker to switch rule sets")

    # The next matching input is judged by the new value, and says so.
    kafka.send_json("sightings", drive("蒙A00002", "2026-11-29T13:10:00+08:00",
                                       "2026-11-29T13:25:00+08:00"))
    kafka.barrier(worker, ts="2026-11-29T14:00:00+08:00", judged="2026-11-29T13:30:00+08:00")
    cloned = [a for a in kafka.alerts() if a["rule"] == "cloned-plate"]
    assert [(a["subject"]["id"], a["rules_version"]) for a in cloned] == [("蒙A00002", new)]
    assert cloned[0]["details"]["km"] == 51.5
    assert {a["rules_version"] for a in kafka.alerts() if a["ts"] >= "2026-11-29T13:10"} == \
        {new}

    # A record on the topic that is not a valid set is refused by the worker, which keeps
    # running the set it has.
    kafka.send("rules", [(b"rules", orjson.dumps({"format": 1, "files": [
        {"name": "rules.yaml", "text": "rules:\n  - id: no-such-kind\n"}]}))])
    wait_until(lambda: 'rings_rules_reloads_total{result="refused"} 1.0' in worker.metrics(),
               30, "the worker to refuse the invalid record")
    assert version_of(worker) == new

    audit = [orjson.loads(m.value) for m in kafka.read_all("rules-audit")]
    assert [(a["version"], a["by"], a["reason"]) for a in audit] == [
        (new, "rule-author-3", "tighter cloned-plate limit")]

    # A restart keeps the pushed set, not the files the worker is started with.
    worker.stop()
    again = start_worker("w2")
    assert version_of(again) == new
