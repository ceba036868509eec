"""Replay keeps its state as objects, the worker as JSON in a table: both must be the same.

The core keeps only JSON values in state (lists, string keys), so that a batch judged from
objects cached across batches and one judged from freshly decoded JSON behave alike. A
tuple or an integer key slipped into state would break that silently; this test runs a day
with every pattern planted through both kinds of store and compares every alert and every
stored value.
"""

from __future__ import annotations

import orjson

from rings.pipeline import Pipeline
from rings.replay import replay_lines
from rings.sim import SimConfig, Simulator
from rings.state import MemoryKV, ObjectKV
from rings.watchlist import load_watchlist


def test_object_and_byte_stores_give_the_same_alerts_and_state(net, rules, tmp_path):
    sim = Simulator(net, SimConfig(rate=0.5, duration_s=8 * 3600, seed=7,
                                   plant=tuple(sorted(d.kind for d in rules.detectors)),
                                   cases=2))
    lines = [orjson.dumps(r) for r in sim.sightings()]
    wl_path = tmp_path / "wl.jsonl"
    wl_path.write_bytes(b"".join(orjson.dumps(e) + b"\n" for e in sim.watchlist()))
    wl = load_watchlist(str(wl_path), net.sites)
    stores: dict[str, list] = {"objects": [], "bytes": []}
    results = {}
    for kind, make in (("objects", ObjectKV), ("bytes", MemoryKV)):
        def store(kind=kind, make=make):
            s = make()
            stores[kind].append(s)
            return s
        pipe = Pipeline(net, rules, wl, store)
        results[kind] = [a.to_json("") for a in replay_lines(lines, net, rules, wl,
                                                             pipeline=pipe, batch_size=500)]
    assert results["objects"] == results["bytes"]
    assert {a["rule"] for a in results["objects"]} == {d.rule_id for d in rules.detectors}
    for objs, raw in zip(stores["objects"], stores["bytes"]):
        held = dict(objs.items())       # (entities are in the tables' own dicts: spaces)
        assert objs.spaces
        assert set(held) == set(raw.keys())
        for k in raw.keys():
            v = held[k]
            decoded = orjson.loads(v) if isinstance(v, bytes) else v
            assert decoded == orjson.loads(raw.get(k)), k
    assert any(s for objs in stores["objects"] for s in objs.spaces.values())
