"""Detectors: one module per rule kind, all behind the small `Detector` interface.

The registry maps a rule kind to its class; rule files name kinds, never classes.
"""

from __future__ import annotations

from .base import Context, Detector
from .watchlist_hit import WatchlistHit

REGISTRY: dict[str, type[Detector]] = {
    WatchlistHit.kind: WatchlistHit,
}

__all__ = ["REGISTRY", "Context", "Detector"]
