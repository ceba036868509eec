"""Scale-out: two workers in one consumer group share the partitions (and with them the
stage tables) and give exactly the alerts one worker gives, and `rings replay` gives, for
the same input (compared with replay here; test_replay_equals_worker compares replay with
one worker). This is what lets an operator add a worker to a running engine."""

from __future__ import annotations

import asyncio
import itertools
import re
import time
import zlib
from pathlib import Path
from urllib.parse import urlsplit

import orjson
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.coordinator.protocol import ConsumerProtocol

from rings.timefmt import parse_ts

from .harness import PARTITIONS, Kafka, Worker, one_id_per_partition, wait_until
from .test_replay_equals_worker import END, _canon, planted_day, rings

# Topics whose partitions the Faust group splits between its members (the global watchlist
# table is read whole by every member, so it is no sign of sharing).
SHARED = ("rings-by-subject", "rings-by-site", "rings-by-pair",
          "rings-subject-state-changelog", "rings-site-state-changelog",
          "rings-pair-state-changelog")
_seq = itertools.count()             # ids of this module's sentinel records
RULES = {"watchlist-hit", "penetration", "checkpoint-avoidance", "cloned-plate",
         "loitering", "convoy", "permit-violation", "linked-hit"}


def first_error(w: Worker, n: int = 40) -> str:
    """The worker log from its first ERROR or CRITICAL line (else its tail): the cause,
    not the shutdown that follows it."""
    lines = w.log_path.read_text("utf-8", "replace").splitlines()
    for i, ln in enumerate(lines):
        if re.search(r"\] \[(ERROR|CRITICAL)\] ", ln):
            return "\n".join(lines[i:i + n])
    return w.log_tail(n)


def check_alive(workers: list[Worker]) -> None:
    for w in workers:
        if not w.alive:
            raise AssertionError(f"worker {w.log_path.stem} (port {w.port}) exited with "
                                 f"{w.proc.returncode}; {w.log_path}:\n{first_error(w)}")


# ---------------------------------------------------------------------- consumer groups

def describe_group(kafka: Kafka, group: str) -> tuple[str, list[tuple]]:
    """The group's state and its members, each (member_id, client_id, client_host,
    metadata, assignment), as the broker's coordinator sees them now."""
    async def go() -> tuple[str, list[tuple]]:
        admin = AIOKafkaAdminClient(bootstrap_servers=kafka.broker)
        await admin.start()
        try:
            [resp] = await admin.describe_consumer_groups([group])
        finally:
            await admin.close()
        [g] = resp.groups
        error_code, _, state, _, _, members = g[:6]
        assert error_code == 0, f"describing group {group}: error {error_code}"
        return state, list(members)
    return asyncio.run(go())


def faust_split(kafka: Kafka) -> tuple[str, dict[int, dict[str, list[int]]]]:
    """The Faust group's state, and for each worker (by the web port in its members' URLs)
    the partitions its members hold active, by topic name without the prefix."""
    state, members = describe_group(kafka, kafka.t("rings"))
    out: dict[int, dict[str, list[int]]] = {}
    for m in members:
        if not m[4]:
            continue                    # joined, not yet given an assignment
        a = ConsumerProtocol.ASSIGNMENT.decode(m[4])
        meta = orjson.loads(zlib.decompress(a.user_data))
        # A worker's stage processes are members of their own, with its port in their URL
        # (streams.stage_process): what they hold, the worker holds.
        port = urlsplit(meta["url"]).port
        actives = meta["assignment"]["actives"]
        held = out.setdefault(port, {})
        for t, ps in actives.items():
            if t.startswith(kafka.prefix):
                held[t[len(kafka.prefix):]] = sorted([*held.get(t[len(kafka.prefix):], []),
                                                      *ps])
    return state, out


def ingest_split(kafka: Kafka) -> tuple[str, list[list[int]]]:
    """The ingest group's state, and the `sightings` partitions of each member."""
    state, members = describe_group(kafka, kafka.t("rings-ingest"))
    out = []
    for m in members:
        parts: list[int] = []
        if m[4]:
            for topic, ps in ConsumerProtocol.ASSIGNMENT.decode(m[4]).assignment:
                if topic == kafka.t("sightings"):
                    parts.extend(ps)
        out.append(sorted(parts))
    return state, out


