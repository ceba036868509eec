"""Backtests (`rings replay --summary`, `rings replay --diff OTHER_RULES_DIR`).

A rule author changing a rule wants to know the volume it will bring before it goes live:
`summarize` counts the alerts of a replay per rule and severity, per hour of event time and
per subject; `compare` sets the alerts of two rule sets on the same traffic side by side,
per rule, with examples of alerts only one of them raises. Both consume alerts as they come
(a day of traffic is never held in memory; `compare` keeps one key per alert).

Two alerts are the same when they agree on rule, subject, severity and `ts` instant, as in
`rings rules test` and `rings score`.
"""

from __future__ import annotations

import unicodedata
from collections import Counter
from dataclasses import dataclass, field
from typing import Iterable

from .models import SEVERITIES, Alert
from .timefmt import format_ts

HOUR = 3_600_000
AlertKey = tuple[str, str, str, int]          # rule, subject key, severity, ts (ms)
SEV_ORDER = tuple(reversed(SEVERITIES))       # critical first
MAX_HOUR_ROWS = 24 * 7                         # beyond a week, only hours with alerts


def alert_key(a: Alert) -> AlertKey:
    return a.rule, a.subject.key, a.severity, a.ts


def width(s: str) -> int:
    """Terminal columns of a string (CJK characters in plates take two)."""
    return sum(2 if unicodedata.east_asian_width(c) in "WF" else 1 for c in s)


def _ljust(s: str, n: int) -> str:
    return s + " " * max(0, n - width(s))


def _rjust(s: str, n: int) -> str:
    return " " * max(0, n - width(s)) + s


def table(head: list[str], rows: list[list[str]], align: str = "") -> list[str]:
    """Rows as aligned text; `align` has an `l` or `r` per column (default: the first
    left-aligned, the others right-aligned)."""
    align = align or "l" + "r" * (len(head) - 1)
    widths = [max(width(r[i]) for r in [head, *rows]) for i in range(len(head))]

    def line(r: list[str]) -> str:
        return "  ".join(_ljust(c, widths[i]) if align[i] == "l" else _rjust(c, widths[i])
                         for i, c in enumerate(r)).rstrip()

    return [line(head), "  ".join("-" * w for w in widths), *(line(r) for r in rows)]


def _order(names: Iterable[str], rules: Iterable[str] = ()) -> list[str]:
    """The rule set's order first, then any other rule id, sorted."""
    first = list(dict.fromkeys(rules))
    return first + sorted(set(names) - set(first))


# ------------------------------------------------------------------------------ summary

@dataclass(slots=True)
class Summary:
    alerts: int = 0
    by_rule: dict[str, Counter[str]] = field(default_factory=dict)      # rule -> severity -> n
    by_hour: dict[int, Counter[str]] = field(default_factory=dict)      # hour -> rule -> n
    by_hour_sev: dict[int, Counter[str]] = field(default_factory=dict)  # hour -> severity -> n
    subjects: Counter[str] = field(default_factory=Counter)
    subject_rules: dict[str, Counter[str]] = field(default_factory=dict)
    offset_min: int = 0               # the offset hours are counted in
    first: int | None = None          # event time of the first and last alert
    last: int | None = None
    rules: list[str] = field(default_factory=list)   # the rule set's ids, in its order

    def rule_total(self, rule: str) -> int:
        return sum(self.by_rule.get(rule, Counter()).values())

    def hour_label(self, hour: int) -> str:
        return format_ts(hour * HOUR - self.offset_min * 60_000, self.offset_min)[:16] \
            .replace("T", " ")


