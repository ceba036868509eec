"""`rings demo`: the whole engine live on one machine, for the README's Quick start.

Starts (or reuses) the local broker, a worker in a subprocess, simulated traffic paced to the
wall clock with a few malformed records mixed in, and prints alerts as they arrive. Stops
everything it started on Ctrl-C or after --duration seconds, then prints what happened.

It also shows a lockdown plan at work: the worker runs on a copy of the rules whose plans'
deadlines are compressed tenfold (city-lockdown: respond 30 s, close 60 s), simulated
checkpoints answer the orders ten times faster than real ones (rings/checkpoints.py), and
about 15 s into the traffic the demo activates `city-lockdown`; each status change is
printed beside the alerts, and the final status (times, or the overdue sites) at the end.
"""

from __future__ import annotations

import asyncio
import dataclasses
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

from rings.timefmt import format_ts, parse_ts

from .config import (ALERTS, PLAN_COMMANDS, PLAN_STATUS, SIGHTINGS, SIGHTINGS_DLQ, WATCHLIST,
                     KafkaSettings)

ROOT = Path(__file__).resolve().parent.parent
COLOURS = {"critical": "\033[1;31m", "high": "\033[31m", "medium": "\033[33m",
           "low": "\033[36m"}
BAD_RECORDS = [b'{"id": "demo-bad-1", "ts": "yesterday", "site": "CP01", '
               b'"subject": {"type": "vehicle", "id": "X"}}',
               b'this is not json',
               b'{"id": "demo-bad-3", "ts": 1, "site": "NOPE", '
               b'"subject": {"type": "vehicle", "id": "X"}}']
PLAN_SCALE = 10             # plan deadlines divided by this, checkpoint answers sped up by it
DEMO_PLAN = "city-lockdown"
PLAN_AT_S = 15.0            # seconds into the traffic when the demo activates DEMO_PLAN


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


def _compressed_rules(rules: Path, dest: str, scale: int) -> str:
    """A copy of the rule files in `dest` with every plan's deadlines divided by `scale`."""
    import shutil

    import yaml

    from rings.ruleset import rule_files
    from rings.timefmt import parse_duration

    os.makedirs(dest, exist_ok=True)
    for f in rule_files(str(rules)):
        with open(f, encoding="utf-8") as fh:
            doc = yaml.safe_load(fh)
        target = os.path.join(dest, os.path.basename(f))
        if not isinstance(doc, dict) or not isinstance(doc.get("plans"), list):
            shutil.copyfile(f, target)
            continue
        for plan in doc["plans"]:
            for k in ("respond", "close"):
                if isinstance(plan, dict) and k in plan:
                    plan[k] = f"{parse_duration(plan[k]) / scale / 1000:g}s"
        with open(target, "w", encoding="utf-8") as fh:
            fh.write(f"# {f} with deadlines divided by {scale} for rings demo\n")
            yaml.safe_dump(doc, fh, sort_keys=False, allow_unicode=True)
    return dest


def _plan_line(d: dict, tty: bool, tz: int) -> str:
    sites = d.get("sites") or {}
    n = len(sites)
    answered = sum(v in ("acknowledged", "closed") for v in sites.values())
    closed = sum(v == "closed" for v in sites.values())
    state = d["state"]
    c, r = (COLOURS["high"] if state == "overdue" else "\033[32m" if state == "closed"
            else "\033[1m", "\033[0m") if tty else ("", "")
    updated = format_ts(parse_ts(d["updated"])[0], tz) if d.get("updated") else " " * 19
    line = (f"{updated[11:19]}  {c}{'plan':<8}{r} {d['plan']:<14} "
            f"{c}{state:<10}{r} acknowledged {answered}/{n}, closed {closed}/{n}")
    if d.get("overdue"):
        line += f"; overdue: {', '.join(d['overdue'])}"
    if d.get("late"):
        line += f"; late: {', '.join(d['late'])}"
    return line


