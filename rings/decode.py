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


@dataclass(frozen=True, slots=True)
class Limits:
    max_bytes: int = 64 * 1024
    # Sightings stamped further than this from the newest event time seen are refused, so one
    # bad clock cannot drag the watermark a year ahead (None: no bound).
    max_skew_ms: int | None = None


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
        try:
            d["original"] = self.raw.decode("utf-8")
        except UnicodeDecodeError:
            import base64
            d["original_b64"] = base64.b64encode(self.raw).decode("ascii")
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
    if attrs is not None and type(attrs) is not dict:
        raise InvalidRecord("bad-field", "attrs must be an object")
    return Sighting(sid, ts, tz, site, direction, subject, with_, attrs)


def decode_sighting(raw: bytes, sites: dict[str, Any], limits: Limits = Limits()) -> Sighting:
    return sighting_from_obj(parse_json(raw, limits), sites)


def decode_sightings(raws: Iterable[bytes], sites: dict[str, Any], limits: Limits = Limits()
                     ) -> tuple[list[tuple[int, Sighting]], list[tuple[int, InvalidRecord]]]:
    """Decode a batch; returns (index, sighting) for good records and (index, error) for bad."""
    ok: list[tuple[int, Sighting]] = []
    bad: list[tuple[int, InvalidRecord]] = []
    for n, raw in enumerate(raws):
        try:
            ok.append((n, sighting_from_obj(parse_json(raw, limits), sites)))
        except InvalidRecord as e:
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
