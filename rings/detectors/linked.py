"""`linked-hit`: a vehicle that carried a person of interest stays of interest.

Judged on arrival, and still the same as in order: a link is a fact about one sighting, and
each alert is about one (link, later sighting) pair, so a sighting arriving late can only
add alerts, never withdraw one. A link that arrives after later sightings of its vehicle
alerts for them from the subject's queue (`Context.queue`: every sighting not before the
watermark, which is all a link not late can concern).
"""

from __future__ import annotations

from typing import Any

from ..models import Alert, Sighting, Subject
from ..params import Param
from .base import Context, Detector
from .describe import who

NO_TIME = -(2**62)


class LinkedHit(Detector):
    kind = "linked-hit"
    mode = "arrival"
    subjects = ("vehicle",)
    listed = True
    reads_queue = True
    needs_company = True        # no links kept and no one carried: nothing to do
    params = (
        Param("window", "duration", "12h", "how long after the link the vehicle alerts",
              min=1, why="no later sighting of the vehicle lies within 0 of the link"),
    )

    def on_arrival(self, s: Sighting, ctx: Context, st: dict[str, Any] | None,
                   watermark: int) -> list[Alert]:
        if st is None or s.ts < watermark:
            return []           # stateful: a sighting beyond the lateness is skipped
        if "h" in st:
            del st["h"]         # the history kept before the queue served (older state)
        window = self.p["window"]
        # Most vehicles never carry a listed person: `lk` exists only once one did.
        links: list[list[Any]] | None = st.get("lk")
        seen = [s.ts, s.id, s.tz, s.site, s.dir]
        out = [self._alert(s.subject, link, seen, ctx)
               for link in links if link[0] < s.ts <= link[0] + window] if links else []
        for w in s.with_:
            if w.type != "person":
                continue
            e = ctx.listed(w.key, s.ts)
            if e is None or (links and any(link[1] == s.id and link[2] == w.key
                                           for link in links)):
                continue
            link = [s.ts, s.id, w.key, e.severity, e.list]
            if links is None:
                links = st["lk"] = []
            links.append(link)
            # The vehicle's sightings after the link that arrived before it (queue rows:
            # [ts, id, site, dir, tz]).
            out.extend(self._alert(s.subject, link, [q[0], q[1], q[4], q[2], q[3]], ctx)
                       for q in ctx.queue if s.ts < q[0] <= s.ts + window)
        if links and links[0][0] + window < watermark:
            links[:] = [link for link in links if link[0] + window >= watermark]
            if not links:
                del st["lk"]
        return out

    def _alert(self, vehicle: Subject, link: list[Any], seen: list[Any], ctx: Context
               ) -> Alert:
        ts, sid, tz, site_id, direction = seen
        person = Subject.from_key(link[2])
        site = ctx.net.sites[site_id]
        return Alert(
            rule=self.rule_id, severity=self.severity(link[3]), subject=vehicle, ts=ts, tz=tz,
            evidence=[link[1], sid], related=[person], site=site_id, ring=site.ring,
            zone=site.zone_after(direction), dir=direction,
            summary=f"{who(vehicle)}, which carried {who(person, link[4])}, seen at {site_id}",
            details={"linked_by": link[1], "listed_severity": link[3]})

    def keep_until(self, state: dict[str, Any]) -> int:
        t = NO_TIME
        links = state.get("lk")
        if links:
            window = self.p["window"]
            for link in links:
                if link[0] + window > t:
                    t = link[0] + window
        return t
