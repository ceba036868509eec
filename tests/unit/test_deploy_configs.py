"""The operators' files in deploy/ hold together: the Grafana dashboard's structure, the
metrics its queries and the alerting rules name (they must be the worker's), and the compose
file running Prometheus and Grafana on these very files. (Prometheus itself evaluates every
query in tests/integration/test_prometheus.py; promtool checks and unit-tests the rules.)"""

from __future__ import annotations

import json
import logging
import re
from typing import Any

import orjson
import yaml

from streams.logjson import JsonFormatter
from streams.metrics import Metrics

from .support import ROOT

DEPLOY = ROOT / "deploy"
DASHBOARD = DEPLOY / "grafana" / "dashboards" / "rings.json"
PANEL_TYPES = {"row", "timeseries", "stat", "bargauge"}
GRAFANA_BUILTINS = {"__rate_interval", "__range", "__interval"}
ALERTS = {"RingsWorkerDown", "RingsConsumerLagGrowing", "RingsDeadLetters",
          "RingsAlertLatencyHigh", "RingsPlanOverdue"}


def load_yaml(path: str) -> Any:
    return yaml.safe_load((DEPLOY / path).read_text())


def worker_metric_names() -> set[str]:
    """Every series name the worker exposes, histogram parts included."""
    m = Metrics()
    m.watch(lambda: 0, lambda: [])
    names = {"up"}
    for family in m.registry.collect():
        names.add(family.name)
        if family.type == "counter":
            names.add(family.name + "_total")
        if family.type == "histogram":
            names |= {family.name + s for s in ("_bucket", "_sum", "_count")}
    return names


def metric_names(expr: str) -> set[str]:
    return set(re.findall(r"\b(rings_[a-z_]+|process_[a-z_]+|up)\b(?=\s*[{\[)])", expr))


def dashboard() -> dict[str, Any]:
    return json.loads(DASHBOARD.read_text())


def test_dashboard_structure() -> None:
    d = dashboard()
    assert d["uid"] and d["title"] and d["schemaVersion"] >= 36
    panels = d["panels"]
    ids = [p["id"] for p in panels]
    assert len(ids) == len(set(ids))
    variables = {v["name"] for v in d["templating"]["list"]}
    cells: dict[tuple[int, int], int] = {}
    for p in panels:
        assert p["type"] in PANEL_TYPES, p["title"]
        g = p["gridPos"]
        assert g["x"] >= 0 and g["w"] > 0 and g["x"] + g["w"] <= 24 and g["h"] > 0, p["title"]
        for x in range(g["x"], g["x"] + g["w"]):
            for y in range(g["y"], g["y"] + g["h"]):
                assert (x, y) not in cells, f"{p['title']} overlaps panel {cells[(x, y)]}"
                cells[(x, y)] = p["id"]
        if p["type"] == "row":
            continue
        assert p["title"] and p.get("description"), p
        assert p["datasource"] == {"type": "prometheus", "uid": "rings-prometheus"}
        refs = [t["refId"] for t in p["targets"]]
        assert refs and len(refs) == len(set(refs)), p["title"]
        for t in p["targets"]:
            assert t["expr"].strip() and t["datasource"] == p["datasource"]
            for var in re.findall(r"\$\{?(\w+)", t["expr"]):
                assert var in variables or var in GRAFANA_BUILTINS, (p["title"], var)
            # Every panel of the running engine narrows to the chosen workers.
            assert 'instance=~"$instance"' in t["expr"], (p["title"], t["expr"])
    titles = [p["title"] for p in panels if p["type"] == "row"]
    assert titles == ["Ingest", "Alerts", "Lag, event time and state", "Lockdown plans"]


def test_dashboard_and_rules_name_only_worker_metrics() -> None:
    known = worker_metric_names()
    used: set[str] = set()
    for p in dashboard()["panels"]:
        for t in p.get("targets", []):
            names = metric_names(t["expr"])
            assert names, t["expr"]
            assert names <= known, (p["title"], names - known)
            used |= names
    rules = load_yaml("prometheus/rings.rules.yml")
    alerts = {}
    for g in rules["groups"]:
        for r in g["rules"]:
            names = metric_names(r["expr"])
            assert names and names <= known, (r["alert"], names - known)
            assert 'job="rings"' in r["expr"], r["alert"]
            assert r["labels"]["severity"] in {"critical", "warning"}
            assert r["annotations"]["summary"] and r["annotations"]["description"]
            alerts[r["alert"]] = r
            used |= names
    assert set(alerts) == ALERTS
    # The metrics are all on the dashboard or behind an alert.
    for name in ("rings_sightings_total", "rings_alerts_total", "rings_dlq_total",
                 "rings_alert_latency_seconds_bucket", "rings_late_events_total",
                 "rings_state_subjects", "rings_consumer_lag_records",
                 "rings_plan_activations_total", "rings_plan_time_to_respond_seconds_bucket",
                 "rings_plan_time_to_close_seconds_bucket", "rings_plan_overdue_sites",
                 "rings_rules_version_info"):
        assert name in used, name


def test_compose_runs_monitoring_on_the_checked_files() -> None:
    compose = load_yaml("compose.yaml")
    services = compose["services"]
    prom = load_yaml("prometheus/prometheus.yml")
    assert (DEPLOY / "prometheus" / prom["rule_files"][0]).is_file()
    (job,) = prom["scrape_configs"]
    assert job["job_name"] == "rings"
    targets = {t for sc in job["static_configs"] for t in sc["targets"]}
    workers = {name for name in services if name.startswith("worker-")}
    assert len(workers) >= 2
    for name in workers:
        cmd = services[name]["command"]
        port = cmd[cmd.index("--web-port") + 1]
        assert f"{name}:{port}" in targets
        env = services[name]["environment"]
        assert env["RINGS_BROKER"] == "kafka:9092" and env["RINGS_WEB_HOST"] == "0.0.0.0"
    assert len(targets) == len(workers)
    assert "./prometheus:/etc/prometheus:ro" in services["prometheus"]["volumes"]
    assert "--config.file=/etc/prometheus/prometheus.yml" in services["prometheus"]["command"]
    gv = services["grafana"]["volumes"]
    assert "./grafana/provisioning:/etc/grafana/provisioning:ro" in gv
    provider = load_yaml("grafana/provisioning/dashboards/rings.yml")["providers"][0]
    assert f"./grafana/dashboards:{provider['options']['path']}:ro" in gv
    (ds,) = load_yaml("grafana/provisioning/datasources/prometheus.yml")["datasources"]
    assert ds["uid"] == "rings-prometheus" and ds["url"] == "http://prometheus:9090"
    assert (ROOT / services["worker-1"]["build"]["dockerfile"]).is_file()


def test_json_log_format() -> None:
    rec = logging.LogRecord("rings.worker", logging.INFO, __file__, 1, "plan %s: %s",
                            ("city-lockdown", "closed"), None)
    rec.created = 1795964284.5071
    d = orjson.loads(JsonFormatter().format(rec))
    assert d == {"ts": "2026-11-29T14:58:04.507Z", "level": "info", "logger": "rings.worker",
                 "message": "plan city-lockdown: closed"}
    try:
        raise ValueError("boom")
    except ValueError:
        import sys
        rec = logging.LogRecord("rings.ingest", logging.ERROR, __file__, 1, "failed", (),
                                sys.exc_info())
    line = JsonFormatter().format(rec)
    assert "\n" not in line
    d = orjson.loads(line)
    assert d["level"] == "error" and "ValueError: boom" in d["exc"]
