"""Synthetic traffic over any net: subjects travelling between zones, in event-time order.

Each subject lives somewhere (a zone), rests, then travels to another zone, crossing the
rings between the two (outward up to the common ancestor ring, inward down to the target)
at sites on those rings, at road speeds. Inbound through a checkpoint it first passes the
checkpoint's approach bayonet; checkpoints record the occupants (`with`). Subjects never
travel faster than a car can, rest hours between trips and never overlap their own trips,
so background traffic is plausible to every default rule.

Generation is seeded and streaming: a heap of subjects ordered by next departure, and a heap
of pending sightings released once no later departure can precede them, so memory holds
only trips under way, not the day.
"""

from __future__ import annotations

import heapq
import random
from dataclasses import dataclass
from typing import Any, Iterator

import orjson

from .net import OUTSIDE, Net
from .timefmt import format_ts, parse_ts

PLATE_LETTERS = "ABCDEFGHJKLMNPQRSTUVWXYZ"
PLATE_CHARS = "ABCDEFGHJKLMNPQRSTUVWXYZ0123456789"
LISTS = (("wanted", "critical"), ("fugitive", "critical"), ("stolen", "high"),
         ("suspect", "high"), ("missing", "medium"), ("observe", "low"))


@dataclass(slots=True)
class SimConfig:
    rate: float = 50.0                  # sightings per second of event time, on average
    duration_s: float = 3600.0
    start: str = "2026-11-29T00:00:00+08:00"
    seed: int = 1
    watch_fraction: float = 0.0005      # share of subjects on a watchlist
    person_share: float = 0.2           # share of trips made by people on foot or bus
    dwell_h: tuple[float, float] = (2.0, 10.0)
    subjects: int | None = None         # default: enough to sustain `rate`


@dataclass(slots=True)
class _Subject:
    type: str
    id: str
    zone: str


