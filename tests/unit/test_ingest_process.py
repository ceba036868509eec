"""The worker's side of its ingest process: settings that cross the process boundary, and
what the child reports turned into the worker's metrics (the process itself, killed and
started again, is tested on the real broker in tests/integration/test_faults.py)."""

from __future__ import annotations

import pickle
import ssl
from typing import Any

import pytest

from rings.decode import Limits
from rings.net import load_net
from streams.config import KafkaSettings, ssl_context
from streams.errors import ConfigError
from streams.ingest_process import IngestConfig, IngestProcess, mode_from_env
from streams.metrics import Metrics


def test_the_mode_comes_from_rings_ingest() -> None:
    assert mode_from_env({}) == "process"
    assert mode_from_env({"RINGS_INGEST": "inline"}) == "inline"
    with pytest.raises(ConfigError, match="RINGS_INGEST"):
        mode_from_env({"RINGS_INGEST": "thread"})


def test_settings_cross_the_process_boundary_and_get_their_tls_back() -> None:
    s = KafkaSettings("broker:9093", "p-", {"security_protocol": "SSL",
                                            "ssl_context": ssl_context({})}, {})
    with pytest.raises(TypeError):
        pickle.dumps(s)                 # an SSLContext does not cross
    back = pickle.loads(pickle.dumps(s.portable())).restored()
    assert isinstance(back.client_options["ssl_context"], ssl.SSLContext)
    assert (back.broker, back.prefix, back.security_protocol) == ("broker:9093", "p-", "SSL")
    plain = KafkaSettings("b:9092", "", {"security_protocol": "SASL_PLAINTEXT",
                                         "sasl_plain_password": "pw"})
    assert pickle.loads(pickle.dumps(plain.portable())).restored() == plain


def _sample(m: Metrics, name: str, **labels: str) -> float:
    v = m.registry.get_sample_value(name, labels or None)
    return 0.0 if v is None else v


def _report(gen: int, sightings: float, dlq: float, cpu: float) -> dict[str, Any]:
    return {"generation": gen, "started": True, "lag": [("sightings", 0, 5)],
            "watermark": 1.8e9, "rss": 40e6,
            "counters": [("sightings", ["checkpoint", "city"], sightings),
                         ("dlq", ["bad-json"], dlq), ("cpu", [], cpu)]}


def test_reports_are_forwarded_as_increments_and_a_new_child_counts_from_zero() -> None:
    m = Metrics()
    config = IngestConfig(KafkaSettings(), load_net("rules/net.yaml"), 120_000, 4, "g",
                          Limits(), None)
    p = IngestProcess(config, m)
    def totals() -> tuple[float, float, float]:
        return (_sample(m, "rings_sightings_total", source="checkpoint", ring="city"),
                _sample(m, "rings_dlq_total", reason="bad-json"),
                _sample(m, "rings_ingest_process_cpu_seconds_total"))

    p._next_generation()
    p._apply(_report(1, 100, 2, 0.5))
    p._apply(_report(1, 250, 2, 1.5))
    assert totals() == (250, 2, 1.5)
    assert _sample(m, "rings_watermark_seconds") == 1.8e9
    assert _sample(m, "rings_ingest_process_resident_memory_bytes") == 40e6
    assert p.started_consuming and p.lag == {("sightings", 0): 5}
    # The child died and a new one was started: its totals start again from zero, and a
    # late report of the old one changes nothing.
    p._next_generation()
    p._apply(_report(1, 999, 9, 9.0))
    p._apply(_report(2, 40, 1, 0.25))
    assert totals() == (290, 3, 1.75)
