"""Scoring alerts against ground truth (`rings score`).

An alert matches a truth line when they agree on rule, subject (type and id) and `ts` (the
same instant; the two may be written with different offsets). Both sides are sets: the same
alert twice (a replay, an at-least-once redelivery) counts once, and so does a repeated truth
line. Per rule: expected (truth lines), found (truth lines with an alert), missed (without),
false alarms (alerts matching no truth line), recall = found / expected and precision =
found / (found + false alarms), None where the denominator is 0. A score is perfect when
nothing is missed and nothing is false, for every rule, including rules that have alerts and
no truth lines.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, BinaryIO, Iterable

import orjson

from .errors import InvalidRecord
from .scenarios import RULES
from .timefmt import format_ts, parse_ts

Key = tuple[str, str, str, int]            # rule, subject type, subject id, ts (ms)


def key_of(rec: Any) -> Key:
    """The matching key of an alert or a truth line; InvalidRecord if it has none."""
    if type(rec) is not dict:
        raise InvalidRecord("not-an-object", "expected a JSON object")
    rule, subj, ts = rec.get("rule"), rec.get("subject"), rec.get("ts")
    if type(rule) is not str or not rule:
        raise InvalidRecord("bad-field", "rule must be a non-empty string")
    if type(subj) is not dict or type(subj.get("type")) is not str or \
            type(subj.get("id")) is not str:
        raise InvalidRecord("bad-field", "subject must be an object with type and id")
    return rule, subj["type"], subj["id"], parse_ts(ts)[0]


@dataclass(slots=True)
class RuleScore:
    rule: str
    expected: int = 0
    found: int = 0
    missed: int = 0
    false_alarms: int = 0
    missed_keys: list[Key] = field(default_factory=list)
    false_keys: list[Key] = field(default_factory=list)
    shown: dict[Key, str] = field(default_factory=dict)          # key -> ts as written
    missed_cases: list[str] = field(default_factory=list)

    @property
    def recall(self) -> float | None:
        return self.found / self.expected if self.expected else None

    @property
    def precision(self) -> float | None:
        n = self.found + self.false_alarms
        return self.found / n if n else None

    @property
    def perfect(self) -> bool:
        return self.missed == 0 and self.false_alarms == 0


@dataclass(slots=True)
class Score:
    rules: dict[str, RuleScore]
    total: RuleScore

    @property
    def perfect(self) -> bool:
        return self.total.perfect


def score(alerts: Iterable[dict[str, Any]], truth: Iterable[dict[str, Any]]) -> Score:
    """Match alerts to truth lines (both as parsed JSON objects)."""
    expected: dict[Key, str] = {}
    shown: dict[Key, str] = {}
    for t in truth:
        k = key_of(t)
        case = t.get("case")
        expected.setdefault(k, case if isinstance(case, str) else "")
        shown.setdefault(k, f"{t['ts']} (case {case})" if isinstance(case, str) and case
                         else str(t["ts"]))
    got: set[Key] = set()
    for a in alerts:
        k = key_of(a)
        got.add(k)
        shown.setdefault(k, str(a["ts"]))
    names = {k[0] for k in expected} | {k[0] for k in got}
    order = [r for r in RULES if r in names] + sorted(names - set(RULES))
    rules = {r: RuleScore(r) for r in order}
    for k, case in sorted(expected.items(), key=lambda kv: (kv[0][3], kv[0])):
        rs = rules[k[0]]
        rs.expected += 1
        if k in got:
            rs.found += 1
        else:
            rs.missed += 1
            rs.missed_keys.append(k)
            rs.shown[k] = shown[k]
            if case:
                rs.missed_cases.append(case)
    for k in sorted(got - expected.keys(), key=lambda k: (k[3], k)):
        rs = rules[k[0]]
        rs.false_alarms += 1
        rs.false_keys.append(k)
        rs.shown[k] = shown[k]
    total = RuleScore("total")
    for rs in rules.values():
        total.expected += rs.expected
        total.found += rs.found
        total.missed += rs.missed
        total.false_alarms += rs.false_alarms
    return Score(rules, total)


def read_jsonl(f: BinaryIO, name: str) -> list[dict[str, Any]]:
    """JSON objects, one a line (blank lines skipped); InvalidRecord naming the bad line."""
    out = []
    for n, line in enumerate(f, 1):
        line = line.strip()
        if not line:
            continue
        try:
            rec = orjson.loads(line)
            key_of(rec)
        except orjson.JSONDecodeError as e:
            raise InvalidRecord("bad-json", f"{name}:{n}: {e}") from None
        except InvalidRecord as e:
            raise InvalidRecord(e.reason, f"{name}:{n}: {e.detail}") from None
        out.append(rec)
    return out


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.1f}%"


def _key_text(rs: RuleScore, k: Key) -> str:
    return f"{k[1]}:{k[2]} at {rs.shown.get(k) or format_ts(k[3])}"


def to_json(s: Score, examples: int = 20) -> dict[str, Any]:
    def one(rs: RuleScore) -> dict[str, Any]:
        d: dict[str, Any] = {"expected": rs.expected, "found": rs.found, "missed": rs.missed,
                             "false_alarms": rs.false_alarms, "recall": rs.recall,
                             "precision": rs.precision}
        if rs.rule != "total":
            d["missed_examples"] = [_key_text(rs, k) for k in rs.missed_keys[:examples]]
            d["missed_cases"] = sorted(set(rs.missed_cases))[:examples]
            d["false_examples"] = [_key_text(rs, k) for k in rs.false_keys[:examples]]
        return d

    return {"ok": s.perfect, "rules": {r: one(rs) for r, rs in s.rules.items()},
            "total": one(s.total)}


def to_text(s: Score, examples: int = 5) -> str:
    head = f"{'rule':<22} {'expected':>8} {'found':>7} {'missed':>7} {'false':>7} " \
           f"{'recall':>8} {'precision':>10}"
    lines = [head, "-" * len(head)]
    for rs in [*s.rules.values(), s.total]:
        lines.append(f"{rs.rule:<22} {rs.expected:>8} {rs.found:>7} {rs.missed:>7} "
                     f"{rs.false_alarms:>7} {_pct(rs.recall):>8} {_pct(rs.precision):>10}")
    for rs in s.rules.values():
        for what, keys in (("missed", rs.missed_keys), ("false alarm", rs.false_keys)):
            for k in keys[:examples]:
                lines.append(f"  {rs.rule}: {what}: {_key_text(rs, k)}")
            if len(keys) > examples:
                lines.append(f"  {rs.rule}: {what}: ... {len(keys) - examples} more")
    lines.append("ok: every expected alert found, no false alarm" if s.perfect else
                 "NOT OK: missed alerts or false alarms")
    return "\n".join(lines)
