"""`cloned-plate`: one plate in two places at once (套牌)."""

from __future__ import annotations

from typing import Any

from ..geo import haversine_km
from ..models import Alert
from ..net import Net
from ..params import Param
from .base import NO_TIME, Context, Detector, Event, Timers
from .describe import who


class ClonedPlate(Detector):
    kind = "cloned-plate"
    mode = "ordered"
    subjects = ("vehicle",)
    severities = ("high",)
    params = (
        Param("min_km", "float", 5.0, "sites at least this far apart (great circle)", min=0),
        Param("max_kmh", "float", 250.0, "a speed above this is impossible", min=1),
    )

    def check_net(self, net: Net) -> list[tuple[str | None, str]]:
        want = self.p["min_km"]
        sites = list(net.sites.values())
        far, pair = 0.0, ("", "")
        for i, a in enumerate(sites):
            for b in sites[i + 1:]:
                km = haversine_km(a.lat, a.lon, b.lat, b.lon)
                if km >= want:
                    return []
                if km > far:
                    far, pair = km, (a.id, b.id)
        between = f", {pair[0]}–{pair[1]}" if pair[0] else ""
        return [("min_km", f"min_km {want:g} can never be reached: no two sites of net "
                           f"{net.name!r} are that far apart (at most {far:.1f} km{between})")]

    def setup(self, net: Net) -> None:
        # No pair of sightings further apart in time than the net's widest span at the
        # impossible speed can match: that bounds how long the last sighting is kept.
        lats = [s.lat for s in net.sites.values()]
        lons = [s.lon for s in net.sites.values()]
        corners = [(a, b) for a in (min(lats), max(lats)) for b in (min(lons), max(lons))]
        # The farthest pair of corners of the sites' bounding box, with a margin: on wide
        # nets far from the equator an edge can be longer than the diagonal.
        span_km = 1.05 * max(haversine_km(*p, *q) for p in corners for q in corners)
        self.horizon = int(span_km / self.p["max_kmh"] * 3_600_000) + 1

    def on_event(self, ev: Event, ctx: Context, state: dict[str, Any], timers: Timers
                 ) -> list[Alert]:
        prev = state.get("p")
        state["p"] = [ev.ts, ev.id, ev.site]
        if prev is None or prev[2] == ev.site:
            return []
        km = ctx.net.distance_km(prev[2], ev.site)
        if km < self.p["min_km"]:
            return []
        dt = ev.ts - prev[0]
        kmh = km / (dt / 3_600_000) if dt > 0 else float("inf")
        if kmh <= self.p["max_kmh"]:
            return []
        shown = "at the same time" if dt <= 0 else f"{dt / 60_000:.1f} min apart ({kmh:.0f} km/h)"
        site = ctx.net.sites[ev.site]
        return [Alert(
            rule=self.rule_id, severity=self.severity("high"), subject=ev.subject, ts=ev.ts,
            tz=ev.tz, evidence=[prev[1], ev.id], site=ev.site, ring=site.ring,
            zone=site.zone_after(ev.dir), dir=ev.dir,
            summary=(f"{who(ev.subject)} seen at {prev[2]} and at {ev.site}, {km:.0f} km "
                     f"apart, {shown}: a cloned plate?"),
            details={"from_site": prev[2], "km": round(km, 1),
                     "kmh": None if dt <= 0 else round(kmh)})]

    def keep_until(self, state: dict[str, Any]) -> int:
        prev = state.get("p")
        return prev[0] + self.horizon if prev else NO_TIME

    def horizon_ms(self) -> int:
        return self.horizon
