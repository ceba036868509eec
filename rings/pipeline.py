"""All stages of the core wired in one process: what `rings replay` runs.

The worker runs the same stages as Faust agents on three internal topics; here they are
called one after the other on each batch, with the same watermarks, so both give the same
alerts. Convoy rules get their site and pair stages; the pair stage's watermark is the site
stage's frontier (see `rings.convoy`).
"""

from __future__ import annotations

from typing import Callable, Iterable

from .convoy import PairStage, SiteStage, vehicle_pass
from .detectors import Context
from .engine import Engine
from .models import Alert, Sighting
from .net import Net
from .ruleset import RuleSet
from .stage import Stats
from .state import KV, ObjectKV
from .watchlist import WatchlistView


class Pipeline:
    def __init__(self, net: Net, rules: RuleSet, watchlist: WatchlistView,
                 store: Callable[[], KV] = ObjectKV) -> None:
        self.engine = Engine(net, rules, watchlist, store())
        ctx = Context(net, watchlist)
        self.convoys = [(SiteStage(ctx, d, store()), PairStage(ctx, d, store(), rules.version))
                        for d in rules.detectors if d.mode == "stage"]

    def process(self, batch: list[Sighting], watermark: int | None = None,
                advance_to: int | None = None) -> list[Alert]:
        alerts = self.engine.process(batch, watermark, advance_to)
        if self.convoys:
            vehicles = [vehicle_pass(s) for s in batch if s.subject.type == "vehicle"]
            for site, pair in self.convoys:
                copasses = site.process(vehicles, watermark, advance_to)
                alerts.extend(pair.process(copasses, None, site.limit))
        return alerts

    @property
    def stats(self) -> Stats:
        return self.engine.stats

    def stages(self) -> Iterable[object]:
        yield self.engine
        for site, pair in self.convoys:
            yield site
            yield pair
