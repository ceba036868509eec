"""`permit-violation`: goods-flow supervision of permitted transports (CONTRACTS.md §5)."""

from __future__ import annotations

from typing import Any

from ..models import Alert, Sighting
from .base import Context, Detector
from .describe import who


class PermitViolation(Detector):
    kind = "permit-violation"
    stateless = True
    needs_entry = True
    mode = "arrival"
    subjects = ("vehicle",)
    severities = ("high",)

    def on_arrival(self, s: Sighting, ctx: Context, st: dict[str, Any] | None,
                   watermark: int) -> list[Alert]:
        e = ctx.watchlist.get(s.subject.key)
        if e is None or not e.is_permit or e.permit is None or not e.active_at(s.ts):
            return []
        p = e.permit
        if s.site not in p.route:
            why, what = "off-route", f"at {s.site}, which is not on its route"
        elif (p.start is not None and s.ts < p.start) or (p.end is not None and s.ts >= p.end):
            why, what = "outside-window", f"at {s.site} outside its permit's time window"
        else:
            return []
        site = ctx.net.sites[s.site]
        return [Alert(
            rule=self.rule_id, severity=self.severity("high"), subject=s.subject, ts=s.ts,
            tz=s.tz, evidence=[s.id], summary=f"permitted {who(s.subject)} seen {what}",
            site=s.site, ring=site.ring, zone=site.zone_after(s.dir), dir=s.dir,
            details={"violation": why, "route": list(p.route)})]
