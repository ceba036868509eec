"""Integration fixtures: the real local broker, a fresh topic prefix per test, workers."""

from __future__ import annotations

import os
import subprocess
import uuid
import warnings
from pathlib import Path
from typing import Callable, Iterator

import pytest

from .harness import ROOT, Kafka, Worker


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "integration" in str(item.fspath):
            item.add_marker(pytest.mark.integration)


@pytest.fixture(scope="session")
def broker() -> str:
    """RINGS_BROKER if set, else the project's local broker (started if need be)."""
    b = os.environ.get("RINGS_BROKER")
    if b:
        return b
    out = subprocess.run([str(ROOT / "deploy" / "local-kafka"), "up"], check=True,
                         stdout=subprocess.PIPE, text=True).stdout
    return out.strip().splitlines()[-1]


@pytest.fixture
def prefix(broker: str) -> Iterator[str]:
    """A topic prefix of the test's own; its topics are deleted after the test (after its
    workers have stopped: start_worker depends on this fixture, so it is torn down
    first)."""
    p = f"it-{uuid.uuid4().hex[:10]}-"
    yield p
    try:
        Kafka(broker, p).drop_own_topics()
    except Exception as e:          # (a test that stopped the broker, say) not the test's
        warnings.warn(f"topics of {p} not deleted: {e!r}")


@pytest.fixture
def kafka(broker: str, prefix: str) -> Kafka:
    return Kafka(broker, prefix)


@pytest.fixture
def start_worker(broker: str, prefix: str, tmp_path: Path) -> Iterator[Callable[..., Worker]]:
    workers: list[Worker] = []

    def start(name: str = "w1", *extra: str, ready: bool = True,
              env: dict[str, str] | None = None) -> Worker:
        w = Worker(broker, prefix, tmp_path / f"data-{name}", tmp_path / f"{name}.log", extra,
                   env)
        workers.append(w)
        if ready:
            w.wait_ready()
        return w

    yield start
    for w in workers:
        w.stop()
