"""Operators' view, with the real tools: a worker fed by the simulator, scraped by a real
Prometheus (Debian's package) running the shipped config and alerting rules.

One worker run (module fixture) serves every test here: simulated traffic with watchlist
hits, three malformed records, and a `city-lockdown` activation answered by simulated
checkpoints. Then Prometheus must evaluate every PromQL expression of the Grafana dashboard
and of the alerting rules (and each side of their comparisons) without error and with data;
`promtool check metrics` must be clean on the worker's output; no subject id may appear in a
label or in the worker's JSON log.
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import subprocess
import sys
import time
import urllib.parse
import urllib.request
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import orjson
import pytest
import yaml

from rings.timefmt import format_ts

from .harness import ROOT, Kafka, Worker, free_port, wait_until

DEPLOY = ROOT / "deploy"
PROM_DIR = DEPLOY / "prometheus"
DASHBOARD = DEPLOY / "grafana" / "dashboards" / "rings.json"
# Grafana's variables, as Grafana would expand them on this short run (All workers).
GRAFANA_VARS = {"$__rate_interval": "2m", "$__range": "10m", "$__interval": "15s",
                "${instance}": ".*", "$instance": ".*"}
TRAFFIC_S = 20            # seconds of simulated traffic, paced to the wall clock
RATE = 100                # sightings per second


# ------------------------------------------------------------------------------ tools

def tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        # The test setup (make test: deploy/prometheus/install-tools) installs them.
        subprocess.run([str(PROM_DIR / "install-tools")], check=False)
        path = shutil.which(name)
    if path is None:
        pytest.fail(f"{name} is not installed: run deploy/prometheus/install-tools as root")
    return path


class Prometheus:
    """A real Prometheus on a loopback port, on the shipped config with its own targets."""

    def __init__(self, workdir: Path, targets: list[str]) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        conf = yaml.safe_load((PROM_DIR / "prometheus.yml").read_text())
        conf["global"]["scrape_interval"] = "1s"
        conf["global"]["evaluation_interval"] = "1s"
        conf["rule_files"] = [str(PROM_DIR / f) for f in conf["rule_files"]]
        (job,) = [j for j in conf["scrape_configs"] if j["job_name"] == "rings"]
        job["static_configs"] = [{"targets": targets}]
        self.config = workdir / "prometheus.yml"
        self.config.write_text(yaml.safe_dump(conf))
        check = subprocess.run([tool("promtool"), "check", "config", str(self.config)],
                               capture_output=True, text=True)
        assert check.returncode == 0, check.stdout + check.stderr
        self.log_path = workdir / "prometheus.log"
        self._log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(
            [tool("prometheus"), f"--config.file={self.config}",
             f"--storage.tsdb.path={workdir / 'tsdb'}",
             f"--web.listen-address=127.0.0.1:{self.port}"],
            stdout=self._log, stderr=subprocess.STDOUT, cwd=workdir)

    def get(self, path: str, **params: str) -> Any:
        url = self.url + path + ("?" + urllib.parse.urlencode(params) if params else "")
        try:
            with urllib.request.urlopen(url, timeout=5) as r:
                return json.loads(r.read())
        except urllib.error.HTTPError as e:       # 400/422: a PromQL error, in JSON
            return json.loads(e.read())

    def wait_ready(self) -> None:
        def ready() -> bool:
            if self.proc.poll() is not None:
                raise AssertionError("prometheus exited:\n" + self.log_tail())
            try:
                with urllib.request.urlopen(self.url + "/-/ready", timeout=2) as r:
                    return r.status == 200
            except OSError:
                return False
        wait_until(ready, 30, "prometheus to be ready")

    def query(self, expr: str) -> list[dict]:
        """An instant query now; fails on any PromQL error."""
        r = self.get("/api/v1/query", query=expr)
        assert r["status"] == "success", f"{expr}: {r.get('errorType')}: {r.get('error')}"
        assert r["data"]["resultType"] == "vector", expr
        return r["data"]["result"]

    def value(self, expr: str) -> float | None:
        res = self.query(expr)
        return float(res[0]["value"][1]) if res else None

    def log_tail(self) -> str:
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-40:])

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()


# ------------------------------------------------------------------------------ PromQL

def _top_level_split(expr: str, ops: list[str]) -> list[str] | None:
    """Split `expr` at the first operator of `ops` outside brackets and strings (as whole
    words for and/or/unless); None if there is none."""
    depth, i, quote = 0, 0, ""
    while i < len(expr):
        c = expr[i]
        if quote:
            if c == "\\":
                i += 1
            elif c == quote:
                quote = ""
        elif c in "\"'`":
            quote = c
        elif c in "([{":
            depth += 1
        elif c in ")]}":
            depth -= 1
        elif depth == 0:
            for op in ops:
                if not expr.startswith(op, i):
                    continue
                if op.isalpha() and (_word(expr[i - 1:i]) or
                                     _word(expr[i + len(op):i + len(op) + 1])):
                    continue
                return [expr[:i], expr[i + len(op):]]
        i += 1
    return None


def _word(c: str) -> bool:
    return c.isalnum() or c in "_:"


def operands(expr: str) -> list[str]:
    """The sides of an expression's top-level set operators and comparisons, without the
    number literals they are compared with: each must return data on a healthy worker,
    even when the comparison itself (an alert's condition) returns none."""
    parts = _top_level_split(expr, ["and", "unless", "or"])
    if parts:
        return [o for p in parts for o in operands(p)]
    parts = _top_level_split(expr, ["==", "!=", ">=", "<=", ">", "<"])
    if parts is None:
        return [expr.strip()]
    lhs, rhs = parts
    rhs = re.sub(r"^\s*bool\b", "", rhs)
    return [s.strip() for s in (lhs, rhs) if not re.fullmatch(r"\s*[-+]?[\d.]+(e[-+]?\d+)?\s*", s)]


def test_operands_split_at_top_level_only() -> None:
    assert operands('up{job="rings"} == 0') == ['up{job="rings"}']
    assert operands('sum by (t) (x{a!="b"}) > 1000\nand\nsum by (t) (deriv(x[10m])) > 0') == \
        ["sum by (t) (x{a!=\"b\"})", "sum by (t) (deriv(x[10m]))"]
    assert operands("histogram_quantile(0.99, sum by (le) (rate(h[5m]))) > 0.05") == \
        ["histogram_quantile(0.99, sum by (le) (rate(h[5m])))"]
    assert operands("time() - max(w > 0)") == ["time() - max(w > 0)"]
    assert operands('a{x="and"} or b') == ['a{x="and"}', "b"]
    assert operands("rings_or_x unless rings_and") == ["rings_or_x", "rings_and"]


def grafana_expr(expr: str) -> str:
    for var, value in sorted(GRAFANA_VARS.items(), key=lambda kv: -len(kv[0])):
        expr = expr.replace(var, value)
    assert "$" not in expr, f"a Grafana variable the test does not know: {expr}"
    return expr


def dashboard_queries() -> list[tuple[str, str]]:
    """(panel title, PromQL) for every target of the dashboard."""
    dash = json.loads(DASHBOARD.read_text())
    out = []
    for p in dash["panels"]:
        for t in p.get("targets", []):
            out.append((p["title"], grafana_expr(t["expr"])))
    return out


def rule_exprs() -> list[tuple[str, str]]:
    rules = yaml.safe_load((PROM_DIR / "rings.rules.yml").read_text())
    return [(r.get("alert") or r["record"], r["expr"])
            for g in rules["groups"] for r in g["rules"]]


def finite(result: list[dict]) -> bool:
    return any(math.isfinite(float(s["value"][1])) for s in result)


# ------------------------------------------------------------------------------ the run

@dataclass
class Live:
    worker: Worker
    prom: Prometheus
    kafka: Kafka
    sightings: int           # valid sightings published
    subject_ids: set[str]    # every subject id of the traffic (plates and person ids)
    subjects: int            # distinct subjects sighted (main subjects: they get state)
    metrics_text: str        # the worker's /metrics after everything was processed


def rings_cli(*args: str, env: dict[str, str], **kw: Any) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "rings.cli", *args], env=env, cwd=ROOT,
                          capture_output=True, text=True, **kw)