def summarize(alerts: Iterable[Alert], rules: Iterable[str] = ()) -> Summary:
    """Count alerts per rule and severity, per hour of event time and per subject. Hours
    are those of the UTC offset most alerts carry (the sites' own clock)."""
    s = Summary(rules=list(rules))
    offsets: Counter[int] = Counter()
    # Counted per minute of UTC first, and per hour once the offset is known (an offset
    # may be a whole number of minutes, not hours).
    by_utc: dict[int, Counter[str]] = {}
    sev_utc: dict[int, Counter[str]] = {}
    for a in alerts:
        s.alerts += 1
        s.by_rule.setdefault(a.rule, Counter())[a.severity] += 1
        offsets[a.tz] += 1
        minute = a.ts // 60_000
        by_utc.setdefault(minute, Counter())[a.rule] += 1
        sev_utc.setdefault(minute, Counter())[a.severity] += 1
        key = a.subject.key
        s.subjects[key] += 1
        s.subject_rules.setdefault(key, Counter())[a.rule] += 1
        s.first = a.ts if s.first is None else min(s.first, a.ts)
        s.last = a.ts if s.last is None else max(s.last, a.ts)
    if offsets:
        s.offset_min = max(offsets.items(), key=lambda kv: (kv[1], -abs(kv[0])))[0]
    for utc, into in ((by_utc, s.by_hour), (sev_utc, s.by_hour_sev)):
        for minute, c in utc.items():
            into.setdefault((minute + s.offset_min) // 60, Counter()).update(c)
    return s


def _offset_text(m: int) -> str:
    return "Z" if m == 0 else f"{'+' if m > 0 else '-'}{abs(m) // 60:02d}:{abs(m) % 60:02d}"


def _breakdown(c: Counter[str]) -> str:
    """`watchlist-hit 7, loitering 1`: the most first."""
    return ", ".join(f"{r} {n}" for r, n in sorted(c.items(), key=lambda rn: (-rn[1], rn[0]))
                     if n)


def summary_text(s: Summary, top: int = 10) -> str:
    out: list[str] = []
    if s.first is None or s.last is None:
        return "no alerts"
    span = f"{format_ts(s.first, s.offset_min)} to {format_ts(s.last, s.offset_min)}"
    out.append(f"{s.alerts} alerts, event time {span}")
    out.append("")
    rules = _order(s.by_rule, s.rules)
    rows = []
    for r in rules:
        c = s.by_rule.get(r, Counter())
        rows.append([r, *(str(c[v]) for v in SEV_ORDER), str(sum(c.values()))])
    tot: Counter[str] = Counter()
    for c in s.by_rule.values():
        tot.update(c)
    rows.append(["total", *(str(tot[v]) for v in SEV_ORDER), str(s.alerts)])
    out.append("alerts per rule and severity")
    out += table(["rule", *SEV_ORDER, "total"], rows)
    out.append("")
    hours = sorted(s.by_hour)
    if hours[-1] - hours[0] < MAX_HOUR_ROWS:
        hours = list(range(hours[0], hours[-1] + 1))
        note = ""
    else:
        note = " (only hours with alerts)"
    rows = []
    for h in hours:
        c = s.by_hour.get(h, Counter())
        sev = s.by_hour_sev.get(h, Counter())
        rows.append([s.hour_label(h), str(sum(c.values())), *(str(sev[v]) for v in SEV_ORDER),
                     _breakdown(c)])
    out.append(f"alerts per hour of event time ({_offset_text(s.offset_min)}){note}")
    out += table(["hour", "total", *SEV_ORDER, "rules"], rows, "lrrrrrl")
    out.append("")
    ranked = sorted(s.subjects.items(), key=lambda kv: (-kv[1], kv[0]))[:top]
    rows = [[str(n), k, _breakdown(s.subject_rules[k])] for k, n in ranked]
    out.append(f"subjects with the most alerts ({len(ranked)} of {len(s.subjects)})")
    out += table(["alerts", "subject", "rules"], rows, "rll")
    return "\n".join(out)


# ------------------------------------------------------------------------------ compare

@dataclass(slots=True)
class Comparison:
    base: Counter[AlertKey] = field(default_factory=Counter)
    other: Counter[AlertKey] = field(default_factory=Counter)
    shown: dict[AlertKey, str] = field(default_factory=dict)    # key -> one line about it
    rules: list[str] = field(default_factory=list)

    def count(self, side: Counter[AlertKey], rule: str) -> int:
        return sum(n for k, n in side.items() if k[0] == rule)

    @property
    def only_base(self) -> Counter[AlertKey]:
        return self.base - self.other

    @property
    def only_other(self) -> Counter[AlertKey]:
        return self.other - self.base

    def per_rule(self) -> list[tuple[str, int, int, int, int]]:
        """(rule, base, other, only in base, only in other) for every rule."""
        ob, oo = self.only_base, self.only_other
        names = {k[0] for k in self.base} | {k[0] for k in self.other}
        return [(r, self.count(self.base, r), self.count(self.other, r), self.count(ob, r),
                 self.count(oo, r)) for r in _order(names, self.rules)]


def _line(a: Alert) -> str:
    where = f" at {a.site}" if a.site else ""
    return (f"{format_ts(a.ts, a.tz)} {a.severity} {a.subject.key}{where}: {a.summary}")


def compare(base: Iterable[Alert], other: Iterable[Alert], rules: Iterable[str] = ()
            ) -> Comparison:
    c = Comparison(rules=list(rules))
    for side, alerts in ((c.base, base), (c.other, other)):
        for a in alerts:
            k = alert_key(a)
            side[k] += 1
            if k not in c.shown:
                c.shown[k] = _line(a)
    return c


def _signed(n: int) -> str:
    return f"+{n}" if n > 0 else str(n)


def comparison_text(c: Comparison, base_name: str, other_name: str, examples: int = 3
                    ) -> str:
    rows = []
    tb = to = tob = too = 0
    per = c.per_rule()
    for r, b, o, ob, oo in per:
        rows.append([r, str(b), str(o), _signed(o - b), str(ob), str(oo)])
        tb, to, tob, too = tb + b, to + o, tob + ob, too + oo
    rows.append(["total", str(tb), str(to), _signed(to - tb), str(tob), str(too)])
    out = [f"base:  {base_name}", f"other: {other_name}", ""]
    out += table(["rule", "base", "other", "change", "only base", "only other"], rows)
    ob, oo = c.only_base, c.only_other
    for r, _b, _o, nb, no in per:
        if not nb and not no:
            continue
        out.append("")
        out.append(f"{r}: {nb} only in base (-), {no} only in other (+)")
        for sign, only in (("-", ob), ("+", oo)):
            keys = sorted((k for k in only if k[0] == r), key=lambda k: (k[3], k))
            out += [f"  {sign} {c.shown[k]}" for k in keys[:examples]]
            if len(keys) > examples:
                out.append(f"  {sign} ... {sum(only[k] for k in keys[examples:])} more")
    if not c.only_base and not c.only_other:
        out += ["", "no difference: both rule sets raise the same alerts"]
    return "\n".join(out)
