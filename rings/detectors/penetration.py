"""`penetration`: a subject of interest moving inward through the rings, fast."""

from __future__ import annotations

from typing import Any

from ..models import Alert
from ..net import Net, Site
from ..params import Param
from .base import NO_TIME, Context, Detector, Event, Timers
from .describe import minutes, ring_label, who


class Penetration(Detector):
    kind = "penetration"
    mode = "ordered"
    severities = ("high", "critical")
    listed = True
    params = (
        Param("min_crossings", "int", 2, "successive inward crossings that make a chain",
              min=2),
        Param("window", "duration", "60m", "the chain's crossings all lie within this", min=1,
              why="a window of 0 only holds crossings at the very same instant"),
    )

    def check_net(self, net: Net) -> list[tuple[str | None, str]]:
        # The longest chain the net allows: rings each a child of the last, each with a
        # site to cross it at.
        crossable = {s.ring for s in net.sites.values() if s.ring is not None}
        longest: dict[str, list[str]] = {}

        def chain(r: str) -> list[str]:
            if r not in longest:
                below = [chain(c) for c in net.rings[r].children if c in crossable]
                longest[r] = [r] + max(below, key=len, default=[])
            return longest[r]

        best = max((chain(r) for r in sorted(crossable)), key=len, default=[])
        n = self.p["min_crossings"]
        if len(best) >= n:
            return []
        shown = " → ".join(best) if best else "none: no site is on a ring"
        return [("min_crossings",
                 f"min_crossings {n} can never be reached: the longest chain of inward "
                 f"crossings net {net.name!r} allows, each into a child ring of the last, "
                 f"is {len(best)} ({shown})")]

    def on_event(self, ev: Event, ctx: Context, state: dict[str, Any], timers: Timers
                 ) -> list[Alert]:
        site = ctx.net.sites[ev.site]
        if site.ring is None or ev.dir is None:
            return []
        if ev.dir == "out":
            state.pop("c", None)
            state.pop("a", None)
            return []
        ring = site.ring
        chain: list[list[Any]] = state.get("c") or []
        if chain and ctx.net.rings[ring].parent == chain[-1][0]:
            chain.append([ring, ev.ts, ev.id])
        else:
            chain = [[ring, ev.ts, ev.id]]
            state.pop("a", None)
        window = self.p["window"]
        while ev.ts - chain[0][1] > window:
            chain.pop(0)
        state["c"] = chain
        if len(chain) < self.p["min_crossings"]:
            return []
        entry = ctx.listed(ev.subject.key, ev.ts)
        if entry is None:
            return []
        leaf = not ctx.net.rings[ring].children
        sev = "critical" if leaf else "high"
        done = state.get("a")
        if done == "critical" or (done == "high" and sev == "high"):
            return []       # one alert per chain and severity
        state["a"] = sev
        span = ev.ts - chain[0][1]
        path = " → ".join(c[0] for c in chain)
        return [Alert(
            rule=self.rule_id, severity=self.severity(sev), subject=ev.subject, ts=ev.ts,
            tz=ev.tz, evidence=[c[2] for c in chain], site=ev.site, ring=ring, zone=ring,
            dir="in",
            summary=(f"{who(ev.subject, entry.list)} crossed {len(chain)} rings inward in "
                     f"{minutes(span)} ({path}), reaching {ring_label(ctx.net, ring)} at "
                     f"{ev.site}"),
            details={"chain": [c[0] for c in chain], "depth": ctx.net.zone_depth(ring),
                     "innermost": leaf, "list": entry.list,
                     "listed_severity": entry.severity})]

    def reacts(self, site: Site, direction: str | None) -> bool:
        return site.ring is not None and direction is not None

    def keep_until(self, state: dict[str, Any]) -> int:
        chain = state.get("c")
        return chain[-1][1] + self.p["window"] if chain else NO_TIME

    def horizon_ms(self) -> int:
        return self.p["window"]
