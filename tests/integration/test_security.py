"""SASL/SCRAM on the real broker: a broker of its own (`deploy/local-kafka` with
RINGS_KAFKA_SASL=scram, on free ports and its own data dir) refuses clients without
credentials or with a wrong password, and the engine configured through the environment
(RINGS_BROKER and RINGS_KAFKA_*) works end to end: worker, publish, tail, plan, rules push.
"""

from __future__ import annotations

import asyncio
import os
import re
import secrets
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import orjson
import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaConnectionError

from rings.ruleset import load_rules
from rings.timefmt import format_ts

from .harness import ROOT, PrivateBroker, Worker, free_port, wait_until

USER = "rings-it"
DEADLINE = 30.0             # seconds for a refusal to show


@dataclass(frozen=True)
class ScramBroker:
    address: str
    password: str
    password_file: Path
    log: Path

    def env(self, prefix: str, password_file: Path | None = None) -> dict[str, str]:
        """What a rings command needs to reach this broker, all from the environment."""
        return {"RINGS_BROKER": self.address, "RINGS_TOPIC_PREFIX": prefix,
                "RINGS_KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT",
                "RINGS_KAFKA_SASL_MECHANISM": "SCRAM-SHA-256",
                "RINGS_KAFKA_USERNAME": USER,
                "RINGS_KAFKA_PASSWORD_FILE": str(password_file or self.password_file)}


@pytest.fixture(scope="module")
def scram_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ScramBroker]:
    """A SCRAM-only broker for this module, never the shared one; stopped and wiped after."""
    root = tmp_path_factory.mktemp("scram")
    password = secrets.token_urlsafe(18)
    pw_file = root / "kafka-password"
    pw_file.write_text(password + "\n")
    pw_file.chmod(0o600)
    broker = PrivateBroker(root / "kafka", {"RINGS_KAFKA_SASL": "scram",
                                            "RINGS_KAFKA_SASL_USER": USER,
                                            "RINGS_KAFKA_SASL_PASSWORD": password})
    try:
        address = broker.up()
        assert address == f"127.0.0.1:{broker.port}"
        yield ScramBroker(address, password, pw_file, root / "kafka" / "kafka.log")
    finally:
        broker.down(wipe=True)


def rings(*args: str, env: dict[str, str], timeout: float = 120) -> subprocess.CompletedProcess:
    # Only what `env` says: no RINGS_KAFKA_* from the caller's environment leaks in.
    base = {k: v for k, v in os.environ.items() if not k.startswith("RINGS_KAFKA_")}
    return subprocess.run([sys.executable, "-m", "rings.cli", *args], env={**base, **env},
                          cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          timeout=timeout)


async def _admin_topics(broker: str, **options: str) -> list[str]:
    admin = AIOKafkaAdminClient(bootstrap_servers=broker, request_timeout_ms=5000, **options)
    try:
        await admin.start()
        return list(await admin.list_topics())
    finally:
        await admin.close()


async def _produce(broker: str, **options: str) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=broker, request_timeout_ms=5000, **options)
    try:
        await producer.start()
        await producer.send_and_wait("security-probe", b"should never arrive")
    finally:
        await producer.stop()


def refused(coro_fn, *args: str, **options: str) -> Exception:
    """The error the client fails with, which must come within DEADLINE (a hang is no
    refusal)."""
    async def go() -> Exception:
        try:
            await asyncio.wait_for(coro_fn(*args, **options), DEADLINE)
        except asyncio.TimeoutError:
            pytest.fail(f"{coro_fn.__name__} neither worked nor failed within {DEADLINE}s")
        except Exception as e:  # noqa: BLE001 - the refusal under test
            return e
        pytest.fail(f"{coro_fn.__name__} worked without valid credentials")
    return asyncio.run(go())


def scram(password: str) -> dict[str, str]:
    return {"security_protocol": "SASL_PLAINTEXT", "sasl_mechanism": "SCRAM-SHA-256",
            "sasl_plain_username": USER, "sasl_plain_password": password}


def test_a_client_without_credentials_is_refused(scram_broker: ScramBroker,
                                                 tmp_path: Path) -> None:
    b = scram_broker.address
    for fn in (_admin_topics, _produce):
        e = refused(fn, b)
        assert isinstance(e, KafkaConnectionError), repr(e)
        print(f"{fn.__name__} without credentials: {e!r}")

    # the CLI as a user runs it, without RINGS_KAFKA_*: exit 1, told why
    f = tmp_path / "one.jsonl"
    f.write_bytes(b'{"id": "x"}\n')
    r = rings("publish", str(f), "--topic", "sightings",
              env={"RINGS_BROKER": b, "RINGS_TOPIC_PREFIX": "anon-"}, timeout=DEADLINE + 30)
    assert r.returncode == 1
    assert f"cannot reach broker {b} (PLAINTEXT)" in r.stderr.decode(), r.stderr

    # The broker is up, and the same calls with credentials work.
    asyncio.run(_produce(b, **scram(scram_broker.password)))
    assert "security-probe" in asyncio.run(_admin_topics(b, **scram(scram_broker.password)))


