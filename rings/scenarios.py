"""Planted scenarios: every default rule's pattern, with ground truth, and near misses.

One builder per rule variant. A builder makes a `Case`: the sightings of a few dedicated fresh
subjects (plates 蒙Z..., person ids with the top bit set: never a background id), their
watchlist entries, and the alerts the rule must raise for them, in time relative to the case
start. `plant()` builds N positive cases per rule (cycling through its variants) and N near-miss
negative cases (which the rule must not alert on), and places them at random times over the
run so that every case, deadlines included, ends at least 13 minutes before the end of the run
(10 minutes, the allowed lateness and a margin): the rules decide in event time once the
watermark has passed, and the run's last minutes must hold no planted completion.

Cases are built to raise nothing but the alerts they list (plus watchlist-hits, which the
simulator derives for every sighting): planted subjects move at most 150 km/h except in the
cloned-plate cases, cross any ring at most 3 times in 2 h except in the loitering cases, make
no two successive inward crossings while watchlisted except in the penetration cases, reach the
checkpoint within 10 minutes after an inbound approach pass except in the avoidance cases, and
carry watchlisted persons only in the linked-hit and watchlist-hit cases. Cases are placed so
that no planted vehicle passes a site within 125 s of another case's watchlisted vehicle (and
the background keeps away from them too), so convoys arise only where planted.

Penetration's "broken by an outward crossing" near miss leaves the ring and enters its child
without re-entering the ring: a missed sighting, which is exactly what the rule must not bridge.

The rule semantics the cases follow are those of CONTRACTS.md §5 with their defaults.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable

from .models import Permit, Subject, WatchEntry
from .net import Net
from .sim import LISTS, PERSON_SPACE, PLANT_REGION, PLATE_BLOCK, AffinePerm, plate
from .timefmt import format_ts

RULES = ("watchlist-hit", "penetration", "checkpoint-avoidance", "cloned-plate", "loitering",
         "convoy", "permit-violation", "linked-hit")

SEC = 1000
MIN = 60_000
HOUR = 3_600_000
DAY = 86_400_000
LEAD_MS = 2 * MIN                    # no case starts in the first 2 minutes
TAIL_MS = 13 * MIN                   # every case is over (deadlines too) 13 min before the end
GUARD_MS = 125_000                   # planted vehicles keep this far from others' listed ones

# Rule defaults (CONTRACTS.md §5) the cases are built around (the others appear in the
# builders: penetration's 60 min, cloned-plate's 5 km and 250 km/h, loitering's 4 crossings
# in 2 h, convoy's 120 s and 60 min).
APPROACH_MS = 15 * MIN
CONVOY_SITES = 3
LINK_MS = 12 * HOUR


@dataclass(slots=True)
class Entry:
    """A watchlist entry; times relative to the case start, None: open-ended."""

    subject: Subject
    list: str
    severity: str
    reason: str
    start: int | None = None
    end: int | None = None
    permit: tuple[tuple[str, ...], int, int] | None = None       # route, from, until


Pass = tuple[int, str, "str | None", Subject, tuple[Subject, ...]]


@dataclass
class Case:
    rule: str
    positive: bool
    variant: str
    note: str
    id: str = ""
    start: int = 0                                   # absolute, once placed
    passes: list[Pass] = field(default_factory=list)
    entries: list[Entry] = field(default_factory=list)
    alerts: list[tuple[str, Subject, int]] = field(default_factory=list)  # not watchlist-hits
    decided: int = 0                                 # latest deadline (relative)
    facts: dict[str, Any] = field(default_factory=dict)   # what the case was built around

    @property
    def span(self) -> int:
        last = max((p[0] for p in self.passes), default=0)
        return max(last, self.decided, max((a[2] for a in self.alerts), default=0))

    def absolute_passes(self) -> list[Pass]:
        return sorted(((self.start + t, s, d, subj, w) for t, s, d, subj, w in self.passes),
                      key=lambda p: p[0])

    def absolute_alerts(self) -> list[tuple[str, Subject, int]]:
        return [(rule, subj, self.start + t) for rule, subj, t in self.alerts]

    def listed_vehicles(self) -> set[str]:
        return {e.subject.key for e in self.entries
                if e.subject.type == "vehicle" and e.list != "permit"}


@dataclass
class Plan:
    t0: int
    end: int
    cases: list[Case]
    notes: list[str]

    def _abs(self, case: Case, rel: int | None, default: int) -> int:
        return default if rel is None else case.start + rel

    def entries(self) -> list[tuple[Case, Entry]]:
        return [(c, e) for c in self.cases for e in c.entries]

    def entry_dicts(self, tz: int) -> list[dict[str, Any]]:
        out = []
        for c, e in self.entries():
            d: dict[str, Any] = {
                "subject": e.subject.to_json(), "list": e.list, "severity": e.severity,
                "reason": e.reason,
                "from": format_ts(self._abs(c, e.start, self.t0 - DAY), tz),
                "until": format_ts(self._abs(c, e.end, self.end + 30 * DAY), tz)}
            if e.permit is not None:
                route, pf, pu = e.permit
                d["permit"] = {"route": list(route), "from": format_ts(c.start + pf, tz),
                               "until": format_ts(c.start + pu, tz)}
            out.append(d)
        return out

    def entries_by_key(self) -> dict[str, WatchEntry]:
        out = {}
        for c, e in self.entries():
            permit = None
            if e.permit is not None:
                route, pf, pu = e.permit
                permit = Permit(tuple(route), c.start + pf, c.start + pu)
            out[e.subject.key] = WatchEntry(e.subject, e.list, e.severity, e.reason,
                                            self._abs(c, e.start, self.t0 - DAY),
                                            self._abs(c, e.end, self.end + 30 * DAY), permit)
        return out

    @property
    def listed_vehicles(self) -> set[str]:
        return set().union(*(c.listed_vehicles() for c in self.cases)) if self.cases else set()


# ---------------------------------------------------------------------------- the net

class Geo:
    """What the builders ask of the net: sites by ring, approach bayonets, distances."""

    def __init__(self, net: Net) -> None:
        self.net = net
        self.ring_sites: dict[str, list[str]] = {r: [] for r in net.rings}
        self.feeders: dict[str, list[str]] = {}
        for s in net.sites.values():
            if s.ring is not None:
                self.ring_sites[s.ring].append(s.id)
            if s.approaches is not None and s.ring is None:
                self.feeders.setdefault(s.approaches, []).append(s.id)
        self.fed = {f: c for c, fs in self.feeders.items() for f in fs}
        self.plain_by_ring = {r: [s for s in ss if s not in self.feeders]
                              for r, ss in self.ring_sites.items()}
        self.plain = [s for ss in self.plain_by_ring.values() for s in ss]
        self.gated = [c for c in self.feeders if net.sites[c].ring is not None]

    def d(self, a: str, b: str) -> float:
        return self.net.distance_km(a, b)

    def feeder(self, site: str) -> str | None:
        fs = self.feeders.get(site)
        return fs[0] if fs and self.net.sites[site].ring is not None else None

    def is_leaf(self, ring: str) -> bool:
        return not self.net.rings[ring].children

    def nearest(self, a: str, cands: Iterable[str]) -> list[str]:
        return sorted((c for c in cands if c != a), key=lambda c: (self.d(a, c), c))

    def rings_with_plain(self, k: int) -> list[str]:
        return [r for r, ss in self.plain_by_ring.items() if len(ss) >= k]

    def compact_cluster(self, k: int, rng: random.Random, max_km: float = 40.0
                        ) -> tuple[str, list[str]] | None:
        """A ring and k of its plain sites along a short path (at most max_km end to end
        when the net has one; else the shortest there is)."""
        found = []
        for r in self.rings_with_plain(k):
            for s in self.plain_by_ring[r]:
                path = [s]
                while len(path) < k:
                    path.append(self.nearest(path[-1], [x for x in self.plain_by_ring[r]
                                                        if x not in path])[0])
                found.append((sum(self.d(a, b) for a, b in zip(path, path[1:])), r, path))
        if not found:
            return None
        short = [f for f in found if f[0] <= max_km] or [min(found)]
        _, ring, path = rng.choice(short)
        return ring, path

    def chains(self) -> list[tuple[str, ...]]:
        """Every downward ring path of 2 or more rings whose legs can be driven in 50 min."""
        out: list[tuple[str, ...]] = []

        def walk(path: tuple[str, ...]) -> None:
            if len(path) >= 2:
                out.append(path)
            for c in self.net.rings[path[-1]].children:
                if self._gap_km(path[-1], c) <= 125.0:
                    walk(path + (c,))

        for r in self.net.rings:
            if self.ring_sites[r]:
                walk((r,))
        return out

    def _gap_km(self, r1: str, r2: str) -> float:
        a, b = self.ring_sites[r1], self.ring_sites[r2]
        return min((self.d(x, y) for x in a for y in b), default=math.inf)


class Ids:
    """Fresh planted subjects: bijections of a counter, in id ranges the background never uses."""

    def __init__(self, seed: int) -> None:
        rng = random.Random(f"rings-plant-ids:{seed}")
        self._v = AffinePerm(PLATE_BLOCK, rng)
        self._p = AffinePerm(PERSON_SPACE, rng)
        self.nv = self.np = 0

    def vehicle(self) -> Subject:
        self.nv += 1
        return Subject("vehicle", plate(self._v(self.nv), PLANT_REGION))

    def person(self) -> Subject:
        self.np += 1
        return Subject("person", f"p-{PERSON_SPACE + self._p(self.np):08x}")


class Drive:
    """A subject's sightings in a case: passes at sites, driving between them."""

    def __init__(self, g: Geo, case: Case, subj: Subject, rng: random.Random,
                 t: int = 0, kmh: float = 60.0) -> None:
        self.g, self.case, self.subj, self.rng = g, case, subj, rng
        self.t = t
        self.kmh = kmh
        self.last: str | None = None

    def at(self, t: int, site: str, d: str | None, with_: Iterable[Subject] = ()) -> int:
        self.t = t
        self.case.passes.append((t, site, d, self.subj, tuple(with_)))
        self.last = site
        return t

    def go(self, site: str, d: str | None, with_: Iterable[Subject] = (),
           kmh: float | None = None, at_least: int = 0) -> int:
        if self.last is not None:
            km = self.g.d(self.last, site)
            leg = int(km / (kmh or self.kmh) * HOUR) + self.rng.randint(20_000, 90_000)
            self.t += max(leg, at_least)
        return self.at(self.t, site, d, with_)

    def cross(self, site: str, d: str, with_: Iterable[Subject] = (), kmh: float | None = None,
              at_least: int = 0) -> int:
        """A ring crossing at `site` (through its approach bayonet, when it has one);
        returns the time of the pass at the ring site."""
        f = self.g.feeder(site)
        if f is not None and d == "in":
            self.go(f, "in", kmh=kmh, at_least=at_least)
            return self._approach_leg(site, with_)
        if f is not None and d == "out":
            t = self.go(site, "out", with_, kmh=kmh, at_least=at_least)
            self.go(f, "out", kmh=kmh)
            return t
        return self.go(site, d, with_, kmh=kmh, at_least=at_least)

    def cross_at(self, t: int, site: str, d: str, with_: Iterable[Subject] = ()) -> int:
        """A ring crossing whose ring-site pass is at exactly t."""
        f = self.g.feeder(site)
        if f is not None and d == "in":
            self.at(t - 5 * MIN, f, "in")
            return self.at(t, site, "in", with_)
        self.at(t, site, d, with_)
        if f is not None:
            self.go(f, "out")
        return t

    def _approach_leg(self, site: str, with_: Iterable[Subject]) -> int:
        assert self.last is not None
        km = self.g.d(self.last, site)
        leg = int(km / 40.0 * HOUR) + self.rng.randint(20_000, 60_000)
        return self.at(self.t + min(leg, 10 * MIN), site, "in", with_)