class Simulator:
    def __init__(self, net: Net, cfg: SimConfig) -> None:
        self.net = net
        self.cfg = cfg
        self.rng = random.Random(cfg.seed)
        self.t0, self.tz = parse_ts(cfg.start)
        self.zones = [OUTSIDE, *net.rings]
        self.ring_sites: dict[str, list[str]] = {r: [] for r in net.rings}
        self.approach: dict[str, list[str]] = {}
        for s in net.sites.values():
            if s.ring is not None:
                self.ring_sites[s.ring].append(s.id)
            if s.approaches is not None:
                self.approach.setdefault(s.approaches, []).append(s.id)
        self._seq: dict[str, int] = {}
        self.subjects: list[_Subject] = []
        self.persons: list[int] = []
        self.watchlisted: list[int] = []

    # ------------------------------------------------------------------ population

    def _plate(self) -> str:
        r = self.rng
        return "蒙" + r.choice("ABCDEFGHJKLK") + "".join(r.choice(PLATE_CHARS) for _ in range(5))

    def populate(self) -> None:
        cfg = self.cfg
        n = cfg.subjects or self._subjects_for_rate()
        seen: set[str] = set()
        for i in range(n):
            is_person = self.rng.random() < cfg.person_share
            while True:
                sid = f"p-{self.rng.getrandbits(32):08x}" if is_person else self._plate()
                if sid not in seen:
                    seen.add(sid)
                    break
            zone = self.rng.choice(self.zones)
            self.subjects.append(_Subject("person" if is_person else "vehicle", sid, zone))
            if is_person:
                self.persons.append(i)
        k = max(1, round(n * cfg.watch_fraction)) if cfg.watch_fraction > 0 else 0
        self.watchlisted = self.rng.sample(range(n), k)

    def _subjects_for_rate(self) -> int:
        """How many subjects sustain `rate`: measured on sample trips, not guessed, since it
        depends on the net (how many rings lie between zones, how far apart sites are)."""
        probe = Simulator(self.net, SimConfig(seed=self.cfg.seed + 1, subjects=1))
        probe.subjects = [_Subject("vehicle", "probe", OUTSIDE)]
        passes = dur = 0
        trips = 400
        for _ in range(trips):
            probe.subjects[0].zone = probe.rng.choice(self.zones)
            out, end = probe._trip(0, 0)
            passes += len(out)
            dur += end
        lo, hi = self.cfg.dwell_h
        cycle_s = (lo + hi) / 2 * 3600 + dur / trips / 1000
        return max(100, int(self.cfg.rate * cycle_s / max(0.5, passes / trips)))

    def watchlist(self) -> list[dict[str, Any]]:
        out = []
        for i in self.watchlisted:
            s = self.subjects[i]
            lst, sev = self.rng.choice(LISTS)
            out.append({"subject": {"type": s.type, "id": s.id}, "list": lst, "severity": sev,
                        "reason": f"simulated {lst} entry",
                        "from": format_ts(self.t0 - 86_400_000, self.tz),
                        "until": format_ts(self.t0 + 30 * 86_400_000, self.tz)})
        return out

    # ------------------------------------------------------------------ movement

    def _path(self, a: str, b: str) -> list[tuple[str, str]]:
        """Ring crossings from zone a to zone b: (ring, dir)."""
        pa = self.net.rings[a].roots_path if a != OUTSIDE else ()
        pb = self.net.rings[b].roots_path if b != OUTSIDE else ()
        common = 0
        while common < min(len(pa), len(pb)) and pa[common] == pb[common]:
            common += 1
        return [(r, "out") for r in reversed(pa[common:])] + [(r, "in") for r in pb[common:]]

    def _next_id(self, site: str, ts: int) -> str:
        n = self._seq.get(site, 0) + 1
        self._seq[site] = n
        day = format_ts(ts, self.tz)[:10].replace("-", "")
        return f"{site}-{day}-{n:06d}"

    def _trip(self, idx: int, start: int) -> tuple[list[tuple[int, str, str, str]], int]:
        """One trip: [(ts, site, dir, ...)], end time. Moves the subject to its new zone."""
        r = self.rng
        subj = self.subjects[idx]
        target = subj.zone
        while target == subj.zone:
            target = r.choice(self.zones)
        crossings = self._path(subj.zone, target)
        speed_kmh = r.uniform(25, 45) if subj.type == "person" else r.uniform(45, 95)
        t = start
        prev: str | None = None
        out: list[tuple[int, str, str]] = []

        def visit(site: str, d: str) -> None:
            nonlocal t, prev
            if prev is not None:
                km = self.net.distance_km(prev, site)
                t += int(km / speed_kmh * 3_600_000) + r.randint(20_000, 240_000)
            out.append((t, site, d))
            prev = site

        for ring, d in crossings:
            sites = self.ring_sites.get(ring)
            if not sites:
                continue
            site = r.choice(sites)
            feeders = self.approach.get(site)
            if feeders and d == "in":
                visit(r.choice(feeders), "in")
                visit(site, "in")
            elif feeders and d == "out":
                visit(site, "out")
                visit(r.choice(feeders), "out")
            else:
                visit(site, d)
        subj.zone = target
        return out, t

    # ------------------------------------------------------------------ output

    def sightings(self) -> Iterator[dict[str, Any]]:
        """Sightings in event-time order over the configured duration."""
        if not self.subjects:
            self.populate()
        r = self.rng
        end = self.t0 + int(self.cfg.duration_s * 1000)
        lo, hi = self.cfg.dwell_h
        departures = [(self.t0 + int(r.uniform(0, (lo + hi) / 2 * 3_600_000)), i)
                      for i in range(len(self.subjects))]
        heapq.heapify(departures)
        pending: list[tuple[int, int, dict[str, Any]]] = []
        seq = 0
        free_persons = set(self.persons)
        busy: list[tuple[int, int]] = []     # (free again at, person index)
        rest = int(lo * 3_600_000)           # a person's least rest after a trip or a ride
        while departures:
            start, idx = heapq.heappop(departures)
            while pending and pending[0][0] <= start:
                yield heapq.heappop(pending)[2]
            while busy and busy[0][0] <= start:
                free_persons.add(heapq.heappop(busy)[1])
            if start >= end:
                break
            if self.subjects[idx].type == "person" and idx not in free_persons:
                heapq.heappush(departures, (start + 600_000, idx))
                continue
            passes, t_end = self._trip(idx, start)
            subj = self.subjects[idx]
            riders: list[int] = []
            if subj.type == "vehicle" and free_persons and r.random() < 0.3:
                for _ in range(r.choice((1, 1, 2, 3))):
                    if not free_persons:
                        break
                    p = r.choice(tuple(free_persons)) if len(free_persons) < 64 else \
                        self._pick_free(free_persons)
                    free_persons.discard(p)
                    riders.append(p)
                    # A rider rests like any traveller before its next trip or ride: it
                    # was dropped wherever the vehicle went.
                    heapq.heappush(busy, (t_end + rest, p))
                    self.subjects[p].zone = self.subjects[idx].zone
            if subj.type == "person":
                free_persons.discard(idx)
                heapq.heappush(busy, (t_end + rest, idx))
            for ts, site, d in passes:
                if ts >= end:
                    break
                rec: dict[str, Any] = {
                    "id": self._next_id(site, ts), "ts": format_ts(ts, self.tz), "site": site,
                    "dir": d, "subject": {"type": subj.type, "id": subj.id}}
                if riders and self.net.sites[site].is_checkpoint:
                    rec["with"] = [{"type": "person", "id": self.subjects[p].id} for p in riders]
                if subj.type == "vehicle":
                    rec["attrs"] = {"confidence": round(r.uniform(0.85, 0.999), 3)}
                seq += 1
                heapq.heappush(pending, (ts, seq, rec))
            heapq.heappush(departures, (t_end + int(r.uniform(lo, hi) * 3_600_000), idx))
        while pending:
            ts, _, rec = heapq.heappop(pending)
            if ts < end:
                yield rec

    def _pick_free(self, free: set[int]) -> int:
        # Sampling a set is O(n); persons are many, so probe random indices instead.
        while True:
            p = self.persons[self.rng.randrange(len(self.persons))]
            if p in free:
                return p


def dumps(rec: dict[str, Any]) -> bytes:
    return orjson.dumps(rec)