def _plan_summary(d: dict) -> str:
    sites = d.get("sites") or {}
    n = len(sites)
    t_r, t_c = d.get("time_to_respond_s"), d.get("time_to_close_s")
    acked = sum(v in ("acknowledged", "closed") for v in sites.values())
    closed = sum(v == "closed" for v in sites.values())
    msg = (f"rings demo: plan {d['plan']} (activation {d['activation']}): {d['state']}: "
           + (f"all {n} sites responded in {t_r:.1f}s" if t_r is not None
              else f"{acked}/{n} sites acknowledged")
           + (f" and closed in {t_c:.1f}s" if t_c is not None else f", {closed}/{n} closed"))
    if d.get("overdue"):
        msg += f"; overdue (still missing after a deadline): {', '.join(d['overdue'])}"
    if d.get("late"):
        msg += f"; late (answered after a deadline): {', '.join(d['late'])}"
    return msg


def _pick_seed(model_args: dict, activation: str, sites: list[str]) -> tuple[int, dict]:
    """The first seed at which some checkpoints answer late and one never does, so the demo
    shows the overdue proof, not only a plan that went well. Returns (seed, kinds count)."""
    from rings.checkpoints import KINDS, LATE_ACK, LATE_CLOSE, NEVER, Checkpoints

    seed, kinds = 1, {}
    for seed in range(1, 1000):
        cp = Checkpoints(seed=seed, **model_args)
        got = [cp.kind(activation, s) for s in sites]
        kinds = {k: got.count(k) for k in KINDS}
        if kinds[NEVER] == 1 and kinds[LATE_ACK] >= 1 and kinds[LATE_CLOSE] >= 1:
            break
    return seed, kinds