def _entry(rng: random.Random, subj: Subject, **kw: Any) -> Entry:
    lst, sev = rng.choice(LISTS)
    return Entry(subj, lst, sev, f"planted {lst} entry", **kw)


Builder = Callable[[Geo, random.Random, Ids], "Case | None"]


# ---------------------------------------------------------------------------- penetration

def _chain_sites(g: Geo, chain: tuple[str, ...], rng: random.Random) -> list[str]:
    first, second = g.ring_sites[chain[0]], g.ring_sites[chain[1]]
    near = sorted(first, key=lambda s: min(g.d(s, x) for x in second))
    sites = [rng.choice(near[:3])]
    for r in chain[1:]:
        sites.append(rng.choice(g.nearest(sites[-1], g.ring_sites[r])[:2]))
    return sites


def _drive_chain(g: Geo, case: Case, w: Subject, chain: tuple[str, ...], rng: random.Random,
                 person: bool) -> list[int]:
    sites = _chain_sites(g, chain, rng)
    drv = Drive(g, case, w, rng, t=0, kmh=30.0 if person else 60.0)
    times = [drv.cross(sites[0], "in")]
    for s in sites[1:]:
        km = g.d(drv.last or s, s)
        kmh = 30.0 if person else min(150.0, max(50.0, km / (40 / 60)))
        times.append(drv.cross(s, "in", kmh=kmh))
    case.facts.update(chain=chain, sites=sites, crossings=times)
    return times


