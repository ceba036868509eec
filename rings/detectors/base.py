"""What every detector sees and must provide.

Detectors come in two modes, and the mode is the heart of the event-time contract:

- `arrival`: judged when a sighting arrives. Right for rules whose answer cannot be changed
  by a sighting that arrives later but happened earlier (watchlist-hit, permit-violation,
  linked-hit): they answer in milliseconds and are still the same as in order.
- `ordered`: judged in event-time order once the watermark has passed the sighting (the
  newest event time minus the allowed lateness). Right for rules whose answer depends on
  what came just before (consecutive sightings, chains, counts with cooldowns, absences):
  judging them on arrival would make a late sighting change history that was already
  reported. They answer about `lateness` after the event, and exactly as if in order.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

from ..models import SEVERITIES, Alert, Sighting, Subject, WatchEntry
from ..net import Net, Site
from ..params import Param
from ..watchlist import WatchlistView

NO_TIME = -(2**62)


@dataclass(slots=True)
class Context:
    """Shared inputs of one engine: the net and the watchlist (read-only), and, for the
    arrival rules, the arriving sighting's subject's queue.

    `queue`: the subject's sightings not judged yet (rows [ts, id, site, dir, tz] in
    (ts, id) order, the arriving one not among them), set by the subject stage before its
    arrival rules run. Every sighting of the subject at or after the watermark is there, so
    a fact arriving late (linked-hit's link) finds the later sightings it concerns without a
    history of its own (which repeated each sighting in every vehicle's state)."""

    net: Net
    watchlist: WatchlistView
    queue: list[list[Any]] = field(default_factory=list)

    def listed(self, key: str, ts: int) -> WatchEntry | None:
        """The subject's active watchlist entry at event time `ts`, `permit` excluded."""
        e = self.watchlist.get(key)
        if e is None or e.is_permit or not e.active_at(ts):
            return None
        return e


class Event:
    """A sighting as ordered detectors see it: compact, stored in the subject's queue.

    The subject is made from its key only when a detector asks for it (mostly to alert):
    nearly every event is judged without."""

    __slots__ = ("ts", "id", "site", "dir", "tz", "_subject", "_key")

    def __init__(self, ts: int, id: str, site: str, dir: str | None, tz: int,
                 subject: Subject | None = None, key: str | None = None) -> None:
        self.ts = ts
        self.id = id
        self.site = site
        self.dir = dir
        self.tz = tz
        self._subject = subject
        self._key = key

    @property
    def subject(self) -> Subject:
        s = self._subject
        if s is None:
            s = self._subject = Subject.from_key(self._key)  # type: ignore[arg-type]
        return s

    def row(self) -> list[Any]:
        return [self.ts, self.id, self.site, self.dir, self.tz]

    @staticmethod
    def from_row(row: list[Any], subject: Subject) -> "Event":
        return Event(row[0], row[1], row[2], row[3], row[4], subject)

    @staticmethod
    def of(s: Sighting) -> "Event":
        return Event(s.ts, s.id, s.site, s.dir, s.tz, s.subject)


class Timers:
    """Deadlines of one subject, kept in its state as `[deadline, rule, payload]` rows."""

    __slots__ = ("rows",)

    def __init__(self, rows: list[list[Any]]) -> None:
        self.rows = rows

    def add(self, deadline: int, rule: str, payload: Any) -> None:
        self.rows.append([deadline, rule, payload])
        self.rows.sort(key=lambda r: r[0])

    def cancel(self, rule: str, pred: Any) -> int:
        before = len(self.rows)
        self.rows[:] = [r for r in self.rows if r[1] != rule or not pred(r[2])]
        return before - len(self.rows)


@dataclass(frozen=True, slots=True)
class Exceptions:
    """A rule's `exceptions:` option: subjects and sites whose alerts the rule drops.

    Applied where alerts are finalised (the subject stage's and the pair stage's), so the
    rule's own state (cooldowns, rests) is the same with or without them, in replay and in
    the worker alike."""

    subjects: frozenset[str] = frozenset()      # subject keys `type:id`
    sites: frozenset[str] = frozenset()
    file: str | None = None
    # positions of the site names, for errors found against a net ("site:CP03" -> (l, c))
    where: dict[str, tuple[int, int]] = field(default_factory=dict, compare=False)

    def drops(self, alert: Alert) -> bool:
        return alert.subject.key in self.subjects or alert.site in self.sites


class Detector:
    kind: ClassVar[str]
    params: ClassVar[tuple[Param, ...]] = ()
    mode: ClassVar[str] = "arrival"      # arrival | ordered | stage (convoy)
    subjects: ClassVar[tuple[str, ...] | None] = None   # subject types judged; None: all
    stateless: ClassVar[bool] = False    # arrival rules keeping nothing get st=None
    # Arrival rules that do nothing (no state, no alert) unless the sighting's subject or one
    # of its `with` subjects has a watchlist entry: the engine skips them for the others
    # (nearly every sighting), having looked the subject up once for all of them.
    needs_entry: ClassVar[bool] = False
    # Arrival rules that read Context.queue: the subject stage keeps a queue for them even
    # with no ordered rule.
    reads_queue: ClassVar[bool] = False
    # Stateful arrival rules that, while they keep nothing for a subject, do nothing (no
    # state, no alert) for a sighting without `with` subjects: the engine skips the call
    # (linked-hit: every vehicle's sighting, nearly none of which carries anyone listed).
    needs_company: ClassVar[bool] = False
    # The severities this kind's alerts can have (before a rule's `severity` override), and
    # whether they carry the subject's watchlist severity (details.listed_severity): what an
    # `activate:` condition can ever meet (`rules check` refuses one that never can).
    severities: ClassVar[tuple[str, ...]] = SEVERITIES
    listed: ClassVar[bool] = False

    def __init__(self, rule_id: str, values: dict[str, Any], severity: str | None = None,
                 ) -> None:
        self.rule_id = rule_id
        self.p = values
        self.severity_override = severity
        self.activation: Any = None          # rings.plans.Activation, from `activate:`
        self.exceptions: Exceptions | None = None   # from `exceptions:`; None: no exception
        self.tags: tuple[str, ...] = ()      # from `tags:`, stamped on every alert
        # Where the rule was written: its file, and the positions of its keys' values
        # ("" -> the rule itself), for errors found later (against a net).
        self.file: str | None = None
        self.where: dict[str, tuple[int, int]] = {}

    def severity(self, default: str) -> str:
        return self.severity_override or default

    def excepts(self, alert: Alert) -> bool:
        """Whether the rule's `exceptions:` drop this alert."""
        x = self.exceptions
        return x is not None and x.drops(alert)

    def check_params(self) -> list[tuple[str | None, str]]:
        """Values that make this rule unable to fire on any net, each valid on its own
        (Param.min has refused the others): (the parameter to point at, None for the rule
        itself; message)."""
        return []

    def check_net(self, net: Net) -> list[tuple[str | None, str]]:
        """What makes this rule unable to fire on this net, as check_params."""
        return []

    def plan_for(self, alert: Alert, net: Net) -> str | None:
        """The plan this alert starts, if the rule has `activate:` and the alert matches."""
        a = self.activation
        return a.plan if a is not None and a.matches(alert, net) else None

    def setup(self, net: Net) -> None:
        """Precompute what depends on the net (called once per engine)."""

    def applies(self, subject_type: str) -> bool:
        return self.subjects is None or subject_type in self.subjects

    # arrival mode
    def on_arrival(self, s: Sighting, ctx: Context, st: dict[str, Any] | None,
                   watermark: int) -> list[Alert]:
        raise NotImplementedError

    # ordered mode: `state` is this rule's own part of the subject's state
    def on_event(self, ev: Event, ctx: Context, state: dict[str, Any], timers: Timers
                 ) -> list[Alert]:
        raise NotImplementedError

    def on_timer(self, deadline: int, payload: Any, subject: Subject, ctx: Context,
                 state: dict[str, Any]) -> list[Alert]:
        return []

    def reacts(self, site: Site, direction: str | None) -> bool:
        """Whether on_event can do anything (change state or timers, alert) for a sighting
        at this site in this direction. The engine does not call on_event where it cannot,
        nor give the rule state there, so a rule saying False must leave everything as it
        was, whatever its state and timers."""
        return True

    def keep_until(self, state: dict[str, Any]) -> int:
        """Until when (event time) this rule's state of a subject still matters."""
        return NO_TIME

    def horizon_ms(self) -> int:
        """How long after any subject's last sighting this rule may still need its state
        (0: the rule keeps nothing for subjects in general; a longer memory of a few, like
        linked-hit's links, is bounded by keep_until alone)."""
        return 0
