"""Turning raw bytes into validated records, in bulk, with a reason for every refusal.

The JSON Schemas in `rings/schemas/` document the contract; this module enforces the same
rules by hand because a generic schema validator costs tens of microseconds per record,
which at city scale is the whole budget. A unit test checks that both agree.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable

import orjson

from .errors import InvalidRecord
from .models import SEVERITIES, SUBJECT_TYPES, Permit, Sighting, Subject, WatchEntry
from .timefmt import parse_ts

MAX_ID_LEN = 256
MAX_WITH = 64
# Levels of objects and arrays in `attrs` (attrs itself is the first). The only free-form
# part of a sighting that travels on (in envelopes): orjson parses 1024 levels but writes
# only 254, so deeper attrs once passed the decoder and then failed every envelope of
# their batch, a poison pill that stalled the ingest.
MAX_DEPTH = 32
# A dead letter keeps the original bytes, escaped in JSON (up to 6 bytes each) or in base64;
# of a bigger record (refused as too-large) only the first KEEP_BYTES, so that the dead letter
# still fits in a Kafka message (1 MiB by default). The whole one made the DLQ send fail, and
# with it every retry of the batch.
KEEP_BYTES = 64 * 1024


@dataclass(frozen=True, slots=True)
class Limits:
    max_bytes: int = 64 * 1024
    # Event-time bounds, checked against a reference time given with each batch (`now`):
    # the wall clock at ingest in the worker, `--now` in replay; without one, neither
    # applies. A sighting stamped more than `max_skew_ms` ahead of it is refused as
    # `future-ts` (a clock ahead cannot be right, and it would drag the watermark forward
    # and make every later sighting late); one more than `max_age_ms` behind it as
    # `too-old`. None: no bound. The rule set's `engine:` settings `max_skew` and
    # `max_age` set both (`limits_for`).
    max_skew_ms: int | None = None
    max_age_ms: int | None = None


def limits_for(rules: Any, base: Limits = Limits()) -> Limits:
    """`base` with the event-time bounds of a rule set (its `max_skew_ms`, `max_age_ms`)."""
    return Limits(base.max_bytes, rules.max_skew_ms, rules.max_age_ms)


@dataclass(frozen=True, slots=True)
class Rejected:
    """A record that could not be accepted: its original bytes and why."""

    raw: bytes
    reason: str
    detail: str
    key: bytes | None = None
    source: tuple[str, int, int] | None = None   # topic, partition, offset

    def to_json(self) -> dict[str, Any]:
        d: dict[str, Any] = {"reason": self.reason, "detail": self.detail}
        raw = self.raw
        cuts: tuple[int, ...] = (len(raw),)
        if len(raw) > KEEP_BYTES:
            d["original_size"] = len(raw)
            raw = raw[:KEEP_BYTES]
            # UTF-8 text stays text: cut before a character the limit splits.
            cuts = tuple(KEEP_BYTES - k for k in range(4))
        for n in cuts:
            try:
                d["original"] = raw[:n].decode("utf-8")
                break
            except UnicodeDecodeError:
                pass
        else:
            import base64
            d["original_b64"] = base64.b64encode(raw).decode("ascii")
        if self.source is not None:
            d["source"] = {"topic": self.source[0], "partition": self.source[1],
                           "offset": self.source[2]}
        return d


def _subject(v: Any, field: str) -> Subject:
    if type(v) is not dict:
        raise InvalidRecord("bad-field", f"{field} must be an object with type and id")
    t = v.get("type")
    i = v.get("id")
    if t not in SUBJECT_TYPES:
        raise InvalidRecord("bad-field", f"{field}.type must be one of {', '.join(SUBJECT_TYPES)}")
    if type(i) is not str or not i or len(i) > MAX_ID_LEN:
        raise InvalidRecord("bad-field", f"{field}.id must be a non-empty string of at most "
                                         f"{MAX_ID_LEN} characters")
    return Subject(t, i)


def parse_json(raw: bytes, limits: Limits) -> Any:
    if len(raw) > limits.max_bytes:
        raise InvalidRecord("too-large", f"{len(raw)} bytes, the limit is {limits.max_bytes}")
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as e:
        raise InvalidRecord("bad-json", str(e)[:200]) from None


def sighting_from_obj(d: Any, sites: dict[str, Any]) -> Sighting:
    if type(d) is not dict:
        raise InvalidRecord("not-an-object", "a sighting must be a JSON object")
    sid = d.get("id")
    if sid is None:
        raise InvalidRecord("missing-field", "id is required")
    if type(sid) is not str or not sid or len(sid) > MAX_ID_LEN:
        raise InvalidRecord("bad-field", f"id must be a non-empty string of at most "
                                         f"{MAX_ID_LEN} characters")
    if "ts" not in d:
        raise InvalidRecord("missing-field", "ts is required")
    ts, tz = parse_ts(d["ts"])
    site = d.get("site")
    if site is None:
        raise InvalidRecord("missing-field", "site is required")
    if type(site) is not str:
        raise InvalidRecord("bad-field", "site must be a string")
    if site not in sites:
        raise InvalidRecord("unknown-site", "site is not in the net")
    direction = d.get("dir")
    if direction is not None and direction not in ("in", "out"):
        raise InvalidRecord("bad-field", "dir must be in or out")
    subj = d.get("subject")
    if subj is None:
        raise InvalidRecord("missing-field", "subject is required")
    subject = _subject(subj, "subject")
    w = d.get("with")
    with_: tuple[Subject, ...] = ()
    if w is not None:
        if type(w) is not list or len(w) > MAX_WITH:
            raise InvalidRecord("bad-field", f"with must be a list of at most {MAX_WITH} subjects")
        with_ = tuple(_subject(x, f"with[{n}]") for n, x in enumerate(w))
    attrs = d.get("attrs")
    if attrs is not None:
        if type(attrs) is not dict:
            raise InvalidRecord("bad-field", "attrs must be an object")
        if _too_deep(attrs, MAX_DEPTH):
            raise InvalidRecord("too-deep", f"attrs nests more than {MAX_DEPTH} levels of "
                                            f"objects and arrays")
    return Sighting(sid, ts, tz, site, direction, subject, with_, attrs)


def _too_deep(obj: dict[str, Any], limit: int) -> bool:
    """Whether objects and arrays nest more than `limit` levels in `obj` (itself level 1).
    Iterative, and nothing to walk for the usual flat attrs."""
    for v in obj.values():
        if type(v) is dict or type(v) is list:
            break
    else:
        return False
    stack: list[tuple[Any, int]] = [(obj, 1)]
    while stack:
        x, depth = stack.pop()
        for v in (x.values() if type(x) is dict else x):
            if type(v) is dict or type(v) is list:
                if depth >= limit:
                    return True
                stack.append((v, depth + 1))
    return False


def _span(ms: int) -> str:
    for unit, size in (("days", 86_400_000), ("h", 3_600_000), ("min", 60_000)):
        if ms >= size:
            return f"{ms / size:.1f} {unit}"
    return f"{ms / 1000:.1f} s"


def check_time(s: Sighting, limits: Limits, now: int | None) -> Sighting:
    """Refuse a sighting stamped beyond the event-time bounds around `now` (epoch ms)."""
    if now is None:
        return s
    if limits.max_skew_ms is not None and s.ts - now > limits.max_skew_ms:
        raise InvalidRecord("future-ts", f"ts is {_span(s.ts - now)} ahead of the clock, "
                                         f"more than max_skew ({_span(limits.max_skew_ms)})")
    if limits.max_age_ms is not None and now - s.ts > limits.max_age_ms:
        raise InvalidRecord("too-old", f"ts is {_span(now - s.ts)} behind the clock, "
                                       f"more than max_age ({_span(limits.max_age_ms)})")
    return s


def decode_sighting(raw: bytes, sites: dict[str, Any], limits: Limits = Limits(),
                    now: int | None = None) -> Sighting:
    """One sighting, or InvalidRecord with its reason. `now` (epoch ms): the reference time
    of the event-time bounds in `limits` (None: not checked)."""
    return check_time(sighting_from_obj(parse_json(raw, limits), sites), limits, now)


def decode_sightings(raws: Iterable[bytes], sites: dict[str, Any], limits: Limits = Limits(),
                     now: int | None = None
                     ) -> tuple[list[tuple[int, Sighting]], list[tuple[int, InvalidRecord]]]:
    """Decode a batch; returns (index, sighting) for good records and (index, error) for bad.
    `now` as for decode_sighting: the worker's ingest passes the wall clock."""
    ok: list[tuple[int, Sighting]] = []
    bad: list[tuple[int, InvalidRecord]] = []
    # The bounds as a range of event time, so that a good sighting costs one comparison.
    lo, hi = -(2**63), 2**63
    if now is not None:
        if limits.max_age_ms is not None:
            lo = now - limits.max_age_ms
        if limits.max_skew_ms is not None:
            hi = now + limits.max_skew_ms
    for n, raw in enumerate(raws):
        try:
            s = sighting_from_obj(parse_json(raw, limits), sites)
            if not lo <= s.ts <= hi:
                check_time(s, limits, now)      # raises, with the detail
            ok.append((n, s))
        except InvalidRecord as e:
            # Kept without its traceback and context: they reference this frame, which
            # holds `bad`, a reference cycle per bad record that only the garbage collector
            # frees, and the drivers run without automatic collections (rings.gctune).
            e.__traceback__ = e.__context__ = None
            bad.append((n, e))
        except RecursionError:
            bad.append((n, InvalidRecord("bad-json", "nested too deeply")))
    return ok, bad


