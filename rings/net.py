"""The net: rings that nest as a tree, and the sites on them (CONTRACTS.md §1).

Everything a detector asks of the net per sighting (which ring, which zone after the pass,
how deep) is precomputed once per site, so the hot path is a dict lookup.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .errors import NetError, SourceErrors
from .geo import haversine_km
from .yamlsrc import LDict, LList, load_yaml_file, load_yaml_text

OUTSIDE = "outside"
SITE_TYPES = ("checkpoint", "bayonet")
_NET_KEYS = {"net", "rings", "sites"}
_RING_KEYS = {"id", "name", "parent"}
_SITE_KEYS = {"id", "type", "ring", "name", "lat", "lon", "approaches"}


@dataclass(frozen=True, slots=True)
class Ring:
    id: str
    name: str | None
    parent: str | None
    depth: int                      # a root ring has depth 1
    children: tuple[str, ...]
    roots_path: tuple[str, ...]     # ring ids from the root down to this ring


@dataclass(frozen=True, slots=True)
class Site:
    id: str
    type: str
    ring: str | None
    lat: float
    lon: float
    name: str | None = None
    approaches: str | None = None
    # Derived: the zone a subject is in after passing this site inward / outward.
    zone_in: str | None = None
    zone_out: str | None = None

    @property
    def is_checkpoint(self) -> bool:
        return self.type == "checkpoint"

    def zone_after(self, direction: str | None) -> str | None:
        """Zone after a pass; None where the pass says nothing about the zone."""
        if direction == "in":
            return self.zone_in
        if direction == "out":
            return self.zone_out
        return None


@dataclass(slots=True)
class Net:
    name: str
    rings: dict[str, Ring]
    sites: dict[str, Site]
    source: str | None = None
    _dist_cache: dict[tuple[str, str], float] = field(default_factory=dict, repr=False)

    def zone_depth(self, zone: str | None) -> int:
        if zone is None or zone == OUTSIDE:
            return 0
        return self.rings[zone].depth

    def is_leaf_zone(self, zone: str) -> bool:
        return zone != OUTSIDE and not self.rings[zone].children

    def outer_zone(self, ring_id: str) -> str:
        """The zone just outside a ring: its parent ring, or `outside` for a root."""
        return self.rings[ring_id].parent or OUTSIDE

    def distance_km(self, a: str, b: str) -> float:
        key = (a, b) if a <= b else (b, a)
        d = self._dist_cache.get(key)
        if d is None:
            sa, sb = self.sites[a], self.sites[b]
            d = haversine_km(sa.lat, sa.lon, sb.lat, sb.lon)
            self._dist_cache[key] = d
        return d

    def root_rings(self) -> list[str]:
        return [r.id for r in self.rings.values() if r.parent is None]

    def checkpoints(self) -> list[Site]:
        return [s for s in self.sites.values() if s.is_checkpoint]


# ---------------------------------------------------------------------------- loading

def load_net(path: str) -> Net:
    """Load and validate a net file; raise SourceErrors listing every problem with its line."""
    return build_net(load_yaml_file(path), path)


def load_net_text(text: str, name: str = "<net>") -> Net:
    return build_net(load_yaml_text(text, name), name)


def build_net(doc: Any, file: str) -> Net:
    errors: list[NetError] = []

    def err(msg: str, pos: tuple[int, int] | None) -> None:
        errors.append(NetError(msg, file, *(pos or (None, None))))

    if not isinstance(doc, LDict):
        raise SourceErrors([NetError("a net file must be a mapping with net, rings and sites",
                                     file, 1, 1)])
    for k in doc:
        if k not in _NET_KEYS:
            err(f"unknown field {k!r} (expected one of: {', '.join(sorted(_NET_KEYS))})",
                doc.where(k))
    name = doc.get("net")
    if not isinstance(name, str) or not name:
        err("`net` must be a non-empty string naming the net", doc.where("net"))
        name = "?"

    raw_rings = doc.get("rings")
    ring_rows: dict[str, tuple[str | None, str | None, tuple[int, int]]] = {}
    if not isinstance(raw_rings, LList) or not raw_rings:
        err("`rings` must be a non-empty list", doc.where("rings"))
        raw_rings = LList()
    for i, r in enumerate(raw_rings):
        pos = raw_rings.where(i)
        if not isinstance(r, LDict):
            err("a ring must be a mapping with at least an id", pos)
            continue
        for k in r:
            if k not in _RING_KEYS:
                err(f"unknown field {k!r} in ring (expected id, name, parent)", r.where(k))
        rid = r.get("id")
        if not isinstance(rid, str) or not rid:
            err("ring `id` must be a non-empty string", r.where("id") if "id" in r else pos)
            continue
        if rid == OUTSIDE:
            err(f"ring id {OUTSIDE!r} is reserved for the zone outside every root ring",
                r.where("id", True))
            continue
        if rid in ring_rows:
            err(f"duplicate ring id {rid!r} (first at line {ring_rows[rid][2][0]})",
                r.where("id", True))
            continue
        rname = r.get("name")
        if rname is not None and not isinstance(rname, str):
            err("ring `name` must be a string", r.where("name", True))
        parent = r.get("parent")
        if parent is not None and (not isinstance(parent, str) or not parent):
            err("ring `parent` must be a ring id", r.where("parent", True))
            parent = None
        ring_rows[rid] = (rname if isinstance(rname, str) else None, parent, r.where("id", True))

    for rid, (_, parent, pos) in ring_rows.items():
        if parent is not None and parent not in ring_rows:
            err(f"ring {rid!r} has unknown parent {parent!r}", pos)
    rings: dict[str, Ring] = {}
    for rid in ring_rows:
        path: list[str] = []
        cur: str | None = rid
        seen: set[str] = set()
        while cur is not None and cur in ring_rows:
            if cur in seen:
                err(f"ring {rid!r} is part of a parent cycle", ring_rows[rid][2])
                path = []
                break
            seen.add(cur)
            path.append(cur)
            cur = ring_rows[cur][1]
        if not path:
            continue
        path.reverse()
        children = tuple(c for c, row in ring_rows.items() if row[1] == rid)
        rings[rid] = Ring(rid, ring_rows[rid][0], ring_rows[rid][1], len(path), children,
                          tuple(path))

    raw_sites = doc.get("sites")
    sites: dict[str, Site] = {}
    site_pos: dict[str, tuple[int, int]] = {}
    approaches: list[tuple[str, str, tuple[int, int]]] = []
    if not isinstance(raw_sites, LList) or not raw_sites:
        err("`sites` must be a non-empty list", doc.where("sites"))
        raw_sites = LList()
    for i, s in enumerate(raw_sites):
        pos = raw_sites.where(i)
        if not isinstance(s, LDict):
            err("a site must be a mapping with id, type, lat and lon", pos)
            continue
        bad = False
        for k in s:
            if k not in _SITE_KEYS:
                err(f"unknown field {k!r} in site (expected one of: "
                    f"{', '.join(sorted(_SITE_KEYS))})", s.where(k))
        sid = s.get("id")
        if not isinstance(sid, str) or not sid:
            err("site `id` must be a non-empty string", s.where("id") if "id" in s else pos)
            continue
        if sid in sites or sid in site_pos:
            err(f"duplicate site id {sid!r} (first at line {site_pos[sid][0]})",
                s.where("id", True))
            continue
        site_pos[sid] = s.where("id", True)
        stype = s.get("type")
        if stype not in SITE_TYPES:
            err(f"site {sid!r}: `type` must be checkpoint or bayonet",
                s.where("type", True) if "type" in s else pos)
            bad = True
        ring = s.get("ring")
        if ring is not None and ring not in rings:
            if ring not in ring_rows:
                err(f"site {sid!r} is on unknown ring {ring!r}", s.where("ring", True))
            bad = True
        coords = []
        for key, lo, hi in (("lat", -90.0, 90.0), ("lon", -180.0, 180.0)):
            v = s.get(key)
            if key not in s:
                err(f"site {sid!r}: `{key}` is required (WGS84 degrees)", pos)
                bad = True
            elif isinstance(v, bool) or not isinstance(v, (int, float)) or not lo <= v <= hi:
                err(f"site {sid!r}: `{key}` must be a number from {lo:g} to {hi:g}",
                    s.where(key, True))
                bad = True
            else:
                coords.append(float(v))
        sname = s.get("name")
        if sname is not None and not isinstance(sname, str):
            err(f"site {sid!r}: `name` must be a string", s.where("name", True))
        appr = s.get("approaches")
        if appr is not None:
            if not isinstance(appr, str) or not appr:
                err(f"site {sid!r}: `approaches` must be a checkpoint id",
                    s.where("approaches", True))
                appr = None
            else:
                approaches.append((sid, appr, s.where("approaches", True)))
        if bad:
            continue
        sites[sid] = Site(sid, stype, ring, coords[0], coords[1],
                          sname if isinstance(sname, str) else None, appr)

    for sid, target, pos in approaches:
        if sid not in sites:
            continue
        t = sites.get(target)
        if t is None:
            if target not in site_pos:
                err(f"site {sid!r} approaches unknown site {target!r}", pos)
        elif not t.is_checkpoint:
            err(f"site {sid!r} approaches {target!r}, which is a {t.type}, not a checkpoint",
                pos)
        elif target == sid:
            err(f"site {sid!r} cannot approach itself", pos)

    if errors:
        raise SourceErrors(errors)

    net = Net(name, rings, {}, file)
    for sid, s in sites.items():
        zin = zout = None
        if s.ring is not None:
            zin, zout = s.ring, net.outer_zone(s.ring)
        elif s.approaches is not None and sites[s.approaches].ring is not None:
            # An approach bayonet stands on the road outside the checkpoint it leads to.
            outer = net.outer_zone(sites[s.approaches].ring)  # type: ignore[arg-type]
            zin = zout = outer
        net.sites[sid] = Site(s.id, s.type, s.ring, s.lat, s.lon, s.name, s.approaches,
                              zin, zout)
    return net
