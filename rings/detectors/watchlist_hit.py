"""`watchlist-hit`: the touch-ring alarm (CONTRACTS.md §5)."""

from __future__ import annotations

from typing import Any

from ..models import PERMIT_LIST, Alert, Sighting
from ..params import Param
from .base import Context, Detector
from .describe import pass_phrase


class WatchlistHit(Detector):
    kind = "watchlist-hit"
    stateless = True
    needs_entry = True
    listed = True
    params = (
        Param("lists", "str-list", None,
              "only entries on these lists fire (default: every list but permit)"),
    )

    def check_params(self) -> list[tuple[str | None, str]]:
        lists = self.p.get("lists")
        if lists is None or any(x != PERMIT_LIST for x in lists):
            return []
        if not lists:
            return [("lists", "`lists` is empty: no entry can match, the rule never fires "
                              "(leave `lists` out for every list but permit)")]
        return [("lists", "`lists` names only `permit`, whose entries watchlist-hit never "
                          "matches (rule kind permit-violation judges them): the rule never "
                          "fires")]

    def on_arrival(self, s: Sighting, ctx: Context, st: dict[str, Any] | None,
                   watermark: int) -> list[Alert]:
        wl = ctx.watchlist
        if not s.with_ and wl.get(s.subject.key) is None:
            return []                   # the usual case, answered without the loop below
        subjects = (s.subject, *s.with_) if s.with_ else (s.subject,)
        out: list[Alert] = []
        lists = self.p.get("lists")
        for n, subj in enumerate(subjects):
            entry = wl.get(subj.key)
            if entry is None or entry.is_permit or not entry.active_at(s.ts):
                continue
            if lists is not None and entry.list not in lists:
                continue
            if n and subj in subjects[:n]:
                continue  # the same subject listed twice in one sighting alerts once
            site = ctx.net.sites[s.site]
            related = [x for x in subjects if x != subj]
            where = pass_phrase(ctx.net, site, s.dir)
            role = "" if n == 0 else f" with {s.subject.type} {s.subject.id}"
            out.append(Alert(
                rule=self.rule_id, severity=self.severity(entry.severity), subject=subj,
                ts=s.ts, tz=s.tz, evidence=[s.id],
                summary=f"{entry.list} {subj.type} {subj.id}{role} {where}",
                related=related, site=s.site, ring=site.ring, zone=site.zone_after(s.dir),
                dir=s.dir,
                details={"list": entry.list, "listed_severity": entry.severity,
                         **({"reason": entry.reason} if entry.reason else {})},
            ))
        return out