def test_a_wrong_password_is_refused(scram_broker: ScramBroker, tmp_path: Path) -> None:
    b = scram_broker.address
    for fn in (_admin_topics, _produce):
        e = refused(fn, b, **scram("not-" + scram_broker.password))
        assert isinstance(e, KafkaConnectionError), repr(e)

    # A worker with a wrong password stops at once, says why, and never shows a password.
    wrong = "wrong-" + secrets.token_hex(8)
    wrong_file = tmp_path / "wrong-password"
    wrong_file.write_text(wrong)
    t0 = time.monotonic()
    r = rings("worker", "--web-port", str(free_port()), "--data-dir", str(tmp_path / "data"),
              env=scram_broker.env("wrong-", wrong_file), timeout=90)
    took = time.monotonic() - t0
    err = r.stderr.decode()
    print(f"worker with a wrong password: exit {r.returncode} after {took:.1f}s: "
          f"{err.strip().splitlines()[-1]}")
    assert r.returncode == 1, err
    assert f"rings: broker {b} refused the login (SASL_PLAINTEXT SCRAM-SHA-256 as " \
           f"'{USER}'): " in err
    assert "SaslAuthenticationFailed" in err
    assert took < DEADLINE
    assert wrong not in err and scram_broker.password not in err
    assert wrong not in r.stdout.decode()


def _sighting(sid: str, vehicle: str) -> dict:
    return {"id": sid, "ts": format_ts(int(time.time() * 1000), 8 * 60), "site": "CP01",
            "dir": "in", "subject": {"type": "vehicle", "id": vehicle}}


def test_the_configured_worker_works(scram_broker: ScramBroker, tmp_path: Path) -> None:
    """The worker (its Faust app and its own aiokafka clients), publish, tail, plan and
    rules push, every one configured through the environment only."""
    prefix = f"sec-{secrets.token_hex(4)}-"
    env = scram_broker.env(prefix)
    worker = Worker(scram_broker.address, prefix, tmp_path / "data", tmp_path / "worker.log",
                    env=env)
    try:
        worker.wait_ready(timeout=120)

        vehicle = f"SEC{secrets.token_hex(3).upper()}"
        wl = tmp_path / "watchlist.jsonl"
        wl.write_bytes(orjson.dumps({"subject": {"type": "vehicle", "id": vehicle},
                                     "list": "wanted", "severity": "high",
                                     "reason": "security test"}) + b"\n")
        r = rings("publish", str(wl), "--topic", "watchlist", env=env)
        assert r.returncode == 0, r.stderr

        # The watchlist and the sightings are different topics: until the entry is
        # applied a sighting raises nothing, so send one more each round.
        sightings = tmp_path / "sightings.jsonl"
        sent: list[str] = []

        def alert() -> dict | None:
            sent.append(f"sec-{len(sent)}")
            sightings.write_bytes(orjson.dumps(_sighting(sent[-1], vehicle)) + b"\n")
            r = rings("publish", str(sightings), "--topic", "sightings", env=env)
            assert r.returncode == 0, r.stderr
            r = rings("tail", "alerts", "--from-beginning", "--max", "1", "--idle-timeout",
                      "3", env=env)
            assert r.returncode == 0, r.stderr
            if not worker.alive:
                raise AssertionError("worker died:\n" + worker.log_tail())
            return orjson.loads(r.stdout.splitlines()[0]) if r.stdout.strip() else None

        got = wait_until(alert, 90, "a watchlist-hit alert read with rings tail", every=0)
        print(f"alert after {len(sent)} sighting(s): {got['rule']} {got['severity']} "
              f"{got['summary']}")
        assert got["rule"] == "watchlist-hit"
        assert got["subject"] == {"type": "vehicle", "id": vehicle}
        assert got["evidence"][0] in sent
        assert got["details"]["reason"] == "security test"

        # The plan CLI and the worker's plan feed: activated, answered by the worker.
        r = rings("plan", "activate", "local-link", "--site", "CP01", "--by", "duty-officer",
                  "--reason", "security test", "--wait", "60", env=env)
        assert r.returncode == 0, r.stderr + r.stdout
        assert re.match(rb"activation [0-9a-f]{16}: plan local-link, \d+ sites ordered",
                        r.stdout), r.stdout

        # rules push and the worker's rules feed: the running worker switches to the set.
        rules = tmp_path / "rules"
        shutil.copytree(ROOT / "rules", rules,
                        ignore=shutil.ignore_patterns("tests", "net.yaml"))
        text = (rules / "rules.yaml").read_text()
        assert "max_kmh: 250" in text
        (rules / "rules.yaml").write_text(text.replace("max_kmh: 250", "max_kmh: 240", 1))
        pushed = load_rules(str(rules)).version
        r = rings("rules", "push", str(rules), "--by", "rule-author", "--reason",
                  "security test", env=env)
        assert r.returncode == 0, r.stderr + r.stdout
        wait_until(lambda: f'rings_rules_version_info{{version="{pushed}"}} 1.0'
                   in worker.metrics(), 60, f"the worker to run the pushed rules {pushed}")

        log = worker.log_path.read_text(errors="replace")
        assert f"Authenticated as {USER} via SCRAM-SHA-256" in log
        assert scram_broker.password not in log
    finally:
        worker.stop()
