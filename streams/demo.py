"""`rings demo`: the whole engine live on one machine, for the README's Quick start.

Starts (or reuses) the local broker, a worker in a subprocess, simulated traffic paced to the
wall clock with a few malformed records mixed in, and prints alerts as they arrive. Stops
everything it started on Ctrl-C or after --duration seconds, then prints what happened.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer

from .config import ALERTS, SIGHTINGS, SIGHTINGS_DLQ, WATCHLIST, KafkaSettings

ROOT = Path(__file__).resolve().parent.parent
COLOURS = {"critical": "\033[1;31m", "high": "\033[31m", "medium": "\033[33m",
           "low": "\033[36m"}
BAD_RECORDS = [b'{"id": "demo-bad-1", "ts": "yesterday", "site": "CP01", '
               b'"subject": {"type": "vehicle", "id": "X"}}',
               b'this is not json',
               b'{"id": "demo-bad-3", "ts": 1, "site": "NOPE", '
               b'"subject": {"type": "vehicle", "id": "X"}}']


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _local_broker() -> str:
    out = subprocess.run([str(ROOT / "deploy" / "local-kafka"), "up"], check=True,
                         stdout=subprocess.PIPE, text=True).stdout.strip().splitlines()
    return out[-1].strip()


def _wait_http(url: str, proc: subprocess.Popen, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the worker exited with code {proc.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=1) as r:
                if r.status == 200:
                    return
        except OSError:
            time.sleep(0.3)
    raise RuntimeError(f"the worker did not become ready within {timeout:.0f}s")


def _stop(proc: subprocess.Popen | None, timeout: float = 20.0) -> None:
    if proc is None or proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


async def _show_alerts(settings: KafkaSettings, stop: threading.Event, counts: dict) -> None:
    consumer = AIOKafkaConsumer(settings.topic(ALERTS), settings.topic(SIGHTINGS_DLQ),
                                bootstrap_servers=settings.broker, group_id=None,
                                auto_offset_reset="earliest", **settings.client_options)
    await consumer.start()
    tty = sys.stdout.isatty()
    try:
        while not stop.is_set():
            batch = await consumer.getmany(timeout_ms=200)
            for tp, msgs in batch.items():
                for m in msgs:
                    d = orjson.loads(m.value)
                    if tp.topic == settings.topic(SIGHTINGS_DLQ):
                        counts["dlq"] += 1
                        print(f"  dead letter: {d['reason']}: {d['detail']}", flush=True)
                        continue
                    counts["alerts"] += 1
                    sev = d["severity"]
                    c, r = (COLOURS.get(sev, ""), "\033[0m") if tty else ("", "")
                    print(f"{d['ts'][11:19]}  {c}{sev:<8}{r} {d['rule']:<14} {d['summary']}",
                          flush=True)
    finally:
        await consumer.stop()


def run_demo(args: Any) -> int:
    broker = args.broker or os.environ.get("RINGS_BROKER") or _local_broker()
    prefix = os.environ.get("RINGS_TOPIC_PREFIX") or f"demo-{int(time.time())}-"
    settings = KafkaSettings(broker=broker, prefix=prefix)
    env = {**os.environ, "RINGS_BROKER": broker, "RINGS_TOPIC_PREFIX": prefix}
    tmp = tempfile.mkdtemp(prefix="rings-demo-")
    port = _free_port()
    log_path = os.path.join(tmp, "worker.log")
    print(f"rings demo: broker {broker}, topics prefixed {prefix!r}, worker log {log_path}",
          file=sys.stderr)
    worker = sim = None
    stop = threading.Event()
    counts = {"alerts": 0, "dlq": 0}
    shower = None
    started = time.monotonic()
    try:
        with open(log_path, "wb") as log:
            worker = subprocess.Popen(
                [sys.executable, "-m", "rings.cli", "worker", "--web-port", str(port),
                 "--data-dir", os.path.join(tmp, "data")],
                env=env, stdout=log, stderr=subprocess.STDOUT)
        _wait_http(f"http://127.0.0.1:{port}/metrics", worker, 120)
        print(f"rings demo: worker ready (metrics on http://127.0.0.1:{port}/metrics); "
              f"simulating {args.rate:g} sightings/s", file=sys.stderr)
        shower = threading.Thread(target=lambda: asyncio.run(
            _show_alerts(settings, stop, counts)), daemon=True)
        shower.start()
        from .kafka_io import publish_lines
        asyncio.run(publish_lines(settings, SIGHTINGS, BAD_RECORDS))
        sim_cmd = [sys.executable, "-m", "rings.cli", "simulate", "--topic", SIGHTINGS,
                   "--watchlist-topic", WATCHLIST, "--realtime", "--rate", str(args.rate),
                   "--watch-fraction", "0.002",
                   "--duration", str(args.duration if args.duration > 0 else 86400)]
        sim = subprocess.Popen(sim_cmd, env=env, stdout=subprocess.DEVNULL)
        while args.duration <= 0 or time.monotonic() - started < args.duration + 5:
            if sim.poll() is not None and sim.returncode != 0:
                raise RuntimeError(f"the simulator exited with code {sim.returncode}")
            if worker.poll() is not None:
                raise RuntimeError(f"the worker exited with code {worker.returncode}; "
                                   f"see {log_path}")
            time.sleep(0.2)
    except KeyboardInterrupt:
        print("\nrings demo: stopping", file=sys.stderr)
    except RuntimeError as e:
        print(f"rings demo: {e}", file=sys.stderr)
        return 1
    finally:
        _stop(sim)
        _stop(worker)
        stop.set()
        if shower is not None:
            shower.join(5)
    print(f"rings demo: {counts['alerts']} alerts, {counts['dlq']} dead letters in "
          f"{time.monotonic() - started:.0f}s. The broker keeps running "
          f"(deploy/local-kafka down stops it).", file=sys.stderr)
    return 0
