"""`loitering`: circling a ring, crossing it again and again."""

from __future__ import annotations

from typing import Any

from ..models import Alert
from ..net import Net, Site
from ..params import Param
from .base import NO_TIME, Context, Detector, Event, Timers
from .describe import minutes, ring_label, who


class Loitering(Detector):
    kind = "loitering"
    mode = "ordered"
    severities = ("low",)
    params = (
        Param("crossings", "int", 4, "crossings of one ring that make loitering", min=2),
        Param("window", "duration", "2h", "the crossings lie within this", min=1,
              why="a window of 0 only holds crossings at the very same instant"),
        Param("cooldown", "duration", "2h",
              "after an alert, none for the same subject and ring for this long", min=0),
    )

    def check_net(self, net: Net) -> list[tuple[str | None, str]]:
        if any(s.ring is not None for s in net.sites.values()):
            return []
        return [(None, f"no site of net {net.name!r} is on a ring: nothing to cross, "
                       "loitering can never fire")]

    def on_event(self, ev: Event, ctx: Context, state: dict[str, Any], timers: Timers
                 ) -> list[Alert]:
        site = ctx.net.sites[ev.site]
        if site.ring is None or ev.dir is None:
            return []
        ring = site.ring
        r = state.get(ring)
        if r is None:                   # the first crossing of this ring (the usual case)
            r = state[ring] = {"x": [[ev.ts, ev.id]]}
        else:
            window = self.p["window"]
            r["x"] = [x for x in r["x"] if ev.ts - x[0] <= window] + [[ev.ts, ev.id]]
        if len(r["x"]) < self.p["crossings"] or ev.ts < r.get("cd", NO_TIME):
            return []
        r["cd"] = ev.ts + self.p["cooldown"]
        n = len(r["x"])
        return [Alert(
            rule=self.rule_id, severity=self.severity("low"), subject=ev.subject, ts=ev.ts,
            tz=ev.tz, evidence=[x[1] for x in r["x"]], site=ev.site, ring=ring,
            zone=site.zone_after(ev.dir), dir=ev.dir,
            summary=(f"{who(ev.subject)} crossed {ring_label(ctx.net, ring)} {n} times in "
                     f"{minutes(ev.ts - r['x'][0][0])}"),
            details={"crossings": n})]

    def reacts(self, site: Site, direction: str | None) -> bool:
        return site.ring is not None and direction is not None

    def keep_until(self, state: dict[str, Any]) -> int:
        t = NO_TIME
        for r in state.values():
            if r["x"]:
                t = max(t, r["x"][-1][0] + self.p["window"])
            t = max(t, r.get("cd", NO_TIME))
        return t

    def horizon_ms(self) -> int:
        return max(self.p["window"], self.p["cooldown"])