def settled(kafka: Kafka, workers: list[Worker]) -> dict[int, dict[str, list[int]]] | None:
    """The split, once both groups are stable with one member per worker, each member
    holding some partitions of every shared topic and of `sightings`, none held twice."""
    check_alive(workers)
    for w in workers:
        if w.get("/ready")[0] != 200:
            return None
    state, split = faust_split(kafka)
    if state != "Stable" or sorted(split) != sorted(w.port for w in workers):
        return None
    for name in SHARED:
        held = [split[w.port].get(name, []) for w in workers]
        if not all(held) or sorted(itertools.chain(*held)) != list(range(PARTITIONS)):
            return None
    istate, iparts = ingest_split(kafka)
    if istate != "Stable" or len(iparts) != len(workers) or not all(iparts) \
            or sorted(itertools.chain(*iparts)) != list(range(PARTITIONS)):
        return None
    return split


# ---------------------------------------------------------------------- barriers

def metric(w: Worker, name: str, **labels: str) -> float:
    """The sum of a metric's samples on a worker that carry these labels."""
    total = 0.0
    for line in w.metrics().splitlines():
        if not line.startswith(name + "{") and not line.startswith(name + " "):
            continue
        if all(f'{k}="{v}"' in line for k, v in labels.items()):
            total += float(line.rsplit(" ", 1)[1])
    return total


def judged_by_all(workers: list[Worker], judged: str, timeout: float) -> None:
    """Wait until every stage of every worker has judged what happened before `judged`:
    each worker's watermarks cover only its own partitions."""
    target = parse_ts(judged)[0] / 1000

    def done() -> bool:
        check_alive(workers)
        for w in workers:
            marks = w.stage_watermarks()
            if len(marks) != 3 or not all(v >= target for v in marks.values()):
                return False
        return True
    wait_until(done, timeout, f"every stage of every worker to judge up to {judged}")


def barrier_all(kafka: Kafka, workers: list[Worker], timeout: float = 90.0,
                ts: str = "2026-11-29T12:00:00+08:00", judged: str | None = None) -> None:
    """`Kafka.barrier` for several workers: its sentinels cover every partition, so their
    alerts come from whichever worker owns each; the watermarks are every worker's."""
    t0 = time.monotonic()
    kafka.barrier(workers[0], timeout=timeout, ts=ts)
    check_alive(workers)
    if judged is not None:
        judged_by_all(workers, judged, max(1.0, timeout - (time.monotonic() - t0)))


def watchlist_everywhere(kafka: Kafka, workers: list[Worker], ts: str,
                         timeout: float = 60.0) -> None:
    """Return once every worker's copy of the global watchlist holds every partition of the
    watchlist topic up to now.

    `Kafka.barrier` proves that the owner of subject partition p has read watchlist
    partition p; but the site stage (convoy) and watchlist-hit on companions look up
    subjects of any partition. So: one listed person per watchlist partition q, seen as a
    companion of the sentinel vehicle of every subject partition p; an alert on person q
    with the sighting of p as evidence shows that the worker owning p has read q."""
    n = next(_seq)
    persons = dict(enumerate(one_id_per_partition("person", f"SENTINEL-P{n}-")))
    kafka.send_json("watchlist", [
        {"subject": {"type": "person", "id": pid}, "list": "sentinel", "severity": "low",
         "reason": f"watchlist sync {n}"} for pid in persons.values()])
    vehicles = kafka.sentinels()
    pending = {(p, q) for p in range(PARTITIONS) for q in range(PARTITIONS)}
    deadline = time.monotonic() + timeout
    while pending:
        check_alive(workers)
        sent: dict[str, int] = {}
        for p in sorted({p for p, _ in pending}):
            rid = f"wlsync-{p}-{next(_seq)}"
            sent[rid] = p
        kafka.send_json("sightings", [
            {"id": rid, "ts": ts, "site": "CP01", "dir": "in",
             "subject": {"type": "vehicle", "id": vehicles[p]},
             "with": [{"type": "person", "id": persons[q]} for q in range(PARTITIONS)]}
            for rid, p in sent.items()])
        round_deadline = min(deadline, time.monotonic() + 3.0)
        while pending and time.monotonic() < round_deadline:
            by_id = {pid: q for q, pid in persons.items()}
            for a in kafka.alerts(include_sentinels=True):
                q = by_id.get(a["subject"]["id"])
                if q is None or a["rule"] != "watchlist-hit":
                    continue
                for e in a["evidence"]:
                    if e in sent:
                        pending.discard((sent[e], q))
            if pending:
                time.sleep(0.2)
        if pending and time.monotonic() > deadline:
            raise AssertionError(f"watchlist not everywhere: (subject partition, watchlist "
                                 f"partition) still missing: {sorted(pending)}")