def _opt_ts(d: dict[str, Any], key: str, field: str) -> int | None:
    v = d.get(key)
    if v is None:
        return None
    try:
        return parse_ts(v)[0]
    except InvalidRecord:
        raise InvalidRecord("bad-ts", f"{field} is not RFC 3339 or integer milliseconds") from None


def watch_entry_from_obj(d: Any, sites: dict[str, Any] | None = None) -> WatchEntry:
    if type(d) is not dict:
        raise InvalidRecord("not-an-object", "a watchlist entry must be a JSON object")
    if "subject" not in d:
        raise InvalidRecord("missing-field", "subject is required")
    subject = _subject(d["subject"], "subject")
    lst = d.get("list")
    if type(lst) is not str or not lst:
        raise InvalidRecord("bad-field", "list must be a non-empty string")
    sev = d.get("severity")
    if sev not in SEVERITIES:
        raise InvalidRecord("bad-field", f"severity must be one of {', '.join(SEVERITIES)}")
    reason = d.get("reason")
    if reason is not None and type(reason) is not str:
        raise InvalidRecord("bad-field", "reason must be a string")
    start = _opt_ts(d, "from", "from")
    end = _opt_ts(d, "until", "until")
    if start is not None and end is not None and end <= start:
        raise InvalidRecord("bad-field", "until must be after from")
    permit = None
    p = d.get("permit")
    if p is not None or lst == "permit":
        if type(p) is not dict:
            raise InvalidRecord("bad-field", "an entry on the permit list needs a permit object")
        route = p.get("route")
        if type(route) is not list or not route or any(type(x) is not str for x in route):
            raise InvalidRecord("bad-field", "permit.route must be a non-empty list of site ids")
        if sites is not None:
            for x in route:
                if x not in sites:
                    raise InvalidRecord("unknown-site", "permit.route names a site not in the net")
        pstart = _opt_ts(p, "from", "permit.from")
        pend = _opt_ts(p, "until", "permit.until")
        if pstart is not None and pend is not None and pend <= pstart:
            raise InvalidRecord("bad-field", "permit.until must be after permit.from")
        permit = Permit(tuple(route), pstart, pend)
    return WatchEntry(subject, lst, sev, reason, start, end, permit)


def decode_watch_entry(raw: bytes, sites: dict[str, Any] | None = None,
                       limits: Limits = Limits()) -> WatchEntry:
    return watch_entry_from_obj(parse_json(raw, limits), sites)