def _penetration_case(g: Geo, rng: random.Random, ids: Ids, variant: str,
                      pick: Callable[[list[tuple[str, ...]]], list[tuple[str, ...]]],
                      note: str) -> Case | None:
    chains = pick(g.chains())
    if not chains:
        return None
    chain = rng.choice(chains)
    short = all(g._gap_km(a, b) <= 10 for a, b in zip(chain, chain[1:]))
    person = short and rng.random() < 0.5
    w = ids.person() if person else ids.vehicle()
    case = Case("penetration", True, variant, note)
    case.entries.append(_entry(rng, w))
    times = _drive_chain(g, case, w, chain, rng, person)
    if any(b - a > 55 * MIN for a, b in zip(times, times[1:])):
        return None
    alerted: set[str] = set()
    for ring, t in list(zip(chain, times))[1:]:
        sev = "critical" if g.is_leaf(ring) else "high"
        if sev not in alerted:
            alerted.add(sev)
            case.alerts.append(("penetration", w, t))
    case.facts["severities"] = sorted(alerted)
    return case


def penetration_to_leaf(g: Geo, rng: random.Random, ids: Ids) -> Case | None:
    return _penetration_case(g, rng, ids, "to-leaf",
                             lambda cs: [c for c in cs if g.is_leaf(c[-1])],
                             "watchlisted subject crosses inward ring by ring to an innermost "
                             "zone (critical, and high first when it passes an inner ring)")


def penetration_stop_inner(g: Geo, rng: random.Random, ids: Ids) -> Case | None:
    return _penetration_case(g, rng, ids, "stops-inside",
                             lambda cs: [c for c in cs if len(c) == 2 and not g.is_leaf(c[-1])],
                             "two inward crossings into a ring that has inner rings: high")


def penetration_deep(g: Geo, rng: random.Random, ids: Ids) -> Case | None:
    return _penetration_case(g, rng, ids, "deep",
                             lambda cs: [c for c in cs if len(c) >= 3 and g.is_leaf(c[-1])],
                             "three or more inward crossings: high, then critical at the "
                             "innermost zone")


def _shortest_pair(g: Geo) -> tuple[str, str] | None:
    pairs = [c[:2] for c in g.chains()]
    if not pairs:
        return None
    return min(pairs, key=lambda p: (g._gap_km(*p), p))  # type: ignore[return-value]


def penetration_broken(g: Geo, rng: random.Random, ids: Ids) -> Case | None:
    pair = _shortest_pair(g)
    if pair is None:
        return None
    r1, r2 = pair
    w = ids.vehicle()
    case = Case("penetration", False, "broken-by-out",
                "in through a ring, out again, then into its child ring within 60 min: the "
                "outward crossing resets the chain")
    case.entries.append(_entry(rng, w))
    s1 = rng.choice(g.ring_sites[r1])
    drv = Drive(g, case, w, rng)
    c1 = drv.cross(s1, "in")
    out_site = (g.nearest(s1, g.ring_sites[r1]) or [s1])[0]
    c_out = drv.cross(out_site, "out", at_least=4 * MIN)
    s2 = g.nearest(out_site, g.ring_sites[r2])[0]
    km = g.d(drv.last or s2, s2)
    c2 = drv.cross(s2, "in", kmh=min(150.0, max(50.0, km / (30 / 60))))
    if c2 - c1 > 55 * MIN:
        return None
    case.facts.update(chain=(r1, r2), crossings=[c1, c2], out=c_out)
    return case


def penetration_slow(g: Geo, rng: random.Random, ids: Ids) -> Case | None:
    pair = _shortest_pair(g)
    if pair is None:
        return None
    r1, r2 = pair
    w = ids.vehicle()
    case = Case("penetration", False, "61-min",
                "two successive inward crossings 61 min apart: outside the 60 min window")
    case.entries.append(_entry(rng, w))
    sites = _chain_sites(g, pair, rng)
    drv = Drive(g, case, w, rng)
    c1 = drv.cross(sites[0], "in")
    c2 = drv.cross_at(c1 + 61 * MIN, sites[1], "in")
    case.facts.update(chain=(r1, r2), crossings=[c1, c2])
    return case


