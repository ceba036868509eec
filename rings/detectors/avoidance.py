"""`checkpoint-avoidance`: turning away between a checkpoint's approach bayonet and the
checkpoint itself. An absence: it fires when event time passes the deadline."""

from __future__ import annotations

from typing import Any

from ..models import Alert, Subject
from ..net import Net, Site
from ..params import Param
from .base import Context, Detector, Event, Timers
from .describe import minutes, who


class CheckpointAvoidance(Detector):
    kind = "checkpoint-avoidance"
    mode = "ordered"
    severities = ("medium", "high")
    params = (
        Param("within", "duration", "15m",
              "how soon after the approach bayonet the checkpoint must see the subject",
              min=1, why="with 0, no sighting at the checkpoint can come after the pass at "
              "the bayonet and by the deadline: every pass towards a checkpoint would alert"),
    )

    def check_net(self, net: Net) -> list[tuple[str | None, str]]:
        if any(s.approaches is not None for s in net.sites.values()):
            return []
        return [(None, f"net {net.name!r} has no bayonet with `approaches` (on the road to a "
                       "checkpoint): checkpoint-avoidance can never fire")]

    def on_event(self, ev: Event, ctx: Context, state: dict[str, Any], timers: Timers
                 ) -> list[Alert]:
        site = ctx.net.sites[ev.site]
        if site.is_checkpoint and timers.rows:
            timers.cancel(self.rule_id, lambda p: p[2] == ev.site)
        if site.approaches is not None and ev.dir == "in":
            # payload: bayonet sighting id, bayonet, checkpoint, pass time, tz
            timers.add(ev.ts + self.p["within"], self.rule_id,
                       [ev.id, ev.site, site.approaches, ev.ts, ev.tz])
        return []

    def reacts(self, site: Site, direction: str | None) -> bool:
        return site.is_checkpoint or (site.approaches is not None and direction == "in")

    def on_timer(self, deadline: int, payload: Any, subject: Subject, ctx: Context,
                 state: dict[str, Any]) -> list[Alert]:
        sid, bayonet, checkpoint, t0, tz = payload
        entry = ctx.listed(subject.key, t0)
        site = ctx.net.sites[bayonet]
        return [Alert(
            rule=self.rule_id, severity=self.severity("high" if entry else "medium"),
            subject=subject, ts=deadline, tz=tz, evidence=[sid], site=bayonet, ring=None,
            zone=site.zone_in, dir="in",
            summary=(f"{who(subject, entry.list if entry else None)} passed {bayonet} towards "
                     f"checkpoint {checkpoint} and was not seen there within "
                     f"{minutes(self.p['within'])}"),
            details={"checkpoint": checkpoint})]
