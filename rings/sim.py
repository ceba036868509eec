"""Synthetic traffic over any net: subjects travelling between zones, in event-time order.

The model
---------
Each subject lives in a zone, rests, then travels to another zone, crossing the rings between
the two (outward up to the common ancestor ring, inward down to the target) at sites on those
rings, at road speeds. Inbound through a checkpoint it first passes the checkpoint's approach
bayonet; checkpoints record the occupants (`with`). A subject's cycle is one trip followed by
one rest (`dwell_h`, at least 2 h).

Cost proportional to the output, not to the population
------------------------------------------------------
Nothing is built per member of the population. A subject is created on first use: its id is
a bijection of its index (an affine permutation of the plate space, 12 region letters x 34^5,
or of the person-id space 2^31), so no two subjects ever share an id, and whether it is
watchlisted is a second affine permutation of the index (so `watchlist()` lists the entries
without touching the rest of the population). Fresh subjects are handed out in the order of a
third permutation.

Steady state from the first millisecond
---------------------------------------
The superposition of the subjects' cycles is a stationary process, and the generator starts it
in its stationary state instead of from "everybody at home":

- subjects resting at the start leave for the first time at rate lambda * P(rest > r) at time
  r after the start (lambda = trips per second = rate / mean passes per trip, computed exactly
  from the net); after their first trip they go on cycling;
- trips under way at the start are a Poisson stream of departures before the start that have
  not finished yet. Only those that matter are sampled: a trip that departed e before the start
  matters if one of its passes falls in the run, or if it ends early enough for its subject to
  leave again within the run; for a given trip and following rest, the set of such e has a
  measure M <= B (B: (most passes in a trip - 1) x run length, plus the run length beyond the
  shortest rest, and at most the longest trip). Candidate (trip, rest) marks are drawn at rate
  lambda * B, kept with probability M / B (thinning a marked Poisson process), and e is drawn
  uniformly from the set. So a 60 s run at 200 sightings/s looks at ~20,000 trips, not at the
  ~900,000 trips under way in the city.
Passes before the start are dropped; the rate is flat from the first second. (At the end, an
inbound approach pass whose checkpoint pass would fall after the end is dropped: about 0.2% of
an hour's sightings, 2.5% of a minute's.)

Subjects of each type are handed out in permutation order, watchlisted ones with the
probability of their share (a separate queue), so that rejected candidates cannot skew the mix.
The population of each type is trips per second x the type's mean cycle (trip + rest), plus 5%.
People who ride in vehicles (`with`) come from a separate pool that never travels alone, so
rides never delay anyone's own trips.

What the background never does (so every alert it causes is a watchlist-hit)
----------------------------------------------------------------------------
- penetration: watchlisted subjects only make single-crossing trips (to an adjacent zone) and
  rest at least 2 h, so no two of their inward crossings are ever within 60 min.
- checkpoint-avoidance: an inbound approach pass is followed by its checkpoint within 12 min
  (the leg is capped); an approach pass whose checkpoint pass would fall after the end of the
  run is not emitted.
- cloned-plate: within a trip subjects move at 25-95 km/h; between trips they move at most
  150 km/h (the next trip's first pass waits for it), so never near 250 km/h.
- loitering: a trip crosses each ring at most once and rests last at least 2 h, so no subject
  crosses one ring more than twice in 2 h.
- convoy: a watchlisted vehicle passes at most 2 distinct sites in any 60 min (single crossing,
  2 h rest), so nobody can co-pass it at 3; and background vehicles keep more than 120 s away
  from every planted watchlisted vehicle at the same site (their trip is delayed if needed).
- permit-violation: the background has no permit entries.
- linked-hit: watchlisted persons never ride in a vehicle (`with`).
- riders: a person rides only when free (not travelling, rested), is seen only at the ride's
  checkpoints, then rests at least 2 h; its next sighting is never faster than 150 km/h away.
Planted scenarios (`rings.scenarios`, `SimConfig.plant`) are merged into the stream; the truth
(`truth()`) lists every alert the rules must raise, including every watchlist-hit of the run.

Generation is seeded and streaming: a heap of departures and a heap of pending passes released
once no later departure can precede them, so memory holds only trips under way, not the day.
"""

from __future__ import annotations

import bisect
import heapq
import math
import random
from dataclasses import dataclass
from typing import Any, Iterator

import orjson