def total(text: str, name: str, **labels: str) -> float:
    out = 0.0
    for line in text.splitlines():
        if line.startswith(name + "{") or line.startswith(name + " "):
            if all(f'{k}="{v}"' in line for k, v in labels.items()):
                out += float(line.rsplit(" ", 1)[1])
    return out


@pytest.fixture(scope="module")
def live(broker: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    tmp = tmp_path_factory.mktemp("prometheus")
    prefix = f"it-{uuid.uuid4().hex[:10]}-"
    env = {**os.environ, "RINGS_BROKER": broker, "RINGS_TOPIC_PREFIX": prefix}
    kafka = Kafka(broker, prefix)
    worker = Worker(broker, prefix, tmp / "data", tmp / "worker.log",
                    ["--log-format", "json"])
    prom = Prometheus(tmp, [f"127.0.0.1:{worker.port}"])
    procs: list[subprocess.Popen] = []
    try:
        prom.wait_ready()
        worker.wait_ready()
        # Scraped before anything happens (counters seen at zero), or an increase over the
        # run would miss the first activation.
        wait_until(lambda: (prom.value('count(rings_plan_activations_total{job="rings"})')
                            or 0) > 0, 30, "prometheus to scrape the idle worker")
        # Traffic: the simulator's day written to a file (to know its subjects), and the
        # very same records (same seed and start) published paced to the wall clock.
        start = format_ts(int(time.time() * 1000), 480)
        sim = ["simulate", "--rate", str(RATE), "--duration", str(TRAFFIC_S), "--seed", "11",
               "--start", start, "--watch-fraction", "0.05"]
        r = rings_cli(*sim, "-o", str(tmp / "day.jsonl"), env=env)
        assert r.returncode == 0, r.stderr
        recs = [orjson.loads(line) for line in (tmp / "day.jsonl").read_bytes().splitlines()]
        ids = {s["subject"]["id"] for s in recs} | {w["id"] for s in recs
                                                    for w in s.get("with", [])}
        procs.append(subprocess.Popen(
            [sys.executable, "-m", "rings.cli", *sim, "--topic", "sightings",
             "--watchlist-topic", "watchlist", "--realtime"],
            env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        kafka.send("sightings", [(b"x", b"{not json"), (b"y", b"\xff\xfe"),
                                 (b"z", orjson.dumps({**recs[0], "site": "NOWHERE"}))])
        # A plan: simulated checkpoints answer 30 times faster than people, none late.
        procs.append(subprocess.Popen(
            [sys.executable, "-m", "rings.cli", "simulate", "--answer-orders",
             "--from-beginning", "--time-scale", "30", "--late-fraction", "0",
             "--never-fraction", "0", "--quiet", "--duration", "300"],
            env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        r = rings_cli("plan", "activate", "city-lockdown", "--by", "ops-test",
                      "--reason", "prometheus test", env=env, timeout=60)
        assert r.returncode == 0, r.stdout + r.stderr
        # Everything processed: every sighting counted, the plan closed...
        wait_until(lambda: total(worker.metrics(), "rings_sightings_total") == len(recs)
                   and total(worker.metrics(), "rings_plan_time_to_close_seconds_count",
                             plan="city-lockdown") == 1,
                   TRAFFIC_S + 90, "the traffic and the plan to be processed")
        # ...and scraped since.
        wait_until(lambda: prom.value('sum(rings_sightings_total{job="rings"})') == len(recs)
                   and prom.value('sum(rings_plan_time_to_close_seconds_count{job="rings"})')
                   == 1, 30, "prometheus to scrape the final counts")
        subjects = len({(s["subject"]["type"], s["subject"]["id"]) for s in recs})
        yield Live(worker, prom, kafka, len(recs), ids, subjects, worker.metrics())
    finally:
        for p in procs:
            if p.poll() is None:
                p.terminate()
                p.wait(20)
        prom.stop()
        worker.stop()


# ------------------------------------------------------------------------------ tests

def test_promtool_checks_the_config_the_rules_and_their_unit_tests() -> None:
    for args in (["check", "config", "prometheus.yml"], ["check", "rules", "rings.rules.yml"],
                 ["test", "rules", "tests/rings.rules.test.yml"]):
        r = subprocess.run([tool("promtool"), *args], cwd=PROM_DIR, capture_output=True,
                           text=True)
        assert r.returncode == 0, f"promtool {' '.join(args)}:\n{r.stdout}{r.stderr}"
        assert "SUCCESS" in r.stdout + r.stderr


def test_promtool_check_metrics_is_clean(live: Live) -> None:
    r = subprocess.run([tool("promtool"), "check", "metrics"], input=live.metrics_text,
                       capture_output=True, text=True)
    assert (r.returncode, r.stdout + r.stderr) == (0, "")
    for name in ("rings_sightings_total", "rings_alerts_total", "rings_alert_latency_seconds",
                 "rings_dlq_total", "rings_late_events_total", "rings_state_subjects",
                 "rings_consumer_lag_records", "rings_plan_activations_total",
                 "rings_plan_time_to_respond_seconds", "rings_plan_time_to_close_seconds",
                 "rings_plan_overdue_sites", "rings_rules_version_info",
                 "rings_rocksdb_memory_bytes", "rings_state_cache_entities",
                 "process_resident_memory_bytes"):
        assert f"# HELP {name} " in live.metrics_text, name


def test_metrics_count_what_happened(live: Live) -> None:
    m = live.metrics_text
    assert total(m, "rings_sightings_total") == live.sightings
    assert total(m, "rings_dlq_total", reason="bad-json") == 2      # bad JSON, bad UTF-8
    assert total(m, "rings_dlq_total", reason="unknown-site") == 1
    assert total(m, "rings_alerts_total", rule="watchlist-hit") > 0
    assert total(m, "rings_alert_latency_seconds_count") >= \
        total(m, "rings_alerts_total", rule="watchlist-hit")
    assert total(m, "rings_plan_activations_total", plan="city-lockdown",
                 trigger="command") == 1
    assert total(m, "rings_plan_time_to_respond_seconds_count", plan="city-lockdown") == 1
    assert total(m, "rings_plan_overdue_sites", plan="city-lockdown") == 0
    # Every source partition of the sightings was read to its end.
    lags = [line for line in m.splitlines() if line.startswith("rings_consumer_lag_records{")
            and 'topic="' + live.kafka.t("sightings") + '"' in line]
    assert len(lags) == 4 and all(line.endswith(" 0.0") for line in lags), lags
    # RocksDB's estimate is rough, but no lower than the subjects written at least once.
    assert total(m, "rings_state_subjects") >= live.subjects
    # Memory: the subject stage holds decoded state, RocksDB's one cache stays within its
    # budget (the default, 192 MB; LRU capacity is not strict, hence the margin).
    assert 0 < total(m, "rings_state_cache_entities", stage="subjects") <= 4 * 50_000
    assert 0 < total(m, "rings_rocksdb_memory_bytes", part="cache") <= 1.1 * (192 << 20)
    assert total(m, "rings_rocksdb_memory_bytes", part="memtables") > 0
    assert total(m, "process_resident_memory_bytes") > 0


def test_no_subject_id_in_any_label(live: Live) -> None:
    for sid in live.subject_ids:
        assert sid not in live.metrics_text


def test_every_dashboard_and_rule_expression_returns_data(live: Live) -> None:
    prom = live.prom
    # The dashboard's worker variable: label_values(up{job="rings"}, instance).
    assert [s["metric"].get("instance") for s in prom.query('up{job="rings"}')] == \
        [f"127.0.0.1:{live.worker.port}"]
    failures = []
    queries = dashboard_queries()
    assert len(queries) >= 20
    for title, expr in queries:
        res = prom.query(expr)
        if not finite(res):
            failures.append(f"dashboard panel {title!r}: no finite value from {expr}: {res}")
    for name, expr in rule_exprs():
        prom.query(expr)                              # the condition itself: no error
        for side in operands(expr):
            res = prom.query(side)
            if not finite(res):
                failures.append(f"rule {name}: no finite value from {side}: {res}")
    assert not failures, "\n".join(failures)
    # Prometheus's own rule manager evaluated every rule without error; none fires.
    groups = prom.get("/api/v1/rules")["data"]["groups"]
    rules = {r["name"]: r for g in groups for r in g["rules"]}
    assert set(rules) == {name for name, _ in rule_exprs()}
    for name, r in rules.items():
        assert r["health"] == "ok" and r.get("lastError", "") == "", (name, r)
        assert r["state"] != "firing", (name, r.get("alerts"))
    for name in ("RingsWorkerDown", "RingsDeadLetters", "RingsPlanOverdue"):
        assert rules[name]["state"] == "inactive", (name, rules[name].get("alerts"))


def test_plan_panels_show_the_activation(live: Live) -> None:
    prom = live.prom
    by_title = {}
    for title, expr in dashboard_queries():
        by_title.setdefault(title, []).append(expr)
    (respond_mean, _) = by_title["Time to respond (default deadline 5 min)"]
    (close_mean, close_p95) = by_title["Time to close (default deadline 10 min)"]
    got = {s["metric"]["plan"]: float(s["value"][1]) for s in prom.query(respond_mean)}
    assert 0 < got["city-lockdown"] < 60, got        # answered 30 times faster than people
    got = {s["metric"]["plan"]: float(s["value"][1]) for s in prom.query(close_mean)}
    assert 0 < got["city-lockdown"] < 60, got
    got = {s["metric"]["plan"]: float(s["value"][1]) for s in prom.query(close_p95)}
    assert 0 < got["city-lockdown"] <= 30, got        # within the first bucket (30 s)
    (activations,) = by_title["Activations"]
    got = {(s["metric"]["plan"], s["metric"]["trigger"]): float(s["value"][1])
           for s in prom.query(activations)}
    assert got[("city-lockdown", "command")] >= 1, got
    assert got[("local-link", "command")] == 0, got


def test_json_log_has_one_object_per_line_and_no_subject_id(live: Live) -> None:
    lines = live.worker.log_path.read_text(encoding="utf-8").splitlines()
    assert len(lines) > 20
    levels = set()
    for line in lines:
        rec = json.loads(line)                        # every line is one JSON object
        assert {"ts", "level", "logger", "message"} <= set(rec), line
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", rec["ts"]), line
        levels.add(rec["level"])
    assert "info" in levels
    # The plan's info lines are there (so the check below reads a log that says things).
    assert any("city-lockdown" in line for line in lines)
    text = "\n".join(lines)
    leaked = sorted(sid for sid in live.subject_ids if sid in text)
    assert not leaked, f"subject ids in the worker's info log: {leaked[:5]}"
