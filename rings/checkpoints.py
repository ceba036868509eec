"""Simulated checkpoints that answer lockdown orders (CONTRACTS.md §6), for demos and tests.

A plan's proof (who acknowledged and closed, and who was late or silent) only shows when
somebody answers its orders. `Checkpoints` plays every ordered site's duty officer: most
acknowledge within a few minutes and close a few minutes after, some are late, a few never
answer. Each answer is decided by a hash of (seed, activation, site), not by a shared random
stream, so the same order always gets the same answer however many orders came before it,
in whatever order, and however often it is delivered (orders are sent at least once).

The delays are modelled on the default plans (respond within 5 minutes, close within 10);
`time_scale` divides every one of them, so a demo whose plans are compressed by the same
factor runs through a whole activation, deadlines included, in a minute or two.

Pure: no Kafka, no clock. `streams/checkpoint_sim.py` feeds it orders and the time, and sends
what `due` returns to `plan-acks`.
"""

from __future__ import annotations

import hashlib
import heapq
from dataclasses import dataclass, field
from typing import Any

from .errors import InvalidRecord
from .timefmt import parse_ts

MINUTE_MS = 60_000
STAND_DOWN = "stand-down"
# How a site answers. ON_TIME: acknowledges in 1-4 min, closes 2-5 min after.
# LATE_ACK: acknowledges in 5-8 min (after the 5-minute deadline), closes 2-5 min after.
# LATE_CLOSE: acknowledges in 1-4 min, closes 10.5-13 min after the order (after the
# 10-minute deadline). NEVER: no answer at all.
ON_TIME, LATE_ACK, LATE_CLOSE, NEVER = "on-time", "late-ack", "late-close", "never"
KINDS = (ON_TIME, LATE_ACK, LATE_CLOSE, NEVER)


@dataclass(frozen=True, slots=True)
class Answer:
    """One ack to send `delay_ms` after its order was issued (`ts` is added when sent)."""

    delay_ms: int
    ack: dict[str, Any]


@dataclass(order=True, slots=True)
class _Pending:
    due_ms: int
    seq: int
    delay_ms: int = field(compare=False)
    ack: dict[str, Any] = field(compare=False)
    cancelled: bool = field(default=False, compare=False)


def _uniforms(*parts: str) -> list[float]:
    """Four independent uniforms in [0, 1) from a hash of `parts`."""
    h = hashlib.blake2b(digest_size=32)
    for p in parts:
        h.update(p.encode())
        h.update(b"\x00")
    d = h.digest()
    return [int.from_bytes(d[i:i + 8], "big") / 2 ** 64 for i in range(0, 32, 8)]