def penetration_expired(g: Geo, rng: random.Random, ids: Ids) -> Case | None:
    chains = [c for c in g.chains() if g.is_leaf(c[-1])]
    if not chains:
        return None
    chain = rng.choice(chains)
    w = ids.vehicle()
    case = Case("penetration", False, "entry-expired",
                "the penetration pattern by a subject whose watchlist entry expired 10 min "
                "before it started")
    times = _drive_chain(g, case, w, chain, rng, False)
    first = min(p[0] for p in case.passes)
    case.entries.append(_entry(rng, w, start=first - 7 * DAY, end=first - 10 * MIN))
    case.facts["crossings"] = times
    return case


# ---------------------------------------------------------------------------- checkpoint-avoidance

def _approach(g: Geo, rng: random.Random) -> tuple[str, str] | None:
    if not g.gated:
        return None
    c = rng.choice(g.gated)
    return c, rng.choice(g.feeders[c])


def _avoid_case(g: Geo, rng: random.Random, ids: Ids, variant: str, note: str,
                listed: bool = False) -> tuple[Case, Drive, str, str] | None:
    ca = _approach(g, rng)
    if ca is None:
        return None
    c, f = ca
    v = ids.vehicle()
    case = Case("checkpoint-avoidance", True, variant, note)
    if listed:
        case.entries.append(_entry(rng, v))
    drv = Drive(g, case, v, rng)
    t = drv.at(0, f, "in")
    case.alerts.append(("checkpoint-avoidance", v, t + APPROACH_MS))
    case.decided = t + APPROACH_MS
    case.facts.update(checkpoint=c, approach=f, approach_ts=t)
    return case, drv, c, f


def avoidance_uturn(g: Geo, rng: random.Random, ids: Ids) -> Case | None:
    made = _avoid_case(g, rng, ids, "u-turn", "passes the approach bayonet inbound, turns "
                                              "back before the checkpoint")
    if made is None:
        return None
    case, drv, _, f = made
    drv.at(rng.randint(4 * MIN, 8 * MIN), f, "out")
    return case


def avoidance_bypass(g: Geo, rng: random.Random, ids: Ids) -> Case | None:
    made = _avoid_case(g, rng, ids, "bypass", "passes the approach bayonet inbound, then "
                                              "enters through an unmanned gate instead")
    if made is None:
        return None
    case, drv, c, f = made
    ring = g.net.sites[c].ring
    gates = [s for s in g.plain_by_ring.get(ring or "", []) if s != c]
    if not gates:
        return None
    gate = g.nearest(f, gates)[0]
    drv.go(gate, "in", kmh=70.0, at_least=20 * MIN)
    return case


def avoidance_late(g: Geo, rng: random.Random, ids: Ids) -> Case | None:
    made = _avoid_case(g, rng, ids, "late", "reaches the checkpoint 15 min 1 s after the "
                                            "approach bayonet: too late")
    if made is None:
        return None
    case, drv, c, _ = made
    drv.at(APPROACH_MS + 1 * SEC, c, "in")
    return case


def avoidance_listed(g: Geo, rng: random.Random, ids: Ids) -> Case | None:
    made = _avoid_case(g, rng, ids, "watchlisted", "a watchlisted vehicle turns back before "
                                                   "the checkpoint (high)", listed=True)
    if made is None:
        return None
    case, drv, _, f = made
    drv.at(rng.randint(4 * MIN, 8 * MIN), f, "out")
    return case


def avoidance_reached(g: Geo, rng: random.Random, ids: Ids) -> Case | None:
    ca = _approach(g, rng)
    if ca is None:
        return None
    c, f = ca
    v = ids.vehicle()
    case = Case("checkpoint-avoidance", False, "reached-14m59s",
                "reaches the checkpoint 14 min 59 s after the approach bayonet")
    drv = Drive(g, case, v, rng)
    drv.at(0, f, "in")
    drv.at(APPROACH_MS - 1 * SEC, c, "in")
    case.decided = APPROACH_MS
    case.facts.update(checkpoint=c, approach=f, approach_ts=0, checkpoint_ts=APPROACH_MS - SEC)
    return case


def avoidance_outbound(g: Geo, rng: random.Random, ids: Ids) -> Case | None:
    ca = _approach(g, rng)
    if ca is None:
        return None
    c, f = ca
    v = ids.vehicle()
    case = Case("checkpoint-avoidance", False, "outbound",
                "leaves through the checkpoint and passes its approach bayonet outbound")
    drv = Drive(g, case, v, rng)
    drv.at(0, c, "out")
    t = drv.go(f, "out")
    case.decided = t + APPROACH_MS
    case.facts.update(checkpoint=c, approach=f)
    return case


# ---------------------------------------------------------------------------- cloned-plate

def _dir(rng: random.Random) -> str:
    return rng.choice(("in", "out"))


def cloned_far(g: Geo, rng: random.Random, ids: Ids) -> Case | None:
    pairs = [(a, b) for a in g.plain for b in g.plain if a != b and g.d(a, b) >= 30]
    if not pairs:
        return None
    a, b = rng.choice(pairs)
    v = ids.vehicle()
    case = Case("cloned-plate", True, "far-pair", "one plate at two sites far apart, at an "
                                                  "impossible speed")
    kmh = rng.uniform(400, 900)
    dt = max(20 * SEC, int(g.d(a, b) / kmh * HOUR))
    drv = Drive(g, case, v, rng)
    drv.at(0, a, _dir(rng))
    t = drv.at(dt, b, _dir(rng))
    case.alerts.append(("cloned-plate", v, t))
    case.facts.update(pairs=[(a, b, 0, dt)])
    return case