# ---------------------------------------------------------------------- the test

def test_two_workers_equal_one_on_a_planted_day(kafka: Kafka, start_worker,
                                                 tmp_path: Path) -> None:
    day, watchlist, truth, lines = planted_day(tmp_path)

    # A running worker, then a second one joining its group: the scale-out an operator does.
    w1 = start_worker("w1")
    w2 = start_worker("w2")
    workers = [w1, w2]
    print(f"\nworker logs: {w1.log_path} (port {w1.port}), {w2.log_path} (port {w2.port})")
    split = wait_until(lambda: settled(kafka, workers), 90,
                       "both workers to hold a share of every partitioned topic")
    _, ingest = ingest_split(kafka)
    for w in workers:
        print(f"worker {w.log_path.stem} (port {w.port}): " + ", ".join(
            f"{t} {ps}" for t, ps in sorted(split[w.port].items()) if t in SHARED))
    print(f"ingest group, sightings partitions by member: {ingest}")

    kafka.send_json("watchlist", [orjson.loads(x) for x in watchlist.read_bytes().splitlines()])
    barrier_all(kafka, workers, ts="2026-11-28T23:00:00+08:00")
    watchlist_everywhere(kafka, workers, ts="2026-11-28T23:00:00+08:00")
    kafka.send_json("sightings", [orjson.loads(x) for x in lines])
    barrier_all(kafka, workers, timeout=300, ts=END["ts"], judged="2026-11-30T01:00:00+08:00")
    streamed = kafka.alerts()

    # Both really worked: each ingested sightings and ran its share of every stage.
    for w in workers:
        counts = {s: metric(w, "rings_stage_events_total", stage=s)
                  for s in ("subjects", "sites", "pairs")}
        ingested = metric(w, "rings_sightings_total")
        print(f"worker {w.log_path.stem}: ingested {ingested:.0f}, stage items {counts}, "
              f"watermarks {w.stage_watermarks()}")
        assert ingested > 0 and counts["subjects"] > 0 and counts["sites"] > 0, \
            f"worker {w.log_path.stem} did no share of the work"
    # ...and the split still stands: no member left or rejoined during the day.
    assert faust_split(kafka)[1] == split, "the group rebalanced while the day was processed"

    day.write_bytes(day.read_bytes() + orjson.dumps(END) + b"\n")
    replayed = [orjson.loads(x) for x in
                rings("replay", str(day), "--watchlist", str(watchlist)).splitlines()]

    assert {a["rule"] for a in replayed} == RULES
    assert _canon(streamed) == _canon(replayed)
    got = tmp_path / "alerts.jsonl"
    got.write_bytes(b"".join(orjson.dumps(a) + b"\n" for a in streamed))
    rings("score", str(got), "--truth", str(truth))
    check_alive(workers)
    for w in workers:
        problems = [ln for ln in w.log_path.read_text("utf-8", "replace").splitlines()
                    if re.search(r"\] \[(ERROR|CRITICAL)\] ", ln)]
        assert not problems, f"{w.log_path}:\n" + "\n".join(problems[:20])
