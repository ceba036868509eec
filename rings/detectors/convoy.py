"""`convoy`: vehicles travelling with a vehicle of interest (伴随).

Its parameters; the stages that implement it are in `rings.convoy`."""

from __future__ import annotations

from ..net import Net
from ..params import Param
from .base import Detector


class Convoy(Detector):
    kind = "convoy"
    mode = "stage"
    subjects = ("vehicle",)
    listed = True
    params = (
        Param("gap", "duration", "120s", "a co-pass: both vehicles at one site this close",
              min=0),
        Param("sites", "int", 3, "distinct sites with co-passes that make a convoy", min=1),
        Param("window", "duration", "60m",
              "the co-passes lie within this; after an alert the pair rests this long", min=1,
              why="a window of 0 only holds co-passes at the very same instant"),
        Param("all_pairs", "bool", False,
              "pair every two vehicles, not only with watchlisted ones (for backtests: on "
              "dense traffic this finds hundreds of chance co-travellers a day)"),
    )

    def check_net(self, net: Net) -> list[tuple[str | None, str]]:
        n = self.p["sites"]
        if n <= len(net.sites):
            return []
        return [("sites", f"sites {n} can never be reached: net {net.name!r} has "
                          f"{len(net.sites)} sites")]