from .net import OUTSIDE, Net
from .timefmt import format_ts, parse_ts

PLATE_CHARS = "ABCDEFGHJKLMNPQRSTUVWXYZ0123456789"     # 34: no I, no O
PLATE_REGIONS = "ABCDEFGHJKLM"                         # background plates 蒙A..蒙M (no I)
PLANT_REGION = "Z"                                     # planted plates 蒙Z...: never background
PLATE_BLOCK = len(PLATE_CHARS) ** 5
PERSON_SPACE = 1 << 31          # background persons p-00000000..p-7fffffff; planted: top bit set
LISTS = (("wanted", "critical"), ("fugitive", "critical"), ("stolen", "high"),
         ("suspect", "high"), ("missing", "medium"), ("observe", "low"))

MIN = 60_000
HOUR = 3_600_000
DAY = 86_400_000
VEHICLE_KMH = (45.0, 95.0)
PERSON_KMH = (25.0, 45.0)
DELAY_MS = (20_000, 240_000)    # time lost at each leg (lights, queues), on top of driving
HOP_KMH = 150.0                 # the fastest a subject moves between two trips
HOP_MS_PER_KM = 3_600_000 / HOP_KMH
APPROACH_CAP_MS = 12 * MIN      # approach bayonet -> its checkpoint, inbound, at most
MIN_DWELL_H = 2.0
RIDE_SHARE = 0.3                # share of vehicle trips with people on board
SEATS = (1, 1, 2, 3)
GUARD_MS = 125_000              # background vehicles keep this far from planted watchlisted ones
GUARD_SHIFT_MS = 250_000
PROBE_TRIPS = 3000


@dataclass(slots=True)
class SimConfig:
    rate: float = 50.0                  # sightings per second of event time, on average
    duration_s: float = 3600.0
    start: str = "2026-11-29T00:00:00+08:00"
    seed: int = 1
    watch_fraction: float = 0.0005      # share of subjects on a watchlist
    person_share: float = 0.2           # share of trips made by people on foot or bus
    dwell_h: tuple[float, float] = (2.0, 10.0)
    subjects: int | None = None         # population; default: enough to sustain `rate`
    plant: tuple[str, ...] = ()         # rules whose patterns to plant (rings.scenarios.RULES)
    cases: int = 5                      # planted positive (and near-miss) cases per rule


class AffinePerm:
    """k -> (k*a + b) mod n: a bijection of range(n), since gcd(a, n) == 1."""

    __slots__ = ("n", "a", "b", "a_inv")

    def __init__(self, n: int, rng: random.Random) -> None:
        self.n = max(1, n)
        a = 1
        b = 0
        if self.n > 2:
            a = max(1, int(self.n * (0.55 + 0.3 * rng.random())))
            while math.gcd(a, self.n) != 1:
                a += 1
            b = rng.randrange(self.n)
        self.a, self.b = a, b
        self.a_inv = pow(a, -1, self.n) if self.n > 1 else 0

    def __call__(self, k: int) -> int:
        return (k * self.a + self.b) % self.n

    def inverse(self, i: int) -> int:
        return ((i - self.b) * self.a_inv) % self.n


def plate(code: int, regions: str = PLATE_REGIONS) -> str:
    """The plate numbered `code` in [0, len(regions) * 34^5): a bijection."""
    region, rest = divmod(code, PLATE_BLOCK)
    chars = []
    for _ in range(5):
        rest, c = divmod(rest, len(PLATE_CHARS))
        chars.append(PLATE_CHARS[c])
    return "蒙" + regions[region] + "".join(reversed(chars))


def is_planted_id(subject_type: str, subject_id: str) -> bool:
    """Planted subjects have ids no background subject can have."""
    if subject_type == "vehicle":
        return subject_id.startswith("蒙" + PLANT_REGION)
    if subject_type == "person" and subject_id.startswith("p-") and len(subject_id) == 10:
        return subject_id[2] in "89abcdef"
    return False


class _Subj:
    __slots__ = ("type", "id", "vehicle", "watch", "zone", "last_site", "last_ts",
                 "busy_until")

    def __init__(self, vehicle: bool, sid: str, watch: bool, zone: int) -> None:
        self.type = "vehicle" if vehicle else "person"
        self.id = sid
        self.vehicle = vehicle
        self.watch = watch
        self.zone = zone
        self.last_site = -1
        self.last_ts = 0
        self.busy_until = 0