async def _show_alerts(settings: KafkaSettings, stop: threading.Event, counts: dict) -> None:
    consumer = AIOKafkaConsumer(settings.topic(ALERTS), settings.topic(SIGHTINGS_DLQ),
                                settings.topic(PLAN_STATUS),
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
                    if tp.topic == settings.topic(PLAN_STATUS):
                        counts["plans"][d["activation"]] = d
                        print(_plan_line(d, tty, counts.get("tz", 480)), flush=True)
                        continue
                    if tp.topic == settings.topic(SIGHTINGS_DLQ):
                        counts["dlq"] += 1
                        print(f"  dead letter: {d['reason']}: {d['detail']}", flush=True)
                        continue
                    counts["alerts"] += 1
                    ts = d["ts"]
                    # plan-overdue alerts carry the wall clock in UTC: show them (and the
                    # plan lines) in the zone of the traffic's alerts
                    if d["rule"] == "plan-overdue":
                        ts = format_ts(parse_ts(ts)[0], counts.get("tz", 480))
                    else:
                        counts["tz"] = parse_ts(ts)[1]
                    sev = d["severity"]
                    c, r = (COLOURS.get(sev, ""), "\033[0m") if tty else ("", "")
                    print(f"{ts[11:19]}  {c}{sev:<8}{r} {d['rule']:<14} {d['summary']}",
                          flush=True)
    finally:
        await consumer.stop()


def _start_checkpoints(settings: KafkaSettings, rules_dir: str, stop: threading.Event
                       ) -> tuple[threading.Thread | None, bytes | None]:
    """Start the simulated checkpoints (a thread) and return it with the activate command
    to send; the thread answers every order sent after this returns. (None, None) when the
    rules have no DEMO_PLAN."""
    from rings.checkpoints import LATE_ACK, LATE_CLOSE, NEVER, ON_TIME, Checkpoints
    from rings.cli import DEFAULT_NET
    from rings.lockdown import activation_id
    from rings.net import load_net
    from rings.ruleset import load_rules

    from .checkpoint_sim import answer_orders

    plan = load_rules(rules_dir).plans.get(DEMO_PLAN)
    if plan is None:
        print(f"rings demo: the rules have no plan {DEMO_PLAN}; no plan is shown",
              file=sys.stderr)
        return None, None
    sites = plan.sites(load_net(str(DEFAULT_NET)), None)
    cid = f"demo-{int(time.time() * 1000)}"
    model_args = {"late_fraction": 0.15, "never_fraction": 0.05, "time_scale": PLAN_SCALE}
    seed, kinds = _pick_seed(model_args, activation_id("command", DEMO_PLAN, cid), sites)
    model = Checkpoints(seed=seed, **model_args)
    ready = threading.Event()
    failed: list[BaseException] = []

    def run() -> None:
        try:
            asyncio.run(answer_orders(settings, model, quiet=True, should_stop=stop.is_set,
                                      ready=ready.set))
        except Exception as e:  # noqa: BLE001 - shown; the traffic and alerts go on
            failed.append(e)
            print(f"rings demo: the checkpoint simulator stopped: {e}", file=sys.stderr)
            ready.set()

    t = threading.Thread(target=run, daemon=True)
    t.start()
    if not ready.wait(60) or failed:
        raise RuntimeError(f"the checkpoint simulator did not start: {failed or 'timeout'}")
    print(f"rings demo: in {PLAN_AT_S:g}s, plan {DEMO_PLAN} is activated: {len(sites)} "
          f"checkpoints, deadlines divided by {PLAN_SCALE} (respond "
          f"{plan.respond_ms / 1000:g}s, close {plan.close_ms / 1000:g}s); simulated "
          f"checkpoints {PLAN_SCALE}x faster (seed {seed}): {kinds[ON_TIME]} on time, "
          f"{kinds[LATE_ACK]} late to acknowledge, {kinds[LATE_CLOSE]} late to close, "
          f"{kinds[NEVER]} silent", file=sys.stderr)
    cmd = {"cmd": "activate", "plan": DEMO_PLAN, "id": cid, "by": "demo-duty-officer",
           "reason": "demo"}
    return t, orjson.dumps(cmd)


def run_demo(args: Any) -> int:
    settings = KafkaSettings.from_env()     # RINGS_KAFKA_* (security) checked before anything
    broker = args.broker or os.environ.get("RINGS_BROKER") or _local_broker()
    prefix = os.environ.get("RINGS_TOPIC_PREFIX") or f"demo-{int(time.time())}-"
    settings = dataclasses.replace(settings, broker=broker, prefix=prefix)
    env = {**os.environ, "RINGS_BROKER": broker, "RINGS_TOPIC_PREFIX": prefix}
    tmp = tempfile.mkdtemp(prefix="rings-demo-")
    port = _free_port()
    log_path = os.path.join(tmp, "worker.log")
    print(f"rings demo: broker {broker}, topics prefixed {prefix!r}, worker log {log_path}",
          file=sys.stderr)
    from rings.cli import DEFAULT_NET, DEFAULT_RULES
    rules_dir = _compressed_rules(DEFAULT_RULES, os.path.join(tmp, "rules"), PLAN_SCALE)
    worker = sim = None
    stop = threading.Event()
    counts: dict[str, Any] = {"alerts": 0, "dlq": 0, "plans": {}}
    shower = checkpoints = None
    started = time.monotonic()
    try:
        with open(log_path, "wb") as log:
            worker = subprocess.Popen(
                [sys.executable, "-m", "rings.cli", "worker", "--web-port", str(port),
                 "--data-dir", os.path.join(tmp, "data"), "--rules", rules_dir,
                 "--net", str(DEFAULT_NET)],
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
        traffic = time.monotonic()
        checkpoints, activate = _start_checkpoints(settings, rules_dir, stop)
        while args.duration <= 0 or time.monotonic() - started < args.duration + 5:
            if activate is not None and time.monotonic() - traffic >= PLAN_AT_S:
                asyncio.run(publish_lines(settings, PLAN_COMMANDS, [activate]))
                activate = None
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
        if checkpoints is not None:
            checkpoints.join(5)
    for d in counts["plans"].values():
        print(_plan_summary(d), file=sys.stderr)
    print(f"rings demo: {counts['alerts']} alerts, {counts['dlq']} dead letters in "
          f"{time.monotonic() - started:.0f}s. The broker keeps running "
          f"(deploy/local-kafka down stops it).", file=sys.stderr)
    return 0