def cloned_interleaved(g: Geo, rng: random.Random, ids: Ids) -> Case | None:
    near = [(a, a2) for a in g.plain for a2 in g.plain if a != a2 and 3 <= g.d(a, a2) <= 25]
    rng.shuffle(near)
    for a, a2 in near[:50]:
        far = [b for b in g.plain if g.d(a, b) >= 100 and g.d(a2, b) >= 100]
        if not far:
            continue
        b = rng.choice(far)
        dt1 = int(g.d(a, b) / 600 * HOUR)
        dt2 = int(g.d(b, a2) / 600 * HOUR)
        if (dt1 + dt2) / HOUR * 100 < g.d(a, a2):
            continue
        v = ids.vehicle()
        case = Case("cloned-plate", True, "interleaved",
                    "the real car passes two nearby gates; its clone is seen far away in "
                    "between: two implausible consecutive pairs")
        drv = Drive(g, case, v, rng)
        drv.at(0, a, "in")
        t1 = drv.at(dt1, b, _dir(rng))
        t2 = drv.at(dt1 + dt2, a2, "out")
        case.alerts += [("cloned-plate", v, t1), ("cloned-plate", v, t2)]
        case.facts.update(pairs=[(a, b, 0, t1), (b, a2, t1, t2)])
        return case
    return None


def cloned_240(g: Geo, rng: random.Random, ids: Ids) -> Case | None:
    pairs = [(a, b) for a in g.plain for b in g.plain if a != b and 20 <= g.d(a, b) <= 120]
    if not pairs:
        return None
    a, b = rng.choice(pairs)
    v = ids.vehicle()
    case = Case("cloned-plate", False, "240kmh", "two sites at least 5 km apart at 240 km/h")
    dt = math.ceil(g.d(a, b) / 240.0 * HOUR)
    drv = Drive(g, case, v, rng)
    drv.at(0, a, _dir(rng))
    drv.at(dt, b, _dir(rng))
    case.facts.update(pairs=[(a, b, 0, dt)])
    return case


def cloned_near(g: Geo, rng: random.Random, ids: Ids) -> Case | None:
    sites = list(g.net.sites)
    pairs = [(g.d(a, b), a, b) for a in sites for b in sites if a < b and 0 < g.d(a, b) < 5]
    if not pairs:
        return None
    _, a, b = max(pairs)
    if g.fed.get(b) == a:
        a, b = b, a
    v = ids.vehicle()
    case = Case("cloned-plate", False, "under-5km",
                f"two sites {g.d(a, b):.2f} km apart (under 5 km) 20 s apart")
    drv = Drive(g, case, v, rng)
    if g.fed.get(a) == b:
        drv.at(0, a, "in")
        drv.at(20 * SEC, b, "in")
    else:
        drv.at(0, a, "out" if g.feeder(a) else "in")
        drv.at(20 * SEC, b, "out" if g.feeder(b) else "in")
    case.facts.update(pairs=[(a, b, 0, 20 * SEC)])
    return case


# ---------------------------------------------------------------------------- loitering

def _loiter(g: Geo, rng: random.Random, ids: Ids, positive: bool, variant: str, note: str,
            gaps: list[int], alert_at: list[int]) -> Case | None:
    rings = g.rings_with_plain(2) or g.rings_with_plain(1)
    if not rings:
        return None
    ring = rng.choice(rings)
    plain = g.plain_by_ring[ring]
    s1 = rng.choice(plain)
    s2 = (g.nearest(s1, plain) or [s1])[0]
    if g.d(s1, s2) / (min(gaps) / HOUR) > 100:
        s2 = s1                         # too far for the gaps: U-turns at one gate
    subj = ids.person() if rng.random() < 0.3 else ids.vehicle()
    case = Case("loitering", positive, variant, note)
    drv = Drive(g, case, subj, rng)
    t = 0
    times = []
    for k in range(len(gaps) + 1):
        if k:
            t += gaps[k - 1]
        times.append(drv.at(t, s1 if k % 2 == 0 else s2, "in" if k % 2 == 0 else "out"))
    for k in alert_at:
        case.alerts.append(("loitering", subj, times[k]))
    case.facts.update(ring=ring, crossings=times)
    return case


def loitering_four(g: Geo, rng: random.Random, ids: Ids) -> Case | None:
    gaps = [rng.randint(8 * MIN, 14 * MIN) for _ in range(3)]
    return _loiter(g, rng, ids, True, "4-in-1h", "crosses one ring 4 times within an hour",
                   gaps, [3])


def loitering_six(g: Geo, rng: random.Random, ids: Ids) -> Case | None:
    gaps = [rng.randint(10 * MIN, 20 * MIN) for _ in range(5)]
    return _loiter(g, rng, ids, True, "6-in-2h", "crosses one ring 6 times within 2 h: one "
                                                 "alert, at the 4th", gaps, [3])


def loitering_twice(g: Geo, rng: random.Random, ids: Ids) -> Case | None:
    gaps = [25 * MIN + rng.randint(0, 60 * SEC) for _ in range(9)]
    return _loiter(g, rng, ids, True, "twice", "crosses one ring every 25 min for 4 h: alerts "
                                               "at the 4th and 9th crossings", gaps, [3, 8])


def loitering_three(g: Geo, rng: random.Random, ids: Ids) -> Case | None:
    gaps = [rng.randint(15 * MIN, 40 * MIN) for _ in range(2)]
    return _loiter(g, rng, ids, False, "3-in-2h", "crosses one ring 3 times in 2 h", gaps, [])