@dataclass(slots=True)
class SimStats:
    sightings: int = 0
    background: int = 0
    planted: int = 0
    subjects: int = 0               # background subjects created (seen or under way)
    truth: int = 0


# A pass on its way out: (ts, seq, site index, dir, subject, with, case id).
_Pass = tuple[int, int, int, "str | None", Any, Any, "str | None"]


class Simulator:
    def __init__(self, net: Net, cfg: SimConfig) -> None:
        lo, hi = cfg.dwell_h
        if lo < MIN_DWELL_H or hi < lo:
            raise ValueError(f"dwell_h must be (lo, hi) with {MIN_DWELL_H:g} <= lo <= hi hours "
                             f"(the background's guarantees rest on it)")
        if cfg.duration_s < 0:
            raise ValueError("duration_s cannot be negative")
        if cfg.subjects is None and cfg.rate <= 0:
            raise ValueError("rate must be positive")
        self.net = net
        self.cfg = cfg
        self.t0, self.tz = parse_ts(cfg.start)
        self.end = self.t0 + int(cfg.duration_s * 1000)
        self.stats = SimStats()
        self._build_net()
        self._size()
        ids = random.Random(f"rings-sim-ids:{cfg.seed}")
        self._vid = AffinePerm(len(PLATE_REGIONS) * PLATE_BLOCK, ids)
        self._pid = AffinePerm(PERSON_SPACE, ids)
        self._dep_v = AffinePerm(self.n_vehicles, ids)
        self._dep_p = AffinePerm(self.n_persons, ids)
        self._watch_v = AffinePerm(self.n_vehicles, ids)
        self._watch_p = AffinePerm(self.n_persons, ids)
        wf = cfg.watch_fraction
        self.k_watch_v = round(self.n_vehicles * wf) if wf > 0 else 0
        self.k_watch_p = round(self.n_persons * wf) if wf > 0 else 0
        if wf > 0 and self.k_watch_v + self.k_watch_p == 0:
            self.k_watch_v = 1
        self._entries = self._background_entries()
        self.cases: list[Any] = []
        self.plan_notes: list[str] = []
        self._planted: list[_Pass] = []
        self._planted_entry_dicts: list[dict[str, Any]] = []
        self._planted_entries: dict[str, Any] = {}
        self._planted_truth: list[tuple[int, str, str, str, str]] = []
        self._guard: dict[int, list[int]] = {}
        self._hits: list[tuple[int, str, str, str, str]] = []
        if cfg.plant:
            self._plant()

    # ------------------------------------------------------------------ the net, once

    def _build_net(self) -> None:
        net = self.net
        self.site_ids = list(net.sites)
        sidx = {s: i for i, s in enumerate(self.site_ids)}
        self._is_cp = [net.sites[s].is_checkpoint for s in self.site_ids]
        self._is_feeder = [net.sites[s].approaches is not None and net.sites[s].ring is None
                           for s in self.site_ids]
        self._dist = [[net.distance_km(a, b) for b in self.site_ids] for a in self.site_ids]
        self.zones = [OUTSIDE, *net.rings]
        feeders: dict[str, list[str]] = {}
        ring_sites: dict[str, list[str]] = {r: [] for r in net.rings}
        for s in net.sites.values():
            if s.ring is not None:
                ring_sites[s.ring].append(s.id)
            if s.approaches is not None:
                feeders.setdefault(s.approaches, []).append(s.id)

        def cap(f: str, c: str) -> int:
            return max(APPROACH_CAP_MS, int(net.distance_km(f, c) * HOP_MS_PER_KM) + 1)

        opts: dict[tuple[str, str], tuple] = {}
        for r, sites in ring_sites.items():
            for d in ("in", "out"):
                per_site = []
                for s in sites:
                    fs = feeders.get(s)
                    if fs and d == "in":
                        variants = tuple(((sidx[f], "in", 0), (sidx[s], "in", cap(f, s)))
                                         for f in fs)
                    elif fs:
                        variants = tuple(((sidx[s], "out", 0), (sidx[f], "out", 0)) for f in fs)
                    else:
                        variants = (((sidx[s], d, 0),),)
                    per_site.append(variants)
                opts[(r, d)] = tuple(per_site)
        nz = len(self.zones)
        self._paths = [[tuple(opts[c] for c in self._path(a, b) if opts[c])
                        for b in self.zones] for a in self.zones]
        self._adjacent = [[b for b in range(nz) if b != a and len(self._path(
            self.zones[a], self.zones[b])) == 1 and self._paths[a][b]] for a in range(nz)]
        self._nz = nz

        def mean_len(o: tuple) -> float:
            return sum(sum(len(v) for v in vs) / len(vs) for vs in o) / len(o)

        pairs = [(a, b) for a in range(nz) for b in range(nz) if a != b]
        self._em_free = sum(sum(mean_len(o) for o in self._paths[a][b])
                            for a, b in pairs) / max(1, len(pairs))
        adj = [(a, b) for a in range(nz) for b in self._adjacent[a]]
        self._em_watch = (sum(sum(mean_len(o) for o in self._paths[a][b]) for a, b in adj)
                          / len(adj)) if adj else 0.0
        # Bounds for the thinning of trips under way at the start: most passes in a trip, and
        # a bound on its duration (farthest sites of each pair of successive crossings, at the
        # slowest speed and the longest delays).
        ms_slow = 3_600_000 / PERSON_KMH[0]
        reach: dict[str, list[int]] = {r: [sidx[s] for s in ss] +
                                       [sidx[f] for s in ss for f in feeders.get(s, ())]
                                       for r, ss in ring_sites.items()}
        far: dict[tuple[str, str], float] = {}
        for r1, s1 in reach.items():
            for r2, s2 in reach.items():
                far[(r1, r2)] = max((self._dist[a][b] for a in s1 for b in s2), default=0.0)
        self.m_max = 1
        self.d_max = 0
        for a in range(nz):
            for b in range(nz):
                if a == b:
                    continue
                rings = [c[0] for c in self._path(self.zones[a], self.zones[b])
                         if opts[c]]
                m = sum(max(len(v) for vs in opts[(r, "in")] for v in vs) for r in rings)
                d = 0.0
                for i, r in enumerate(rings):
                    legs = 1 if any(feeders.get(s) for s in ring_sites[r]) else 0
                    d += legs * (far[(r, r)] * ms_slow + DELAY_MS[1])
                    if i:
                        d += far[(rings[i - 1], r)] * ms_slow + DELAY_MS[1]
                self.m_max = max(self.m_max, m)
                self.d_max = max(self.d_max, int(d) + 1)

    def _path(self, a: str, b: str) -> list[tuple[str, str]]:
        """Ring crossings from zone a to zone b: (ring, dir)."""
        pa = self.net.rings[a].roots_path if a != OUTSIDE else ()
        pb = self.net.rings[b].roots_path if b != OUTSIDE else ()
        common = 0
        while common < min(len(pa), len(pb)) and pa[common] == pb[common]:
            common += 1
        return [(r, "out") for r in reversed(pa[common:])] + [(r, "in") for r in pb[common:]]

    def _size(self) -> None:
        """Population and trip rate. The rate needs only the mean number of passes per trip
        (exact, from the net); the population also needs the mean trip duration (sampled)."""
        cfg = self.cfg
        wf = min(1.0, max(0.0, cfg.watch_fraction))
        self.mean_passes = (1 - wf) * self._em_free + wf * self._em_watch
        probe = random.Random(f"rings-sim-probe:{cfg.seed}")
        r = probe.random
        ps = min(1.0, max(0.0, cfg.person_share))
        lo, hi = cfg.dwell_h
        rest_ms = (lo + hi) / 2 * HOUR
        cycle = []                                          # mean cycle: persons, vehicles
        for vehicle in (False, True):
            total = 0
            for _ in range(PROBE_TRIPS // 2):
                _, passes = self._trip(int(r() * self._nz), False, vehicle, 0, -1, 0, r)
                if passes:
                    total += passes[-1][0] - passes[0][0]
            cycle.append(total / (PROBE_TRIPS // 2) + rest_ms)
        mean_cycle = ps * cycle[0] + (1 - ps) * cycle[1]
        self.mean_trip_ms = mean_cycle - rest_ms
        if cfg.subjects:
            self.lam = cfg.subjects / mean_cycle                     # trips per ms
            self.n_persons = round(cfg.subjects * ps * cycle[0] / mean_cycle)
            self.n_vehicles = cfg.subjects - self.n_persons
        else:
            self.lam = cfg.rate / max(1e-9, self.mean_passes) / 1000
            # Each type needs trips-per-ms x mean cycle subjects; a margin keeps the stream
            # of fresh subjects from running dry by chance.
            self.n_persons = math.ceil(self.lam * ps * cycle[0] * 1.05) + (50 if ps > 0 else 0)
            self.n_vehicles = math.ceil(self.lam * (1 - ps) * cycle[1] * 1.05) + \
                (50 if ps < 1 else 0)
        # People who only ride (never travel on their own): as many as there are vehicles.
        self.n_riders = max(1, self.n_vehicles)
        self.population = self.n_persons + self.n_vehicles + self.n_riders

    # ------------------------------------------------------------------ identities

    def _vehicle_id(self, i: int) -> str:
        return plate(self._vid(i))

    def _person_id(self, i: int) -> str:
        return f"p-{self._pid(i):08x}"

    def _watched(self, vehicle: bool, i: int) -> bool:
        """Watchlisted: the first k of the watch permutation's images."""
        if vehicle:
            return self._watch_v.inverse(i) < self.k_watch_v
        return i < self.n_persons and self._watch_p.inverse(i) < self.k_watch_p

    def _background_entries(self) -> list[dict[str, Any]]:
        rng = random.Random(f"rings-sim-watch:{self.cfg.seed}")
        start = format_ts(self.t0 - DAY, self.tz)
        until = format_ts(max(self.t0 + 30 * DAY, self.end + DAY), self.tz)
        out = []
        self.watchlisted: list[str] = []
        for vehicle, k, perm, n in ((True, self.k_watch_v, self._watch_v, self.n_vehicles),
                                    (False, self.k_watch_p, self._watch_p, self.n_persons)):
            for j in range(min(k, n)):
                i = perm(j)
                sid = self._vehicle_id(i) if vehicle else self._person_id(i)
                typ = "vehicle" if vehicle else "person"
                lst, sev = LISTS[int(rng.random() * len(LISTS))]
                out.append({"subject": {"type": typ, "id": sid}, "list": lst, "severity": sev,
                            "reason": f"simulated {lst} entry", "from": start, "until": until})
                self.watchlisted.append(f"{typ}:{sid}")
        return out

    def populate(self) -> None:
        """Kept for callers of the old API: subjects are created lazily, on first use."""

    def watchlist(self) -> list[dict[str, Any]]:
        return [*self._entries, *self._planted_entry_dicts]

    # ------------------------------------------------------------------ planted scenarios

    def _plant(self) -> None:
        from .scenarios import plant

        plan = plant(self.net, self.cfg.plant, self.cfg.cases, self.t0, self.end,
                     self.cfg.seed)
        self.cases = plan.cases
        self.plan_notes = plan.notes
        sidx = {s: i for i, s in enumerate(self.site_ids)}
        seq = 1 << 50
        for case in plan.cases:
            for ts, site, d, subj, with_ in case.absolute_passes():
                self._planted.append((ts, seq, sidx[site], d, subj, with_, case.id))
                seq += 1
            for rule, subj, ts in case.absolute_alerts():
                self._planted_truth.append((ts, rule, subj.type, subj.id, case.id))
        self._planted.sort()
        self._planted_entry_dicts = plan.entry_dicts(self.tz)
        self._planted_entries = plan.entries_by_key()
        listed = plan.listed_vehicles
        for ts, _, si, _, subj, _, _ in self._planted:
            if subj.type == "vehicle" and subj.key in listed:
                self._guard.setdefault(si, []).append(ts)
        for times in self._guard.values():
            times.sort()

    # ------------------------------------------------------------------ movement

    def _trip(self, zone: int, watch: bool, vehicle: bool, t: int, last_site: int,
              last_ts: int, rnd: Any) -> tuple[int, list[tuple[int, int, str]]]:
        """One trip from `zone`, first pass at or after t: (target zone, [(ts, site, dir)])."""
        if watch:
            adj = self._adjacent[zone]
            if not adj:
                return zone, []
            target = adj[int(rnd() * len(adj))]
        else:
            target = int(rnd() * (self._nz - 1))
            if target >= zone:
                target += 1
        lo, hi = VEHICLE_KMH if vehicle else PERSON_KMH
        mpk = 3_600_000 / (lo + (hi - lo) * rnd())
        dist = self._dist
        d0, dspan = DELAY_MS[0], DELAY_MS[1] - DELAY_MS[0]
        out: list[tuple[int, int, str]] = []
        prev = -1
        for opts in self._paths[zone][target]:
            variants = opts[int(rnd() * len(opts))]
            seq = variants[0] if len(variants) == 1 else variants[int(rnd() * len(variants))]
            for si, d, cap in seq:
                if prev < 0:
                    if last_site >= 0:
                        h = last_ts + int(dist[last_site][si] * HOP_MS_PER_KM) + d0
                        if h > t:
                            t = h
                else:
                    leg = int(dist[prev][si] * mpk) + d0 + int(rnd() * dspan)
                    if cap and leg > cap:
                        leg = cap
                    t += leg
                out.append((t, si, d))
                prev = si
        return target, out

    def _guarded(self, passes: list[tuple[int, int, str]]) -> list[tuple[int, int, str]]:
        """Delay a vehicle's trip until none of its passes is within GUARD_MS of a planted
        watchlisted vehicle at the same site (so no convoy with it can arise by chance)."""
        guard = self._guard
        for _ in range(40):
            clash = False
            for ts, si, _ in passes:
                times = guard.get(si)
                if times:
                    k = bisect.bisect_left(times, ts - GUARD_MS)
                    if k < len(times) and times[k] <= ts + GUARD_MS:
                        clash = True
                        break
            if not clash:
                return passes
            passes = [(ts + GUARD_SHIFT_MS, si, d) for ts, si, d in passes]
        return []

    # ------------------------------------------------------------------ the background

    def _background(self) -> Iterator[_Pass]:
        cfg = self.cfg
        rng = random.Random(cfg.seed)
        rnd = rng.random
        t0, end = self.t0, self.end
        T = end - t0
        lo_ms, hi_ms = int(cfg.dwell_h[0] * HOUR), int(cfg.dwell_h[1] * HOUR)
        rest_ms = lo_ms
        ps = cfg.person_share
        nz = self._nz
        is_cp, is_feeder, dist = self._is_cp, self._is_feeder, self._dist
        n_v, n_p, n_r = self.n_vehicles, self.n_persons, self.n_riders
        vehicles: dict[int, _Subj] = {}
        persons: dict[int, _Subj] = {}
        ptr = [0, 0]                                    # next in departure order: persons, vehicles
        pending: list[_Pass] = []
        deps: list[tuple[int, int, _Subj]] = []
        seq = 0
        guard = bool(self._guard)
        stats = self.stats

        def create(vehicle: bool, i: int, zone: int) -> _Subj:
            if vehicle:
                s = _Subj(True, self._vehicle_id(i), self._watched(True, i), zone)
                vehicles[i] = s
            else:
                s = _Subj(False, self._person_id(i), self._watched(False, i), zone)
                persons[i] = s
            stats.subjects += 1
            return s

        wq = [0, 0]                                     # next watched subject: persons, vehicles
        share = [self.k_watch_p / n_p if n_p else 0.0, self.k_watch_v / n_v if n_v else 0.0]

        def pick(vehicle: bool) -> tuple[int | None, bool]:
            """The next fresh subject of a type: watchlisted with the probability of the
            watchlisted share (so thinning cannot skew the mix), each exactly once."""
            if rnd() < share[vehicle]:
                j = wq[vehicle]
                if j < (self.k_watch_v if vehicle else self.k_watch_p):
                    return (self._watch_v if vehicle else self._watch_p)(j), True
            n = n_v if vehicle else n_p
            dep = self._dep_v if vehicle else self._dep_p
            k = ptr[vehicle]
            while k < n:
                i = dep(k)
                if not self._watched(vehicle, i):
                    ptr[vehicle] = k
                    return i, False
                k += 1
            ptr[vehicle] = k
            return None, False

        def consume(vehicle: bool, watch: bool) -> None:
            if watch:
                wq[vehicle] += 1
            else:
                ptr[vehicle] += 1

        def dwell() -> int:
            return lo_ms + int(rnd() * (hi_ms - lo_ms))

        def emit(subj: _Subj, passes: list[tuple[int, int, str]], riders: Any) -> None:
            nonlocal seq
            n = len(passes)
            for j in range(n):
                ts, si, d = passes[j]
                if ts < t0:
                    continue
                if ts >= end:
                    break
                if is_feeder[si] and d == "in" and (j + 1 == n or passes[j + 1][0] >= end):
                    continue        # its checkpoint pass falls after the end of the run
                seq += 1
                heapq.heappush(pending, (ts, seq, si, d, subj,
                                         riders if riders and is_cp[si] else None, None))

        def board(subj: _Subj, passes: list[tuple[int, int, str]], t_dep: int, target: int,
                  init: bool) -> list[_Subj] | None:
            """People riding along: free, rested, never watchlisted; seen at the checkpoints."""
            cps = [p for p in passes if is_cp[p[1]] and t0 <= p[0] < end]
            if not cps or rnd() >= RIDE_SHARE:
                return None
            first_ts, first_si = cps[0][0], cps[0][1]
            riders: list[_Subj] = []
            for _ in range(SEATS[int(rnd() * len(SEATS))]):
                for _try in range(3):
                    # Riders come from the people who never travel on their own (so a ride
                    # never delays anybody's own trip, and the rate stays exact), never
                    # watchlisted; before the start only people nobody has seen yet.
                    i = n_p + int(rnd() * n_r)
                    p = persons.get(i)
                    if p is None:
                        p = create(False, i, subj.zone)
                    elif init or p in riders or p.busy_until > t_dep or (
                            p.last_site >= 0 and p.last_ts + int(
                                dist[p.last_site][first_si] * HOP_MS_PER_KM) > first_ts):
                        continue
                    riders.append(p)
                    break
            t_end = passes[-1][0]
            last_ts, last_si = cps[-1][0], cps[-1][1]
            for p in riders:
                p.busy_until = t_end + rest_ms
                p.zone = target
                p.last_site, p.last_ts = last_si, last_ts
            return riders or None

        def finish(subj: _Subj, target: int, passes: list[tuple[int, int, str]], t_dep: int,
                   rest: int) -> None:
            nonlocal seq
            t_end = passes[-1][0] if passes else t_dep
            subj.zone = target
            if passes:
                subj.last_ts, subj.last_site = passes[-1][0], passes[-1][1]
            if not subj.vehicle:
                subj.busy_until = t_end + rest_ms
            nxt = t_end + rest
            if nxt < end:
                seq += 1
                heapq.heappush(deps, (nxt, seq, subj))

        def depart(subj: _Subj, t: int) -> None:
            nonlocal seq
            if subj.busy_until > t:                     # riding, or resting after a ride
                seq += 1
                heapq.heappush(deps, (subj.busy_until, seq, subj))
                return
            target, passes = self._trip(subj.zone, subj.watch, subj.vehicle, t,
                                        subj.last_site, subj.last_ts, rnd)
            if guard and subj.vehicle:
                passes = self._guarded(passes)
                if not passes:
                    target = subj.zone
            riders = board(subj, passes, t, target, False) if subj.vehicle and passes else None
            emit(subj, passes, riders)
            finish(subj, target, passes, t, dwell())

        # -- trips under way at the start (thinned marked Poisson stream of past departures)
        m_bound = min(self.d_max, (self.m_max - 1) * T + max(0, T - lo_ms))
        n_cand = _poisson(rng, self.lam * m_bound) if m_bound > 0 else 0
        for _ in range(n_cand):
            vehicle = rnd() >= ps
            i, watch = pick(vehicle)
            if i is None:
                continue
            zone = int(rnd() * nz)
            target, offs = self._trip(zone, watch, vehicle, 0, -1, 0, rnd)
            rest = dwell()
            if not offs:
                continue
            D = offs[-1][0]
            spans = [(max(0, o - T), o) for o, _, _ in offs if o > 0]
            if rest < T:
                spans.append((max(0, D + rest - T), D))
            if not spans:
                continue
            spans.sort()
            merged: list[list[int]] = []
            for a, b in spans:
                if merged and a <= merged[-1][1]:
                    if b > merged[-1][1]:
                        merged[-1][1] = b
                else:
                    merged.append([a, b])
            measure = sum(b - a for a, b in merged)
            if rnd() * m_bound >= measure:
                continue
            u = rnd() * measure
            e = merged[-1][1]
            for a, b in merged:
                if u < b - a:
                    e = a + u
                    break
                u -= b - a
            s = t0 - max(1, math.ceil(e))
            consume(vehicle, watch)
            subj = create(vehicle, i, zone)
            passes = [(s + o, si, d) for o, si, d in offs]
            if guard and vehicle:
                passes = self._guarded(passes)
                if not passes:
                    continue
            riders = board(subj, passes, s, target, True) if vehicle else None
            emit(subj, passes, riders)
            finish(subj, target, passes, s, rest)

        # -- subjects resting at the start leave at rate lam * P(rest > r); then everybody cycles
        lam = self.lam
        span = hi_ms - lo_ms

        def next_fresh(t: float) -> float:
            while True:
                t += -math.log(1.0 - rnd()) / lam
                r = t - t0
                if r >= hi_ms:
                    return math.inf
                if r < lo_ms or rnd() * span < hi_ms - r:
                    return t

        tf = next_fresh(t0) if lam > 0 else math.inf
        while True:
            td = deps[0][0] if deps else math.inf
            t_next = tf if tf < td else td
            if t_next >= end:
                break
            while pending and pending[0][0] <= t_next:
                yield heapq.heappop(pending)
            if tf < td:
                t = int(tf)
                tf = next_fresh(tf)
                vehicle = rnd() >= ps
                i, watch = pick(vehicle)
                if i is None:
                    continue
                consume(vehicle, watch)
                subj = (vehicles if vehicle else persons).get(i) or \
                    create(vehicle, i, int(rnd() * nz))
                depart(subj, t)
            else:
                t, _, subj = heapq.heappop(deps)
                depart(subj, t)
        while pending:
            p = heapq.heappop(pending)
            if p[0] < end:
                yield p

    # ------------------------------------------------------------------ output

    def sightings(self) -> Iterator[dict[str, Any]]:
        """Sightings in event-time order over the configured duration (each call starts over)."""
        self.stats = SimStats()
        self._hits = []
        stream: Iterator[_Pass] = self._background()
        if self._planted:
            stream = heapq.merge(stream, self._planted)
        tz = self.tz
        site_ids = self.site_ids
        counters = [0] * len(site_ids)
        conf = random.Random(f"rings-sim-attrs:{self.cfg.seed}").random
        planted_entries = self._planted_entries
        hits = self._hits
        stats = self.stats
        last_sec = None
        head = tail = day = ""
        for ts, _, si, d, subj, with_, case in stream:
            sec = ts // 1000
            if sec != last_sec:
                full = format_ts(sec * 1000, tz)
                head, tail, day = full[:19], full[23:], full[:10].replace("-", "")
                last_sec = sec
            counters[si] += 1
            site = site_ids[si]
            rec: dict[str, Any] = {
                "id": f"{site}-{day}-{counters[si]:06d}", "ts": f"{head}.{ts % 1000:03d}{tail}",
                "site": site}
            if d is not None:
                rec["dir"] = d
            rec["subject"] = {"type": subj.type, "id": subj.id}
            if with_:
                rec["with"] = [{"type": w.type, "id": w.id} for w in with_]
            if subj.type == "vehicle":
                rec["attrs"] = {"confidence": round(0.85 + 0.149 * conf(), 3)}
            if case is None:
                stats.background += 1
                if subj.watch:
                    hits.append((ts, "watchlist-hit", subj.type, subj.id, "background"))
            else:
                stats.planted += 1
                listed: list[Any] = []
                for x in (subj, *with_):
                    if x in listed:
                        continue
                    listed.append(x)
                    e = planted_entries.get(x.key)
                    if e is not None and not e.is_permit and e.active_at(ts):
                        hits.append((ts, "watchlist-hit", x.type, x.id, case))
            stats.sightings += 1
            yield rec
        stats.truth = len(self._planted_truth) + len(hits)

    def truth(self) -> list[dict[str, Any]]:
        """Every alert the run implies: the planted cases' alerts, and one watchlist-hit per
        sighting and listed subject (background included). Complete once `sightings()` has
        been consumed (the watchlist-hits are those of the sightings generated so far)."""
        rows = sorted([*self._planted_truth, *self._hits])
        return [{"rule": rule, "subject": {"type": typ, "id": sid},
                 "ts": format_ts(ts, self.tz), "case": case}
                for ts, rule, typ, sid, case in rows]


def _poisson(rng: random.Random, mean: float) -> int:
    if mean <= 0:
        return 0
    if mean < 50:
        limit, k, p = math.exp(-mean), 0, 1.0
        while True:
            p *= rng.random()
            if p <= limit:
                return k
            k += 1
    return max(0, round(rng.gauss(mean, math.sqrt(mean))))


def dumps(rec: dict[str, Any]) -> bytes:
    return orjson.dumps(rec)
