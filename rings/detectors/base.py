"""What every detector sees and must provide."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from ..models import Alert, Sighting
from ..net import Net
from ..params import Param
from ..watchlist import WatchlistView


@dataclass(slots=True)
class Context:
    """Shared, read-only inputs of one engine: the net and the watchlist."""

    net: Net
    watchlist: WatchlistView


class Detector:
    """A rule kind. Stateless detectors override `on_sighting` and ignore `state`.

    `state` is the subject's state dict (from the engine's store, loaded once per subject
    and batch); a detector keeps its part under its rule id and returns alerts.
    """

    kind: ClassVar[str]
    params: ClassVar[tuple[Param, ...]] = ()
    stateful: ClassVar[bool] = False

    def __init__(self, rule_id: str, values: dict[str, Any], severity: str | None = None,
                 ) -> None:
        self.rule_id = rule_id
        self.p = values
        self.severity_override = severity

    def severity(self, default: str) -> str:
        return self.severity_override or default

    def on_sighting(self, s: Sighting, ctx: Context, state: dict[str, Any] | None
                    ) -> list[Alert]:
        raise NotImplementedError

    def horizon_ms(self) -> int:
        """How long this detector needs a subject's state after its last sighting."""
        return 0