def loitering_slow(g: Geo, rng: random.Random, ids: Ids) -> Case | None:
    return _loiter(g, rng, ids, False, "4-in-2h01m",
                   "crosses one ring 4 times, the 4th 2 h 1 min after the 1st",
                   [40 * MIN, 40 * MIN, 41 * MIN], [])


# ---------------------------------------------------------------------------- convoy

def _convoy(g: Geo, rng: random.Random, ids: Ids, positive: bool, variant: str, note: str,
            offsets: Callable[[int], int], both: bool = False) -> Case | None:
    for _ in range(5):
        found = g.compact_cluster(CONVOY_SITES, rng)
        if found is None:
            return None
        ring, sites = found
        w, v = ids.vehicle(), ids.vehicle()
        case = Case("convoy", positive, variant, note)
        case.entries.append(_entry(rng, w))
        if both:
            case.entries.append(_entry(rng, v))
        dw = Drive(g, case, w, rng, t=0, kmh=rng.uniform(40, 60))
        dirs = ["out" if k % 2 == 0 else "in" for k in range(len(sites))]
        wt = [dw.go(s, d) for s, d in zip(sites, dirs)]
        if wt[-1] - wt[0] > 50 * MIN:
            continue
        dv = Drive(g, case, v, rng)
        vt = [dv.at(t + offsets(k), s, d) for k, (t, s, d) in enumerate(zip(wt, sites, dirs))]
        case.passes.sort(key=lambda p: p[0])
        if positive:
            # The companion is the subject; when both are watchlisted, the one whose key
            # sorts first.
            subject, partner = sorted((w, v), key=lambda s: s.key) if both else (v, w)
            case.alerts.append(("convoy", subject, max(wt[-1], vt[-1])))
            case.facts["partner"] = partner
        case.facts.update(ring=ring, sites=sites, w=wt, v=vt, watched=w, companion=v)
        return case
    return None


def convoy_follow(g: Geo, rng: random.Random, ids: Ids) -> Case | None:
    return _convoy(g, rng, ids, True, "follower", "a vehicle follows a watchlisted one 20-100 s "
                   "behind through 3 sites", lambda k: rng.randint(20 * SEC, 100 * SEC))


def convoy_lead(g: Geo, rng: random.Random, ids: Ids) -> Case | None:
    return _convoy(g, rng, ids, True, "leader", "a vehicle runs 20-100 s ahead of a "
                   "watchlisted one through 3 sites", lambda k: -rng.randint(20 * SEC, 100 * SEC))


def convoy_both(g: Geo, rng: random.Random, ids: Ids) -> Case | None:
    return _convoy(g, rng, ids, True, "both-listed", "two watchlisted vehicles together "
                   "through 3 sites: one alert, for the one whose key sorts first",
                   lambda k: rng.randint(20 * SEC, 100 * SEC), both=True)


def convoy_two(g: Geo, rng: random.Random, ids: Ids) -> Case | None:
    return _convoy(g, rng, ids, False, "two-sites", "together at 2 sites; at the 3rd 8-10 min "
                   "later", lambda k: rng.randint(30 * SEC, 90 * SEC) if k < 2 else
                   rng.randint(8 * MIN, 10 * MIN))


def convoy_gap(g: Geo, rng: random.Random, ids: Ids) -> Case | None:
    return _convoy(g, rng, ids, False, "gap-121s", "3 sites, but 121 s behind at the 2nd",
                   lambda k: 121 * SEC if k == 1 else rng.randint(30 * SEC, 60 * SEC))


# ---------------------------------------------------------------------------- permit-violation

def _permit(g: Geo, rng: random.Random, ids: Ids, positive: bool, variant: str, note: str,
            k: int) -> tuple[Case, Subject, list[str], list[int]] | None:
    found = g.compact_cluster(k, rng)
    if found is None:
        return None
    _, sites = found
    t = ids.vehicle()
    case = Case("permit-violation", positive, variant, note)
    drv = Drive(g, case, t, rng, kmh=50.0)
    path = sites[:2] + [sites[3] if k == 4 else sites[2]]
    times = [drv.go(s, "out" if i % 2 == 0 else "in") for i, s in enumerate(path)]
    case.facts.update(route=sites[:3], path=path, times=times)
    return case, t, sites[:3], times


def _permit_entry(case: Case, t: Subject, route: list[str], start: int, end: int) -> None:
    case.entries.append(Entry(t, "permit", "high", "civil explosives transport permit",
                              permit=(tuple(route), start, end)))
    case.facts.update(window=(start, end))


def permit_off_route(g: Geo, rng: random.Random, ids: Ids) -> Case | None:
    made = _permit(g, rng, ids, True, "off-route", "a permit vehicle leaves its route", 4)
    if made is None:
        return None
    case, t, route, times = made
    _permit_entry(case, t, route, -30 * MIN, times[-1] + HOUR)
    case.alerts.append(("permit-violation", t, times[2]))
    return case