class Checkpoints:
    """The duty officers of every site: deterministic answers to orders, and their schedule.

    `answers(order)` is the pure decision; `receive`/`due` keep the answers not sent yet, so
    a stand-down can cancel them and a repeated order is not answered twice.
    """

    def __init__(self, seed: int = 1, late_fraction: float = 0.15,
                 never_fraction: float = 0.05, time_scale: float = 1.0) -> None:
        if not 0 <= late_fraction <= 1 or not 0 <= never_fraction <= 1 \
                or late_fraction + never_fraction > 1:
            raise ValueError("late and never fractions must be between 0 and 1, and add up "
                             "to at most 1")
        if not time_scale > 0:
            raise ValueError("time_scale must be above 0")
        self.seed = seed
        self.late_fraction = late_fraction
        self.never_fraction = never_fraction
        self.time_scale = time_scale
        self._heap: list[_Pending] = []
        self._by_activation: dict[str, list[_Pending]] = {}
        self._seen: set[tuple[str, str]] = set()       # (activation, site) answered or due
        self._stood_down: set[str] = set()
        self._seq = 0

    # ------------------------------------------------------------------ the decision

    def kind(self, activation: str, site: str) -> str:
        """How this site answers this activation: on-time, late-ack, late-close or never."""
        u = _uniforms(str(self.seed), activation, site)
        if u[0] < self.never_fraction:
            return NEVER
        if u[0] < self.never_fraction + self.late_fraction:
            return LATE_ACK if u[3] < 0.5 else LATE_CLOSE
        return ON_TIME

    def answers(self, order: dict[str, Any]) -> list[Answer]:
        """The acks (without `ts`) this order gets, with their delays after it was issued.

        A stand-down order gets no answer (`receive` uses it to cancel pending ones)."""
        aid, site = order["activation"], order["site"]
        if order.get("action") == STAND_DOWN:
            return []
        kind = self.kind(aid, site)
        if kind == NEVER:
            return []
        u = _uniforms(str(self.seed), aid, site)
        if kind == LATE_ACK:
            ack_ms = 5 * MINUTE_MS + u[1] * 3 * MINUTE_MS
        else:
            ack_ms = 1 * MINUTE_MS + u[1] * 3 * MINUTE_MS
        if kind == LATE_CLOSE:
            close_ms = 10.5 * MINUTE_MS + u[2] * 2.5 * MINUTE_MS
        else:
            close_ms = ack_ms + 2 * MINUTE_MS + u[2] * 3 * MINUTE_MS
        by = f"{site}-duty"
        return [Answer(round(ms / self.time_scale),
                       {"activation": aid, "site": site, "state": state, "by": by})
                for ms, state in ((ack_ms, "acknowledged"), (close_ms, "closed"))]

    # ------------------------------------------------------------------ the schedule

    def receive(self, order: dict[str, Any], now_ms: int) -> list[Answer]:
        """Take an order: schedule its answers (returned), or cancel the pending answers of
        a stood-down activation (returns none). Delays count from the order's `issued` when
        it parses and is not in the future, else from `now_ms`; answers already overdue on
        receipt (an old order read from the beginning) are due at once.

        Raises InvalidRecord for an order without `activation` or `site`."""
        aid, site = order.get("activation"), order.get("site")
        if not isinstance(aid, str) or not aid or not isinstance(site, str) or not site:
            raise InvalidRecord("bad-order", "an order needs `activation` and `site`")
        if order.get("action") == STAND_DOWN:
            self.cancel(aid)
            return []
        if aid in self._stood_down or (aid, site) in self._seen:
            return []                          # stood down already, or a repeated order
        self._seen.add((aid, site))
        base = now_ms
        try:
            issued, _ = parse_ts(order.get("issued"))
            base = min(issued, now_ms)
        except InvalidRecord:
            pass
        out = self.answers(order)
        for a in out:
            p = _Pending(base + a.delay_ms, self._seq, a.delay_ms, a.ack)
            self._seq += 1
            heapq.heappush(self._heap, p)
            self._by_activation.setdefault(aid, []).append(p)
        return out

    def cancel(self, activation: str) -> int:
        """Stand-down: forget the answers of this activation not sent yet; how many."""
        self._stood_down.add(activation)
        n = 0
        for p in self._by_activation.pop(activation, []):
            if not p.cancelled:
                p.cancelled = True
                n += 1
        return n

    def due(self, now_ms: int) -> list[Answer]:
        """The answers due by `now_ms`, in due order; each is returned once."""
        out = []
        while self._heap and self._heap[0].due_ms <= now_ms:
            p = heapq.heappop(self._heap)
            if p.cancelled:
                continue
            p.cancelled = True                 # sent: a later cancel does not count it
            out.append(Answer(p.delay_ms, p.ack))
        if not self._heap:
            self._by_activation.clear()
        return out

    def next_due(self) -> int | None:
        """When the next pending answer is due (ms), or None."""
        while self._heap and self._heap[0].cancelled:
            heapq.heappop(self._heap)
        return self._heap[0].due_ms if self._heap else None

    @property
    def pending(self) -> int:
        return sum(1 for p in self._heap if not p.cancelled)
