"""The Kafka commands as a user runs them: `rings publish` and `rings tail`."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import orjson

from .harness import ROOT, Kafka


def rings(*args: str, broker: str, prefix: str, **kw) -> subprocess.CompletedProcess:
    env = {**os.environ, "RINGS_BROKER": broker, "RINGS_TOPIC_PREFIX": prefix}
    return subprocess.run([sys.executable, "-m", "rings.cli", *args], env=env, cwd=ROOT,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=120, **kw)


def test_publish_sends_lines_verbatim_and_tail_prints_them(kafka: Kafka, tmp_path: Path) -> None:
    good = {"id": "a1", "ts": "2026-11-29T08:30:00+08:00", "site": "CP01",
            "subject": {"type": "vehicle", "id": "蒙K3X521"}}
    lines = [orjson.dumps(good), b"not json at all", b'{"subject": 5}', b"  ", b"last"]
    f = tmp_path / "in.jsonl"
    f.write_bytes(b"\n".join(lines) + b"\n")

    r = rings("publish", str(f), "--topic", "sightings", broker=kafka.broker,
              prefix=kafka.prefix)
    assert r.returncode == 0, r.stderr
    assert b"4 messages" in r.stderr          # the blank line is not a message

    msgs = kafka.read_all("sightings")
    assert sorted(m.value for m in msgs) == sorted(x for x in lines if x.strip())
    keys = {m.value: m.key for m in msgs}
    assert keys[orjson.dumps(good)] == "vehicle:蒙K3X521".encode()
    assert keys[b"not json at all"] is None

    r = rings("tail", "sightings", "--from-beginning", "--idle-timeout", "2",
              broker=kafka.broker, prefix=kafka.prefix)
    assert r.returncode == 0, r.stderr
    assert sorted(r.stdout.splitlines()) == sorted(x for x in lines if x.strip())


def test_tail_without_from_beginning_shows_only_new_messages(kafka: Kafka) -> None:
    kafka.send("alerts", [(None, b'{"old": 1}')])
    env = {**os.environ, "RINGS_BROKER": kafka.broker, "RINGS_TOPIC_PREFIX": kafka.prefix}
    proc = subprocess.Popen([sys.executable, "-m", "rings.cli", "tail", "alerts", "--max", "1"],
                            env=env, cwd=ROOT, stdout=subprocess.PIPE)
    try:
        # The tail may join after a first message is sent: keep sending new ones until
        # it prints one, and check that it is never the old one.
        import time
        deadline = time.monotonic() + 60
        n = 0
        while proc.poll() is None and time.monotonic() < deadline:
            kafka.send("alerts", [(None, orjson.dumps({"new": n}))])
            n += 1
            try:
                proc.wait(1.0)
            except subprocess.TimeoutExpired:
                pass
        out = proc.stdout.read() if proc.stdout else b""
        assert proc.returncode == 0
        assert orjson.loads(out.splitlines()[0]).get("new") is not None
    finally:
        if proc.poll() is None:
            proc.kill()
