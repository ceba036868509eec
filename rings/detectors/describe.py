"""Human phrases for alert summaries, shared by detectors so they read alike."""

from __future__ import annotations

from ..models import Subject
from ..net import Net, Site


def ring_label(net: Net, ring_id: str) -> str:
    r = net.rings[ring_id]
    return f"the {r.name}" if r.name else f"ring {ring_id}"


def who(subject: Subject, lst: str | None = None) -> str:
    return f"{lst + ' ' if lst else ''}{subject.type} {subject.id}"


def minutes(ms: int) -> str:
    m = ms / 60_000
    return f"{m:.0f} min" if m >= 1 else f"{ms / 1000:.0f} s"


def pass_phrase(net: Net, site: Site, direction: str | None) -> str:
    if site.ring is not None:
        ring = ring_label(net, site.ring)
        if direction == "in":
            return f"entered {ring} at {site.id}"
        if direction == "out":
            return f"left {ring} at {site.id}"
        return f"passed {ring} at {site.id}"
    if site.approaches is not None:
        return f"seen at {site.id} on the approach to {site.approaches}"
    return f"seen at {site.id}"