def permit_late(g: Geo, rng: random.Random, ids: Ids) -> Case | None:
    made = _permit(g, rng, ids, True, "late", "a permit vehicle still on its route after its "
                                              "permit ended", 3)
    if made is None:
        return None
    case, t, route, times = made
    _permit_entry(case, t, route, -30 * MIN, (times[1] + times[2]) // 2)
    case.alerts.append(("permit-violation", t, times[2]))
    return case


def permit_early(g: Geo, rng: random.Random, ids: Ids) -> Case | None:
    made = _permit(g, rng, ids, True, "early", "a permit vehicle on its route before its "
                                               "permit starts", 3)
    if made is None:
        return None
    case, t, route, times = made
    _permit_entry(case, t, route, (times[0] + times[1]) // 2, times[-1] + HOUR)
    case.alerts.append(("permit-violation", t, times[0]))
    return case


def permit_ok(g: Geo, rng: random.Random, ids: Ids) -> Case | None:
    made = _permit(g, rng, ids, False, "on-route", "a permit vehicle on its route within its "
                                                   "window", 3)
    if made is None:
        return None
    case, t, route, times = made
    _permit_entry(case, t, route, times[0] - 20 * MIN, times[-1] + 20 * MIN)
    return case


# ---------------------------------------------------------------------------- linked-hit

def _gate_near(g: Geo, c: str) -> str:
    ring = g.net.sites[c].ring or ""
    plain = [s for s in g.plain_by_ring.get(ring, []) if s != c]
    if plain:
        return g.nearest(c, plain)[0]
    return (g.nearest(c, g.ring_sites.get(ring, [])) or [c])[0]


def _linked(g: Geo, rng: random.Random, ids: Ids, positive: bool, variant: str, note: str,
            later: list[tuple[int, str]], listed: bool = True, before: bool = False,
            expired: bool = False, companion: bool = False) -> Case | None:
    if not g.gated:
        return None
    c = rng.choice(g.gated)
    gate = _gate_near(g, c)
    v, p = ids.vehicle(), ids.person()
    case = Case("linked-hit", positive, variant, note)
    drv = Drive(g, case, v, rng, kmh=60.0)
    if before:
        drv.at(0, gate, "out")
    riders = [ids.person(), p] if companion else [p]
    link = drv.cross(c, "in", with_=riders, at_least=20 * MIN if before else 0)
    if listed:
        kw: dict[str, Any] = {}
        if expired:
            kw = {"start": link - 7 * DAY, "end": link - 30 * MIN}
        case.entries.append(_entry(rng, p, **kw))
    for gap, d in later:
        drv.cross_at(link + gap, gate, d) if gap >= HOUR else drv.cross(gate, d, at_least=gap)
    if positive:
        for t, _, _, subj, _ in case.passes:
            if subj == v and link < t <= link + LINK_MS:
                case.alerts.append(("linked-hit", v, t))
    case.facts.update(link=link, person=p, vehicle=v,
                      later=[t for t, _, _, s, _ in case.passes if s == v and t > link],
                      earlier=[t for t, _, _, s, _ in case.passes if s == v and t < link])
    return case


def linked_two(g: Geo, rng: random.Random, ids: Ids) -> Case | None:
    return _linked(g, rng, ids, True, "two-later", "a vehicle carrying a watchlisted person "
                   "through a checkpoint is seen again twice", [(20 * MIN, "out"),
                                                                (25 * MIN, "in")])


def linked_companion(g: Geo, rng: random.Random, ids: Ids) -> Case | None:
    return _linked(g, rng, ids, True, "companion", "a watchlisted person and another rider; the "
                   "vehicle is seen once more", [(20 * MIN, "out")], companion=True)


def linked_hours(g: Geo, rng: random.Random, ids: Ids) -> Case | None:
    return _linked(g, rng, ids, True, "11h-later", "the vehicle is seen again 11 h later",
                   [(11 * HOUR, "out")])


def linked_late(g: Geo, rng: random.Random, ids: Ids) -> Case | None:
    return _linked(g, rng, ids, False, "12h01m", "the vehicle is seen again 12 h 1 min later",
                   [(LINK_MS + MIN, "out")])


def linked_before(g: Geo, rng: random.Random, ids: Ids) -> Case | None:
    return _linked(g, rng, ids, False, "before-only", "the vehicle is seen before it carries "
                   "the watchlisted person, never after", [], before=True)


def linked_expired(g: Geo, rng: random.Random, ids: Ids) -> Case | None:
    return _linked(g, rng, ids, False, "entry-expired", "the person's entry expired 30 min "
                   "before the ride; the vehicle is seen again", [(20 * MIN, "out")],
                   expired=True)


# ---------------------------------------------------------------------------- watchlist-hit

def _single(g: Geo, rng: random.Random, ids: Ids, positive: bool, variant: str, note: str,
            person: bool = False) -> tuple[Case, Subject, int, str] | None:
    if not g.plain:
        return None
    site = rng.choice(g.plain)
    subj = ids.person() if person else ids.vehicle()
    case = Case("watchlist-hit", positive, variant, note)
    t = Drive(g, case, subj, rng).at(0, site, _dir(rng))
    return case, subj, t, site


def watch_vehicle(g: Geo, rng: random.Random, ids: Ids) -> Case | None:
    made = _single(g, rng, ids, True, "vehicle", "a watchlisted vehicle touches a ring")
    if made is None:
        return None
    case, subj, _, _ = made
    case.entries.append(_entry(rng, subj))
    return case


def watch_person(g: Geo, rng: random.Random, ids: Ids) -> Case | None:
    made = _single(g, rng, ids, True, "person", "a watchlisted person touches a ring",
                   person=True)
    if made is None:
        return None
    case, subj, _, _ = made
    case.entries.append(_entry(rng, subj))
    return case


def watch_passenger(g: Geo, rng: random.Random, ids: Ids) -> Case | None:
    if not g.gated:
        return None
    c = rng.choice(g.gated)
    v, p = ids.vehicle(), ids.person()
    case = Case("watchlist-hit", True, "passenger", "a watchlisted person rides through a "
                                                    "checkpoint (the vehicle is not seen again)")
    Drive(g, case, v, rng).cross(c, "in", with_=[p])
    case.entries.append(_entry(rng, p))
    return case


def watch_from(g: Geo, rng: random.Random, ids: Ids) -> Case | None:
    made = _single(g, rng, ids, True, "from-boundary", "the entry starts exactly at the "
                                                       "sighting (from is inclusive)")
    if made is None:
        return None
    case, subj, t, _ = made
    case.entries.append(_entry(rng, subj, start=t))
    return case


def watch_until(g: Geo, rng: random.Random, ids: Ids) -> Case | None:
    made = _single(g, rng, ids, False, "until-boundary", "the entry ends exactly at the "
                                                         "sighting (until is exclusive)")
    if made is None:
        return None
    case, subj, t, _ = made
    case.entries.append(_entry(rng, subj, start=t - DAY, end=t))
    return case


def watch_not_yet(g: Geo, rng: random.Random, ids: Ids) -> Case | None:
    made = _single(g, rng, ids, False, "not-yet", "the entry starts 1 min after the sighting")
    if made is None:
        return None
    case, subj, t, _ = made
    case.entries.append(_entry(rng, subj, start=t + MIN))
    return case


def watch_permit(g: Geo, rng: random.Random, ids: Ids) -> Case | None:
    made = _single(g, rng, ids, False, "permit", "a vehicle on the permit list, on its route "
                                                 "within its window")
    if made is None:
        return None
    case, subj, t, site = made
    _permit_entry(case, subj, [site], t - HOUR, t + HOUR)
    return case


# ---------------------------------------------------------------------------- planting

POSITIVE: dict[str, list[Builder]] = {
    "watchlist-hit": [watch_vehicle, watch_person, watch_passenger, watch_from],
    "penetration": [penetration_to_leaf, penetration_deep, penetration_stop_inner],
    "checkpoint-avoidance": [avoidance_uturn, avoidance_bypass, avoidance_late,
                             avoidance_listed],
    "cloned-plate": [cloned_far, cloned_interleaved],
    "loitering": [loitering_four, loitering_six, loitering_twice],
    "convoy": [convoy_follow, convoy_lead, convoy_both],
    "permit-violation": [permit_off_route, permit_late, permit_early],
    "linked-hit": [linked_two, linked_companion, linked_hours],
}
NEGATIVE: dict[str, list[Builder]] = {
    "watchlist-hit": [watch_until, watch_not_yet, watch_permit],
    "penetration": [penetration_broken, penetration_slow, penetration_expired],
    "checkpoint-avoidance": [avoidance_reached, avoidance_outbound],
    "cloned-plate": [cloned_240, cloned_near],
    "loitering": [loitering_three, loitering_slow],
    "convoy": [convoy_two, convoy_gap],
    "permit-violation": [permit_ok],
    "linked-hit": [linked_late, linked_before, linked_expired],
}


def parse_rules(spec: str | Iterable[str]) -> tuple[str, ...]:
    """`all`, or rule ids (a comma-separated string or a list); ValueError on unknown ids."""
    items = [s.strip() for s in (spec.split(",") if isinstance(spec, str) else spec)]
    items = [s for s in items if s]
    if "all" in items:
        return RULES
    bad = [s for s in items if s not in RULES]
    if bad:
        raise ValueError(f"unknown rule(s) {', '.join(bad)}: choose from all, "
                         f"{', '.join(RULES)}")
    return tuple(r for r in RULES if r in items)


def plant(net: Net, rules: Iterable[str], cases: int, t0: int, end: int, seed: int) -> Plan:
    """Build and place `cases` positive and `cases` near-miss cases for each rule."""
    g = Geo(net)
    rng = random.Random(f"rings-plant:{seed}")
    ids = Ids(seed)
    room = end - t0 - LEAD_MS - TAIL_MS
    notes: list[str] = []
    built: list[Case] = []
    for rule in parse_rules(list(rules)):
        for positive, variants in ((True, POSITIVE[rule]), (False, NEGATIVE[rule])):
            unfit: dict[str, int | None] = {}         # variant -> least span seen (None: net)
            made = 0
            for k in range(cases):
                case = None
                for j in range(3 * len(variants)):      # random geometry differs per try
                    fn = variants[(k + j) % len(variants)]
                    c = fn(g, rng, ids)
                    if c is not None and c.span <= room:
                        case = c
                        break
                    name = fn.__name__ if c is None else c.variant
                    old = unfit.get(name)
                    unfit[name] = None if c is None else min(c.span, old or c.span)
                if case is None:
                    continue
                made += 1
                case.id = (f"{rule}-{k + 1:02d}-{case.variant}" if positive else
                           f"{rule}-neg-{k + 1:02d}-{case.variant}")
                built.append(case)
            if unfit and made < cases:
                why = ", ".join(
                    f"{v} (the net lacks what it needs)" if span is None else
                    f"{v} (needs a run of {math.ceil((span + LEAD_MS + TAIL_MS) / MIN)} min)"
                    for v, span in sorted(unfit.items()))
                kind = "positive" if positive else "near-miss"
                notes.append(f"{rule}: {made} of {cases} {kind} cases; could not plant {why}")
    placed: list[Case] = []
    vehicles: dict[str, list[tuple[int, str, bool]]] = {}    # site -> (ts, case id, listed)
    for case in built:
        listed = case.listed_vehicles()
        for _ in range(200):
            start = t0 + LEAD_MS + int(rng.random() * (room - case.span + 1))
            if not _clashes(case, start, listed, vehicles):
                break
        else:
            notes.append(f"{case.id}: no room without a chance convoy; not planted")
            continue
        case.start = start
        for t, site, _, subj, _ in case.absolute_passes():
            if subj.type == "vehicle":
                vehicles.setdefault(site, []).append((t, case.id, subj.key in listed))
        placed.append(case)
    return Plan(t0, end, placed, notes)


def _clashes(case: Case, start: int, listed: set[str],
             vehicles: dict[str, list[tuple[int, str, bool]]]) -> bool:
    for t, site, _, subj, _ in case.passes:
        if subj.type != "vehicle":
            continue
        mine = subj.key in listed
        for u, _, theirs in vehicles.get(site, ()):
            if (mine or theirs) and abs(start + t - u) <= GUARD_MS:
                return True
    return False
