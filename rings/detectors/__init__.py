"""Detectors: one module per rule kind, all behind the small `Detector` interface.

The registry maps a rule kind to its class; rule files name kinds, never classes.
"""

from __future__ import annotations

from .avoidance import CheckpointAvoidance
from .base import Context, Detector
from .cloned import ClonedPlate
from .convoy import Convoy
from .linked import LinkedHit
from .loitering import Loitering
from .penetration import Penetration
from .permit import PermitViolation
from .watchlist_hit import WatchlistHit

REGISTRY: dict[str, type[Detector]] = {d.kind: d for d in (
    WatchlistHit, Penetration, CheckpointAvoidance, ClonedPlate, Loitering, Convoy,
    PermitViolation, LinkedHit)}

__all__ = ["REGISTRY", "Context", "Detector"]
